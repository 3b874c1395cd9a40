//! Numbers the way carbon sees them: carbon runs Python's `float()` over the timestamp and
//! the value of every item, so whatever `float()` accepts is a number here too.

/// ASCII characters `float()` and `int()` strip (not `\x1c`-`\x1f`, which `str.strip()`
/// would also remove).
fn is_py_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

pub(crate) fn trim_py_space(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_py_space(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_py_space(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// Whether every `_` sits between two ASCII digits (PEP 515), as Python requires.
fn underscores_ok(s: &[u8]) -> bool {
    s.iter().enumerate().all(|(i, &b)| {
        b != b'_'
            || (i > 0
                && s[i - 1].is_ascii_digit()
                && s.get(i + 1).is_some_and(|c| c.is_ascii_digit()))
    })
}

/// Parses `text` as Rust's `f64::from_str` does, after dropping PEP 515 underscores.
fn parse_without_underscores(text: &[u8]) -> Option<f64> {
    if !text.contains(&b'_') {
        return std::str::from_utf8(text).ok()?.parse().ok();
    }
    if !underscores_ok(text) {
        return None;
    }
    // Rare (who writes `1_000` in a metric?), so a small allocation is fine here.
    let cleaned: Vec<u8> = text.iter().copied().filter(|&b| b != b'_').collect();
    std::str::from_utf8(&cleaned).ok()?.parse().ok()
}

/// Python's `float(text)` for str and bytes: surrounding whitespace, a sign, decimal or
/// exponent notation, `_` between digits, `inf`/`infinity`/`nan` in any case.
///
/// Rust's `f64::from_str` has the same grammar minus whitespace and underscores, and
/// rounds correctly as Python does. Not accepted (Python does): non-ASCII digits and
/// whitespace, which no metric sender produces.
pub(crate) fn py_float(text: &[u8]) -> Option<f64> {
    let text = trim_py_space(text);
    if text.is_empty() {
        return None;
    }
    parse_without_underscores(text)
}

/// A protocol-0 integer argument (INT, LONG) after Python's `int(text, 0)` rules, decimal
/// spellings only: whitespace, a sign, digits with `_` between them, no leading zeros
/// unless the number is zero. Python's own pickler writes `I%d\n` and `L%dL\n`.
pub(crate) enum IntText {
    Small(i64),
    /// Valid, but wider than an i64: kept as text and converted to a float on demand.
    Big,
}

pub(crate) fn parse_int_text(text: &[u8]) -> Option<IntText> {
    let text = trim_py_space(text);
    let (neg, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(|b| b.is_ascii_digit() || *b == b'_') {
        return None;
    }
    if !underscores_ok(digits) {
        return None;
    }
    if digits[0] == b'0' && digits.iter().any(|b| !matches!(b, b'0' | b'_')) {
        return None;
    }
    let mut acc: i64 = 0;
    for &b in digits.iter().filter(|&&b| b != b'_') {
        let d = i64::from(b - b'0');
        let next = acc.checked_mul(10).and_then(|a| {
            if neg {
                a.checked_sub(d)
            } else {
                a.checked_add(d)
            }
        });
        match next {
            Some(n) => acc = n,
            None => return Some(IntText::Big),
        }
    }
    Some(IntText::Small(acc))
}

/// `float()` of a decimal integer too wide for an i64 (validated by [`parse_int_text`]).
/// `None` where Python raises OverflowError.
pub(crate) fn big_int_text_to_f64(text: &[u8]) -> Option<f64> {
    parse_without_underscores(trim_py_space(text)).filter(|f| f.is_finite())
}

/// An integer as LONG1/LONG4 store it: little-endian two's complement. Fits an i64?
pub(crate) fn long_le_to_i64(bytes: &[u8]) -> Option<i64> {
    if bytes.len() > 8 {
        // Wider encodings can still hold a small value (Python never writes them, a
        // hand-written pickle could): sign-extension bytes are all 0x00 or all 0xff.
        let (low, high) = bytes.split_at(8);
        let fill = if low[7] & 0x80 != 0 { 0xff } else { 0x00 };
        if high.iter().any(|&b| b != fill) {
            return None;
        }
        return long_le_to_i64(low);
    }
    let Some(&last) = bytes.last() else {
        return Some(0);
    };
    let mut buf = if last & 0x80 != 0 { [0xff; 8] } else { [0; 8] };
    buf[..bytes.len()].copy_from_slice(bytes);
    Some(i64::from_le_bytes(buf))
}

/// `float()` of any LONG1/LONG4 integer, correctly rounded like Python's `int.__float__`;
/// `None` where Python raises OverflowError (the result would reach 2**1024).
///
/// Works on the borrowed bytes without a bignum: the magnitude's top 128 bits with a
/// sticky bit for everything below round exactly as the full number would.
pub(crate) fn long_le_to_f64(bytes: &[u8]) -> Option<f64> {
    if let Some(i) = long_le_to_i64(bytes) {
        return Some(i as f64);
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    // Magnitude byte i of a negative number is (!x + 1)[i]: the +1 carries through the
    // low zero bytes of x and stops at the first non-zero one.
    let low_zeros = bytes.iter().take_while(|&&b| b == 0).count();
    let mag = |i: usize| -> u8 {
        let b = bytes[i];
        if !negative {
            b
        } else if i < low_zeros {
            0
        } else if i == low_zeros {
            (!b).wrapping_add(1)
        } else {
            !b
        }
    };
    let top = (0..bytes.len()).rev().find(|&i| mag(i) != 0)?;
    let n = top + 1; // significant bytes of the magnitude
    let take = n.min(16);
    let mut m: u128 = 0;
    for i in (n - take..n).rev() {
        m = (m << 8) | u128::from(mag(i));
    }
    let below = n - take;
    if (0..below).any(|i| mag(i) != 0) {
        m |= 1;
    }
    let shift = 8 * below;
    // m >= 2**120 whenever shift > 0, so any shift past 903 overflows for sure.
    if shift > 1023 {
        return None;
    }
    let scale = f64::from_bits(((shift as u64) + 1023) << 52);
    let f = (m as f64) * scale;
    if !f.is_finite() {
        return None;
    }
    Some(if negative { -f } else { f })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_spellings() {
        let ok: &[(&str, f64)] = &[
            ("12.5", 12.5),
            (" 12.5\n", 12.5),
            ("+1e3", 1000.0),
            ("1E-2", 0.01),
            ("1_000.5", 1000.5),
            ("1.", 1.0),
            (".5", 0.5),
            ("-0", -0.0),
            ("inf", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
            ("\x0c7\x0b", 7.0),
        ];
        for (text, want) in ok {
            let got = py_float(text.as_bytes()).unwrap_or_else(|| panic!("{text:?}"));
            assert_eq!(got.to_bits(), want.to_bits(), "{text:?}");
        }
        assert!(py_float(b"nan").unwrap().is_nan());
        assert!(py_float(b"-NaN").unwrap().is_nan());
        for bad in [
            "", " ", "\x1c4", "4\x1f", ".", "e5", "1__0", "_1", "1_", "1_.5", "1._5", "0x10", "1e",
            "abc", "1,5", "infinit",
        ] {
            assert_eq!(py_float(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn protocol_zero_integers() {
        let small = |t: &str| match parse_int_text(t.as_bytes()) {
            Some(IntText::Small(i)) => Some(i),
            _ => None,
        };
        assert_eq!(small("1700000000"), Some(1_700_000_000));
        assert_eq!(small("-42\n"), Some(-42));
        assert_eq!(small("0"), Some(0));
        assert_eq!(small("000"), Some(0));
        assert_eq!(small("1_000"), Some(1000));
        assert_eq!(small("-9223372036854775808"), Some(i64::MIN));
        assert!(matches!(
            parse_int_text(b"9223372036854775808"),
            Some(IntText::Big)
        ));
        for bad in ["", "-", "012", "1__0", "0x10", "1.5", "12L"] {
            assert!(parse_int_text(bad.as_bytes()).is_none(), "{bad:?}");
        }
        assert_eq!(big_int_text_to_f64(b"100000000000000000000"), Some(1e20));
        assert_eq!(big_int_text_to_f64(&[b'9'; 400]), None);
    }

    fn le(v: i128) -> Vec<u8> {
        // Shortest two's complement little-endian encoding, as Python's encode_long.
        let mut b = v.to_le_bytes().to_vec();
        while b.len() > 1 {
            let (last, prev) = (b[b.len() - 1], b[b.len() - 2]);
            if (last == 0 && prev & 0x80 == 0) || (last == 0xff && prev & 0x80 != 0) {
                b.pop();
            } else {
                break;
            }
        }
        b
    }

    #[test]
    fn long_bytes_convert_like_python() {
        for v in [0i128, 1, -1, 255, -256, i64::MAX as i128, i64::MIN as i128] {
            assert_eq!(long_le_to_i64(&le(v)), Some(v as i64));
        }
        for v in [
            1i128 << 64,
            -(1i128 << 70) - 12345,
            i128::MAX,
            i128::MIN,
            (1 << 100) + 1,
        ] {
            assert_eq!(long_le_to_i64(&le(v)), None);
            assert_eq!(long_le_to_f64(&le(v)), Some(v as f64), "{v}");
        }
        assert_eq!(long_le_to_f64(&[]), Some(0.0));
        // 2**1023 is the largest power of two a float holds, 2**1024 overflows.
        let mut p1023 = vec![0u8; 128];
        p1023[127] = 0x80;
        p1023.push(0);
        assert_eq!(long_le_to_f64(&p1023), Some(2f64.powi(1023)));
        let mut p1024 = vec![0u8; 128];
        p1024.push(1);
        assert_eq!(long_le_to_f64(&p1024), None);
        // -(2**1024) overflows too; -(2**1023) does not.
        let mut n1023 = vec![0u8; 128];
        n1023[127] = 0x80;
        assert_eq!(long_le_to_f64(&n1023), Some(-(2f64.powi(1023))));
        // Round half to even beyond 128 bits: 2**200 + 2**147 is a tie, stays 2**200;
        // adding 1 far below tips it up.
        let mut tie = vec![0u8; 26];
        tie[25] = 1; // 2**200
        tie[18] = 0x08; // 2**147
        assert_eq!(long_le_to_f64(&tie), Some(2f64.powi(200)));
        tie[0] = 1;
        assert_eq!(long_le_to_f64(&tie), Some(2f64.powi(200) + 2f64.powi(148)));
    }
}
