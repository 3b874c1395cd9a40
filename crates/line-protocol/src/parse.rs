//! The parser: InfluxDB 1.x's `models/points.go` scanner, rule for rule.
//!
//! InfluxDB's scanner is not a grammar. It makes several passes with slightly different ideas
//! of what a backslash escapes: the measurement and tag scanner treats a byte as escaped when
//! the byte before it is a backslash, the field scanner skips the byte after every backslash,
//! and the field iterator that finally extracts keys and values goes back to the first rule.
//! Lines that exercise the differences are rare, but a gateway in front of InfluxDB must accept
//! exactly what InfluxDB accepts, refuse exactly what it refuses with the same message, and
//! read the same values, or a client's behaviour changes when the gateway is put in. So the
//! passes are reproduced as they are, in the same order (which decides which error a line with
//! two problems gets), and every rule here has a line in the tests that InfluxDB was run on.

use std::iter::FusedIterator;

use memchr::memchr2;
use smallvec::SmallVec;

use crate::error::Reason;
use crate::escaped::{EscapedStr, Escaping};
use crate::number::{parse_f64, parse_i64};
use crate::split::split;
use crate::{Error, Precision};

/// InfluxDB's limit on measurement + tags (and on that + 4 + a field key): `models.MaxKeyLength`.
pub const MAX_KEY_LENGTH: usize = 65535;

/// Tags in input order; eight fit inline, which covers nearly every real point.
pub type TagSet<'a> = SmallVec<[(EscapedStr<'a>, EscapedStr<'a>); 8]>;

/// Fields in input order; four fit inline.
pub type FieldSet<'a> = SmallVec<[(EscapedStr<'a>, FieldValue<'a>); 4]>;

/// A typed field value.
#[derive(Debug, Clone, Copy)]
pub enum FieldValue<'a> {
    /// A float: `1`, `-1.5`, `.5`, `1e9` (never NaN or infinite).
    F64(f64),
    /// An integer: `12i`.
    I64(i64),
    /// An unsigned integer: `12u`. InfluxDB 1.x OSS refuses these unless built with uint
    /// support; 2.x and 3 accept them, so the parser does.
    U64(u64),
    /// A boolean: `t T true True TRUE f F false False FALSE`.
    Bool(bool),
    /// A string: `"..."`, raw text between the quotes.
    String(EscapedStr<'a>),
}

impl<'b> PartialEq<FieldValue<'b>> for FieldValue<'_> {
    fn eq(&self, other: &FieldValue<'b>) -> bool {
        match (self, other) {
            // Bitwise: `-0` and `0` are different texts and different bits (and no NaN occurs).
            (FieldValue::F64(a), FieldValue::F64(b)) => a.to_bits() == b.to_bits(),
            (FieldValue::I64(a), FieldValue::I64(b)) => a == b,
            (FieldValue::U64(a), FieldValue::U64(b)) => a == b,
            (FieldValue::Bool(a), FieldValue::Bool(b)) => a == b,
            (FieldValue::String(a), FieldValue::String(b)) => a == b,
            _ => false,
        }
    }
}

/// One point, borrowing from the input.
#[derive(Debug, Clone)]
pub struct ParsedLine<'a> {
    /// The measurement name.
    pub measurement: EscapedStr<'a>,
    /// The tags, in input order (InfluxDB sorts them when it builds the series key; the writer
    /// can too).
    pub tags: TagSet<'a>,
    /// The fields, in input order. A key may repeat; InfluxDB keeps the last value.
    pub fields: FieldSet<'a>,
    /// The timestamp as written, in the request's precision; `None` means "server time".
    pub timestamp: Option<i64>,
    line: &'a str,
    line_number: usize,
    line_offset: usize,
}

impl<'a> ParsedLine<'a> {
    /// A point built by hand (for the writer or tests): no source line.
    pub fn new(measurement: EscapedStr<'a>) -> Self {
        ParsedLine {
            measurement,
            tags: TagSet::new(),
            fields: FieldSet::new(),
            timestamp: None,
            line: "",
            line_number: 0,
            line_offset: 0,
        }
    }

