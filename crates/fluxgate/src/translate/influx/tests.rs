//! Telegraf's own serializer tests (`plugins/serializers/graphite/graphite_test.go`) ported
//! with exact expected lines, plus the places where fluxgate encodes instead of mangling.
//!
//! Expected encodings of unsafe segments were produced by the reference,
//! `urllib.parse.quote(s.encode('idna')).replace('.', '%2E')` in Python 3.

use line_protocol::{parse_line, EscapedStr, FieldValue, ParsedLine};
use proptest::prelude::*;

use super::*;

/// Telegraf's `time.Unix(1234567890, 0)`.
const T: i64 = 1_234_567_890_000_000_000;

fn conv_with(edit: impl FnOnce(&mut InfluxToGraphiteConfig)) -> InfluxToGraphite {
    let mut config = InfluxToGraphiteConfig::default();
    edit(&mut config);
    InfluxToGraphite::new(&config).expect("valid configuration")
}

fn template(t: &str) -> InfluxToGraphite {
    conv_with(|c| c.template = t.to_owned())
}

fn tagged() -> InfluxToGraphite {
    conv_with(|c| c.tag_support = true)
}

/// Translates each line of line protocol (timestamp `T` unless the line has one, in ns).
fn run(conv: &InfluxToGraphite, lines: &str) -> (String, Written) {
    let mut writer = conv.writer();
    let mut out = Vec::new();
    let mut total = Written::default();
    for line in lines.lines() {
        let point = parse_line(line).expect("valid line protocol");
        let ts = point.timestamp.unwrap_or(T);
        let w = writer.write_point(&point, ts, &mut out);
        total.lines += w.lines;
        total.skipped.add(&w.skipped);
        if total.error.is_none() {
            total.error = w.error;
        }
    }
    (String::from_utf8(out).expect("UTF-8 output"), total)
}

fn out(conv: &InfluxToGraphite, lines: &str) -> String {
    run(conv, lines).0
}

fn config_error(edit: impl FnOnce(&mut InfluxToGraphiteConfig)) -> String {
    let mut config = InfluxToGraphiteConfig::default();
    edit(&mut config);
    InfluxToGraphite::new(&config)
        .expect_err("configuration should be refused")
        .to_string()
}

const DEFAULT_TAGS: &str = "cpu,host=localhost,cpu=cpu0,datacenter=us-west-2";

// ---- Telegraf's graphite_test.go -------------------------------------------------------------

#[test]
fn serialize_metric_no_host() {
    let d = InfluxToGraphite::new(&InfluxToGraphiteConfig::default()).unwrap();
    assert_eq!(
        out(
            &d,
            "cpu,cpu=cpu0,datacenter=us-west-2 usage_idle=91.5,usage_busy=8.5"
        ),
        "cpu0.us-west-2.cpu.usage_idle 91.5 1234567890\n\
         cpu0.us-west-2.cpu.usage_busy 8.5 1234567890\n"
    );
}

#[test]
fn serialize_metric_no_host_with_tag_support() {
    assert_eq!(
        out(
            &tagged(),
            "cpu,cpu=cpu0,datacenter=us-west-2 usage_idle=91.5,usage_busy=8.5"
        ),
        "cpu.usage_idle;cpu=cpu0;datacenter=us-west-2 91.5 1234567890\n\
         cpu.usage_busy;cpu=cpu0;datacenter=us-west-2 8.5 1234567890\n"
    );
}

#[test]
fn serialize_metric_host() {
    let d = template(DEFAULT_TEMPLATE);
    assert_eq!(
        out(
            &d,
            &format!("{DEFAULT_TAGS} usage_idle=91.5,usage_busy=8.5")
        ),
        "localhost.cpu0.us-west-2.cpu.usage_idle 91.5 1234567890\n\
         localhost.cpu0.us-west-2.cpu.usage_busy 8.5 1234567890\n"
    );
}

#[test]
fn serialize_metric_host_with_tag_support() {
    assert_eq!(
        out(
            &tagged(),
            &format!("{DEFAULT_TAGS} usage_idle=91.5,usage_busy=8.5")
        ),
        "cpu.usage_idle;cpu=cpu0;datacenter=us-west-2;host=localhost 91.5 1234567890\n\
         cpu.usage_busy;cpu=cpu0;datacenter=us-west-2;host=localhost 8.5 1234567890\n"
    );
}

