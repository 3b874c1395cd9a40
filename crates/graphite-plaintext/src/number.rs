//! Numbers as Python's `float()` reads them.
//!
//! carbon runs both the value and the timestamp through `float()`, so senders get away with
//! `1e3`, `+.5`, `5.`, `INF`, `-nan` and PEP 515 underscores (`1_000`); a drop-in replacement
//! must accept exactly that language. The grammar (Python reference, "Floating-point literals"
//! plus `float()`'s special words, ASCII digits only):
//!
//! ```text
//! value     ::= [sign] (number [exponent] | "inf" | "infinity" | "nan")   words in any case
//! number    ::= [digitpart] "." digitpart | digitpart ["."]
//! exponent  ::= ("e" | "E") [sign] digitpart
//! digitpart ::= digit (["_"] digit)*
//! ```
//!
//! Plain decimals (`12`, `-3.25`, `1700000000`) are by far the most common input, so they take a
//! fast path that is exact by construction (Clinger: an integer mantissa below 2^53 divided by
//! an exactly representable power of ten is one correctly rounded IEEE operation). Everything
//! else is validated against the grammar here and converted by Rust's own correctly rounding
//! parser, so no spelling loses precision.

/// Powers of ten that are exact in an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Largest integer mantissa the fast path may use: every integer up to it is exact in an f64.
const MAX_EXACT: u64 = 1 << 53;

/// Parses `token` as Python's `float()` would (ASCII digits only), or returns `None`.
#[inline]
pub fn parse_float(token: &[u8]) -> Option<f64> {
    match fast_decimal(token) {
        Some(v) => Some(v),
        None => parse_general(token),
    }
}

/// `[+-]?digits[.digits]` with at most 18 digits in all, mantissa ≤ 2^53 and at most 22
/// fraction digits; anything else returns `None` and goes to the general path.
#[inline]
fn fast_decimal(token: &[u8]) -> Option<f64> {
    match fast_decimal_prefix(token) {
        Some((value, len)) if len == token.len() => Some(value),
        _ => None,
    }
}

/// The fast path over the longest `[+-]?digits[.digits]` prefix of `bytes`: the value and the
/// prefix length, or `None` when the prefix is empty or too long for the exact computation.
/// The caller decides whether what follows ends the number (the line parser accepts a
/// separator, and falls back to the general path for anything else).
#[inline(always)]
pub(crate) fn fast_decimal_prefix(bytes: &[u8]) -> Option<(f64, usize)> {
    let (negative, sign_len) = match bytes.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let digits = &bytes[sign_len..];
    let mut mantissa: u64 = 0;
    let mut i = 0;
    // 18 digits cannot overflow a u64; more send the token to the general path.
    while i < digits.len() && i <= 18 {
        let d = digits[i].wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        mantissa = mantissa * 10 + u64::from(d);
        i += 1;
    }
    let int_digits = i;
    let mut frac_digits = 0;
    if digits.get(i) == Some(&b'.') {
        i += 1;
        while i < digits.len() && int_digits + frac_digits <= 18 {
            let d = digits[i].wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            mantissa = mantissa * 10 + u64::from(d);
            i += 1;
            frac_digits += 1;
        }
    }
    // A lone "." has no digits at all.
    if int_digits + frac_digits == 0 || int_digits + frac_digits > 18 || mantissa > MAX_EXACT {
        return None;
    }
    let magnitude = mantissa as f64 / POW10[frac_digits];
    Some((if negative { -magnitude } else { magnitude }, sign_len + i))
}

/// Validates the full grammar, then converts with `str::parse::<f64>` (after dropping
/// underscores, which Rust's parser does not know).
#[cold]
fn parse_general(token: &[u8]) -> Option<f64> {
    let (negative, body) = match token.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, token),
    };
    if let Some(special) = special_word(body) {
        return Some(if negative { -special } else { special });
    }
    let underscores = validate_number(body)?;
    if !underscores {
        // Validated ASCII; `from_utf8` cannot fail, the parse can only succeed.
        return std::str::from_utf8(token).ok()?.parse().ok();
    }
    let mut stack = [0u8; 128];
    let mut heap;
    let cleaned: &mut [u8] = if token.len() <= stack.len() {
        &mut stack[..]
    } else {
        heap = vec![0u8; token.len()];
        &mut heap[..]
    };
    let mut n = 0;
    for &b in token.iter().filter(|&&b| b != b'_') {
        cleaned[n] = b;
        n += 1;
    }
    std::str::from_utf8(&cleaned[..n]).ok()?.parse().ok()
}