    /// The line this point was parsed from, without leading whitespace or the newline; a
    /// gateway that changes nothing can forward these bytes as they are.
    pub fn line(&self) -> &'a str {
        self.line
    }

    /// 1-based number of the physical line the point starts on (0 when built by hand).
    pub fn line_number(&self) -> usize {
        self.line_number
    }

    /// Byte offset of [`ParsedLine::line`] in the body.
    pub fn offset(&self) -> usize {
        self.line_offset
    }

    /// The value of tag `key`, if present.
    pub fn tag(&self, key: &str) -> Option<&EscapedStr<'a>> {
        self.tags.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The value of field `key`; when the key repeats, the last one, as InfluxDB stores it.
    pub fn field(&self, key: &str) -> Option<&FieldValue<'a>> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// The timestamp in nanoseconds given the request's precision; `Ok(None)` when the line
    /// has none. Fails outside InfluxDB's time range.
    pub fn timestamp_nanos(&self, precision: Precision) -> Result<Option<i64>, Error> {
        self.timestamp.map(|t| precision.to_nanos(t)).transpose()
    }
}

/// Equal when measurement, tags (in order), fields (in order) and timestamp are; where the
/// line came from does not matter.
impl<'b> PartialEq<ParsedLine<'b>> for ParsedLine<'_> {
    fn eq(&self, other: &ParsedLine<'b>) -> bool {
        self.measurement == other.measurement
            && self.timestamp == other.timestamp
            && self.tags.len() == other.tags.len()
            && self.fields.len() == other.fields.len()
            && self
                .tags
                .iter()
                .zip(&other.tags)
                .all(|(a, b)| a.0 == b.0 && a.1 == b.1)
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|(a, b)| a.0 == b.0 && a.1 == b.1)
    }
}

/// Parser settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// The request's precision; timestamps must fit InfluxDB's time range once scaled.
    pub precision: Precision,
    /// Accept unsigned integers (`12u`), as InfluxDB 2.x and 3 do (the default). Turn it off
    /// to refuse them with `invalid number` exactly like a stock InfluxDB 1.x OSS server,
    /// whose uint support is a build flag.
    pub accept_unsigned: bool,
    /// Refuse string field values longer than this many (escaped) bytes. `None`, the default,
    /// matches InfluxDB 1.x, which stores longer strings; 2.x and 3 refuse more than 64 KiB
    /// ([`MAX_STRING_BYTES_V2`]).
    pub max_string_bytes: Option<usize>,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            precision: Precision::Nanoseconds,
            accept_unsigned: true,
            max_string_bytes: None,
        }
    }
}

/// The string field limit of InfluxDB 2.x and 3.
pub const MAX_STRING_BYTES_V2: usize = 64 * 1024;

/// Parses a request body: one result per point line, blank lines and `#` comments skipped.
///
/// A bad line yields an `Err` and parsing goes on with the next line, as InfluxDB does.
/// Timestamps are checked against InfluxDB's time range in nanoseconds; use
/// [`Lines::precision`] for another precision.
pub fn parse_lines(body: &str) -> Lines<'_> {
    Lines {
        body: Body::Text(body),
        pos: 0,
        line_number: 1,
        options: ParseOptions::default(),
    }
}

/// [`parse_lines`] for a body that may not be UTF-8 (an HTTP body as received): each line is
/// checked on its own, and one that is not UTF-8 yields [`Error::InvalidUtf8`] while the
/// others parse, where rejecting the whole body would lose its good points.
pub fn parse_lines_bytes(body: &[u8]) -> Lines<'_> {
    Lines {
        body: Body::Bytes(body),
        pos: 0,
        line_number: 1,
        options: ParseOptions::default(),
    }
}

/// Parses one point the way InfluxDB parses a line it has already split out of a body:
/// leading whitespace is skipped and one trailing `\n` is ignored, but there is no comment or
/// blank-line handling (an empty line is `missing measurement`). Use [`parse_lines`] for bodies.
pub fn parse_line(line: &str) -> Result<ParsedLine<'_>, Error> {
    parse_line_with(line, &ParseOptions::default())
}

