//! Properties over generated names: round trips, the ASCII rules written out independently,
//! the fast path, and that nothing panics whatever the input.

use std::borrow::Cow;

use metric_name::{
    decode, decode_with, encode, encode_into, encode_with, is_safe, join, Encoding, Error,
};
use proptest::prelude::*;

/// Characters that exercise every branch: ASCII of all kinds, the four separators, letters
/// that case-fold or normalize, combining marks, Hangul, bidi, prohibited and
/// mapped-to-nothing code points, emoji, characters newer than Unicode 3.2.
fn name_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => proptest::char::range('a', 'z'),
        2 => proptest::char::range('A', 'Z'),
        2 => proptest::char::range('0', '9'),
        3 => proptest::sample::select(vec!['.', '-', '_', '~', '/', '%', ' ', '\u{3002}', '\u{ff0e}', '\u{ff61}']),
        2 => proptest::char::range(' ', '~'),
        3 => proptest::sample::select("äöüßÀÉẞİıσςΣабвПРИ東京서울\u{1100}\u{1161}\u{11a8}ｱﾞＦｆﬁ㎒①Ⅻ\u{2024}".chars().collect::<Vec<_>>()),
        2 => proptest::sample::select("\u{300}\u{301}\u{308}\u{316}\u{323}\u{345}\u{1dc0}\u{327}\u{338}".chars().collect::<Vec<_>>()),
        1 => proptest::sample::select("שלוםمرحبا\u{661}\u{5b0}".chars().collect::<Vec<_>>()),
        1 => proptest::sample::select("\u{ad}\u{200b}\u{200d}\u{fe0f}\u{a0}\u{200e}\u{e000}\u{fffc}\u{2028}\u{e0001}".chars().collect::<Vec<_>>()),
        1 => proptest::sample::select("🚀💩😀👍🏽\u{870}\u{11099}\u{110ba}\u{1f970}\u{1f100}".chars().collect::<Vec<_>>()),
        1 => any::<char>(),
    ]
}

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(name_char(), 0..40).prop_map(String::from_iter)
}

/// Inputs shaped like encoder output or close to it, for the decoders.
fn encoded_name() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        proptest::string::string_regex("xn--[a-z0-9-]{0,12}").unwrap(),
        proptest::string::string_regex("XN--[A-Z0-9-]{0,8}").unwrap(),
        proptest::string::string_regex("(%[0-9A-Fa-f]{2}){1,4}").unwrap(),
        proptest::string::string_regex("%[0-9A-Za-z%]{0,2}").unwrap(),
        proptest::string::string_regex("[a-z0-9.-]{0,10}").unwrap(),
        name(),
    ];
    proptest::collection::vec(piece, 0..4).prop_map(|p| p.concat())
}

/// The ASCII rules, written from Python's `Codec.encode` fast path and `quote`, not from
/// the crate.
fn ascii_model(s: &str) -> Result<String, &'static str> {
    let labels: Vec<&str> = s.split('.').collect();
    if !s.is_empty() {
        for l in &labels[..labels.len() - 1] {
            if l.is_empty() || l.len() > 63 {
                return Err("label empty or too long");
            }
        }
        if labels[labels.len() - 1].len() > 63 {
            return Err("label too long");
        }
    }
    Ok(s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect())
}

/// What `fuzz`-style callers rely on: any input gives a value or an error, never a panic,
/// and an error points inside the input.
fn total(s: &str) {
    for encoding in [Encoding::Idna, Encoding::Punycode] {
        for result in [encode_with(encoding, s), decode_with(encoding, s)] {
            if let Err(e) = result {
                assert!(e.context().offset <= s.len());
                assert!(e.to_string().starts_with(&e.python_message()));
                assert!(e.is_continuable());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn punycode_variant_round_trips(s in name()) {
        let encoded = encode_with(Encoding::Punycode, &s).unwrap();
        let decoded = decode_with(Encoding::Punycode, &encoded).unwrap().into_owned();
        prop_assert_eq!(decoded, s);
    }

    #[test]
    fn idna_output_is_graphite_safe_and_stable(s in name()) {
        if let Ok(encoded) = encode(&s) {
            prop_assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"%_-~/".contains(&b)), "{:?}", encoded);
            // What decodes re-encodes to the same name, when it re-encodes at all: nameprep
            // can create dots (U+2024 ONE DOT LEADER becomes "."), and Python then encodes
            // "\u{2024}" to "%2E", decodes that to ".", and refuses to encode ".".
            if let Ok(decoded) = decode(&encoded) {
                if let Ok(again) = encode(&decoded) {
                    prop_assert_eq!(again, encoded.clone());
                }
            }
        }
    }

    #[test]
    fn ascii_names_follow_the_written_rules(s in "[ -~]{0,70}(\\.[ -~]{0,70}){0,3}") {
        let got = encode(&s).map(Cow::into_owned).map_err(|e| e.python_message());
        prop_assert_eq!(got, ascii_model(&s).map_err(str::to_owned));
    }

    #[test]
    fn safe_names_are_borrowed(s in "[A-Za-z0-9_~/-]{0,63}") {
        prop_assert!(is_safe(&s));
        prop_assert!(matches!(encode(&s), Ok(Cow::Borrowed(b)) if b == s));
        prop_assert!(matches!(decode(&s), Ok(Cow::Borrowed(b)) if b == s) || s.contains("xn--"));
    }

    #[test]
    fn into_appends_what_encode_returns(prefix in "[a-z.]{0,8}", s in name()) {
        let mut buf = prefix.clone();
        match (encode(&s), encode_into(&s, &mut buf)) {
            (Ok(want), Ok(())) => prop_assert_eq!(buf, format!("{prefix}{want}")),
            (Err(want), Err(got)) => {
                prop_assert_eq!(want, got);
                prop_assert_eq!(buf, prefix);
            }
            (want, got) => prop_assert!(false, "{:?} vs {:?}", want, got),
        }
    }

    #[test]
    fn join_is_encode_then_dots(parts in proptest::collection::vec(name(), 0..5)) {
        let each: Result<Vec<String>, Error> = parts.iter().map(|p| encode(p).map(Cow::into_owned)).collect();
        match (join(&parts), each) {
            (Ok(joined), Ok(each)) => prop_assert_eq!(joined, each.join(".")),
            (Err(e), Err(first)) => {
                prop_assert_eq!(e.python_message(), first.python_message());
                let part = e.context().part.unwrap();
                prop_assert!(encode(&parts[part]).is_err());
                prop_assert!(parts[..part].iter().all(|p| encode(p).is_ok()));
            }
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
    }

    #[test]
    fn anything_is_total(s in name()) {
        total(&s);
    }

    #[test]
    fn encoded_looking_input_is_total(s in encoded_name()) {
        total(&s);
    }

    #[test]
    fn arbitrary_unicode_is_total(s in any::<String>()) {
        total(&s);
    }
}
