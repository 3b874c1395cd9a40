//! The property the fuzz target checks, here so that `cargo test` runs it too.

use crate::{parse_lines, parse_lines_bytes, write_line, Error, WriteOptions};

/// For any input: parsing never panics, every error is a recoverable line error, and every
/// accepted point that the writer can express is written so that it parses back to the same
/// point and is written again byte for byte the same (parse → write → parse is stable). With
/// the `codec` feature, framing the input through the codec in two pieces gives the same
/// lines as parsing it whole.
pub fn parse_write_parse(data: &[u8]) {
    #[cfg(feature = "codec")]
    codec_matches_body(data);
    let from_bytes: Vec<_> = parse_lines_bytes(data).collect();
    for r in &from_bytes {
        if let Err(e) = r {
            assert!(e.can_continue(), "{e:?}");
        }
    }
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let from_text: Vec<_> = parse_lines(body).collect();
    assert_eq!(from_bytes.len(), from_text.len());
    for (b, t) in from_bytes.iter().zip(&from_text) {
        match (b, t) {
            (Ok(b), Ok(t)) => assert!(b == t && b.line() == t.line()),
            (Err(b), Err(t)) => assert_eq!(b.to_string(), t.to_string()),
            _ => panic!("bytes and text parsing disagree: {b:?} / {t:?}"),
        }
    }
    for result in parse_lines(body) {
        let line = match result {
            Ok(line) => line,
            Err(e) => {
                assert!(
                    matches!(e, Error::Parse { .. }) && e.can_continue(),
                    "{e:?}"
                );
                let _ = (e.to_string(), e.summary());
                continue;
            }
        };
        for sort_tags in [false, true] {
            let options = WriteOptions { sort_tags };
            let mut out = Vec::new();
            match write_line(&mut out, &line, &options) {
                Ok(n) => assert_eq!(n, out.len()),
                Err(Error::Unwritable { .. }) => {
                    assert!(out.is_empty(), "a failed write leaves the buffer alone");
                    continue;
                }
                Err(e) => panic!("unexpected write error {e:?}"),
            }
            let text = std::str::from_utf8(&out).expect("the writer emits UTF-8");
            let mut again = parse_lines(text);
            let reparsed = match again.next() {
                Some(Ok(p)) => p,
                other => panic!(
                    "{text:?} written from {:?} reads back as {other:?}",
                    line.line()
                ),
            };
            assert!(again.next().is_none(), "{text:?} is one line");
            let mut expected = line.clone();
            if sort_tags {
                expected.tags.sort_by(|a, b| a.0.cmp(&b.0));
            }
            assert_eq!(reparsed, expected, "{text:?} from {:?}", line.line());
            let mut out2 = Vec::new();
            write_line(&mut out2, &reparsed, &options).expect("a written line writes again");
            assert_eq!(out, out2, "writing is stable");
        }
    }
}

#[cfg(feature = "codec")]
fn codec_matches_body(data: &[u8]) {
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let whole: Vec<(usize, String)> = parse_lines(body)
        .map(|r| match r {
            Ok(p) => (p.line_number(), p.line().to_owned()),
            Err(Error::Parse {
                line_number, line, ..
            }) => (line_number, line.into()),
            Err(e) => panic!("{e:?}"),
        })
        .collect();
    let cut = data
        .first()
        .map_or(0, |&b| usize::from(b) % (data.len() + 1));
    let mut codec = crate::LineProtocolCodec::with_max_length(usize::MAX);
    let mut buf = BytesMut::new();
    let mut framed = Vec::new();
    for piece in [&data[..cut], &data[cut..]] {
        buf.extend_from_slice(piece);
        while let Some(item) = codec.decode(&mut buf).expect("no i/o here") {
            let line = item.expect("UTF-8 and no limit: no line errors");
            framed.push((line.line_number(), line.as_str().to_owned()));
        }
    }
    while let Some(item) = codec.decode_eof(&mut buf).expect("no i/o here") {
        let line = item.expect("UTF-8 and no limit: no line errors");
        framed.push((line.line_number(), line.as_str().to_owned()));
    }
    assert_eq!(framed, whole, "codec framing equals body splitting");
}
