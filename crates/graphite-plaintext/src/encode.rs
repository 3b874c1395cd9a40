//! Writing `path value timestamp\n`.
//!
//! Receivers differ in which number spellings they take: carbon takes anything `float()` does,
//! go-carbon and carbon-c-relay use C's `strtod`, InfluxDB's graphite service Go's
//! `ParseFloat`, and home-grown scripts often split on `.`. The common ground is a plain
//! positional decimal, so values are written as integers when they are integers (`12`, `-3`)
//! and otherwise as the shortest decimal that reads back to the same f64, never with an
//! exponent (`0.000001`, not `1e-06`). Infinities are written as Python prints them (`inf`,
//! `-inf`), NaN as `nan` (carbon drops it on arrival). Timestamps are whole seconds, as
//! carbon-relay's `%d`.

use crate::error::{Error, Excerpt};
use crate::line::{is_separator, may_hold_separator};

/// Integral values up to this magnitude print through the integer formatter (all of them are
/// exact in an f64, and `i64` holds them).
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

const ZEROS: &[u8; 64] = &[b'0'; 64];

/// Where encoded bytes go: a `Vec<u8>` or, for the codec, a `BytesMut`.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

#[cfg(feature = "codec")]
impl Sink for bytes::BytesMut {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Appends `path value timestamp\n` to `out`.
///
/// The path is written as is; one that is empty or holds whitespace would corrupt the stream
/// for the receiver (a space splits fields, a newline injects a line), so it is refused with
/// [`Error::UnencodablePath`] and nothing is written.
///
/// ```
/// let mut out = Vec::new();
/// graphite_plaintext::encode_sample("a.b", 12.0, 1700000000, &mut out).unwrap();
/// graphite_plaintext::encode_sample("a.c", 1e-7, 1700000000, &mut out).unwrap();
/// assert_eq!(out, b"a.b 12 1700000000\na.c 0.0000001 1700000000\n");
/// ```
#[inline]
pub fn encode_sample(
    path: &str,
    value: f64,
    timestamp: i64,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    encode_into(path, value, timestamp, out)
}

#[inline]
pub(crate) fn encode_into<S: Sink>(
    path: &str,
    value: f64,
    timestamp: i64,
    out: &mut S,
) -> Result<(), Error> {
    check_path(path)?;
    out.put(path.as_bytes());
    out.put(b" ");
    write_value(value, out);
    out.put(b" ");
    out.put(itoa::Buffer::new().format(timestamp).as_bytes());
    out.put(b"\n");
    Ok(())
}

/// Appends `value` formatted as [`encode_sample`] does (useful for other text protocols that
/// want the same exponent-free spelling).
///
/// ```
/// let mut out = Vec::new();
/// graphite_plaintext::encode_value(1e21, &mut out);
/// assert_eq!(out, b"1000000000000000000000");
/// ```
#[inline]
pub fn encode_value(value: f64, out: &mut Vec<u8>) {
    write_value(value, out);
}

#[inline]
fn check_path(path: &str) -> Result<(), Error> {
    // Eight bytes at a time; the exact whitespace test runs only when a control byte or a
    // space is present at all.
    let bytes = path.as_bytes();
    let mut words = bytes.chunks_exact(8);
    let mut suspicious = bytes.is_empty();
    for word in words.by_ref() {
        suspicious |= may_hold_separator(u64::from_le_bytes(word.try_into().expect("8 bytes")));
    }
    suspicious |= words.remainder().iter().any(|&b| b <= b' ');
    if suspicious {
        check_path_slow(path)
    } else {
        Ok(())
    }
}

#[cold]
fn check_path_slow(path: &str) -> Result<(), Error> {
    let problem = if path.is_empty() {
        "empty path"
    } else if path.bytes().any(is_separator) {
        "path contains whitespace"
    } else {
        return Ok(());
    };
    Err(Error::UnencodablePath {
        problem,
        excerpt: Excerpt::new(path.as_bytes()),
    })
}

#[inline]
pub(crate) fn write_value<S: Sink>(value: f64, out: &mut S) {
    // A saturating cast instead of `trunc()`, which is a libm call on baseline x86-64.
    let integer = value as i64;
    if integer as f64 == value && value.abs() <= MAX_EXACT_INTEGER {
        // Integral and exact: `-0.0` prints as `0`.
        out.put(itoa::Buffer::new().format(integer).as_bytes());
    } else if value.is_finite() {
        if !write_short_decimal(value, out) {
            write_fraction(value, out);
        }
    } else if value.is_nan() {
        out.put(b"nan");
    } else if value > 0.0 {
        out.put(b"inf");
    } else {
        out.put(b"-inf");
    }
}

/// Values with at most 4 decimals (`12.5`, `0.25`, `99.99`: most gauges and timers) without
/// the general shortest-digits search.
///
/// `n = round(|v| × 10^4)` is the only 4-decimal spelling that can read back as `|v|` (below
/// 1e11 the scaled value stays under 2^52, far from rounding trouble), and `n / 10^4` is
/// exactly the correctly rounded parse of that spelling. If it reads back, the shortest
/// spelling is `n` with its trailing zeros dropped: a spelling with fewer decimals is the same
/// rational number. Returns false (writing nothing) otherwise.
#[inline]
fn write_short_decimal<S: Sink>(value: f64, out: &mut S) -> bool {
    // Finite: the caller checked.
    let magnitude = value.abs();
    if magnitude >= 1e11 {
        return false;
    }
    // `+ 0.5` is exact at this size and the cast truncates: round half up.
    let n = (magnitude * 1e4 + 0.5) as u64;
    if n as f64 / 1e4 != magnitude {
        return false;
    }
    let (int, mut frac) = (n / 10_000, n % 10_000);
    let mut decimals = 4;
    while frac % 10 == 0 && decimals > 0 {
        frac /= 10;
        decimals -= 1;
    }
    if value < 0.0 {
        out.put(b"-");
    }
    out.put(itoa::Buffer::new().format(int).as_bytes());
    if decimals > 0 {
        let mut text = [b'.', b'0', b'0', b'0', b'0'];
        for slot in text[1..=decimals].iter_mut().rev() {
            *slot = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        out.put(&text[..=decimals]);
    }
    true
}

/// Shortest round-trip digits from ryu, laid out positionally.
fn write_fraction<S: Sink>(value: f64, out: &mut S) {
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value).as_bytes();
    let Some(e) = text.iter().position(|&b| b == b'e') else {
        // Already positional; ryu writes integral values below 1e16 as `N.0`.
        out.put(text.strip_suffix(b".0").unwrap_or(text));
        return;
    };
    let (mantissa, exponent) = (&text[..e], &text[e + 1..]);
    let (negative, mantissa) = match mantissa.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, mantissa),
    };
    let exponent = parse_exponent(exponent);
    // At most 17 significant digits: collect them without the point.
    let mut digits = [0u8; 24];
    let mut n = 0;
    let mut int_len = mantissa.len();
    for (i, &b) in mantissa.iter().enumerate() {
        if b == b'.' {
            int_len = i;
        } else {
            digits[n] = b;
            n += 1;
        }
    }
    let digits = &digits[..n];
    // value = 0.DIGITS × 10^point
    let point = int_len as i32 + exponent;
    if negative {
        out.put(b"-");
    }
    if point <= 0 {
        out.put(b"0.");
        put_zeros(out, point.unsigned_abs() as usize);
        out.put(digits);
    } else if (point as usize) < digits.len() {
        let (int, frac) = digits.split_at(point as usize);
        out.put(int);
        out.put(b".");
        out.put(frac);
    } else {
        out.put(digits);
        put_zeros(out, point as usize - digits.len());
    }
}

