//! Properties: what the writer writes reads back unchanged; what it refuses is exactly what
//! InfluxDB could not read back; and parse → write → parse is stable on arbitrary input.

use line_protocol::{
    fuzzing::parse_write_parse, parse_lines, Error, FieldValue, LineWriter, WriteOptions,
};
use proptest::prelude::*;

/// Strings heavy in the characters that matter to line protocol.
fn text() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        6 => prop::sample::select(vec!['a', 'b', 'x', '0', '9', '.', '-', '_']),
        4 => prop::sample::select(vec![',', ' ', '=', '"', '\\', '#', '\t', '\n', '\0', 'i', 'u', 't', 'é', '€']),
        1 => any::<char>(),
    ];
    prop::collection::vec(ch, 0..10).prop_map(|v| v.into_iter().collect())
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<f64>().prop_map(Value::F64),
        prop::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            1e16,
            1e300,
            5e-324,
            f64::MAX,
            f64::NAN,
            f64::INFINITY
        ])
        .prop_map(Value::F64),
        any::<i64>().prop_map(Value::I64),
        any::<u64>().prop_map(Value::U64),
        any::<bool>().prop_map(Value::Bool),
        text().prop_map(Value::Str),
    ]
}

#[derive(Debug, Clone)]
enum Value {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(String),
}

#[derive(Debug, Clone)]
struct Point {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, Value)>,
    timestamp: Option<i64>,
}

fn point() -> impl Strategy<Value = Point> {
    (
        prop_oneof![3 => "[a-z]{1,6}", 2 => text()],
        prop::collection::vec((prop_oneof![2 => "[a-z]{1,4}", 1 => text()], text()), 0..4),
        prop::collection::vec((prop_oneof![2 => "[a-z]{1,4}", 1 => text()], value()), 0..4),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(measurement, tags, fields, timestamp)| Point {
            measurement,
            tags,
            fields,
            timestamp,
        })
}

/// The writer's documented limits, restated independently: when may a name not be written?
fn name_problem(s: &str, unescaped_by_influxdb: &[char], line_start: bool) -> bool {
    let chars: Vec<char> = s.chars().collect();
    s.is_empty()
        || s.contains('\n')
        || s.ends_with('\\')
        || chars
            .windows(2)
            .any(|w| w[0] == '\\' && unescaped_by_influxdb.contains(&w[1]))
        || (line_start && matches!(chars[0], '\t' | '\0'))
}

fn writable(p: &Point) -> bool {
    let m = &p.measurement;
    if name_problem(m, &[',', ' ', '"', '='], true) || m.starts_with('#') {
        return false;
    }
    let tags: Vec<_> = p.tags.iter().filter(|(_, v)| !v.is_empty()).collect();
    for (i, (k, v)) in tags.iter().enumerate() {
        if name_problem(k, &[',', ' ', '='], false)
            || name_problem(v, &[',', ' ', '='], false)
            || tags[..i].iter().any(|(k2, _)| k2 == k)
        {
            return false;
        }
    }
    if p.fields.is_empty() {
        return false;
    }
    for (i, (k, v)) in p.fields.iter().enumerate() {
        if name_problem(k, &[',', ' ', '=', '"'], i == 0) {
            return false;
        }
        if let Value::F64(f) = v {
            if !f.is_finite() {
                return false;
            }
        }
    }
    true
}

fn write(p: &Point, buf: &mut Vec<u8>, sort_tags: bool) -> Result<usize, Error> {
    let mut w =
        LineWriter::with_options(buf, WriteOptions { sort_tags }).measurement(&p.measurement);
    for (k, v) in &p.tags {
        w = w.tag(k, v);
    }
    let mut fields = p.fields.iter();
    let Some((k, v)) = fields.next() else {
        // No fields: finish through a dummy path that must fail.
        return w.field_f64("f", f64::NAN).finish();
    };
    let mut f = match v {
        Value::F64(x) => w.field_f64(k, *x),
        Value::I64(x) => w.field_i64(k, *x),
        Value::U64(x) => w.field_u64(k, *x),
        Value::Bool(x) => w.field_bool(k, *x),
        Value::Str(x) => w.field_str(k, x),
    };
    for (k, v) in fields {
        f = match v {
            Value::F64(x) => f.field_f64(k, *x),
            Value::I64(x) => f.field_i64(k, *x),
            Value::U64(x) => f.field_u64(k, *x),
            Value::Bool(x) => f.field_bool(k, *x),
            Value::Str(x) => f.field_str(k, x),
        };
    }
    f.maybe_timestamp(p.timestamp).finish()
}

