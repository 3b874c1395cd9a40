//! tokio-util adapter: newline framing with InfluxDB's rules, a length limit, and discard mode.
//!
//! The decoder yields **raw lines** ([`RawLine`]: a `Bytes` slice of the input plus its line
//! number and stream offset), not parsed points. A [`ParsedLine`] borrows from its text, so a
//! decoder that owned parsed points would have to copy every name and string; handing out the
//! frozen slice costs nothing, [`RawLine::parse`] then parses it without copying, and a gateway
//! that only routes can forward the bytes untouched. Framing already follows InfluxDB's
//! `scanLine` (a newline inside a string value or after a backslash does not end a point), so
//! parsing a frame gives exactly what parsing the whole body would.
//!
//! Line-level problems (too long, not UTF-8) arrive as `Ok(Some(Err(e)))` items rather than
//! decoder errors, because tokio-util's `FramedRead` ends the stream after a decoder error and a
//! bad line must never stop the rest of a body. A too-long line is reported once, as soon as it
//! exceeds the limit, and its remaining bytes are discarded as they arrive (memory stays bounded
//! by the limit); blank and `#` comment lines are skipped.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::parse::{parse_located, ParseOptions, ParsedLine};
use crate::split::Splitter;
use crate::write::{write_line, WriteOptions};
use crate::Error;

/// Default line limit: 1 MiB, well above InfluxDB's 64 KiB series key plus a 64 KiB string.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 1024 * 1024;

/// One line of a stream, as received (without leading whitespace or the newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    bytes: Bytes,
    line_number: usize,
    offset: u64,
}

impl RawLine {
    /// The line's text.
    pub fn as_str(&self) -> &str {
        // The decoder checked the bytes are UTF-8 before making a RawLine.
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }

    /// The line's bytes, shared with the read buffer.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// 1-based line number in the stream.
    pub fn line_number(&self) -> usize {
        self.line_number
    }

    /// Byte offset of the line in the stream.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Parses the line (timestamps checked as nanoseconds).
    pub fn parse(&self) -> Result<ParsedLine<'_>, Error> {
        self.parse_with(&ParseOptions::default())
    }

    /// Parses the line with options.
    pub fn parse_with(&self, options: &ParseOptions) -> Result<ParsedLine<'_>, Error> {
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        parse_located(self.as_str(), self.line_number, offset, options)
    }
}

/// Decoder of line protocol streams into [`RawLine`]s, and encoder of points and raw lines.
#[derive(Debug, Clone)]
pub struct LineProtocolCodec {
    max_length: usize,
    write: WriteOptions,
    splitter: Splitter,
    /// How much of the buffer's current line has been scanned.
    scanned: usize,
    /// The current line went over the limit: drop it up to its end.
    discarding: bool,
    /// Number of the line that starts at the front of the buffer.
    line_number: usize,
    /// Stream offset of the front of the buffer.
    offset: u64,
}

impl Default for LineProtocolCodec {
    fn default() -> Self {
        LineProtocolCodec::new()
    }
}

impl LineProtocolCodec {
    /// A codec with the default limit ([`DEFAULT_MAX_LINE_LENGTH`]).
    pub fn new() -> Self {
        LineProtocolCodec::with_max_length(DEFAULT_MAX_LINE_LENGTH)
    }

    /// A codec refusing lines longer than `max_length` bytes (without the newline). The limit
    /// is what bounds the read buffer, so it is a memory-safety setting, not a nicety.
    pub fn with_max_length(max_length: usize) -> Self {
        LineProtocolCodec {
            max_length,
            write: WriteOptions::default(),
            splitter: Splitter::default(),
            scanned: 0,
            discarding: false,
            line_number: 1,
            offset: 0,
        }
    }

    /// Options for the encoder.
    pub fn write_options(mut self, options: WriteOptions) -> Self {
        self.write = options;
        self
    }

    /// The limit.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Drops `n` bytes from the front of `buf`, keeping line and offset counts.
    fn consume(&mut self, buf: &mut BytesMut, n: usize) -> BytesMut {
        let frame = buf.split_to(n);
        self.line_number += memchr::memchr_iter(b'\n', &frame).count();
        self.offset += n as u64;
        frame
    }

