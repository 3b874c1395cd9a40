//! The line splitter and the codec against a plain model of the stream, with the input cut
//! into reads at every byte position.

use graphite_plaintext::{Error, LineSplitter, Split};

/// What a stream should yield: lines (terminator and one `\r` removed) with their numbers, or
/// the numbers of lines too long.
#[derive(Debug, PartialEq, Eq, Clone)]
enum Item {
    Line(Vec<u8>, u64),
    TooLong(u64),
}

fn model(stream: &[u8], max: usize) -> Vec<Item> {
    let mut items = Vec::new();
    let mut segments: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    if segments.last().is_some_and(|s| s.is_empty()) {
        segments.pop();
    }
    for (i, segment) in segments.into_iter().enumerate() {
        let line = segment.strip_suffix(b"\r").unwrap_or(segment);
        let number = i as u64 + 1;
        items.push(if line.len() > max {
            Item::TooLong(number)
        } else {
            Item::Line(line.to_vec(), number)
        });
    }
    items
}

fn item(result: Result<graphite_plaintext::Line<'_>, Error>) -> Item {
    match result {
        Ok(line) => Item::Line(line.bytes.to_vec(), line.number),
        Err(Error::LineTooLong { pos, .. }) => Item::TooLong(pos.line.unwrap()),
        Err(other) => panic!("unexpected {other}"),
    }
}

/// Splits `stream` delivered as the given reads into one reused buffer.
fn split_reads(reads: &[&[u8]], max: usize) -> Vec<Item> {
    let mut splitter = LineSplitter::new(max);
    let mut buf = Vec::new();
    let mut items = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        let mut lines = splitter.lines(&buf, false);
        items.extend(lines.by_ref().map(item));
        let consumed = lines.consumed();
        buf.drain(..consumed);
        assert!(buf.len() <= max + 1, "buffer grew to {}", buf.len());
    }
    let mut lines = splitter.lines(&buf, true);
    items.extend(lines.by_ref().map(item));
    assert_eq!(lines.consumed(), buf.len());
    items
}

const STREAM: &[u8] = b"a.b 1 1700000000\r\n\
    collectd.load 0.123456789012345 1700000000\r\n\
    \n\
    this.line.is.far.too.long.for.the.limit 1 1700000000\n\
    x 1\r\n\
    also.much.too.long.to.be.accepted.here 2 3\r\n\
    last 1 2";

#[test]
fn every_split_position_gives_the_same_lines() {
    for max in [0, 1, 5, 16, 17, 18, 30, 40, 16384] {
        let want = model(STREAM, max);
        assert_eq!(split_reads(&[STREAM], max), want, "max {max}");
        for i in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(i);
            assert_eq!(split_reads(&[a, b], max), want, "max {max}, split at {i}");
            for j in i..=STREAM.len() {
                let (b1, b2) = b.split_at(j - i);
                assert_eq!(
                    split_reads(&[a, b1, b2], max),
                    want,
                    "max {max}, split at {i},{j}"
                );
            }
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(split_reads(&bytes, max), want, "max {max}, byte by byte");
    }
}

#[test]
fn expected_lines() {
    assert_eq!(
        model(STREAM, 30),
        [
            Item::Line(b"a.b 1 1700000000".to_vec(), 1),
            Item::TooLong(2),
            Item::Line(b"".to_vec(), 3),
            Item::TooLong(4),
            Item::Line(b"x 1".to_vec(), 5),
            Item::TooLong(6),
            Item::Line(b"last 1 2".to_vec(), 7),
        ]
    );
}

