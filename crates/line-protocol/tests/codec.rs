//! The codec frames a stream exactly as the body parser splits a body, however the bytes are cut.

use bytes::BytesMut;
use futures::StreamExt;
use line_protocol::{parse_line, parse_lines, Error, LineProtocolCodec, RawLine};
use tokio_util::codec::{Decoder, Encoder, FramedRead};

/// A body with every framing rule in it: comments, blank and whitespace-only lines, CRLF, a
/// string with newlines, an escaped newline, UTF-8, a bad line, and no final newline.
const BODY: &str = "# header\n\
    cpu,host=a usage=1 1\n\
    \n\
    \t \n\
    mem,host=b used=2i 2\r\n\
    log msg=\"two\nlines, \\\"quoted\\\"\" 3\n\
    joined f=1 4\\\nstill=joined\n\
    ünï,côdé=ü f=\"€\" 5\n\
    bad\n\
      last f=t";

#[derive(Debug, PartialEq)]
enum Item {
    Line {
        number: usize,
        offset: u64,
        text: String,
    },
    TooLong {
        number: usize,
        offset: u64,
    },
    Utf8 {
        number: usize,
        offset: u64,
    },
}

fn item(r: Result<RawLine, Error>) -> Item {
    match r {
        Ok(l) => Item::Line {
            number: l.line_number(),
            offset: l.offset(),
            text: l.as_str().to_owned(),
        },
        Err(Error::LineTooLong {
            line_number,
            offset,
            ..
        }) => Item::TooLong {
            number: line_number,
            offset,
        },
        Err(Error::InvalidUtf8 {
            line_number,
            offset,
            ..
        }) => Item::Utf8 {
            number: line_number,
            offset,
        },
        Err(e) => panic!("{e}"),
    }
}

/// Feeds `pieces` one after the other, then signals EOF.
fn decode_pieces(codec: &mut LineProtocolCodec, pieces: &[&[u8]]) -> Vec<Item> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        while let Some(r) = codec.decode(&mut buf).unwrap() {
            out.push(item(r));
        }
    }
    while let Some(r) = codec.decode_eof(&mut buf).unwrap() {
        out.push(item(r));
    }
    assert!(buf.is_empty());
    out
}

/// What the body parser sees: the same lines, numbers and offsets.
fn expected(body: &str) -> Vec<Item> {
    parse_lines(body)
        .map(|r| match r {
            Ok(p) => Item::Line {
                number: p.line_number(),
                offset: p.offset() as u64,
                text: p.line().to_owned(),
            },
            Err(Error::Parse {
                line_number,
                line_offset,
                line,
                ..
            }) => Item::Line {
                number: line_number,
                offset: line_offset as u64,
                text: line.into(),
            },
            Err(e) => panic!("{e}"),
        })
        .collect()
}

