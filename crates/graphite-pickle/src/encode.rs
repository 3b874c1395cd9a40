//! Protocol-2 frames for carbon: what carbon-relay itself sends.

use std::ops::DerefMut;

use bytes::BufMut;

use crate::error::{Error, Excerpt};
use crate::frame::{DEFAULT_MAX_FRAME_BYTES, HEADER_LEN};
use crate::opcodes as op;

/// carbon's `MAX_DATAPOINTS_PER_MESSAGE`: carbon-relay never puts more in one frame.
pub const DEFAULT_MAX_POINTS: usize = 500;

/// `PROTO 2`, `EMPTY_LIST`, `MARK` before the items; `APPENDS`, `STOP` after.
const FRAME_OVERHEAD: usize = 6;

/// Splits points into length-prefixed protocol-2 frames carbon's unpickler reads.
///
/// Each point is written as Python 3's pickler writes `(str, (ts, value))`: BINUNICODE,
/// then the timestamp as BININT when it is a whole number in i32 range (what carbon's
/// `float()` turns back into the same float) else BINFLOAT, the value as BINFLOAT (every
/// f64, NaN and infinities included, round trips bit for bit), TUPLE2, TUPLE2. Python's
/// memo opcodes are left out: nothing is shared, and carbon does not need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameEncoder {
    max_points: usize,
    max_frame_bytes: usize,
}