fn parse_exponent(text: &[u8]) -> i32 {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let magnitude = digits
        .iter()
        .fold(0i32, |acc, &d| acc * 10 + i32::from(d - b'0'));
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

fn put_zeros<S: Sink>(out: &mut S, mut count: usize) {
    while count > 0 {
        let chunk = count.min(ZEROS.len());
        out.put(&ZEROS[..chunk]);
        count -= chunk;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(value: f64) -> String {
        let mut out = Vec::new();
        encode_value(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn values() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (12.0, "12"),
            (-3.0, "-3"),
            (12.5, "12.5"),
            (0.1, "0.1"),
            (-0.25, "-0.25"),
            (0.000001, "0.000001"),
            (1.5e-7, "0.00000015"),
            (123456.789, "123456.789"),
            (9007199254740992.0, "9007199254740992"),
            (9007199254740994.0, "9007199254740994"),
            (-9007199254740994.0, "-9007199254740994"),
            (1e16, "10000000000000000"),
            (1.2345678901234567e20, "123456789012345670000"),
            (1e21, "1000000000000000000000"),
            (0.123456789012345, "0.123456789012345"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for &(value, want) in cases {
            assert_eq!(v(value), want, "{value:e}");
        }
        assert_eq!(v(1e300), format!("1{}", "0".repeat(300)));
        assert_eq!(v(5e-324), format!("0.{}5", "0".repeat(323)));
        assert_eq!(v(f64::MAX).len(), 309);
    }

    fn via_ryu(value: f64) -> String {
        let mut out = Vec::new();
        write_fraction(value, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn short_decimals_match_the_shortest_digits() {
        // Every value with up to 4 decimals in a range, and their neighbours, must print
        // exactly as the general (ryu) path does, or be left to it.
        let mut checked = 0;
        for n in (1u64..300_000).chain((1u64..5000).map(|i| i * 99_999_999)) {
            for k in 1..=4 {
                let exact = n as f64 / 10f64.powi(k);
                for value in [
                    exact,
                    -exact,
                    f64::from_bits(exact.to_bits() + 1),
                    f64::from_bits(exact.to_bits() - 1),
                ] {
                    if value == value.trunc() {
                        continue;
                    }
                    let mut out = Vec::new();
                    if write_short_decimal(value, &mut out) {
                        assert_eq!(String::from_utf8(out).unwrap(), via_ryu(value), "{value:e}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1_000_000, "{checked}");
    }

    #[test]
    fn every_value_reads_back() {
        for value in [
            0.1,
            1.0 / 3.0,
            2.0f64.sqrt() * 1e-300,
            f64::MIN_POSITIVE,
            f64::MAX,
            -1.1e17,
        ] {
            assert_eq!(v(value).parse::<f64>().unwrap(), value);
        }
    }

    #[test]
    fn refuses_paths_that_break_the_stream() {
        let mut out = Vec::new();
        let err = encode_sample("a b", 1.0, 1, &mut out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot encode path \"a b\": path contains whitespace"
        );
        let err = encode_sample("a\nb", 1.0, 1, &mut out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot encode path \"a\\nb\": path contains whitespace"
        );
        let err = encode_sample("", 1.0, 1, &mut out).unwrap_err();
        assert_eq!(err.to_string(), "cannot encode path \"\": empty path");
        assert!(out.is_empty());
        // Other control bytes do not split fields; carbon keeps them, so do we.
        encode_sample("a\x01b", 1.0, -5, &mut out).unwrap();
        assert_eq!(out, b"a\x01b 1 -5\n");
    }
}
