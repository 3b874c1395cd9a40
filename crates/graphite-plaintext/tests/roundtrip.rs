//! Property tests: what the encoder writes, the parser reads back exactly.

use graphite_plaintext::{
    encode_sample, encode_value, normalize, parse_float, parse_line, TaggedPath, Timestamp,
};
use proptest::prelude::*;

/// Any path the encoder accepts: non-empty, no ASCII whitespace (Unicode welcome).
fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9_.-]{1,40}",
        "[^\t\n\u{b}\u{c}\r\u{1c}-\u{1f} ]{1,24}",
        "[a-z]{1,8}(;[a-z.]{1,4}=[a-z0-9=~]{1,4}){0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn encode_then_parse(path in path(), value in any::<f64>(), ts in any::<i64>()) {
        let mut out = Vec::new();
        encode_sample(&path, value, ts, &mut out).unwrap();
        prop_assert_eq!(out.last(), Some(&b'\n'));
        let text = std::str::from_utf8(&out).unwrap();
        let value_text = text.rsplit(' ').nth(1).unwrap();
        prop_assert!(!value_text.contains(['e', 'E']) || !value.is_finite() , "{}", value_text);
        let sample = parse_line(&out[..out.len() - 1]).unwrap();
        prop_assert_eq!(sample.path, path.as_str());
        if value.is_nan() {
            prop_assert!(sample.value.is_nan());
        } else {
            // Bit-exact, except that -0 is written as 0.
            prop_assert_eq!(sample.value, value);
            prop_assert!(sample.value.to_bits() == value.to_bits() || value == 0.0);
        }
        let want = if ts == -1 { Timestamp::Now } else { Timestamp::Seconds(ts as f64) };
        prop_assert_eq!(sample.timestamp, want);
    }

    #[test]
    fn integral_values_print_as_integers(i in -(1i64 << 53)..=(1i64 << 53)) {
        let mut out = Vec::new();
        encode_value(i as f64, &mut out);
        prop_assert_eq!(String::from_utf8(out).unwrap(), i.to_string());
    }

    #[test]
    fn parse_float_reads_rust_spellings_exactly(value in any::<f64>()) {
        prop_assume!(value.is_finite());
        for text in [format!("{value}"), format!("{value:e}"), format!("{value:?}"), format!("{value:E}")] {
            prop_assert_eq!(parse_float(text.as_bytes()).map(f64::to_bits), Some(value.to_bits()), "{}", text);
        }
    }

    #[test]
    fn normalized_tagged_paths_are_fixed_points(
        name in "~?[a-z.]{1,6}",
        tags in proptest::collection::vec(("[a-z.\\-]{1,3}|name", "[a-z0-9=!^]{1,3}"), 0..8),
    ) {
        let mut path = name.clone();
        for (k, v) in &tags {
            path.push_str(&format!(";{k}={v}"));
        }
        let normalized = normalize(&path).unwrap();
        let parsed = TaggedPath::parse(&normalized).unwrap();
        prop_assert!(parsed.is_normalized());
        prop_assert_eq!(parsed.name(), name.trim_start_matches('~'));
        // Every key survives once with its last value, except `name`.
        let mut want: Vec<(&str, &str)> = Vec::new();
        for (k, v) in &tags {
            if k == "name" { continue; }
            want.retain(|(key, _)| key != k);
            want.push((k, v));
        }
        let mut got: Vec<(&str, &str)> = parsed.tags().map(|t| (t.key, t.value)).collect();
        want.sort();
        got.sort();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn parse_line_never_panics(line in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_line(&line);
    }
}