fn same_value(a: &FieldValue<'_>, b: &Value) -> bool {
    match (a, b) {
        (FieldValue::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (FieldValue::I64(x), Value::I64(y)) => x == y,
        (FieldValue::U64(x), Value::U64(y)) => x == y,
        (FieldValue::Bool(x), Value::Bool(y)) => x == y,
        (FieldValue::String(x), Value::Str(y)) => x == y,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn writer_output_reads_back_unchanged(p in point(), sort_tags in any::<bool>()) {
        let mut buf = b"prefix\n".to_vec();
        let result = write(&p, &mut buf, sort_tags);
        let expect_ok = writable(&p)
            && p.timestamp.is_none_or(|t| line_protocol::Precision::Nanoseconds.checked_nanos(t).is_some());
        match result {
            Err(Error::Unwritable { .. }) => {
                prop_assert!(!writable(&p), "refused a writable point {:?}", p);
                prop_assert_eq!(&buf[..], b"prefix\n");
            }
            Err(e) => prop_assert!(false, "{e}"),
            Ok(_) => {
                prop_assert!(writable(&p), "wrote an unwritable point {:?}: {:?}", p, String::from_utf8_lossy(&buf));
                let text = std::str::from_utf8(&buf).unwrap();
                let lines: Vec<_> = parse_lines(text).collect();
                prop_assert_eq!(lines.len(), 2, "{:?}", text);
                if !expect_ok {
                    // A timestamp outside InfluxDB's range is written; InfluxDB refuses it.
                    prop_assert!(lines[1].is_err());
                    return Ok(());
                }
                let parsed = lines[1].as_ref().map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
                prop_assert_eq!(&parsed.measurement, &p.measurement.as_str());
                let mut tags: Vec<_> = p.tags.iter().filter(|(_, v)| !v.is_empty()).collect();
                if sort_tags {
                    tags.sort_by(|a, b| a.0.cmp(&b.0));
                }
                prop_assert_eq!(parsed.tags.len(), tags.len());
                for ((k, v), (ek, ev)) in parsed.tags.iter().zip(tags) {
                    prop_assert_eq!(k, &ek.as_str());
                    prop_assert_eq!(v, &ev.as_str());
                }
                prop_assert_eq!(parsed.fields.len(), p.fields.len());
                for ((k, v), (ek, ev)) in parsed.fields.iter().zip(&p.fields) {
                    prop_assert_eq!(k, &ek.as_str());
                    prop_assert!(same_value(v, ev), "{:?} != {:?} in {:?}", v, ev, text);
                }
                prop_assert_eq!(parsed.timestamp, p.timestamp);
            }
        }
    }

    #[test]
    fn parse_write_parse_is_stable(body in line_soup()) {
        parse_write_parse(body.as_bytes());
    }

    #[test]
    fn parse_write_parse_on_bytes(body in prop::collection::vec(any::<u8>(), 0..64)) {
        parse_write_parse(&body);
    }
}

/// Text that is mostly line protocol, with the tokens that exercise InfluxDB's rules.
fn line_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "m",
        "cpu",
        "f",
        "g",
        "t",
        "=",
        "=",
        ",",
        ",",
        " ",
        " ",
        "\\",
        "\"",
        "\"",
        "1",
        "12",
        "-",
        ".",
        "e",
        "+",
        "i",
        "u",
        "T",
        "true",
        "False",
        "n",
        "#",
        "\t",
        "\n",
        "\n",
        "\\ ",
        "\\,",
        "\\=",
        "\\\"",
        "\\\\",
        "0",
        "9223372036854775807",
        "18446744073709551616",
        "1e3",
        ".5",
        "é",
        "\0",
        "m,t=v f=1 1",
        "m f=\"x\" 2",
        "a\\ b",
        "1u",
        "1i",
    ]);
    prop::collection::vec(token, 0..24).prop_map(|v| v.concat())
}

#[test]
fn reserialised_client_lines_are_canonical() {
    let body = "cpu,host=a,region=b usage=1.0,idle=99.5 1700000000000000000\n\
                mem,host=a used=123i,free=4u,ok=True,note=\"a \\\"quoted\\\" word\" 1700000000000000000\n";
    let mut out = Vec::new();
    for line in parse_lines(body) {
        line.unwrap()
            .write_to(&mut out, &WriteOptions::default())
            .unwrap();
    }
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "cpu,host=a,region=b usage=1,idle=99.5 1700000000000000000\n\
         mem,host=a used=123i,free=4u,ok=true,note=\"a \\\"quoted\\\" word\" 1700000000000000000\n"
    );
}

#[test]
fn regressions() {
    for body in [
        "m a\\\\=1,b=2",
        "m,t=a\\\\,b f=1",
        "m\\\\,t=a f=1 1",
        "m f=\"a\"b",
        "\"m\" \"f\"=1",
        "m \t=1,g=2",
        "m\\\nx f=1",
        "m,t=v f=1 1\0\\\n\n1",
    ] {
        parse_write_parse(body.as_bytes());
    }
    // Found by the fuzzer: a number-like value whose last byte is inside a multi-byte
    // character (through a field key ending in backslashes).
    parse_write_parse(b"m f\x0d\x0da\x5c\x5c=\x22\x1df\x00\x12\x00\x00\x000\x0a\x0d\x00 c\x0a  \x0am g\x00=uuuu1\x5c\x5c\x5c\x5c\x5c\x5c\x5c\x5c\x5c\x5c\x5c\x5c\x5c\x5c\x5c\xce\x8e,h=2u,i=true \x22 0");
    // Found by the fuzzer: a string value's last byte is inside a multi-byte character.
    parse_write_parse(b"\x10x fk=\x22s\x5c\x5c=b/y\x01\x16\x22\x22\x5cg\x5cv\x5c\x5ck=\x1d\x00\x00\x00\x00\x00\x00\x00\x01\x16\x22\x22\x5cg=0.,hi=s\x5c\x5c\x5c\x22\x5ca\x22z\xc2\xab");
}
