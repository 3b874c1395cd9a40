//! The crate's single error type, and the Python texts it reproduces.

use std::fmt;

use crate::{nameprep, Encoding};

/// A name that the reference encoder refuses (or, for [`Error::Surrogate`], that it accepts
/// but Rust cannot hold).
///
/// Each variant is one exception Python raises for the same input, so a gateway can say
/// exactly what aiographite would have said: [`Error::python_message`] is the text Python
/// raised inside the codec, [`Error::python_str`] what `str(exc)` shows to whoever called
/// `GraphiteEncoder.encode`/`decode`. `Display` prints the Python message followed by where
/// it happened, which is what an operator needs to find the bad label in a long name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An empty label (`a..b`, `.a`) or one whose ASCII form is 64 bytes or more.
    #[error("label empty or too long ({context})")]
    LabelEmptyOrTooLong {
        /// Where.
        context: Context,
    },
    /// The last label of an all-ASCII name is 64 bytes or more (Python's ASCII fast path
    /// words this one differently).
    #[error("label too long ({context})")]
    LabelTooLong {
        /// Where.
        context: Context,
    },
    /// Nameprep left a prohibited code point (RFC 3454 C.1.2, C.2.2, C.3 to C.9) in a label.
    #[error("Invalid character {} ({context})", py_char_repr(*.code_point))]
    InvalidCharacter {
        /// The first prohibited code point after mapping and normalization.
        code_point: u32,
        /// Where.
        context: Context,
    },
    /// A label mixes right-to-left and left-to-right letters (requirement 2), or has
    /// right-to-left letters but does not start and end with one (requirement 3).
    #[error("Violation of BIDI requirement {requirement} ({context})")]
    Bidi {
        /// 2 or 3, the RFC 3454 section 6 requirement.
        requirement: u8,
        /// Where.
        context: Context,
    },
    /// A non-ASCII label that starts with `xn--` after nameprep.
    #[error("Label starts with ACE prefix ({context})")]
    AcePrefix {
        /// Where.
        context: Context,
    },
    /// An `xn--` label that decodes but does not encode back to itself (ignoring ASCII
    /// case), so it was not produced by ToASCII.
    #[error("{} ({context})", round_trip_message(.ace, .reencoded))]
    NotRoundTrip {
        /// The label as given.
        ace: String,
        /// What ToASCII makes of its decoded form.
        reencoded: String,
        /// Where.
        context: Context,
    },
    /// Punycode digits ran out in the middle of a number.
    #[error("incomplete punicode string ({context})")]
    IncompletePunycode {
        /// Where.
        context: Context,
    },
    /// A character that is not a punycode digit after the last `-`.
    #[error("Invalid extended code point '{digit}' ({context})")]
    InvalidPunycodeDigit {
        /// The character (upper-cased, as Python reports it).
        digit: char,
        /// Where.
        context: Context,
    },
    /// Punycode decoded to a code point above U+10FFFF.
    #[error("Invalid character U+{value} ({context})")]
    PunycodeOutOfRange {
        /// The offending value in lowercase hex, unbounded as Python's integers are.
        value: String,
        /// Where.
        context: Context,
    },
    /// Decoding met a non-ASCII byte where Python decodes ASCII (a raw or percent-encoded
    /// non-ASCII character outside an `xn--` label's encoding).
    #[error("'ascii' codec can't decode byte 0x{byte:02x} in position {position}: ordinal not in range(128) ({context})")]
    NonAscii {
        /// The byte.
        byte: u8,
        /// Its index in the piece Python was decoding, as Python reports it.
        position: usize,
        /// Where.
        context: Context,
    },
    /// Punycode decoded to a lone surrogate. Python returns such a `str`; UTF-8, and so
    /// Rust's `String`, cannot hold it.
    #[error("decoded name contains the lone surrogate U+{code_point:04X}, which UTF-8 cannot represent ({context})")]
    Surrogate {
        /// The surrogate.
        code_point: u32,
        /// Where.
        context: Context,
    },
}

/// Which call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Making a name safe for Graphite.
    Encode,
    /// Restoring the original name.
    Decode,
}

/// Where an error happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The call.
    pub direction: Direction,
    /// The variant of the encoder.
    pub encoding: Encoding,
    /// The index of the part, when the error comes from [`crate::join`].
    pub part: Option<usize>,
    /// The index of the dot-separated label within the segment (0 for the punycode variant,
    /// which has no labels).
    pub label: usize,
    /// The byte offset of that label in the segment as the caller passed it (for decoding,
    /// in the percent-encoded text).
    pub offset: usize,
    /// The label as Python saw it (for decoding, percent-decoded), cut to at most
    /// [`Context::EXCERPT_BYTES`] bytes.
    pub excerpt: String,
}

