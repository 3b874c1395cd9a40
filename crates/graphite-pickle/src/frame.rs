//! Length-prefixed framing: a 4-byte big-endian length, then that many bytes of pickle.

use crate::error::{Error, Excerpt};

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// carbon's `PICKLE_RECEIVER_MAX_LENGTH` (1 MiB): the largest frame body carbon accepts,
/// and so what senders already keep under.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;

/// Finds complete frames in a caller's buffer without copying or owning anything.
///
/// The caller reads into its own buffer, asks for the frames in it, handles them, then
/// drops [`Frames::consumed`] bytes from the front and reads more. A length over the
/// maximum is reported from the 4 header bytes alone, before anything of that size is
/// allocated or waited for: a peer cannot make us hold a 4 GiB buffer by announcing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSplitter {
    max_frame_bytes: usize,
}

impl Default for FrameSplitter {
    fn default() -> Self {
        FrameSplitter::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

impl FrameSplitter {
    /// A splitter refusing frame bodies longer than `max_frame_bytes` (carbon: length > max
    /// closes the connection, length == max is accepted).
    pub fn new(max_frame_bytes: usize) -> FrameSplitter {
        FrameSplitter { max_frame_bytes }
    }

    /// The largest frame body accepted.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// The body length announced by `header`, checked against the maximum. `offset` is
    /// where the header sits in the stream, for the error.
    pub fn check_header(&self, header: [u8; HEADER_LEN], offset: u64) -> Result<usize, Error> {
        let len = u32::from_be_bytes(header);
        match usize::try_from(len) {
            Ok(n) if n <= self.max_frame_bytes => Ok(n),
            _ => Err(Error::FrameTooLarge {
                offset,
                len,
                max: self.max_frame_bytes,
                header: Excerpt::new(&header),
            }),
        }
    }

    /// The first frame of `buf`: `Ok(Some((body, consumed)))` when it is complete,
    /// `Ok(None)` when more bytes are needed, an error when its header is over the limit.
    /// Error offsets count from the start of `buf`.
    pub fn next_frame<'a>(&self, buf: &'a [u8]) -> Result<Option<(&'a [u8], usize)>, Error> {
        let Some((header, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = self.check_header(*header, 0)?;
        Ok(rest.get(..len).map(|body| (body, HEADER_LEN + len)))
    }

    /// Every complete frame in `buf`, in order, as slices of `buf`.
    pub fn split<'a>(&self, buf: &'a [u8]) -> Frames<'a> {
        Frames {
            splitter: *self,
            buf,
            consumed: 0,
            failed: false,
        }
    }
}

/// Iterator over the complete frames of a buffer, from [`FrameSplitter::split`].
///
/// After an error it yields nothing more: what follows an oversized header is not a frame.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    splitter: FrameSplitter,
    buf: &'a [u8],
    consumed: usize,
    failed: bool,
}

impl<'a> Frames<'a> {
    /// Bytes taken by the frames yielded so far: drop these from the front of the buffer.
    pub fn consumed(&self) -> usize {
        self.consumed
    }

    /// The bytes after the frames yielded so far: an incomplete frame, or nothing.
    pub fn remainder(&self) -> &'a [u8] {
        &self.buf[self.consumed..]
    }

    /// Bytes still missing to complete the next frame, when its header is complete and
    /// within the limit; lets a reader size its next read (or reservation) exactly.
    pub fn missing(&self) -> Option<usize> {
        let rest = self.remainder();
        let header = rest.first_chunk::<HEADER_LEN>()?;
        let len = self.splitter.check_header(*header, 0).ok()?;
        (HEADER_LEN + len)
            .checked_sub(rest.len())
            .filter(|&n| n > 0)
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<&'a [u8], Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.splitter.next_frame(self.remainder()) {
            Ok(Some((body, used))) => {
                self.consumed += used;
                Some(Ok(body))
            }
            Ok(None) => None,
            Err(mut e) => {
                self.failed = true;
                if let Error::FrameTooLarge { offset, .. } = &mut e {
                    *offset = self.consumed as u64;
                }
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_complete_frames_and_keeps_the_rest() {
        let buf = b"\x00\x00\x00\x02ab\x00\x00\x00\x00\x00\x00\x00\x03x";
        let mut frames = FrameSplitter::default().split(buf);
        assert_eq!(frames.next().unwrap().unwrap(), b"ab");
        assert_eq!(frames.next().unwrap().unwrap(), b"");
        assert!(frames.next().is_none());
        assert_eq!(frames.consumed(), 10);
        assert_eq!(frames.remainder(), b"\x00\x00\x00\x03x");
        assert_eq!(frames.missing(), Some(2));
    }

    #[test]
    fn oversized_header_is_an_error_at_its_offset() {
        let buf = b"\x00\x00\x00\x01a\x00\x00\x00\x05";
        let mut frames = FrameSplitter::new(4).split(buf);
        assert_eq!(frames.next().unwrap().unwrap(), b"a");
        let err = frames.next().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "frame length 5 at byte 5 exceeds the limit of 4 bytes (header \"\\x00\\x00\\x00\\x05\")"
        );
        assert!(!err.can_continue());
        assert!(frames.next().is_none());
        assert_eq!(frames.consumed(), 5);
    }

    #[test]
    fn length_equal_to_the_limit_is_accepted() {
        let buf = b"\x00\x00\x00\x04abcd";
        let (body, used) = FrameSplitter::new(4).next_frame(buf).unwrap().unwrap();
        assert_eq!((body, used), (&b"abcd"[..], 8));
    }
}
