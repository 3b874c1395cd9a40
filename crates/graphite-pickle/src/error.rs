use std::fmt;

use crate::decode::Kind;

/// Everything that can go wrong in this crate, framing, unpickling and encoding alike.
///
/// Offsets of unpickling errors count bytes from the start of the pickle (the frame body,
/// after the 4-byte length), which is what `python3 -m pickletools` prints for the same
/// bytes. Offsets of framing errors count bytes from the start of the connection (or of
/// the buffer given to [`FrameSplitter`](crate::FrameSplitter)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The length prefix announces more than the configured maximum. Nothing of that size
    /// is allocated; the connection has to close because the body is never read.
    #[error("frame length {len} at byte {offset} exceeds the limit of {max} bytes (header {header}){hint}", hint = plaintext_hint(.header))]
    FrameTooLarge {
        offset: u64,
        len: u32,
        max: usize,
        header: Excerpt,
    },
    /// The stream ended inside a frame (header or body).
    #[error(
        "stream ended at byte {offset} inside a frame: {received} of {expected} bytes received"
    )]
    TruncatedFrame {
        offset: u64,
        received: usize,
        expected: usize,
    },
    /// An opcode that imports, calls or builds objects: what makes unpickling run code.
    #[error("forbidden opcode {opcode} at byte {offset} (only plain data is accepted): {excerpt}")]
    ForbiddenOpcode {
        offset: usize,
        opcode: &'static str,
        excerpt: Excerpt,
    },
    /// A byte that is no pickle opcode at all.
    #[error("unknown opcode 0x{code:02x} at byte {offset}: {excerpt}")]
    UnknownOpcode {
        offset: usize,
        code: u8,
        excerpt: Excerpt,
    },
    /// An opcode's argument runs past the end of the pickle.
    #[error(
        "pickle truncated: {opcode} at byte {offset} needs {needed}, only {available} bytes left"
    )]
    Truncated {
        offset: usize,
        opcode: &'static str,
        needed: Needed,
        available: usize,
    },
    /// The pickle ends without a STOP opcode.
    #[error("pickle ends at byte {offset} without a STOP opcode")]
    MissingStop { offset: usize },
    /// PROTO announces a protocol newer than 5.
    #[error("unsupported pickle protocol {version} at byte {offset}")]
    UnsupportedProtocol { offset: usize, version: u8 },
    /// More values and marks on the stack than [`DecodeOptions::max_stack`](crate::DecodeOptions).
    #[error("stack depth exceeds the limit of {max} at byte {offset}: {excerpt}")]
    StackLimit {
        offset: usize,
        max: usize,
        excerpt: Excerpt,
    },
    /// A memo index at or over [`DecodeOptions::max_memo`](crate::DecodeOptions).
    #[error("memo index {index} at byte {offset} exceeds the limit of {max} entries")]
    MemoLimit {
        offset: usize,
        index: u64,
        max: usize,
    },
    /// A memo read of an index that was never written.
    #[error("memo index {index} at byte {offset} was never stored")]
    MemoMissing { offset: usize, index: u64 },
    /// Any other opcode whose operands or argument make no sense.
    #[error("invalid {opcode} at byte {offset}: {reason}: {excerpt}")]
    Invalid {
        offset: usize,
        opcode: &'static str,
        reason: &'static str,
        excerpt: Excerpt,
    },
    /// The pickle is well formed but its result is not a list or tuple of items.
    #[error("pickle holds {found} at byte {offset}, expected a list or tuple of (path, (timestamp, value)) items")]
    NotAList { offset: usize, found: Kind },
    /// One point alone does not fit in a frame of the configured size.
    #[error("point {index} needs a {size}-byte frame, over the limit of {max} bytes: path {path}")]
    PointTooLarge {
        index: usize,
        size: usize,
        max: usize,
        path: Excerpt,
    },
    /// Reading or writing the socket failed (codec only).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether a reader can go on with the next frame after this error.
    ///
    /// Framing errors lose the frame boundaries (the body of an oversized frame is never
    /// read), so the connection must close. Errors inside one pickle leave the framing
    /// intact: the stream *can* continue, though PROTOCOLS.md §2 has fluxgate's listener
    /// close the connection anyway, as a sender that writes broken or hostile pickles is
    /// not worth reading further.
    pub fn can_continue(&self) -> bool {
        !matches!(
            self,
            Error::FrameTooLarge { .. } | Error::TruncatedFrame { .. } | Error::Io(_)
        )
    }

    /// Whether the pickle tried to do more than describe data (import, call, build
    /// objects): worth a louder log line than a merely broken pickle.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, Error::ForbiddenOpcode { .. })
    }

    /// The byte offset the error refers to: in the stream for framing errors, in the
    /// pickle for unpickling errors, `None` where no position applies.
    pub fn offset(&self) -> Option<u64> {
        match *self {
            Error::FrameTooLarge { offset, .. } | Error::TruncatedFrame { offset, .. } => {
                Some(offset)
            }
            Error::ForbiddenOpcode { offset, .. }
            | Error::UnknownOpcode { offset, .. }
            | Error::Truncated { offset, .. }
            | Error::MissingStop { offset }
            | Error::UnsupportedProtocol { offset, .. }
            | Error::StackLimit { offset, .. }
            | Error::MemoLimit { offset, .. }
            | Error::MemoMissing { offset, .. }
            | Error::Invalid { offset, .. }
            | Error::NotAList { offset, .. } => Some(offset as u64),
            Error::PointTooLarge { .. } | Error::Io(_) => None,
        }
    }
}

