//! Golden parses and exact error messages. Every verdict and message here was checked against
//! `influxd` 1.6.7 (see `influxd_corpus.rs` for the recorded corpus).

use line_protocol::{
    parse_line, parse_line_with, parse_lines, Error, FieldValue, ParseOptions, Precision, Reason,
    MAX_STRING_BYTES_V2,
};

fn one(line: &str) -> line_protocol::ParsedLine<'_> {
    parse_line(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn err(line: &str) -> String {
    match parse_line(line) {
        Ok(p) => panic!("{line:?} parsed: {p:?}"),
        Err(e) => e.to_string(),
    }
}

fn fields<'a>(p: &'a line_protocol::ParsedLine<'_>) -> Vec<(String, FieldValue<'a>)> {
    p.fields.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn full_line() {
    let p =
        one("cpu,host=serverA,region=us-west usage_user=12.5,usage_system=3.1 1700000000000000000");
    assert_eq!(p.measurement, "cpu");
    assert!(!p.measurement.is_escaped());
    let tags: Vec<_> = p
        .tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        tags,
        [
            ("host".into(), "serverA".into()),
            ("region".into(), "us-west".into())
        ]
    );
    assert_eq!(
        fields(&p),
        [
            ("usage_user".into(), FieldValue::F64(12.5)),
            ("usage_system".into(), FieldValue::F64(3.1))
        ]
    );
    assert_eq!(p.timestamp, Some(1_700_000_000_000_000_000));
    assert_eq!(
        p.line(),
        "cpu,host=serverA,region=us-west usage_user=12.5,usage_system=3.1 1700000000000000000"
    );
}

#[test]
fn field_types() {
    let p = one(
        r#"m a=1,b=-1.2e+78,c=.5,d=5.,e=1E-3,f=12i,g=-12i,h=12u,i="s",j=t,k=T,l=true,m=True,n=TRUE,o=f,p=F,q=false,r=False,s=FALSE,t=-0,u=01"#,
    );
    use FieldValue::*;
    let expected = [
        F64(1.0),
        F64(-1.2e78),
        F64(0.5),
        F64(5.0),
        F64(0.001),
        I64(12),
        I64(-12),
        U64(12),
        String("s".into()),
        Bool(true),
        Bool(true),
        Bool(true),
        Bool(true),
        Bool(true),
        Bool(false),
        Bool(false),
        Bool(false),
        Bool(false),
        Bool(false),
        F64(-0.0),
        F64(1.0),
    ];
    let got: Vec<_> = p.fields.iter().map(|(_, v)| *v).collect();
    assert_eq!(got, expected);
    assert_eq!(p.timestamp, None);
}

#[test]
fn integer_and_unsigned_limits() {
    let p = one("m a=9223372036854775807i,b=-9223372036854775808i,c=18446744073709551615u,d=00000000000000000001i");
    let got: Vec<_> = p.fields.iter().map(|(_, v)| *v).collect();
    assert_eq!(
        got,
        [
            FieldValue::I64(i64::MAX),
            FieldValue::I64(i64::MIN),
            FieldValue::U64(u64::MAX),
            FieldValue::I64(1)
        ]
    );
}

#[test]
fn long_floats_are_checked() {
    // 25 characters or more (or an exponent) and InfluxDB parses the float to check its range.
    assert_eq!(
        one("m f=123456789012345678901234567890").field("f"),
        Some(&FieldValue::F64(1.2345678901234568e29))
    );
    assert_eq!(one("m f=1e-400").field("f"), Some(&FieldValue::F64(0.0)));
    let big = format!("m f=1{}", "0".repeat(400));
    assert_eq!(err(&big), format!("unable to parse '{big}': invalid float"));
}

