//! Every input of the gateway, end to end into a real InfluxDB 1.x: Graphite plaintext over TCP
//! and UDP, Graphite pickle, InfluxDB `/write` and `/api/v2/write`; the graphite→influx
//! translation compared with InfluxDB's own graphite service on one corpus; and the real client
//! libraries (aioinflux, influxdb-python, influxdb-client, aiographite) pointed at the gateway.
//!
//! Each test starts its own `influxd` and a fluxgate forwarding to it (`api = "v1"`, a short
//! `flush_interval`), then reads back from `influxd` exactly what a user would look for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fluxgate_e2e::{
    free_port, free_udp_port, gzip, http_request, loopback, pickle_frame, send_lines, send_tcp,
    Gateway, GraphiteService, InfluxDb, Point, Python,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
const PYTHON_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// helpers

/// Where the gateway under test listens.
#[derive(Debug, Clone, Copy)]
struct Ports {
    http: SocketAddr,
    plaintext: SocketAddr,
    udp: SocketAddr,
    pickle: SocketAddr,
}

impl Ports {
    fn free() -> Self {
        Ports {
            http: loopback(free_port()),
            plaintext: loopback(free_port()),
            udp: loopback(free_udp_port()),
            pickle: loopback(free_port()),
        }
    }
}

/// The database Graphite-origin points go to (the output's `database`).
const GRAPHITE_DB: &str = "graphite";

/// A fluxgate config with every listener on, one InfluxDB v1 output that flushes every 100 ms,
/// and `graphite` (a `[graphite]` section, or empty for the defaults).
fn gateway_config(ports: &Ports, influx: &InfluxDb, database: &str, graphite: &str) -> String {
    format!(
        r#"shutdown_timeout = "1s"

[log]
level = "info"

[listeners.plaintext]
tcp = "{plaintext}"
udp = "{udp}"

[listeners.pickle]
tcp = "{pickle}"

[listeners.http]
address = "{http}"

{graphite}

[[outputs.influxdb]]
name = "influx"
url = "{url}"
api = "v1"
database = "{database}"
flush_interval = "100ms"
retry_initial = "50ms"
retry_max = "1s"
"#,
        plaintext = ports.plaintext,
        udp = ports.udp,
        pickle = ports.pickle,
        http = ports.http,
        url = influx.url(),
    )
}

/// An influxd and a gateway forwarding to it. The gateway is declared first so it is killed
/// first.
struct Stack {
    gateway: Gateway,
    influx: InfluxDb,
    ports: Ports,
}

impl Stack {
    /// Starts influxd, creates the Graphite database (InfluxDB's own graphite service creates
    /// its database; a gateway output writes into one that exists), and starts the gateway.
    fn start(graphite: &str) -> Stack {
        let influx = InfluxDb::start();
        influx.create_database(GRAPHITE_DB);
        let ports = Ports::free();
        let gateway = Gateway::start(
            &gateway_config(&ports, &influx, GRAPHITE_DB, graphite),
            ports.http,
        );
        Stack {
            gateway,
            influx,
            ports,
        }
    }

    /// Polls `GET /metrics` until `name{labels}` equals `expected`.
    fn wait_for_metric(&self, name: &str, labels: &[(&str, &str)], expected: f64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.gateway.metric(name, labels);
            if value == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}{labels:?} is {value:?}, expected {expected}\n{}",
                self.gateway.metrics()
            );
            thread::sleep(POLL);
        }
    }

    /// No line or item was rejected by any listener.
    fn assert_nothing_rejected(&self) {
        let rejected = self.gateway.metric("fluxgate_rejected_total", &[]);
        assert!(
            rejected.is_none_or(|n| n == 0.0),
            "rejections: {rejected:?}\n{}\n{}",
            self.gateway.metrics(),
            self.gateway.log_tail(30)
        );
    }
}