impl Context {
    /// Labels worth keeping are at most 63 bytes; anything longer is cut here.
    pub const EXCERPT_BYTES: usize = 64;

    pub(crate) fn new(
        direction: Direction,
        encoding: Encoding,
        label: usize,
        offset: usize,
        text: &str,
    ) -> Self {
        let mut end = text.len().min(Self::EXCERPT_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut excerpt = text[..end].to_owned();
        if end < text.len() {
            excerpt.push('\u{2026}');
        }
        Context {
            direction,
            encoding,
            part: None,
            label,
            offset,
            excerpt,
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(part) = self.part {
            write!(f, "part {part}, ")?;
        }
        write!(
            f,
            "label {} at byte {}: {:?}",
            self.label, self.offset, self.excerpt
        )
    }
}

impl Error {
    /// Where the error happened.
    pub fn context(&self) -> &Context {
        match self {
            Error::LabelEmptyOrTooLong { context }
            | Error::LabelTooLong { context }
            | Error::InvalidCharacter { context, .. }
            | Error::Bidi { context, .. }
            | Error::AcePrefix { context }
            | Error::NotRoundTrip { context, .. }
            | Error::IncompletePunycode { context }
            | Error::InvalidPunycodeDigit { context, .. }
            | Error::PunycodeOutOfRange { context, .. }
            | Error::NonAscii { context, .. }
            | Error::Surrogate { context, .. } => context,
        }
    }

    fn context_mut(&mut self) -> &mut Context {
        match self {
            Error::LabelEmptyOrTooLong { context }
            | Error::LabelTooLong { context }
            | Error::InvalidCharacter { context, .. }
            | Error::Bidi { context, .. }
            | Error::AcePrefix { context }
            | Error::NotRoundTrip { context, .. }
            | Error::IncompletePunycode { context }
            | Error::InvalidPunycodeDigit { context, .. }
            | Error::PunycodeOutOfRange { context, .. }
            | Error::NonAscii { context, .. }
            | Error::Surrogate { context, .. } => context,
        }
    }

    pub(crate) fn in_part(mut self, part: usize) -> Self {
        self.context_mut().part = Some(part);
        self
    }

    /// Always true: an error concerns one name, so a gateway counts it, drops or reports
    /// that name, and carries on with the next.
    pub fn is_continuable(&self) -> bool {
        true
    }

    /// A short stable label for metrics (`fluxgate_rejected_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::LabelEmptyOrTooLong { .. } => "label_empty_or_too_long",
            Error::LabelTooLong { .. } => "label_too_long",
            Error::InvalidCharacter { .. } => "invalid_character",
            Error::Bidi { .. } => "bidi",
            Error::AcePrefix { .. } => "ace_prefix",
            Error::NotRoundTrip { .. } => "not_round_trip",
            Error::IncompletePunycode { .. } => "incomplete_punycode",
            Error::InvalidPunycodeDigit { .. } => "invalid_punycode_digit",
            Error::PunycodeOutOfRange { .. } => "punycode_out_of_range",
            Error::NonAscii { .. } => "non_ascii",
            Error::Surrogate { .. } => "surrogate",
        }
    }

    /// The message of the exception Python raises inside the codec, byte for byte (for
    /// [`Error::Surrogate`], where Python raises nothing, this crate's own message).
    pub fn python_message(&self) -> String {
        match self {
            Error::LabelEmptyOrTooLong { .. } => "label empty or too long".to_owned(),
            Error::LabelTooLong { .. } => "label too long".to_owned(),
            Error::InvalidCharacter { code_point, .. } => {
                format!("Invalid character {}", py_char_repr(*code_point))
            }
            Error::Bidi { requirement, .. } => {
                format!("Violation of BIDI requirement {requirement}")
            }
            Error::AcePrefix { .. } => "Label starts with ACE prefix".to_owned(),
            Error::NotRoundTrip { ace, reencoded, .. } => round_trip_message(ace, reencoded),
            Error::IncompletePunycode { .. } => "incomplete punicode string".to_owned(),
            Error::InvalidPunycodeDigit { digit, .. } => {
                format!("Invalid extended code point '{digit}'")
            }
            Error::PunycodeOutOfRange { value, .. } => format!("Invalid character U+{value}"),
            Error::NonAscii { byte, position, .. } => {
                format!("'ascii' codec can't decode byte 0x{byte:02x} in position {position}: ordinal not in range(128)")
            }
            Error::Surrogate { code_point, .. } => {
                format!("decoded name contains the lone surrogate U+{code_point:04X}, which UTF-8 cannot represent")
            }
        }
    }

