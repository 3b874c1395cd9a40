//! Graphite's pickle protocol (carbon's TCP port 2004): framing, a data-only unpickler,
//! and the protocol-2 encoder carbon-relay's peers expect.
//!
//! A frame is a 4-byte big-endian length and a pickle of
//! `[(path, (timestamp, value)), ...]`. Senders write it every way Python can:
//! carbon-relay and aiographite protocol 2, statsd a hand-written protocol 0 (value as a
//! quoted string, timestamp as a `L`-suffixed long), Python 3 protocol 4/5 by default,
//! other languages' encoders their own subsets. All of protocols 0 to 5 decode here,
//! lists or tuples, str or bytes paths, and anything carbon's `float()` takes as a number
//! (ints, longs of any size, floats, numeric strings, bools).
//!
//! Where this crate knowingly departs from carbon: an item must be a tuple or list
//! (carbon unpacks any 2-element iterable, a 2-character string included); a bytes path
//! is read as UTF-8 (carbon under Python 3 fails on it); text that is not UTF-8 skips
//! its item rather than the frame; numeric strings must use ASCII digits and
//! whitespace. Timestamps and values come out exactly as sent: dropping NaN and
//! reading `-1` as "now" are the caller's policy.
//!
//! - [`FrameSplitter`]: complete frames out of a caller's buffer, as borrowed slices; an
//!   over-limit length is an error from the 4 header bytes alone.
//! - [`Decoder`]: one pickle to [`Point`]s borrowing their paths from the frame, plus a
//!   [`Skipped`] entry (index, path, reason) for each item carbon would also have left out.
//! - [`FrameEncoder`]: points to protocol-2 frames of at most 500 points and 1 MiB.
//! - `PickleCodec` (feature `codec`, on by default): the tokio-util adapter.
//!
//! # Safety of unpickling
//!
//! Unpickling untrusted bytes with Python runs code: `GLOBAL os system` + `REDUCE` is all
//! it takes. This decoder only understands data. Opcodes that import, call or build
//! objects (GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ, NEWOBJ_EX, PERSID,
//! BINPERSID, EXT1/2/4) end the frame with [`Error::ForbiddenOpcode`] naming the opcode
//! and its offset; bytes that are no opcode end it with [`Error::UnknownOpcode`]. The
//! stack and the memo are capped ([`DecodeOptions`]), no length field is ever used to
//! allocate, and nothing recurses over values, so deep nesting and self-referencing
//! lists cost nothing. carbon is stricter than plain `pickle` too (its `SafeUnpickler`
//! refuses every global but two), so no legitimate sender needs those opcodes; one
//! consequence is shared with carbon: Python 3 pickles `bytes` below protocol 3 as a
//! `_codecs.encode` call, which both refuse.
//!
//! # Why not `serde-pickle`
//!
//! `serde-pickle` 1.2 (in the workspace) was checked first. It is a fine general
//! decoder, but not this one:
//! - It is not data-only. GLOBAL and STACK_GLOBAL are accepted for any module and name;
//!   REDUCE on an unknown global leaves an opaque placeholder (which
//!   `replace_unresolved_globals()` turns into `None`, otherwise decoding fails late,
//!   when the value is converted); INST, OBJ, NEWOBJ, NEWOBJ_EX and BUILD are emulated
//!   "best effort". Nothing runs, but a hostile frame is not recognised as one.
//! - It has no stack-depth or memo limits: a memo index is a map key, the stack grows
//!   with the input.
//! - It builds an owned `Value` tree (a `String` per path, a `Vec` per tuple) and,
//!   through serde, fails the whole frame on the first item of the wrong shape; carbon
//!   skips that item and keeps the rest.
//! - Protocol 0/2 `STRING`/`BINSTRING` paths (statsd, Python 2 carbon-relay) come out as
//!   bytes unless `decode_strings()` is set.
//!
//! So the decoder here is a small purpose-built opcode machine (zero-copy, item-by-item,
//! strict), and `serde-pickle` serves as an independent cross-check in the tests.

mod decode;
mod encode;
mod error;
mod frame;
mod number;
mod opcodes;

#[cfg(feature = "codec")]
mod codec;

pub use decode::{
    decode, DecodeOptions, Decoded, Decoder, Field, Kind, Point, SkipReason, Skipped, Summary,
};
pub use encode::{EncodeSummary, FrameEncoder, DEFAULT_MAX_POINTS};
pub use error::{Error, Excerpt, Needed};
pub use frame::{FrameSplitter, Frames, DEFAULT_MAX_FRAME_BYTES, HEADER_LEN};

#[cfg(feature = "codec")]
pub use codec::PickleCodec;
