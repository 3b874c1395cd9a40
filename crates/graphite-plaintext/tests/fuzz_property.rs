//! The fuzz target's property (`fuzz/property.rs`) run under proptest, so every `cargo test`
//! exercises it, plus inputs the fuzzer found worth keeping.

#![cfg(feature = "codec")]

#[path = "../fuzz/property.rs"]
mod property;

use proptest::prelude::*;

/// Bytes that look like plaintext traffic often enough to get past the first checks.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"a.b".to_vec()),
        Just(b"servers.dc1.host0001.cpu".to_vec()),
        Just(b"m;k=v;a=1;k=w".to_vec()),
        Just(b"~m;name=x;b.c=1".to_vec()),
        Just(b"12.5".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"1_000e-3".to_vec()),
        Just(b"nan".to_vec()),
        Just(b"-inf".to_vec()),
        Just(b"1700000000".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
        "[ -~]{0,12}".prop_map(String::into_bytes),
    ];
    (
        any::<u8>(),
        any::<u8>(),
        proptest::collection::vec(token, 0..40),
    )
        .prop_map(|(a, b, tokens)| {
            let mut data = vec![a, b];
            for t in tokens {
                data.extend_from_slice(&t);
            }
            data
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fuzz_property_holds(data in stream()) {
        property::check(&data);
    }

    #[test]
    fn fuzz_property_holds_on_raw_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        property::check(&data);
    }
}

#[test]
fn regressions() {
    for data in [
        &b""[..],
        b"\x00",
        b"\x05\x01abcdefgh\r\nab\r\r\n\n",
        b"\x03\x01abc\r\nabcd\r",
        b"\x00\x00\r\n\r",
        b"\xff\x02a.b 1 -1\nm;a=1;a.b=2 1e300 1e18\n\xff\xfe 1 1",
    ] {
        property::check(data);
    }
}
