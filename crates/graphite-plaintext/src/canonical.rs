//! Recognising a line that is already spelled the way [`crate::encode_sample`] writes it.
//!
//! A relay that forwards plaintext parses every line (to validate, route and hash it), but
//! most lines arrive in the canonical spelling already: `path value timestamp` with single
//! spaces, a plain decimal value and whole-second timestamp. For those, re-encoding would
//! write back the very same bytes, so the line can be passed on as it arrived; the check
//! below is far cheaper than formatting the number again.

use crate::line::may_hold_separator;

/// Whether a line (without its terminator) is exactly what [`crate::encode_sample`] writes
/// for the sample [`crate::parse_line`] reads from it, with the timestamp in whole seconds.
///
/// True only for `path SP value SP timestamp` where the path holds no separator, the value
/// is a plain decimal without exponent, sign `+`, leading zeros, trailing fractional zeros or
/// `-0`, with at most 15 digits (so it is the shortest spelling of its f64: two distinct
/// decimals of at most 15 significant digits never read back as the same f64), and the
/// timestamp is 1 to 10 plain digits without leading zeros. Anything else is false, which
/// only means "encode it": a false answer is always safe.
///
/// ```
/// use graphite_plaintext::is_canonical;
/// assert!(is_canonical(b"servers.web1.cpu 12.5 1700000000"));
/// assert!(!is_canonical(b"servers.web1.cpu 12.50 1700000000"));
/// assert!(!is_canonical(b"servers.web1.cpu  12.5 1700000000"));
/// assert!(!is_canonical(b"servers.web1.cpu 1e3 1700000000"));
/// ```
#[inline]
pub fn is_canonical(line: &[u8]) -> bool {
    let Some(sp1) = memchr::memchr(b' ', line) else {
        return false;
    };
    let path = &line[..sp1];
    if path.is_empty() || !path_is_plain(path) {
        return false;
    }
    let rest = &line[sp1 + 1..];
    let Some(sp2) = memchr::memchr(b' ', rest) else {
        return false;
    };
    value_is_canonical(&rest[..sp2]) && timestamp_is_canonical(&rest[sp2 + 1..])
}

/// No byte of the path is a separator (space, tab, CR, ...): then the parser's first field
/// is the whole path. Eight bytes at a time, the exact test only where a byte is suspect.
#[inline(always)]
fn path_is_plain(path: &[u8]) -> bool {
    let mut words = path.chunks_exact(8);
    let mut suspicious = false;
    for word in words.by_ref() {
        suspicious |= may_hold_separator(u64::from_le_bytes(word.try_into().expect("8 bytes")));
    }
    suspicious |= words.remainder().iter().any(|&b| b <= b' ');
    !suspicious || !path.iter().any(|&b| crate::line::is_separator(b))
}

/// Most digits a value may have to be known to be the shortest spelling of its f64.
const MAX_DIGITS: usize = 15;

#[inline(always)]
pub(crate) fn value_is_canonical(v: &[u8]) -> bool {
    canonical_value_len(v) == Some(v.len())
}

#[inline(always)]
pub(crate) fn timestamp_is_canonical(t: &[u8]) -> bool {
    canonical_timestamp_len(t) == Some(t.len())
}

/// The length of the value at the start of `bytes` when it is spelled canonically (see
/// [`is_canonical`]): `-?(0|[1-9][0-9]*)(\.[0-9]*[1-9])?` of at most 15 digits, not `-0`. A
/// value field is canonical when it is exactly this long; for a scanner that finds the
/// field's end as it goes.
#[inline(always)]
pub fn canonical_value_len(bytes: &[u8]) -> Option<usize> {
    let (negative, unsigned) = match bytes.split_first() {
        Some((b'-', unsigned)) => (true, unsigned),
        _ => (false, bytes),
    };
    let int_len = leading_digits(unsigned);
    if int_len == 0 || (int_len > 1 && unsigned[0] == b'0') {
        return None;
    }
    let mut len = int_len;
    let mut frac_len = 0;
    if unsigned.get(int_len) == Some(&b'.') {
        frac_len = leading_digits(&unsigned[int_len + 1..]);
        if frac_len == 0 || unsigned[int_len + frac_len] == b'0' {
            return None;
        }
        len += 1 + frac_len;
    }
    // `-0` reads as -0.0, which is written `0`.
    if int_len + frac_len > MAX_DIGITS || (negative && frac_len == 0 && unsigned[0] == b'0') {
        return None;
    }
    Some(len + usize::from(negative))
}

/// The length of the whole-second timestamp at the start of `bytes` when it is spelled
/// canonically: 1 to 10 digits without a leading zero.
#[inline(always)]
pub fn canonical_timestamp_len(bytes: &[u8]) -> Option<usize> {
    let len = leading_digits(bytes);
    ((1..=10).contains(&len) && (len == 1 || bytes[0] != b'0')).then_some(len)
}

