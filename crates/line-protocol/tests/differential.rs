//! Differential test against the independent `influxdb-line-protocol` crate (2.x, the nom
//! parser of InfluxDB IOx / 3).
//!
//! On well-formed line protocol the two must agree exactly, values included. They differ on
//! purpose at the edges: this crate reproduces InfluxDB 1.x (checked against a running
//! `influxd`), while that crate implements the stricter InfluxDB 3 reading. Every such
//! difference is listed in [`listed_differences`] with the reason, and every disagreement on
//! the recorded influxd corpus must be one of them.

use influxdb_line_protocol as iox;
use line_protocol::{parse_lines, FieldValue, ParsedLine, Reason};
use proptest::prelude::*;

/// A parsed point in a form both crates can be compared in.
#[derive(Debug, Clone, PartialEq)]
struct Point {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, Value)>,
    timestamp: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    F64(u64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(String),
}

fn float(v: f64) -> Value {
    // Bits, but with one zero: InfluxDB 3 may read `-0` as `0`.
    Value::F64(if v == 0.0 { 0 } else { v.to_bits() })
}

fn ours(line: &str) -> Result<Point, Reason> {
    let mut all: Vec<_> = parse_lines(line).collect();
    assert_eq!(all.len(), 1, "{line:?} is one line");
    match all.remove(0) {
        Ok(p) => Ok(point(&p)),
        Err(e) => Err(e.reason().cloned().expect("a parse error")),
    }
}

fn point(p: &ParsedLine<'_>) -> Point {
    Point {
        measurement: p.measurement.to_string(),
        tags: p
            .tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        fields: p
            .fields
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    FieldValue::F64(f) => float(*f),
                    FieldValue::I64(i) => Value::I64(*i),
                    FieldValue::U64(u) => Value::U64(*u),
                    FieldValue::Bool(b) => Value::Bool(*b),
                    FieldValue::String(s) => Value::Str(s.to_string()),
                };
                (k.to_string(), v)
            })
            .collect(),
        timestamp: p.timestamp,
    }
}

fn theirs(line: &str) -> Result<Point, String> {
    let mut all: Vec<_> = iox::parse_lines(line).collect();
    if all.len() != 1 {
        return Err(format!("{} lines", all.len()));
    }
    let p = all.remove(0).map_err(|e| e.to_string())?;
    Ok(Point {
        measurement: p.series.measurement.to_string(),
        tags: p
            .series
            .tag_set
            .iter()
            .flatten()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        fields: p
            .field_set
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    iox::FieldValue::F64(f) => float(*f),
                    iox::FieldValue::I64(i) => Value::I64(*i),
                    iox::FieldValue::U64(u) => Value::U64(*u),
                    iox::FieldValue::Boolean(b) => Value::Bool(*b),
                    iox::FieldValue::String(s) => Value::Str(s.to_string()),
                };
                (k.to_string(), v)
            })
            .collect(),
        timestamp: p.timestamp,
    })
}

