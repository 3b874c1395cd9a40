//! Frames arriving in arbitrary pieces: the splitter and the codec must find the same
//! frames whatever the read boundaries, and refuse an oversized length before buffering.

use bytes::{BufMut, BytesMut};
use futures::executor::block_on;
use futures::StreamExt;
use graphite_pickle::{Decoder, Error, FrameEncoder, FrameSplitter, PickleCodec, Point};
use tokio_util::codec::{Decoder as _, Encoder as _, FramedRead};

/// A stream of several frames: Python-written, hand-written (statsd), ours, and an empty
/// body, the kinds a listener sees.
fn stream() -> (Vec<u8>, Vec<Vec<u8>>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut stream = Vec::new();
    for name in ["p2_tuples", "statsd", "p4_bad_items", "p0_lists"] {
        stream.extend(std::fs::read(dir.join(format!("{name}.frame"))).unwrap());
    }
    stream.extend_from_slice(&[0, 0, 0, 0]);
    FrameEncoder::new().with_max_points(2).encode(
        [("a.b", 1.0, 2.0), ("a.c", 3.0, 4.0), ("a.d", 5.0, 6.0)],
        &mut stream,
    );
    let bodies = FrameSplitter::default()
        .split(&stream)
        .map(|f| f.unwrap().to_vec())
        .collect::<Vec<_>>();
    assert_eq!(bodies.len(), 7);
    (stream, bodies)
}

/// Feeds `pieces` to the splitter the way a reader loop would: append, split, drop what
/// was consumed.
fn splitter_frames<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    let splitter = FrameSplitter::default();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        let mut frames = splitter.split(&buf);
        for f in frames.by_ref() {
            out.push(f.unwrap().to_vec());
        }
        let used = frames.consumed();
        buf.drain(..used);
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

fn codec_frames<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    let mut codec = PickleCodec::new();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.put_slice(piece);
        while let Some(frame) = codec.decode(&mut buf).unwrap() {
            out.push(frame.to_vec());
        }
    }
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    out
}

#[test]
fn splitter_finds_the_same_frames_at_every_split_position() {
    let (stream, bodies) = stream();
    for at in 0..=stream.len() {
        let (a, b) = stream.split_at(at);
        assert_eq!(splitter_frames([a, b]), bodies, "split at {at}");
    }
}

#[test]
fn splitter_finds_the_same_frames_one_byte_at_a_time() {
    let (stream, bodies) = stream();
    assert_eq!(splitter_frames(stream.chunks(1)), bodies);
    assert_eq!(splitter_frames(stream.chunks(7)), bodies);
}

#[test]
fn codec_finds_the_same_frames_at_every_split_position() {
    let (stream, bodies) = stream();
    for at in 0..=stream.len() {
        let (a, b) = stream.split_at(at);
        assert_eq!(codec_frames([a, b]), bodies, "split at {at}");
    }
    assert_eq!(codec_frames(stream.chunks(1)), bodies);
}

#[test]
fn three_way_splits_around_every_header() {
    // Every pair of cut points within the first two frames (headers included).
    let (stream, bodies) = stream();
    let span = 4 + bodies[0].len() + 4 + 8;
    for i in 0..span {
        for j in i..span {
            let pieces = [&stream[..i], &stream[i..j], &stream[j..]];
            assert_eq!(codec_frames(pieces), bodies, "cuts at {i}, {j}");
        }
    }
}

/// The points of a frame, printed; none for the empty frame (no pickle in it).
fn points(decoder: &mut Decoder, frame: &[u8]) -> Vec<String> {
    match decoder.decode(frame) {
        Ok(d) => d.points.iter().map(|p| format!("{p:?}")).collect(),
        Err(e) => {
            assert_eq!(e.to_string(), "pickle ends at byte 0 without a STOP opcode");
            Vec::new()
        }
    }
}

#[test]
fn decoded_points_do_not_depend_on_read_boundaries() {
    let (stream, _) = stream();
    let mut decoder = Decoder::new();
    let whole: Vec<String> = codec_frames([&stream[..]])
        .iter()
        .flat_map(|f| points(&mut decoder, f))
        .collect();
    assert_eq!(whole.len(), 3 + 4 + 3 + 3 + 3);
    let bytewise: Vec<String> = codec_frames(stream.chunks(1))
        .iter()
        .flat_map(|f| points(&mut decoder, f))
        .collect();
    assert_eq!(whole, bytewise);
}