fn point(measurement: &str, tags: &[(&str, &str)], time: i64, fields: &[(&str, Value)]) -> Point {
    Point {
        measurement: measurement.to_owned(),
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        time,
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

/// A Graphite point as the default template `measurement*` stores it: field `value`.
fn graphite_point(measurement: &str, tags: &[(&str, &str)], seconds: i64, value: Value) -> Point {
    point(
        measurement,
        tags,
        seconds * 1_000_000_000,
        &[("value", value)],
    )
}

fn now_ns() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(now.as_nanos()).expect("time fits i64")
}

/// Takes the points of `measurement` out of `points`, checks that each was stamped by the
/// receiver between `before` and `after` (a millisecond of slack for float-seconds clocks),
/// and returns them with their time set to 0, for exact comparison of the rest.
fn take_stamped_now(
    points: &mut Vec<Point>,
    measurement: &str,
    before: i64,
    after: i64,
) -> Vec<Point> {
    let (mut now, rest): (Vec<Point>, Vec<Point>) =
        points.drain(..).partition(|p| p.measurement == measurement);
    *points = rest;
    for p in &mut now {
        assert!(
            (before - 1_000_000..=after).contains(&p.time),
            "{measurement} should be stamped with the receive time, between {before} and \
             {after}, but has {} ({:+.3} s from the send)",
            p.time,
            (p.time - before) as f64 / 1e9
        );
        p.time = 0;
    }
    now
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(items: &[&str]) -> String {
    let items: Vec<String> = items.iter().map(|item| toml_string(item)).collect();
    format!("[{}]", items.join(", "))
}

/// A point as one comparable, readable line: `measurement,k=v,... field=value ... time`.
fn describe(p: &Point) -> String {
    let mut out = format!("{:?}", p.measurement);
    for (k, v) in &p.tags {
        let _ = write!(out, ",{k:?}={v:?}");
    }
    for (k, v) in &p.fields {
        let _ = write!(out, " {k:?}={v}");
    }
    let _ = write!(out, " {}", p.time);
    out
}

// ---------------------------------------------------------------------------------------------
// 1. every input lands

#[test]
fn plaintext_over_tcp_lands_with_exact_points() {
    let stack = Stack::start("");
    let before = now_ns();
    send_tcp(
        stack.ports.plaintext,
        b"tcp.crlf.one 1.5 1700000000\r\n\
          tcp.crlf.two -2 1700000001\r\n\
          tcp.plain 42 1700000002\n\
          tcp.tagged;host=web01;dc=eu 7.25 1700000003\n\
          tcp.float_ts 3 1700000004.25\n\
          tcp.spaces    8\t1700000005\n\
          tcp.now 9\n",
    );
    // A line cut across two reads, and a last line without its newline before EOF (fluxgate
    // processes it; carbon would not).
    let mut stream = TcpStream::connect(stack.ports.plaintext).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(b"tcp.split.li").unwrap();
    // Only shapes the input into two TCP segments; nothing waits on the gateway here.
    thread::sleep(Duration::from_millis(100));
    stream
        .write_all(b"ne 10 1700000006\ntcp.eof 11 1700000007")
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    // Wait for the gateway to close its side: it has read everything.
    let _ = stream.read_to_end(&mut Vec::new());
    let mut points = stack.influx.wait_for_points(GRAPHITE_DB, 9, WAIT);
    let after = now_ns();
    let now = take_stamped_now(&mut points, "tcp.now", before, after);
    assert_eq!(now, vec![graphite_point("tcp.now", &[], 0, json!(9))]);
    assert_eq!(
        points,
        vec![
            graphite_point("tcp.crlf.one", &[], 1_700_000_000, json!(1.5)),
            graphite_point("tcp.crlf.two", &[], 1_700_000_001, json!(-2)),
            graphite_point("tcp.eof", &[], 1_700_000_007, json!(11)),
            point(
                "tcp.float_ts",
                &[],
                1_700_000_004_250_000_000,
                &[("value", json!(3))]
            ),
            graphite_point("tcp.plain", &[], 1_700_000_002, json!(42)),
            graphite_point("tcp.spaces", &[], 1_700_000_005, json!(8)),
            graphite_point("tcp.split.line", &[], 1_700_000_006, json!(10)),
            graphite_point(
                "tcp.tagged",
                &[("dc", "eu"), ("host", "web01")],
                1_700_000_003,
                json!(7.25)
            ),
        ]
    );
    assert_eq!(
        stack.influx.field_types(GRAPHITE_DB, "tcp.plain"),
        [("value".to_owned(), "float".to_owned())].into()
    );
    // Graphite-origin points go to the output's database, and nowhere else.
    assert_eq!(stack.influx.databases(), vec![GRAPHITE_DB.to_owned()]);
    stack.wait_for_metric(
        "fluxgate_received_total",
        &[("listener", "plaintext_tcp")],
        9.0,
    );
    stack.wait_for_metric("fluxgate_sent_points_total", &[("output", "influx")], 9.0);
    stack.assert_nothing_rejected();
}

#[test]
fn plaintext_over_udp_lands_with_exact_points() {
    let stack = Stack::start("");
    let socket = UdpSocket::bind(loopback(0)).unwrap();
    // One datagram, several lines, the last one without its newline (go-carbon accepts it).
    let datagram =
        b"udp.one 1 1700000010\nudp.two;k=v 2.5 1700000011\r\nudp.last -3.75 1700000012.5";
    socket.send_to(datagram, stack.ports.udp).unwrap();
    let points = stack.influx.wait_for_points(GRAPHITE_DB, 3, WAIT);
    assert_eq!(
        points,
        vec![
            point(
                "udp.last",
                &[],
                1_700_000_012_500_000_000,
                &[("value", json!(-3.75))]
            ),
            graphite_point("udp.one", &[], 1_700_000_010, json!(1)),
            graphite_point("udp.two", &[("k", "v")], 1_700_000_011, json!(2.5)),
        ]
    );
    stack.wait_for_metric(
        "fluxgate_received_total",
        &[("listener", "plaintext_udp")],
        3.0,
    );
    stack.assert_nothing_rejected();
}

/// Frames as Python's own `pickle` writes them, protocols 0, 2, 4 and 5, as one hex string:
/// 4 (FRAME, SHORT_BINUNICODE, MEMOIZE) and 5 are what a Python 3 sender produces by default;
/// the repeated path object is written once and then fetched from the memo.
const PYTHON_PICKLES: &str = r#"
import pickle, struct, sys
out = b''
for proto in (0, 2, 4, 5):
    shared = 'pickle.p%d.shared' % proto
    data = [
        (shared, (1700000030 + proto, 1.0)),
        (shared, (1700000040 + proto, 2)),
        ['pickle.p%d.list' % proto, [1700000050.5 + proto, -0.125]],
        ('pickle.p%d.ünï' % proto, (1700000060, 3.5)),
        ('pickle.p%d.tagged;role=db' % proto, (1700000070, 4.0)),
        ('pickle.p%d.now' % proto, (-1, 5.0)),
        ('pickle.p%d.long.' % proto + 'x' * 300, (1700000080, 6.5)),
    ]
    body = pickle.dumps(data, protocol=proto)
    assert (proto >= 4) == (b'\x95' in body[:3]), 'protocol 4+ starts with a FRAME'
    out += struct.pack('!L', len(body)) + body
sys.stdout.write(out.hex())
"#;

fn unhex(text: &str) -> Vec<u8> {
    let text = text.trim();
    assert!(text.len().is_multiple_of(2), "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn pickle_protocols_0_2_4_5_land_with_exact_points() {
    let stack = Stack::start("");
    let mut frames = pickle_frame(&[
        ("pickle.relay.a", 1_700_000_020, 1.5),
        ("pickle.relay.b;dc=us", 1_700_000_021, -3.0),
    ]);
    frames.extend(unhex(&Python::venv().run_ok(
        PYTHON_PICKLES,
        &[],
        PYTHON_TIMEOUT,
    )));
    let before = now_ns();
    send_tcp(stack.ports.pickle, &frames);
    let mut points = stack.influx.wait_for_points(GRAPHITE_DB, 2 + 4 * 7, WAIT);
    let after = now_ns();

    let mut expected = vec![
        graphite_point("pickle.relay.a", &[], 1_700_000_020, json!(1.5)),
        graphite_point("pickle.relay.b", &[("dc", "us")], 1_700_000_021, json!(-3)),
    ];
    let mut now = Vec::new();
    for proto in [0_i64, 2, 4, 5] {
        let name = |suffix: &str| format!("pickle.p{proto}.{suffix}");
        now.extend(take_stamped_now(&mut points, &name("now"), before, after));
        expected.extend([
            graphite_point(&name("shared"), &[], 1_700_000_030 + proto, json!(1)),
            graphite_point(&name("shared"), &[], 1_700_000_040 + proto, json!(2)),
            point(
                &name("list"),
                &[],
                (1_700_000_050 + proto) * 1_000_000_000 + 500_000_000,
                &[("value", json!(-0.125))],
            ),
            graphite_point(&name("ünï"), &[], 1_700_000_060, json!(3.5)),
            graphite_point(&name("tagged"), &[("role", "db")], 1_700_000_070, json!(4)),
            graphite_point(
                &format!("{}{}", name("long."), "x".repeat(300)),
                &[],
                1_700_000_080,
                json!(6.5),
            ),
        ]);
    }
    expected
        .sort_by(|a, b| (&a.measurement, &a.tags, a.time).cmp(&(&b.measurement, &b.tags, b.time)));
    assert_eq!(points, expected);
    assert_eq!(now.len(), 4, "one `-1` (now) point per protocol: {now:?}");
    assert!(
        now.iter().all(|p| p.fields == expected_value(json!(5))),
        "{now:?}"
    );
    stack.wait_for_metric(
        "fluxgate_received_total",
        &[("listener", "pickle")],
        f64::from(2 + 4 * 7),
    );
    stack.assert_nothing_rejected();
}

fn expected_value(value: Value) -> BTreeMap<String, Value> {
    [("value".to_owned(), value)].into()
}

fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let response = http_request("POST", url, headers, body)
        .unwrap_or_else(|err| panic!("POST {url} failed: {err}"));
    (response.status, response.text())
}

#[test]
fn http_v1_and_v2_writes_land_in_their_own_databases() {
    let stack = Stack::start("");
    stack.influx.create_database("v1db");
    stack.influx.create_database("v2db");
    let gateway = stack.gateway.url();
    let text = [("Content-Type", "text/plain; charset=utf-8")];
    let gzipped = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Encoding", "gzip"),
    ];

    let v1 = format!("{gateway}/write?db=v1db&rp=&precision=s");
    let before = now_ns();
    assert_eq!(
        post(
            &v1,
            &text,
            b"h1,host=a value=1.5 1700000100\nh1,host=b count=3i,ok=true,msg=\"a b\" 1700000101\n\
              h1now value=5\n"
        ),
        (204, String::new())
    );
    let after = now_ns();
    assert_eq!(
        post(&v1, &gzipped, &gzip(b"h1gz,host=c value=2 1700000102")),
        (204, String::new())
    );

    let v2 = format!("{gateway}/api/v2/write?org=o&bucket=v2db/autogen&precision=ms");
    let token = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Authorization", "Token my-token"),
    ];
    assert_eq!(
        post(&v2, &token, b"h2,host=d value=0.25 1700000103456\n"),
        (204, String::new())
    );
    let token_gzipped = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Encoding", "gzip"),
        ("Authorization", "Token my-token"),
    ];
    assert_eq!(
        post(
            &v2,
            &token_gzipped,
            &gzip(b"h2gz value=-1 1700000104001\nh2gz value=-2 1700000104002")
        ),
        (204, String::new())
    );

    let mut v1_points = stack.influx.wait_for_points("v1db", 4, WAIT);
    assert_eq!(
        take_stamped_now(&mut v1_points, "h1now", before, after),
        vec![point("h1now", &[], 0, &[("value", json!(5))])]
    );
    assert_eq!(
        v1_points,
        vec![
            point(
                "h1",
                &[("host", "a")],
                1_700_000_100_000_000_000,
                &[("value", json!(1.5))]
            ),
            point(
                "h1",
                &[("host", "b")],
                1_700_000_101_000_000_000,
                &[
                    ("count", json!(3)),
                    ("msg", json!("a b")),
                    ("ok", json!(true))
                ]
            ),
            point(
                "h1gz",
                &[("host", "c")],
                1_700_000_102_000_000_000,
                &[("value", json!(2))]
            ),
        ]
    );
    assert_eq!(
        stack.influx.field_types("v1db", "h1"),
        [
            ("count".to_owned(), "integer".to_owned()),
            ("msg".to_owned(), "string".to_owned()),
            ("ok".to_owned(), "boolean".to_owned()),
            ("value".to_owned(), "float".to_owned()),
        ]
        .into()
    );
    assert_eq!(
        stack.influx.wait_for_points("v2db", 3, WAIT),
        vec![
            point(
                "h2",
                &[("host", "d")],
                1_700_000_103_456_000_000,
                &[("value", json!(0.25))]
            ),
            point(
                "h2gz",
                &[],
                1_700_000_104_001_000_000,
                &[("value", json!(-1))]
            ),
            point(
                "h2gz",
                &[],
                1_700_000_104_002_000_000,
                &[("value", json!(-2))]
            ),
        ]
    );
    stack.wait_for_metric("fluxgate_sent_points_total", &[("output", "influx")], 7.0);
    // Everything was delivered: nothing leaked into another database.
    assert_eq!(stack.influx.points(GRAPHITE_DB), Vec::<Point>::new());
    assert_eq!(stack.influx.points("v1db").len(), 4);
    assert_eq!(stack.influx.points("v2db").len(), 3);
    stack.wait_for_metric("fluxgate_received_total", &[("listener", "http")], 7.0);
    stack.assert_nothing_rejected();
}

