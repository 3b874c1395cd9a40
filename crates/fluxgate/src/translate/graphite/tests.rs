// Table-driven tests spell their rows as tuples.
#![allow(clippy::type_complexity)]

use std::borrow::Cow;

use proptest::prelude::*;

use super::*;

fn config(templates: &[&str], tags: &[&str], separator: &str) -> GraphiteTemplateConfig {
    GraphiteTemplateConfig {
        separator: separator.to_owned(),
        templates: templates.iter().map(|t| (*t).to_owned()).collect(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn set(templates: &[&str], tags: &[&str], separator: &str) -> TemplateSet {
    TemplateSet::new(&config(templates, tags, separator)).expect("valid templates")
}

fn config_error(templates: &[&str], tags: &[&str]) -> String {
    TemplateSet::new(&config(templates, tags, "."))
        .expect_err("configuration should be refused")
        .to_string()
}

type Triple = (String, Vec<(String, String)>, String);

fn triple(m: &str, tags: &[(&str, &str)], field: &str) -> Triple {
    let mut tags: Vec<(String, String)> = tags
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tags.sort();
    (m.to_owned(), tags, field.to_owned())
}

fn apply(set: &TemplateSet, name: &str) -> Triple {
    let a = set.apply(name, &[]).expect("name translates");
    (a.measurement, a.tags, a.field)
}

fn line(set: &TemplateSet, name: &str, extra: &[(&str, &str)], value: f64, ts: i64) -> String {
    let mut out = Vec::new();
    set.translator()
        .write_point(name, extra, value, ts, &mut out)
        .expect("point translates");
    String::from_utf8(out).expect("utf-8 output")
}

const T: i64 = 1_435_077_219_000_000_000;

// ---------------------------------------------------------------------------------------------
// PROTOCOLS.md §7 and DESIGN.md examples.

#[test]
fn protocols_examples() {
    let s = set(&[".host.resource.measurement*"], &[], ".");
    assert_eq!(
        apply(&s, "servers.localhost.cpu.loadavg.10"),
        triple(
            "loadavg.10",
            &[("host", "localhost"), ("resource", "cpu")],
            "value"
        )
    );
    let s = set(&[".host.measurement.cpu.measurement"], &[], "_");
    assert_eq!(
        apply(&s, "servers.localhost.cpu.idle.user"),
        triple(
            "cpu_user",
            &[("cpu", "idle"), ("host", "localhost")],
            "value"
        )
    );
}

#[test]
fn design_config_example() {
    let s = set(
        &["servers.* .dc.host.measurement.field*", "measurement*"],
        &["source=graphite"],
        ".",
    );
    assert_eq!(
        line(
            &s,
            "servers.dc1.host0042.cpu.user",
            &[],
            12.5,
            1_700_000_000_000_000_000
        ),
        "cpu,dc=dc1,host=host0042,source=graphite user=12.5 1700000000000000000\n"
    );
    assert_eq!(
        line(&s, "stats.counters.x", &[], 12.0, 1),
        "stats.counters.x,source=graphite value=12 1\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Ported from influxdata/influxdb services/graphite/parser_test.go.

#[test]
fn influx_template_apply_table() {
    // TestTemplateApply: (test, input, template, measurement, tags). Applied without global tags.
    let cases: &[(&str, &str, &str, &str, &[(&str, &str)])] = &[
        ("metric only", "cpu", "measurement", "cpu", &[]),
        (
            "metric with single series",
            "cpu.server01",
            "measurement.hostname",
            "cpu",
            &[("hostname", "server01")],
        ),
        (
            "metric with multiple series",
            "cpu.us-west.server01",
            "measurement.region.hostname",
            "cpu",
            &[("hostname", "server01"), ("region", "us-west")],
        ),
        (
            "metric with multiple tags",
            "server01.example.org.cpu.us-west",
            "hostname.hostname.hostname.measurement.region",
            "cpu",
            &[("hostname", "server01.example.org"), ("region", "us-west")],
        ),
        ("ignore unnamed", "foo.cpu", "measurement", "foo", &[]),
        (
            "name shorter than template",
            "foo",
            "measurement.A.B.C",
            "foo",
            &[],
        ),
        (
            "wildcard measurement at end",
            "prod.us-west.server01.cpu.load",
            "env.zone.host.measurement*",
            "cpu.load",
            &[("env", "prod"), ("host", "server01"), ("zone", "us-west")],
        ),
        (
            "skip fields",
            "ignore.us-west.ignore-this-too.cpu.load",
            ".zone..measurement*",
            "cpu.load",
            &[("zone", "us-west")],
        ),
        (
            "conjoined fields",
            "prod.us-west.server01.cpu.util.idle.percent",
            "env.zone.host.measurement.measurement.field*",
            "cpu.util",
            &[("env", "prod"), ("host", "server01"), ("zone", "us-west")],
        ),
    ];
    for (test, input, template, measurement, tags) in cases {
        let s = set(&[template], &[], ".");
        let (m, t, _) = apply(&s, input);
        assert_eq!(m, *measurement, "{test}");
        assert_eq!(t, triple("", tags, "").1, "{test}");
    }
    // "conjoined fields" also captures the field.
    let s = set(&["env.zone.host.measurement.measurement.field*"], &[], ".");
    assert_eq!(
        apply(&s, "prod.us-west.server01.cpu.util.idle.percent").2,
        "idle.percent"
    );
    // "no metric": an empty template.
    assert_eq!(
        config_error(&[""], &[]),
        "graphite templates[0]: missing template (the entry is blank)"
    );
}

#[test]
fn influx_parse_missing_measurement() {
    assert_eq!(
        config_error(&["a.b.c"], &[]),
        "graphite templates[0]: no measurement in template \"a.b.c\": \
         it needs a `measurement` or `measurement*` element"
    );
}

#[test]
fn influx_parse_table() {
    // TestParse: the cases about templates; the value/timestamp syntax cases belong to the
    // plaintext parser.
    let s = set(&["measurement.foo.bar"], &[], ".");
    assert_eq!(
        line(&s, "cpu.foo.bar", &[], 50.0, T),
        "cpu,bar=bar,foo=foo value=50 1435077219000000000\n"
    );
    let s = set(&["measurement"], &[], ".");
    assert_eq!(
        line(&s, "cpu", &[], 50.554, T),
        "cpu value=50.554 1435077219000000000\n"
    );
    // "measurement* and field* (invalid)": InfluxDB fails every point; refused up front here.
    assert_eq!(
        config_error(&["env.zone.host.measurement*.field*"], &[]),
        "graphite templates[0]: either 'field*' or 'measurement*' can be used in each template \
         (but not both together): \"env.zone.host.measurement*.field*\""
    );
}

#[test]
fn influx_parse_nan() {
    let s = set(&["measurement*"], &[], ".");
    let mut out = Vec::new();
    let err = s
        .translator()
        .write_point("servers.localhost.cpu_load", &[], f64::NAN, T, &mut out)
        .unwrap_err();
    assert_eq!(err, TranslateError::NaN);
    assert!(out.is_empty());
}

/// The TestFilterMatch*/TestParse* cases comparing a whole point: (templates, separator, global
/// tags, input name, expected line).
#[test]
fn influx_filter_match_points() {
    let cases: &[(&str, &[&str], &str, &[&str], &str, &str)] = &[
        (
            "TestFilterMatchDefault",
            &["servers.localhost .host.measurement*"],
            ".",
            &[],
            "miss.servers.localhost.cpu_load",
            "miss.servers.localhost.cpu_load value=11",
        ),
        (
            "TestFilterMatchMultipleMeasurement",
            &["servers.localhost .host.measurement.measurement*"],
            ".",
            &[],
            "servers.localhost.cpu.cpu_load.10",
            "cpu.cpu_load.10,host=localhost value=11",
        ),
        (
            "TestFilterMatchMultipleMeasurementSeparator",
            &["servers.localhost .host.measurement.measurement*"],
            "_",
            &[],
            "servers.localhost.cpu.cpu_load.10",
            "cpu_cpu_load_10,host=localhost value=11",
        ),
        (
            "TestFilterMatchSingle",
            &["servers.localhost .host.measurement*"],
            ".",
            &[],
            "servers.localhost.cpu_load",
            "cpu_load,host=localhost value=11",
        ),
        (
            "TestParseNoMatch",
            &["servers.*.cpu .host.measurement.cpu.measurement"],
            ".",
            &[],
            "servers.localhost.memory.VmallocChunk",
            "servers.localhost.memory.VmallocChunk value=11",
        ),
        (
            "TestFilterMatchWildcard",
            &["servers.* .host.measurement*"],
            ".",
            &[],
            "servers.localhost.cpu_load",
            "cpu_load,host=localhost value=11",
        ),
        (
            "TestFilterMatchExactBeforeWildcard",
            &[
                "servers.* .wrong.measurement*",
                "servers.localhost .host.measurement*",
            ],
            ".",
            &[],
            "servers.localhost.cpu_load",
            "cpu_load,host=localhost value=11",
        ),
        (
            "TestFilterMatchMostLongestFilter",
            &[
                "*.* .wrong.measurement*",
                "servers.* .wrong.measurement*",
                "servers.localhost .wrong.measurement*",
                "servers.localhost.cpu .host.resource.measurement*",
                "*.localhost .wrong.measurement*",
            ],
            ".",
            &[],
            "servers.localhost.cpu.cpu_load",
            "cpu_load,host=localhost,resource=cpu value=11",
        ),
        (
            "TestFilterMatchMultipleWildcards",
            &[
                "*.* .wrong.measurement*",
                "servers.* .host.measurement*",
                "servers.localhost .wrong.measurement*",
                "*.localhost .wrong.measurement*",
            ],
            ".",
            &[],
            "servers.server01.cpu_load",
            "cpu_load,host=server01 value=11",
        ),
        (
            "TestParseDefaultTags",
            &["servers.localhost .host.measurement*"],
            ".",
            &["region=us-east", "zone=1c", "host=should not set"],
            "servers.localhost.cpu_load",
            "cpu_load,host=localhost,region=us-east,zone=1c value=11",
        ),
        (
            "TestParseDefaultTemplateTags",
            &["servers.localhost .host.measurement* zone=1c"],
            ".",
            &["region=us-east", "host=should not set"],
            "servers.localhost.cpu_load",
            "cpu_load,host=localhost,region=us-east,zone=1c value=11",
        ),
        (
            "TestParseDefaultTemplateTagsOverridGlobal",
            &["servers.localhost .host.measurement* zone=1c,region=us-east"],
            ".",
            &["region=shot not be set", "host=should not set"],
            "servers.localhost.cpu_load",
            "cpu_load,host=localhost,region=us-east,zone=1c value=11",
        ),
        (
            "TestParseTemplateWhitespace",
            &["servers.localhost        .host.measurement*           zone=1c"],
            ".",
            &["region=us-east", "host=should not set"],
            "servers.localhost.cpu_load",
            "cpu_load,host=localhost,region=us-east,zone=1c value=11",
        ),
    ];
    for (test, templates, separator, tags, name, expected) in cases {
        let s = set(templates, tags, separator);
        assert_eq!(
            line(&s, name, &[], 11.0, T),
            format!("{expected} 1435077219000000000\n"),
            "{test}"
        );
    }
}

#[test]
fn influx_apply_template_table() {
    // TestApplyTemplate*: (test, templates, name, measurement, tags, field); separator `_`.
    let cases: &[(&str, &[&str], &str, &str, &[(&str, &str)], &str)] = &[
        (
            "TestApplyTemplate",
            &["current.* measurement.measurement"],
            "current.users",
            "current_users",
            &[],
            "value",
        ),
        (
            "TestApplyTemplateNoMatch",
            &["foo.bar measurement.measurement"],
            "current.users",
            "current.users",
            &[],
            "value",
        ),
        (
            "TestApplyTemplateSpecific",
            &[
                "current.* measurement.measurement",
                "current.*.* measurement.measurement.service",
            ],
            "current.users.facebook",
            "current_users",
            &[("service", "facebook")],
            "value",
        ),
        (
            "TestApplyTemplateSpecificIsNA",
            &[
                "current.* measurement.service",
                "current.*.*.test measurement.measurement.service",
            ],
            "current.users.facebook",
            "current",
            &[("service", "users")],
            "value",
        ),
        (
            "TestApplyTemplateTags",
            &["current.* measurement.measurement region=us-west"],
            "current.users",
            "current_users",
            &[("region", "us-west")],
            "value",
        ),
        (
            "TestApplyTemplateField",
            &["current.* measurement.measurement.field"],
            "current.users.logged_in",
            "current_users",
            &[],
            "logged_in",
        ),
    ];
    for (test, templates, name, measurement, tags, field) in cases {
        let s = set(templates, &[], "_");
        assert_eq!(apply(&s, name), triple(measurement, tags, field), "{test}");
    }
    // TestApplyTemplateFieldError: InfluxDB fails the points that reach the second `field`.
    assert_eq!(
        TemplateSet::new(&config(&["current.* measurement.field.field"], &[], "_"))
            .unwrap_err()
            .to_string(),
        "graphite templates[0]: 'field' can only be used once in each template: \
         \"measurement.field.field\""
    );
}

// Ported from services/graphite/config_test.go (Validate).
#[test]
fn influx_config_validation() {
    let refused: &[(&[&str], &[&str])] = &[
        (&[""], &[]),
        (&["     "], &[]),
        (&["a measurement b c"], &[]),
        (&["*measurement"], &[]),
        (&[".host.region"], &[]),
        (&[".server measurement*"], &[]),
        (&[".    .server measurement*"], &[]),
        (&["server* measurement*"], &[]),
        (&["*.server measurement* foo"], &[]),
        (&["*.server measurement* foo=bar="], &[]),
        (&["*.server measurement* foo=bar,"], &[]),
        (&["*.server measurement* ="], &[]),
        (&[], &["foo"]),
        (&[], &["foo=bar="]),
        (&[], &["foo=bar", ""]),
        (&[], &["="]),
        (&["foo measurement*", "foo .host.measurement"], &[]),
        (&["measurement*", ".host.measurement"], &[]),
    ];
    for (templates, tags) in refused {
        assert!(
            TemplateSet::new(&config(templates, tags, ".")).is_err(),
            "{templates:?} {tags:?} should be refused"
        );
    }
}

#[test]
fn config_error_messages() {
    let cases: &[(&[&str], &[&str], &str)] = &[
        (
            &["measurement", "  \t "],
            &[],
            "graphite templates[1]: missing template (the entry is blank)",
        ),
        (
            &["a measurement b c"],
            &[],
            "graphite templates[0]: invalid template format \"a measurement b c\": \
             expected `[filter] template [tag1=value1,tag2=value2]`",
        ),
        (
            &["measurement a=b c=d"],
            &[],
            "graphite templates[0]: invalid template format \"measurement a=b c=d\": \
             expected `[filter] template [tag1=value1,tag2=value2]`",
        ),
        (
            &["*measurement"],
            &[],
            "graphite templates[0]: no measurement in template \"*measurement\": \
             it needs a `measurement` or `measurement*` element",
        ),
        (
            &["measurement.field.host.field"],
            &[],
            "graphite templates[0]: 'field' can only be used once in each template: \
             \"measurement.field.host.field\"",
        ),
        (
            &["a measurement*", "b measurement*", "a .measurement*"],
            &[],
            "graphite templates[2]: duplicate filter \"a\", already used by templates[0]",
        ),
        (
            &["x measurement*", "measurement*", ".measurement"],
            &[],
            "graphite templates[2]: duplicate default template (no filter); \
             templates[1] is already the default",
        ),
        (
            &["a..b measurement*"],
            &[],
            "graphite templates[0]: filter \"a..b\" contains a blank section",
        ),
        (
            &["a.b* measurement*"],
            &[],
            "graphite templates[0]: invalid filter wildcard section in \"a.b*\": \
             `*` must be a whole section",
        ),
        (
            &["a measurement* x=1,y"],
            &[],
            "graphite templates[0]: invalid tag \"y\": \
             expected key=value with a non-empty key and value",
        ),
        (
            &[],
            &["dc=1", "=x"],
            "graphite tags[1]: invalid tag \"=x\": \
             expected key=value with a non-empty key and value",
        ),
        (
            &[],
            &["dc=a\\"],
            "graphite tags[0]: tag \"dc=a\\\\\" cannot be written as line protocol: \
             a backslash at the end would escape the delimiter after it",
        ),
        (
            &["measurement.ho\\"],
            &[],
            "graphite templates[0]: tag \"ho\\\\\" cannot be written as line protocol: \
             a backslash at the end would escape the delimiter after it",
        ),
        // Template errors come before global tag errors, as in InfluxDB.
        (
            &["nope"],
            &["bad"],
            "graphite templates[0]: no measurement in template \"nope\": \
             it needs a `measurement` or `measurement*` element",
        ),
    ];
    for (templates, tags, message) in cases {
        assert_eq!(config_error(templates, tags), *message, "{templates:?}");
    }
}

#[test]
fn template_line_forms() {
    // One token: the default template. Two: filter + template, or template + tags.
    let s = set(&[".host.measurement* dc=x"], &[], ".");
    assert_eq!(
        apply(&s, "a.h.m"),
        triple("m", &[("dc", "x"), ("host", "h")], "value")
    );
    let s = set(&["a.b measurement"], &[], ".");
    assert_eq!(apply(&s, "a.b.c"), triple("a", &[], "value"));
    assert_eq!(apply(&s, "a.c.c"), triple("a.c.c", &[], "value"));
    // Template tags: later duplicates win.
    let s = set(&["measurement k=1,k=2"], &[], ".");
    assert_eq!(apply(&s, "m"), triple("m", &[("k", "2")], "value"));
    // Global tags: later duplicates win.
    let s = set(&[], &["k=1", "k=2"], ".");
    assert_eq!(apply(&s, "m"), triple("m", &[("k", "2")], "value"));
    // An empty separator means `.`, as InfluxDB's WithDefaults does.
    let s = set(&["measurement.measurement"], &[], "");
    assert_eq!(s.separator(), ".");
    assert_eq!(apply(&s, "a.b"), triple("a.b", &[], "value"));
}

// ---------------------------------------------------------------------------------------------
// Golden cases recorded from a real influxd 1.6.7 graphite service: each name sent as
// `name <i> <ts>`, read back with `SELECT * FROM /.*/ GROUP BY *`. `None`: influxd refused it.

type Golden<'a> = (
    &'a str,
    Option<(&'a str, &'a [(&'a str, &'a str)], &'a str)>,
);

fn golden_cases() -> Vec<(
    &'static [&'static str],
    &'static [&'static str],
    &'static str,
    Vec<Golden<'static>>,
)> {
    vec![
        // Template tags and captured segments with the same key are joined.
        (
            &["servers.* .host.measurement* host=x"],
            &["host=g", "dc=g"],
            ".",
            vec![
                (
                    "servers.localhost.cpu",
                    Some(("cpu", &[("dc", "g"), ("host", "x.localhost")], "value")),
                ),
                (
                    "other.thing",
                    Some(("other.thing", &[("dc", "g"), ("host", "g")], "value")),
                ),
            ],
        ),
        // A `*` node inherits its parent's template only if the parent came first.
        (
            &[
                "servers.*.cpu .a.host.measurement*",
                "servers .a.measurement*",
            ],
            &[],
            ".",
            vec![
                (
                    "servers.foo.mem.x",
                    Some(("servers.foo.mem.x", &[], "value")),
                ),
                ("servers.foo", Some(("servers.foo", &[], "value"))),
                (
                    "servers.foo.cpu.load",
                    Some(("load", &[("a", "foo"), ("host", "cpu")], "value")),
                ),
                ("servers", Some(("servers", &[], "value"))),
            ],
        ),
        (
            &[
                "servers .a.measurement*",
                "servers.*.cpu .a.host.measurement*",
            ],
            &[],
            ".",
            vec![
                (
                    "servers.foo.mem.x",
                    Some(("mem.x", &[("a", "foo")], "value")),
                ),
                (
                    "servers.foo",
                    Some(("servers.foo", &[("a", "foo")], "value")),
                ),
                (
                    "servers.foo.cpu.load",
                    Some(("load", &[("a", "foo"), ("host", "cpu")], "value")),
                ),
                ("servers", Some(("servers", &[], "value"))),
            ],
        ),
        // No backtracking.
        (
            &[
                "servers .a.measurement*",
                "servers.foo.cpu .a.b.measurement*",
                "*.bar .w.measurement*",
            ],
            &[],
            ".",
            vec![
                ("servers.foo.mem", Some(("servers.foo.mem", &[], "value"))),
                (
                    "servers.foo.cpu.x",
                    Some(("x", &[("a", "foo"), ("b", "cpu")], "value")),
                ),
                ("servers.bar.z", Some(("z", &[("a", "bar")], "value"))),
                ("other.bar.z", Some(("z", &[("w", "bar")], "value"))),
                ("servers.baz.q", Some(("q", &[("a", "baz")], "value"))),
            ],
        ),
        // An empty captured value blocks the global tag and is then left out.
        (
            &["measurement.host.region"],
            &["host=g", "zz=z"],
            ".",
            vec![
                (
                    "cpu..east",
                    Some(("cpu", &[("region", "east"), ("zz", "z")], "value")),
                ),
                (
                    "cpu.h.east",
                    Some((
                        "cpu",
                        &[("host", "h"), ("region", "east"), ("zz", "z")],
                        "value",
                    )),
                ),
                ("cpu", Some(("cpu", &[("host", "g"), ("zz", "z")], "value"))),
                (
                    ".h.r",
                    Some((
                        ".h.r",
                        &[("host", "h"), ("region", "r"), ("zz", "z")],
                        "value",
                    )),
                ),
            ],
        ),
        (
            &["x.* measurement.host host=t"],
            &[],
            ".",
            vec![
                ("x.", Some(("x", &[("host", "t.")], "value"))),
                ("x.y", Some(("x", &[("host", "t.y")], "value"))),
                ("x.y.z", Some(("x", &[("host", "t.y")], "value"))),
            ],
        ),
        // `field*` overrides `field` when it is reached, even with an empty tail.
        (
            &["measurement.field.field*"],
            &[],
            ".",
            vec![
                ("cpu.a.b.c", Some(("cpu", &[], "b.c"))),
                ("cpu.a", Some(("cpu", &[], "a"))),
                ("cpu", Some(("cpu", &[], "value"))),
                ("cpu..", Some(("cpu", &[], "value"))),
                ("cpu.a.", Some(("cpu", &[], "value"))),
            ],
        ),
        (
            &[
                ".host.measurement.cpu.measurement",
                "m.* measurement.measurement*",
                "f.* measurement.field*",
                "t.* measurement.t.t.t",
            ],
            &[],
            "_",
            vec![
                (
                    "servers.localhost.cpu.idle.user",
                    Some((
                        "cpu_user",
                        &[("cpu", "idle"), ("host", "localhost")],
                        "value",
                    )),
                ),
                ("m.a.b.c", Some(("m_a_b_c", &[], "value"))),
                ("f.a.b.c", Some(("f", &[], "a_b_c"))),
                ("t.a.b.c", Some(("t", &[("t", "a_b_c")], "value"))),
                ("t.a..c", Some(("t", &[("t", "a__c")], "value"))),
            ],
        ),
        (
            &["measurement.field"],
            &[],
            ".",
            vec![
                ("cpu.", Some(("cpu", &[], "value"))),
                (".x", Some((".x", &[], "x"))),
                ("..", Some(("..", &[], "value"))),
                ("a.b.c", Some(("a", &[], "b"))),
            ],
        ),
        (
            &["measurement.host.field"],
            &[],
            ".",
            vec![
                ("c=p.h\\\\x.f", Some(("c=p", &[("host", "h\\\\x")], "f"))),
                ("cp\\u.h.f", Some(("cp\\u", &[("host", "h")], "f"))),
            ],
        ),
        (
            &[
                "*.* .wrong.measurement*",
                "servers.* .host.measurement*",
                "servers.localhost .wrong.measurement*",
                "servers.localhost.cpu .host.resource.measurement*",
                "*.localhost .wrong.measurement*",
                "a .measurement* t=a",
            ],
            &[],
            ".",
            vec![
                (
                    "servers.localhost.cpu.cpu_load",
                    Some((
                        "cpu_load",
                        &[("host", "localhost"), ("resource", "cpu")],
                        "value",
                    )),
                ),
                (
                    "servers.localhost.mem.x",
                    Some(("mem.x", &[("wrong", "localhost")], "value")),
                ),
                (
                    "servers.server01.cpu_load",
                    Some(("cpu_load", &[("host", "server01")], "value")),
                ),
                (
                    "x.localhost.y",
                    Some(("y", &[("wrong", "localhost")], "value")),
                ),
                ("x.y.z", Some(("z", &[("wrong", "y")], "value"))),
                ("a", Some(("a", &[("t", "a")], "value"))),
                ("a.b", Some(("b", &[("t", "a")], "value"))),
                ("b", Some(("b", &[], "value"))),
                (
                    "*.localhost.q",
                    Some(("q", &[("wrong", "localhost")], "value")),
                ),
                ("servers.*.r", Some(("r", &[("host", "*")], "value"))),
            ],
        ),
        (
            &["* .measurement* t=star"],
            &[],
            ".",
            vec![
                ("foo", Some(("foo", &[("t", "star")], "value"))),
                ("foo.bar", Some(("bar", &[("t", "star")], "value"))),
            ],
        ),
        // Elements after a `*` element are never reached.
        (
            &[
                "measurement*.host",
                "x.* measurement.field*.host",
                "y.* host.measurement*.host",
            ],
            &[],
            ".",
            vec![
                ("a.b.c", Some(("a.b.c", &[], "value"))),
                ("x.b.c.d", Some(("x", &[], "b.c.d"))),
                ("y.h.c.d", Some(("h.c.d", &[("host", "y")], "value"))),
            ],
        ),
        // Repeated tag elements, template tags and global tags together.
        (
            &[
                "measurement.a.b.a.b a=1,c=3",
                "q.* measurement.measurement.a.measurement",
            ],
            &["c=g", "d=g", "a=g"],
            ".",
            vec![
                (
                    "m.1.2.3.4.5",
                    Some((
                        "m",
                        &[("a", "1.1.3"), ("b", "2.4"), ("c", "3"), ("d", "g")],
                        "value",
                    )),
                ),
                (
                    "m.1",
                    Some(("m", &[("a", "1.1"), ("c", "3"), ("d", "g")], "value")),
                ),
                (
                    "m",
                    Some(("m", &[("a", "1"), ("c", "3"), ("d", "g")], "value")),
                ),
                (
                    "q.w.e.r",
                    Some(("q.w.r", &[("a", "e"), ("c", "g"), ("d", "g")], "value")),
                ),
                (
                    "q.w.e.r.t.y",
                    Some(("q.w.r", &[("a", "e"), ("c", "g"), ("d", "g")], "value")),
                ),
            ],
        ),
    ]
}

#[test]
fn golden_influxd_1_6_7() {
    for (templates, tags, separator, names) in golden_cases() {
        let s = set(templates, tags, separator);
        for (name, expected) in names {
            let (m, t, f) = expected.expect("only accepted names are recorded");
            assert_eq!(apply(&s, name), triple(m, t, f), "{templates:?} {name}");
        }
    }
}

#[test]
fn field_used_twice_only_counts_before_a_wildcard() {
    // InfluxDB never reaches elements after `measurement*`/`field*`, so no error there.
    let s = set(&["measurement.field.field*.field"], &[], ".");
    assert_eq!(apply(&s, "m.a.b.c.d"), triple("m", &[], "b.c.d"));
}

#[test]
fn matched_template_is_reported() {
    let s = set(
        &["a.* .measurement*", "b .measurement*", "measurement.x"],
        &[],
        ".",
    );
    let which = |name| s.apply(name, &[]).unwrap().template;
    assert_eq!(which("a.b.c"), Some(0));
    assert_eq!(which("b"), Some(1));
    assert_eq!(which("c.d"), Some(2));
    let s = set(&["a.* .measurement*"], &[], ".");
    assert_eq!(s.apply("z", &[]).unwrap().template, None);
}

// ---------------------------------------------------------------------------------------------
// Graphite tagged series.

#[test]
fn series_tags_win_and_merge_in_key_order() {
    let s = set(
        &["servers.* .host.measurement* dc=tmpl"],
        &["env=prod", "zone=g"],
        ".",
    );
    assert_eq!(
        line(
            &s,
            "servers.web1.cpu",
            &[("dc", "series"), ("host", "h"), ("a", "1"), ("zz", "2")],
            1.5,
            7
        ),
        "cpu,a=1,dc=series,env=prod,host=h,zone=g,zz=2 value=1.5 7\n"
    );
    // Duplicate keys: the last one given wins; empty keys or values are ignored.
    assert_eq!(
        line(
            &s,
            "servers.web1.cpu",
            &[("k", "1"), ("", "x"), ("k", "2"), ("e", ""), ("env", "")],
            1.0,
            7
        ),
        "cpu,dc=tmpl,env=prod,host=web1,k=2,zone=g value=1 7\n"
    );
    let a = s
        .apply("servers.web1.cpu", &[("b", "2"), ("a", "1")])
        .unwrap();
    assert_eq!(
        a.tags,
        triple(
            "",
            &[
                ("a", "1"),
                ("b", "2"),
                ("dc", "tmpl"),
                ("env", "prod"),
                ("host", "web1"),
                ("zone", "g")
            ],
            ""
        )
        .1
    );
}

// ---------------------------------------------------------------------------------------------
// Line protocol output.

#[test]
fn escaping() {
    let s = set(&["measurement.host.field"], &["note=a b,c"], ".");
    assert_eq!(
        line(&s, "c,p u=x.h o,s=t.f=,x", &[("k y", "v=,w")], 1.0, 1),
        "c\\,p\\ u=x,host=h\\ o\\,s\\=t,k\\ y=v\\=\\,w,note=a\\ b\\,c f\\=\\,x=1 1\n"
    );
    // Inner backslashes are kept as they are.
    assert_eq!(
        line(&s, "c\\u.h\\\\x.f\\\\x", &[], 1.0, 1),
        "c\\u,host=h\\\\x,note=a\\ b\\,c f\\\\x=1 1\n"
    );
    // InfluxDB's tag scanner takes any byte after a backslash as escaped.
    assert_eq!(
        line(&s, "m.a\\,b.f", &[("k\\=", "v\\ w")], 1.0, 1),
        "m,host=a\\\\,b,k\\\\==v\\\\ w,note=a\\ b\\,c f=1 1\n"
    );
    // A measurement is unescaped once more by InfluxDB, as its graphite listener does.
    assert_eq!(
        line(&s, "m\\,x.h.f", &[], 1.0, 1),
        "m\\,x,host=h,note=a\\ b\\,c f=1 1\n"
    );
    assert_eq!(s.apply("m\\,x\\ y.h.f", &[]).unwrap().measurement, "m,x y");
    // Its field scanner pairs backslashes: an even run before a delimiter is fine.
    assert_eq!(
        line(&s, "m.h.f\\\\,x", &[], 1.0, 1),
        "m,host=h,note=a\\ b\\,c f\\\\\\,x=1 1\n"
    );
}

#[test]
fn unrepresentable_elements() {
    let s = set(&["measurement.host.field"], &[], ".");
    let mut t = s.translator();
    let mut out = b"prefix\n".to_vec();
    let trailing = "a backslash at the end would escape the delimiter after it";
    let cases: &[(&str, &str, &str)] = &[
        (
            "#cpu.h.f",
            "measurement",
            "a measurement starting with `#` would be read as a comment line",
        ),
        (
            "\tcpu.h.f",
            "measurement",
            "a tab or NUL at the start of a line is skipped as whitespace",
        ),
        ("cpu\\.h.f", "measurement", trailing),
        (
            "a\\\\,b.h.f",
            "measurement",
            "backslashes before a comma or space in a measurement make InfluxDB file the \
             series and its fields apart",
        ),
        ("cpu.h\\.f", "tag value", trailing),
        ("cpu.h.f\\", "field key", trailing),
        ("cpu.h.f\\\\", "field key", trailing),
        (
            "cpu.h.f\\,x",
            "field key",
            "an odd run of backslashes before a comma, space or equals sign in a field key would \
             escape it",
        ),
        (
            "cpu.h.f\\\\\\=x",
            "field key",
            "an odd run of backslashes before a comma, space or equals sign in a field key would \
             escape it",
        ),
        (
            "cpu.h.f\\\"",
            "field key",
            "a backslash before a double quote in a field key would be dropped",
        ),
        (
            "cpu.h.f\nx",
            "field key",
            "line protocol has no escape for a newline",
        ),
    ];
    for (name, element, reason) in cases {
        let err = t.write_point(name, &[], 1.0, 1, &mut out).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{element} from {name:?} cannot be written as line protocol: {reason}")
        );
        assert_eq!(err.reason(), "unrepresentable");
        assert_eq!(out, b"prefix\n", "output untouched after {name:?}");
        assert_eq!(t.apply(name, &[]).unwrap_err(), err);
    }
    // A `#` inside a measurement is fine; so is one at the start of a tag value.
    assert_eq!(line(&s, "c#.#h.#f", &[], 1.0, 1), "c#,host=#h #f=1 1\n");
    let err = t
        .write_point("cpu.h.f", &[("k\\", "v")], 1.0, 1, &mut out)
        .unwrap_err();
    assert!(err.to_string().starts_with("tag key from"), "{err}");
}

#[test]
fn values_and_timestamps() {
    let s = set(&[], &[], ".");
    let cases: &[(f64, i64, &str)] = &[
        (12.0, 0, "m value=12 0\n"),
        (-0.0, -1, "m value=-0 -1\n"),
        (0.1, 1, "m value=0.1 1\n"),
        (1e300, 2, "m value=1e300 2\n"),
        (-2.5e-8, 3, "m value=-2.5e-8 3\n"),
        (5e-324, i64::MAX, "m value=5e-324 9223372036854775807\n"),
        (
            f64::MAX,
            i64::MIN,
            "m value=1.7976931348623157e308 -9223372036854775808\n",
        ),
        (123_456_789.125, 4, "m value=123456789.125 4\n"),
        (1e15, 5, "m value=1000000000000000 5\n"),
        (-9_007_199_254_740_991.0, 6, "m value=-9007199254740991 6\n"),
        (9_007_199_254_740_992.0, 7, "m value=9007199254740992 7\n"),
        (1e16, 8, "m value=1e16 8\n"),
    ];
    for &(value, ts, expected) in cases {
        assert_eq!(line(&s, "m", &[], value, ts), expected);
        let written: f64 = expected.split(['=', ' ']).nth(2).unwrap().parse().unwrap();
        assert_eq!(written.to_bits(), value.to_bits(), "{value} round-trips");
    }
}

#[test]
fn nan_infinite_and_empty_name() {
    let s = set(&[], &[], ".");
    let mut t = s.translator();
    let mut out = b"x".to_vec();
    let cases = [
        (f64::NAN, "m", TranslateError::NaN, "value is NaN", "nan"),
        (
            f64::INFINITY,
            "m",
            TranslateError::Infinite { negative: false },
            "value is +infinite",
            "infinite",
        ),
        (
            f64::NEG_INFINITY,
            "m",
            TranslateError::Infinite { negative: true },
            "value is -infinite",
            "infinite",
        ),
        (
            1.0,
            "",
            TranslateError::EmptyName,
            "empty metric name",
            "empty_name",
        ),
    ];
    for (value, name, error, message, reason) in cases {
        let err = t.write_point(name, &[], value, 0, &mut out).unwrap_err();
        assert_eq!(err, error);
        assert_eq!(err.to_string(), message);
        assert_eq!(err.reason(), reason);
        assert_eq!(out, b"x");
    }
}

#[test]
fn appends_to_existing_output_and_reuses_scratch() {
    let s = set(&["servers.* .host.measurement.field"], &[], ".");
    let mut t = s.translator();
    let mut out = Vec::new();
    for i in 0..3 {
        t.write_point(
            "servers.h.cpu.user",
            &[],
            f64::from(i),
            i64::from(i),
            &mut out,
        )
        .unwrap();
    }
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "cpu,host=h user=0 0\ncpu,host=h user=1 1\ncpu,host=h user=2 2\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Segment decoding.

/// Percent-decoding as a stand-in for the metric-name decoder.
fn percent_decode(segment: &str) -> Result<Cow<'_, str>, String> {
    if !segment.contains('%') {
        return Ok(Cow::Borrowed(segment));
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment
                .get(i + 1..i + 3)
                .ok_or_else(|| format!("truncated escape at byte {i}"))?;
            let byte = u8::from_str_radix(hex, 16)
                .map_err(|_| format!("bad escape %{hex} at byte {i}"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| "not UTF-8".to_owned())
}

#[test]
fn decoder_applies_to_every_captured_segment() {
    let s = set(
        &["servers.* .host.measurement.field*", "x.* measurement.t.t"],
        &[],
        "_",
    )
    .with_decoder(percent_decode);
    assert_eq!(
        line(
            &s,
            "servers.m%C3%BCnchen%2Ede.cpu%20load.a%2Eb.c",
            &[],
            1.0,
            1
        ),
        "cpu\\ load,host=münchen.de a.b_c=1 1\n"
    );
    assert_eq!(
        apply(&s, "x.a%2C.b%3D"),
        triple("x", &[("t", "a,_b=")], "value")
    );
    // The whole-name fallback decodes segment by segment and joins them with `.`.
    let s = set(&["..measurement"], &[], "_").with_decoder(percent_decode);
    assert_eq!(apply(&s, "x%2Ey.z"), triple("x.y.z", &[], "value"));
    // Filters see the name as sent.
    let s = set(&["a%2Eb .measurement*"], &[], ".").with_decoder(percent_decode);
    assert_eq!(apply(&s, "a%2Eb.c%2Ed"), triple("c.d", &[], "value"));
}

#[test]
fn decoder_errors() {
    let s = set(&["measurement.host"], &[], ".").with_decoder(percent_decode);
    let mut out = Vec::new();
    let err = s
        .translator()
        .write_point("cpu.h%zz", &[], 1.0, 1, &mut out)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot decode segment \"h%zz\" of \"cpu.h%zz\": bad escape %zz at byte 1"
    );
    assert_eq!(err.reason(), "name_decode");
    assert!(out.is_empty());
    // A decoded newline cannot be written.
    let err = s.apply("cpu.a%0Ab", &[]).unwrap_err();
    assert_eq!(err.reason(), "unrepresentable");
}

// ---------------------------------------------------------------------------------------------
// Configuration file.

#[test]
fn config_deserialises_with_defaults() {
    let c: GraphiteTemplateConfig = toml::from_str("").unwrap();
    assert_eq!(c, GraphiteTemplateConfig::default());
    assert_eq!(c.separator, ".");
    let c: GraphiteTemplateConfig = toml::from_str(
        r#"
        separator = "_"
        templates = ["servers.* .dc.host.measurement.field*", "measurement*"]
        tags = ["source=graphite"]
        "#,
    )
    .unwrap();
    assert_eq!(c.separator, "_");
    assert_eq!(c.templates.len(), 2);
    assert!(TemplateSet::new(&c).is_ok());
    let err = toml::from_str::<GraphiteTemplateConfig>("template = []").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `template`"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Properties.

/// InfluxDB 1.x's `models/points.go` reading back the shape `write_point` produces: lookbehind
/// escapes in `scanMeasurement`/`scanTagsKey`/`scanTagsValue`, pairing escapes in `scanFields`,
/// `scanTo` for the field key, then `unescapeMeasurement`/`unescapeTag` (sequential replaces) and
/// `escape.Unescape` for the field key. Panics where InfluxDB would refuse the line.
fn parse_influx_line(line: &str) -> (String, Vec<(String, String)>, String, String, String) {
    fn replace_codes(s: &[u8], codes: &[u8]) -> String {
        let mut s = String::from_utf8(s.to_vec()).unwrap();
        for &c in codes {
            s = s.replace(&format!("\\{}", c as char), &(c as char).to_string());
        }
        s
    }
    fn unescape(s: &[u8]) -> String {
        let mut out = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'\\' && i + 1 < s.len() && b",\" =".contains(&s[i + 1]) {
                out.push(s[i + 1]);
                i += 2;
                continue;
            }
            out.push(s[i]);
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    let line = line.strip_suffix('\n').expect("newline-terminated");
    assert!(!line.contains('\n'), "exactly one line");
    let b = line.as_bytes();
    assert!(
        !matches!(b[0], b' ' | b'\t' | 0 | b'#' | b','),
        "line start {line:?}"
    );
    let mut i = 0;
    loop {
        i += 1;
        assert!(i < b.len(), "missing fields in {line:?}");
        if b[i - 1] == b'\\' {
            continue;
        }
        if b[i] == b',' || b[i] == b' ' {
            break;
        }
    }
    let measurement = replace_codes(&b[..i], b", ");
    let mut tags = Vec::new();
    while b[i] == b',' {
        i += 1;
        let key_start = i;
        assert!(
            !matches!(b[i], b' ' | b',' | b'='),
            "missing tag key in {line:?}"
        );
        loop {
            i += 1;
            assert!(
                !((b[i] == b' ' || b[i] == b',') && b[i - 1] != b'\\'),
                "missing tag value in {line:?}"
            );
            if b[i] == b'=' && b[i - 1] != b'\\' {
                break;
            }
        }
        let key = &b[key_start..i];
        i += 1;
        let value_start = i;
        assert!(
            !matches!(b[i], b' ' | b','),
            "missing tag value in {line:?}"
        );
        loop {
            i += 1;
            assert!(
                !(b[i] == b'=' && b[i - 1] != b'\\'),
                "invalid tag format in {line:?}"
            );
            if (b[i] == b',' || b[i] == b' ') && b[i - 1] != b'\\' {
                break;
            }
        }
        tags.push((
            replace_codes(key, b", ="),
            replace_codes(&b[value_start..i], b", ="),
        ));
    }
    assert_eq!(b[i], b' ');
    let fields_start = i + 1;
    let (mut j, mut equals, mut commas) = (fields_start, 0, 0);
    while j < b.len() {
        if b[j] == b'\\' && j + 1 < b.len() {
            j += 2;
            continue;
        }
        match b[j] {
            b'=' => equals += 1,
            b',' => commas += 1,
            b' ' => break,
            _ => {}
        }
        j += 1;
    }
    assert_eq!((equals, commas), (1, 0), "invalid field format in {line:?}");
    let fields = &b[fields_start..j];
    let mut k = 0;
    while !(fields[k] == b'=' && (k == 0 || fields[k - 1] != b'\\')) {
        k += 1;
    }
    (
        measurement,
        tags,
        unescape(&fields[..k]),
        String::from_utf8(fields[k + 1..].to_vec()).unwrap(),
        line[j + 1..].to_owned(),
    )
}

/// A literal port of InfluxDB's parser.go (maps, sorted children, sort.Search, recursion),
/// used as an oracle for the flattened implementation.
mod go_model {
    use std::collections::{BTreeMap, HashMap};

    #[derive(Clone)]
    pub(super) struct Template {
        pub(super) index: Option<usize>,
        tags: Vec<String>,
        default_tags: Vec<(String, String)>,
        separator: String,
    }

    #[derive(Default)]
    struct Node {
        value: String,
        children: Vec<Node>,
        template: Option<Template>,
    }

    impl Node {
        fn insert(&mut self, values: &[&str], template: &Template) {
            if values.is_empty() {
                self.template = Some(template.clone());
                return;
            }
            if let Some(child) = self.children.iter_mut().find(|c| c.value == values[0]) {
                child.insert(&values[1..], template);
                return;
            }
            let mut new = Node {
                value: values[0].to_owned(),
                ..Node::default()
            };
            if values[0] == "*" {
                new.template = self.template.clone();
            }
            new.insert(&values[1..], template);
            self.children.push(new);
            self.children
                .sort_by(|a, b| match (a.value == "*", b.value == "*") {
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ => a.value.cmp(&b.value),
                });
        }

        fn search(&self, parts: &[&str]) -> Option<&Template> {
            if parts.is_empty() || self.children.is_empty() {
                return self.template.as_ref();
            }
            let mut length = self.children.len();
            if self.children[length - 1].value == "*" {
                length -= 1;
            }
            let i = self.children[..length].partition_point(|c| c.value.as_str() < parts[0]);
            if i < self.children.len() && self.children[i].value == parts[0] {
                return self.children[i].search(&parts[1..]);
            }
            if self.children[self.children.len() - 1].value == "*" {
                return self.children[self.children.len() - 1].search(&parts[1..]);
            }
            self.template.as_ref()
        }
    }

    pub(super) struct Parser {
        root: Node,
        default: Template,
        tags: Vec<(String, String)>,
    }

    impl Parser {
        pub(super) fn new(templates: &[String], tags: &[String], separator: &str) -> Self {
            let separator = if separator.is_empty() { "." } else { separator };
            let make = |index, pattern: &str, default_tags| Template {
                index,
                tags: pattern.split('.').map(str::to_owned).collect(),
                default_tags,
                separator: separator.to_owned(),
            };
            // Go compiles its built-in default once, with DefaultSeparator.
            let builtin = Template {
                index: None,
                tags: vec!["measurement*".to_owned()],
                default_tags: Vec::new(),
                separator: ".".to_owned(),
            };
            let mut parser = Parser {
                root: Node::default(),
                default: builtin,
                tags: tags
                    .iter()
                    .map(|t| {
                        let (k, v) = t.split_once('=').unwrap();
                        (k.to_owned(), v.to_owned())
                    })
                    .collect::<BTreeMap<_, _>>()
                    .into_iter()
                    .collect(),
            };
            for (index, pattern) in templates.iter().enumerate() {
                let parts: Vec<&str> = pattern.split_whitespace().collect();
                let (mut filter, mut template) = ("", pattern.as_str());
                if parts.len() >= 2 {
                    if parts[1].contains('=') {
                        template = parts[0];
                    } else {
                        filter = parts[0];
                        template = parts[1];
                    }
                }
                let mut default_tags: Vec<(String, String)> = Vec::new();
                if parts[parts.len() - 1].contains('=') {
                    for kv in parts[parts.len() - 1].split(',') {
                        let (k, v) = kv.split_once('=').unwrap();
                        default_tags.retain(|(key, _)| key != k);
                        default_tags.push((k.to_owned(), v.to_owned()));
                    }
                }
                let t = make(Some(index), template, default_tags);
                if filter.is_empty() {
                    parser.default = t;
                } else {
                    let values: Vec<&str> = filter.split('.').collect();
                    parser.root.insert(&values, &t);
                }
            }
            parser
        }

        /// `Parse` minus the value: measurement (with the whole-name fallback), tags without
        /// empty values, field (with the `value` fallback), and the template used.
        pub(super) fn apply(
            &self,
            line: &str,
        ) -> (String, BTreeMap<String, String>, String, Option<usize>) {
            let parts: Vec<&str> = line.split('.').collect();
            let t = self.root.search(&parts).unwrap_or(&self.default);
            let mut measurement: Vec<&str> = Vec::new();
            let mut tags: HashMap<String, Vec<String>> = HashMap::new();
            let mut field = String::new();
            for (k, v) in &t.default_tags {
                tags.entry(k.clone()).or_default().push(v.clone());
            }
            for (i, tag) in t.tags.iter().enumerate() {
                if i >= parts.len() {
                    continue;
                }
                match tag.as_str() {
                    "measurement" => measurement.push(parts[i]),
                    "field" => field = parts[i].to_owned(),
                    "field*" => {
                        field = parts[i..].join(&t.separator);
                        break;
                    }
                    "measurement*" => {
                        measurement.extend(&parts[i..]);
                        break;
                    }
                    "" => {}
                    key => tags
                        .entry(key.to_owned())
                        .or_default()
                        .push(parts[i].to_owned()),
                }
            }
            let mut out: BTreeMap<String, String> = tags
                .into_iter()
                .map(|(k, v)| (k, v.join(&t.separator)))
                .collect();
            for (k, v) in &self.tags {
                out.entry(k.clone()).or_insert_with(|| v.clone());
            }
            out.retain(|_, v| !v.is_empty());
            let mut measurement = measurement.join(&t.separator);
            if measurement.is_empty() {
                measurement = line.to_owned();
            }
            // models.NewPoint: EscapeMeasurement(unescapeMeasurement(name)).
            let measurement = measurement.replace("\\,", ",").replace("\\ ", " ");
            if field.is_empty() {
                field = "value".to_owned();
            }
            (measurement, out, field, t.index)
        }
    }
}

fn segment_strategy() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "", "a", "b", "c", "servers", "host1", "cpu", "*", "x y", "k=v", "c,d", "#", "\\\\", "\\x",
        "ü", "a\\\\,b", "a\\,b", "\\=", "q\\\"", "\t",
    ])
    .prop_map(str::to_owned)
}

fn name_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(segment_strategy(), 1..7).prop_map(|s| s.join("."))
}

fn element_strategy() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "measurement",
        "measurement",
        "measurement*",
        "field",
        "field*",
        "",
        "host",
        "host",
        "dc",
        "a",
    ])
}