#[test]
fn field_named_value_stays_out_of_the_path() {
    let line = format!("{DEFAULT_TAGS} value=91.5");
    // TestSerializeValueField, ...Field2 (middle), ...Field3 (start), ...Field5.
    for (t, expected) in [
        (DEFAULT_TEMPLATE, "localhost.cpu0.us-west-2.cpu"),
        (
            "host.field.tags.measurement",
            "localhost.cpu0.us-west-2.cpu",
        ),
        (
            "field.host.tags.measurement",
            "localhost.cpu0.us-west-2.cpu",
        ),
        (
            "host.datacenter.cpu.tags.measurement.field",
            "localhost.us-west-2.cpu0.cpu",
        ),
    ] {
        assert_eq!(
            out(&template(t), &line),
            format!("{expected} 91.5 1234567890\n"),
            "template {t}"
        );
    }
    assert_eq!(
        out(&tagged(), &line),
        "cpu;cpu=cpu0;datacenter=us-west-2;host=localhost 91.5 1234567890\n"
    );
}

#[test]
fn string_fields_are_skipped_and_counted() {
    let line = format!(r#"{DEFAULT_TAGS} value="asdasd""#);
    for conv in [template("host.field.tags.measurement"), tagged()] {
        let (text, w) = run(&conv, &line);
        assert_eq!(text, "");
        assert_eq!(w.lines, 0);
        assert_eq!(w.skipped.get(SkipReason::String), 1);
        assert_eq!(w.error, None, "a string is policy, not an error");
    }
    // TestClean "Field with space": nothing at all for a point with only a string field.
    let (text, w) = run(
        &template(DEFAULT_TEMPLATE),
        r#"system,host=localhost uptime_format="20 days, 23:26""#,
    );
    assert_eq!(text, "");
    assert_eq!(
        w.skipped.iter().collect::<Vec<_>>(),
        [(SkipReason::String, 1)]
    );
}

#[test]
fn booleans_are_one_and_zero() {
    let line = format!("{DEFAULT_TAGS} enabled=true,disabled=false");
    assert_eq!(
        out(&template("host.field.tags.measurement"), &line),
        "localhost.enabled.cpu0.us-west-2.cpu 1 1234567890\n\
         localhost.disabled.cpu0.us-west-2.cpu 0 1234567890\n"
    );
    assert_eq!(
        out(&tagged(), &line),
        "cpu.enabled;cpu=cpu0;datacenter=us-west-2;host=localhost 1 1234567890\n\
         cpu.disabled;cpu=cpu0;datacenter=us-west-2;host=localhost 0 1234567890\n"
    );
}

#[test]
fn booleans_can_be_skipped() {
    let conv = conv_with(|c| c.bool_mode = BoolMode::Skip);
    let (text, w) = run(&conv, "cpu,host=a up=true,load=1.5");
    assert_eq!(text, "a.cpu.load 1.5 1234567890\n");
    assert_eq!(w.lines, 1);
    assert_eq!(w.skipped.get(SkipReason::Boolean), 1);
    assert_eq!(w.error, None);
}

#[test]
fn unsigned_without_tags_has_no_leading_dot() {
    // TestSerializeValueUnsigned: Telegraf writes ".mem.free 42 0" (an empty `tags` element);
    // fluxgate leaves empty segments out.
    let d = template(DEFAULT_TEMPLATE);
    assert_eq!(out(&d, "mem free=42u 0"), "mem.free 42 0\n");
}

#[test]
fn spaces_are_percent_encoded_not_replaced() {
    // TestSerializeFieldWithSpaces / TestSerializeTagWithSpaces: Telegraf writes `_`.
    let d = template(DEFAULT_TEMPLATE);
    assert_eq!(
        out(&d, &format!(r"{DEFAULT_TAGS} field\ with\ spaces=91.5")),
        "localhost.cpu0.us-west-2.cpu.field%20with%20spaces 91.5 1234567890\n"
    );
    let line = r"cpu,host=localhost,cpu=cpu\ 0,datacenter=us-west-2 field_with_spaces=91.5";
    assert_eq!(
        out(&d, line),
        "localhost.cpu%200.us-west-2.cpu.field_with_spaces 91.5 1234567890\n"
    );
    assert_eq!(
        out(&tagged(), line),
        "cpu.field_with_spaces;cpu=cpu%200;datacenter=us-west-2;host=localhost 91.5 1234567890\n"
    );
    assert_eq!(
        out(
            &tagged(),
            &format!(r"{DEFAULT_TAGS} field\ with\ spaces=91.5")
        ),
        "cpu.field%20with%20spaces;cpu=cpu0;datacenter=us-west-2;host=localhost 91.5 1234567890\n"
    );
}

#[test]
fn prefix() {
    let line = format!("{DEFAULT_TAGS} usage_idle=91.5,usage_busy=8.5");
    assert_eq!(
        out(&conv_with(|c| c.prefix = "prefix".into()), &line),
        "prefix.localhost.cpu0.us-west-2.cpu.usage_idle 91.5 1234567890\n\
         prefix.localhost.cpu0.us-west-2.cpu.usage_busy 8.5 1234567890\n"
    );
    assert_eq!(
        out(
            &conv_with(|c| {
                c.prefix = "prefix".into();
                c.tag_support = true;
            }),
            &line
        ),
        "prefix.cpu.usage_idle;cpu=cpu0;datacenter=us-west-2;host=localhost 91.5 1234567890\n\
         prefix.cpu.usage_busy;cpu=cpu0;datacenter=us-west-2;host=localhost 8.5 1234567890\n"
    );
    // A multi-segment prefix, and a prefix in front of a template that starts with `field`.
    assert_eq!(
        out(
            &conv_with(|c| {
                c.prefix = "telegraf.dc1".into();
                c.template = "field.host".into();
            }),
            "cpu,host=a idle=1"
        ),
        "telegraf.dc1.idle.a 1 1234567890\n"
    );
}

#[test]
fn telegraf_templates_one_to_six() {
    let line = format!("{DEFAULT_TAGS} usage_idle=91.5");
    for (t, expected) in [
        ("", "localhost.cpu0.us-west-2.cpu.usage_idle"),
        (
            "tags.measurement.field",
            "cpu0.us-west-2.localhost.cpu.usage_idle",
        ),
        ("host.measurement.field", "localhost.cpu.usage_idle"),
        ("host.tags.field", "localhost.cpu0.us-west-2.usage_idle"),
        // No `field`: the field is not part of the path at all.
        ("host.tags.measurement", "localhost.cpu0.us-west-2.cpu"),
        (
            "host.datacenter.cpu.tags.measurement.field",
            "localhost.us-west-2.cpu0.cpu.usage_idle",
        ),
        // Tag keys the point does not have are left out.
        (
            "foo.host.cpu.bar.tags.measurement.field",
            "localhost.cpu0.us-west-2.cpu.usage_idle",
        ),
    ] {
        let conv = if t.is_empty() {
            InfluxToGraphite::new(&InfluxToGraphiteConfig::default()).unwrap()
        } else {
            template(t)
        };
        assert_eq!(
            out(&conv, &line),
            format!("{expected} 91.5 1234567890\n"),
            "template {t:?}"
        );
    }
}

#[test]
fn tags_element_sorts_by_key_and_encodes_dots() {
    // TestGraphiteTags (buildTags): Telegraf turns `192.168.0.1` into `192_168_0_1`.
    let tags = template("tags");
    assert_eq!(
        out(&tags, "mymeasurement,host=192.168.0.1 value=3.14"),
        "192%2E168%2E0%2E1 3.14 1234567890\n"
    );
    assert_eq!(
        out(
            &tags,
            "mymeasurement,host=192.168.0.1,bfoo=second,afoo=first value=3.14"
        ),
        "first.second.192%2E168%2E0%2E1 3.14 1234567890\n"
    );
    assert_eq!(
        out(&tags, "mymeasurement,bfoo=second,afoo=first value=3.14"),
        "first.second 3.14 1234567890\n"
    );
}

/// TestClean and TestCleanWithTagsSupport, with fluxgate's encoding in place of Telegraf's
/// replacement characters (Telegraf's expectation in the comment).
#[test]
fn clean_table() {
    let d = template(DEFAULT_TEMPLATE);
    let t = tagged();
    let rows: [(&str, &str, &str); 8] = [
        (
            "cpu,host=localhost usage_busy=8.5",
            "localhost.cpu.usage_busy 8.5 1234567890\n",
            "cpu.usage_busy;host=localhost 8.5 1234567890\n",
        ),
        // Telegraf: localhost.value_with_dot.cpu.usage_busy /
        // cpu.usage_busy;host=localhost;label.dot_and_space=value_with.dot
        (
            r"cpu,host=localhost,label.dot\ and\ space=value\ with.dot usage_busy=8.5",
            "localhost.value%20with%2Edot.cpu.usage_busy 8.5 1234567890\n",
            "cpu.usage_busy;host=localhost;label%2Edot%20and%20space=value%20with%2Edot 8.5 1234567890\n",
        ),
        // Telegraf: localhost.-_:=.cpu.usage_busy
        (
            r"cpu,host=localhost,tag=-_:\= usage_busy=10",
            "localhost.-_%3A%3D.cpu.usage_busy 10 1234567890\n",
            "cpu.usage_busy;host=localhost;tag=-_%3A%3D 10 1234567890\n",
        ),
        // Telegraf: localhost.---.cpu.usage_busy (`/` is %2F: see encode_slash)
        (
            "cpu,host=localhost,tag=/@* usage_busy=10",
            "localhost.%2F%40%2A.cpu.usage_busy 10 1234567890\n",
            "cpu.usage_busy;host=localhost;tag=%2F%40%2A 10 1234567890\n",
        ),
        // Telegraf: localhost.no_slash.cpu.usage_busy
        (
            r"cpu,host=localhost,tag=\no\ slash usage_busy=10",
            "localhost.%5Cno%20slash.cpu.usage_busy 10 1234567890\n",
            "cpu.usage_busy;host=localhost;tag=%5Cno%20slash 10 1234567890\n",
        ),
        (
            "cpu,host=localhost value=10",
            "localhost.cpu 10 1234567890\n",
            "cpu;host=localhost 10 1234567890\n",
        ),
        // Telegraf: localhost.μnicodε_letters.cpu
        (
            "cpu,host=localhost,tag=μnicodε_letters value=10",
            "localhost.xn--nicod_letters-tnj7g.cpu 10 1234567890\n",
            "cpu;host=localhost;tag=xn--nicod_letters-tnj7g 10 1234567890\n",
        ),
        // Telegraf: localhost.___.cpu
        (
            "cpu,host=localhost,tag=“☢” value=10",
            "localhost.xn--hvgc637b.cpu 10 1234567890\n",
            "cpu;host=localhost;tag=xn--hvgc637b 10 1234567890\n",
        ),
    ];
    for (line, path, tagged) in rows {
        assert_eq!(out(&d, line), path, "{line}");
        assert_eq!(out(&t, line), tagged, "{line} (tag support)");
    }
}

#[test]
fn newline_in_a_tag_value_is_encoded() {
    // TestClean "Newline in tags": only a hand-built point can hold one.
    let mut point = ParsedLine::new(EscapedStr::plain("cpu"));
    point
        .tags
        .push((EscapedStr::plain("host"), EscapedStr::plain("localhost")));
    point.tags.push((
        EscapedStr::plain("label"),
        EscapedStr::plain("some\nthing\nwith\nnewline"),
    ));
    point
        .fields
        .push((EscapedStr::plain("usage_busy"), FieldValue::F64(8.5)));
    let mut buf = Vec::new();
    let w = template(DEFAULT_TEMPLATE).write_point(&point, T, &mut buf);
    assert_eq!(w.lines, 1);
    assert_eq!(
        String::from_utf8(buf).unwrap(),
        "localhost.some%0Athing%0Awith%0Anewline.cpu.usage_busy 8.5 1234567890\n"
    );
    let mut buf = Vec::new();
    let _ = tagged().write_point(&point, T, &mut buf);
    assert_eq!(
        String::from_utf8(buf).unwrap(),
        "cpu.usage_busy;host=localhost;label=some%0Athing%0Awith%0Anewline 8.5 1234567890\n"
    );
}

#[test]
fn batches_append() {
    // TestSerializeBatch: two points, two lines, in order.
    let d = template(DEFAULT_TEMPLATE);
    let line = "cpu,host=localhost usage_busy=8.5";
    assert_eq!(
        out(&d, &format!("{line}\n{line}")),
        "localhost.cpu.usage_busy 8.5 1234567890\nlocalhost.cpu.usage_busy 8.5 1234567890\n"
    );
    assert_eq!(
        out(&tagged(), &format!("{line}\n{line}")),
        "cpu.usage_busy;host=localhost 8.5 1234567890\ncpu.usage_busy;host=localhost 8.5 1234567890\n"
    );
}

// ---- values and timestamps -------------------------------------------------------------------

#[test]
fn numbers_are_exact_and_exponent_free() {
    let d = template("measurement.field");
    assert_eq!(
        out(
            &d,
            "m i=-9223372036854775808i,u=18446744073709551615u,big=9007199254740993i,\
             tiny=1e-7,huge=1e21,half=-0.5,zero=-0"
        ),
        "m.i -9223372036854775808 1234567890\n\
         m.u 18446744073709551615 1234567890\n\
         m.big 9007199254740993 1234567890\n\
         m.tiny 0.0000001 1234567890\n\
         m.huge 1000000000000000000000 1234567890\n\
         m.half -0.5 1234567890\n\
         m.zero 0 1234567890\n"
    );
}

#[test]
fn timestamps_are_whole_seconds_rounded_down() {
    let d = template("measurement.field");
    let point = parse_line("m f=1").unwrap();
    let at = |ns: i64| {
        let mut buf = Vec::new();
        let _ = d.write_point(&point, ns, &mut buf);
        String::from_utf8(buf).unwrap()
    };
    assert_eq!(at(1_999_999_999), "m.f 1 1\n");
    assert_eq!(at(0), "m.f 1 0\n");
    assert_eq!(at(-1), "m.f 1 -1\n");
    assert_eq!(at(-1_000_000_000), "m.f 1 -1\n");
    assert_eq!(at(i64::MAX), "m.f 1 9223372036\n");
}

#[test]
fn non_finite_floats_are_errors() {
    let mut point = ParsedLine::new(EscapedStr::plain("m"));
    point
        .fields
        .push((EscapedStr::plain("a"), FieldValue::F64(f64::NAN)));
    point
        .fields
        .push((EscapedStr::plain("b"), FieldValue::F64(2.0)));
    let mut buf = Vec::new();
    let w = template("measurement.field").write_point(&point, T, &mut buf);
    assert_eq!(String::from_utf8(buf).unwrap(), "m.b 2 1234567890\n");
    assert_eq!(w.skipped.get(SkipReason::NonFinite), 1);
    assert_eq!(
        w.error.unwrap().to_string(),
        r#"field "a" of measurement "m" is NaN, which Graphite cannot store"#
    );
}

#[test]
fn a_repeated_field_key_writes_the_last_value() {
    let (text, w) = run(&template("measurement.field"), "m a=1,b=2,a=3");
    assert_eq!(text, "m.b 2 1234567890\nm.a 3 1234567890\n");
    assert_eq!(w.skipped.get(SkipReason::DuplicateField), 1);
    assert_eq!(w.error, None);
}

#[test]
fn repeated_keys_in_a_wide_line() {
    let fields: Vec<String> = (0..40).map(|i| format!("f{}={i}", i % 30)).collect();
    let (text, w) = run(&template("field"), &format!("m {}", fields.join(",")));
    assert_eq!(w.lines, 30);
    assert_eq!(w.skipped.get(SkipReason::DuplicateField), 10);
    // f0..f9 appear twice: their second values (30..39) are the ones written, in line order.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["f10 10 1234567890", "f11 11 1234567890"]);
    assert_eq!(lines[20..22], ["f0 30 1234567890", "f1 31 1234567890"]);
}

#[test]
fn a_prefix_alone_is_no_path() {
    // Telegraf's SerializeBucketName returns "" when the template yields nothing.
    let c = conv_with(|c| {
        c.prefix = "p".into();
        c.template = "host".into();
    });
    let (text, w) = run(&c, "cpu a=1");
    assert_eq!(text, "");
    assert_eq!(w.skipped.get(SkipReason::EmptyPath), 1);
    assert_eq!(out(&c, "cpu,host=h a=1"), "p.h 1 1234567890\n");
    // With a field element there is always something to name: `p.a`, and `p` for `value`.
    let c = conv_with(|c| {
        c.prefix = "p".into();
        c.template = "host.field".into();
    });
    assert_eq!(
        out(&c, "cpu a=1,value=2"),
        "p.a 1 1234567890\np 2 1234567890\n"
    );
}

// ---- encoding --------------------------------------------------------------------------------

#[test]
fn every_segment_is_encoded() {
    let d = template(DEFAULT_TEMPLATE);
    assert_eq!(
        out(&d, r"cp\ u,host=web\ 01,site=café,ip=10.0.0.1 use=1"),
        "web%2001.10%2E0%2E0%2E1.xn--caf-dma.cp%20u.use 1 1234567890\n"
    );
    // nameprep folds case and ß, as Python's idna codec does.
    assert_eq!(
        out(&d, "Straße,host=ÄÖ x=1"),
        "xn--4ca0b.strasse.x 1 1234567890\n"
    );
}

#[test]
fn slash_is_encoded_unless_disabled() {
    let line = "disk,host=a,path=/var/lib used=1";
    assert_eq!(
        out(&template(DEFAULT_TEMPLATE), line),
        "a.%2Fvar%2Flib.disk.used 1 1234567890\n"
    );
    let keep = conv_with(|c| c.encode_slash = false);
    assert_eq!(out(&keep, line), "a./var/lib.disk.used 1 1234567890\n");
    // Decoding gives the tag value back either way.
    assert_eq!(metric_name::decode("%2Fvar%2Flib").unwrap(), "/var/lib");
}

#[test]
fn punycode_variant() {
    let p = conv_with(|c| c.name_encoding = Encoding::Punycode);
    assert_eq!(
        out(&p, "cpu,host=café idle=1"),
        "caf-dma.cpu-.idle- 1 1234567890\n"
    );
}

#[test]
fn an_unencodable_tag_value_fails_every_field_of_the_point() {
    let long = "x".repeat(64);
    let (text, w) = run(
        &template(DEFAULT_TEMPLATE),
        &format!("cpu,host={long} a=1,b=2,s=\"x\""),
    );
    assert_eq!(text, "");
    assert_eq!(w.lines, 0);
    assert_eq!(w.skipped.get(SkipReason::Unencodable), 2);
    assert_eq!(w.skipped.get(SkipReason::String), 1);
    assert_eq!(
        w.error.unwrap().to_string(),
        format!(
            "value of tag \"host\" {long:?} of measurement \"cpu\" cannot be made a Graphite \
             name: label too long (label 0 at byte 0: {long:?})"
        )
    );
    // A tag the template does not use does not matter.
    assert_eq!(
        out(
            &template("measurement.field"),
            &format!("cpu,host={long} a=1")
        ),
        "cpu.a 1 1234567890\n"
    );
}

#[test]
fn an_unencodable_field_key_fails_that_field_only() {
    let (text, w) = run(&template("measurement.field"), "cpu a..b=1,ok=2");
    assert_eq!(text, "cpu.ok 2 1234567890\n");
    assert_eq!(w.skipped.get(SkipReason::Unencodable), 1);
    assert_eq!(
        w.error.unwrap().to_string(),
        r#"field key "a..b" of measurement "cpu" cannot be made a Graphite name: label empty or too long (label 1 at byte 2: "")"#
    );
}

#[test]
fn a_template_that_yields_nothing_is_an_empty_path() {
    let (text, w) = run(&template("host"), "cpu a=1");
    assert_eq!(text, "");
    assert_eq!(w.skipped.get(SkipReason::EmptyPath), 1);
    assert_eq!(
        w.error.unwrap().to_string(),
        r#"the template "host" gives no path for measurement "cpu""#
    );
}

// ---- tag support -----------------------------------------------------------------------------

#[test]
fn tag_support_renames_name_and_protects_tildes() {
    assert_eq!(
        out(&tagged(), "cpu,name=x,zone=~eu,host=a v=1"),
        "cpu.v;_name=x;host=a;zone=%7Eeu 1 1234567890\n"
    );
}

#[test]
fn tag_support_sorts_by_the_written_key() {
    // `name` becomes `_name`, which sorts before `a`; `B` sorts before `a` in byte order.
    assert_eq!(
        out(&tagged(), "m,a=1,name=n,B=2 value=1"),
        "m;B=2;_name=n;a=1 1 1234567890\n"
    );
}

#[test]
fn tag_support_separator_and_prefix() {
    let c = conv_with(|c| {
        c.tag_support = true;
        c.separator = "_".into();
        c.prefix = "tg".into();
    });
    assert_eq!(
        out(&c, "cpu,host=a usage_idle=1,value=2"),
        "tg_cpu_usage_idle;host=a 1 1234567890\ntg_cpu;host=a 2 1234567890\n"
    );
}

#[test]
fn tag_support_ignores_templates() {
    let c = conv_with(|c| {
        c.tag_support = true;
        c.template = "host.measurement".into();
    });
    assert_eq!(
        out(&c, "cpu,host=a idle=1"),
        "cpu.idle;host=a 1 1234567890\n"
    );
}

// ---- templates -------------------------------------------------------------------------------

#[test]
fn filtered_templates_pick_by_measurement() {
    let c = conv_with(|c| {
        c.templates = vec![
            "cpu host.measurement.field".into(),
            "net_* measurement.tags.field".into(),
            "d?sk host.field".into(),
            "tags.measurement".into(),
        ];
    });
    assert_eq!(
        out(
            &c,
            "cpu,host=a,cpu=cpu0 idle=1\n\
             net_io,host=a,if=eth0 rx=2\n\
             disk,host=a,path=/ used=3\n\
             mem,host=a free=4\n\
             cpux,host=a idle=5"
        ),
        "a.cpu.idle 1 1234567890\n\
         net_io.a.eth0.rx 2 1234567890\n\
         a.used 3 1234567890\n\
         a.mem 4 1234567890\n\
         a.cpux 5 1234567890\n"
    );
}

#[test]
fn glob_wildcards() {
    for (pattern, text, expected) in [
        ("cpu", "cpu", true),
        ("cpu", "cpu0", false),
        ("cpu*", "cpu", true),
        ("cpu*", "cpu_total", true),
        ("*cpu", "xcpu", true),
        ("*_*_*", "a_b_c", true),
        ("*_*_*", "a_b", false),
        ("c?u", "cpu", true),
        ("c?u", "cu", false),
        ("c?fé", "café", true),
        ("caf?", "café", true),
        ("*é*", "xxéyy", true),
        ("a*b*c", "aXbYbZc", true),
        ("a*b*c", "aXbYbZ", false),
        ("*", "", true),
        ("?", "", false),
    ] {
        assert_eq!(
            glob_matches(pattern.as_bytes(), text.as_bytes()),
            expected,
            "{pattern} vs {text}"
        );
    }
}

#[test]
fn configuration_errors_name_the_entry() {
    assert_eq!(
        config_error(|c| c.template = "host..measurement".into()),
        r#"template: template "host..measurement" has an empty element at position 2 (two dots in a row, or a dot at an end)"#
    );
    assert_eq!(
        config_error(|c| c.template = "field.measurement.field".into()),
        "template: template \"field.measurement.field\" uses `field` more than once"
    );
    assert_eq!(
        config_error(|c| c.template = "tags.host.tags".into()),
        "template: template \"tags.host.tags\" uses `tags` more than once"
    );
    assert_eq!(
        config_error(|c| c.templates = vec!["cpu host.host.field".into()]),
        "templates[0]: template \"host.host.field\" uses `host` more than once"
    );
    assert_eq!(
        config_error(|c| c.templates = vec!["a b c".into()]),
        r#"templates[0]: expected `template` or `filter template`, found "a b c""#
    );
    assert_eq!(
        config_error(|c| c.templates = vec!["  ".into()]),
        r#"templates[0]: expected `template` or `filter template`, found "  ""#
    );
    assert_eq!(
        config_error(|c| c.templates = vec!["cpu[0-9] host.field".into()]),
        "templates[0]: filter \"cpu[0-9]\" uses `[`; only the `*` and `?` wildcards are supported"
    );
    assert_eq!(
        config_error(|c| c.templates = vec!["host.field".into(), "x host".into(), "field".into()]),
        "templates[2]: a second template without a filter; templates[0] already replaces the default template"
    );
    assert_eq!(
        config_error(|c| c.prefix = "telegraf.web 01".into()),
        r#"prefix "telegraf.web 01": segment "web 01" is not Graphite-safe; write it encoded: "web%2001""#
    );
    assert_eq!(
        config_error(|c| c.prefix = "a..b".into()),
        r#"prefix "a..b": segment "" is empty (two dots in a row, or a dot at an end)"#
    );
    assert_eq!(
        config_error(|c| c.separator = String::new()),
        r#"separator "": must not be empty"#
    );
    assert_eq!(
        config_error(|c| c.separator = ";".into()),
        "separator \";\": must not contain `;`, `=` or `~`, which mean something in Graphite tagged series"
    );
}

#[test]
fn config_from_toml() {
    let c: InfluxToGraphiteConfig = toml::from_str("").unwrap();
    assert_eq!(c, InfluxToGraphiteConfig::default());
    assert_eq!(c.template, "host.tags.measurement.field");
    assert!(c.encode_slash);
    let c: InfluxToGraphiteConfig = toml::from_str(
        r#"
        template = "host.measurement.field"
        templates = ["cpu tags.measurement.field"]
        prefix = "telegraf"
        tag_support = true
        separator = "_"
        bool_mode = "skip"
        name_encoding = "punycode"
        encode_slash = false
        "#,
    )
    .unwrap();
    assert_eq!(c.bool_mode, BoolMode::Skip);
    assert_eq!(c.name_encoding, Encoding::Punycode);
    let e = toml::from_str::<InfluxToGraphiteConfig>("tag_suport = true")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `tag_suport`"), "{e}");
    let e = toml::from_str::<InfluxToGraphiteConfig>("bool_mode = \"yes\"")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown variant `yes`, expected `number` or `skip`"),
        "{e}"
    );
}