/// Line protocol bodies sent both to influxd's own `/write` and through the gateway: the gateway
/// must answer with the same status (and, for a rejected body, the same error) and store the
/// same points. Left out where fluxgate differs by design: `precision=us` on `/write` (fluxgate
/// reads every spelling; 1.x takes an unknown precision as nanoseconds) and unsigned `1u`
/// fields (the gateway cannot know whether its upstream was built with them). String fields
/// have names of their own: `SELECT * FROM /.*/` nulls a field whose type differs elsewhere.
const LINE_PROTOCOL_CASES: &[(&str, &str)] = &[
    ("precision=m", "lp_minutes v=1 28333333"),
    ("precision=h", "lp_hours v=1 472222"),
    ("precision=bogus", "lp_bogus v=1 1700000000000000000"),
    ("precision=s", "lp_last_second v=1 9223372036"),
    ("", "lp_escapes\\,m\\ x,t\\ k=t\\,v\\=x f\\=k=\"a \\\"q\\\" \\\\ b\",g=1i 1700000000000000001"),
    ("", "  lp_leading v=1 1700000000000000002\n\n# a comment\n"),
    ("", "lp_unicode,t=ü text=\"€\" 1700000000000000003"),
    ("", "lp_duplicate_field v=1,v=2 1700000000000000004"),
    ("", "lp_negative_time v=1 -1700000000000000000"),
    ("", "lp_largest_time v=1 9223372036854775806"),
    ("", "lp_trailing_space v=1 1700000000000000005 "),
    ("", "lp_booleans a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE 1700000000000000006"),
    ("", "lp_exponents v=1e5,w=-1.5E-3 1700000000000000007"),
    // A string field may hold a newline: influxd's scanner does not end a line inside quotes.
    ("", "lp_multiline text=\"first\nsecond\" 1700000000000000008"),
    ("", "lp_multiline_then text=\"a\nb\",n=1i 1700000000000000009\nlp_after_multiline v=2 1700000000000000010"),
    // Some lines bad: 400 "partial write", and the good lines are stored.
    ("", "lp_bad line\nlp_partial_good v=1 1700000000000000011"),
    // Every line bad.
    ("", "lp_crlf v=1 1700000000000000012\r\n"),
    ("", "lp_tabs\tv=1\t1700000000000000013"),
    ("", "lp_empty_value v= 1700000000000000014"),
    ("", "lp_empty_tag,t= v=1 1700000000000000015"),
    ("", "lp_float_time v=1 1.5"),
    ("", "lp_int_overflow v=9223372036854775808i 1700000000000000016"),
];