/// [`parse_line`] with options.
pub fn parse_line_with<'a>(line: &'a str, options: &ParseOptions) -> Result<ParsedLine<'a>, Error> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let ws = skip_whitespace(line.as_bytes(), 0);
    point(&line[ws..], 1, ws, options)
}

/// Iterator over the points of a body; see [`parse_lines`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    body: Body<'a>,
    pos: usize,
    line_number: usize,
    options: ParseOptions,
}

#[derive(Debug, Clone, Copy)]
enum Body<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl<'a> Lines<'a> {
    /// Checks timestamps against InfluxDB's time range in this precision (default: ns).
    pub fn precision(mut self, precision: Precision) -> Self {
        self.options.precision = precision;
        self
    }

    /// Whether `12u` is accepted (default) or refused as stock InfluxDB 1.x OSS does.
    pub fn accept_unsigned(mut self, accept: bool) -> Self {
        self.options.accept_unsigned = accept;
        self
    }

    /// Refuses string values longer than `max` escaped bytes (default: no limit, as 1.x).
    pub fn max_string_bytes(mut self, max: Option<usize>) -> Self {
        self.options.max_string_bytes = max;
        self
    }

    /// Replaces all options at once.
    pub fn options(mut self, options: ParseOptions) -> Self {
        self.options = options;
        self
    }

    /// Byte offset in the body where the next line starts.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<ParsedLine<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = match self.body {
            Body::Text(s) => s.as_bytes(),
            Body::Bytes(b) => b,
        };
        loop {
            if self.pos >= bytes.len() {
                return None;
            }
            let start = self.pos;
            let found = split(bytes, start);
            let number = self.line_number;
            self.line_number += 1;
            if found.complex {
                self.line_number += memchr::memchr_iter(b'\n', &bytes[start..found.end]).count();
            }
            self.pos = found.next;

            let mut end = found.end;
            // A line ending in an escaped newline (or a body ending inside an open string)
            // keeps that newline in the line; InfluxDB strips it.
            if end > start && bytes[end - 1] == b'\n' {
                end -= 1;
            }
            let first = skip_whitespace(&bytes[..end], start);
            if first >= end || bytes[first] == b'#' {
                continue;
            }
            let line = match self.body {
                Body::Text(s) => &s[first..end],
                Body::Bytes(b) => match std::str::from_utf8(&b[first..end]) {
                    Ok(line) => line,
                    Err(e) => {
                        return Some(Err(Error::InvalidUtf8 {
                            line_number: number,
                            offset: (first + e.valid_up_to()) as u64,
                            excerpt: crate::error::excerpt(&String::from_utf8_lossy(
                                &b[first..end],
                            )),
                        }))
                    }
                },
            };
            return Some(point(line, number, first, &self.options));
        }
    }
}

impl FusedIterator for Lines<'_> {}

/// Parses a line already split out of a stream, reporting `line_number` and `line_offset`.
#[cfg(feature = "codec")]
pub(crate) fn parse_located<'a>(
    line: &'a str,
    line_number: usize,
    line_offset: usize,
    options: &ParseOptions,
) -> Result<ParsedLine<'a>, Error> {
    point(line, line_number, line_offset, options)
}

/// Parses one point and attaches where it came from. The point is built where the result
/// lives, so the large inline tag and field arrays are not copied around.
#[inline(always)]
fn point<'a>(
    line: &'a str,
    line_number: usize,
    line_offset: usize,
    options: &ParseOptions,
) -> Result<ParsedLine<'a>, Error> {
    let mut result = Ok(ParsedLine {
        measurement: EscapedStr::plain(""),
        tags: TagSet::new(),
        fields: FieldSet::new(),
        timestamp: None,
        line,
        line_number,
        line_offset,
    });
    if let Ok(point) = &mut result {
        if let Err(Fail { reason, at }) = parse_point(line, options, point) {
            result = Err(Error::Parse {
                line_number,
                line_offset,
                offset: line_offset + at,
                line: line.into(),
                reason,
            });
        }
    }
    result
}

