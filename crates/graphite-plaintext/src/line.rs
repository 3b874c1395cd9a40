//! One plaintext line: `path value [timestamp]`.

use crate::error::{Error, Excerpt, Position};
use crate::number::{fast_decimal_prefix, parse_float};

/// One parsed line, borrowing its path from the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    /// The metric path exactly as sent (UTF-8 checked, tags not interpreted; see
    /// [`crate::TaggedPath`] for that).
    pub path: &'a str,
    /// The value. NaN is returned, not rejected: carbon drops NaN silently, a gateway wants to
    /// drop *and count* it, which only the caller can do.
    pub value: f64,
    /// When the value was measured.
    pub timestamp: Timestamp,
}

/// A sample's time. "Now" is kept apart from explicit times because only the caller owns a
/// clock (and a batch should use one reading of it, not one per line).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Timestamp {
    /// No timestamp was sent, or carbon's "now" marker `-1` (any value whose integer part is
    /// -1, as carbon tests `int(timestamp) == -1`, so `-1.5` too).
    Now,
    /// Seconds since the Unix epoch, fractional seconds kept. Always finite.
    Seconds(f64),
}

impl Timestamp {
    /// A finite time as sent, carbon's "now" marker recognized: carbon tests
    /// `int(timestamp) == -1`, and `int()` truncates toward zero.
    #[inline]
    fn from_seconds(t: f64) -> Self {
        if t > -2.0 && t <= -1.0 {
            Timestamp::Now
        } else {
            Timestamp::Seconds(t)
        }
    }

    /// Seconds since the epoch, `now` standing in for [`Timestamp::Now`].
    pub fn or_now(self, now: f64) -> f64 {
        match self {
            Timestamp::Now => now,
            Timestamp::Seconds(s) => s,
        }
    }

    /// Whole seconds since the epoch, as carbon-relay writes them (`%d`: truncated toward zero,
    /// saturating at the `i64` range), `now` standing in for [`Timestamp::Now`].
    pub fn unix_seconds(self, now: i64) -> i64 {
        match self {
            Timestamp::Now => now,
            Timestamp::Seconds(s) => s as i64,
        }
    }
}

/// Python's `str.split()` separators within ASCII: space, `\t\n\v\f\r` and the information
/// separators `\x1c`-`\x1f` (carbon splits decoded `str`, and Python counts those as
/// whitespace). All are `<= b' '`, which keeps the common-case test to one comparison.
const fn whitespace_table() -> [bool; 256] {
    let mut table = [false; 256];
    let ws = [
        b' ', b'\t', b'\n', 0x0b, 0x0c, b'\r', 0x1c, 0x1d, 0x1e, 0x1f,
    ];
    let mut i = 0;
    while i < ws.len() {
        table[ws[i] as usize] = true;
        i += 1;
    }
    table
}

static WHITESPACE: [bool; 256] = whitespace_table();

/// Whether `b` separates fields (see the whitespace set above).
#[inline(always)]
pub(crate) fn is_separator(b: u8) -> bool {
    b <= b' ' && WHITESPACE[b as usize]
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Whether any of the 8 bytes is `<= b' '`, i.e. possibly a separator (the classic
/// "has byte less than n" test; it may flag a later byte spuriously, never miss one).
#[inline(always)]
pub(crate) fn may_hold_separator(word: u64) -> bool {
    word.wrapping_sub(LO * 0x21) & !word & HI != 0
}

/// Finds the next field at or after `*pos`, advancing `*pos` past it. Paths make up most of
/// a line, so the end of a field is searched 8 bytes at a time before the exact test.
#[inline(always)]
fn next_field(line: &[u8], pos: &mut usize) -> Option<(usize, usize)> {
    let mut i = *pos;
    while i < line.len() && is_separator(line[i]) {
        i += 1;
    }
    if i == line.len() {
        *pos = i;
        return None;
    }
    let start = i;
    while let Some(chunk) = line.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        if may_hold_separator(word) {
            break;
        }
        i += 8;
    }
    while i < line.len() && !is_separator(line[i]) {
        i += 1;
    }
    *pos = i;
    Some((start, i))
}

/// Parses one line (without its `\n`; a trailing `\r` and any surrounding whitespace are
/// ignored) as carbon's line receiver does.
///
/// Fields are separated by runs of whitespace. Three fields are `path value timestamp`; two
/// are `path value` with the time left to the receiver (InfluxDB's graphite service accepts
/// that, and "now" is what the sender means). Value and timestamp follow Python's `float()`.
///
/// ```
/// use graphite_plaintext::{parse_line, Timestamp};
/// let s = parse_line(b"servers.web1.cpu 12.5 1700000000\r").unwrap();
/// assert_eq!((s.path, s.value, s.timestamp), ("servers.web1.cpu", 12.5, Timestamp::Seconds(1.7e9)));
/// assert_eq!(parse_line(b"a.b 1 -1").unwrap().timestamp, Timestamp::Now);
/// assert_eq!(
///     parse_line(b"a.b one 1").unwrap_err().to_string(),
///     "invalid value \"one\" at column 5"
/// );
/// ```
#[inline]
pub fn parse_line(line: &[u8]) -> Result<Sample<'_>, Error> {
    match parse_common(line) {
        Some(sample) => Ok(sample),
        None => parse_checked(line),
    }
}

