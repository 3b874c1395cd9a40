//! Counting points in a byte stream that arrives in arbitrary pieces.
//!
//! A benchmark that claims "nothing was lost" is only as good as its count, so the sink
//! counts what the receiving server would store, not newlines: InfluxDB skips blank lines,
//! leading whitespace and `#` comment lines, and stores a last line that has no `\n`. A line
//! is counted at its first significant byte, so a point split across two reads (or two gzip
//! output buffers) is counted exactly once.

/// Which lines are points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// InfluxDB line protocol: `#` starts a comment line.
    LineProtocol,
    /// Graphite plaintext: every non-blank line is a sample (carbon has no comments).
    Plaintext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Only whitespace so far on the current line.
    Start,
    /// The current line was counted (or is a comment); skip to its `\n`.
    Rest,
}

/// Counts points across chunks; feed it every chunk of one stream in order.
#[derive(Debug, Clone)]
pub struct LineCounter {
    dialect: Dialect,
    state: State,
    points: u64,
}

impl LineCounter {
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            state: State::Start,
            points: 0,
        }
    }

    /// Counts the points that begin in `chunk`; returns how many.
    pub fn feed(&mut self, chunk: &[u8]) -> u64 {
        let before = self.points;
        let mut at = 0;
        while at < chunk.len() {
            match self.state {
                State::Start => {
                    match chunk[at] {
                        b' ' | b'\t' | b'\r' | b'\n' => {}
                        b'#' if self.dialect == Dialect::LineProtocol => self.state = State::Rest,
                        _ => {
                            self.points += 1;
                            self.state = State::Rest;
                        }
                    }
                    at += 1;
                }
                State::Rest => match memchr::memchr(b'\n', &chunk[at..]) {
                    Some(i) => {
                        at += i + 1;
                        self.state = State::Start;
                    }
                    None => break,
                },
            }
        }
        self.points - before
    }

    /// Ends one stream (a request body): the next chunk starts a fresh line.
    pub fn end(&mut self) {
        self.state = State::Start;
    }

    /// Points counted so far.
    pub fn points(&self) -> u64 {
        self.points
    }
}

/// Points in one complete body.
pub fn count(dialect: Dialect, body: &[u8]) -> u64 {
    LineCounter::new(dialect).feed(body)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn counts_what_influxdb_would_store() {
        let body = b"cpu v=1 1\n\n  \r\n# comment v=2\n  mem v=3 3\r\ndisk v=4";
        assert_eq!(count(Dialect::LineProtocol, body), 3);
        // Graphite has no comments: the `#` line is a (bad) sample the gateway must see.
        assert_eq!(count(Dialect::Plaintext, body), 4);
        assert_eq!(count(Dialect::LineProtocol, b""), 0);
        assert_eq!(count(Dialect::LineProtocol, b"\n\n\n"), 0);
        assert_eq!(count(Dialect::Plaintext, b"a 1 2"), 1);
    }

    #[test]
    fn end_starts_a_new_line() {
        let mut c = LineCounter::new(Dialect::Plaintext);
        assert_eq!(c.feed(b"a 1 2"), 1);
        c.end();
        assert_eq!(c.feed(b"b 1 2\n"), 1);
        assert_eq!(c.points(), 2);
    }

    #[test]
    fn split_at_every_byte_counts_the_same() {
        let body = b"a 1 1\n  b 2 2\r\n\n# c\n#\nd 3 3\n  \n e";
        for dialect in [Dialect::LineProtocol, Dialect::Plaintext] {
            let whole = count(dialect, body);
            for at in 0..=body.len() {
                let mut c = LineCounter::new(dialect);
                c.feed(&body[..at]);
                c.feed(&body[at..]);
                assert_eq!(c.points(), whole, "split at {at}");
            }
        }
    }

    proptest! {
        #[test]
        fn any_chunking_matches_the_line_by_line_rule(
            lines in proptest::collection::vec("[ \t#a-c\r]{0,6}", 0..20),
            cuts in proptest::collection::vec(0usize..200, 0..8),
        ) {
            let body = lines.join("\n");
            let expected = body
                .split('\n')
                .filter(|l| {
                    let t = l.trim_start_matches([' ', '\t', '\r']);
                    !t.is_empty() && !t.starts_with('#')
                })
                .count() as u64;
            let bytes = body.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut c = LineCounter::new(Dialect::LineProtocol);
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                c.feed(&bytes[from..cut]);
                from = cut;
            }
            prop_assert_eq!(c.points(), expected);
        }
    }
}