/// A parse failure inside a line: why, and at which byte of the line.
#[derive(Debug)]
struct Fail {
    reason: Reason,
    at: usize,
}

#[inline]
fn fail<T>(reason: Reason, at: usize) -> Result<T, Fail> {
    Err(Fail { reason, at })
}

/// `parsePoint`: key, fields, the field iterator's checks, then the timestamp.
fn parse_point<'a>(
    line: &'a str,
    options: &ParseOptions,
    point: &mut ParsedLine<'a>,
) -> Result<(), Fail> {
    let b = line.as_bytes();
    let (measurement_end, key_end) = scan_key(line, &mut point.tags)?;
    // `scanKey` then `len(key) > MaxKeyLength`.
    if key_end > MAX_KEY_LENGTH {
        return fail(Reason::MaxKeyLengthExceeded { size: key_end }, 0);
    }
    point.measurement = EscapedStr::new(&line[..measurement_end], Escaping::Name);

    let mut splits = Splits::new();
    let scan = scan_fields(b, key_end, options, &mut splits)?;
    if scan.backslash {
        splits.clear();
        walk_fields(line, key_end, &scan, &mut splits)?;
    } else {
        for &(key_start, eq, _) in &splits {
            check_series_key(key_end, key_start, eq)?;
        }
    }
    point.timestamp = scan_time(line, scan.end, options.precision)?;
    // InfluxDB types the values only when it stores the point, after everything above.
    typed_fields(line, &splits, options, &mut point.fields)?;
    if point.fields.is_empty() {
        // Every field had an empty key (`m \t=1`), which InfluxDB's field iterator drops.
        return fail(Reason::MissingFields, scan.start);
    }
    Ok(())
}

/// `skipWhitespace`: spaces, tabs and NUL bytes.
#[inline]
fn skip_whitespace(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | 0) {
        i += 1;
    }
    i
}

/// Byte classes for the key scanner: what ends a measurement, and what ends a tag key or value.
const MEASUREMENT_END: u8 = 1;
const TAG_END: u8 = 2;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b',' as usize] = MEASUREMENT_END | TAG_END;
    t[b' ' as usize] = MEASUREMENT_END | TAG_END;
    t[b'=' as usize] = TAG_END;
    t
};

