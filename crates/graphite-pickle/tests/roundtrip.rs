//! Properties: encode -> split -> decode gives back every point bit for bit, within the
//! frame limits; and the fuzz target's property over generated and mutated inputs.

mod common {
    pub(crate) mod fuzz_body;
}

use std::path::Path;

use graphite_pickle::{Decoder, FrameEncoder, FrameSplitter, DEFAULT_MAX_FRAME_BYTES};
use proptest::prelude::*;

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[a-z]{1,8}(\\.[a-zA-Z0-9_-]{1,12}){0,6}",
        2 => "\\PC{1,24}",
        1 => "[a-z.;=]{1,20}",
        1 => "x{200,3000}",
    ]
}

fn timestamp() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => (1_500_000_000u32..2_000_000_000).prop_map(f64::from),
        2 => any::<i32>().prop_map(f64::from),
        1 => Just(-0.0),
        3 => any::<f64>(),
    ]
}

fn points(max: usize) -> impl Strategy<Value = Vec<(String, f64, f64)>> {
    prop::collection::vec((path(), timestamp(), any::<f64>()), 0..max)
}

/// Encodes with `encoder`, checks every frame against its limits, decodes everything.
fn round_trip(encoder: FrameEncoder, points: &[(String, f64, f64)]) -> Vec<(String, f64, f64)> {
    let mut stream = Vec::new();
    let summary = encoder.encode(
        points.iter().map(|(p, t, v)| (p.as_str(), *t, *v)),
        &mut stream,
    );
    let sendable: Vec<&(String, f64, f64)> = points
        .iter()
        .filter(|(p, t, _)| encoder.fits(p, *t))
        .collect();
    assert_eq!(summary.points, sendable.len());
    assert_eq!(summary.oversized, points.len() - sendable.len());

    let mut decoder = Decoder::new();
    let mut back = Vec::new();
    let mut frames = FrameSplitter::new(encoder.max_frame_bytes()).split(&stream);
    let mut sizes = Vec::new();
    for frame in frames.by_ref() {
        let frame = frame.unwrap();
        let decoded = decoder.decode(frame).unwrap();
        assert!(decoded.skipped.is_empty());
        assert_eq!(decoded.protocol, Some(2));
        assert!(!decoded.points.is_empty(), "no empty frames");
        assert!(decoded.points.len() <= encoder.max_points());
        assert!(frame.len() <= encoder.max_frame_bytes());
        sizes.push((frame.len(), decoded.points.len()));
        back.extend(
            decoded
                .points
                .into_iter()
                .map(|p| (p.path.into_owned(), p.timestamp, p.value)),
        );
    }
    assert_eq!(frames.consumed(), stream.len());
    assert_eq!(sizes.len(), summary.frames);
    // Frames are as full as the limits allow: the next frame's first point did not fit.
    let mut next = 0;
    for (i, &(bytes, count)) in sizes.iter().enumerate() {
        next += count;
        if i + 1 < sizes.len() {
            let (p, t, _) = sendable[next];
            let grown = bytes + FrameEncoder::point_size(p, *t);
            assert!(count == encoder.max_points() || grown > encoder.max_frame_bytes());
        }
    }
    for ((p, t, v), (bp, bt, bv)) in sendable.iter().zip(&back) {
        assert_eq!(p, bp);
        assert_eq!(t.to_bits(), bt.to_bits(), "timestamp of {p}");
        assert_eq!(v.to_bits(), bv.to_bits(), "value of {p}");
    }
    back
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn points_round_trip_with_default_limits(points in points(1200)) {
        let back = round_trip(FrameEncoder::new(), &points);
        prop_assert_eq!(back.len(), points.len());
    }
}

proptest! {
    #[test]
    fn points_round_trip_with_any_limits(
        points in points(300),
        max_points in 1usize..600,
        max_bytes in 32usize..8192,
    ) {
        let encoder = FrameEncoder::new().with_max_points(max_points).with_max_frame_bytes(max_bytes);
        round_trip(encoder, &points);
    }

    #[test]
    fn fuzz_property_holds_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        common::fuzz_body::check(&data);
    }

    #[test]
    fn fuzz_property_holds_on_mutated_fixtures(
        fixture in prop::sample::select(fixture_names()),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
    ) {
        let mut data = std::fs::read(fixtures_dir().join(&fixture)).unwrap();
        for (at, byte, how) in edits {
            if data.is_empty() {
                data.push(byte);
                continue;
            }
            let i = at.index(data.len());
            match how {
                0 => data[i] = byte,
                1 => data.insert(i, byte),
                2 => { data.remove(i); }
                _ => data.truncate(i),
            }
        }
        common::fuzz_body::check(&data);
        if data.len() > 4 {
            common::fuzz_body::check(&data[4..]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Big batches with long paths: the 1 MiB limit, not the 500 points, splits them.
    #[test]
    fn big_batches_split_at_one_mebibyte(
        points in prop::collection::vec((long_path(), timestamp(), any::<f64>()), 1100..1500)
    ) {
        let back = round_trip(FrameEncoder::new(), &points);
        prop_assert_eq!(back.len(), points.len());
        let total: usize = points.iter().map(|(p, t, _)| FrameEncoder::point_size(p, *t)).sum();
        prop_assert!(total > DEFAULT_MAX_FRAME_BYTES);
    }
}

/// A 1000 to 4000-byte path, cheap to generate in bulk.
fn long_path() -> impl Strategy<Value = String> {
    (1000usize..4000, "[a-z]{1,8}").prop_map(|(n, seg)| {
        let mut p = seg.repeat(n / seg.len() + 1);
        p.truncate(n);
        p
    })
}

fn fixtures_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".frame"))
        .filter(|n| std::fs::metadata(fixtures_dir().join(n)).unwrap().len() < 40_000)
        .collect();
    names.sort();
    names
}

#[test]
fn fuzz_property_holds_on_every_fixture() {
    for name in fixture_names() {
        let data = std::fs::read(fixtures_dir().join(&name)).unwrap();
        common::fuzz_body::check(&data);
        common::fuzz_body::check(&data[4.min(data.len())..]);
    }
}

#[test]
fn memo_filled_to_the_limit_and_one_more() {
    use graphite_pickle::DecodeOptions;
    // MEMOIZE fills index after index: the limit is hit exactly at entry max_memo.
    let max = DecodeOptions::DEFAULT_MAX_MEMO;
    let mut pickle = b"\x80\x04]".to_vec();
    pickle.extend(std::iter::repeat_n(0x94, max));
    pickle.push(b'.');
    assert_eq!(Decoder::new().decode(&pickle).unwrap().points.len(), 0);
    pickle.insert(3, 0x94);
    let err = Decoder::new().decode(&pickle).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "memo index {max} at byte {} exceeds the limit of {max} entries",
            3 + max
        )
    );
}

#[test]
fn decoder_gives_back_memory_after_a_large_frame() {
    let body = std::fs::read(fixtures_dir().join("p4_multi_frame.frame")).unwrap();
    let mut decoder = Decoder::new();
    assert_eq!(decoder.decode(&body[4..]).unwrap().points.len(), 1500);
    assert!(decoder.retained_bytes() <= common::fuzz_body::MAX_RETAINED_BYTES);
}