/// The differences by design, as (name, example line, ours accepts, they accept, why).
const DIFFERENCES: &[(&str, &str, bool, bool, &str)] = &[
    (
        "name escapes",
        r#"m\=x\"y,t=v f\"k=1 1"#,
        true,
        true,
        // Both accept; values differ. InfluxDB 1.x unescapes `\=` and `\"` in measurements and
        // `\"` in field keys (escape.Unescape); 3 keeps them as typed.
        "InfluxDB 1.x resolves \\= and \\\" in measurements and \\\" in field keys",
    ),
    (
        "double backslash",
        r"m\\x,t=a\\b f\\k=1 1",
        true,
        true,
        "InfluxDB 1.x keeps \\\\ as two backslashes outside strings; 3 reads one",
    ),
    (
        "trailing backslash",
        r"m\\,t=a f=1 1",
        true,
        false,
        "InfluxDB 1.x treats the byte after any backslash as escaped, so a name may end in `\\\\`; 3 refuses names ending in a backslash",
    ),
    (
        "short floats",
        "m a=.5,b=5.,c=1.e1,d=-.5 1",
        true,
        false,
        "InfluxDB 1.x accepts floats without digits on one side of the point; 3 needs both",
    ),
    (
        "time range",
        "m f=1 9223372036854775807",
        false,
        true,
        "InfluxDB 1.x stores times in (MinInt64+1, MaxInt64) ns and refuses the two ends; 3 takes any i64",
    ),
    (
        "duplicate tags",
        "m,a=1,a=2 f=1 1",
        false,
        true,
        "InfluxDB 1.x refuses a tag key given twice (`duplicate tags`); this 3 parser keeps both",
    ),
    (
        "equals in tag value",
        "m,a=b=c f=1 1",
        false,
        true,
        "InfluxDB 1.x refuses an unescaped `=` inside a tag value (`invalid tag format`)",
    ),
    (
        "empty field",
        "m f=1,,g=2 1",
        false,
        true,
        "InfluxDB 1.x counts `=` and `,` and refuses empty fields and trailing commas (`invalid field format`)",
    ),
    (
        "float overflow",
        "m f=1e400 1",
        false,
        true,
        "InfluxDB 1.x refuses a float that overflows (`invalid float`); this 3 parser reads +Inf",
    ),
    (
        "text after a string",
        r#"m f="a"b 1"#,
        true,
        false,
        "InfluxDB 1.x keeps bytes after the closing quote in the value (it stores `a\"`); 3 refuses them",
    ),
    (
        "tabs and NULs",
        "\0m \tf=1,\tg=2 1",
        true,
        false,
        "InfluxDB 1.x skips tabs and NULs before the measurement, field set and timestamp, and allows them in names; 3 does not",
    ),
    (
        "trailing space",
        "m f=1 ",
        true,
        false,
        "InfluxDB 1.x accepts a space after the field set with no timestamp (aioinflux sends it); this 3 parser refuses it",
    ),
    (
        "field iterator split",
        r"m a\\=1,b=2 1",
        true,
        false,
        "InfluxDB 1.x's field iterator ends a key at the first `=` not preceded by a backslash, giving the key `a\\\\=1,b`; 3 refuses the trailing backslash",
    ),
    (
        "empty field key",
        "m \0=1 1",
        false,
        true,
        "After whitespace skipping InfluxDB 1.x sees an empty field key and drops the field, leaving none; 3 reads a key made of the NUL byte",
    ),
];

/// Which listed difference explains a disagreement, if any.
fn explain(
    line: &str,
    o: &Result<Point, Reason>,
    t: &Result<Point, String>,
) -> Option<&'static str> {
    let has_tab_or_nul = line.contains(['\t', '\0']);
    match (o, t) {
        (Err(Reason::DuplicateTags), Ok(_)) => Some("duplicate tags"),
        (Err(Reason::InvalidTagFormat), Ok(_)) => Some("equals in tag value"),
        (Err(Reason::InvalidFieldFormat), Ok(_)) => Some("empty field"),
        (Err(Reason::TimeOutsideRange), Ok(_)) => Some("time range"),
        (Err(Reason::InvalidFloat), Ok(p)) => p
            .fields
            .iter()
            .any(|(_, v)| matches!(v, Value::F64(b) if !f64::from_bits(*b).is_finite()))
            .then_some("float overflow"),
        (Err(Reason::MissingFields), Ok(_)) if has_tab_or_nul => Some("empty field key"),
        (Ok(_), Err(e)) if e.contains("may not end with a backslash") => {
            Some(if line.contains(r"\\=") {
                "field iterator split"
            } else {
                "trailing backslash"
            })
        }
        (Ok(_), Err(_)) if has_tab_or_nul => Some("tabs and NULs"),
        (Ok(p), Err(e)) if e.contains("trailing content: ` `") || e.ends_with("' '") => {
            (p.timestamp.is_none() && line.ends_with(' ')).then_some("trailing space")
        }
        (Ok(p), Err(_)) => {
            if p.fields
                .iter()
                .any(|(_, v)| matches!(v, Value::Str(s) if s.contains('"')))
            {
                return Some("text after a string");
            }
            short_float(line).then_some("short floats")
        }
        (Ok(a), Ok(b)) if a != b => {
            let same_values = a.tags.len() == b.tags.len()
                && a.fields
                    .iter()
                    .map(|f| &f.1)
                    .eq(b.fields.iter().map(|f| &f.1))
                && a.timestamp == b.timestamp;
            if !same_values {
                return None;
            }
            Some(if line.contains(r"\\") {
                "double backslash"
            } else {
                "name escapes"
            })
        }
        _ => None,
    }
}

