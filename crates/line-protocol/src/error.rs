//! The crate's single error type.

use std::fmt;

use crate::Precision;

/// How far back an excerpt of an offending line reaches when it is shown in a log line.
const EXCERPT_BYTES: usize = 64;

/// Everything that can go wrong in this crate.
///
/// A line InfluxDB 1.x would refuse is an [`Error::Parse`] whose `Display` is InfluxDB's own
/// message, byte for byte (`unable to parse '<line>': <reason>`), because clients, dashboards
/// and operators grep for those exact strings and a gateway must not change them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A line that InfluxDB 1.x would refuse. The rest of the body is unaffected.
    #[error("unable to parse '{line}': {reason}")]
    Parse {
        /// 1-based number of the physical line the point starts on.
        line_number: usize,
        /// Byte offset in the body where the line starts (after leading whitespace).
        line_offset: usize,
        /// Byte offset in the body where the problem was found.
        offset: usize,
        /// The whole line as InfluxDB echoes it: without leading whitespace or the newline.
        line: Box<str>,
        /// Why InfluxDB refuses it.
        reason: Reason,
    },

    /// A line longer than the codec's limit; it is discarded up to its end.
    #[error("line {line_number} at byte {offset} is longer than {max_length} bytes")]
    LineTooLong {
        /// 1-based number of the line.
        line_number: usize,
        /// Byte offset in the stream where the line starts.
        offset: u64,
        /// The configured limit.
        max_length: usize,
    },

    /// A line that is not UTF-8; it is skipped.
    #[error("line {line_number} at byte {offset} is not valid UTF-8: '{excerpt}'")]
    InvalidUtf8 {
        /// 1-based number of the line.
        line_number: usize,
        /// Byte offset in the stream of the first invalid byte.
        offset: u64,
        /// The start of the line, lossily decoded.
        excerpt: String,
    },

    /// A timestamp that does not fit InfluxDB's time range once scaled to nanoseconds.
    #[error("time outside range {min} - {max}: {timestamp} in precision {precision}", min = MIN_NANOS, max = MAX_NANOS)]
    TimeOutOfRange {
        /// The timestamp as given.
        timestamp: i64,
        /// The precision it was given in.
        precision: Precision,
    },

    /// A precision name that neither InfluxDB API knows.
    #[error("invalid precision {value:?} (use n, ns, u, us, µ, ms, s, m or h)")]
    UnknownPrecision {
        /// The rejected spelling, cut to 32 bytes.
        value: String,
    },

    /// A value the writer cannot put into line protocol so that InfluxDB reads it back unchanged.
    #[error("cannot write {element} {excerpt:?}: {problem}")]
    Unwritable {
        /// Which part of the point.
        element: Element,
        /// Byte offset of the problem inside that value.
        offset: usize,
        /// The start of the value.
        excerpt: String,
        /// Why it cannot be written.
        problem: &'static str,
    },

    /// The reader under the codec failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether the rest of the input can still be used after this error.
    ///
    /// InfluxDB skips a bad line and writes the others (`partial write`), so every line-level
    /// problem is recoverable; only a failing reader ends a stream.
    pub fn can_continue(&self) -> bool {
        !matches!(self, Error::Io(_) | Error::UnknownPrecision { .. })
    }

    /// The 1-based line number, for errors tied to a line.
    pub fn line_number(&self) -> Option<usize> {
        match self {
            Error::Parse { line_number, .. }
            | Error::LineTooLong { line_number, .. }
            | Error::InvalidUtf8 { line_number, .. } => Some(*line_number),
            _ => None,
        }
    }

    /// The parse reason, for [`Error::Parse`].
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Error::Parse { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// A one-line summary that keeps log lines short: the message with the echoed line cut to
    /// 64 bytes. `Display` keeps InfluxDB's full wording for HTTP answers.
    pub fn summary(&self) -> String {
        match self {
            Error::Parse {
                line_number,
                line,
                reason,
                ..
            } => format!(
                "line {line_number}: unable to parse '{}': {reason}",
                excerpt(line)
            ),
            other => other.to_string(),
        }
    }
}