fn template_strategy() -> impl Strategy<Value = String> {
    let filter = prop::option::of(
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "servers", "*", "c"]),
            1..4,
        )
        .prop_map(|s| s.join(".")),
    );
    let template = prop::collection::vec(element_strategy(), 1..6).prop_map(|e| e.join("."));
    let tags = prop::option::of(
        prop::collection::vec(
            (
                prop::sample::select(vec!["host", "dc", "t"]),
                prop::sample::select(vec!["1", "x"]),
            ),
            1..3,
        )
        .prop_map(|kv| {
            kv.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        }),
    );
    (filter, template, tags).prop_map(|(f, t, tags)| {
        [f, Some(t), tags]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ")
    })
}

fn config_strategy() -> impl Strategy<Value = GraphiteTemplateConfig> {
    (
        prop::collection::vec(template_strategy(), 0..6),
        prop::collection::vec(
            (
                prop::sample::select(vec!["host", "dc", "env"]),
                prop::sample::select(vec!["g", "h"]),
            )
                .prop_map(|(k, v)| format!("{k}={v}")),
            0..3,
        ),
        prop::sample::select(vec![".", "_", ""]),
    )
        .prop_map(|(templates, tags, separator)| GraphiteTemplateConfig {
            separator: separator.to_owned(),
            templates,
            tags,
        })
}