/// Next index `>= from` holding a byte of class `class` that is not preceded by a backslash,
/// the "escaped" test of `scanMeasurement`, `scanTagsKey` and `scanTagsValue`. Names are
/// short, so this looks at eight bytes at a time in a register rather than setting up a
/// vector search.
#[inline]
fn find_unescaped(b: &[u8], from: usize, class: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bit 7 of each byte of the result is set where `v` has a zero byte (exact for the
    // lowest such byte, which is the one used).
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut i = from;
    loop {
        while let Some(chunk) = b.get(i..i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            let mut hits = zero(w ^ (ONES * u64::from(b','))) | zero(w ^ (ONES * u64::from(b' ')));
            if class & TAG_END != 0 {
                hits |= zero(w ^ (ONES * u64::from(b'=')));
            }
            if hits != 0 {
                i += (hits.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        while i < b.len() && CLASS[b[i] as usize] & class == 0 {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        if b[i - 1] != b'\\' {
            return Some(i);
        }
        i += 1;
    }
}

/// `scanKey`: measurement and tags. Returns the measurement's end, the key's end (the byte
/// after the last tag value) and the tags.
fn scan_key<'a>(line: &'a str, tags: &mut TagSet<'a>) -> Result<(usize, usize), Fail> {
    let b = line.as_bytes();
    // scanMeasurement: anything but a leading comma; a byte after a backslash is escaped.
    if b.is_empty() || b[0] == b',' {
        return fail(Reason::MissingMeasurement, 0);
    }
    let Some(i) = find_unescaped(b, 1, MEASUREMENT_END) else {
        return fail(Reason::MissingFields, b.len());
    };
    let measurement_end = i;
    if b[i] == b' ' {
        return Ok((measurement_end, i));
    }

    let mut i = i + 1;
    loop {
        // scanTagsKey: not empty, ends at an unescaped `=`; a space or comma first is an error.
        let key_start = i;
        if i >= b.len() || matches!(b[i], b' ' | b',' | b'=') {
            return fail(Reason::MissingTagKey, i);
        }
        let key_end = match find_unescaped(b, i + 1, TAG_END) {
            Some(e) if b[e] == b'=' => e,
            Some(e) => return fail(Reason::MissingTagValue, e),
            None => return fail(Reason::MissingTagValue, b.len()),
        };
        // scanTagsValue: not empty (a leading `=` is allowed), ends at an unescaped `,` or space;
        // an unescaped `=` after the first byte is an error.
        i = key_end + 1;
        let value_start = i;
        if i >= b.len() || matches!(b[i], b',' | b' ') {
            return fail(Reason::MissingTagValue, i);
        }
        let end = match find_unescaped(b, i + 1, TAG_END) {
            None => return fail(Reason::MissingFields, b.len()),
            Some(e) if b[e] == b'=' => return fail(Reason::InvalidTagFormat, e),
            Some(e) => e,
        };
        tags.push((
            EscapedStr::new(&line[key_start..key_end], Escaping::Tag),
            EscapedStr::new(&line[value_start..end], Escaping::Tag),
        ));
        if b[end] == b' ' {
            if has_duplicate_keys(tags) {
                return fail(Reason::DuplicateTags, measurement_end + 1);
            }
            return Ok((measurement_end, end));
        }
        i = end + 1;
    }
}

/// Whether two tags have the same key as written (InfluxDB compares the escaped bytes).
fn has_duplicate_keys(tags: &TagSet<'_>) -> bool {
    let mut sorted = true;
    for w in tags.windows(2) {
        match w[0].0.raw().cmp(w[1].0.raw()) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Greater => {
                sorted = false;
                break;
            }
        }
    }
    if sorted {
        return false;
    }
    let mut keys: SmallVec<[&str; 16]> = tags.iter().map(|(k, _)| k.raw()).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

/// (key start, `=` position, value end) of each field, relative to the line.
type Splits = SmallVec<[(usize, usize, usize); 8]>;

/// What `scanFields` found: the field set's extent and whether it held a backslash. Without
/// one, the splits it recorded are where InfluxDB's field iterator splits too; with one, the
/// iterator may split differently, so the fields are found again its way.
struct FieldScan {
    start: usize,
    end: usize,
    backslash: bool,
}

/// The bytes `scanFields` acts on; every other byte just advances.
static FIELD_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'\\' as usize] = true;
    t[b'"' as usize] = true;
    t[b'=' as usize] = true;
    t[b',' as usize] = true;
    t[b' ' as usize] = true;
    t
};

#[inline]
fn is_numeric(c: u8) -> bool {
    c.is_ascii_digit() || c == b'.'
}

/// `scanFields`: validates the field set and finds its end (the first unquoted space).
fn scan_fields(
    b: &[u8],
    from: usize,
    options: &ParseOptions,
    splits: &mut Splits,
) -> Result<FieldScan, Fail> {
    let start = skip_whitespace(b, from);
    let mut i = start;
    let mut quoted = false;
    let mut equals = 0usize;
    let mut commas = 0usize;
    let mut backslash = false;
    let mut field_start = start;
    let mut pending_eq: Option<usize> = None;

    while i < b.len() {
        let c = b[i];
        if !FIELD_SPECIAL[c as usize] {
            // Key bytes (values are scanned by `scan_number` / `scan_boolean` or are strings).
            i += 1;
            continue;
        }
        if c == b'\\' && i + 1 < b.len() {
            backslash = true;
            i += 2;
            continue;
        }
        if c == b'"' && equals > commas {
            quoted = !quoted;
            i += 1;
            continue;
        }
        if c == b'=' && !quoted {
            equals += 1;
            // "... =123" and "a=1,=2", but not "a\ =123" or "a\,=2".
            if matches!(b[i - 1], b' ' | b',') && b[i - 2] != b'\\' {
                return fail(Reason::MissingFieldKey, i);
            }
            let Some(&next) = b.get(i + 1) else {
                return fail(Reason::MissingFieldValue, i);
            };
            if next == b',' || next == b' ' {
                return fail(Reason::MissingFieldValue, i);
            }
            pending_eq = Some(i);
            if is_numeric(next) || next == b'-' || next == b'N' || next == b'n' {
                i = scan_number(b, i + 1, options.accept_unsigned)?;
                continue;
            }
            if next != b'"' {
                i = scan_boolean(b, i + 1)?;
                continue;
            }
        }
        if c == b',' && !quoted {
            commas += 1;
            if let Some(eq) = pending_eq.take() {
                splits.push((field_start, eq, i));
            }
            field_start = i + 1;
        }
        if c == b' ' && !quoted {
            break;
        }
        i += 1;
    }

    if quoted {
        return fail(Reason::UnbalancedQuotes, i);
    }
    if equals == 0 || commas != equals - 1 {
        return fail(Reason::InvalidFieldFormat, i);
    }
    if let Some(eq) = pending_eq {
        splits.push((field_start, eq, i));
    }
    Ok(FieldScan {
        start,
        end: i,
        backslash,
    })
}

/// `scanNumber`: an integer (`i`), unsigned (`u`) or float, checked the way InfluxDB checks it.
fn scan_number(b: &[u8], mut i: usize, accept_unsigned: bool) -> Result<usize, Fail> {
    let start = i;
    let (mut is_int, mut is_unsigned) = (false, false);
    if b.get(i) == Some(&b'-') {
        i += 1;
        if i == b.len() {
            return fail(Reason::InvalidNumber, i);
        }
    }
    let (mut decimal, mut scientific) = (false, false);
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() {
            // What every other check below would conclude for a digit.
            i += 1;
            continue;
        }
        if c == b',' || c == b' ' {
            break;
        }
        if c == b'i' && i > start && !(is_int || is_unsigned) {
            is_int = true;
            i += 1;
            continue;
        }
        if c == b'u' && i > start && !(is_int || is_unsigned) {
            is_unsigned = true;
            i += 1;
            continue;
        }
        if c == b'.' {
            if decimal {
                return fail(Reason::InvalidNumber, i);
            }
            decimal = true;
        }
        if i > start && (c == b'e' || c == b'E') {
            scientific = true;
            i += 1;
            continue;
        }
        if (c == b'+' || c == b'-') && matches!(b[i - 1], b'e' | b'E') {
            i += 1;
            continue;
        }
        // NaN is not a number InfluxDB stores (nor is anything else with an `n`).
        if i + 2 < b.len() && (c == b'N' || c == b'n') {
            return fail(Reason::InvalidNumber, i);
        }
        if !is_numeric(c) {
            return fail(Reason::InvalidNumber, i);
        }
        i += 1;
    }

    if (is_int || is_unsigned) && (decimal || scientific) {
        return fail(Reason::InvalidNumber, start);
    }
    // Go counts the `u` as a digit but not the `i`; kept for identical verdicts.
    let numeric_digits =
        i - start - usize::from(is_int) - usize::from(decimal) - usize::from(b[start] == b'-');
    if numeric_digits == 0 {
        return fail(Reason::InvalidNumber, start);
    }

    // Only text made of ASCII bytes reaches here, so the slices below are valid UTF-8.
    let text = |from: usize, to: usize| std::str::from_utf8(&b[from..to]).unwrap_or_default();
    if is_int {
        if b[i - 1] != b'i' {
            return fail(Reason::InvalidNumber, i - 1);
        }
        let digits = text(start, i - 1);
        if digits.len() >= 19 && digits.parse::<i64>().is_err() {
            return fail(
                Reason::IntegerOutOfRange {
                    digits: digits.to_owned(),
                },
                start,
            );
        }
    } else if is_unsigned {
        if !accept_unsigned || b[i - 1] != b'u' || b[start] == b'-' {
            return fail(Reason::InvalidNumber, start);
        }
        let digits = text(start, i - 1);
        if digits.len() >= 20 && digits.parse::<u64>().is_err() {
            return fail(
                Reason::UnsignedOutOfRange {
                    digits: digits.to_owned(),
                },
                start,
            );
        }
    } else if scientific || i - start >= 25 {
        match text(start, i).parse::<f64>() {
            Ok(v) if v.is_finite() => {}
            _ => return fail(Reason::InvalidFloat, start),
        }
    }
    Ok(i)
}

/// `scanBoolean`: `t T true True TRUE f F false False FALSE`.
fn scan_boolean(b: &[u8], start: usize) -> Result<usize, Fail> {
    if !matches!(b[start], b't' | b'f' | b'T' | b'F') {
        return fail(Reason::InvalidBoolean, start);
    }
    let i = start + 1 + memchr2(b',', b' ', &b[start + 1..]).unwrap_or(b.len() - start - 1);
    let word = &b[start..i];
    let valid = matches!(
        word,
        b"t" | b"T" | b"f" | b"F" | b"true" | b"True" | b"TRUE" | b"false" | b"False" | b"FALSE"
    );
    if !valid {
        return fail(Reason::InvalidBoolean, start);
    }
    Ok(i)
}

/// `FieldIterator.Next` over the field iterator's split: one typed value per field.
fn typed_fields<'a>(
    line: &'a str,
    splits: &[(usize, usize, usize)],
    options: &ParseOptions,
    fields: &mut FieldSet<'a>,
) -> Result<(), Fail> {
    for &(key_start, eq, value_end) in splits {
        let key = EscapedStr::new(&line[key_start..eq], Escaping::Name);
        if let Some(value) = typed_value(&line[eq + 1..value_end], eq + 1, options)? {
            // InfluxDB drops fields whose key is empty; it only happens after a tab.
            if !key.is_empty() {
                fields.push((key, value));
            }
        }
    }
    Ok(())
}

