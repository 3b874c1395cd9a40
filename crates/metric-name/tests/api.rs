//! Golden cases for the public API: values, exact error texts, positions, and the config
//! spelling of `Encoding`. Every literal here was checked against CPython 3.11.

use std::borrow::Cow;

use metric_name::{
    decode, decode_with, encode, encode_into, encode_with, join, join_with, Direction, Encoding,
    Error,
};

#[test]
fn encodes_like_graphite_encoder() {
    assert!(matches!(encode("servers"), Ok(Cow::Borrowed("servers"))));
    assert!(matches!(encode("host0001"), Ok(Cow::Borrowed(_))));
    assert!(matches!(encode(""), Ok(Cow::Borrowed(""))));
    assert_eq!(encode("www.example.com").unwrap(), "www%2Eexample%2Ecom");
    assert_eq!(encode("CPU").unwrap(), "CPU");
    assert_eq!(encode("a b/c").unwrap(), "a%20b/c");
    assert_eq!(encode("100%").unwrap(), "100%25");
    assert_eq!(encode("a.").unwrap(), "a%2E");
    assert_eq!(encode("münchen").unwrap(), "xn--mnchen-3ya");
    assert_eq!(encode("Пример").unwrap(), "xn--e1afmkfd");
    assert_eq!(encode("東京").unwrap(), "xn--1lqs71d");
    assert_eq!(encode("Straße").unwrap(), "strasse");
    assert_eq!(encode("ＦＵＬＬ").unwrap(), "full");
    assert_eq!(encode("ü\u{3002}x").unwrap(), "xn--tda%2Ex");
    assert_eq!(encode("ü\u{3002}").unwrap(), "xn--tda%2E");
    assert_eq!(encode("💩").unwrap(), "xn--ls8h");
    assert_eq!(encode("a\u{2024}b").unwrap(), "a%2Eb");
}

#[test]
fn decodes_like_graphite_encoder() {
    assert!(matches!(decode("servers"), Ok(Cow::Borrowed("servers"))));
    assert_eq!(decode("www%2Eexample%2Ecom").unwrap(), "www.example.com");
    assert_eq!(decode("xn--mnchen-3ya").unwrap(), "münchen");
    assert_eq!(decode("XN--MNCHEN-3YA").unwrap(), "XN--MNCHEN-3YA");
    // Python keeps the case of the basic code points it decodes.
    assert_eq!(decode("xn--MNCHEN-3YA").unwrap(), "MüNCHEN");
    assert_eq!(decode("xn--tda%2Ex%2E").unwrap(), "ü.x.");
    assert_eq!(decode("100%25").unwrap(), "100%");
    assert_eq!(decode("%zz").unwrap(), "%zz");
}