impl Default for FrameEncoder {
    fn default() -> Self {
        FrameEncoder {
            max_points: DEFAULT_MAX_POINTS,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

/// What one [`FrameEncoder::encode`] call wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EncodeSummary {
    pub frames: usize,
    pub points: usize,
    /// Points left out because alone they exceed the frame limit (a path near 1 MiB):
    /// carbon would refuse the frame, and with it the connection. Count them.
    pub oversized: usize,
}

impl FrameEncoder {
    /// At most 500 points and 1 MiB of pickle per frame, as carbon-relay.
    pub fn new() -> FrameEncoder {
        FrameEncoder::default()
    }

    /// At most `n` points per frame (at least 1).
    pub fn with_max_points(self, n: usize) -> FrameEncoder {
        FrameEncoder {
            max_points: n.max(1),
            ..self
        }
    }

    /// At most `n` bytes of pickle per frame, the 4-byte header not counted (as carbon's
    /// `PICKLE_RECEIVER_MAX_LENGTH`). Capped at `u32::MAX`, the most a header can say.
    pub fn with_max_frame_bytes(self, n: usize) -> FrameEncoder {
        FrameEncoder {
            max_frame_bytes: n.min(u32::MAX as usize),
            ..self
        }
    }

    pub fn max_points(&self) -> usize {
        self.max_points
    }

    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Pickle bytes one point takes inside a frame.
    pub fn point_size(path: &str, timestamp: f64) -> usize {
        let ts = if small_int(timestamp).is_some() { 5 } else { 9 };
        5 + path.len() + ts + 9 + 2
    }

    /// Whether a point can be sent at all: alone in a frame, it fits the limit.
    pub fn fits(&self, path: &str, timestamp: f64) -> bool {
        FRAME_OVERHEAD + Self::point_size(path, timestamp) <= self.max_frame_bytes
    }

    /// Appends frames holding `points` (`(path, timestamp, value)`) to `out`, in order,
    /// opening a new frame whenever the next point would pass either limit. Writes
    /// nothing for no points. Points that can never fit are left out and counted.
    pub fn encode<'p, I, B>(&self, points: I, out: &mut B) -> EncodeSummary
    where
        I: IntoIterator<Item = (&'p str, f64, f64)>,
        B: BufMut + DerefMut<Target = [u8]>,
    {
        let mut summary = EncodeSummary::default();
        // Start of the open frame's header in `out`, its pickle size, its point count.
        let mut open: Option<usize> = None;
        let mut size = 0;
        let mut count = 0;
        for (path, timestamp, value) in points {
            let need = Self::point_size(path, timestamp);
            if FRAME_OVERHEAD + need > self.max_frame_bytes {
                summary.oversized += 1;
                continue;
            }
            if let Some(start) = open {
                if count == self.max_points || size + need > self.max_frame_bytes {
                    close_frame(out, start);
                    open = None;
                }
            }
            if open.is_none() {
                open = Some(out.len());
                out.put_slice(&[0, 0, 0, 0, op::PROTO, 2, op::EMPTY_LIST, op::MARK]);
                size = FRAME_OVERHEAD;
                count = 0;
                summary.frames += 1;
            }
            write_point(out, path, timestamp, value);
            size += need;
            count += 1;
            summary.points += 1;
        }
        if let Some(start) = open {
            close_frame(out, start);
        }
        summary
    }

    /// Checks a batch before sending it: the first point (`(path, timestamp)`) that can
    /// never fit a frame, as the error to report.
    pub fn check_sizes<'p, I>(&self, points: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = (&'p str, f64)>,
    {
        for (index, (path, timestamp)) in points.into_iter().enumerate() {
            if !self.fits(path, timestamp) {
                return Err(Error::PointTooLarge {
                    index,
                    size: FRAME_OVERHEAD + Self::point_size(path, timestamp),
                    max: self.max_frame_bytes,
                    path: Excerpt::new(path.as_bytes()),
                });
            }
        }
        Ok(())
    }
}

/// The timestamp as an i32 when BININT carries it exactly (`-0.0` does not).
fn small_int(ts: f64) -> Option<i32> {
    let i = ts as i32;
    (f64::from(i).to_bits() == ts.to_bits()).then_some(i)
}

#[inline]
fn write_point<B: BufMut>(out: &mut B, path: &str, timestamp: f64, value: f64) {
    out.put_u8(op::BINUNICODE);
    out.put_u32_le(path.len() as u32);
    out.put_slice(path.as_bytes());
    match small_int(timestamp) {
        Some(i) => {
            out.put_u8(op::BININT);
            out.put_i32_le(i);
        }
        None => {
            out.put_u8(op::BINFLOAT);
            out.put_f64(timestamp);
        }
    }
    out.put_u8(op::BINFLOAT);
    out.put_f64(value);
    out.put_slice(&[op::TUPLE2, op::TUPLE2]);
}

fn close_frame<B: BufMut + DerefMut<Target = [u8]>>(out: &mut B, start: usize) {
    out.put_slice(&[op::APPENDS, op::STOP]);
    let len = (out.len() - start - HEADER_LEN) as u32;
    out[start..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_point_frame_is_what_python_writes_minus_the_memo() {
        let mut out = Vec::new();
        let s = FrameEncoder::new().encode([("a.b", 1_700_000_000.0, 12.5)], &mut out);
        assert_eq!(
            s,
            EncodeSummary {
                frames: 1,
                points: 1,
                oversized: 0
            }
        );
        let mut want = vec![0, 0, 0, 0];
        want.extend_from_slice(
            b"\x80\x02](X\x03\x00\x00\x00a.bJ\x00\xf1SeG@)\x00\x00\x00\x00\x00\x00\x86\x86e.",
        );
        let len = (want.len() - 4) as u32;
        want[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(out, want);
        assert_eq!(
            len as usize,
            FRAME_OVERHEAD + FrameEncoder::point_size("a.b", 1.7e9)
        );
    }

    #[test]
    fn no_points_no_frames() {
        let mut out = Vec::new();
        let s = FrameEncoder::new().encode(std::iter::empty(), &mut out);
        assert_eq!(s, EncodeSummary::default());
        assert!(out.is_empty());
    }

    #[test]
    fn timestamps_outside_i32_or_fractional_are_floats() {
        for ts in [1.5, -0.0, 3e9, f64::NAN] {
            assert_eq!(small_int(ts), None, "{ts}");
        }
        assert_eq!(small_int(-1.0), Some(-1));
        assert_eq!(small_int(0.0), Some(0));
    }

    #[test]
    fn oversized_points_are_left_out_and_counted() {
        let enc = FrameEncoder::new().with_max_frame_bytes(64);
        let long = "x".repeat(100);
        let mut out = Vec::new();
        let s = enc.encode(
            [("a", 1.0, 1.0), (long.as_str(), 1.0, 2.0), ("b", 2.0, 3.0)],
            &mut out,
        );
        assert_eq!((s.frames, s.points, s.oversized), (1, 2, 1));
        let err = enc
            .check_sizes([("a", 1.0), (long.as_str(), 1.0)])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "point 1 needs a 127-byte frame, over the limit of 64 bytes: \
             path \"xxxxxxxxxxxxxxxx\"..."
        );
    }
}
