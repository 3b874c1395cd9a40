//! tokio-util adapter: [`PlaintextCodec`] for `FramedRead` / `FramedWrite`.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::encode::encode_into;
use crate::error::Error;
use crate::line::{parse_line, Sample, Timestamp};
use crate::split::{LineSplitter, Split, DEFAULT_MAX_LINE_BYTES};

/// Frames a plaintext stream into lines and encodes samples.
///
/// Decoding yields `Result<Frame, Error>` items rather than failing the decoder on a bad line:
/// tokio-util ends a `FramedRead` stream after the decoder returns `Err`, and one over-long line
/// must not cost the connection. Decoder-level `Err` is reserved for I/O. Parsing is left to the
/// consumer ([`Frame::parse`]): a frame is a zero-copy `Bytes` view of the read buffer, the
/// cheapest thing to hand over, and the sample borrows from it.
///
/// ```
/// use bytes::BytesMut;
/// use tokio_util::codec::Decoder;
/// use graphite_plaintext::PlaintextCodec;
///
/// let mut codec = PlaintextCodec::new();
/// let mut buf = BytesMut::from(&b"a.b 1 1700000000\r\nc.d 2"[..]);
/// let frame = codec.decode(&mut buf).unwrap().unwrap().unwrap();
/// assert_eq!(frame.parse().unwrap().path, "a.b");
/// assert!(codec.decode(&mut buf).unwrap().is_none());
/// let last = codec.decode_eof(&mut buf).unwrap().unwrap().unwrap();
/// assert_eq!((&last.line[..], last.number), (&b"c.d 2"[..], 2));
/// ```
#[derive(Debug, Clone, Default)]
pub struct PlaintextCodec {
    splitter: LineSplitter,
}

/// One line of the stream: its bytes (no terminator) and its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The line without `\n` / `\r\n`.
    pub line: Bytes,
    /// Its 1-based number in the stream.
    pub number: u64,
}

impl Frame {
    /// Parses the line, putting the line number into any error.
    pub fn parse(&self) -> Result<Sample<'_>, Error> {
        parse_line(&self.line).map_err(|e| e.at_line(self.number))
    }
}

impl PlaintextCodec {
    /// A codec with carbon's line limit, [`DEFAULT_MAX_LINE_BYTES`].
    pub fn new() -> Self {
        PlaintextCodec::with_max_line_bytes(DEFAULT_MAX_LINE_BYTES)
    }

    /// A codec that discards lines longer than `max_line_bytes` (the connection stays open).
    pub fn with_max_line_bytes(max_line_bytes: usize) -> Self {
        PlaintextCodec {
            splitter: LineSplitter::new(max_line_bytes),
        }
    }

    /// The configured line limit.
    pub fn max_line_bytes(&self) -> usize {
        self.splitter.max_line_bytes()
    }

    fn step(&mut self, src: &mut BytesMut, eof: bool) -> Option<Result<Frame, Error>> {
        let (found, consumed) = self.splitter.split(&src[..], eof);
        match found {
            Split::Line { start, end, number } => {
                let mut line = src.split_to(consumed);
                line.truncate(end);
                line.advance(start);
                Some(Ok(Frame {
                    line: line.freeze(),
                    number,
                }))
            }
            Split::TooLong(error) => {
                src.advance(consumed);
                Some(Err(error))
            }
            Split::NeedMore => {
                src.advance(consumed);
                None
            }
        }
    }
}

impl Decoder for PlaintextCodec {
    type Item = Result<Frame, Error>;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        Ok(self.step(src, false))
    }

    /// Unlike carbon, the last line is processed even without its `\n`.
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        Ok(self.step(src, true))
    }
}

/// Writes `path value timestamp\n`. [`Timestamp::Now`] is resolved from the system clock at
/// encoding time, because an explicit time is what every receiver understands (carbon alone
/// reads `-1` as now); fractional seconds are truncated as carbon-relay's `%d` does.
impl Encoder<Sample<'_>> for PlaintextCodec {
    type Error = Error;

    fn encode(&mut self, sample: Sample<'_>, dst: &mut BytesMut) -> Result<(), Error> {
        let timestamp = match sample.timestamp {
            Timestamp::Seconds(_) => sample.timestamp.unix_seconds(0),
            Timestamp::Now => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        };
        dst.reserve(sample.path.len() + 32);
        encode_into(sample.path, sample.value, timestamp, dst)
    }
}