/// How many ASCII digits `bytes` starts with: eight bytes at a time (per byte, exact: the
/// arithmetic never carries from one byte into the next).
#[inline(always)]
fn leading_digits(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut n = 0;
    while let Some(word) = bytes.get(n..n + 8) {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let t = x ^ (ONES * 0x30);
        // A digit is 0x30..=0x39: high nibble 3, low nibble at most 9 (adding 6 to 10..=15
        // reaches 0x10, at most 0x15: no carry out).
        let high_nibble = t & (ONES * 0xf0);
        let low_over = ((t & (ONES * 0x0f)) + ONES * 6) & (ONES * 0x10);
        let odd = high_nibble | low_over;
        let non_digits = (((odd & LOW7) + LOW7) | odd) & HIGH;
        if non_digits != 0 {
            return n + (non_digits.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    n + bytes[n..].iter().take_while(|b| b.is_ascii_digit()).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_sample, parse_line, Timestamp};
    use proptest::prelude::*;

    proptest! {
        /// The eight-at-a-time digit count is the byte-by-byte one.
        #[test]
        fn digits_are_counted_as_one_by_one(
            bytes in prop::collection::vec(prop_oneof![8 => b'0'..=b'9', 1 => any::<u8>()], 0..30)
        ) {
            let expected = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            prop_assert_eq!(leading_digits(&bytes), expected);
        }
    }

    /// What the encoder writes for the parsed line (timestamp in whole seconds).
    fn reencoded(line: &[u8]) -> Option<Vec<u8>> {
        let s = parse_line(line).ok()?;
        let Timestamp::Seconds(t) = s.timestamp else {
            return None;
        };
        let mut out = Vec::new();
        encode_sample(s.path, s.value, t.floor() as i64, &mut out).ok()?;
        out.pop();
        Some(out)
    }

    #[test]
    fn spellings() {
        for ok in [
            "a 0 0",
            "a 1 1700000000",
            "a -1 1",
            "a -0.5 1",
            "a 0.0000001 1",
            "a 123456789012345 1",
            "a 99.99 9999999999",
            "a;tag=v 3.07 1700000000",
        ] {
            assert!(is_canonical(ok.as_bytes()), "{ok}");
            assert_eq!(
                reencoded(ok.as_bytes()).as_deref(),
                Some(ok.as_bytes()),
                "{ok}"
            );
        }
        for no in [
            "a 1",
            "a 1 2 3",
            "a -0 1",
            "a +1 1",
            "a 01 1",
            "a 1.0 1",
            "a 1. 1",
            "a .5 1",
            "a 1e3 1",
            "a 1 01",
            "a 1 -1",
            "a 1 1.5",
            "a 1 12345678901",
            "a 1234567890123456 1",
            "a\t1 1 1",
            " a 1 1",
            "a 1 1 ",
            "a nan 1",
            "a inf 1",
        ] {
            assert!(!is_canonical(no.as_bytes()), "{no}");
        }
    }

    proptest! {
        /// Whatever the spelling: a line said to be canonical re-encodes to itself.
        #[test]
        fn canonical_lines_reencode_to_themselves(
            path in "[a-z.;=]{1,12}",
            int in "-?[0-9]{1,8}",
            frac in proptest::option::of("[0-9]{1,8}"),
            ts in "[0-9]{1,11}",
        ) {
            let value = match frac {
                Some(f) => format!("{int}.{f}"),
                None => int,
            };
            let line = format!("{path} {value} {ts}");
            if is_canonical(line.as_bytes()) {
                if let Some(again) = reencoded(line.as_bytes()) {
                    prop_assert_eq!(again, line.as_bytes().to_vec());
                }
            }
        }

        /// Judged in the parse or on its own, the answer is the same.
        #[test]
        fn parse_line_spelled_agrees_with_is_canonical(line in "[a-z. \t;=+.e0-9-]{0,30}") {
            if let Ok((s, spelled)) = crate::parse_line_spelled(line.as_bytes()) {
                prop_assert_eq!(spelled, is_canonical(line.as_bytes()), "{:?}", line);
                let plain = parse_line(line.as_bytes()).ok();
                prop_assert_eq!(format!("{:?}", Some(s)), format!("{plain:?}"));
            }
        }

        /// What the encoder writes is recognised (up to the 15-digit bound).
        #[test]
        fn encoded_lines_are_canonical(value in -1e9f64..1e9, decimals in 0u32..5, ts in 0i64..4_000_000_000) {
            let scale = 10f64.powi(decimals as i32);
            let value = (value * scale).round() / scale;
            let mut out = Vec::new();
            encode_sample("a.b", value, ts, &mut out).unwrap();
            out.pop();
            prop_assert!(is_canonical(&out), "{}", String::from_utf8_lossy(&out));
        }
    }
}