/// `max key length exceeded` for one field: measurement and tags, 4 bytes of separator in
/// InfluxDB's storage key, and the field key as written.
#[inline]
fn check_series_key(key_len: usize, key_start: usize, eq: usize) -> Result<(), Fail> {
    let size = key_len + 4 + (eq - key_start);
    if size > MAX_KEY_LENGTH {
        return fail(Reason::MaxKeyLengthExceeded { size }, key_start);
    }
    Ok(())
}

/// `walkFields`' own split, used when the field set holds a backslash: a key ends at the first
/// `=` not preceded by a backslash, a value at the first `,` outside quotes, where only `\"`
/// and `\\` are escapes.
fn walk_fields(
    line: &str,
    key_len: usize,
    scan: &FieldScan,
    splits: &mut Splits,
) -> Result<(), Fail> {
    let b = line.as_bytes();
    let end = scan.end;
    let mut p = scan.start;
    while p < end {
        let key_start = p;
        let mut j = p;
        while j < end && !(b[j] == b'=' && (j == key_start || b[j - 1] != b'\\')) {
            j += 1;
        }
        if j + 2 > end {
            return fail(
                Reason::InvalidFieldValue {
                    field_key: line[key_start..j].to_owned(),
                },
                key_start,
            );
        }
        check_series_key(key_len, key_start, j)?;
        let mut q = j + 1;
        let mut quoted = false;
        while q < end {
            let c = b[q];
            if c == b'\\' && q + 1 < end && matches!(b[q + 1], b'"' | b'\\') {
                q += 2;
                continue;
            }
            if c == b'"' {
                quoted = !quoted;
            } else if c == b',' && !quoted {
                break;
            }
            q += 1;
        }
        splits.push((key_start, j, q));
        p = q + 1;
    }
    Ok(())
}