#[test]
fn over_long_line_is_discarded_across_reads_and_reported_once() {
    let mut splitter = LineSplitter::new(8);
    let (found, consumed) = splitter.split(b"0123456789", false);
    match found {
        Split::TooLong(e) => assert_eq!(
            e.to_string(),
            r#"line longer than 8 bytes, discarded at line 1: "0123456789""#
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(consumed, 10);
    assert!(splitter.is_discarding());
    // Still the same line: dropped silently, however much of it comes.
    for _ in 0..100 {
        let (found, consumed) = splitter.split(b"abcdefghijklmnop", false);
        assert!(matches!(found, Split::NeedMore));
        assert_eq!(consumed, 16);
    }
    let (found, consumed) = splitter.split(b"xyz\r\nok 1 2\nnext", false);
    match found {
        Split::Line { start, end, number } => assert_eq!((start, end, number), (5, 11, 2)),
        other => panic!("{other:?}"),
    }
    assert_eq!(consumed, 12);
    assert!(!splitter.is_discarding());
    assert_eq!(splitter.lines_seen(), 2);
}

#[test]
fn carriage_return_at_the_limit_waits_for_its_newline() {
    // 8 bytes plus "\r": not too long yet, the "\r" may belong to "\r\n".
    let mut splitter = LineSplitter::new(8);
    let mut lines = splitter.lines(b"01234567\r", false);
    assert!(lines.next().is_none());
    assert_eq!(lines.consumed(), 0);
    let line = splitter
        .lines(b"01234567\r\n", false)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!((line.bytes, line.number), (&b"01234567"[..], 1));
    // ...but a further byte makes it too long.
    let mut splitter = LineSplitter::new(8);
    assert!(splitter
        .lines(b"01234567\rx", false)
        .next()
        .unwrap()
        .is_err());
}

#[test]
fn final_unterminated_line_at_eof() {
    let mut splitter = LineSplitter::default();
    let mut lines = splitter.lines(b"a 1 2\nb 3 4", false);
    assert_eq!(lines.next().unwrap().unwrap().bytes, b"a 1 2");
    assert!(lines.next().is_none());
    assert_eq!(lines.consumed(), 6);
    let mut lines = splitter.lines(b"b 3 4", true);
    let last = lines.next().unwrap().unwrap();
    assert_eq!((last.bytes, last.number), (&b"b 3 4"[..], 2));
    assert_eq!(last.parse().unwrap().value, 3.0);
    assert!(lines.next().is_none());
    assert_eq!(lines.consumed(), 5);
    // A final "\r" is a terminator fragment, not data.
    let mut splitter = LineSplitter::default();
    let got: Vec<_> = splitter
        .lines(b"a 1 2\r", true)
        .map(|l| l.unwrap().bytes)
        .collect();
    assert_eq!(got, [&b"a 1 2"[..]]);
    // Nothing left: nothing yielded, however often asked.
    assert!(splitter.lines(b"", true).next().is_none());
    assert!(splitter.lines(b"", true).next().is_none());
}

#[test]
fn over_long_final_line_at_eof() {
    let mut splitter = LineSplitter::new(4);
    let got: Vec<_> = splitter.lines(b"ok\ntoolong", true).map(item).collect();
    assert_eq!(got, [Item::Line(b"ok".to_vec(), 1), Item::TooLong(2)]);
    assert!(!splitter.is_discarding());
}

#[test]
fn blank_lines_are_yielded_and_recognizable() {
    let mut splitter = LineSplitter::default();
    let lines: Vec<_> = splitter
        .lines(b"\n \t\r\na 1 2\n", true)
        .map(Result::unwrap)
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0].is_blank() && lines[1].is_blank() && !lines[2].is_blank());
    assert_eq!(
        lines[1].parse().unwrap_err().to_string(),
        "empty line at line 2"
    );
}

#[test]
fn reset_forgets_the_stream() {
    let mut splitter = LineSplitter::new(4);
    assert!(splitter.lines(b"toolong", false).next().unwrap().is_err());
    assert!(splitter.is_discarding());
    splitter.reset();
    assert!(!splitter.is_discarding());
    assert_eq!(splitter.max_line_bytes(), 4);
    let line = splitter.lines(b"ab\n", false).next().unwrap().unwrap();
    assert_eq!((line.bytes, line.number), (&b"ab"[..], 1));
}

#[cfg(feature = "codec")]
mod codec {
    use super::*;
    use bytes::BytesMut;
    use futures::StreamExt;
    use graphite_plaintext::{Frame, PlaintextCodec, Sample, Timestamp};
    use tokio_util::codec::{Decoder, Encoder, FramedRead};