/// The line written for `name` parses back, with InfluxDB's own unescaping, to what `apply`
/// reports, and `apply` agrees with the literal port of InfluxDB's code.
fn check_point(set: &TemplateSet, model: &go_model::Parser, name: &str, value: f64) {
    let mut out = b"previous line\n".to_vec();
    let written = set.translator().write_point(name, &[], value, 42, &mut out);
    let applied = set.apply(name, &[]);
    match (written, applied) {
        (Ok(()), Ok(applied)) => {
            let text = std::str::from_utf8(&out).unwrap();
            let produced = text.strip_prefix("previous line\n").unwrap();
            let (m, tags, field, v, ts) = parse_influx_line(produced);
            assert_eq!(m, applied.measurement);
            assert_eq!(tags, applied.tags);
            assert_eq!(field, applied.field);
            assert_eq!(v.parse::<f64>().unwrap().to_bits(), value.to_bits());
            assert_eq!(ts, "42");
            let (gm, gtags, gfield, gindex) = model.apply(name);
            assert_eq!(applied.measurement, gm, "measurement of {name:?}");
            assert_eq!(
                applied.tags,
                gtags.into_iter().collect::<Vec<_>>(),
                "tags of {name:?}"
            );
            assert_eq!(applied.field, gfield, "field of {name:?}");
            assert_eq!(applied.template, gindex, "template for {name:?}");
        }
        (Err(w), Err(a)) => {
            assert_eq!(w, a);
            if name.is_empty() {
                assert_eq!(w, TranslateError::EmptyName);
            } else {
                assert_eq!(w.reason(), "unrepresentable");
            }
            assert_eq!(out, b"previous line\n");
        }
        (w, a) => panic!("write_point {w:?} but apply {a:?} for {name:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn matches_influxdb_model_and_round_trips(
        config in config_strategy(),
        names in prop::collection::vec(name_strategy(), 1..8),
        value in prop::num::f64::NORMAL | prop::num::f64::ZERO | prop::num::f64::SUBNORMAL,
    ) {
        // Configurations InfluxDB would refuse (or fail on at run time) are out of scope.
        let Ok(set) = TemplateSet::new(&config) else { return Ok(()) };
        let model = go_model::Parser::new(&config.templates, &config.tags, &config.separator);
        for name in &names {
            check_point(&set, &model, name, value);
        }
    }

    #[test]
    fn arbitrary_text_never_panics(
        name in "[a-c.*\\\\ ,=#\n\t\"]{0,24}",
        extra in prop::collection::vec(("[a-c\\\\ ,=\"]{0,3}", "[a-c\\\\ ,=\"]{0,3}"), 0..4),
    ) {
        let set = set(&["a.* .host.measurement.field*", "measurement.x.measurement"], &["g=1"], "_");
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut out = Vec::new();
        let mut t = set.translator();
        match t.write_point(&name, &extra, 1.0, 0, &mut out) {
            Ok(()) => {
                let applied = t.apply(&name, &extra).unwrap();
                let (m, tags, field, _, _) = parse_influx_line(std::str::from_utf8(&out).unwrap());
                prop_assert_eq!(m, applied.measurement);
                prop_assert_eq!(tags, applied.tags);
                prop_assert_eq!(field, applied.field);
            }
            Err(e) => {
                prop_assert!(out.is_empty());
                prop_assert_eq!(t.apply(&name, &extra).unwrap_err(), e);
            }
        }
    }
}

#[test]
fn shareable_across_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TemplateSet>();
    assert_send_sync::<Translator<'static>>();
}

proptest! {
    /// A canonical plaintext value that `spelled_as_written` accepts is exactly what the
    /// line-protocol writer would make of it, so copying it changes nothing.
    #[test]
    fn spelled_values_are_what_write_float_writes(
        int in "-?(0|[1-9][0-9]{0,9})",
        frac in proptest::option::of("[0-9]{0,4}[1-9]"),
        zeros in 0usize..8,
    ) {
        let value = match frac {
            Some(f) => format!("{int}.{}{f}", "0".repeat(zeros)),
            None => int,
        };
        let line = format!("a.b {value} 1700000000");
        prop_assume!(graphite_plaintext::is_canonical(line.as_bytes()));
        let parsed = graphite_plaintext::parse_line(line.as_bytes()).unwrap().value;
        let mut written = Vec::new();
        write_float(&mut written, parsed);
        if spelled_as_written(value.as_bytes()) {
            prop_assert_eq!(String::from_utf8(written).unwrap(), value);
        } else {
            prop_assert_ne!(String::from_utf8(written).unwrap(), value);
        }
    }
}