/// `FieldIterator.Next` and the typed getters: the type comes from the first byte (and the
/// last for `i`/`u`). `None` for an empty value, which InfluxDB skips.
fn typed_value<'a>(
    value: &'a str,
    at: usize,
    options: &ParseOptions,
) -> Result<Option<FieldValue<'a>>, Fail> {
    let b = value.as_bytes();
    let Some(&first) = b.first() else {
        return Ok(None);
    };
    let unconvertible = |kind: &'static str| Fail {
        reason: Reason::UnconvertibleValue {
            kind,
            value: value.to_owned(),
        },
        at,
    };
    if first == b'"' {
        // InfluxDB takes the bytes between the first and the last byte, whatever the last is
        // (`"a"b` is `a"`); when that cuts a UTF-8 character it would store broken text.
        let end = value.len().saturating_sub(1).max(1);
        let Some(inner) = value.get(1..end) else {
            return fail(
                Reason::BrokenString {
                    value: value.to_owned(),
                },
                at,
            );
        };
        if let Some(max) = options.max_string_bytes {
            if inner.len() > max {
                return fail(
                    Reason::StringTooLong {
                        length: inner.len(),
                        max,
                    },
                    at,
                );
            }
        }
        return Ok(Some(FieldValue::String(EscapedStr::new(
            inner,
            Escaping::String,
        ))));
    }
    if matches!(
        first,
        b'0'..=b'9' | b'-' | b'.' | b'n' | b'N' | b'i' | b'I' | b'u'
    ) {
        let last = b[b.len() - 1];
        // Only sliced when the last byte is the ASCII `i` or `u`.
        let body = || &value[..value.len() - 1];
        return match last {
            b'i' => match parse_i64(body()) {
                Ok(v) => Ok(Some(FieldValue::I64(v))),
                Err(_) => Err(unconvertible("integer")),
            },
            b'u' => match body().parse::<u64>() {
                Ok(v) if !body().starts_with('+') => Ok(Some(FieldValue::U64(v))),
                _ => Err(unconvertible("unsigned")),
            },
            _ => match parse_f64(value) {
                Some(v) if v.is_finite() => Ok(Some(FieldValue::F64(v))),
                _ => Err(unconvertible("floating point")),
            },
        };
    }
    match value {
        "t" | "T" | "true" | "True" | "TRUE" | "1" => Ok(Some(FieldValue::Bool(true))),
        "f" | "F" | "false" | "False" | "FALSE" | "0" => Ok(Some(FieldValue::Bool(false))),
        _ => Err(unconvertible("bool")),
    }
}