/// Why InfluxDB 1.x refuses a line. `Display` is InfluxDB's wording (models/points.go).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// `missing measurement`
    MissingMeasurement,
    /// `missing fields`
    MissingFields,
    /// `missing tag key`
    MissingTagKey,
    /// `missing tag value`
    MissingTagValue,
    /// `invalid tag format`: an unescaped `=` inside a tag value.
    InvalidTagFormat,
    /// `duplicate tags`
    DuplicateTags,
    /// `max key length exceeded: N > 65535`: measurement plus tags (plus 4 plus a field key).
    MaxKeyLengthExceeded {
        /// The size InfluxDB computed.
        size: usize,
    },
    /// `missing field key`
    MissingFieldKey,
    /// `missing field value`
    MissingFieldValue,
    /// `invalid field format`
    InvalidFieldFormat,
    /// `unbalanced quotes`
    UnbalancedQuotes,
    /// `invalid number`
    InvalidNumber,
    /// `invalid float`: a float that does not parse or overflows.
    InvalidFloat,
    /// `invalid boolean`
    InvalidBoolean,
    /// `unable to parse integer N: strconv.ParseInt: parsing "N": value out of range`
    IntegerOutOfRange {
        /// The digits, without the `i`.
        digits: String,
    },
    /// `unable to parse unsigned N: strconv.ParseUint: parsing "N": value out of range`
    UnsignedOutOfRange {
        /// The digits, without the `u`.
        digits: String,
    },
    /// `invalid value: field-key=K`: InfluxDB's second pass over the fields (its field
    /// iterator) found a key with no value, which happens when a field key ends in a backslash.
    InvalidFieldValue {
        /// What InfluxDB took for the key: the rest of the field set.
        field_key: String,
    },
    /// A value InfluxDB's field iterator types differently from its scanner and cannot convert
    /// (`unable to parse bool value "y\"": strconv.ParseBool: ...`). InfluxDB accepts such a
    /// line and then fails the whole write with a 500; refusing the one line is kinder.
    UnconvertibleValue {
        /// `integer`, `unsigned`, `floating point` or `bool`, as InfluxDB names them.
        kind: &'static str,
        /// The value text.
        value: String,
    },
    /// A string value whose closing quote is followed by text ending in a multi-byte
    /// character: InfluxDB drops the value's last byte and would store broken UTF-8.
    BrokenString {
        /// The value text.
        value: String,
    },
    /// `bad timestamp`: a character other than a digit (or a leading `-`).
    BadTimestamp,
    /// `strconv.ParseInt: parsing "T": invalid syntax` (a lone `-`).
    TimestampSyntax {
        /// The timestamp text.
        text: String,
    },
    /// `strconv.ParseInt: parsing "T": value out of range`
    TimestampOutOfRange {
        /// The timestamp text.
        text: String,
    },
    /// `time outside range -9223372036854775806 - 9223372036854775806`
    TimeOutsideRange,
    /// `point is invalid`: something other than spaces after the timestamp.
    PointIsInvalid,
    /// A string field longer than the limit the parser was given (off by default: InfluxDB
    /// 1.x stores longer strings; 2.x and 3 refuse more than 64 KiB).
    StringTooLong {
        /// The escaped length in bytes.
        length: usize,
        /// The configured limit.
        max: usize,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::MissingMeasurement => f.write_str("missing measurement"),
            Reason::MissingFields => f.write_str("missing fields"),
            Reason::MissingTagKey => f.write_str("missing tag key"),
            Reason::MissingTagValue => f.write_str("missing tag value"),
            Reason::InvalidTagFormat => f.write_str("invalid tag format"),
            Reason::DuplicateTags => f.write_str("duplicate tags"),
            Reason::MaxKeyLengthExceeded { size } => {
                write!(f, "max key length exceeded: {size} > 65535")
            }
            Reason::MissingFieldKey => f.write_str("missing field key"),
            Reason::MissingFieldValue => f.write_str("missing field value"),
            Reason::InvalidFieldFormat => f.write_str("invalid field format"),
            Reason::UnbalancedQuotes => f.write_str("unbalanced quotes"),
            Reason::InvalidNumber => f.write_str("invalid number"),
            Reason::InvalidFloat => f.write_str("invalid float"),
            Reason::InvalidBoolean => f.write_str("invalid boolean"),
            Reason::IntegerOutOfRange { digits } => write!(
                f,
                "unable to parse integer {digits}: strconv.ParseInt: parsing \"{digits}\": value out of range"
            ),
            Reason::UnsignedOutOfRange { digits } => write!(
                f,
                "unable to parse unsigned {digits}: strconv.ParseUint: parsing \"{digits}\": value out of range"
            ),
            Reason::InvalidFieldValue { field_key } => {
                write!(f, "invalid value: field-key={field_key}")
            }
            Reason::UnconvertibleValue { kind, value } => {
                let func = match *kind {
                    "integer" => "ParseInt",
                    "unsigned" => "ParseUint",
                    "bool" => "ParseBool",
                    _ => "ParseFloat",
                };
                let quoted = go_quote(value);
                write!(
                    f,
                    "unable to parse {kind} value {quoted}: strconv.{func}: parsing {quoted}: invalid syntax"
                )
            }
            Reason::BrokenString { value } => write!(
                f,
                "invalid string value {}: dropping its last byte, as InfluxDB does, splits a UTF-8 character",
                go_quote(value)
            ),
            Reason::BadTimestamp => f.write_str("bad timestamp"),
            Reason::TimestampSyntax { text } => {
                write!(f, "strconv.ParseInt: parsing \"{text}\": invalid syntax")
            }
            Reason::TimestampOutOfRange { text } => {
                write!(f, "strconv.ParseInt: parsing \"{text}\": value out of range")
            }
            Reason::TimeOutsideRange => write!(f, "time outside range {MIN_NANOS} - {MAX_NANOS}"),
            Reason::PointIsInvalid => f.write_str("point is invalid"),
            Reason::StringTooLong { length, max } => {
                write!(f, "string field value too long: {length} > {max} bytes")
            }
        }
    }
}

