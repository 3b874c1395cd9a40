//! The Graphite plaintext protocol, `path value timestamp\n`, as carbon speaks it.
//!
//! A sans-IO core: pure functions over byte slices that borrow from their input and do not
//! allocate per line, so a receiver can parse a whole socket read into a batch straight out of
//! its read buffer, and an output can encode a batch into one reused buffer.
//!
//! - [`LineSplitter`] cuts a stream into lines (bounded line length, discard mode, `\r\n`, a
//!   final unterminated line at EOF).
//! - [`parse_line`] reads one line with carbon's rules: whitespace-run separated fields,
//!   numbers as Python's `float()` reads them, `-1` or a missing timestamp meaning "now",
//!   NaN values returned for the caller to drop and count.
//! - [`TaggedPath`] validates and normalizes tagged series (`name;k=v`) byte-identically to
//!   carbon, which consistent hashing depends on.
//! - [`encode_sample`] writes lines every Graphite receiver reads the same way.
//! - With the `codec` feature (default), [`PlaintextCodec`] adapts all of it to tokio-util.
//!
//! Differences from carbon, each deliberate: a final line without `\n` is processed, an
//! over-long line is skipped instead of closing the connection, a line of two fields
//! (`path value`) is accepted as "now" (as InfluxDB's graphite service does), and only ASCII
//! whitespace separates fields and only ASCII digits make numbers (Python would also take
//! Unicode spaces and digits).
//!
//! ```
//! use graphite_plaintext::{LineSplitter, Timestamp};
//!
//! let read = b"servers.web1.cpu.user 12.5 1700000000\ncollectd.load nan 1700000000\r\nbad\n";
//! let mut splitter = LineSplitter::default();
//! let (mut ok, mut nan, mut bad) = (0, 0, 0);
//! for line in splitter.lines(read, true) {
//!     match line.and_then(|line| line.parse()) {
//!         Ok(sample) if sample.value.is_nan() => nan += 1,
//!         Ok(sample) => {
//!             assert_eq!(sample.timestamp.or_now(0.0), 1.7e9);
//!             ok += 1;
//!         }
//!         Err(e) => {
//!             assert!(e.is_continuable());
//!             assert_eq!(e.to_string(), r#"expected 3 fields "path value timestamp", found 1 at line 3: "bad""#);
//!             bad += 1;
//!         }
//!     }
//! }
//! assert_eq!((ok, nan, bad), (1, 1, 1));
//! ```

mod canonical;
mod encode;
mod error;
mod line;
mod number;
mod split;
mod tags;

#[cfg(feature = "codec")]
mod codec;

pub use canonical::{canonical_timestamp_len, canonical_value_len, is_canonical};
#[cfg(feature = "codec")]
pub use codec::{Frame, PlaintextCodec};
pub use encode::{encode_sample, encode_value};
pub use error::{Error, Excerpt, Position};
pub use line::{parse_line, parse_line_spelled, Sample, Timestamp};
pub use number::parse_float;
pub use split::{Line, LineSplitter, Lines, Split, DEFAULT_MAX_LINE_BYTES};
pub use tags::{normalize, normalize_into, Tag, TaggedPath};