#[test]
fn http_write_accepts_and_refuses_what_influxdb_does() {
    let stack = Stack::start("");
    stack.influx.create_database("direct");
    stack.influx.create_database("via_gateway");
    let mut mismatches = String::new();
    for (query, body) in LINE_PROTOCOL_CASES {
        let write = |base: &str, db: &str| {
            let url = format!("{base}/write?db={db}&{query}");
            let response = http_request("POST", &url, &[], body.as_bytes())
                .unwrap_or_else(|err| panic!("POST {url} failed: {err}"));
            (response.status, response.text().trim_end().to_owned())
        };
        let (status, error) = write(&stack.influx.url(), "direct");
        let (our_status, our_error) = write(&stack.gateway.url(), "via_gateway");
        // InfluxDB's `dropped=N` counts points its storage refused, so it is 0 after a parse
        // failure; only the part before it is compared (and not Go's trailing newline).
        let comparable = |text: &str| {
            text.split(" dropped=")
                .next()
                .unwrap_or_default()
                .to_owned()
        };
        if (status, comparable(&error)) != (our_status, comparable(&our_error)) {
            let _ = writeln!(
                mismatches,
                "?{query} {body:?}\n  influxd: {status} {error}\n  fluxgate: {our_status} {our_error}"
            );
        }
    }
    let direct = stack.influx.points("direct");
    assert!(direct.len() >= 17, "{direct:#?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let ours = loop {
        let ours = stack.influx.points("via_gateway");
        if ours == direct || Instant::now() >= deadline {
            break ours;
        }
        thread::sleep(POLL);
    };
    let theirs: BTreeSet<String> = direct.iter().map(describe).collect();
    let mine: BTreeSet<String> = ours.iter().map(describe).collect();
    for line in theirs.difference(&mine) {
        let _ = writeln!(mismatches, "- stored by influxd only: {line}");
    }
    for line in mine.difference(&theirs) {
        let _ = writeln!(mismatches, "+ stored through fluxgate only: {line}");
    }
    assert!(
        mismatches.is_empty(),
        "the gateway's /write differs from influxd's:\n{mismatches}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. template translation equals InfluxDB's own graphite service

/// Templates exercising every element and filter rule. fluxgate gets the very same lines.
const TEMPLATES: &[&str] = &[
    // `*` as a filter segment; the exact sibling `servers.web01` beats it.
    "servers.* .host.resource.measurement*",
    "servers.web01 .host.measurement.field region=eu",
    // A prefix filter: matches every longer name under `collectd`.
    "collectd .host.measurement.type.field",
    // `field*`, and a deeper exact filter beside a `*` sibling.
    "stats.* .measurement.field*",
    "stats.gauges.* ..measurement.measurement.field",
    // Skipped segments.
    "skip.*.* ...measurement.field",
    // A tag element twice (joined with the separator), and a template tag with the same key.
    "multi.* .region.region.measurement* region=tpl",
    "tplhost.* .host.measurement* host=tpl,env=prod",
    // A captured tag against a global tag of the same key.
    "dc.* .dc.measurement.field",
    // A wildcard first segment.
    "*.app.* type.app.measurement.field*",
    // `measurement` twice around a tag.
    "mixed.* .measurement.host.measurement.field",
    // Filter order around a `*` child.
    "order1 .host.measurement*",
    "order1.*.deep .measurement.measurement.field",
    "order2.*.deep .measurement.measurement.field",
    "order2 .host.measurement*",
    // An exact filter whose dead end does not backtrack to `*.app.*`.
    "nb.exact .measurement.field",
    // The default template (no filter) replaces `measurement*`.
    "measurement.measurement.field*",
];

const GLOBAL_TAGS: &[&str] = &["source=graphite", "dc=global"];

/// Names sent through the templates, each with its own value and timestamp.
///
/// Left out on purpose, where fluxgate differs from InfluxDB 1.6 by design:
/// - tagged series (`name;k=v`): InfluxDB 1.x does not know them and keeps `;k=v` in the name
///   or a tag; fluxgate turns them into tags (covered by the input tests above);
/// - names InfluxDB stores but line protocol cannot carry (a measurement starting with `#`, a
///   trailing backslash, newlines): fluxgate counts them as rejected;
/// - templates InfluxDB accepts and then fails at run time (`field` twice, `field*` with
///   `measurement*`, a `measurementX` element): fluxgate refuses them at start-up.
fn template_corpus() -> Vec<String> {
    let names = [
        // servers.* and the exact servers.web01
        "servers.localhost.cpu.loadavg.10",
        "servers.localhost.cpu",
        "servers.db02.disk.sda.reads",
        "servers.web01.cpu.idle",
        "servers.web01.cpu.idle.extra",
        "servers.web01",
        "servers.web01.mem",
        "servers",
        "servers..cpu.load",
        "servers.h\\x.cpu.load",
        "servers.h,1.c=pu.load",
        // prefix filter
        "collectd.h1.cpu.user.idle",
        "collectd.h1.cpu",
        "collectd.h1",
        "collectd",
        // field* and the exact stats.gauges
        "stats.counters.hits.ok",
        "stats.counters.hits",
        "stats.counters",
        "stats.gauges.queue.depth.max",
        "stats.gauges.queue",
        "stats.gauges",
        // skipped segments
        "skip.a.b.measure.fld",
        "skip.a.b",
        "skip.a.b.c",
        // repeated tag element, template tag with the same key
        "multi.eu.west.m1.m2",
        "multi.eu",
        "tplhost.web.req",
        "tplhost..req",
        // captured vs global tag
        "dc.us1.power.watts",
        "dc..power.watts",
        "dc.us1",
        // wildcard first segment
        "web.app.requests.ok.count",
        "db.app.queries",
        "web.app",
        "web.notapp.requests",
        // two measurement elements
        "mixed.m1.hostA.m2.fld",
        "mixed.m1.hostA",
        // filter order
        "order1",
        "order1.x.deep.f",
        "order1.x.other.f",
        "order1.x",
        "order2",
        "order2.x.deep.f",
        "order2.x.other.f",
        "order2.x",
        // no backtracking
        "nb.exact.m.f",
        "nb.app.m.f",
        // the default template, and characters line protocol must escape
        "single",
        "two.parts",
        "three.part.name",
        "four.part.name.here",
        "ünï.cödé.wërt.x",
        "weird.a,b.c=d",
        "q.m.a\"b",
        "bs.a\\b.c",
        ".leading.dot",
        "trailing.dot.",
        "empty..seg.x",
        "with_underscore.a_b.c_d",
    ];
    let mut lines: Vec<String> = names
        .iter()
        .zip(0_i64..)
        .map(|(name, i)| format!("{name} {} {}", i * 2 - 41, 1_700_000_000 + i * 10))
        .collect();
    lines.push(format!("long.{}.f 0.5 1700001000", "x".repeat(300)));
    // Values and timestamps Go's ParseFloat and fluxgate both read (or both refuse). Left out:
    // `1_000` and hex floats such as `0x1p-2`, where fluxgate follows carbon (Python `float()`)
    // and InfluxDB follows Go.
    // Each `REFUSED` line must be refused by both.
    let special = [
        ("exp", "1e3", "1700002000"),
        ("neg_exp", "-2.5E-3", "1700002001"),
        ("plus", "+7", "1700002002"),
        ("dot_first", ".5", "1700002003"),
        ("dot_last", "5.", "1700002004"),
        ("zeros", "007", "1700002005"),
        ("max", "1.7976931348623157e308", "1700002006"),
        ("tiny", "5e-324", "1700002007"),
        ("neg_zero", "-0", "1700002008"),
        ("tenths", "0.30000000000000004", "1700002009"),
        ("big", "123456789012345678", "1700002010"),
        ("nan", "nan", "1700002011"),
        ("NaN", "NaN", "1700002012"),
        ("inf", "inf", "1700002013"),
        ("neg_inf", "-Infinity", "1700002014"),
        ("overflow", "1e400", "1700002015"),
        ("float_ts", "1", "1700002016.75"),
        ("exp_ts", "2", "1.7000020170e9"),
        ("nano_ts", "3", "1700002018.123456789"),
        ("ms_as_seconds", "4", "1700002019123"),
    ];
    lines.extend(
        special
            .iter()
            .map(|(name, value, ts)| format!("special.{name} {value} {ts}")),
    );
    lines.push("  special.leading_ws 5 1700002020".to_owned());
    lines.push("special.tabs\t6\t1700002021".to_owned());
    lines.push("special.runs   7    1700002022".to_owned());
    lines
}

/// Lines of the corpus that neither InfluxDB nor fluxgate stores: NaN (dropped, as carbon
/// does), ±Inf and an overflowing value (no line-protocol spelling), and a millisecond
/// timestamp read as seconds (beyond InfluxDB's time range).
const REFUSED: [&str; 6] = ["nan", "NaN", "inf", "neg_inf", "overflow", "ms_as_seconds"];

/// Polls until `db` exists and holds at least `n` points, and returns what it holds by then
/// (fewer after `WAIT`: the caller reports the difference).
fn points_when_complete(influx: &InfluxDb, db: &str, n: usize) -> Vec<Point> {
    let deadline = Instant::now() + WAIT;
    loop {
        let points = if influx.databases().iter().any(|d| d == db) {
            influx.points(db)
        } else {
            Vec::new()
        };
        if points.len() >= n || Instant::now() >= deadline {
            return points;
        }
        thread::sleep(POLL);
    }
}

/// Sends the corpus to InfluxDB's graphite service and to fluxgate (same templates, tags and
/// separator, another database of the same influxd), and requires equal stored series.
fn assert_translation_matches_influxdb(separator: &str) {
    let mut service = GraphiteService::new("reference").separator(separator);
    for template in TEMPLATES {
        service = service.template(template);
    }
    for tag in GLOBAL_TAGS {
        service = service.tag(tag);
    }
    let influx = InfluxDb::builder().graphite(service).start();
    influx.create_database("fluxgate");
    let ports = Ports::free();
    let graphite = format!(
        "[graphite]\nseparator = {}\ntemplates = {}\ntags = {}\n",
        toml_string(separator),
        toml_list(TEMPLATES),
        toml_list(GLOBAL_TAGS)
    );
    let gateway = Gateway::start(
        &gateway_config(&ports, &influx, "fluxgate", &graphite),
        ports.http,
    );

    let lines = template_corpus();
    influx.send_graphite_lines(&lines);
    send_lines(ports.plaintext, &lines);

    // Every line has its own timestamp, so each stored line is one point.
    let refused = lines
        .iter()
        .filter(|line| {
            REFUSED
                .iter()
                .any(|name| line.starts_with(&format!("special.{name} ")))
        })
        .count();
    assert_eq!(refused, REFUSED.len());
    let expected = lines.len() - refused;
    let reference = points_when_complete(&influx, "reference", expected);
    assert_eq!(
        reference.len(),
        expected,
        "InfluxDB's graphite service stored {} of the {expected} points expected: \
         {reference:#?}\n{}",
        reference.len(),
        influx.log_tail(30)
    );
    let ours = points_when_complete(&influx, "fluxgate", expected);
    if ours != reference {
        let theirs: BTreeSet<String> = reference.iter().map(describe).collect();
        let mine: BTreeSet<String> = ours.iter().map(describe).collect();
        let mut diff = String::new();
        for line in theirs.difference(&mine) {
            let _ = writeln!(diff, "- {line}");
        }
        for line in mine.difference(&theirs) {
            let _ = writeln!(diff, "+ {line}");
        }
        panic!(
            "separator {separator:?}: fluxgate stored {} points, InfluxDB's graphite service {}; \
             `-` only in InfluxDB's, `+` only in fluxgate's:\n{diff}\nfluxgate log:\n{}",
            ours.len(),
            reference.len(),
            gateway.log_tail(40)
        );
    }
}

#[test]
fn templates_translate_like_influxdb_graphite_service() {
    assert_translation_matches_influxdb(".");
}

#[test]
fn templates_translate_like_influxdb_graphite_service_with_underscore_separator() {
    assert_translation_matches_influxdb("_");
}

// ---------------------------------------------------------------------------------------------
// 3. real clients pointed at the gateway

/// The JSON a Python snippet printed as its last line.
fn last_json_line(stdout: &str) -> Value {
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {stdout}"))
}

const AIOINFLUX: &str = r#"
import asyncio, json, sys, time
from aioinflux import InfluxDBClient

async def main(port):
    async with InfluxDBClient(host='127.0.0.1', port=port, db='aiodb') as client:
        headers = await client.ping()
        print(json.dumps({'keys': sorted(headers), 'version': headers.get('X-Influxdb-Version')}))
        await client.create_database(db='aiodb')
        assert await client.write({'measurement': 'aio_dict', 'tags': {'host': 'a'},
                                   'fields': {'value': 0.5, 'n': 3, 'ok': True, 'msg': 'hi there'},
                                   'time': 1700000300000000000})
        assert await client.write('aio_line,host=b value=1.5 1700000301000000000')
        assert await client.write([{'measurement': 'aio_list', 'tags': {'i': str(i)},
                                    'fields': {'value': i + 0.25}, 'time': 1700000302000000000 + i}
                                   for i in range(3)])
        # No time: aioinflux ends the line with a space.
        assert await client.write({'measurement': 'aio_now', 'fields': {'value': 9.5}})
        q = 'SELECT * FROM /^aio_/ GROUP BY *'
        deadline = time.monotonic() + 20
        while True:
            result = await client.query(q)
            series = result['results'][0].get('series', [])
            if sum(len(s['values']) for s in series) >= 6 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        print(json.dumps(result))

asyncio.run(main(int(sys.argv[1])))
"#;

#[test]
fn aioinflux_works_through_the_gateway() {
    // The client creates its database through /query: that takes `query = "passthrough"`
    // (the default, read_only, refuses CREATE DATABASE). The text lands in [listeners.http].
    let stack = Stack::start("query = \"passthrough\"");
    let port = stack.ports.http.port().to_string();
    let before = now_ns();
    let stdout = Python::venv().run_ok(AIOINFLUX, &[&port], PYTHON_TIMEOUT);
    let after = now_ns();
    let mut lines = stdout.lines();
    // The header key as aiohttp delivered it: the case-sensitive dict has `X-Influxdb-Version`.
    let ping: Value = serde_json::from_str(lines.next().unwrap_or_default()).unwrap();
    let version = ping["version"].as_str().unwrap_or_else(|| {
        panic!("ping() headers lack the key `X-Influxdb-Version`: {ping}\n{stdout}")
    });
    assert!(version.starts_with("1."), "version {version:?}");
    assert!(stack.influx.databases().contains(&"aiodb".to_owned()));

    let mut points = stack.influx.wait_for_points("aiodb", 6, WAIT);
    let now = take_stamped_now(&mut points, "aio_now", before, after);
    assert_eq!(
        now,
        vec![point("aio_now", &[], 0, &[("value", json!(9.5))])]
    );
    assert_eq!(
        points,
        vec![
            point(
                "aio_dict",
                &[("host", "a")],
                1_700_000_300_000_000_000,
                &[
                    ("msg", json!("hi there")),
                    ("n", json!(3)),
                    ("ok", json!(true)),
                    ("value", json!(0.5))
                ]
            ),
            point(
                "aio_line",
                &[("host", "b")],
                1_700_000_301_000_000_000,
                &[("value", json!(1.5))]
            ),
            point(
                "aio_list",
                &[("i", "0")],
                1_700_000_302_000_000_000,
                &[("value", json!(0.25))]
            ),
            point(
                "aio_list",
                &[("i", "1")],
                1_700_000_302_000_000_001,
                &[("value", json!(1.25))]
            ),
            point(
                "aio_list",
                &[("i", "2")],
                1_700_000_302_000_000_002,
                &[("value", json!(2.25))]
            ),
        ]
    );
    assert_eq!(
        stack.influx.field_types("aiodb", "aio_dict"),
        [
            ("msg".to_owned(), "string".to_owned()),
            ("n".to_owned(), "integer".to_owned()),
            ("ok".to_owned(), "boolean".to_owned()),
            ("value".to_owned(), "float".to_owned()),
        ]
        .into()
    );
    // What the client read through the gateway's /query is what influxd answers itself.
    let through_gateway = last_json_line(&stdout);
    let direct = stack
        .influx
        .query("aiodb", "SELECT * FROM /^aio_/ GROUP BY *");
    assert_eq!(through_gateway, direct);
}

const INFLUXDB_PYTHON: &str = r#"
import json, sys, time
from influxdb import InfluxDBClient

client = InfluxDBClient('127.0.0.1', int(sys.argv[1]), 'root', 'root', 'pydb', gzip=True)
print(client.ping())
client.create_database('pydb')
for precision, t in (('s', 1700000200), ('ms', 1700000201123), ('u', 1700000202123456),
                     ('n', 1700000203123456789)):
    assert client.write_points([{'measurement': 'prec', 'tags': {'precision': precision},
                                 'time': t, 'fields': {'value': 1.5, 'count': 7}}],
                               time_precision=precision)
assert client.write_points([{'measurement': 'notime', 'tags': {'host': 'py'},
                             'fields': {'value': 2.5}}])
deadline = time.monotonic() + 20
while True:
    rows = list(client.query('SELECT * FROM prec', epoch='ns').get_points())
    rows += list(client.query('SELECT * FROM notime', epoch='ns').get_points())
    if len(rows) >= 5 or time.monotonic() > deadline:
        break
    time.sleep(0.05)
print(json.dumps(rows))
"#;

#[test]
fn influxdb_python_works_through_the_gateway() {
    // create_database('pydb') goes through /query: `query = "passthrough"` (in
    // [listeners.http], where this text lands) lets it.
    let stack = Stack::start("query = \"passthrough\"");
    let port = stack.ports.http.port().to_string();
    let before = now_ns();
    let stdout = Python::venv().run_ok(INFLUXDB_PYTHON, &[&port], PYTHON_TIMEOUT);
    let after = now_ns();
    assert!(
        stdout.lines().next().is_some_and(|v| v.starts_with("1.")),
        "ping() should return the X-Influxdb-Version: {stdout}"
    );

    let mut points = stack.influx.wait_for_points("pydb", 5, WAIT);
    let now = take_stamped_now(&mut points, "notime", before, after);
    assert_eq!(
        now,
        vec![point(
            "notime",
            &[("host", "py")],
            0,
            &[("value", json!(2.5))]
        )]
    );
    let prec = |precision: &str, time: i64| {
        point(
            "prec",
            &[("precision", precision)],
            time,
            &[("count", json!(7)), ("value", json!(1.5))],
        )
    };
    assert_eq!(
        points,
        vec![
            prec("ms", 1_700_000_201_123_000_000),
            prec("n", 1_700_000_203_123_456_789),
            prec("s", 1_700_000_200_000_000_000),
            prec("u", 1_700_000_202_123_456_000),
        ]
    );
    assert_eq!(
        stack.influx.field_types("pydb", "prec"),
        [
            ("count".to_owned(), "integer".to_owned()),
            ("value".to_owned(), "float".to_owned()),
        ]
        .into()
    );
    // The rows the client read back through the gateway's /query.
    let rows = last_json_line(&stdout);
    let rows = rows.as_array().expect("a list of rows");
    let prec_rows: Vec<&Value> = rows.iter().filter(|r| r.get("count").is_some()).collect();
    assert_eq!(
        prec_rows,
        vec![
            &json!({"time": 1_700_000_200_000_000_000_i64, "count": 7, "precision": "s", "value": 1.5}),
            &json!({"time": 1_700_000_201_123_000_000_i64, "count": 7, "precision": "ms", "value": 1.5}),
            &json!({"time": 1_700_000_202_123_456_000_i64, "count": 7, "precision": "u", "value": 1.5}),
            &json!({"time": 1_700_000_203_123_456_789_i64, "count": 7, "precision": "n", "value": 1.5}),
        ],
        "{stdout}"
    );
    assert_eq!(rows.len(), 5, "{stdout}");
    assert_eq!(rows[4]["host"], json!("py"), "{stdout}");
    assert_eq!(rows[4]["value"], json!(2.5), "{stdout}");
}

const INFLUXDB_CLIENT_V2: &str = r#"
import sys
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

with InfluxDBClient(url=sys.argv[1], token='my-token', org='my-org', enable_gzip=True,
                    timeout=10_000) as client:
    write = client.write_api(write_options=SYNCHRONOUS)
    write.write(bucket='db/autogen', record=[
        Point('v2_point').tag('host', 'a').field('value', 1.25).field('n', 4)
            .time(1700000400123456789, WritePrecision.NS),
        Point('v2_point').tag('host', 'b').field('value', -2.0).field('ok', False)
            .time(1700000401, WritePrecision.S),
        Point('v2_now').tag('host', 'c').field('value', 5.5),
    ])
    write.write(bucket='db/autogen', record='v2_line,host=d value=3 1700000402123',
                write_precision=WritePrecision.MS)
    write.write(bucket='db/autogen', record=['v2_line,host=e value=4 1700000403000000007',
                                             'v2_line,host=f text="x y" 1700000404000000000'])
    print('written')
"#;

#[test]
fn influxdb_client_v2_works_through_the_gateway() {
    let stack = Stack::start("");
    stack.influx.create_database("db");
    let before = now_ns();
    let stdout = Python::venv().run_ok(INFLUXDB_CLIENT_V2, &[&stack.gateway.url()], PYTHON_TIMEOUT);
    let after = now_ns();
    assert_eq!(stdout, "written\n");
    let mut points = stack.influx.wait_for_points("db", 6, WAIT);
    let now = take_stamped_now(&mut points, "v2_now", before, after);
    assert_eq!(
        now,
        vec![point(
            "v2_now",
            &[("host", "c")],
            0,
            &[("value", json!(5.5))]
        )]
    );
    assert_eq!(
        points,
        vec![
            point(
                "v2_line",
                &[("host", "d")],
                1_700_000_402_123_000_000,
                &[("value", json!(3))]
            ),
            point(
                "v2_line",
                &[("host", "e")],
                1_700_000_403_000_000_007,
                &[("value", json!(4))]
            ),
            point(
                "v2_line",
                &[("host", "f")],
                1_700_000_404_000_000_000,
                &[("text", json!("x y"))]
            ),
            point(
                "v2_point",
                &[("host", "a")],
                1_700_000_400_123_456_789,
                &[("n", json!(4)), ("value", json!(1.25))]
            ),
            point(
                "v2_point",
                &[("host", "b")],
                1_700_000_401_000_000_000,
                &[("ok", json!(false)), ("value", json!(-2))]
            ),
        ]
    );
    assert_eq!(
        stack.influx.field_types("db", "v2_point"),
        [
            ("n".to_owned(), "integer".to_owned()),
            ("ok".to_owned(), "boolean".to_owned()),
            ("value".to_owned(), "float".to_owned()),
        ]
        .into()
    );
}

const AIOGRAPHITE: &str = r#"
import asyncio, json, sys
from aiographite.aiographite import AIOGraphite, connect
from aiographite.protocol import PlaintextProtocol, PickleProtocol

async def main(line_port, pickle_port):
    plain = await connect('127.0.0.1', line_port, PlaintextProtocol())
    names = [plain.clean_and_join_metric_parts(parts) for parts in (
        ['aiographite', 'plain', 'hôst.example.com', 'cpu load'],
        ['aiographite', 'plain', 'métrica', '100%'],
        ['aiographite', 'plain', 'ascii'],
        ['aiographite', 'pickle', 'dîsk', 'sda/1'],
        ['aiographite', 'pickle', 'ascii'],
        ['aiographite', 'pickle', '日本'],
    )]
    await plain.send(names[0], 42, 1700000500)
    await plain.send_multiple([(names[1], 1.25, 1700000501), (names[2], -7, 1700000502)])
    await plain.close()
    async with AIOGraphite('127.0.0.1', pickle_port, PickleProtocol()) as pickle:
        await pickle.send_multiple([(names[3], -3.5, 1700000503), (names[4], 100, 1700000504)])
        await pickle.send(names[5], 0.125, 1700000505)
    print(json.dumps(names))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"#;

#[test]
fn aiographite_plaintext_and_pickle_senders_land() {
    let stack = Stack::start("");
    let line = stack.ports.plaintext.port().to_string();
    let pickle = stack.ports.pickle.port().to_string();
    let stdout = Python::venv().run_ok(AIOGRAPHITE, &[&line, &pickle], PYTHON_TIMEOUT);
    let names: Vec<String> = serde_json::from_value(last_json_line(&stdout)).unwrap();
    // aiographite 0.2 encodes each part as `quote(part.encode('punycode'))` with `.` as `%2E`.
    assert_eq!(
        names,
        vec![
            "aiographite-.plain-.hst%2Eexample%2Ecom-csb.cpu%20load-",
            "aiographite-.plain-.mtrica-bva.100%25-",
            "aiographite-.plain-.ascii-",
            "aiographite-.pickle-.dsk-vma.sda/1-",
            "aiographite-.pickle-.ascii-",
            "aiographite-.pickle-.wgv71a",
        ]
    );
    let points = stack.influx.wait_for_points(GRAPHITE_DB, 6, WAIT);
    let values = [
        json!(42),
        json!(1.25),
        json!(-7),
        json!(-3.5),
        json!(100),
        json!(0.125),
    ];
    let mut expected: Vec<Point> = names
        .iter()
        .zip(values)
        .zip(0..)
        .map(|((name, value), i)| graphite_point(name, &[], 1_700_000_500 + i, value))
        .collect();
    expected.sort_by(|a, b| a.measurement.cmp(&b.measurement));
    assert_eq!(points, expected);
    stack.wait_for_metric(
        "fluxgate_received_total",
        &[("listener", "plaintext_tcp")],
        3.0,
    );
    stack.wait_for_metric("fluxgate_received_total", &[("listener", "pickle")], 3.0);
    stack.assert_nothing_rejected();
}
