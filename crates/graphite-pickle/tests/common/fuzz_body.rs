//! The property of the `pickle` fuzz target, shared with `cargo test`:
//! `fuzz/fuzz_targets/pickle.rs` includes this file, `tests/roundtrip.rs` runs it over
//! proptest inputs.

use graphite_pickle::{DecodeOptions, Decoder, FrameEncoder, FrameSplitter};

/// What a decoder may keep between frames (its buffers are trimmed after each frame).
pub(crate) const MAX_RETAINED_BYTES: usize = 512 * 1024;

/// Whatever the bytes, as one pickle and as a stream of frames: decoding never panics,
/// errors point inside the input, at most one item comes out per input byte, memory
/// kept between frames stays bounded, and what decodes re-encodes to the same points.
pub(crate) fn check(data: &[u8]) {
    let mut decoder = Decoder::new();
    // Small limits too, so short inputs reach them.
    let mut tight = Decoder::with_options(DecodeOptions {
        max_stack: 16,
        max_memo: 16,
    });
    check_pickle(&mut decoder, data);
    check_pickle(&mut tight, data);
    for frame in FrameSplitter::new(1 << 16).split(data) {
        match frame {
            Ok(body) => check_pickle(&mut decoder, body),
            Err(e) => {
                assert!(!e.can_continue());
                assert!(e.offset().unwrap() < data.len() as u64);
            }
        }
    }
}

fn check_pickle(decoder: &mut Decoder, data: &[u8]) {
    match decoder.decode(data) {
        Ok(decoded) => {
            assert!(decoded.points.len() + decoded.skipped.len() <= data.len());
            for s in &decoded.skipped {
                assert!(!s.to_string().is_empty());
            }
            let encoder = FrameEncoder::new();
            let mut frames = Vec::new();
            let summary = encoder.encode(
                decoded
                    .points
                    .iter()
                    .map(|p| (&*p.path, p.timestamp, p.value)),
                &mut frames,
            );
            assert_eq!(summary.points + summary.oversized, decoded.points.len());
            let mut again = Decoder::new();
            let mut back = Vec::new();
            for frame in FrameSplitter::default().split(&frames) {
                let d = again.decode(frame.unwrap()).unwrap();
                assert!(d.skipped.is_empty());
                back.extend(
                    d.points
                        .into_iter()
                        .map(|p| (p.path.into_owned(), p.timestamp, p.value)),
                );
            }
            let sent = decoded
                .points
                .iter()
                .filter(|p| encoder.fits(&p.path, p.timestamp));
            assert_eq!(back.len(), summary.points);
            for (p, (path, ts, value)) in sent.zip(&back) {
                assert_eq!(&*p.path, path);
                assert_eq!(p.timestamp.to_bits(), ts.to_bits());
                assert_eq!(p.value.to_bits(), value.to_bits());
            }
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            assert!(
                e.can_continue(),
                "unpickling errors leave the framing intact: {e}"
            );
            let offset = e.offset().expect("unpickling errors have an offset");
            assert!(offset <= data.len() as u64, "{e}");
        }
    }
    assert!(
        decoder.retained_bytes() <= MAX_RETAINED_BYTES,
        "{}",
        decoder.retained_bytes()
    );
}
