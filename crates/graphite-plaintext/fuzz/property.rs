//! The fuzz property, shared by the `plaintext` fuzz target and the crate's tests
//! (`tests/fuzz_property.rs`), so `cargo test` exercises it too.
//!
//! Input layout: byte 0 picks the line limit, byte 1 the read size, the rest is the stream.
//! Nothing may panic, and:
//! - splitting the stream in reads of any size gives the same lines as splitting it whole;
//! - the tokio-util codec gives the same frames;
//! - a line that parses re-encodes to a line that parses back to the same sample;
//! - a path that validates as a tagged series normalizes to a fixed point.

use bytes::BytesMut;
use graphite_plaintext::{
    encode_sample, normalize, parse_line, LineSplitter, PlaintextCodec, TaggedPath, Timestamp,
};
use tokio_util::codec::Decoder;

/// A line, or the number of the line reported too long.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    Line(Vec<u8>, u64),
    TooLong(u64),
}

pub(crate) fn check(data: &[u8]) {
    let (max_line_bytes, read_size, stream) = match data {
        [a, b, rest @ ..] => {
            let max = if *a == 255 {
                16384
            } else {
                usize::from(*a % 48)
            };
            (max, usize::from(*b % 16) + 1, rest)
        }
        _ => (16384, 1, data),
    };

    let whole = split_whole(stream, max_line_bytes);
    assert_eq!(split_in_reads(stream, max_line_bytes, read_size), whole);
    assert_eq!(decode_in_reads(stream, max_line_bytes, read_size), whole);

    for item in &whole {
        if let Item::Line(line, number) = item {
            assert!(line.len() <= max_line_bytes);
            assert!(!line.ends_with(b"\n"));
            check_line(line, *number);
        }
    }
}

fn check_line(line: &[u8], number: u64) {
    let sample = match parse_line(line) {
        Ok(sample) => sample,
        Err(e) => {
            let e = e.at_line(number);
            assert!(e.is_continuable());
            assert!(!e.to_string().is_empty());
            assert!(!e.reason().is_empty());
            return;
        }
    };
    assert!(!sample.path.is_empty());
    if let Timestamp::Seconds(t) = sample.timestamp {
        assert!(t.is_finite());
        assert!(
            !(t > -2.0 && t <= -1.0),
            "carbon's now marker must read as Now"
        );
    }

    // Round trip through the encoder.
    let ts = sample.timestamp.unix_seconds(-1);
    let mut out = Vec::new();
    encode_sample(sample.path, sample.value, ts, &mut out).expect("a parsed path encodes");
    assert_eq!(out.last(), Some(&b'\n'));
    assert!(!out[..out.len() - 1].contains(&b'\n'));
    let again = parse_line(&out[..out.len() - 1]).expect("encoded line parses");
    assert_eq!(again.path, sample.path);
    if sample.value.is_nan() {
        assert!(again.value.is_nan());
    } else {
        assert_eq!(again.value, sample.value);
    }
    let want = if ts == -1 {
        Timestamp::Now
    } else {
        Timestamp::Seconds(ts as f64)
    };
    assert_eq!(again.timestamp, want);

    // Tagged series: normalizing is a fixed point.
    if let Ok(tagged) = TaggedPath::parse(sample.path) {
        let normalized = tagged.to_normalized();
        let reparsed = TaggedPath::parse(&normalized).expect("normalized path validates");
        assert!(reparsed.is_normalized(), "{normalized:?}");
        assert_eq!(normalize(&normalized).unwrap(), normalized);
        assert_eq!(tagged.is_normalized(), normalized == sample.path);
    }
}

fn split_whole(stream: &[u8], max_line_bytes: usize) -> Vec<Item> {
    let mut splitter = LineSplitter::new(max_line_bytes);
    let mut lines = splitter.lines(stream, true);
    let items = collect(&mut lines);
    assert_eq!(lines.consumed(), stream.len());
    items
}

fn collect(lines: &mut graphite_plaintext::Lines<'_, '_>) -> Vec<Item> {
    lines
        .map(|l| match l {
            Ok(line) => Item::Line(line.bytes.to_vec(), line.number),
            Err(e) => Item::TooLong(e.position().and_then(|p| p.line).expect("line number")),
        })
        .collect()
}

/// Feeds the stream through one reused buffer, `read_size` bytes per read, as a receiver does.
fn split_in_reads(stream: &[u8], max_line_bytes: usize, read_size: usize) -> Vec<Item> {
    let mut splitter = LineSplitter::new(max_line_bytes);
    let mut buf = Vec::new();
    let mut items = Vec::new();
    for chunk in stream.chunks(read_size) {
        buf.extend_from_slice(chunk);
        let mut lines = splitter.lines(&buf, false);
        items.extend(collect(&mut lines));
        let consumed = lines.consumed();
        buf.drain(..consumed);
        // Memory stays bounded by the line limit, whatever the sender does.
        assert!(buf.len() <= max_line_bytes + 1, "{} buffered", buf.len());
    }
    let mut lines = splitter.lines(&buf, true);
    items.extend(collect(&mut lines));
    assert_eq!(lines.consumed(), buf.len());
    items
}

fn decode_in_reads(stream: &[u8], max_line_bytes: usize, read_size: usize) -> Vec<Item> {
    let mut codec = PlaintextCodec::with_max_line_bytes(max_line_bytes);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut push = |frame: Result<_, graphite_plaintext::Error>| {
        items.push(match frame {
            Ok(graphite_plaintext::Frame { line, number }) => Item::Line(line.to_vec(), number),
            Err(e) => Item::TooLong(e.position().and_then(|p| p.line).expect("line number")),
        })
    };
    for chunk in stream.chunks(read_size) {
        buf.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(&mut buf).expect("no I/O here") {
            push(frame);
        }
    }
    while let Some(frame) = codec.decode_eof(&mut buf).expect("no I/O here") {
        push(frame);
    }
    assert!(buf.is_empty());
    items
}
