//! The crate's single error type.

use std::fmt;

/// Everything that can go wrong while splitting, parsing, validating or encoding plaintext.
///
/// Every variant except [`Error::Io`] concerns one line: the stream it came from is still
/// usable, so a receiver skips the line, counts it under [`Error::reason`] and reads on
/// ([`Error::is_continuable`]). Positions are attached where they are known: the parsers of a
/// single line know the byte column, and the line number is added by whoever split the stream
/// ([`crate::Line::parse`], the codec) through [`Error::at_line`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The line holds nothing but whitespace.
    #[error("empty line{pos}")]
    EmptyLine {
        /// Where the line is.
        pos: Position,
    },
    /// The line does not split into `path value [timestamp]`.
    #[error("expected 3 fields \"path value timestamp\", found {found}{pos}: \"{excerpt}\"")]
    FieldCount {
        /// How many whitespace-separated fields the line holds.
        found: usize,
        /// The start of the line.
        excerpt: Excerpt,
        /// Where the line is.
        pos: Position,
    },
    /// The path is not UTF-8 (carbon decodes every line as UTF-8 and drops what fails).
    #[error("path is not valid UTF-8{pos}: \"{excerpt}\"")]
    InvalidUtf8 {
        /// The path, invalid bytes shown as `\xNN`.
        excerpt: Excerpt,
        /// Where the path starts.
        pos: Position,
    },
    /// The value is not something Python's `float()` accepts.
    #[error("invalid value \"{excerpt}\"{pos}")]
    InvalidValue {
        /// The value field.
        excerpt: Excerpt,
        /// Where the value starts.
        pos: Position,
    },
    /// The timestamp is not something Python's `float()` accepts.
    #[error("invalid timestamp \"{excerpt}\"{pos}")]
    InvalidTimestamp {
        /// The timestamp field.
        excerpt: Excerpt,
        /// Where the timestamp starts.
        pos: Position,
    },
    /// The timestamp parses, but as NaN or infinity, which is no point in time.
    #[error("invalid timestamp \"{excerpt}\"{pos}: not a finite number")]
    NonFiniteTimestamp {
        /// The timestamp field.
        excerpt: Excerpt,
        /// Where the timestamp starts.
        pos: Position,
    },
    /// A line exceeded the configured maximum; it was (or is being) discarded up to its newline.
    #[error("line longer than {limit} bytes, discarded{pos}: \"{excerpt}\"")]
    LineTooLong {
        /// The configured `max_line_bytes`.
        limit: usize,
        /// The start of the line, to tell which sender produced it.
        excerpt: Excerpt,
        /// Where the line is.
        pos: Position,
    },
    /// A tagged path (`name;k=v`) whose name part is empty.
    #[error("empty metric name in tagged path{pos}: \"{excerpt}\"")]
    EmptyName {
        /// The path.
        excerpt: Excerpt,
        /// Where the path starts.
        pos: Position,
    },
    /// A metric name made only of `~`: carbon strips leading `~` to use the name as the `name`
    /// tag, and refuses the empty result.
    #[error("metric name \"{excerpt}\" is empty once its leading \"~\" are removed{pos}")]
    TildeName {
        /// The name.
        excerpt: Excerpt,
        /// Where the name starts.
        pos: Position,
    },
    /// A tag segment without `=`.
    #[error("invalid tag \"{excerpt}\"{pos}: expected \"key=value\"")]
    TagWithoutValue {
        /// The tag segment.
        excerpt: Excerpt,
        /// Where the segment starts.
        pos: Position,
    },
    /// A tag segment `=value`.
    #[error("invalid tag \"{excerpt}\"{pos}: empty key")]
    EmptyTagKey {
        /// The tag segment.
        excerpt: Excerpt,
        /// Where the segment starts.
        pos: Position,
    },
    /// A tag segment `key=`.
    #[error("invalid tag \"{excerpt}\"{pos}: empty value")]
    EmptyTagValue {
        /// The tag segment.
        excerpt: Excerpt,
        /// Where the segment starts.
        pos: Position,
    },
    /// A tag key holding `!` or `^` (graphite's tag query syntax uses them).
    #[error("invalid tag \"{excerpt}\"{pos}: character '{ch}' is not allowed in a key")]
    TagKeyChar {
        /// The offending character.
        ch: char,
        /// The tag segment.
        excerpt: Excerpt,
        /// Where the segment starts.
        pos: Position,
    },
    /// A tag value starting with `~` (graphite's tag query syntax uses it for regexes).
    #[error("invalid tag \"{excerpt}\"{pos}: value starts with \"~\"")]
    TagValueTilde {
        /// The tag segment.
        excerpt: Excerpt,
        /// Where the segment starts.
        pos: Position,
    },
    /// The encoder refuses a path that would corrupt the output stream.
    #[error("cannot encode path \"{excerpt}\": {problem}")]
    UnencodablePath {
        /// What is wrong with it.
        problem: &'static str,
        /// The path.
        excerpt: Excerpt,
    },
    /// Reading or writing the underlying stream failed (codec only); the stream is gone.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether the stream can go on after this error: true for anything that concerns one line,
    /// false for I/O failures.
    pub fn is_continuable(&self) -> bool {
        !matches!(self, Error::Io(_))
    }

    /// A short, stable label for the rejection counter (`fluxgate_rejected_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::EmptyLine { .. } => "empty_line",
            Error::FieldCount { .. } => "field_count",
            Error::InvalidUtf8 { .. } => "invalid_utf8",
            Error::InvalidValue { .. } => "invalid_value",
            Error::InvalidTimestamp { .. } | Error::NonFiniteTimestamp { .. } => {
                "invalid_timestamp"
            }
            Error::LineTooLong { .. } => "line_too_long",
            Error::EmptyName { .. }
            | Error::TildeName { .. }
            | Error::TagWithoutValue { .. }
            | Error::EmptyTagKey { .. }
            | Error::EmptyTagValue { .. }
            | Error::TagKeyChar { .. }
            | Error::TagValueTilde { .. } => "invalid_tag",
            Error::UnencodablePath { .. } => "invalid_path",
            Error::Io(_) => "io",
        }
    }

    /// Where the error is, if it concerns a position in the input.
    pub fn position(&self) -> Option<Position> {
        match self {
            Error::EmptyLine { pos }
            | Error::FieldCount { pos, .. }
            | Error::InvalidUtf8 { pos, .. }
            | Error::InvalidValue { pos, .. }
            | Error::InvalidTimestamp { pos, .. }
            | Error::NonFiniteTimestamp { pos, .. }
            | Error::LineTooLong { pos, .. }
            | Error::EmptyName { pos, .. }
            | Error::TildeName { pos, .. }
            | Error::TagWithoutValue { pos, .. }
            | Error::EmptyTagKey { pos, .. }
            | Error::EmptyTagValue { pos, .. }
            | Error::TagKeyChar { pos, .. }
            | Error::TagValueTilde { pos, .. } => Some(*pos),
            Error::UnencodablePath { .. } | Error::Io(_) => None,
        }
    }

    fn position_mut(&mut self) -> Option<&mut Position> {
        match self {
            Error::EmptyLine { pos }
            | Error::FieldCount { pos, .. }
            | Error::InvalidUtf8 { pos, .. }
            | Error::InvalidValue { pos, .. }
            | Error::InvalidTimestamp { pos, .. }
            | Error::NonFiniteTimestamp { pos, .. }
            | Error::LineTooLong { pos, .. }
            | Error::EmptyName { pos, .. }
            | Error::TildeName { pos, .. }
            | Error::TagWithoutValue { pos, .. }
            | Error::EmptyTagKey { pos, .. }
            | Error::EmptyTagValue { pos, .. }
            | Error::TagKeyChar { pos, .. }
            | Error::TagValueTilde { pos, .. } => Some(pos),
            Error::UnencodablePath { .. } | Error::Io(_) => None,
        }
    }

    /// Attaches the 1-based line number, which only the caller that split the stream knows.
    #[must_use]
    pub fn at_line(mut self, line: u64) -> Self {
        if let Some(pos) = self.position_mut() {
            pos.line = Some(line);
        }
        self
    }

    /// Shifts the column by `offset` bytes, for an error found in a part of a line (a path
    /// validated on its own) that the caller wants reported against the whole line.
    #[must_use]
    pub fn shifted(mut self, offset: usize) -> Self {
        if let Some(pos) = self.position_mut() {
            if let Some(column) = pos.column.as_mut() {
                *column += offset;
            }
        }
        self
    }
}

