//! Number conversions for the common short spellings, falling back to the standard library.
//!
//! Field values and timestamps are mostly short decimals (`12.5`, `1700000000000000000`), for
//! which the general algorithms do more work than needed; these fast paths give exactly the
//! same results (Clinger's exact case for floats, overflow-free lengths for integers).

/// Exact powers of ten representable as `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Parses `[-]digits[.digits]` (either side may be empty, not both), or `None` to mean "use
/// the general parser". When the digits fit in 53 bits and there are at most 22 decimals, the
/// quotient of two exact `f64`s is correctly rounded by IEEE division, so the result equals
/// `str::parse`.
#[inline]
pub(crate) fn fast_f64(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let (negative, start) = match b.first() {
        Some(b'-') => (true, 1),
        _ => (false, 0),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut decimals = 0usize;
    let mut dot = false;
    for &c in &b[start..] {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
                digits += 1;
                decimals += usize::from(dot);
            }
            b'.' if !dot => dot = true,
            _ => return None,
        }
    }
    if digits == 0 || mantissa > 1 << 53 || decimals >= POW10.len() {
        return None;
    }
    let v = mantissa as f64 / POW10[decimals];
    Some(if negative { -v } else { v })
}

/// `str::parse::<f64>` through the fast path when it applies.
#[inline]
pub(crate) fn parse_f64(s: &str) -> Option<f64> {
    match fast_f64(s) {
        Some(v) => Some(v),
        None => s.parse().ok(),
    }
}

/// `str::parse::<i64>` for an optional sign and decimal digits (Go's `ParseInt(s, 10, 64)`).
#[inline]
pub(crate) fn parse_i64(s: &str) -> Result<i64, std::num::ParseIntError> {
    let b = s.as_bytes();
    let (negative, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    // Nineteen digits fit a u64; longer or odd input takes the general path (which also
    // produces the error).
    if digits.is_empty() || digits.len() > 19 {
        return s.parse();
    }
    let mut v: u64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return s.parse();
        }
        v = v * 10 + u64::from(d);
    }
    if negative {
        if v <= 1 << 63 {
            return Ok((v as i64).wrapping_neg());
        }
    } else if let Ok(v) = i64::try_from(v) {
        return Ok(v);
    }
    s.parse()
}

/// Room for the longest float [`format_f64`] writes.
pub(crate) type FloatBuffer = [u8; 40];

/// Writes `v` (finite) as the shortest text that reads back as the same `f64`, with no `.0`
/// tail: ryu's digits, through a cheaper path for values that are short decimals (most
/// metrics). The fast path finds the fewest decimals `k` such that the nearest integer `m` to
/// `v * 10^k` (below 2^53) gives `m / 10^k == v`; by Clinger's exact case that text parses back
/// to `v`, and it is the string ryu produces (the tests compare the two on millions of values).
pub(crate) fn format_f64(v: f64, out: &mut FloatBuffer) -> &[u8] {
    match format_short(v, out) {
        Some(len) => &out[..len],
        None => {
            let mut b = ryu::Buffer::new();
            let s = b.format_finite(v);
            let s = s.strip_suffix(".0").unwrap_or(s);
            let len = s.len().min(out.len());
            out[..len].copy_from_slice(&s.as_bytes()[..len]);
            &out[..len]
        }
    }
}