    fn decode_reads(reads: &[&[u8]], max: usize) -> Vec<Item> {
        let mut codec = PlaintextCodec::with_max_line_bytes(max);
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        let mut push = |frame: Result<Frame, Error>| {
            items.push(match frame {
                Ok(frame) => Item::Line(frame.line.to_vec(), frame.number),
                Err(Error::LineTooLong { pos, .. }) => Item::TooLong(pos.line.unwrap()),
                Err(other) => panic!("unexpected {other}"),
            })
        };
        for read in reads {
            buf.extend_from_slice(read);
            while let Some(frame) = codec.decode(&mut buf).unwrap() {
                push(frame);
            }
            assert!(buf.len() <= max + 1);
        }
        while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
            push(frame);
        }
        assert!(buf.is_empty());
        items
    }

    #[test]
    fn decoder_at_every_split_position() {
        for max in [0, 5, 17, 30, 16384] {
            let want = model(STREAM, max);
            for i in 0..=STREAM.len() {
                let (a, b) = STREAM.split_at(i);
                assert_eq!(decode_reads(&[a, b], max), want, "max {max}, split at {i}");
            }
        }
    }

    #[test]
    fn decode_eof_yields_the_unterminated_last_line() {
        let mut codec = PlaintextCodec::new();
        let mut buf = BytesMut::from(&b"a.b 1 1700000000\nc.d 2.5 1700000001"[..]);
        let first = codec.decode(&mut buf).unwrap().unwrap().unwrap();
        assert_eq!(first.number, 1);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(&buf[..], b"c.d 2.5 1700000001");
        let last = codec.decode_eof(&mut buf).unwrap().unwrap().unwrap();
        assert_eq!(&last.line[..], b"c.d 2.5 1700000001");
        let sample = last.parse().unwrap();
        assert_eq!(
            (sample.path, sample.value, sample.timestamp),
            ("c.d", 2.5, Timestamp::Seconds(1_700_000_001.0))
        );
        assert!(buf.is_empty());
        assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    }

    #[tokio::test]
    async fn framed_read_survives_bad_and_over_long_lines() {
        let input: &[u8] =
            b"a.b 1 1\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nbad\r\nc.d 2 2";
        let frames: Vec<_> = FramedRead::new(input, PlaintextCodec::with_max_line_bytes(32))
            .map(|r| r.expect("no I/O error"))
            .collect()
            .await;
        let got: Vec<String> = frames
            .iter()
            .map(|f| match f {
                Ok(frame) => match frame.parse() {
                    Ok(s) => format!("{} {}", s.path, s.value),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            })
            .collect();
        assert_eq!(
            got,
            [
                "a.b 1".to_string(),
                format!(
                    r#"line longer than 32 bytes, discarded at line 2: "{}""#,
                    "x".repeat(52)
                ),
                r#"expected 3 fields "path value timestamp", found 1 at line 3: "bad""#.to_string(),
                "c.d 2".to_string(),
            ]
        );
    }

    #[test]
    fn encoder_writes_samples() {
        let mut codec = PlaintextCodec::new();
        let mut out = BytesMut::new();
        let sample = Sample {
            path: "a.b",
            value: 0.1,
            timestamp: Timestamp::Seconds(1_700_000_000.9),
        };
        codec.encode(sample, &mut out).unwrap();
        assert_eq!(&out[..], b"a.b 0.1 1700000000\n");
        out.clear();
        let now = Sample {
            timestamp: Timestamp::Now,
            ..sample
        };
        codec.encode(now, &mut out).unwrap();
        let line = std::str::from_utf8(&out).unwrap();
        let ts: i64 = line.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
        assert!(ts > 1_700_000_000, "{line}");
        let bad = Sample {
            path: "a b",
            ..sample
        };
        assert!(codec.encode(bad, &mut out).is_err());
        assert_eq!(codec.max_line_bytes(), 16384);
    }
}