/// Someone pointing a plaintext sender (`servers.a.b 1 1700000000\n`) at the pickle port
/// produces a "length" made of four letters; saying so saves a long debugging session.
fn plaintext_hint(header: &Excerpt) -> &'static str {
    if header.len == 4
        && header
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ')
    {
        ": is a plaintext sender connected to the pickle port?"
    } else {
        ""
    }
}

/// How much an opcode needed when the pickle ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    /// A fixed-size or length-prefixed argument of this many bytes.
    Bytes(u64),
    /// A protocol-0 argument, terminated by a newline that never came.
    Line,
}

impl fmt::Display for Needed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Needed::Bytes(n) => write!(f, "{n} bytes"),
            Needed::Line => f.write_str("a line ending in \\n"),
        }
    }
}

/// Up to 16 bytes of the input where an error happened, shown escaped like a Rust or
/// Python bytes literal. Fixed size, so building an error never allocates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Excerpt {
    bytes: [u8; Excerpt::MAX],
    len: u8,
    truncated: bool,
}

impl Excerpt {
    /// Bytes kept; enough to recognise `cposix\nsystem` or a plaintext line.
    pub const MAX: usize = 16;

    /// The first [`Excerpt::MAX`] bytes of `input`.
    pub fn new(input: &[u8]) -> Excerpt {
        let len = input.len().min(Self::MAX);
        let mut bytes = [0; Self::MAX];
        bytes[..len].copy_from_slice(&input[..len]);
        Excerpt {
            bytes,
            len: len as u8,
            truncated: input.len() > Self::MAX,
        }
    }

    /// The excerpt starting at `offset` of `input` (empty past its end).
    pub(crate) fn at(input: &[u8], offset: usize) -> Excerpt {
        Excerpt::new(input.get(offset..).unwrap_or_default())
    }

    /// The bytes kept.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Whether the input went on past the bytes kept.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.as_bytes().escape_ascii())?;
        if self.truncated {
            f.write_str("...")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_escapes_like_a_bytes_literal() {
        assert_eq!(
            Excerpt::new(b"cposix\nsystem\n(Vecho pwned").to_string(),
            r#""cposix\nsystem\n(V"..."#
        );
        assert_eq!(
            Excerpt::new(b"\x80\x02'\"\\").to_string(),
            r#""\x80\x02\'\"\\""#
        );
        assert_eq!(Excerpt::at(b"abc", 7).to_string(), r#""""#);
    }

    #[test]
    fn frame_too_large_hints_at_plaintext_senders() {
        let e = Error::FrameTooLarge {
            offset: 0,
            len: u32::from_be_bytes(*b"serv"),
            max: 1 << 20,
            header: Excerpt::new(b"serv"),
        };
        assert_eq!(
            e.to_string(),
            "frame length 1936028278 at byte 0 exceeds the limit of 1048576 bytes \
             (header \"serv\"): is a plaintext sender connected to the pickle port?"
        );
        assert!(!e.can_continue());
        let e = Error::FrameTooLarge {
            offset: 8,
            len: u32::MAX,
            max: 1 << 20,
            header: Excerpt::new(b"\xff\xff\xff\xff"),
        };
        assert_eq!(
            e.to_string(),
            "frame length 4294967295 at byte 8 exceeds the limit of 1048576 bytes \
             (header \"\\xff\\xff\\xff\\xff\")"
        );
        assert_eq!(e.offset(), Some(8));
    }
}
