//! tokio-util adapter: frames in, frames out.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec;

use crate::decode::Point;
use crate::encode::FrameEncoder;
use crate::error::Error;
use crate::frame::{FrameSplitter, HEADER_LEN};

/// Length-prefixed pickle frames for `FramedRead` / `FramedWrite`.
///
/// Decoding yields each frame's pickle as [`Bytes`], not points: points borrow from the
/// frame, and a codec item cannot borrow from the codec's buffer. Decode the frame with a
/// [`Decoder`](crate::Decoder) kept beside the stream; its errors concern one frame only
/// and leave the stream readable, while this codec's errors end the stream (an oversized
/// length is reported from the header alone, before any of it is buffered).
///
/// Encoding takes a batch of points and writes as many frames as the
/// [`FrameEncoder`] limits require.
#[derive(Debug, Clone, Default)]
pub struct PickleCodec {
    splitter: FrameSplitter,
    encoder: FrameEncoder,
    /// Stream bytes consumed by frames already returned, for error offsets.
    offset: u64,
}

impl PickleCodec {
    /// A codec with carbon's limits: 1 MiB frames in, 500 points and 1 MiB per frame out.
    pub fn new() -> PickleCodec {
        PickleCodec::default()
    }

    /// Incoming frames longer than `max_frame_bytes` are refused.
    pub fn with_max_frame_bytes(self, max_frame_bytes: usize) -> PickleCodec {
        PickleCodec {
            splitter: FrameSplitter::new(max_frame_bytes),
            ..self
        }
    }

    /// Limits for the frames written.
    pub fn with_encoder(self, encoder: FrameEncoder) -> PickleCodec {
        PickleCodec { encoder, ..self }
    }

    pub fn max_frame_bytes(&self) -> usize {
        self.splitter.max_frame_bytes()
    }

    pub fn encoder(&self) -> FrameEncoder {
        self.encoder
    }
}

impl codec::Decoder for PickleCodec {
    type Item = Bytes;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        let Some(header) = src.first_chunk::<HEADER_LEN>() else {
            src.reserve(HEADER_LEN - src.len());
            return Ok(None);
        };
        let len = self.splitter.check_header(*header, self.offset)?;
        let total = HEADER_LEN + len;
        if src.len() < total {
            // Only now, with the length known to be within the limit, make room for it.
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        self.offset += total as u64;
        Ok(Some(src.split_to(len).freeze()))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, Error> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => {
                let expected = match src.first_chunk::<HEADER_LEN>() {
                    Some(h) => HEADER_LEN + u32::from_be_bytes(*h) as usize,
                    None => HEADER_LEN,
                };
                let received = src.len();
                // Report once; the partial frame is dropped, as carbon drops it.
                src.clear();
                Err(Error::TruncatedFrame {
                    offset: self.offset + received as u64,
                    received,
                    expected,
                })
            }
        }
    }
}

impl<'p, 'a> codec::Encoder<&'p [Point<'a>]> for PickleCodec {
    type Error = Error;

    /// Refuses the whole batch, writing nothing, when one point can never fit a frame;
    /// use [`FrameEncoder::encode`] directly to leave such points out and count them.
    fn encode(&mut self, points: &'p [Point<'a>], dst: &mut BytesMut) -> Result<(), Error> {
        self.encoder
            .check_sizes(points.iter().map(|p| (&*p.path, p.timestamp)))?;
        self.encoder
            .encode(points.iter().map(|p| (&*p.path, p.timestamp, p.value)), dst);
        Ok(())
    }
}