/// [`parse_line`], also telling whether the line is spelled exactly as
/// [`crate::encode_sample`] would write its sample ([`crate::is_canonical`]), found from the
/// field positions the parse sees anyway, so a relay can pass the line on as it arrived.
///
/// ```
/// use graphite_plaintext::parse_line_spelled;
/// assert!(parse_line_spelled(b"a.b 12.5 1700000000").unwrap().1);
/// assert!(!parse_line_spelled(b"a.b 12.50 1700000000").unwrap().1);
/// ```
#[inline]
pub fn parse_line_spelled(line: &[u8]) -> Result<(Sample<'_>, bool), Error> {
    match parse_common_spelled(line) {
        Some(parsed) => Ok(parsed),
        None => parse_checked(line).map(|s| (s, false)),
    }
}

/// [`parse_common`], keeping the field positions to judge the spelling.
#[inline(always)]
fn parse_common_spelled(line: &[u8]) -> Option<(Sample<'_>, bool)> {
    let mut pos = 0;
    let (start, end) = next_field(line, &mut pos)?;
    let path = std::str::from_utf8(&line[start..end]).ok()?;
    skip_separators(line, &mut pos);
    let value_start = pos;
    let value = number_field(line, &mut pos)?;
    let value_end = pos;
    skip_separators(line, &mut pos);
    if pos == line.len() {
        let sample = Sample {
            path,
            value,
            timestamp: Timestamp::Now,
        };
        return Some((sample, false));
    }
    let ts_start = pos;
    let t = number_field(line, &mut pos)?;
    let ts_end = pos;
    skip_separators(line, &mut pos);
    if pos != line.len() {
        return None;
    }
    // The path ends at the first separator, so it holds none; single spaces between the
    // fields and nothing around them.
    let spelled = start == 0
        && value_start == end + 1
        && line[end] == b' '
        && ts_start == value_end + 1
        && line[value_end] == b' '
        && ts_end == line.len()
        && crate::canonical::value_is_canonical(&line[value_start..value_end])
        && crate::canonical::timestamp_is_canonical(&line[ts_start..ts_end]);
    let sample = Sample {
        path,
        value,
        timestamp: Timestamp::from_seconds(t),
    };
    Some((sample, spelled))
}

/// The common case in one pass: a valid line whose numbers are plain decimals, parsed while
/// they are scanned. Anything else (other spellings, errors) returns `None` for
/// [`parse_checked`], which reports problems in a fixed order.
#[inline(always)]
fn parse_common(line: &[u8]) -> Option<Sample<'_>> {
    let mut pos = 0;
    let (start, end) = next_field(line, &mut pos)?;
    let path = std::str::from_utf8(&line[start..end]).ok()?;
    let value = number_field(line, &mut pos)?;
    skip_separators(line, &mut pos);
    if pos == line.len() {
        return Some(Sample {
            path,
            value,
            timestamp: Timestamp::Now,
        });
    }
    let t = number_field(line, &mut pos)?;
    skip_separators(line, &mut pos);
    if pos != line.len() {
        return None;
    }
    Some(Sample {
        path,
        value,
        timestamp: Timestamp::from_seconds(t),
    })
}

#[inline(always)]
fn skip_separators(line: &[u8], pos: &mut usize) {
    while *pos < line.len() && is_separator(line[*pos]) {
        *pos += 1;
    }
}

