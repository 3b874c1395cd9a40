//! Golden cases: what real senders write, and the exact messages an operator reads in the log
//! for what they get wrong.

use graphite_plaintext::{
    encode_sample, normalize, parse_line, Error, LineSplitter, Sample, TaggedPath, Timestamp,
};

fn ok(line: &str) -> Sample<'_> {
    parse_line(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

fn err(line: &[u8]) -> String {
    match parse_line(line) {
        Ok(sample) => panic!("{line:?} parsed as {sample:?}"),
        Err(e) => {
            assert!(e.is_continuable());
            e.to_string()
        }
    }
}

fn at(seconds: f64) -> Timestamp {
    Timestamp::Seconds(seconds)
}

#[test]
fn carbon_relay_and_aiographite_lines() {
    // carbon-relay writes `%s %s %d`: Python's str() of the value.
    let s = ok("servers.dc1.host0001.cpu.user 12.5 1700000000");
    assert_eq!(
        (s.path, s.value, s.timestamp),
        ("servers.dc1.host0001.cpu.user", 12.5, at(1_700_000_000.0))
    );
    assert_eq!(ok("a.b 12.0 1700000000").value, 12.0);
    assert_eq!(ok("a.b 1e-06 1700000000").value, 1e-6);
    assert_eq!(ok("a.b 1e+300 1700000000").value, 1e300);
    assert_eq!(ok("a.b -3 1700000000").value, -3.0);
}

#[test]
fn collectd_lines() {
    // `%.15g` values, `\r\n` terminators (the splitter removes `\n`, the parser ignores `\r`).
    let s = ok("collectd.web1.load.load.shortterm 0.123456789012345 1700000000\r");
    assert_eq!(s.value, 0.123456789012345);
    assert_eq!(s.timestamp, at(1_700_000_000.0));
    assert_eq!(
        ok("collectd.web1.df.free 9.99999999999999e+99 1700000000.5\r").value,
        9.99999999999999e99
    );
    assert_eq!(ok("collectd.web1.df.free 1e+15 1700000000\r").value, 1e15);
    // collectd may send nan: returned as NaN for the caller to drop and count.
    assert!(ok("collectd.web1.ping.droprate nan 1700000000\r")
        .value
        .is_nan());
    // tags (UseTags)
    let s = ok("load.shortterm;host=web1;plugin=load 0.5 1700000000\r");
    assert_eq!(s.path, "load.shortterm;host=web1;plugin=load");
}

#[test]
fn timestamps() {
    assert_eq!(ok("a.b 1 1700000000.25").timestamp, at(1_700_000_000.25));
    assert_eq!(ok("a.b 1 1.7e9").timestamp, at(1.7e9));
    assert_eq!(ok("a.b 1 1_700_000_000").timestamp, at(1.7e9));
    assert_eq!(ok("a.b 1 0").timestamp, at(0.0));
    assert_eq!(ok("a.b 1 -5").timestamp, at(-5.0));
    // carbon: `int(timestamp) == -1` means now; int() truncates toward zero.
    assert_eq!(ok("a.b 1 -1").timestamp, Timestamp::Now);
    assert_eq!(ok("a.b 1 -1.0").timestamp, Timestamp::Now);
    assert_eq!(ok("a.b 1 -1.9").timestamp, Timestamp::Now);
    assert_eq!(ok("a.b 1 -2").timestamp, at(-2.0));
    assert_eq!(ok("a.b 1 -0.5").timestamp, at(-0.5));
    // Two fields: the receiver's clock, as InfluxDB's graphite service does.
    assert_eq!(ok("a.b 1").timestamp, Timestamp::Now);
    assert_eq!(Timestamp::Now.or_now(5.0), 5.0);
    assert_eq!(at(7.9).or_now(5.0), 7.9);
    assert_eq!(at(7.9).unix_seconds(5), 7);
    assert_eq!(at(-7.9).unix_seconds(5), -7);
    assert_eq!(Timestamp::Now.unix_seconds(5), 5);
}

#[test]
fn values_as_python_float_reads_them() {
    let cases: &[(&str, f64)] = &[
        ("12", 12.0),
        ("+1.5", 1.5),
        (".5", 0.5),
        ("5.", 5.0),
        ("1e3", 1000.0),
        ("1E-3", 0.001),
        ("1_000", 1000.0),
        ("1_000.5e1_0", 1000.5e10),
        ("inf", f64::INFINITY),
        ("-Infinity", f64::NEG_INFINITY),
        ("1e999", f64::INFINITY),
    ];
    for &(text, want) in cases {
        let line = format!("a.b {text} 1");
        assert_eq!(ok(&line).value, want, "{text}");
    }
    for text in ["NaN", "-nan", "+NAN"] {
        assert!(ok(&format!("a.b {text} 1")).value.is_nan());
    }
}

#[test]
fn whitespace() {
    for line in [
        "a.b 1 2",
        "  a.b   1\t\t2  ",
        "a.b\t1\t2\r",
        "a.b \x0b1\x0c 2",
        // Python's str.split() also splits on the ASCII information separators.
        "a.b\x1c1\x1f2",
    ] {
        let s = ok(line);
        assert_eq!(
            (s.path, s.value, s.timestamp),
            ("a.b", 1.0, at(2.0)),
            "{line:?}"
        );
    }
    // Non-breaking space is not an ASCII separator: it stays in the path.
    assert_eq!(ok("a\u{a0}b 1 2").path, "a\u{a0}b");
    // UTF-8 paths are fine.
    assert_eq!(ok("température.salle 21.5 2").path, "température.salle");
}

#[test]
fn error_messages() {
    assert_eq!(err(b""), "empty line");
    assert_eq!(err(b" \t\r"), "empty line");
    assert_eq!(
        err(b"a.b"),
        r#"expected 3 fields "path value timestamp", found 1: "a.b""#
    );
    assert_eq!(
        err(b"a.b 1 2 3"),
        r#"expected 3 fields "path value timestamp", found 4: "a.b 1 2 3""#
    );
    assert_eq!(
        err(b" a.b 1 2 3 4 5\r"),
        r#"expected 3 fields "path value timestamp", found 6: "a.b 1 2 3 4 5""#
    );
    assert_eq!(err(b"a.b abc 1"), r#"invalid value "abc" at column 5"#);
    assert_eq!(err(b"a.b 1_ 1"), r#"invalid value "1_" at column 5"#);
    assert_eq!(err(b"a.b  1,5 1"), r#"invalid value "1,5" at column 6"#);
    assert_eq!(err(b"a.b 1 x"), r#"invalid timestamp "x" at column 7"#);
    assert_eq!(
        err(b"a.b 1 2023-01-01"),
        r#"invalid timestamp "2023-01-01" at column 7"#
    );
    assert_eq!(
        err(b"a.b 1 nan"),
        r#"invalid timestamp "nan" at column 7: not a finite number"#
    );
    assert_eq!(
        err(b"a.b 1 -inf"),
        r#"invalid timestamp "-inf" at column 7: not a finite number"#
    );
    assert_eq!(
        err(b"a.b 1 1e999"),
        r#"invalid timestamp "1e999" at column 7: not a finite number"#
    );
    assert_eq!(
        err(b"a\xffb 1 2"),
        r#"path is not valid UTF-8 at column 1: "a\xffb""#
    );
    // Field count is checked before the fields themselves.
    assert_eq!(
        err(b"a\xff x y z"),
        r#"expected 3 fields "path value timestamp", found 4: "a\xff x y z""#
    );
    // Excerpts are escaped and cut.
    let long = format!("a.b {} 1", "9".repeat(70) + "x");
    assert_eq!(
        err(long.as_bytes()),
        format!("invalid value \"{}...\" at column 5", "9".repeat(64))
    );
    assert_eq!(
        err(b"a.b \"1\x1b[31m\" 1"),
        r#"invalid value "\"1\u{1b}[31m\"" at column 5"#
    );
}

#[test]
fn reasons_and_positions() {
    let e = parse_line(b"a.b x 1").unwrap_err();
    assert_eq!(e.reason(), "invalid_value");
    let e = e.at_line(7);
    assert_eq!(e.to_string(), r#"invalid value "x" at line 7, column 5"#);
    assert_eq!(e.position().unwrap().line, Some(7));
    assert_eq!(parse_line(b"a").unwrap_err().reason(), "field_count");
    assert_eq!(parse_line(b"").unwrap_err().reason(), "empty_line");
    assert_eq!(
        parse_line(b"a 1 x").unwrap_err().reason(),
        "invalid_timestamp"
    );
    assert_eq!(
        parse_line(b"a 1 nan").unwrap_err().reason(),
        "invalid_timestamp"
    );
    assert_eq!(
        parse_line(b"\xff 1 1").unwrap_err().reason(),
        "invalid_utf8"
    );
    let io = Error::from(std::io::Error::other("reset"));
    assert!(!io.is_continuable());
    assert_eq!(io.reason(), "io");
    assert_eq!(io.to_string(), "I/O error: reset");
}

#[test]
fn line_numbers_from_the_splitter() {
    let input = b"a.b 1 1\n\nbad line here now\na.b x 1\r\n";
    let mut splitter = LineSplitter::default();
    let got: Vec<String> = splitter
        .lines(input, true)
        .map(|l| match l.and_then(|l| l.parse()) {
            Ok(s) => s.path.to_string(),
            Err(e) => e.to_string(),
        })
        .collect();
    assert_eq!(
        got,
        [
            "a.b",
            "empty line at line 2",
            r#"expected 3 fields "path value timestamp", found 4 at line 3: "bad line here now""#,
            r#"invalid value "x" at line 4, column 5"#,
        ]
    );
}

#[test]
fn tagged_series_normalization() {
    let cases: &[(&str, &str)] = &[
        ("a.b", "a.b"),
        ("a.b;x=1", "a.b;x=1"),
        ("a.b;z=1;a=2", "a.b;a=2;z=1"),
        // last duplicate wins
        ("a.b;k=1;j=0;k=2", "a.b;j=0;k=2"),
        // carbon sorts ";key=value" strings: "a.b" < "a" because '.' < '='
        ("m;a=1;a.b=2", "m;a.b=2;a=1"),
        ("m;a-b=1;a=2;ab=3", "m;a-b=1;a=2;ab=3"),
        // the name is the `name` tag: a `name` tag in the input is dropped
        ("m;name=other;x=1", "m;x=1"),
        // leading ~ removed from the name (carbon's sanitize_name_as_tag_value)
        ("~m;x=1", "m;x=1"),
        ("~~untagged", "untagged"),
        // values may hold '=', '~' (not first), '!', '^'
        ("m;expr=a=b;re=x~y;q=!^", "m;expr=a=b;q=!^;re=x~y"),
        ("disk.used;path=/;host=b;host=a", "disk.used;host=a;path=/"),
        (
            "température;ville=Zürich;été=oui",
            "température;ville=Zürich;été=oui",
        ),
    ];
    for &(path, want) in cases {
        assert_eq!(normalize(path).unwrap(), want, "{path}");
        let parsed = TaggedPath::parse(path).unwrap();
        assert_eq!(parsed.is_normalized(), path == want, "{path}");
        let mut buf = String::from("prefix:");
        parsed.write_normalized(&mut buf);
        assert_eq!(buf, format!("prefix:{want}"));
        // normalizing is idempotent
        assert_eq!(normalize(want).unwrap(), want);
    }
}

#[test]
fn tagged_series_accessors() {
    let p = TaggedPath::parse("~cpu;b=2;a=1;b=3").unwrap();
    assert_eq!(p.as_str(), "~cpu;b=2;a=1;b=3");
    assert_eq!(p.name(), "~cpu");
    assert_eq!(p.sanitized_name(), "cpu");
    assert!(p.is_tagged());
    let tags: Vec<(&str, &str)> = p.tags().map(|t| (t.key, t.value)).collect();
    assert_eq!(tags, [("b", "2"), ("a", "1"), ("b", "3")]);
    assert!(!TaggedPath::parse("cpu").unwrap().is_tagged());
    assert_eq!(TaggedPath::parse("cpu").unwrap().tags().count(), 0);
    // Many tags take the spill-to-heap path and still sort right.
    let many: Vec<String> = (0..40).rev().map(|i| format!("k{i:02}=v{i}")).collect();
    let path = format!("m;{}", many.join(";"));
    let mut want: Vec<String> = many.clone();
    want.sort();
    assert_eq!(normalize(&path).unwrap(), format!("m;{}", want.join(";")));
}

#[test]
fn tagged_series_errors() {
    let cases: &[(&str, &str)] = &[
        (
            ";a=1",
            r#"empty metric name in tagged path at column 1: ";a=1""#,
        ),
        ("m;", r#"invalid tag "" at column 3: expected "key=value""#),
        (
            "m;;a=1",
            r#"invalid tag "" at column 3: expected "key=value""#,
        ),
        (
            "m;a=1;b",
            r#"invalid tag "b" at column 7: expected "key=value""#,
        ),
        ("m;=1", r#"invalid tag "=1" at column 3: empty key"#),
        ("m;a=", r#"invalid tag "a=" at column 3: empty value"#),
        (
            "m;a!b=1",
            r#"invalid tag "a!b=1" at column 3: character '!' is not allowed in a key"#,
        ),
        (
            "m;a^b=1",
            r#"invalid tag "a^b=1" at column 3: character '^' is not allowed in a key"#,
        ),
        (
            "m;a^!=1",
            r#"invalid tag "a^!=1" at column 3: character '!' is not allowed in a key"#,
        ),
        (
            "m;a=~x",
            r#"invalid tag "a=~x" at column 3: value starts with "~""#,
        ),
        (
            "~~;a=1",
            r#"metric name "~~" is empty once its leading "~" are removed at column 1"#,
        ),
        (
            "~",
            r#"metric name "~" is empty once its leading "~" are removed at column 1"#,
        ),
        // tags are checked before the name's tildes, as carbon does
        (
            "~;a",
            r#"invalid tag "a" at column 3: expected "key=value""#,
        ),
    ];
    for &(path, want) in cases {
        let e = TaggedPath::parse(path).unwrap_err();
        assert_eq!(e.to_string(), want, "{path}");
        assert_eq!(e.reason(), "invalid_tag");
        assert!(e.is_continuable());
    }
    // Reported against a whole line: shift by the path's offset and add the line number.
    let e = TaggedPath::parse("m;a=").unwrap_err().shifted(2).at_line(9);
    assert_eq!(
        e.to_string(),
        r#"invalid tag "a=" at line 9, column 5: empty value"#
    );
}

#[test]
fn encoder_output() {
    let mut out = Vec::new();
    for (path, value, ts) in [
        ("a.b", 12.0, 1_700_000_000),
        ("a.b", -3.0, 1),
        ("a.b", 0.0, 0),
        ("a.b", 12.5, 1),
        ("a.b", 0.000001, 1),
        ("a.b", 1e300, 1),
        ("a.b", 9007199254740993.0, 1),
        ("a.b", f64::INFINITY, 1),
        ("a.b", f64::NEG_INFINITY, 1),
        ("a.b;x=1", 0.1 + 0.2, -1),
    ] {
        encode_sample(path, value, ts, &mut out).unwrap();
    }
    let want = format!(
        "a.b 12 1700000000\na.b -3 1\na.b 0 0\na.b 12.5 1\na.b 0.000001 1\na.b 1{} 1\n\
         a.b 9007199254740992 1\na.b inf 1\na.b -inf 1\na.b;x=1 0.30000000000000004 -1\n",
        "0".repeat(300)
    );
    assert_eq!(String::from_utf8(out).unwrap(), want);
}