/// The parts of a point, to say where the writer found an unwritable value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Element {
    /// The measurement name.
    Measurement,
    /// A tag key.
    TagKey,
    /// A tag value.
    TagValue,
    /// A field key.
    FieldKey,
    /// A field value.
    FieldValue,
    /// The point as a whole (no fields).
    Point,
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Element::Measurement => "measurement",
            Element::TagKey => "tag key",
            Element::TagValue => "tag value",
            Element::FieldKey => "field key",
            Element::FieldValue => "field value",
            Element::Point => "point",
        })
    }
}

/// InfluxDB's smallest time, `math.MinInt64 + 2` nanoseconds (models.MinNanoTime).
pub const MIN_NANOS: i64 = i64::MIN + 2;
/// InfluxDB's largest time, `math.MaxInt64 - 1` nanoseconds (models.MaxNanoTime).
pub const MAX_NANOS: i64 = i64::MAX - 1;

/// At most [`EXCERPT_BYTES`] of `s`, cut on a character boundary, with `...` when cut.
pub(crate) fn excerpt(s: &str) -> String {
    if s.len() <= EXCERPT_BYTES {
        return s.to_owned();
    }
    let mut end = EXCERPT_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Go's `%q` for the values InfluxDB quotes in its conversion errors.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_quote_matches_go() {
        assert_eq!(go_quote("y\""), r#""y\"""#);
        assert_eq!(go_quote("a\\b\n\u{0}"), r#""a\\b\n\x00""#);
    }

    #[test]
    fn excerpt_cuts_on_char_boundary() {
        let s = "é".repeat(40);
        let e = excerpt(&s);
        assert!(e.ends_with("..."));
        assert!(e.len() <= EXCERPT_BYTES + 3);
    }
}