    /// The Python exception class: `UnicodeError` or `UnicodeDecodeError` (`None` for
    /// [`Error::Surrogate`]).
    pub fn python_type(&self) -> Option<&'static str> {
        match self {
            Error::NonAscii { .. } => Some("UnicodeDecodeError"),
            Error::Surrogate { .. } => None,
            _ => Some("UnicodeError"),
        }
    }

    /// `str(exc)` of what escapes `GraphiteEncoder.encode`/`decode`: Python's codec machinery
    /// wraps one-argument `UnicodeError`s in "encoding with 'idna' codec failed (…)", twice
    /// when the punycode codec fails inside the idna one. `None` for [`Error::Surrogate`].
    pub fn python_str(&self) -> Option<String> {
        let message = self.python_message();
        let context = self.context();
        let wrap = |codec: &str, verb: &str, inner: String| {
            format!("{verb} with '{codec}' codec failed (UnicodeError: {inner})")
        };
        let verb = match context.direction {
            Direction::Encode => "encoding",
            Direction::Decode => "decoding",
        };
        Some(match self {
            Error::Surrogate { .. } => return None,
            Error::NonAscii { .. } | Error::NotRoundTrip { .. } => message,
            Error::IncompletePunycode { .. }
            | Error::InvalidPunycodeDigit { .. }
            | Error::PunycodeOutOfRange { .. } => {
                let inner = wrap("punycode", "decoding", message);
                match context.encoding {
                    Encoding::Idna => wrap("idna", "decoding", inner),
                    Encoding::Punycode => inner,
                }
            }
            _ => wrap(context.encoding.as_str(), verb, message),
        })
    }

    pub(crate) fn from_nameprep(e: nameprep::NameprepError, context: Context) -> Self {
        match e {
            nameprep::NameprepError::Prohibited(code_point) => Error::InvalidCharacter {
                code_point,
                context,
            },
            nameprep::NameprepError::Bidi2 => Error::Bidi {
                requirement: 2,
                context,
            },
            nameprep::NameprepError::Bidi3 => Error::Bidi {
                requirement: 3,
                context,
            },
        }
    }
}

/// `repr(chr(code_point))` for a code point that nameprep prohibited.
fn py_char_repr(code_point: u32) -> String {
    let escaped = match code_point {
        0x27 => return "\"'\"".to_owned(),
        0x5c => "\\\\".to_owned(),
        0x09 => "\\t".to_owned(),
        0x0a => "\\n".to_owned(),
        0x0d => "\\r".to_owned(),
        0x20..=0x7e => char::from_u32(code_point)
            .map(String::from)
            .unwrap_or_default(),
        0..=0x7f => format!("\\x{code_point:02x}"),
        _ if nameprep::is_printable_prohibited(code_point) => char::from_u32(code_point)
            .map(String::from)
            .unwrap_or_default(),
        0x80..=0xff => format!("\\x{code_point:02x}"),
        0x100..=0xffff => format!("\\u{code_point:04x}"),
        _ => format!("\\U{code_point:08x}"),
    };
    format!("'{escaped}'")
}

/// `repr(bytes)` for an ASCII label.
fn py_bytes_repr(bytes: &[u8]) -> String {
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::with_capacity(bytes.len() + 3);
    out.push('b');
    out.push(char::from(quote));
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            _ if b == quote => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(char::from(quote));
    out
}

fn round_trip_message(ace: &str, reencoded: &str) -> String {
    format!(
        "('IDNA does not round-trip', {}, {})",
        py_bytes_repr(ace.as_bytes()),
        py_bytes_repr(reencoded.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_reprs() {
        assert_eq!(py_char_repr(0x200e), "'\\u200e'");
        assert_eq!(py_char_repr(0x80), "'\\x80'");
        assert_eq!(py_char_repr(0xa0), "'\\xa0'");
        assert_eq!(py_char_repr(0xfffc), "'\u{fffc}'");
        assert_eq!(py_char_repr(0xe0001), "'\\U000e0001'");
        assert_eq!(py_char_repr(0xd800), "'\\ud800'");
        assert_eq!(py_bytes_repr(b"xn--abc-"), "b'xn--abc-'");
        assert_eq!(py_bytes_repr(b"xn--a'b"), "b\"xn--a'b\"");
        assert_eq!(py_bytes_repr(b"a'\"\\\x01"), "b'a\\'\"\\\\\\x01'");
    }

    #[test]
    fn excerpt_is_cut_on_a_char_boundary() {
        let c = Context::new(
            Direction::Encode,
            Encoding::Idna,
            0,
            0,
            &"\u{fc}".repeat(40),
        );
        assert_eq!(c.excerpt, format!("{}\u{2026}", "\u{fc}".repeat(32)));
        let c = Context::new(Direction::Encode, Encoding::Idna, 0, 0, "short");
        assert_eq!(c.excerpt, "short");
    }
}