    /// Turns the bytes of one line (newline excluded) into an item, or `None` for a blank or
    /// comment line.
    fn item(
        &self,
        mut frame: Bytes,
        line_number: usize,
        offset: u64,
    ) -> Option<Result<RawLine, Error>> {
        // A line ending in an escaped newline keeps the backslash, not the newline (InfluxDB
        // strips one trailing newline from every line it splits out).
        if frame.last() == Some(&b'\n') {
            frame.truncate(frame.len() - 1);
        }
        let ws = frame
            .iter()
            .position(|&c| !matches!(c, b' ' | b'\t' | 0))
            .unwrap_or(frame.len());
        if ws == frame.len() || frame[ws] == b'#' {
            return None;
        }
        if let Err(e) = std::str::from_utf8(&frame) {
            let bad = e.valid_up_to();
            return Some(Err(Error::InvalidUtf8 {
                line_number,
                offset: offset + bad as u64,
                excerpt: crate::error::excerpt(&String::from_utf8_lossy(&frame[ws..])),
            }));
        }
        Some(Ok(RawLine {
            bytes: frame.slice(ws..),
            line_number,
            offset: offset + ws as u64,
        }))
    }
}

impl Decoder for LineProtocolCodec {
    type Item = Result<RawLine, Error>;
    type Error = Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        loop {
            match self.splitter.find_end(buf, self.scanned) {
                Some(end) => {
                    let (number, offset) = (self.line_number, self.offset);
                    self.scanned = 0;
                    let frame = self.consume(buf, end + 1);
                    if self.discarding {
                        self.discarding = false;
                        continue;
                    }
                    if end > self.max_length {
                        return Ok(Some(Err(Error::LineTooLong {
                            line_number: number,
                            offset,
                            max_length: self.max_length,
                        })));
                    }
                    let mut frame = frame.freeze();
                    frame.truncate(end);
                    match self.item(frame, number, offset) {
                        Some(item) => return Ok(Some(item)),
                        None => continue,
                    }
                }
                None if self.discarding => {
                    // The splitter keeps its state; the bytes go.
                    let n = buf.len();
                    self.consume(buf, n);
                    self.scanned = 0;
                    return Ok(None);
                }
                None if buf.len() > self.max_length => {
                    let (number, offset) = (self.line_number, self.offset);
                    let n = buf.len();
                    self.consume(buf, n);
                    self.scanned = 0;
                    self.discarding = true;
                    return Ok(Some(Err(Error::LineTooLong {
                        line_number: number,
                        offset,
                        max_length: self.max_length,
                    })));
                }
                None => {
                    self.scanned = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        if let Some(item) = self.decode(buf)? {
            return Ok(Some(item));
        }
        // The last line has no newline (or ends inside a string, or after a backslash).
        let discarding = std::mem::take(&mut self.discarding);
        self.splitter = Splitter::default();
        self.scanned = 0;
        if buf.is_empty() || discarding {
            buf.clear();
            return Ok(None);
        }
        let (number, offset) = (self.line_number, self.offset);
        let n = buf.len();
        let frame = self.consume(buf, n).freeze();
        Ok(self.item(frame, number, offset))
    }
}

/// Writes a point as canonical line protocol (with the codec's [`WriteOptions`]).
impl Encoder<&ParsedLine<'_>> for LineProtocolCodec {
    type Error = Error;

    fn encode(&mut self, line: &ParsedLine<'_>, dst: &mut BytesMut) -> Result<(), Error> {
        write_line(dst, line, &self.write).map(|_| ())
    }
}

/// Forwards a raw line unchanged, with its newline.
impl Encoder<RawLine> for LineProtocolCodec {
    type Error = Error;

    fn encode(&mut self, line: RawLine, dst: &mut BytesMut) -> Result<(), Error> {
        dst.reserve(line.bytes.len() + 1);
        dst.extend_from_slice(line.bytes.chunk());
        dst.extend_from_slice(b"\n");
        Ok(())
    }
}
