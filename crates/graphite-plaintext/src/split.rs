//! Splitting a byte stream into lines, without I/O and without allocating.

use crate::error::{Error, Excerpt, Position};
use crate::line::{parse_line, Sample};

/// carbon's `LineOnlyReceiver.MAX_LENGTH`: senders already keep under it.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16384;

/// A resumable line splitter in the style of csv-core: the caller owns the buffer, hands in
/// whatever it has (plus whether the stream ended), and is told how many bytes were consumed.
/// Unconsumed bytes (a partial last line) must be handed in again, at the start of the next
/// call's input, once more data has arrived.
///
/// Why a state machine rather than `read_line`: a receiver parses a whole socket read into one
/// batch, straight out of its read buffer, with no per-line copies or allocations, and must stay
/// bounded in memory against a sender that never sends `\n`.
///
/// - A line is the bytes before `\n`, minus one trailing `\r` (collectd sends `\r\n`).
/// - A line longer than `max_line_bytes` (counted without its `\n` or `\r\n`) is reported once
///   as [`Error::LineTooLong`] and skipped up to its newline; the skipping carries across calls,
///   so the buffer never has to hold more than `max_line_bytes + 1` bytes of one line.
/// - At end of stream a final line without `\n` is still a line (carbon would drop it; senders
///   that close right after their last write mean it).
/// - Lines are numbered from 1 across calls, counting empty and discarded lines, so errors can
///   name the line.
///
/// ```
/// use graphite_plaintext::LineSplitter;
/// let mut splitter = LineSplitter::new(16384);
/// let mut buf = b"a.b 1 10\r\na.c 2 1".to_vec();
/// let mut lines = splitter.lines(&buf, false);
/// assert_eq!(lines.next().unwrap().unwrap().bytes, b"a.b 1 10");
/// assert!(lines.next().is_none());
/// let consumed = lines.consumed();
/// buf.drain(..consumed);
/// buf.extend_from_slice(b"0\n");
/// let line = splitter.lines(&buf, false).next().unwrap().unwrap();
/// assert_eq!((line.bytes, line.number), (&b"a.c 2 10"[..], 2));
/// ```
#[derive(Debug, Clone)]
pub struct LineSplitter {
    max_line_bytes: usize,
    /// Number of the last line started.
    line: u64,
    /// Inside an over-long line that was already reported: drop bytes up to the next `\n`.
    discarding: bool,
    /// How many bytes at the start of the pending partial line are known to hold no `\n`, so a
    /// line arriving in many small reads is searched once, not once per read.
    scanned: usize,
}

/// What one [`LineSplitter::split`] step found. Offsets are into the input of that call.
#[derive(Debug)]
pub enum Split {
    /// A complete line is `input[start..end]` (terminator excluded).
    Line {
        /// Offset of the first byte of the line.
        start: usize,
        /// Offset just past the last byte of the line, before `\r\n` or `\n`.
        end: usize,
        /// The line's 1-based number in the stream.
        number: u64,
    },
    /// An over-long line, reported once; it is being skipped.
    TooLong(Error),
    /// No complete line is left: hand in more data (or set `eof`).
    NeedMore,
}

impl Default for LineSplitter {
    fn default() -> Self {
        LineSplitter::new(DEFAULT_MAX_LINE_BYTES)
    }
}

impl LineSplitter {
    /// A splitter that refuses lines longer than `max_line_bytes` (not counting the terminator).
    pub fn new(max_line_bytes: usize) -> Self {
        LineSplitter {
            max_line_bytes,
            line: 0,
            discarding: false,
            scanned: 0,
        }
    }

    /// The configured line limit.
    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    /// How many lines have been started so far (including empty and discarded ones).
    pub fn lines_seen(&self) -> u64 {
        self.line
    }

    /// Counts `count` whole lines that the caller took from the start of its input without
    /// this splitter (lines it recognized itself): the next line is numbered after them, and
    /// nothing before them is pending any more. Only between lines, not while discarding.
    pub fn skip_lines(&mut self, count: u64) {
        debug_assert!(
            !self.discarding,
            "skip_lines while discarding an over-long line"
        );
        self.line += count;
        self.scanned = 0;
    }

    /// Whether the splitter is skipping the rest of an over-long line.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Forgets all state, for reuse on a new stream.
    pub fn reset(&mut self) {
        *self = LineSplitter::new(self.max_line_bytes);
    }