#[test]
fn segment_encoder_is_idempotent_on_its_output() {
    let e = SegmentEncoder::new(Encoding::Idna, true);
    for (input, encoded) in [
        ("cpu", "cpu"),
        ("web 01", "web%2001"),
        ("1.2.3.4", "1%2E2%2E3%2E4"),
        ("café", "xn--caf-dma"),
        ("/var", "%2Fvar"),
        ("50%", "50%25"),
    ] {
        assert_eq!(e.encode(input).unwrap(), encoded, "{input}");
        assert!(e.is_encoded(encoded), "{encoded} is an encoder output");
        assert_eq!(e.encode(encoded).unwrap() == encoded, e.is_safe(encoded));
    }
    assert!(!e.is_encoded("web 01"));
    assert!(!e.is_encoded("50%"));
    assert!(!e.is_encoded("/var"));
    assert!(
        !e.is_encoded("%2e"),
        "lower-case escapes are not what the encoder writes"
    );
}

// ---- properties ------------------------------------------------------------------------------

/// Text that line protocol can carry in a tag value or field key: no newline, no trailing
/// backslash (the parser keeps `\` literally unless it escapes `,`, `=` or space).
fn lp_text() -> impl Strategy<Value = String> {
    "[^\n\r\\\\]{1,20}"
}