#[test]
fn oversized_length_is_refused_before_buffering() {
    let mut codec = PickleCodec::new();
    let mut buf = BytesMut::new();
    // The first three header bytes say nothing yet.
    buf.put_slice(&[0x7f, 0xff, 0xff]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.put_u8(0xff);
    let err = codec.decode(&mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "frame length 2147483647 at byte 0 exceeds the limit of 1048576 bytes \
         (header \"\\x7f\\xff\\xff\\xff\")"
    );
    assert!(!err.can_continue());
    assert!(buf.capacity() < 4096, "reserved {} bytes", buf.capacity());
}

#[test]
fn length_one_over_the_limit_is_refused_at_its_stream_offset() {
    let mut codec = PickleCodec::new().with_max_frame_bytes(10);
    let mut buf = BytesMut::new();
    buf.put_slice(b"\x00\x00\x00\x0a0123456789\x00\x00\x00\x0b");
    assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"0123456789");
    let err = codec.decode(&mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "frame length 11 at byte 14 exceeds the limit of 10 bytes (header \"\\x00\\x00\\x00\\x0b\")"
    );
    assert_eq!(err.offset(), Some(14));
}

#[test]
fn a_frame_within_the_limit_reserves_only_itself() {
    let mut codec = PickleCodec::new();
    let mut buf = BytesMut::new();
    buf.put_slice(&1000u32.to_be_bytes());
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(
        buf.capacity() >= 1004 && buf.capacity() < 8192,
        "{}",
        buf.capacity()
    );
}

#[test]
fn stream_ending_inside_a_frame_is_reported() {
    let mut codec = PickleCodec::new();
    let mut buf = BytesMut::new();
    buf.put_slice(b"\x00\x00\x00\x02ab\x00\x00\x00\x10\x80\x02");
    assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"ab");
    let err = codec.decode_eof(&mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "stream ended at byte 12 inside a frame: 6 of 20 bytes received"
    );
    assert!(!err.can_continue());
    let mut buf = BytesMut::from(&b"\x00\x00"[..]);
    let err = PickleCodec::new().decode_eof(&mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "stream ended at byte 2 inside a frame: 2 of 4 bytes received"
    );
}

#[test]
fn framed_read_yields_frames_then_the_framing_error() {
    let (mut stream, bodies) = stream();
    stream.extend_from_slice(b"servers.a.b 1 1700000000\n");
    let frames: Vec<Result<Vec<u8>, String>> = block_on(
        FramedRead::new(&stream[..], PickleCodec::new())
            .map(|r| r.map(|b| b.to_vec()).map_err(|e| e.to_string()))
            .collect(),
    );
    assert_eq!(frames.len(), bodies.len() + 1);
    for (got, want) in frames.iter().zip(&bodies) {
        assert_eq!(got.as_ref().unwrap(), want);
    }
    let offset = stream.len() - 25;
    assert_eq!(
        frames.last().unwrap().as_ref().unwrap_err(),
        &format!(
            "frame length 1936028278 at byte {offset} exceeds the limit of 1048576 bytes \
             (header \"serv\"): is a plaintext sender connected to the pickle port?"
        )
    );
}

#[test]
fn codec_encodes_batches_into_frames() {
    let points: Vec<Point<'_>> = (0..1200)
        .map(|i| Point {
            path: format!("servers.host{i}.cpu").into(),
            timestamp: 1_700_000_000.0,
            value: f64::from(i),
        })
        .collect();
    let mut codec = PickleCodec::new();
    let mut buf = BytesMut::new();
    codec.encode(&points[..], &mut buf).unwrap();
    let mut frames = Vec::new();
    while let Some(f) = codec.decode(&mut buf).unwrap() {
        frames.push(f);
    }
    assert_eq!(frames.len(), 3);
    let mut decoder = Decoder::new();
    let back: Vec<Point<'static>> = frames
        .iter()
        .flat_map(|f| {
            let d = decoder.decode(f).unwrap();
            d.points.into_iter().map(|p| Point {
                path: p.path.into_owned().into(),
                ..p
            })
        })
        .collect();
    assert_eq!(back, points);
}

#[test]
fn codec_refuses_a_batch_with_a_point_too_large_for_any_frame() {
    let long = "x".repeat(2 << 20);
    let points = [
        Point {
            path: "ok".into(),
            timestamp: 1.0,
            value: 1.0,
        },
        Point {
            path: long.as_str().into(),
            timestamp: 1.0,
            value: 1.0,
        },
    ];
    let mut buf = BytesMut::new();
    let err = PickleCodec::new()
        .encode(&points[..], &mut buf)
        .unwrap_err();
    assert!(matches!(err, Error::PointTooLarge { index: 1, .. }));
    assert_eq!(
        err.to_string(),
        "point 1 needs a 2097179-byte frame, over the limit of 1048576 bytes: \
         path \"xxxxxxxxxxxxxxxx\"..."
    );
    assert!(buf.is_empty(), "nothing written");
}