#[test]
fn frames_like_the_body_parser() {
    let want = expected(BODY);
    assert_eq!(want.len(), 7);
    let got = decode_pieces(&mut LineProtocolCodec::new(), &[BODY.as_bytes()]);
    assert_eq!(got, want);
    let texts: Vec<_> = got
        .iter()
        .map(|i| match i {
            Item::Line { text, .. } => text.as_str(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        texts,
        [
            "cpu,host=a usage=1 1",
            "mem,host=b used=2i 2\r",
            "log msg=\"two\nlines, \\\"quoted\\\"\" 3",
            "joined f=1 4\\\nstill=joined",
            "ünï,côdé=ü f=\"€\" 5",
            "bad",
            "last f=t",
        ]
    );
}

#[test]
fn every_split_position() {
    let want = expected(BODY);
    let bytes = BODY.as_bytes();
    for cut in 0..=bytes.len() {
        let got = decode_pieces(
            &mut LineProtocolCodec::new(),
            &[&bytes[..cut], &bytes[cut..]],
        );
        assert_eq!(got, want, "split at {cut}");
    }
    // And every two cuts a few bytes apart, and one byte at a time.
    for cut in 0..bytes.len() {
        let second = (cut + 7).min(bytes.len());
        let got = decode_pieces(
            &mut LineProtocolCodec::new(),
            &[&bytes[..cut], &bytes[cut..second], &bytes[second..]],
        );
        assert_eq!(got, want, "split at {cut} and {second}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode_pieces(&mut LineProtocolCodec::new(), &singles), want);
}

#[test]
fn decoded_lines_parse_like_the_body() {
    let mut codec = LineProtocolCodec::new();
    let mut buf = BytesMut::from(BODY);
    let mut from_codec = Vec::new();
    while let Some(r) = codec.decode_eof(&mut buf).unwrap() {
        let raw = r.unwrap();
        from_codec.push(
            raw.parse()
                .map(|p| p.to_line_protocol().unwrap())
                .map_err(|e| e.to_string()),
        );
    }
    let from_body: Vec<_> = parse_lines(BODY)
        .map(|r| {
            r.map(|p| p.to_line_protocol().unwrap())
                .map_err(|e| e.to_string())
        })
        .collect();
    assert_eq!(from_codec, from_body);
    assert_eq!(from_body[0].as_deref(), Ok("cpu,host=a usage=1 1"));
    assert_eq!(
        from_body[1].as_ref().unwrap_err(),
        "unable to parse 'mem,host=b used=2i 2\r': bad timestamp"
    );
}

#[test]
fn too_long_lines_are_reported_once_and_discarded() {
    // A 40-byte limit; the long line has a quoted newline, so its end is the second newline.
    let body = "short f=1 1\nlong,host=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa f=\"x\ny\" 2\nnext f=2 3\nbig f=1000000000000000000000000000000000000000\nend f=4";
    let want = vec![
        Item::Line {
            number: 1,
            offset: 0,
            text: "short f=1 1".into(),
        },
        Item::TooLong {
            number: 2,
            offset: 12,
        },
        Item::Line {
            number: 4,
            offset: 64,
            text: "next f=2 3".into(),
        },
        Item::TooLong {
            number: 5,
            offset: 75,
        },
        Item::Line {
            number: 6,
            offset: 122,
            text: "end f=4".into(),
        },
    ];
    let bytes = body.as_bytes();
    for cut in 0..=bytes.len() {
        let mut codec = LineProtocolCodec::with_max_length(40);
        let got = decode_pieces(&mut codec, &[&bytes[..cut], &bytes[cut..]]);
        assert_eq!(got, want, "split at {cut}");
    }
    // Memory stays bounded: fed a byte at a time, the buffer never holds much over the limit.
    let mut codec = LineProtocolCodec::with_max_length(40);
    let mut buf = BytesMut::new();
    for b in bytes {
        buf.extend_from_slice(&[*b]);
        while codec.decode(&mut buf).unwrap().is_some() {}
        assert!(buf.len() <= 41);
    }
}

#[test]
fn a_too_long_last_line_at_eof() {
    let mut codec = LineProtocolCodec::with_max_length(5);
    let got = decode_pieces(&mut codec, &[b"abcdefgh", b"ij"]);
    assert_eq!(
        got,
        vec![Item::TooLong {
            number: 1,
            offset: 0
        }]
    );
    // The codec is ready for a new stream afterwards.
    let got = decode_pieces(&mut codec, &[b"m f=1"]);
    assert_eq!(got.len(), 1);
}

#[test]
fn invalid_utf8_skips_the_line() {
    let body: &[u8] = b"a f=1\nb f=\"\xff\xfe\"\nc f=2";
    for cut in 0..=body.len() {
        let got = decode_pieces(&mut LineProtocolCodec::new(), &[&body[..cut], &body[cut..]]);
        assert_eq!(got.len(), 3, "split at {cut}");
        assert_eq!(
            got[1],
            Item::Utf8 {
                number: 2,
                offset: 11
            }
        );
    }
    let e = LineProtocolCodec::new()
        .decode_eof(&mut BytesMut::from(&b"b f=\"\xff\""[..]))
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 1 at byte 5 is not valid UTF-8: 'b f=\"\u{fffd}\"'"
    );
    assert!(e.can_continue());
}

#[tokio::test]
async fn framed_read_keeps_going_after_bad_lines() {
    let body: &[u8] =
        b"a f=1\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nbad\nb f=\xff\nc f=2\n";
    let mut framed = FramedRead::new(body, LineProtocolCodec::with_max_length(20));
    let mut seen = Vec::new();
    while let Some(item) = framed.next().await {
        let line = item.expect("no i/o errors");
        seen.push(match line {
            Ok(raw) => match raw.parse() {
                Ok(p) => format!("ok {}", p.measurement),
                Err(e) => format!("parse {e}"),
            },
            Err(e) => format!("line {:?}", e.line_number()),
        });
    }
    assert_eq!(
        seen,
        [
            "ok a",
            "line Some(2)",
            "parse unable to parse 'bad': missing fields",
            "line Some(4)",
            "ok c"
        ]
    );
}

#[test]
fn encoder_writes_points_and_forwards_raw_lines() {
    let mut codec = LineProtocolCodec::new();
    let mut out = BytesMut::new();
    let p = parse_line("cpu,b=2,a=1 f=1.0,g=\"x\" 5").unwrap();
    codec.encode(&p, &mut out).unwrap();
    let mut buf = BytesMut::from("  raw,kept=as-is f=1.50 6\n");
    let raw = codec.decode(&mut buf).unwrap().unwrap().unwrap();
    codec.encode(raw, &mut out).unwrap();
    assert_eq!(
        &out[..],
        b"cpu,b=2,a=1 f=1,g=\"x\" 5\nraw,kept=as-is f=1.50 6\n"
    );

    let mut sorted =
        LineProtocolCodec::new().write_options(line_protocol::WriteOptions { sort_tags: true });
    let mut out = BytesMut::new();
    sorted.encode(&p, &mut out).unwrap();
    assert_eq!(&out[..], b"cpu,a=1,b=2 f=1,g=\"x\" 5\n");
}