fn format_short(v: f64, out: &mut FloatBuffer) -> Option<usize> {
    let a = v.abs();
    // ryu's decimal notation range; outside it ryu uses an exponent.
    if a >= 1e15 || (a != 0.0 && a < 1e-5) {
        return None;
    }
    for (k, pow) in POW10.iter().enumerate().take(9) {
        let x = a * pow;
        if x >= 9_007_199_254_740_992.0 {
            return None;
        }
        // Round half up without a libm call: below 2^53 the integer part and the
        // remainder are exact.
        let int = x as u64;
        let scaled = if x - int as f64 >= 0.5 { int + 1 } else { int } as f64;
        // `scaled / 10^k` is what parsing the text gives back (Clinger), so `k` decimals
        // suffice when it is `a`.
        if scaled / pow != a {
            continue;
        }
        let mut m = scaled as u64;
        let mut k = k;
        while k > 0 && m.is_multiple_of(10) {
            m /= 10;
            k -= 1;
        }
        let mut digits = itoa::Buffer::new();
        let d = digits.format(m).as_bytes();
        let mut n = 0;
        if v.is_sign_negative() {
            out[0] = b'-';
            n = 1;
        }
        if k == 0 {
            out[n..n + d.len()].copy_from_slice(d);
            return Some(n + d.len());
        }
        if d.len() > k {
            let int = d.len() - k;
            out[n..n + int].copy_from_slice(&d[..int]);
            out[n + int] = b'.';
            out[n + int + 1..n + d.len() + 1].copy_from_slice(&d[int..]);
            return Some(n + d.len() + 1);
        }
        out[n..n + 2].copy_from_slice(b"0.");
        n += 2;
        for _ in d.len()..k {
            out[n] = b'0';
            n += 1;
        }
        out[n..n + d.len()].copy_from_slice(d);
        return Some(n + d.len());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fast_float_cases() {
        for s in [
            "0",
            "-0",
            "1",
            "12.5",
            ".5",
            "5.",
            "-.5",
            "0.1",
            "3.14159",
            "97.02040816326532",
        ] {
            let want: f64 = s.parse().unwrap();
            assert_eq!(parse_f64(s).unwrap().to_bits(), want.to_bits(), "{s}");
        }
        for s in [
            "1e3",
            "",
            "-",
            ".",
            "1.2.3",
            "99999999999999999999",
            "1.00000000000000000000001",
        ] {
            assert!(fast_f64(s).is_none(), "{s}");
        }
        assert_eq!(parse_f64("1e3"), Some(1000.0));
    }

    #[test]
    fn fast_int_cases() {
        for s in [
            "0",
            "-0",
            "+5",
            "1700000000000000000",
            "-9223372036854775808",
            "9223372036854775807",
        ] {
            assert_eq!(parse_i64(s), s.parse::<i64>(), "{s}");
        }
        for s in [
            "",
            "-",
            "9223372036854775808",
            "-9223372036854775809",
            "9999999999999999999",
            "1a",
            "+-1",
        ] {
            assert!(parse_i64(s).is_err(), "{s}");
        }
    }

    fn ryu_text(v: f64) -> String {
        let mut b = ryu::Buffer::new();
        let s = b.format_finite(v);
        s.strip_suffix(".0").unwrap_or(s).to_owned()
    }

    #[test]
    fn format_matches_ryu() {
        let mut out = [0u8; 40];
        for v in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            12.5,
            0.1,
            0.2,
            0.3,
            1e-5,
            0.00012,
            123456.789,
            1e15 - 1.0,
            999999999999999.9,
            1e15,
            5e-324,
            f64::MAX,
            3.1,
            97.02040816326532,
        ] {
            assert_eq!(format_f64(v, &mut out), ryu_text(v).as_bytes(), "{v}");
        }
    }

    proptest! {
        #[test]
        fn format_matches_ryu_on_decimals(m in any::<i64>(), k in 0u32..10) {
            let v = m as f64 / 10f64.powi(k as i32);
            let mut out = [0u8; 40];
            let want = ryu_text(v);
            prop_assert_eq!(format_f64(v, &mut out), want.as_bytes());
        }

        #[test]
        fn format_matches_ryu_on_any(bits in any::<u64>()) {
            let v = f64::from_bits(bits);
            if v.is_finite() {
                let mut out = [0u8; 40];
                let want = ryu_text(v);
            prop_assert_eq!(format_f64(v, &mut out), want.as_bytes());
            }
        }

        #[test]
        fn format_matches_ryu_on_small(m in 0u64..100_000_000, k in 0u32..9, neg in any::<bool>()) {
            let v = m as f64 / 10f64.powi(k as i32) * if neg { -1.0 } else { 1.0 };
            let mut out = [0u8; 40];
            let want = ryu_text(v);
            prop_assert_eq!(format_f64(v, &mut out), want.as_bytes());
        }

        #[test]
        fn float_matches_std(neg in any::<bool>(), int in "[0-9]{0,12}", frac in prop::option::of("[0-9]{0,12}")) {
            let s = format!("{}{int}{}", if neg { "-" } else { "" }, frac.map(|f| format!(".{f}")).unwrap_or_default());
            let std = s.parse::<f64>().ok();
            prop_assert_eq!(parse_f64(&s).map(f64::to_bits), std.map(f64::to_bits), "{}", s);
        }

        #[test]
        fn int_matches_std(v in any::<i64>(), pad in 0usize..3) {
            let s = format!("{}{}", "0".repeat(pad), v);
            prop_assert_eq!(parse_i64(&s), s.parse::<i64>());
        }
    }
}