    /// Finds the next line in `input`. Returns what was found and how many bytes of `input` are
    /// consumed (may be dropped by the caller); `consumed >= end` for a line.
    ///
    /// With `eof` set, `input` is taken to be everything that is left of the stream: a final
    /// unterminated line is returned, and a final [`Split::NeedMore`] consumes all of `input`.
    pub fn split(&mut self, input: &[u8], eof: bool) -> (Split, usize) {
        let mut offset = 0;
        if self.discarding {
            match memchr::memchr(b'\n', input) {
                Some(i) => {
                    offset = i + 1;
                    self.discarding = false;
                }
                None => {
                    self.discarding = !eof;
                    return (Split::NeedMore, input.len());
                }
            }
        }
        let rest = &input[offset..];
        let from = self.scanned.min(rest.len());
        match memchr::memchr(b'\n', &rest[from..]) {
            Some(i) => {
                let newline = from + i;
                self.scanned = 0;
                self.line += 1;
                let end = strip_cr(rest, newline);
                let consumed = offset + newline + 1;
                if end > self.max_line_bytes {
                    return (Split::TooLong(self.too_long(&rest[..end])), consumed);
                }
                let line = Split::Line {
                    start: offset,
                    end: offset + end,
                    number: self.line,
                };
                (line, consumed)
            }
            None if eof => {
                self.scanned = 0;
                if rest.is_empty() {
                    return (Split::NeedMore, input.len());
                }
                self.line += 1;
                let end = strip_cr(rest, rest.len());
                if end > self.max_line_bytes {
                    return (Split::TooLong(self.too_long(&rest[..end])), input.len());
                }
                let line = Split::Line {
                    start: offset,
                    end: offset + end,
                    number: self.line,
                };
                (line, input.len())
            }
            None => {
                // A pending `\r` may still turn out to be half of the terminator.
                let len = strip_cr(rest, rest.len());
                if len > self.max_line_bytes {
                    self.scanned = 0;
                    self.line += 1;
                    self.discarding = true;
                    return (Split::TooLong(self.too_long(rest)), input.len());
                }
                self.scanned = rest.len();
                (Split::NeedMore, offset)
            }
        }
    }

    /// Iterates over the lines of `input` (see [`LineSplitter::split`]); afterwards
    /// [`Lines::consumed`] says how much of `input` the caller may drop.
    pub fn lines<'s, 'a>(&'s mut self, input: &'a [u8], eof: bool) -> Lines<'s, 'a> {
        Lines {
            splitter: self,
            input,
            eof,
            consumed: 0,
            done: false,
        }
    }

    #[cold]
    fn too_long(&self, line_start: &[u8]) -> Error {
        Error::LineTooLong {
            limit: self.max_line_bytes,
            excerpt: Excerpt::new(line_start),
            pos: Position::line(self.line),
        }
    }
}

/// Length of the line ending before `newline`, minus a trailing `\r`.
#[inline]
fn strip_cr(rest: &[u8], newline: usize) -> usize {
    if newline > 0 && rest[newline - 1] == b'\r' {
        newline - 1
    } else {
        newline
    }
}

/// One line of the stream, borrowed from the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The line without its terminator.
    pub bytes: &'a [u8],
    /// Its 1-based number in the stream.
    pub number: u64,
}

impl<'a> Line<'a> {
    /// Parses the line ([`parse_line`]), putting the line number into any error.
    #[inline(always)]
    pub fn parse(&self) -> Result<Sample<'a>, Error> {
        parse_line(self.bytes).map_err(|e| e.at_line(self.number))
    }

    /// [`Line::parse`], also telling whether the line is spelled canonically
    /// ([`crate::parse_line_spelled`]).
    #[inline(always)]
    pub fn parse_spelled(&self) -> Result<(Sample<'a>, bool), Error> {
        crate::line::parse_line_spelled(self.bytes).map_err(|e| e.at_line(self.number))
    }

    /// Whether the line holds only whitespace, which a receiver may prefer to skip silently
    /// (InfluxDB's graphite service does) rather than count as a bad line.
    pub fn is_blank(&self) -> bool {
        self.bytes.iter().all(|&b| crate::line::is_separator(b))
    }
}

/// The lines of one buffer; see [`LineSplitter::lines`].
#[derive(Debug)]
pub struct Lines<'s, 'a> {
    splitter: &'s mut LineSplitter,
    input: &'a [u8],
    eof: bool,
    consumed: usize,
    done: bool,
}

impl Lines<'_, '_> {
    /// How many bytes of the input the lines returned so far used up. Once the iterator has
    /// returned `None`, everything before this offset may be dropped and the rest must be handed
    /// in again with more data.
    pub fn consumed(&self) -> usize {
        self.consumed
    }
}

impl<'a> Iterator for Lines<'_, 'a> {
    type Item = Result<Line<'a>, Error>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let base = self.consumed;
        let (found, used) = self.splitter.split(&self.input[base..], self.eof);
        self.consumed = base + used;
        match found {
            Split::Line { start, end, number } => Some(Ok(Line {
                bytes: &self.input[base + start..base + end],
                number,
            })),
            Split::TooLong(error) => Some(Err(error)),
            Split::NeedMore => {
                self.done = true;
                None
            }
        }
    }
}