/// A float written as `.5`, `-.5` or `5.`.
fn short_float(line: &str) -> bool {
    let b = line.as_bytes();
    b.windows(2).enumerate().any(|(i, w)| {
        let before_digit =
            w[0] == b'.' && w[1].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit());
        let after_digit = w[0].is_ascii_digit()
            && w[1] == b'.'
            && b.get(i + 2).is_none_or(|c| !c.is_ascii_digit());
        before_digit || after_digit
    })
}

#[test]
fn listed_differences() {
    for (name, line, we_accept, they_accept, why) in DIFFERENCES {
        let (o, t) = (ours(line), theirs(line));
        assert_eq!(o.is_ok(), *we_accept, "{name}: {line:?} ours {o:?} ({why})");
        assert_eq!(
            t.is_ok(),
            *they_accept,
            "{name}: {line:?} theirs {t:?} ({why})"
        );
        if o.is_ok() && t.is_ok() {
            assert_ne!(
                o.as_ref().ok(),
                t.as_ref().ok(),
                "{name}: the values differ"
            );
        }
        assert_eq!(
            explain(line, &o, &t),
            Some(*name),
            "{line:?}\n ours {o:?}\n theirs {t:?}"
        );
    }
    // The values behind the first two rows.
    assert_eq!(
        ours(r#"m\=x\"y,t=v f\"k=1 1"#).unwrap().measurement,
        r#"m=x"y"#
    );
    assert_eq!(
        theirs(r#"m\=x\"y,t=v f\"k=1 1"#).unwrap().measurement,
        r#"m\=x\"y"#
    );
    assert_eq!(ours(r"m\\x f=1").unwrap().measurement, r"m\\x");
    assert_eq!(theirs(r"m\\x f=1").unwrap().measurement, r"m\x");
}

#[test]
fn recorded_corpus_disagreements_are_listed() {
    let mut counts = std::collections::BTreeMap::new();
    let mut unexplained = Vec::new();
    let mut agreed = 0;
    for file in ["influxd-1.6.7-curated.jsonl", "influxd-1.6.7-random.jsonl"] {
        let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
        for l in std::fs::read_to_string(path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let line = v["line"].as_str().unwrap();
            if parse_lines(line).count() != 1 {
                continue;
            }
            let (o, t) = (ours(line), theirs(line));
            let agree = match (&o, &t) {
                (Ok(a), Ok(b)) => a == b,
                (Err(_), Err(_)) => true,
                _ => false,
            };
            if agree {
                agreed += 1;
                continue;
            }
            match explain(line, &o, &t) {
                Some(name) => *counts.entry(name).or_insert(0) += 1,
                None => unexplained.push(format!("{line:?}\n  ours   {o:?}\n  theirs {t:?}")),
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "unlisted differences:\n{}",
        unexplained.join("\n")
    );
    assert!(agreed > 3500, "{agreed}");
    for name in counts.keys() {
        assert!(DIFFERENCES.iter().any(|d| d.0 == *name));
    }
}

/// Names both read the same: no `\\`, and only the escapes both resolve.
fn name(escapes: &'static [&'static str]) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => "[a-zA-Z0-9_.\\-]{1,3}",
        1 => Just("é".to_owned()),
        1 => prop::sample::select(escapes).prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 1..5).prop_map(|v| v.concat())
}

fn measurement() -> impl Strategy<Value = String> {
    name(&[r"\,", r"\ ", "=", "\""]).prop_filter("not a comment", |m| !m.starts_with('#'))
}

fn tag_part() -> impl Strategy<Value = String> {
    name(&[r"\,", r"\ ", r"\=", "\""])
}

fn field_key() -> impl Strategy<Value = String> {
    name(&[r"\,", r"\ ", r"\=", "\""])
}

/// Values spelled every way both accept.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<bool>(), 0u32..100_000, prop::option::of(0u32..10_000), prop::option::of((any::<bool>(), 0i32..300)))
            .prop_map(|(neg, int, frac, exp)| {
                let mut s = format!("{}{int}", if neg { "-" } else { "" });
                if let Some(f) = frac {
                    s += &format!(".{f}");
                }
                if let Some((up, e)) = exp {
                    s += &format!("{}{}{e}", if up { "E" } else { "e" }, if e % 2 == 0 { "-" } else { "+" });
                }
                s
            }),
        any::<i64>().prop_map(|i| format!("{i}i")),
        any::<u64>().prop_map(|u| format!("{u}u")),
        prop::sample::select(vec!["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"])
            .prop_map(str::to_owned),
        prop::collection::vec(
            prop_oneof![
                4 => "[a-z ,=.]{1,4}",
                1 => prop::sample::select(vec![r#"\""#, r"\\", r"\q", "é", "\n"]).prop_map(str::to_owned),
            ],
            0..5
        )
        .prop_map(|v| format!("\"{}\"", v.concat())),
    ]
}

fn line() -> impl Strategy<Value = String> {
    (
        measurement(),
        prop::collection::btree_map(tag_part(), tag_part(), 0..4),
        prop::collection::vec((field_key(), value()), 1..4),
        prop::option::of(-9_223_372_036_854_775_806i64..=9_223_372_036_854_775_806),
    )
        .prop_map(|(m, tags, fields, ts)| {
            let mut s = m;
            for (k, v) in tags {
                s += &format!(",{k}={v}");
            }
            s.push(' ');
            let fields: Vec<_> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s += &fields.join(",");
            if let Some(ts) = ts {
                s += &format!(" {ts}");
            }
            s
        })
}

/// Ways to break a line that both parsers refuse.
fn corrupt(line: &str, how: usize) -> String {
    // The separator is the first space not escaped (generated names hold no `\\`).
    let b = line.as_bytes();
    let sep = (1..b.len())
        .find(|&i| b[i] == b' ' && b[i - 1] != b'\\')
        .unwrap_or(b.len());
    let (key, rest) = (&line[..sep], line.get(sep + 1..).unwrap_or(""));
    match how % 7 {
        0 => key.to_owned(),              // no field set
        1 => format!("{key} f="),         // no field value
        2 => format!("{key} f=\"abc"),    // unbalanced quote
        3 => format!("{key} f=1x"),       // not a number
        4 => format!("{key} f=tru"),      // not a boolean
        5 => format!(",{line}"),          // no measurement
        _ => format!("{key} {rest} 12a"), // bad timestamp
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn agree_on_generated_lines(line in line()) {
        let (o, t) = (ours(&line), theirs(&line));
        prop_assert!(o.is_ok(), "ours {:?} on {:?}", o, line);
        prop_assert_eq!(o.unwrap(), t.unwrap_or_else(|e| panic!("theirs {e} on {line:?}")));
    }

    #[test]
    fn agree_on_broken_lines(line in line(), how in 0usize..7) {
        let bad = corrupt(&line, how);
        let (o, t) = (ours(&bad), theirs(&bad));
        prop_assert!(o.is_err() && t.is_err(), "{:?}: ours {:?}, theirs {:?}", bad, o, t);
    }
}