#[test]
fn punycode_variant() {
    assert_eq!(encode_with(Encoding::Punycode, "cpu").unwrap(), "cpu-");
    assert_eq!(encode_with(Encoding::Punycode, "").unwrap(), "");
    assert_eq!(encode_with(Encoding::Punycode, "a.b").unwrap(), "a%2Eb-");
    assert_eq!(
        encode_with(Encoding::Punycode, "münchen").unwrap(),
        "mnchen-3ya"
    );
    assert_eq!(
        encode_with(Encoding::Punycode, &"a".repeat(100)).unwrap(),
        format!("{}-", "a".repeat(100))
    );
    assert_eq!(decode_with(Encoding::Punycode, "cpu-").unwrap(), "cpu");
    assert_eq!(decode_with(Encoding::Punycode, "a%2Eb-").unwrap(), "a.b");
    // Decoding what was never encoded: Python accepts it.
    assert_eq!(
        decode_with(Encoding::Punycode, "abc").unwrap(),
        "\u{82}\u{81}\u{80}"
    );
    let e = decode_with(Encoding::Punycode, "zz").unwrap_err();
    assert_eq!(
        e.python_str().unwrap(),
        "decoding with 'punycode' codec failed (UnicodeError: incomplete punicode string)"
    );
    // '\ud800'.encode('punycode') == b'ib9b': Python decodes it to a lone surrogate.
    let e = decode_with(Encoding::Punycode, "ib9b").unwrap_err();
    assert!(
        matches!(
            e,
            Error::Surrogate {
                code_point: 0xd800,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.python_str(), None);
}

#[test]
fn errors_carry_python_texts_and_positions() {
    let e = encode("a..b").unwrap_err();
    assert!(matches!(e, Error::LabelEmptyOrTooLong { .. }));
    assert_eq!(
        e.to_string(),
        r#"label empty or too long (label 1 at byte 2: "")"#
    );
    assert_eq!(e.python_message(), "label empty or too long");
    assert_eq!(
        e.python_str().unwrap(),
        "encoding with 'idna' codec failed (UnicodeError: label empty or too long)"
    );
    assert_eq!(e.python_type(), Some("UnicodeError"));
    assert_eq!(e.reason(), "label_empty_or_too_long");
    assert!(e.is_continuable());
    let c = e.context();
    assert_eq!(
        (c.direction, c.encoding, c.part, c.label, c.offset),
        (Direction::Encode, Encoding::Idna, None, 1, 2)
    );

    let long = "a".repeat(64);
    let e = encode(&format!("ok.{long}")).unwrap_err();
    assert_eq!(e.python_message(), "label too long");
    assert_eq!((e.context().label, e.context().offset), (1, 3));
    assert_eq!(e.context().excerpt, long);

    let e = encode("ok.x\u{200e}").unwrap_err();
    assert_eq!(
        e,
        Error::InvalidCharacter {
            code_point: 0x200e,
            context: e.context().clone()
        }
    );
    // The excerpt is shown escaped, so invisible characters are visible.
    assert_eq!(
        e.to_string(),
        r#"Invalid character '\u200e' (label 1 at byte 3: "x\u{200e}")"#
    );

    let e = encode("\u{5d0}a").unwrap_err();
    assert_eq!(e.python_message(), "Violation of BIDI requirement 2");
    let e = encode("\u{5d0}1").unwrap_err();
    assert_eq!(e.python_message(), "Violation of BIDI requirement 3");
    let e = encode("XN--ü").unwrap_err();
    assert_eq!(e.python_message(), "Label starts with ACE prefix");
    assert_eq!(
        encode(&"ü".repeat(40)).unwrap(),
        format!("xn--tda{}", "a".repeat(39))
    );
    let e = encode(&"ü".repeat(60)).unwrap_err();
    assert_eq!(e.python_message(), "label empty or too long");
    assert!(e.context().excerpt.ends_with('\u{2026}'));
}

#[test]
fn decode_errors_point_into_the_encoded_input() {
    // Percent-decoded: "a.b.xn--zz"; the bad label starts at byte 8 of what was passed.
    let e = decode("a%2Eb%2Exn--zz").unwrap_err();
    assert_eq!(
        e,
        Error::IncompletePunycode {
            context: e.context().clone()
        }
    );
    assert_eq!((e.context().label, e.context().offset), (2, 8));
    assert_eq!(e.context().excerpt, "xn--zz");
    assert_eq!(
        e.python_str().unwrap(),
        "decoding with 'idna' codec failed (UnicodeError: decoding with 'punycode' codec failed (UnicodeError: incomplete punicode string))"
    );
    let e = decode("xn--abc-").unwrap_err();
    assert_eq!(
        e.python_message(),
        "('IDNA does not round-trip', b'xn--abc-', b'abc')"
    );
    assert_eq!(e.python_str().unwrap(), e.python_message());
    let e = decode("ok.%C3%BC").unwrap_err();
    assert_eq!(
        e.python_message(),
        "'ascii' codec can't decode byte 0xc3 in position 0: ordinal not in range(128)"
    );
    assert_eq!(e.python_type(), Some("UnicodeDecodeError"));
    assert_eq!((e.context().label, e.context().offset), (1, 3));
    let e = decode("xn--99999999999999999999999999999999999a").unwrap_err();
    assert_eq!(
        e.python_message(),
        "Invalid character U+3957ddb385dac6aef08406c38e38109"
    );
}

#[test]
fn into_leaves_the_buffer_alone_on_error() {
    let mut buf = String::from("servers.");
    encode_into("dc1", &mut buf).unwrap();
    assert_eq!(buf, "servers.dc1");
    assert!(encode_into("ok.a..b", &mut buf).is_err());
    assert_eq!(buf, "servers.dc1");
}

#[test]
fn join_names_the_failing_part() {
    assert_eq!(
        join(["servers", "db 1.example", "cpu"]).unwrap(),
        "servers.db%201%2Eexample.cpu"
    );
    assert_eq!(join(Vec::<String>::new()).unwrap(), "");
    assert_eq!(join_with(Encoding::Punycode, ["a", "ü"]).unwrap(), "a-.tda");
    let e = join(["ok", "a..b", "also.bad.."]).unwrap_err();
    assert_eq!(e.context().part, Some(1));
    assert_eq!(
        e.to_string(),
        r#"label empty or too long (part 1, label 1 at byte 2: "")"#
    );
}

#[test]
fn encoding_config_spelling() {
    assert_eq!(Encoding::default(), Encoding::Idna);
    assert_eq!(Encoding::Punycode.to_string(), "punycode");
    assert_eq!(Encoding::from_name("idna"), Some(Encoding::Idna));
    assert_eq!(Encoding::from_name("IDNA"), None);
    let parsed: Vec<Encoding> = serde_json::from_str(r#"["idna", "punycode"]"#).unwrap();
    assert_eq!(parsed, [Encoding::Idna, Encoding::Punycode]);
    assert!(serde_json::from_str::<Encoding>(r#""utf8""#).is_err());
    assert_eq!(
        serde_json::to_string(&Encoding::Punycode).unwrap(),
        r#""punycode""#
    );
}

/// Why nameprep is not built on the `unicode-normalization` crate: Python normalizes with
/// Unicode 3.2 decompositions, so characters added later, or corrected later, come out
/// differently from a current NFKC, and the Graphite name would change.
#[test]
fn python_nfkc_is_not_current_nfkc() {
    use unicode_normalization::UnicodeNormalization;
    for (c, python, current_nfkc) in [
        ("\u{1f100}", "xn--t07h", "0."), // DIGIT ZERO FULL STOP, Unicode 5.2
        ("\u{3250}", "xn--mok", "PTE"),  // PARTNERSHIP SIGN, Unicode 4.0
        ("\u{2f868}", "xn--j74i", "\u{36fc}"), // Corrigendum 4 changed its mapping
    ] {
        assert_eq!(encode(c).unwrap(), python);
        assert_eq!(c.nfkc().collect::<String>(), current_nfkc);
    }
    // And the other way round: Python sorts and composes with today's classes and pairs.
    assert_eq!(
        encode("\u{11099}\u{110ba}").unwrap(),
        encode("\u{1109a}").unwrap()
    );
}