fn special_word(body: &[u8]) -> Option<f64> {
    if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        Some(f64::INFINITY)
    } else if body.eq_ignore_ascii_case(b"nan") {
        Some(f64::NAN)
    } else {
        None
    }
}

/// Checks `number [exponent]` (sign already removed). Returns whether underscores occur.
fn validate_number(body: &[u8]) -> Option<bool> {
    let mut underscores = false;
    let mut i = 0;
    let int_digits = digit_part(body, &mut i, &mut underscores);
    let mut frac_digits = 0;
    if body.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = digit_part(body, &mut i, &mut underscores);
    }
    if int_digits == 0 && frac_digits == 0 {
        return None;
    }
    if matches!(body.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(body.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digit_part(body, &mut i, &mut underscores) == 0 {
            return None;
        }
    }
    (i == body.len()).then_some(underscores)
}

/// Consumes `digit (["_"] digit)*` at `*i`; returns how many digits it took (0 if none, in
/// which case nothing is consumed). A `_` not followed by a digit ends the part unconsumed,
/// which then fails the caller's end-of-input check.
fn digit_part(body: &[u8], i: &mut usize, underscores: &mut bool) -> usize {
    let mut count = 0;
    while *i < body.len() {
        match body[*i] {
            b'0'..=b'9' => {
                count += 1;
                *i += 1;
            }
            b'_' if count > 0 && body.get(*i + 1).is_some_and(u8::is_ascii_digit) => {
                *underscores = true;
                *i += 1;
            }
            _ => break,
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<f64> {
        parse_float(s.as_bytes())
    }

    #[test]
    fn accepts_python_spellings() {
        let cases: &[(&str, f64)] = &[
            ("0", 0.0),
            ("12", 12.0),
            ("-3", -3.0),
            ("+1.5", 1.5),
            (".5", 0.5),
            ("5.", 5.0),
            ("-.5", -0.5),
            ("1e3", 1000.0),
            ("1E3", 1000.0),
            ("1e+3", 1000.0),
            ("2.5e-3", 0.0025),
            (".5e1", 5.0),
            ("5.e1", 50.0),
            ("1_000", 1000.0),
            ("1_000.000_1", 1000.0001),
            ("1e1_0", 1e10),
            ("007", 7.0),
            ("1700000000", 1_700_000_000.0),
            ("0.123456789012345", 0.123456789012345),
            ("1e400", f64::INFINITY),
            ("-1e400", f64::NEG_INFINITY),
            ("1e-400", 0.0),
            ("inf", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
            ("+INF", f64::INFINITY),
            ("iNfInItY", f64::INFINITY),
        ];
        for &(s, want) in cases {
            assert_eq!(p(s), Some(want), "{s}");
        }
        for s in ["nan", "NaN", "-nan", "+NAN"] {
            assert!(p(s).is_some_and(f64::is_nan), "{s}");
        }
        assert!(p("-0").unwrap().is_sign_negative());
        assert!(p("-0.0").unwrap().is_sign_negative());
    }

    #[test]
    fn rejects_what_python_rejects() {
        for s in [
            "",
            "+",
            "-",
            ".",
            "e1",
            ".e1",
            "1e",
            "1e+",
            "1e_1",
            "_1",
            "1_",
            "1__0",
            "1_.5",
            "1._5",
            "1_e5",
            "1e5_",
            "+_1",
            "++1",
            "--1",
            "1.2.3",
            "0x10",
            "in",
            "infinit",
            "infinityy",
            "nan1",
            "1 ",
            " 1",
            "1,5",
            "１",
            "1d",
            "1f",
        ] {
            assert_eq!(p(s), None, "{s:?}");
        }
    }

    #[test]
    fn fast_path_agrees_with_std() {
        for s in [
            "0.1",
            "0.3",
            "123456789012345678",
            "9007199254740993",
            "12345.678901234567",
            "0.000000000000000000001",
            "4.35",
            "-99.99",
        ] {
            assert_eq!(p(s), Some(s.parse::<f64>().unwrap()), "{s}");
        }
    }
}