/// Escapes a tag value / field key for line protocol.
fn escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if matches!(c, ',' | '=' | ' ') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

proptest! {
    /// Every line has exactly three space-separated tokens and no empty path segment, and
    /// decoding each segment gives back what the point held.
    #[test]
    fn segments_decode_to_the_point(host in lp_text(), field in lp_text(), value in -1e9f64..1e9) {
        prop_assume!(field != VALUE_FIELD);
        let conv = template("host.measurement.field");
        let line = format!("m,host={} {}={value}", escape(&host), escape(&field));
        // Control characters can trip line protocol itself (a tab is a separator there).
        let Ok(point) = parse_line(&line) else { return Ok(()) };
        let host = point.tag("host").unwrap().as_str().into_owned();
        let field = point.fields[0].0.as_str().into_owned();
        let mut buf = Vec::new();
        let w = conv.write_point(&point, T, &mut buf);
        let text = String::from_utf8(buf).unwrap();
        let expect_ok = metric_name::encode(&host).is_ok() && metric_name::encode(&field).is_ok();
        prop_assert_eq!(w.lines == 1, expect_ok, "{:?} -> {:?}", line, text);
        if expect_ok {
            let tokens: Vec<&str> = text.trim_end_matches('\n').split(' ').collect();
            prop_assert_eq!(tokens.len(), 3);
            let segments: Vec<String> = tokens[0]
                .split('.')
                .map(|s| metric_name::decode(s).unwrap().into_owned())
                .collect();
            // nameprep may fold case etc.; compare against what the encoder keeps.
            let canon = |s: &str| {
                metric_name::decode(&metric_name::encode(s).unwrap()).unwrap().into_owned()
            };
            prop_assert_eq!(segments, vec![canon(&host), "m".to_owned(), canon(&field)]);
            prop_assert_eq!(tokens[1].parse::<f64>().unwrap(), value);
        } else {
            prop_assert_eq!(text, "");
            prop_assert_eq!(w.skipped.get(SkipReason::Unencodable), 1);
        }
    }

    /// Tagged series always have the shape carbon accepts: non-empty keys and values, no
    /// `;` inside either, no value starting with `~`, keys sorted.
    #[test]
    fn tagged_series_are_valid(tags in proptest::collection::btree_map(lp_text(), lp_text(), 0..6)) {
        let line = format!(
            "m{} f=1",
            tags.iter().map(|(k, v)| format!(",{}={}", escape(k), escape(v))).collect::<String>()
        );
        let Ok(point) = parse_line(&line) else { return Ok(()) };
        let mut buf = Vec::new();
        let w = tagged().write_point(&point, T, &mut buf);
        let text = String::from_utf8(buf).unwrap();
        if w.lines == 1 {
            let path = text.split(' ').next().unwrap();
            let mut parts = path.split(';');
            prop_assert_eq!(parts.next(), Some("m.f"));
            let pairs: Vec<(&str, &str)> = parts.map(|p| p.split_once('=').unwrap()).collect();
            prop_assert!(pairs.windows(2).all(|w| w[0].0 <= w[1].0), "{}", path);
            for (k, v) in pairs {
                prop_assert!(!k.is_empty() && !v.is_empty() && !v.starts_with('~'));
                prop_assert!(!k.contains(['!', '^', '=', ' ']) && !v.contains(' '));
            }
        }
    }
}
