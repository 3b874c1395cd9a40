//! InfluxDB line protocol: a zero-copy parser that reads lines exactly as InfluxDB 1.x does
//! (same verdicts, same values, same error messages), a canonical writer, timestamp
//! precisions, and a tokio-util codec.
//!
//! ```text
//! measurement[,tag=value...] field=value[,field=value...] [timestamp]
//! ```
//!
//! ```
//! use line_protocol::{parse_lines, FieldValue, LineWriter};
//!
//! let body = "cpu,host=a usage=12.5,cores=8i 1700000000000000000\nbad\n";
//! let mut lines = parse_lines(body);
//! let cpu = lines.next().unwrap().unwrap();
//! assert_eq!(cpu.measurement, "cpu");
//! assert_eq!(cpu.tag("host").unwrap(), "a");
//! assert_eq!(cpu.field("cores"), Some(&FieldValue::I64(8)));
//! let err = lines.next().unwrap().unwrap_err();
//! assert_eq!(err.to_string(), "unable to parse 'bad': missing fields");
//! assert_eq!(err.line_number(), Some(2));
//!
//! let mut out = Vec::new();
//! cpu.write_to(&mut out, &Default::default()).unwrap();
//! assert_eq!(out, b"cpu,host=a usage=12.5,cores=8i 1700000000000000000\n");
//!
//! LineWriter::new(&mut out).measurement("mem").field_u64("free", 1).finish().unwrap();
//! ```
//!
//! # Compatibility
//!
//! The reference is InfluxDB 1.x's `models/points.go`, checked against a running `influxd`
//! 1.6.7: `tests/influxd_corpus.rs` replays 4247 recorded bodies and requires the same verdict,
//! the same error message byte for byte and the same stored values. That includes InfluxDB's
//! quirks: `.5` and `5.` are floats, `f="a"b` stores the string `a"`, a backslash escapes
//! whatever byte follows it (a newline too, which joins two lines), `\\` outside string
//! values stays two backslashes, and `\r` before the newline makes a line invalid. The
//! deliberate differences:
//!
//! - unsigned integers (`12u`) are accepted, as InfluxDB 2.x and 3 do (1.x OSS needs a build
//!   flag); [`ParseOptions::accept_unsigned`] turns that off;
//! - a field whose key is empty (only possible after a tab) is dropped, as 1.8 does, and a
//!   point left with no field is `missing fields`;
//! - where a field key ends in a backslash, InfluxDB's field iterator can read a value it
//!   cannot convert and then fails the whole write with a 500; here only that line is refused
//!   (with the engine's message), and likewise a string value that InfluxDB would cut inside a
//!   UTF-8 character.
//!
//! How this reading differs from InfluxDB 3's (the `influxdb-line-protocol` crate) is listed
//! in `tests/differential.rs`.
//!
//! InfluxDB 1.x also refuses some parsed points when it stores them (a field or tag named
//! `time`, a field type conflict); that is storage, not syntax, and not checked here.

mod error;
mod escaped;
mod number;
mod parse;
mod precision;
mod split;
mod write;

#[cfg(feature = "codec")]
pub mod codec;

#[doc(hidden)]
pub mod fuzzing;

pub use error::{Element, Error, Reason, MAX_NANOS, MIN_NANOS};
pub use escaped::{Chunks, EscapedStr};
pub use parse::{
    parse_line, parse_line_with, parse_lines, parse_lines_bytes, FieldSet, FieldValue, Lines,
    ParseOptions, ParsedLine, TagSet, MAX_KEY_LENGTH, MAX_STRING_BYTES_V2,
};
pub use precision::Precision;
pub use split::{split_lines, SplitLines};
pub use write::{write_line, FieldWriter, LineBuffer, LineWriter, TagWriter, WriteOptions};

#[cfg(feature = "codec")]
pub use codec::{LineProtocolCodec, RawLine};
