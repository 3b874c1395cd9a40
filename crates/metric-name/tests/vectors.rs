//! Every case of `tests/vectors.json` (written by `scripts/gen_vectors.py` from CPython
//! 3.11) must come out exactly as Python had it: the same string, or an error with the same
//! `str(exc)`, exception class and innermost message.

use std::borrow::Cow;

use metric_name::{
    decode_with, decode_with_into, encode_with, encode_with_into, is_safe, join_with, Direction,
    Encoding, Error,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    python: String,
    joins: Vec<JoinCase>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    input: String,
    #[serde(default)]
    note: Option<String>,
    idna: Directions,
    punycode: Directions,
}

#[derive(Deserialize)]
struct Directions {
    encode: Outcome,
    decode: Outcome,
}

#[derive(Deserialize)]
struct JoinCase {
    parts: Vec<String>,
    idna: Outcome,
    punycode: Outcome,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Outcome {
    ok: Option<String>,
    error: Option<String>,
    #[serde(rename = "type")]
    python_type: Option<String>,
    surrogate: Option<u32>,
}

fn load() -> Vectors {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors.json");
    let text = std::fs::read_to_string(path)
        .expect("tests/vectors.json is committed; regenerate with scripts/gen_vectors.py");
    serde_json::from_str(&text).expect("tests/vectors.json parses")
}

/// The message the codec raised, peeled out of the codec machinery's wrapping.
fn innermost(mut s: &str) -> &str {
    const WRAP: &str = "codec failed (UnicodeError: ";
    while let Some(i) = s.find(WRAP) {
        s = &s[i + WRAP.len()..s.len() - 1];
    }
    s
}

fn compare(got: &Result<Cow<'_, str>, Error>, want: &Outcome) -> Result<(), String> {
    match (got, want) {
        (Ok(g), Outcome { ok: Some(w), .. }) if g == w => Ok(()),
        (
            Err(e),
            Outcome {
                error: Some(w),
                python_type,
                ..
            },
        ) => {
            let want_type = python_type.as_deref().unwrap_or("UnicodeError");
            if e.python_str().as_deref() != Some(w.as_str()) {
                return Err(format!("str(exc): want {w:?}, got {:?}", e.python_str()));
            }
            if e.python_type() != Some(want_type) {
                return Err(format!("type: want {want_type}, got {:?}", e.python_type()));
            }
            if e.python_message() != innermost(w) {
                return Err(format!(
                    "message: want {:?}, got {:?}",
                    innermost(w),
                    e.python_message()
                ));
            }
            Ok(())
        }
        (
            Err(Error::Surrogate { code_point, .. }),
            Outcome {
                surrogate: Some(w), ..
            },
        ) if code_point == w => Ok(()),
        _ => Err(format!("want {want:?}, got {got:?}")),
    }
}

/// The error's position must point at the label it names.
fn check_context(
    input: &str,
    direction: Direction,
    encoding: Encoding,
    e: &Error,
) -> Result<(), String> {
    let c = e.context();
    if c.direction != direction || c.encoding != encoding || c.part.is_some() {
        return Err(format!("context names the wrong call: {c:?}"));
    }
    if c.offset > input.len() {
        return Err(format!(
            "offset {} beyond input length {}",
            c.offset,
            input.len()
        ));
    }
    if direction == Direction::Encode {
        let excerpt = c.excerpt.trim_end_matches('\u{2026}');
        if !input
            .get(c.offset..)
            .is_some_and(|rest| rest.starts_with(excerpt))
        {
            return Err(format!(
                "excerpt {:?} is not at byte {} of the input",
                c.excerpt, c.offset
            ));
        }
    }
    Ok(())
}

#[test]
fn every_vector_matches_python() {
    let vectors = load();
    assert_eq!(
        vectors.python.get(..5),
        Some("3.11."),
        "vectors come from CPython 3.11"
    );
    assert!(vectors.cases.len() > 4000, "a few thousand cases");
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &vectors.cases {
        let input = case.input.as_str();
        for (encoding, directions) in [
            (Encoding::Idna, &case.idna),
            (Encoding::Punycode, &case.punycode),
        ] {
            let encoded = encode_with(encoding, input);
            let decoded = decode_with(encoding, input);
            let mut problems = Vec::new();
            if let Err(p) = compare(&encoded, &directions.encode) {
                problems.push(format!("encode: {p}"));
            }
            if let Err(p) = compare(&decoded, &directions.decode) {
                problems.push(format!("decode: {p}"));
            }
            // The buffer-reusing forms agree, and leave the buffer alone on error.
            for (direction, result, into) in [
                (
                    Direction::Encode,
                    &encoded,
                    encode_with_into as fn(Encoding, &str, &mut String) -> Result<(), Error>,
                ),
                (Direction::Decode, &decoded, decode_with_into),
            ] {
                let mut buf = String::from("prefix:");
                let r = into(encoding, input, &mut buf);
                match (result, r) {
                    (Ok(want), Ok(())) if buf.strip_prefix("prefix:") == Some(want) => {}
                    (Err(want), Err(got)) if *want == got && buf == "prefix:" => {}
                    (want, got) => problems.push(format!(
                        "{direction:?}_into: {got:?} / {buf:?}, want {want:?}"
                    )),
                }
                if let Err(e) = result {
                    if let Err(p) = check_context(input, direction, encoding, e) {
                        problems.push(format!("{direction:?} context: {p}"));
                    }
                }
            }
            if encoding == Encoding::Idna
                && is_safe(input)
                && !matches!(encoded, Ok(Cow::Borrowed(_)))
            {
                problems.push("safe input was not returned borrowed".to_owned());
            }
            checked += 2;
            if !problems.is_empty() {
                failures.push(format!(
                    "{encoding} {input:?} ({}): {}",
                    case.note.as_deref().unwrap_or(""),
                    problems.join("; ")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} vectors differ from Python:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn joins_match_python() {
    for case in load().joins {
        for (encoding, want) in [
            (Encoding::Idna, &case.idna),
            (Encoding::Punycode, &case.punycode),
        ] {
            let got = join_with(encoding, &case.parts).map(Cow::Owned);
            if let Err(p) = compare(&got, want) {
                panic!("join {encoding} {:?}: {p}", case.parts);
            }
        }
    }
}

#[test]
fn vectors_cover_what_they_claim() {
    let vectors = load();
    let has = |s: &str| vectors.cases.iter().any(|c| c.input == s);
    for s in [
        "",
        "a..b",
        "Straße",
        "xn--bcher-kva",
        "%2E",
        "a\u{3002}b",
        "\u{5d0}a",
        "a\u{200e}",
        &"a".repeat(64),
    ] {
        assert!(has(s), "missing {s:?}");
    }
    let errors: std::collections::BTreeSet<String> = vectors
        .cases
        .iter()
        .flat_map(|c| {
            [
                &c.idna.encode,
                &c.idna.decode,
                &c.punycode.encode,
                &c.punycode.decode,
            ]
        })
        .filter_map(|o| o.error.as_deref())
        .map(|e| {
            innermost(e)
                .split(['\'', ' '])
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    for kind in [
        "label empty",
        "label too",
        "Invalid character",
        "Violation of",
        "Label starts",
        "( IDNA",
        "incomplete punicode",
        "Invalid extended",
        " ascii",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(kind)),
            "no vector raises {kind:?}: {errors:?}"
        );
    }
    assert!(vectors
        .cases
        .iter()
        .any(|c| c.punycode.decode.surrogate.is_some()));
}