#[test]
fn escapes_per_element() {
    // Measurement: `\,` `\ ` (and InfluxDB also resolves `\=` and `\"` there).
    let p = one(r#"m\ x\,y\=z\"q\\w\k,t\ k\,x\=y=v\ a\,b\=c\"d\\e f\ k\,x\=y\"z="s\"t\\u\q" 1"#);
    assert_eq!(p.measurement, r#"m x,y=z"q\\w\k"#);
    assert!(p.measurement.is_escaped());
    assert_eq!(p.measurement.raw(), r#"m\ x\,y\=z\"q\\w\k"#);
    let (k, v) = &p.tags[0];
    // Tags resolve `\,` `\ ` `\=` only: `\"` and `\\` stay as written.
    assert_eq!(*k, "t k,x=y");
    assert_eq!(*v, r#"v a,b=c\"d\\e"#);
    let (fk, fv) = &p.fields[0];
    assert_eq!(*fk, r#"f k,x=y"z"#);
    // Strings resolve `\"` and `\\`; `\q` stays.
    assert_eq!(
        *fv,
        FieldValue::String(line_protocol::EscapedStr::plain(r#"s"t\u\q"#))
    );
}

#[test]
fn backslash_before_an_escape() {
    // The first backslash is literal, the second escapes the comma: `a\` then `,b`.
    let p = one(r"m,t=a\\,b f=1");
    assert_eq!(p.tags[0].1, r"a\,b");
    // In a measurement, `\\ ` is still an escaped space (InfluxDB looks one byte back).
    assert_eq!(
        err(r"m\\ f=1 1"),
        r"unable to parse 'm\\ f=1 1': invalid field format"
    );
}

#[test]
fn influxdb_quirks_are_kept() {
    // Text after a closing quote belongs to the value; InfluxDB stores `a"`.
    assert_eq!(
        one(r#"m f="a"b"#).field("f"),
        Some(&FieldValue::String(r#"a""#.into()))
    );
    // A quote in a measurement, tag or field key is an ordinary character.
    let p = one(r#""m",t="a" "f"=1"#);
    assert_eq!(p.measurement, r#""m""#);
    assert_eq!(p.tags[0].1, r#""a""#);
    assert_eq!(p.fields[0].0, r#""f""#);
    // A tag value may start with `=`.
    assert_eq!(one("m,t== f=1").tags[0].1, "=");
    // Duplicate field keys: both are kept in order, the last wins.
    let p = one("m f=1,f=2");
    assert_eq!(p.fields.len(), 2);
    assert_eq!(p.field("f"), Some(&FieldValue::F64(2.0)));
    // Tabs and NULs count as leading whitespace of the line, the field set and the timestamp.
    let p = one("\t\0m \tf=1 \t5");
    assert_eq!((p.measurement.raw(), p.timestamp), ("m", Some(5)));
    // A field key after a comma may start with a tab.
    assert_eq!(one("m f=1,\tg=2").fields[1].0, "\tg");
    // Negative and zero-padded timestamps.
    assert_eq!(one("m f=1 -0").timestamp, Some(0));
    assert_eq!(
        one("m f=1 00000000000000000000000000001").timestamp,
        Some(1)
    );
    assert_eq!(
        one("m f=1 -9223372036854775806").timestamp,
        Some(-9_223_372_036_854_775_806)
    );
}

#[test]
fn whitespace_and_trailing_space() {
    // aioinflux ends a point without time with a space; more spaces are fine too.
    assert_eq!(one("m f=1 ").timestamp, None);
    assert_eq!(one("m f=1 1  ").timestamp, Some(1));
    assert_eq!(one("m  f=1").fields.len(), 1);
    assert_eq!(one("m,t=a  f=1").fields.len(), 1);
    assert_eq!(one("  m f=1").line(), "m f=1");
    // One trailing newline is the line terminator.
    assert_eq!(one("m f=1 1\n").timestamp, Some(1));
}

#[test]
fn strings() {
    let p = one("m a=\"\",b=\"a,b c=d\",c=\"multi\nline\",d=\"\\\\\\\\\",e=\"x\\\\\\\"\"");
    let s: Vec<String> = p
        .fields
        .iter()
        .map(|(_, v)| match v {
            FieldValue::String(s) => s.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(s, ["", "a,b c=d", "multi\nline", r"\\", r#"x\""#]);
    // No limit by default (influxd 1.6.7 stores a 70000-byte string); opt in to 2.x's 64 KiB.
    let long = format!("m f=\"{}\"", "x".repeat(70_000));
    assert!(parse_line(&long).is_ok());
    let opts = ParseOptions {
        max_string_bytes: Some(MAX_STRING_BYTES_V2),
        ..Default::default()
    };
    let e = parse_line_with(&long, &opts).unwrap_err();
    assert_eq!(
        e.reason(),
        Some(&Reason::StringTooLong {
            length: 70_000,
            max: 65_536
        })
    );
    assert!(e
        .to_string()
        .ends_with("': string field value too long: 70000 > 65536 bytes"));
}

/// Every reason InfluxDB 1.x gives, with its exact message.
#[test]
fn exact_error_messages() {
    let cases: &[(&str, &str)] = &[
        ("cpu", "missing fields"),
        ("cpu,t=a", "missing fields"),
        (r"m\", "missing fields"),
        (",cpu f=1", "missing measurement"),
        ("", "missing measurement"),
        ("cpu,", "missing tag key"),
        ("cpu,=a f=1", "missing tag key"),
        ("cpu, f=1", "missing tag key"),
        ("cpu,a f=1", "missing tag value"),
        ("cpu,a= f=1", "missing tag value"),
        ("cpu,a=b=c f=1", "invalid tag format"),
        ("m,t=a\\ f=1 1", "invalid tag format"),
        ("cpu,a=1,a=2 f=1", "duplicate tags"),
        ("m,b=1,a=2,a=1 f=1 1", "duplicate tags"),
        ("cpu f", "invalid field format"),
        ("cpu f=1,g", "invalid field format"),
        ("m ", "invalid field format"),
        ("m f=1,", "invalid field format"),
        ("m f=\"a\"=1", "invalid field format"),
        ("cpu f=", "missing field value"),
        ("cpu f=,g=1", "missing field value"),
        ("cpu =1", "missing field key"),
        ("cpu f=1,=2", "missing field key"),
        ("cpu f=\"abc", "unbalanced quotes"),
        (r#"m f="a\" 1"#, "unbalanced quotes"),
        ("cpu f=1x", "invalid number"),
        ("cpu f=1.1.1", "invalid number"),
        ("cpu f=-", "invalid number"),
        ("cpu f=NaN", "invalid number"),
        ("cpu f=-inf", "invalid number"),
        ("cpu f=1.0i", "invalid number"),
        ("cpu f=1i1", "invalid number"),
        ("cpu f=-1u", "invalid number"),
        ("cpu f=1\r", "invalid number"),
        ("cpu f=1e", "invalid float"),
        ("cpu f=1e400", "invalid float"),
        ("cpu f=.e1", "invalid float"),
        ("cpu f=abc", "invalid boolean"),
        ("cpu f=tRUE", "invalid boolean"),
        ("cpu f=inf", "invalid boolean"),
        ("cpu f=+1", "invalid boolean"),
        (
            "cpu f=9223372036854775808i",
            "unable to parse integer 9223372036854775808: strconv.ParseInt: parsing \"9223372036854775808\": value out of range",
        ),
        (
            "cpu f=-9223372036854775809i",
            "unable to parse integer -9223372036854775809: strconv.ParseInt: parsing \"-9223372036854775809\": value out of range",
        ),
        (
            "cpu f=18446744073709551616u",
            "unable to parse unsigned 18446744073709551616: strconv.ParseUint: parsing \"18446744073709551616\": value out of range",
        ),
        (r"m f\\=1 1", r"invalid value: field-key=f\\=1"),
        (r"m v=1i,w\\=1i", r"invalid value: field-key=w\\=1i"),
        (r#"m a\\="x=,y" 1"#, r#"invalid value: field-key=y""#),
        ("cpu f=1 abc", "bad timestamp"),
        ("cpu f=1 1.5", "bad timestamp"),
        ("cpu f=1 1\r", "bad timestamp"),
        ("m f=1 1\t ", "bad timestamp"),
        ("cpu f=1 -", "strconv.ParseInt: parsing \"-\": invalid syntax"),
        (
            "cpu f=1 99999999999999999999",
            "strconv.ParseInt: parsing \"99999999999999999999\": value out of range",
        ),
        (
            "cpu f=1 9223372036854775807",
            "time outside range -9223372036854775806 - 9223372036854775806",
        ),
        (
            "cpu f=1 -9223372036854775807",
            "time outside range -9223372036854775806 - 9223372036854775806",
        ),
        ("cpu f=1 1 2", "point is invalid"),
        ("m f=1 1 \t", "point is invalid"),
        // The field iterator types `y"` as a boolean: InfluxDB fails the write with a 500
        // (`engine: unable to parse bool value ...`); the line is refused with that message.
        (
            r#"m a\\="x=y" 1"#,
            r#"unable to parse bool value "y\"": strconv.ParseBool: parsing "y\"": invalid syntax"#,
        ),
        (
            r#"m a\\="x=1" 1"#,
            r#"unable to parse floating point value "1\"": strconv.ParseFloat: parsing "1\"": invalid syntax"#,
        ),
        // Dropping the last byte after the closing quote would cut the `é` in two.
        (
            r#"m f="a"é"#,
            r#"invalid string value "\"a\"é": dropping its last byte, as InfluxDB does, splits a UTF-8 character"#,
        ),
        // Every field dropped for an empty key (see the crate docs).
        ("m \t=1", "missing fields"),
    ];
    for (line, reason) in cases {
        let shown = line
            .strip_suffix('\n')
            .unwrap_or(line)
            .trim_start_matches([' ', '\t', '\0']);
        assert_eq!(
            err(line),
            format!("unable to parse '{shown}': {reason}"),
            "{line:?}"
        );
    }
}

#[test]
fn max_key_length() {
    // measurement + tags may be 65535 bytes, and that + 4 + the field key too.
    let ok = format!("m{} f=1", "x".repeat(65_529));
    assert!(parse_line(&ok).is_ok());
    for (len, size) in [(65_530, 65_536), (65_531, 65_537), (65_534, 65_540)] {
        let line = format!("m{} f=1 1", "x".repeat(len));
        assert_eq!(
            parse_line(&line).unwrap_err().reason(),
            Some(&Reason::MaxKeyLengthExceeded { size }),
            "{len}"
        );
    }
    let line = format!("m{} f=1 1", "x".repeat(65_600));
    assert!(err(&line).ends_with("': max key length exceeded: 65601 > 65535"));
    let line = format!("m,t={} f=1", "x".repeat(65_533));
    assert!(err(&line).ends_with("': max key length exceeded: 65537 > 65535"));
}

#[test]
fn uint_can_be_refused_like_influxdb_oss() {
    let opts = ParseOptions {
        accept_unsigned: false,
        ..Default::default()
    };
    assert_eq!(
        parse_line_with("cpu f=12u", &opts).unwrap_err().to_string(),
        "unable to parse 'cpu f=12u': invalid number"
    );
    let e = parse_lines("cpu f=12u")
        .accept_unsigned(false)
        .next()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.reason(), Some(&Reason::InvalidNumber));
}

#[test]
fn time_range_depends_on_precision() {
    // influxd 1.6.7 with precision=h: 2562047 fits, 2562048 is outside its range.
    let mut ok = parse_lines("m f=1 2562047").precision(Precision::Hours);
    assert_eq!(ok.next().unwrap().unwrap().timestamp, Some(2_562_047));
    let e = parse_lines("m f=1 2562048")
        .precision(Precision::Hours)
        .next()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "unable to parse 'm f=1 2562048': time outside range -9223372036854775806 - 9223372036854775806"
    );
    let p = parse_line("m f=1 1700000000").unwrap();
    assert_eq!(
        p.timestamp_nanos(Precision::Seconds).unwrap(),
        Some(1_700_000_000_000_000_000)
    );
    assert!(p.timestamp_nanos(Precision::Hours).is_err());
}

#[test]
fn bodies_lines_numbers_and_offsets() {
    let body = "# comment\n\ncpu f=1 1\n  \t\nbad\n  m g=\"two\nlines\" 2\nworse f\r\n\tlast h=1";
    let results: Vec<_> = parse_lines(body).collect();
    assert_eq!(results.len(), 5);
    let p = results[0].as_ref().unwrap();
    assert_eq!(
        (p.line_number(), p.offset(), p.line()),
        (3, 11, "cpu f=1 1")
    );
    match &results[1] {
        Err(Error::Parse {
            line_number,
            line_offset,
            offset,
            line,
            reason,
        }) => {
            assert_eq!((*line_number, *line_offset, *offset), (5, 25, 28));
            assert_eq!((&**line, reason), ("bad", &Reason::MissingFields));
        }
        other => panic!("{other:?}"),
    }
    let p = results[2].as_ref().unwrap();
    assert_eq!((p.line_number(), p.offset()), (6, 31));
    assert_eq!(p.field("g"), Some(&FieldValue::String("two\nlines".into())));
    let e = results[3].as_ref().unwrap_err();
    assert_eq!(e.line_number(), Some(8));
    assert_eq!(
        e.to_string(),
        "unable to parse 'worse f\r': invalid field format"
    );
    assert!(e.can_continue());
    let p = results[4].as_ref().unwrap();
    assert_eq!((p.line_number(), p.line()), (9, "last h=1"));
}

#[test]
fn bytes_bodies_skip_only_the_line_that_is_not_utf8() {
    let body: &[u8] = b"a f=1 1\nb f=\"\xff\" 2\nc f=3 3";
    let results: Vec<_> = line_protocol::parse_lines_bytes(body).collect();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().unwrap().measurement, "a");
    let e = results[1].as_ref().unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidUtf8 {
                line_number: 2,
                offset: 13,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.can_continue());
    assert_eq!(results[2].as_ref().unwrap().line_number(), 3);
}

#[test]
fn escaped_newline_joins_lines() {
    // InfluxDB: a backslash escapes the newline, so these are one (bad) line.
    let results: Vec<_> = parse_lines("m f=1 1\\\nm g=2 2\nn h=3").collect();
    assert_eq!(results.len(), 2);
    assert_eq!(
        results[0].as_ref().unwrap_err().to_string(),
        "unable to parse 'm f=1 1\\\nm g=2 2': bad timestamp"
    );
    assert_eq!(results[1].as_ref().unwrap().line_number(), 3);
    // A body ending in `\<LF>` keeps the backslash in its last line, not the newline.
    let last: Vec<_> = parse_lines("m f=1\\\n").collect();
    assert_eq!(
        last[0].as_ref().unwrap_err().to_string(),
        "unable to parse 'm f=1\\': invalid number"
    );
}

#[test]
fn comment_with_an_open_quote_swallows_lines() {
    // InfluxDB's splitter counts quotes in comments too: this comment runs to the next quote.
    let results: Vec<_> = parse_lines("# a=\"x\nm f=1 1\n\"\nm g=2 2").collect();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].as_ref().unwrap().line_number(), 4);
}

#[test]
fn error_summary_is_short() {
    let line = format!("m,t={} f=x", "y".repeat(500));
    let e = parse_line(&line).unwrap_err();
    let s = e.summary();
    assert!(s.starts_with("line 1: unable to parse 'm,t=yyyy"));
    assert!(s.ends_with("...': invalid boolean"));
    assert!(s.len() < 120);
}