/// Where in the input an error is: 1-based line number and 1-based byte column, each known or
/// not. Displays as ` at line 3, column 12` (leading space included, empty when nothing is
/// known) so messages read naturally with or without it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// 1-based line number in the stream.
    pub line: Option<u64>,
    /// 1-based byte offset in the line.
    pub column: Option<usize>,
}

impl Position {
    pub(crate) fn column(offset: usize) -> Self {
        Position {
            line: None,
            column: Some(offset + 1),
        }
    }

    pub(crate) fn line(line: u64) -> Self {
        Position {
            line: Some(line),
            column: None,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, " at line {line}, column {column}"),
            (Some(line), None) => write!(f, " at line {line}"),
            (None, Some(column)) => write!(f, " at column {column}"),
            (None, None) => Ok(()),
        }
    }
}

/// A short, printable copy of the offending input for logs: at most [`Excerpt::MAX_BYTES`]
/// bytes (then `...`), control characters, quotes and invalid UTF-8 escaped so a hostile
/// sender cannot forge log lines. Built only on the error path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt(String);

impl Excerpt {
    /// How much of the input an excerpt keeps.
    pub const MAX_BYTES: usize = 64;

    pub(crate) fn new(input: &[u8]) -> Self {
        let truncated = input.len() > Self::MAX_BYTES;
        let input = &input[..input.len().min(Self::MAX_BYTES)];
        let mut out = String::with_capacity(input.len() + 8);
        for chunk in input.utf8_chunks() {
            for ch in chunk.valid().chars() {
                match ch {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    '\n' => out.push_str("\\n"),
                    c if c.is_control() => {
                        out.push_str(&format!("\\u{{{:x}}}", c as u32));
                    }
                    c => out.push(c),
                }
            }
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
        if truncated {
            out.push_str("...");
        }
        Excerpt(out)
    }

    /// The escaped text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_escapes_and_truncates() {
        assert_eq!(
            Excerpt::new(b"a\"b\\c\t\r\n\x00\xff").as_str(),
            "a\\\"b\\\\c\\t\\r\\n\\u{0}\\xff"
        );
        let long = [b'x'; 100];
        assert_eq!(
            Excerpt::new(&long).as_str(),
            format!("{}...", "x".repeat(64))
        );
        // A multi-byte character cut by the limit shows as escaped bytes, not as garbage.
        let mut cut = vec![b'x'; 63];
        cut.extend_from_slice("é".as_bytes());
        assert_eq!(
            Excerpt::new(&cut).as_str(),
            format!("{}\\xc3...", "x".repeat(63))
        );
    }

    #[test]
    fn position_display() {
        let pos = Position::column(4);
        assert_eq!(pos.to_string(), " at column 5");
        assert_eq!(Position::line(3).to_string(), " at line 3");
        let both = Position {
            line: Some(3),
            column: Some(5),
        };
        assert_eq!(both.to_string(), " at line 3, column 5");
        assert_eq!(Position::default().to_string(), "");
    }
}
