//! Where a line ends: InfluxDB 1.x's `scanLine`.
//!
//! A newline does not always end a point: InfluxDB lets a string field value span lines
//! (`m f="a<LF>b"`), and a backslash escapes the byte after it anywhere, newline included. The
//! rule that decides whether a `"` opens a string is InfluxDB's own heuristic: after the first
//! unescaped space, a quote counts only where more `=` than `,` have been seen. Both the body
//! parser and the codec use this one state machine, so a point is framed identically however
//! the bytes arrive.

use memchr::{memchr2, memchr3};

/// Resumable state of the line splitter.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Splitter {
    /// Inside a string field value.
    quoted: bool,
    /// An unescaped space has been seen: `=`, `,` and `"` now count.
    fields: bool,
    equals: u32,
    commas: u32,
    /// The previous byte was a backslash: skip the next one, whatever it is.
    escape: bool,
}

impl Splitter {
    /// Scans `buf[from..]` and returns the index of the `\n` that ends the current line, or
    /// `None` when `buf` ends first (the state is then kept for the next call, which must pass
    /// the same line with more bytes appended and `from` = the old `buf.len()`).
    pub(crate) fn find_end(&mut self, buf: &[u8], from: usize) -> Option<usize> {
        let mut i = from;
        if self.escape {
            if i >= buf.len() {
                return None;
            }
            self.escape = false;
            i += 1;
        }
        loop {
            if i >= buf.len() {
                return None;
            }
            if self.quoted {
                // Inside a string only quotes and escapes matter; newlines are content.
                let p = memchr2(b'"', b'\\', &buf[i..])?;
                let j = i + p;
                if buf[j] == b'\\' {
                    if j + 1 >= buf.len() {
                        self.escape = true;
                        return None;
                    }
                    i = j + 2;
                } else {
                    self.quoted = false;
                    i = j + 1;
                }
                continue;
            }
            let Some(p) = memchr3(b'\n', b'\\', b'"', &buf[i..]) else {
                self.count(&buf[i..]);
                return None;
            };
            let j = i + p;
            self.count(&buf[i..j]);
            match buf[j] {
                b'\n' => {
                    *self = Splitter::default();
                    return Some(j);
                }
                b'\\' => {
                    if j + 1 >= buf.len() {
                        self.escape = true;
                        return None;
                    }
                    i = j + 2;
                }
                _ => {
                    if self.fields && self.equals > self.commas {
                        self.quoted = true;
                    }
                    i = j + 1;
                }
            }
        }
    }

    /// Accounts for bytes that hold no `\n`, `\\` or `"`.
    #[inline]
    fn count(&mut self, bytes: &[u8]) {
        if !self.fields {
            if let Some(p) = memchr::memchr(b' ', bytes) {
                self.fields = true;
                self.count_fields(&bytes[p + 1..]);
            }
        } else {
            self.count_fields(bytes);
        }
    }

    #[inline]
    fn count_fields(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'=' {
                self.equals += 1;
            } else if b == b',' {
                self.commas += 1;
            }
        }
    }
}

/// One line found by [`split`]: where it is and whether it may contain newlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    /// Index of the byte after the line's end (the `\n`, or the end of the input).
    pub(crate) end: usize,
    /// Index where the next line starts.
    pub(crate) next: usize,
    /// The line held a backslash or quote, so newlines inside it must be counted.
    pub(crate) complex: bool,
}

/// Finds the end of the line starting at `start` in a complete body.
#[inline]
pub(crate) fn split(body: &[u8], start: usize) -> Found {
    let rest = &body[start..];
    // Fast path: the common line has neither backslash nor quote before its newline.
    let nl = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    if memchr2(b'\\', b'"', &rest[..nl]).is_none() {
        let end = start + nl;
        return Found {
            end,
            next: (end + 1).min(body.len()),
            complex: false,
        };
    }
    let mut splitter = Splitter::default();
    match splitter.find_end(rest, 0) {
        Some(p) => Found {
            end: start + p,
            next: start + p + 1,
            complex: true,
        },
        None => Found {
            end: body.len(),
            next: body.len(),
            complex: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(body: &str) -> Vec<&str> {
        let b = body.as_bytes();
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < b.len() {
            let f = split(b, pos);
            out.push(&body[pos..f.end]);
            pos = f.next;
        }
        out
    }

    #[test]
    fn plain_lines() {
        assert_eq!(lines("a b=1\nc d=2\n"), ["a b=1", "c d=2"]);
        assert_eq!(lines("a b=1\n\nc d=2"), ["a b=1", "", "c d=2"]);
    }

    #[test]
    fn quoted_newlines_do_not_split() {
        assert_eq!(
            lines("m f=\"a\nb\",g=1 1\nm2 x=1 2"),
            ["m f=\"a\nb\",g=1 1", "m2 x=1 2"]
        );
        // A quote before any space (in the measurement or a tag) is not a string.
        assert_eq!(lines("m,t=\"a f=1\nm g=2"), ["m,t=\"a f=1", "m g=2"]);
        // Nor is a quote in key position (as many `,` as `=`).
        assert_eq!(lines("m \"f\"=1\nm g=2"), ["m \"f\"=1", "m g=2"]);
    }

    #[test]
    fn escaped_newline_joins_lines() {
        assert_eq!(lines("m f=1 1\\\nm g=2 2"), ["m f=1 1\\\nm g=2 2"]);
        assert_eq!(lines("m f=\"a\\\"\nb\" 1\nx"), ["m f=\"a\\\"\nb\" 1", "x"]);
    }

    #[test]
    fn resumes_across_chunks() {
        let body = b"m f=\"a\nb\\\"c\" 1\nn g=1\n";
        for cut in 0..body.len() {
            let mut s = Splitter::default();
            let first = s.find_end(&body[..cut], 0);
            let end = match first {
                Some(e) => e,
                None => s.find_end(body, cut).unwrap(),
            };
            assert_eq!(end, 14, "cut at {cut}");
        }
    }
}

/// The points of a line-protocol body as byte slices, split exactly where InfluxDB splits
/// them: a newline inside a quoted string value, or escaped by a backslash, is content.
/// Lines keep no `\n`; empty lines are yielded as empty slices (callers skip them).
///
/// For code that moves already-validated line protocol around (batching, partitioning) and
/// must never cut a point in two, without paying for a full parse.
///
/// ```
/// let body = b"a f=1 1\nm s=\"x\ny\" 2\n";
/// let lines: Vec<&[u8]> = line_protocol::split_lines(body).collect();
/// assert_eq!(lines, [&b"a f=1 1"[..], &b"m s=\"x\ny\" 2"[..]]);
/// ```
pub fn split_lines(body: &[u8]) -> SplitLines<'_> {
    SplitLines { body, pos: 0 }
}

/// Iterator of [`split_lines`].
#[derive(Debug, Clone)]
pub struct SplitLines<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for SplitLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.body.len() {
            return None;
        }
        let start = self.pos;
        let found = split(self.body, start);
        self.pos = found.next;
        Some(&self.body[start..found.end])
    }
}