/// A plain decimal field at `*pos` (after separators), which must end at a separator or the end.
#[inline(always)]
fn number_field(line: &[u8], pos: &mut usize) -> Option<f64> {
    skip_separators(line, pos);
    let (value, len) = fast_decimal_prefix(&line[*pos..])?;
    *pos += len;
    match line.get(*pos) {
        None => Some(value),
        Some(&b) if is_separator(b) => Some(value),
        Some(_) => None,
    }
}

#[cold]
#[inline(never)]
fn parse_checked(line: &[u8]) -> Result<Sample<'_>, Error> {
    let mut pos = 0;
    let Some(path) = next_field(line, &mut pos) else {
        return Err(Error::EmptyLine {
            pos: Position::default(),
        });
    };
    let Some(value) = next_field(line, &mut pos) else {
        return Err(field_count(line, 1));
    };
    let timestamp = next_field(line, &mut pos);
    if timestamp.is_some() && next_field(line, &mut pos).is_some() {
        return Err(field_count(line, count_fields(line)));
    }

    let path_bytes = &line[path.0..path.1];
    let path_str = match std::str::from_utf8(path_bytes) {
        Ok(s) => s,
        Err(_) => {
            return Err(Error::InvalidUtf8 {
                excerpt: Excerpt::new(path_bytes),
                pos: Position::column(path.0),
            })
        }
    };

    let value_bytes = &line[value.0..value.1];
    let Some(v) = parse_float(value_bytes) else {
        return Err(Error::InvalidValue {
            excerpt: Excerpt::new(value_bytes),
            pos: Position::column(value.0),
        });
    };

    let timestamp = match timestamp {
        None => Timestamp::Now,
        Some((start, end)) => parse_timestamp(&line[start..end], start)?,
    };

    Ok(Sample {
        path: path_str,
        value: v,
        timestamp,
    })
}

#[inline]
fn parse_timestamp(field: &[u8], start: usize) -> Result<Timestamp, Error> {
    let Some(t) = parse_float(field) else {
        return Err(Error::InvalidTimestamp {
            excerpt: Excerpt::new(field),
            pos: Position::column(start),
        });
    };
    if !t.is_finite() {
        return Err(Error::NonFiniteTimestamp {
            excerpt: Excerpt::new(field),
            pos: Position::column(start),
        });
    }
    Ok(Timestamp::from_seconds(t))
}

#[cold]
fn field_count(line: &[u8], found: usize) -> Error {
    Error::FieldCount {
        found,
        excerpt: Excerpt::new(trim(line)),
        pos: Position::default(),
    }
}

fn count_fields(line: &[u8]) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while next_field(line, &mut pos).is_some() {
        n += 1;
    }
    n
}

fn trim(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|&b| !is_separator(b))
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|&b| !is_separator(b))
        .map_or(start, |i| i + 1);
    &line[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_match_python_ascii_whitespace() {
        let ws: Vec<u8> = (0u8..=127).filter(|&b| is_separator(b)).collect();
        assert_eq!(ws, b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f ");
    }

    #[test]
    fn word_test_flags_every_low_byte() {
        for b in 0u8..=255 {
            for lane in 0..8 {
                let mut bytes = [b'x'; 8];
                bytes[lane] = b;
                assert_eq!(
                    may_hold_separator(u64::from_le_bytes(bytes)),
                    b <= b' ',
                    "{b} in lane {lane}"
                );
            }
        }
    }

    #[test]
    fn fields_of_every_length() {
        for len in 1..40 {
            let path = "p".repeat(len);
            for sep in ["\t", " ", "\x1c", " \r\t "] {
                let line = format!("{path}{sep}1{sep}2{sep}");
                let s = parse_line(line.as_bytes()).unwrap();
                assert_eq!((s.path, s.value), (path.as_str(), 1.0));
            }
        }
        // A control byte that is no separator stays in the field, wherever it falls.
        let s = parse_line(b"abcdefg\x01hijklmnop\x02q 1 2").unwrap();
        assert_eq!(s.path, "abcdefg\x01hijklmnop\x02q");
    }

    #[test]
    fn trim_strips_both_ends() {
        assert_eq!(trim(b" \ta b\r\n"), b"a b");
        assert_eq!(trim(b"   "), b"");
    }
}