/// `scanTime` plus the conversion and trailing-byte checks of `parsePoint`, in one pass over
/// the digits for the common case.
fn scan_time(line: &str, from: usize, precision: Precision) -> Result<Option<i64>, Fail> {
    let b = line.as_bytes();
    let start = skip_whitespace(b, from);
    let mut i = start;
    let negative = b.get(i) == Some(&b'-');
    i += usize::from(negative);
    let digits_start = i;
    let mut value: u64 = 0;
    while let Some(d) = b.get(i).map(|c| c.wrapping_sub(b'0')).filter(|d| *d <= 9) {
        value = value.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    // Digits (and a leading `-`) run up to a space, a newline or the end; anything else is
    // not a timestamp.
    if i < b.len() && b[i] != b' ' && b[i] != b'\n' {
        return fail(Reason::BadTimestamp, i);
    }
    if i == start {
        return Ok(None);
    }
    let digits = i - digits_start;
    let fast = match (digits, negative) {
        (1..=19, false) => i64::try_from(value).ok(),
        (1..=19, true) if value <= 1 << 63 => Some((value as i64).wrapping_neg()),
        _ => None,
    };
    let ts = match fast {
        Some(ts) => ts,
        // Too many digits for the fast path (maybe zero-padded), out of range, or a lone `-`.
        None => {
            let text = &line[start..i];
            match parse_i64(text) {
                Ok(ts) => ts,
                Err(e) => {
                    let text = text.to_owned();
                    let reason = match e.kind() {
                        std::num::IntErrorKind::PosOverflow
                        | std::num::IntErrorKind::NegOverflow => {
                            Reason::TimestampOutOfRange { text }
                        }
                        _ => Reason::TimestampSyntax { text },
                    };
                    return fail(reason, start);
                }
            }
        }
    };
    if precision.checked_nanos(ts).is_none() {
        return fail(Reason::TimeOutsideRange, start);
    }
    // Only spaces may follow the timestamp.
    if let Some(p) = b[i..].iter().position(|&c| c != b' ') {
        return fail(Reason::PointIsInvalid, i + p);
    }
    Ok(Some(ts))
}
