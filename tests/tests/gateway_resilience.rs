//! What the gateway does when things go wrong: an upstream outage, malformed input, refused
//! HTTP writes, connection and frame limits, hostile pickles, an InfluxDB 2.x upstream that
//! throttles, fails, refuses or finds a batch too large, a stalled upstream with a full queue,
//! and SIGTERM / SIGHUP.
//!
//! A real `influxd` is the upstream everywhere it can be. InfluxDB 2.x does not run here, so
//! its write API is played by [`InfluxV2Mock`], a small server answering as PROTOCOLS.md §5 says
//! the real one does (`{"code","message"}` JSON, Retry-After); the same server, never answering,
//! plays a stalled upstream.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use fluxgate_e2e::{
    connect_sender as connect, eventually, finish_sender as finish, free_port, gzip, http_request,
    loopback, metric, pickle_frame, send_lines, send_tcp, wait_metric, Gateway, HttpResponse,
    InfluxDb, InfluxV2Mock, Point, Python, Received, Reply,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
const PYTHON_TIMEOUT: Duration = Duration::from_secs(60);

/// Graphite timestamps start here (seconds); point `i` of a stream is at `BASE + i`.
const BASE: i64 = 1_700_000_000;

// ---------------------------------------------------------------------------------------------
// helpers

/// `SELECT count(value)` of one measurement; 0 when it (or the database) does not exist.
fn count(influx: &InfluxDb, db: &str, measurement: &str) -> u64 {
    let json = influx.query(db, &format!("SELECT count(value) FROM \"{measurement}\""));
    json["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0)
}

/// Polls until `db` holds exactly `n` points in total and returns them (sorted by
/// measurement, tags, time). More than `n` fails at once.
fn wait_exact_points(influx: &InfluxDb, db: &str, n: usize) -> Vec<Point> {
    influx.wait_exact_points(db, n, WAIT)
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

/// A number as InfluxDB's JSON writes it: a float with no fraction comes back as an integer.
#[allow(clippy::cast_possible_truncation)]
fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// A Graphite point stored by the default template: field `value`, time in seconds.
fn graphite_point(measurement: &str, seconds: i64, value: f64) -> Point {
    point(
        measurement,
        &[],
        seconds * 1_000_000_000,
        &[("value", number(value))],
    )
}

/// The value sent for point `i` of a stream: exact in binary, distinct per point.
fn value_of(i: usize) -> f64 {
    i as f64 + 0.25
}

/// Plaintext line `i` of a stream of `measurement`.
fn stream_line(measurement: &str, i: usize) -> String {
    format!("{measurement} {} {}", value_of(i), BASE + i as i64)
}

fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    http_request("POST", url, headers, body).unwrap_or_else(|err| panic!("POST {url}: {err}"))
}

/// Asserts that the gateway closed `stream` (EOF or reset) within a few seconds, without
/// sending anything.
fn assert_closed_by_gateway(stream: &mut TcpStream, what: &str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set read timeout");
    let mut buf = [0_u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!(
            "{what}: the gateway sent {:?} instead of closing",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(err) => panic!("{what}: the connection is still open after 5 s ({err})"),
    }
}

/// The `[[outputs.influxdb]]` retry settings every test here uses, so that a failed send is
/// retried quickly.
const FAST_RETRY: &str = "retry_initial = \"50ms\"\nretry_max = \"1s\"";

// ---------------------------------------------------------------------------------------------
// 1. an upstream outage loses nothing

#[test]
fn upstream_outage_loses_no_point() {
    const POINTS: usize = 20_000;
    const PER_TICK: usize = 100;
    const TICK: Duration = Duration::from_millis(100);
    const MEASUREMENT: &str = "e2e.outage";

    let mut influx = InfluxDb::start();
    influx.create_database("graphite");
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
[[outputs.influxdb]]
name = "influx"
url = "{url}"
database = "graphite"
flush_interval = "100ms"
{FAST_RETRY}
"#,
            url = influx.url()
        ),
        http,
    );

    // One collectd-like sender: 100 points every 100 ms for 20 s on one connection.
    let sender = thread::spawn(move || {
        let mut stream = connect(plaintext);
        let start = Instant::now();
        for tick in 0..POINTS / PER_TICK {
            let mut chunk = String::new();
            for i in tick * PER_TICK..(tick + 1) * PER_TICK {
                let _ = writeln!(chunk, "{}", stream_line(MEASUREMENT, i));
            }
            stream
                .write_all(chunk.as_bytes())
                .unwrap_or_else(|err| panic!("sender: write failed at tick {tick}: {err}"));
            let next = start + TICK * u32::try_from(tick + 1).expect("few ticks");
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        finish(stream);
    });

    // Let the stream flow into influxd for a while, then take influxd away for 10 s.
    eventually(WAIT, || match count(&influx, "graphite", MEASUREMENT) {
        n if n >= 2_000 => Ok(()),
        n => Err(format!("only {n} points stored before the outage")),
    });
    influx.stop();
    let down_since = Instant::now();
    eventually(Duration::from_secs(9), || {
        match metric(
            &gateway,
            "fluxgate_send_errors_total",
            &[("output", "influx"), ("reason", "connect")],
        ) {
            n if n > 0.0 => Ok(()),
            _ => Err(format!(
                "no connect error counted while influxd is down\n{}",
                gateway.metrics()
            )),
        }
    });
    // The outage is the scenario, not an assertion: it lasts 10 s whatever happens.
    thread::sleep(Duration::from_secs(10).saturating_sub(down_since.elapsed()));
    influx.start_again();

    sender.join().expect("sender thread");
    eventually(Duration::from_secs(30), || {
        match count(&influx, "graphite", MEASUREMENT) {
            n if n == POINTS as u64 => Ok(()),
            n => Err(format!(
                "{n} of {POINTS} points stored after the outage\n{}",
                gateway.metrics()
            )),
        }
    });
    let stored = influx.select("graphite", &format!("SELECT value FROM \"{MEASUREMENT}\""));
    assert_eq!(stored.len(), POINTS);
    let mut wrong = Vec::new();
    for (i, p) in stored.iter().enumerate() {
        let expected = graphite_point(MEASUREMENT, BASE + i as i64, value_of(i));
        if *p != expected && wrong.len() < 10 {
            wrong.push(format!("expected {expected:?}, stored {p:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "points stored wrong:\n{}",
        wrong.join("\n")
    );

    assert!(
        metric(&gateway, "fluxgate_retries_total", &[("output", "influx")]) > 0.0,
        "{}",
        gateway.metrics()
    );
    assert_eq!(
        metric(&gateway, "fluxgate_dropped_total", &[("output", "influx")]),
        0.0,
        "{}",
        gateway.metrics()
    );
    wait_metric(
        &gateway,
        "fluxgate_queue_points",
        &[("output", "influx")],
        0.0,
    );
    wait_metric(
        &gateway,
        "fluxgate_sent_points_total",
        &[("output", "influx")],
        POINTS as f64,
    );
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_received_total",
            &[("listener", "plaintext_tcp")]
        ),
        POINTS as f64
    );
    // The outage is one line in the log when it starts and one when it ends, not a line per
    // retry; every delivered request is in the receipt-to-acknowledgement histogram.
    let log = gateway.log();
    assert_eq!(log.matches("upstream is failing").count(), 1, "{log}");
    assert_eq!(
        log.matches("upstream is delivering again").count(),
        1,
        "{log}"
    );
    assert!(log.contains("fluxgate started"), "{log}");
    assert!(
        metric(
            &gateway,
            "fluxgate_write_latency_seconds_count",
            &[("output", "influx")]
        ) >= 1.0
    );
}

// ---------------------------------------------------------------------------------------------
// 2. a malformed line costs only that line

#[test]
fn malformed_plaintext_lines_cost_only_themselves() {
    const LINES: usize = 1_000;
    const MEASUREMENT: &str = "e2e.malformed";
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
[listeners.plaintext]
tcp = "{plaintext}"
max_line_bytes = 256
[listeners.http]
address = "{http}"
[[outputs.influxdb]]
name = "influx"
url = "{url}"
database = "graphite"
flush_interval = "100ms"
{FAST_RETRY}
"#,
            url = influx.url()
        ),
        http,
    );

    // Line 100 has four fields, line 500 a value Python's float() refuses, line 800 is 70 kB
    // (longer than one read of the gateway, so it is discarded across reads).
    let bad = [100, 500, 800];
    let mut body = String::new();
    for i in 0..LINES {
        let line = match i {
            100 => format!("{MEASUREMENT} {} {} extra", value_of(i), BASE + 100),
            500 => format!("{MEASUREMENT} twelve {}", BASE + 500),
            800 => format!("{MEASUREMENT}.{} {} {}", "x".repeat(70_000), 1, BASE + 800),
            _ => stream_line(MEASUREMENT, i),
        };
        body.push_str(&line);
        body.push('\n');
    }
    let mut stream = connect(plaintext);
    stream.write_all(body.as_bytes()).expect("send the stream");

    let good = LINES - bad.len();
    wait_metric(
        &gateway,
        "fluxgate_received_total",
        &[("listener", "plaintext_tcp")],
        good as f64,
    );
    let rejected = |reason: &str| {
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "plaintext_tcp"), ("reason", reason)],
        )
    };
    for reason in ["field_count", "invalid_value", "line_too_long"] {
        assert_eq!(rejected(reason), 1.0, "{reason}\n{}", gateway.metrics());
    }
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "plaintext_tcp")]
        ),
        3.0,
        "{}",
        gateway.metrics()
    );

    let stored = wait_exact_points(&influx, "graphite", good);
    let expected: Vec<Point> = (0..LINES)
        .filter(|i| !bad.contains(i))
        .map(|i| graphite_point(MEASUREMENT, BASE + i as i64, value_of(i)))
        .collect();
    assert_eq!(stored, expected);

    // The connection is still open: a line sent on it now lands too.
    stream
        .write_all(format!("{MEASUREMENT}.after 7 {BASE}\n").as_bytes())
        .expect("the connection is still open");
    finish(stream);
    let stored = wait_exact_points(&influx, "graphite", good + 1);
    assert!(
        stored.contains(&graphite_point(&format!("{MEASUREMENT}.after"), BASE, 7.0)),
        "the line after the bad ones did not land"
    );
}

/// Every kind of bad line is counted under its own reason, good lines around it land, and
/// `max_line_bytes` counts the line without its newline (exactly the limit is accepted).
#[test]
fn every_kind_of_bad_plaintext_line_is_counted_by_its_reason() {
    const MAX_LINE: usize = 256;
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
[listeners.plaintext]
tcp = "{plaintext}"
max_line_bytes = {MAX_LINE}
[listeners.http]
address = "{http}"
[[outputs.influxdb]]
name = "influx"
url = "{url}"
database = "graphite"
flush_interval = "100ms"
{FAST_RETRY}
"#,
            url = influx.url()
        ),
        http,
    );
    let long_line = |len: usize| {
        let tail = format!(" 1 {BASE}");
        let head = "e2e.long.";
        format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
    };
    let too_long = long_line(MAX_LINE + 1);
    let bad: &[(&[u8], &str)] = &[
        (b"e2e.bad 1 abc", "invalid_timestamp"),
        (b"e2e.bad 1 nan", "invalid_timestamp"),
        (b"e2e.bad nan 1700000000", "nan"),
        (b"e2e.bad inf 1700000000", "infinite"),
        (b"e2e.bad;=v 1 1700000000", "invalid_tag"),
        (b"e2e.bad;k=~x 1 1700000000", "invalid_tag"),
        (b"e2e.bad;novalue 1 1700000000", "invalid_tag"),
        (b";k=v 1 1700000000", "invalid_tag"),
        (b"e2e.\xff\xfe 1 1700000000", "invalid_utf8"),
        (b"e2e.bad 1 1e12", "timestamp_out_of_range"),
        (b"e2e.bad", "field_count"),
        (b"e2e.bad 1 2 3", "field_count"),
        (too_long.as_bytes(), "line_too_long"),
    ];
    let mut body = Vec::new();
    let mut expected = Vec::new();
    for (i, (line, _)) in bad.iter().enumerate() {
        body.extend_from_slice(format!("{}\n", stream_line("e2e.good", i)).as_bytes());
        expected.push(graphite_point("e2e.good", BASE + i as i64, value_of(i)));
        body.extend_from_slice(line);
        body.push(b'\n');
    }
    // Exactly max_line_bytes long: accepted.
    let longest = long_line(MAX_LINE);
    assert_eq!(longest.len(), MAX_LINE);
    body.extend_from_slice(longest.as_bytes());
    body.push(b'\n');
    expected.push(graphite_point(
        longest.split(' ').next().unwrap_or_default(),
        BASE,
        1.0,
    ));
    send_tcp(plaintext, &body);

    let stored = wait_exact_points(&influx, "graphite", expected.len());
    expected.sort_by(|a, b| (&a.measurement, a.time).cmp(&(&b.measurement, b.time)));
    assert_eq!(stored, expected);
    let mut reasons: Vec<&str> = bad.iter().map(|(_, reason)| *reason).collect();
    reasons.sort_unstable();
    reasons.dedup();
    let mut wrong = String::new();
    for reason in reasons {
        let want = bad.iter().filter(|(_, r)| *r == reason).count() as f64;
        let got = metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "plaintext_tcp"), ("reason", reason)],
        );
        if got != want {
            let _ = writeln!(wrong, "reason {reason:?}: counted {got}, expected {want}");
        }
    }
    assert!(wrong.is_empty(), "{wrong}\n{}", gateway.metrics());
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "plaintext_tcp")]
        ),
        bad.len() as f64,
        "{}",
        gateway.metrics()
    );
}

// ---------------------------------------------------------------------------------------------
// 3. HTTP /write: partial writes, refused writes, body limits

/// A gateway with only the HTTP listener, `max_body_bytes = 4096`, one lane (so a later
/// write lands after an earlier one), in front of a fresh influxd.
fn http_stack(databases: &[&str]) -> (Gateway, InfluxDb) {
    let influx = InfluxDb::start();
    for db in databases {
        influx.create_database(db);
    }
    let http = loopback(free_port());
    let gateway = Gateway::start(
        &format!(
            r#"
[listeners.http]
address = "{http}"
max_body_bytes = 4096
[[outputs.influxdb]]
name = "influx"
url = "{url}"
flush_interval = "100ms"
max_in_flight = 1
{FAST_RETRY}
"#,
            url = influx.url()
        ),
        http,
    );
    (gateway, influx)
}

/// Status, JSON body and `X-Influxdb-Error` header of a response.
fn answer(response: &HttpResponse) -> (u16, Value, Option<String>) {
    (
        response.status,
        response.json(),
        response.header("X-Influxdb-Error").map(str::to_owned),
    )
}

#[test]
fn http_partial_and_refused_writes_answer_like_influxdb() {
    let (gateway, influx) = http_stack(&["httpdb", "v2db", "direct"]);
    let v1 = format!("{}/write?db=httpdb", gateway.url());
    let v2 = format!(
        "{}/api/v2/write?org=acme&bucket=v2db&precision=ns",
        gateway.url()
    );

    // Some lines bad: 400 "partial write", the good lines are written.
    let partial = b"e2e.partial,n=1 v=1 1700000000000000000\nbad line\n\
                    e2e.partial,n=2 v=2 1700000000000000001\nalso bad\n";
    let errors = "unable to parse 'bad line': invalid field format\n\
                  unable to parse 'also bad': invalid field format";
    let message = format!("partial write: {errors} dropped=2");
    assert_eq!(
        answer(&post(&v1, &[], partial)),
        (
            400,
            json!({ "error": message }),
            Some(message.replace('\n', " "))
        )
    );
    // influxd itself says the same up to its own `dropped=` count.
    let direct = influx.request("POST", "/write?db=direct", partial);
    assert_eq!(direct.status, 400);
    let theirs = direct.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        theirs.split(" dropped=").next(),
        message.split(" dropped=").next(),
        "influxd: {theirs}"
    );

    // Every line bad: 400 without "partial write".
    assert_eq!(
        answer(&post(&v1, &[], b"bad line\nalso bad")),
        (
            400,
            json!({ "error": errors }),
            Some(errors.replace('\n', " "))
        )
    );

    // No database.
    for url in [
        format!("{}/write", gateway.url()),
        format!("{}/write?db=", gateway.url()),
    ] {
        assert_eq!(
            answer(&post(&url, &[], b"e2e.nodb v=1 1700000000000000000")),
            (
                400,
                json!({ "error": "database is required" }),
                Some("database is required".to_owned())
            ),
            "{url}"
        );
    }

    // v2: one bad line rejects the whole request.
    let response = post(
        &v2,
        &[("Authorization", "Token t")],
        b"e2e.v2bad v=1 1700000000000000000\nbad line\n",
    );
    assert_eq!(
        (response.status, response.json()),
        (
            400,
            json!({"code": "invalid", "message": "unable to parse 'bad line': invalid field format"})
        )
    );

    // Sentinels written after everything above: once they are stored, anything accepted
    // earlier would be stored too (one lane, in order).
    assert_eq!(
        post(&v1, &[], b"e2e.sentinel v=1 1700000000000000009").status,
        204
    );
    assert_eq!(
        post(&v2, &[], b"e2e.sentinel v=2 1700000000000000009").status,
        204
    );
    let ns = |t: i64| 1_700_000_000_000_000_000 + t;
    assert_eq!(
        wait_exact_points(&influx, "httpdb", 3),
        vec![
            point("e2e.partial", &[("n", "1")], ns(0), &[("v", json!(1))]),
            point("e2e.partial", &[("n", "2")], ns(1), &[("v", json!(2))]),
            point("e2e.sentinel", &[], ns(9), &[("v", json!(1))]),
        ]
    );
    assert_eq!(
        wait_exact_points(&influx, "v2db", 1),
        vec![point("e2e.sentinel", &[], ns(9), &[("v", json!(2))])]
    );
    let http = [("listener", "http")];
    assert_eq!(
        metric(&gateway, "fluxgate_received_total", &http),
        4.0,
        "{}",
        gateway.metrics()
    );
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "http"), ("reason", "invalid_line")]
        ),
        5.0,
        "{}",
        gateway.metrics()
    );
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "http"), ("reason", "bad_request")]
        ),
        2.0,
        "{}",
        gateway.metrics()
    );
}

/// One line of line protocol exactly `len` bytes long (a string field pads it).
fn body_of_len(case: &str, len: usize) -> Vec<u8> {
    let head = format!("e2e.limit,case={case} s=\"");
    let tail = "\" 1700000000000000000";
    let pad = len - head.len() - tail.len();
    let body = format!("{head}{}{tail}", "x".repeat(pad));
    assert_eq!(body.len(), len);
    body.into_bytes()
}

#[test]
fn http_body_limit_applies_before_and_after_gzip() {
    const LIMIT: usize = 4096;
    let (gateway, influx) = http_stack(&["limits"]);
    let v1 = format!("{}/write?db=limits", gateway.url());
    let v2 = format!("{}/api/v2/write?org=acme&bucket=limits", gateway.url());
    let gzipped = [("Content-Encoding", "gzip")];
    let too_large = format!("request body too large: the limit is {LIMIT} bytes");
    let too_large_gz = format!("{too_large} after decompression");

    // Exactly at the limit: accepted, plain and gzipped.
    assert_eq!(
        post(&v1, &[], &body_of_len("plain", LIMIT)).status,
        204,
        "a body of exactly max_body_bytes"
    );
    assert_eq!(
        post(&v1, &gzipped, &gzip(&body_of_len("gzip", LIMIT))).status,
        204,
        "a gzip body of exactly max_body_bytes once decompressed"
    );
    // One byte over: 413.
    assert_eq!(
        answer(&post(&v1, &[], &body_of_len("over", LIMIT + 1))),
        (413, json!({ "error": too_large }), Some(too_large.clone()))
    );
    // A gzip body far under the limit that decompresses over it: 413 as well.
    let bomb = gzip(&body_of_len("bomb", 64 * LIMIT));
    assert!(bomb.len() < LIMIT, "{} compressed bytes", bomb.len());
    assert_eq!(
        answer(&post(&v1, &gzipped, &bomb)),
        (
            413,
            json!({ "error": too_large_gz }),
            Some(too_large_gz.clone())
        )
    );
    // v2 says it in its own dialect.
    let response = post(&v2, &[], &body_of_len("v2over", LIMIT + 1));
    assert_eq!(
        (response.status, response.json()),
        (
            413,
            json!({"code": "request too large", "message": too_large})
        )
    );
    // Not gzip at all.
    let response = post(&v1, &gzipped, b"e2e.limit v=1 1700000000000000000");
    assert_eq!(response.status, 400, "{}", response.text());

    let stored = wait_exact_points(&influx, "limits", 2);
    let cases: Vec<&str> = stored.iter().map(|p| p.tags["case"].as_str()).collect();
    assert_eq!(cases, ["gzip", "plain"]);
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "http"), ("reason", "body_too_large")]
        ),
        3.0,
        "{}",
        gateway.metrics()
    );
}

/// A string field may hold a newline (InfluxDB's scanner does not end a line inside quotes,
/// and the gateway's `/write` accepts such points). Batching, lanes and batch boundaries must
/// keep each point whole: every point accepted with 204 is stored, counted once.
#[test]
fn http_string_fields_with_newlines_survive_batching() {
    const POINTS: i64 = 20;
    let influx = InfluxDb::start();
    influx.create_database("logs");
    let http = loopback(free_port());
    // Four lanes and small batches: points spread over lanes and batches end often.
    let gateway = Gateway::start(
        &format!(
            r#"
[listeners.http]
address = "{http}"
[[outputs.influxdb]]
name = "influx"
url = "{url}"
flush_interval = "100ms"
batch_size = 5
max_in_flight = 4
{FAST_RETRY}
"#,
            url = influx.url()
        ),
        http,
    );
    let mut body = String::new();
    for i in 0..POINTS {
        let _ = writeln!(
            body,
            "e2e.multiline,host=h{i} message=\"first line {i}\nsecond line\",n={i}i {}",
            1_700_000_000_000_000_000 + i
        );
    }
    let response = post(
        &format!("{}/write?db=logs", gateway.url()),
        &[],
        body.as_bytes(),
    );
    assert_eq!(response.status, 204, "{}", response.text());
    // Exactly these points, whatever the gateway counts.
    let expected: Vec<Point> = (0..POINTS)
        .map(|i| {
            point(
                "e2e.multiline",
                &[("host", &format!("h{i}"))],
                1_700_000_000_000_000_000 + i,
                &[
                    ("message", json!(format!("first line {i}\nsecond line"))),
                    ("n", json!(i)),
                ],
            )
        })
        .collect();
    let mut expected = expected;
    expected.sort_by(|a, b| a.tags.cmp(&b.tags));
    eventually(WAIT, || {
        let sent = metric(
            &gateway,
            "fluxgate_sent_points_total",
            &[("output", "influx")],
        );
        let dropped = metric(&gateway, "fluxgate_dropped_total", &[("output", "influx")]);
        if sent + dropped >= POINTS as f64 {
            Ok(())
        } else {
            Err(format!("{sent} sent, {dropped} dropped of {POINTS}"))
        }
    });
    let stored = influx.points("logs");
    assert_eq!(
        stored.len(),
        expected.len(),
        "{} of {POINTS} points accepted with 204 were stored\n{}\n{}",
        stored.len(),
        gateway.metrics(),
        gateway.log_tail(10)
    );
    assert_eq!(stored, expected);
    wait_metric(
        &gateway,
        "fluxgate_sent_points_total",
        &[("output", "influx")],
        POINTS as f64,
    );
    assert_eq!(
        metric(&gateway, "fluxgate_dropped_total", &[("output", "influx")]),
        0.0
    );
}

/// What a real InfluxDB 1.x refuses is counted and not retried: a field type conflict (400
/// partial write: the other points of the batch are written), a database that does not exist
/// (404), and wrong credentials (401). Right credentials can come from the environment.
#[test]
fn influxdb_v1_refusals_are_counted_and_not_retried() {
    let influx = InfluxDb::builder().admin("admin", "s3cret").start();
    influx.create_database("graphite");
    // An integer field first: a float for the same field later is a type conflict.
    influx.write("graphite", "e2e.conflict value=1i 1700000000000000000");
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let output = |name: &str, database: &str, password: &str| {
        format!(
            r#"
[[outputs.influxdb]]
name = "{name}"
url = "{url}"
database = "{database}"
username = "admin"
password = "{password}"
flush_interval = "100ms"
max_in_flight = 1
create_database = false
{FAST_RETRY}
"#,
            url = influx.url()
        )
    };
    let config = format!(
        "[listeners.plaintext]\ntcp = \"{plaintext}\"\n[listeners.http]\naddress = \"{http}\"\n{}{}{}",
        // The password of `good` comes from FLUXGATE_GOOD_PASSWORD.
        output("good", "graphite", ""),
        output("missing", "nonexistent", "s3cret"),
        output("wrongpass", "graphite", "wrong"),
    );
    let gateway = Gateway::builder(&config)
        .http_addr(http)
        .env("FLUXGATE_GOOD_PASSWORD", "s3cret")
        .start();

    // One batch: a point that conflicts and one that does not.
    send_lines(
        plaintext,
        [
            format!("e2e.conflict 2.5 {}", BASE + 1),
            format!("e2e.ok 1 {BASE}"),
        ],
    );
    let dropped = |output: &'static str, reason: &'static str| {
        metric(
            &gateway,
            "fluxgate_dropped_total",
            &[("output", output), ("reason", reason)],
        )
    };
    eventually(WAIT, || {
        let counts = (
            dropped("good", "partial_write"),
            dropped("missing", "not_found"),
            dropped("wrongpass", "unauthorized"),
        );
        if counts == (1.0, 2.0, 2.0) {
            Ok(())
        } else {
            Err(format!(
                "dropped (partial_write, not_found, unauthorized) = {counts:?}\n{}",
                gateway.metrics()
            ))
        }
    });
    // The good half of the partial write is stored, once.
    assert_eq!(
        wait_exact_points(&influx, "graphite", 2),
        vec![
            point(
                "e2e.conflict",
                &[],
                1_700_000_000_000_000_000,
                &[("value", json!(1))]
            ),
            graphite_point("e2e.ok", BASE, 1.0),
        ]
    );
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_sent_points_total",
            &[("output", "good")]
        ),
        1.0
    );
    for output in ["good", "missing", "wrongpass"] {
        assert_eq!(
            metric(&gateway, "fluxgate_retries_total", &[("output", output)]),
            0.0,
            "{output} retried a refused write\n{}",
            gateway.metrics()
        );
        wait_metric(
            &gateway,
            "fluxgate_queue_points",
            &[("output", output)],
            0.0,
        );
    }
    for (output, reason) in [
        ("good", "http_400"),
        ("missing", "http_404"),
        ("wrongpass", "http_401"),
    ] {
        assert_eq!(
            metric(
                &gateway,
                "fluxgate_send_errors_total",
                &[("output", output), ("reason", reason)]
            ),
            1.0,
            "{output}"
        );
    }
    // With `create_database = false` the gateway creates nothing: `nonexistent` still does not
    // exist.
    assert!(!influx.databases().contains(&"nonexistent".to_owned()));
}

// ---------------------------------------------------------------------------------------------
// 4. connection and frame limits, hostile pickles

#[test]
fn plaintext_max_connections_refuses_only_the_extra_connection() {
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
[listeners.plaintext]
tcp = "{plaintext}"
max_connections = 2
[listeners.http]
address = "{http}"
[[outputs.influxdb]]
name = "influx"
url = "{url}"
database = "graphite"
flush_interval = "100ms"
{FAST_RETRY}
"#,
            url = influx.url()
        ),
        http,
    );
    let conns = [("listener", "plaintext_tcp")];
    let mut first = connect(plaintext);
    let mut second = connect(plaintext);
    wait_metric(&gateway, "fluxgate_connections", &conns, 2.0);

    let mut third = connect(plaintext);
    assert_closed_by_gateway(&mut third, "a third connection with max_connections = 2");
    wait_metric(
        &gateway,
        "fluxgate_rejected_total",
        &[("listener", "plaintext_tcp"), ("reason", "max_connections")],
        1.0,
    );

    // The two connections holding the slots still work.
    first
        .write_all(format!("e2e.conn.first 1 {BASE}\n").as_bytes())
        .expect("first connection");
    second
        .write_all(format!("e2e.conn.second 2 {BASE}\n").as_bytes())
        .expect("second connection");
    wait_exact_points(&influx, "graphite", 2);

    // A freed slot is usable again.
    finish(first);
    wait_metric(&gateway, "fluxgate_connections", &conns, 1.0);
    let fourth = connect(plaintext);
    let mut fourth_writer = fourth.try_clone().expect("clone");
    fourth_writer
        .write_all(format!("e2e.conn.fourth 4 {BASE}\n").as_bytes())
        .expect("fourth connection");
    finish(fourth);
    finish(second);
    assert_eq!(
        wait_exact_points(&influx, "graphite", 3),
        vec![
            graphite_point("e2e.conn.first", BASE, 1.0),
            graphite_point("e2e.conn.fourth", BASE, 4.0),
            graphite_point("e2e.conn.second", BASE, 2.0),
        ]
    );
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "plaintext_tcp")]
        ),
        1.0,
        "{}",
        gateway.metrics()
    );
}

/// `pickle.loads` of this calls `os.system(command)` (what Python's own
/// `pickle.dumps(obj, protocol=0)` writes for an object whose `__reduce__` returns
/// `(os.system, (command,))`): GLOBAL, MARK, UNICODE, TUPLE, REDUCE.
fn hostile_protocol_0(command: &str) -> Vec<u8> {
    format!("cposix\nsystem\n(V{command}\ntR.").into_bytes()
}

/// A protocol-4 pickle of `[("e2e.pickle.evil", (1700000000, os.system(command)))]`: it
/// looks like a datapoint list, and Python would run the command and yield a datapoint
/// carbon stores (STACK_GLOBAL, REDUCE inside the list).
fn hostile_protocol_4(command: &str) -> Vec<u8> {
    let mut body = vec![0x80, 4, b']', b'('];
    let short = |body: &mut Vec<u8>, text: &str| {
        body.push(0x8c); // SHORT_BINUNICODE
        body.push(u8::try_from(text.len()).expect("short string"));
        body.extend_from_slice(text.as_bytes());
    };
    short(&mut body, "e2e.pickle.evil");
    body.push(b'J');
    body.extend_from_slice(&1_700_000_000_i32.to_le_bytes());
    short(&mut body, "posix");
    short(&mut body, "system");
    body.push(0x93); // STACK_GLOBAL
    body.push(b'X'); // BINUNICODE
    body.extend_from_slice(&u32::try_from(command.len()).expect("short").to_le_bytes());
    body.extend_from_slice(command.as_bytes());
    body.push(0x85); // TUPLE1
    body.push(b'R'); // REDUCE
    body.push(0x86); // TUPLE2 (timestamp, value)
    body.push(0x86); // TUPLE2 (path, (timestamp, value))
    body.extend_from_slice(b"e.");
    body
}

/// Builds a pickle that runs a shell command when Python unpickles it.
type PickleBuilder = fn(&str) -> Vec<u8>;

fn framed(body: &[u8]) -> Vec<u8> {
    let mut frame = u32::try_from(body.len())
        .expect("small")
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(body);
    frame
}

/// Proves a hostile payload is live: Python's unpickler runs it and the file appears.
fn assert_python_executes(body: &[u8], creates: &Path) {
    let (status, stdout, stderr) = Python::venv().run_with_input(
        "import pickle, sys\npickle.loads(sys.stdin.buffer.read())\n",
        &[],
        body,
        PYTHON_TIMEOUT,
    );
    assert!(status.success(), "python: {stderr}\n{stdout}");
    assert!(
        creates.exists(),
        "the payload did not run under Python's pickle: {}",
        creates.display()
    );
}

#[test]
fn pickle_oversized_and_hostile_frames_close_only_their_connection() {
    const MAX_FRAME: usize = 1024;
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    let (http, pickle) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
[listeners.pickle]
tcp = "{pickle}"
max_frame_bytes = {MAX_FRAME}
[listeners.http]
address = "{http}"
[[outputs.influxdb]]
name = "influx"
url = "{url}"
database = "graphite"
flush_interval = "100ms"
{FAST_RETRY}
"#,
            url = influx.url()
        ),
        http,
    );
    let rejected = |reason: &str| {
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "pickle"), ("reason", reason)],
        )
    };

    // A well-behaved sender keeps its connection through everything below.
    let mut steady = connect(pickle);
    steady
        .write_all(&pickle_frame(&[("e2e.pickle.steady", BASE, 1.0)]))
        .expect("steady sender");
    wait_exact_points(&influx, "graphite", 1);

    // A frame declaring one byte more than allowed: that connection is closed at once.
    let mut oversized = connect(pickle);
    oversized
        .write_all(&u32::try_from(MAX_FRAME + 1).expect("small").to_be_bytes())
        .expect("header");
    oversized.write_all(&[b'('; 64]).expect("some body");
    assert_closed_by_gateway(&mut oversized, "a frame over max_frame_bytes");
    wait_metric(
        &gateway,
        "fluxgate_rejected_total",
        &[("listener", "pickle"), ("reason", "frame_too_large")],
        1.0,
    );
    steady
        .write_all(&pickle_frame(&[("e2e.pickle.steady", BASE + 1, 2.0)]))
        .expect("steady sender after the oversized frame");
    wait_exact_points(&influx, "graphite", 2);

    // A frame of exactly max_frame_bytes is accepted (carbon: length > max is refused).
    let empty_path = pickle_frame(&[("", BASE, 3.0)]).len() - 4;
    let path = format!(
        "e2e.pickle.max.{}",
        "x".repeat(MAX_FRAME - empty_path - "e2e.pickle.max.".len())
    );
    let frame = pickle_frame(&[(path.as_str(), BASE, 3.0)]);
    assert_eq!(frame.len() - 4, MAX_FRAME);
    send_tcp(pickle, &frame);
    wait_exact_points(&influx, "graphite", 3);

    // Hostile pickles: refused, never run, their connection closed.
    let dir = tempfile::tempdir().expect("temporary directory");
    let payloads: [(&str, PickleBuilder); 2] = [
        ("protocol 0 GLOBAL + REDUCE", hostile_protocol_0),
        (
            "protocol 4 STACK_GLOBAL + REDUCE in a list",
            hostile_protocol_4,
        ),
    ];
    for (i, (what, build)) in payloads.iter().enumerate() {
        let proof = dir.path().join(format!("python-ran-{i}"));
        assert_python_executes(&build(&format!("touch {}", proof.display())), &proof);

        let target = dir.path().join(format!("fluxgate-ran-{i}"));
        let mut conn = connect(pickle);
        conn.write_all(&framed(&build(&format!("touch {}", target.display()))))
            .expect("hostile frame");
        assert_closed_by_gateway(&mut conn, what);
        wait_metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "pickle"), ("reason", "forbidden_opcode")],
            (i + 1) as f64,
        );
        assert!(
            !target.exists(),
            "{what}: {} exists: the gateway ran the pickle",
            target.display()
        );
    }

    // The steady sender is still served, and nothing of the hostile frames was stored.
    steady
        .write_all(&pickle_frame(&[("e2e.pickle.steady", BASE + 2, 4.0)]))
        .expect("steady sender after the hostile frames");
    finish(steady);
    let stored = wait_exact_points(&influx, "graphite", 4);
    let measurements: Vec<&str> = stored.iter().map(|p| p.measurement.as_str()).collect();
    assert_eq!(
        measurements,
        [
            path.as_str(),
            "e2e.pickle.steady",
            "e2e.pickle.steady",
            "e2e.pickle.steady"
        ]
    );
    assert_eq!(rejected("frame_too_large"), 1.0);
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "pickle")]
        ),
        3.0,
        "{}",
        gateway.metrics()
    );
    assert_eq!(gateway.get("/health").map(|r| r.status).ok(), Some(200));
}

/// A datapoint value in a hand-built pickle.
#[derive(Debug, Clone, Copy)]
enum Item<'a> {
    Float(f64),
    Text(&'a str),
    None,
}

/// A protocol-2 frame of `[(path, (timestamp, value)), ...]` with values of any type.
fn pickle_items(items: &[(&str, i64, Item<'_>)]) -> Vec<u8> {
    let unicode = |body: &mut Vec<u8>, text: &str| {
        body.push(b'X');
        body.extend_from_slice(&u32::try_from(text.len()).expect("short").to_le_bytes());
        body.extend_from_slice(text.as_bytes());
    };
    let mut body = vec![0x80, 2, b']', b'('];
    for (path, timestamp, value) in items {
        unicode(&mut body, path);
        body.push(b'J');
        body.extend_from_slice(&i32::try_from(*timestamp).expect("i32").to_le_bytes());
        match value {
            Item::Float(v) => {
                body.push(b'G');
                body.extend_from_slice(&v.to_be_bytes());
            }
            Item::Text(text) => unicode(&mut body, text),
            Item::None => body.push(b'N'),
        }
        body.push(0x86);
        body.push(0x86);
    }
    body.extend_from_slice(b"e.");
    framed(&body)
}

#[test]
fn pickle_bad_items_are_skipped_and_broken_frames_close_the_connection() {
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    let (http, pickle) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
[listeners.pickle]
tcp = "{pickle}"
[listeners.http]
address = "{http}"
[[outputs.influxdb]]
name = "influx"
url = "{url}"
database = "graphite"
flush_interval = "100ms"
{FAST_RETRY}
"#,
            url = influx.url()
        ),
        http,
    );
    let rejected = |reason: &str| {
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "pickle"), ("reason", reason)],
        )
    };

    // carbon skips an item whose value float() refuses and keeps the rest of the frame;
    // a numeric string is a number to it.
    send_tcp(
        pickle,
        &pickle_items(&[
            ("e2e.item.good1", BASE, Item::Float(1.0)),
            ("e2e.item.text", BASE, Item::Text("abc")),
            ("e2e.item.numeric", BASE, Item::Text("2.5")),
            ("e2e.item.none", BASE, Item::None),
            // Pickle paths can hold what plaintext cannot: a space is stored as is, a
            // newline cannot be written as line protocol and costs only its item.
            ("e2e.item.with space", BASE, Item::Float(5.0)),
            ("e2e.item.new\nline", BASE, Item::Float(6.0)),
            ("e2e.item.good2", BASE, Item::Float(3.0)),
        ]),
    );
    assert_eq!(
        wait_exact_points(&influx, "graphite", 4),
        vec![
            graphite_point("e2e.item.good1", BASE, 1.0),
            graphite_point("e2e.item.good2", BASE, 3.0),
            graphite_point("e2e.item.numeric", BASE, 2.5),
            graphite_point("e2e.item.with space", BASE, 5.0),
        ]
    );
    wait_metric(
        &gateway,
        "fluxgate_rejected_total",
        &[("listener", "pickle"), ("reason", "bad_item")],
        2.0,
    );
    wait_metric(
        &gateway,
        "fluxgate_rejected_total",
        &[("listener", "pickle"), ("reason", "unrepresentable")],
        1.0,
    );

    // A frame that is not a pickle: counted, its connection closed; what came before it on
    // that connection was stored.
    let mut conn = connect(pickle);
    let mut bytes = pickle_frame(&[("e2e.item.before_garbage", BASE, 4.0)]);
    bytes.extend_from_slice(&framed(b"\x80\x02\xff\xfe garbage ."));
    conn.write_all(&bytes).expect("garbage frame");
    assert_closed_by_gateway(&mut conn, "a frame that is not a pickle");
    wait_metric(
        &gateway,
        "fluxgate_rejected_total",
        &[("listener", "pickle"), ("reason", "bad_frame")],
        1.0,
    );

    // A sender that goes away inside a frame: counted as truncated.
    let mut conn = connect(pickle);
    conn.write_all(&100_u32.to_be_bytes()).expect("header");
    conn.write_all(&[b'('; 10]).expect("part of a body");
    finish(conn);
    wait_metric(
        &gateway,
        "fluxgate_rejected_total",
        &[("listener", "pickle"), ("reason", "truncated_frame")],
        1.0,
    );

    let stored = wait_exact_points(&influx, "graphite", 5);
    assert!(stored.contains(&graphite_point("e2e.item.before_garbage", BASE, 4.0)));
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_received_total",
            &[("listener", "pickle")]
        ),
        5.0
    );
    assert_eq!(rejected("forbidden_opcode"), 0.0);
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "pickle")]
        ),
        5.0,
        "{}",
        gateway.metrics()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. InfluxDB v2 upstream behaviour

/// A gateway with plaintext and HTTP listeners and one `api = "v2"` output named `cloud`
/// (one lane, flushing every 100 ms) to `url`; `extra` adds output keys.
fn v2_gateway(url: &str, extra: &str, envs: &[(&str, &str)]) -> (Gateway, SocketAddr) {
    let flush = if extra.contains("flush_interval") {
        ""
    } else {
        "flush_interval = \"100ms\""
    };
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let config = format!(
        r#"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
[[outputs.influxdb]]
name = "cloud"
url = "{url}"
api = "v2"
org = "acme corp"
bucket = "metrics"
{flush}
max_in_flight = 1
{FAST_RETRY}
{extra}
"#
    );
    let mut builder = Gateway::builder(&config).http_addr(http);
    for (key, value) in envs {
        builder = builder.env(key, value);
    }
    (builder.start(), plaintext)
}

fn cloud(labels: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut all = vec![("output", "cloud")];
    all.extend_from_slice(labels);
    all
}

#[test]
fn v2_output_sends_org_bucket_precision_token_and_gzip() {
    let mock = InfluxV2Mock::start(|_, _| Reply::no_content());
    let (gateway, plaintext) = v2_gateway(&mock.url(), "token = \"s3cret\"", &[]);
    send_lines(
        plaintext,
        [
            format!("e2e.v2.cpu 0.5 {BASE}"),
            format!("e2e.v2.mem 1024 {}", BASE + 1),
        ],
    );
    let first = &mock.wait_for(1)[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path(), "/api/v2/write");
    assert_eq!(
        first.query(),
        [
            ("org".to_owned(), "acme corp".to_owned()),
            ("bucket".to_owned(), "metrics".to_owned()),
            ("precision".to_owned(), "ns".to_owned()),
        ]
    );
    assert_eq!(first.header("Authorization"), Some("Token s3cret"));
    assert_eq!(first.header("Content-Encoding"), Some("gzip"));
    assert_eq!(
        first.text(),
        "e2e.v2.cpu value=0.5 1700000000000000000\ne2e.v2.mem value=1024 1700000001000000000\n"
    );

    // HTTP writes keep their own database / retention policy as the bucket `db/rp`.
    let response = post(
        &format!("{}/write?db=telegraf&rp=autogen&precision=s", gateway.url()),
        &[],
        b"e2e.v2.http,host=a v=1i 1700000000",
    );
    assert_eq!(response.status, 204, "{}", response.text());
    let second = &mock.wait_for(2)[1];
    assert_eq!(
        second.query(),
        [
            ("org".to_owned(), "acme corp".to_owned()),
            ("bucket".to_owned(), "telegraf/autogen".to_owned()),
            ("precision".to_owned(), "ns".to_owned()),
        ]
    );
    assert_eq!(
        second.text(),
        "e2e.v2.http,host=a v=1i 1700000000000000000\n"
    );
    wait_metric(&gateway, "fluxgate_sent_points_total", &cloud(&[]), 3.0);
    assert_eq!(
        metric(&gateway, "fluxgate_send_errors_total", &cloud(&[])),
        0.0
    );
}

#[test]
fn v2_output_honours_retry_after_on_429_and_delivers_once() {
    let mock = InfluxV2Mock::start(|index, _| {
        if index == 0 {
            Reply::error(429, "too many requests", "write limit exceeded")
                .with_header("Retry-After", "1")
        } else {
            Reply::no_content()
        }
    });
    // The token comes from the environment, not the file.
    let (gateway, plaintext) = v2_gateway(&mock.url(), "", &[("FLUXGATE_CLOUD_TOKEN", "from-env")]);
    send_lines(
        plaintext,
        (0..3).map(|i| stream_line("e2e.v2.throttled", i)),
    );
    let received = mock.wait_for(2);
    let (first, second) = (&received[0], &received[1]);
    assert_eq!(first.answered, Some(429));
    assert_eq!(second.answered, Some(204));
    let gap = second.at.duration_since(first.at);
    assert!(
        gap >= Duration::from_millis(950),
        "retried {gap:?} after a 429 with Retry-After: 1"
    );
    assert_eq!(
        first.body, second.body,
        "the retry must resend the same batch"
    );
    assert_eq!(first.lines().len(), 3);
    for request in [first, second] {
        assert_eq!(request.header("Authorization"), Some("Token from-env"));
    }

    // Delivered once: the next request carries only the next point.
    send_lines(plaintext, [format!("e2e.v2.next 1 {BASE}")]);
    let received = mock.wait_for(3);
    assert_eq!(received.len(), 3, "{received:#?}");
    assert_eq!(
        received[2].text(),
        "e2e.v2.next value=1 1700000000000000000\n"
    );
    wait_metric(&gateway, "fluxgate_sent_points_total", &cloud(&[]), 4.0);
    assert_eq!(metric(&gateway, "fluxgate_retries_total", &cloud(&[])), 1.0);
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_send_errors_total",
            &cloud(&[("reason", "http_429")])
        ),
        1.0
    );
    assert_eq!(metric(&gateway, "fluxgate_dropped_total", &cloud(&[])), 0.0);
}

#[test]
fn v2_output_retries_503_and_500() {
    let mock = InfluxV2Mock::start(|index, _| match index {
        0 => Reply::error(503, "unavailable", "the server is temporarily unavailable"),
        1 => Reply::error(500, "internal error", "unexpected error writing points"),
        _ => Reply::no_content(),
    });
    let (gateway, plaintext) = v2_gateway(&mock.url(), "token = \"t\"", &[]);
    send_lines(plaintext, (0..5).map(|i| stream_line("e2e.v2.flaky", i)));
    let received = mock.wait_for(3);
    let answered: Vec<Option<u16>> = received.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [Some(503), Some(500), Some(204)]);
    assert!(received.iter().all(|r| r.body == received[0].body));
    assert_eq!(received[0].lines().len(), 5);
    wait_metric(&gateway, "fluxgate_sent_points_total", &cloud(&[]), 5.0);
    assert_eq!(metric(&gateway, "fluxgate_retries_total", &cloud(&[])), 2.0);
    for reason in ["http_503", "http_500"] {
        assert_eq!(
            metric(
                &gateway,
                "fluxgate_send_errors_total",
                &cloud(&[("reason", reason)])
            ),
            1.0,
            "{reason}"
        );
    }
    assert_eq!(metric(&gateway, "fluxgate_dropped_total", &cloud(&[])), 0.0);
}

/// 413: the batch is halved until each part is accepted; a single point the upstream still
/// finds too large is dropped and counted (`too_large`), the others delivered once, in order.
#[test]
fn v2_output_splits_a_batch_on_413_until_accepted() {
    const MAX_LINES: usize = 3;
    const POINTS: usize = 10;
    const HUGE: &str = "e2e.v2.huge";
    let mock = InfluxV2Mock::start(|_, request| {
        if request.lines().len() > MAX_LINES || request.text().contains(HUGE) {
            Reply::error(413, "request too large", "unable to read data: too large")
        } else {
            Reply::no_content()
        }
    });
    let (gateway, plaintext) = v2_gateway(
        &mock.url(),
        "token = \"t\"\nbatch_size = 1000\nflush_interval = \"300ms\"",
        &[],
    );
    let mut lines: Vec<String> = (0..POINTS).map(|i| stream_line("e2e.v2.big", i)).collect();
    lines.insert(6, format!("{HUGE} 1 {BASE}"));
    send_lines(plaintext, &lines);
    let expected: Vec<String> = (0..POINTS)
        .map(|i| {
            format!(
                "e2e.v2.big value={} {}",
                value_of(i),
                (BASE + i as i64) * 1_000_000_000
            )
        })
        .collect();
    let accepted = || -> Vec<Received> {
        mock.received()
            .into_iter()
            .filter(|r| r.answered == Some(204))
            .collect()
    };
    wait_metric(
        &gateway,
        "fluxgate_dropped_total",
        &cloud(&[("reason", "too_large")]),
        1.0,
    );
    eventually(WAIT, || {
        let n: usize = accepted().iter().map(|r| r.lines().len()).sum();
        if n >= POINTS {
            Ok(())
        } else {
            Err(format!(
                "{n} of {POINTS} points accepted: {:#?}",
                mock.received()
            ))
        }
    });
    let delivered: Vec<String> = accepted().iter().flat_map(Received::lines).collect();
    assert_eq!(delivered, expected, "every point once, in order");
    assert!(accepted().iter().all(|r| r.lines().len() <= MAX_LINES));
    let refused = mock
        .received()
        .iter()
        .filter(|r| r.answered == Some(413))
        .count();
    // The huge point alone was tried once and given up on.
    let huge_alone = mock
        .received()
        .iter()
        .filter(|r| r.lines().len() == 1 && r.text().starts_with(HUGE))
        .count();
    assert_eq!(huge_alone, 1, "{:#?}", mock.received());

    send_lines(plaintext, [format!("e2e.v2.after 1 {BASE}")]);
    eventually(WAIT, || {
        let last = mock.received().last().map(Received::text);
        if last.as_deref() == Some("e2e.v2.after value=1 1700000000000000000\n") {
            Ok(())
        } else {
            Err(format!("last request: {last:?}"))
        }
    });
    wait_metric(
        &gateway,
        "fluxgate_sent_points_total",
        &cloud(&[]),
        (POINTS + 1) as f64,
    );
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_send_errors_total",
            &cloud(&[("reason", "http_413")])
        ),
        refused as f64
    );
    assert_eq!(
        metric(&gateway, "fluxgate_dropped_total", &cloud(&[])),
        1.0,
        "{}",
        gateway.metrics()
    );
    assert_eq!(metric(&gateway, "fluxgate_retries_total", &cloud(&[])), 0.0);
}

/// A request the upstream never answers times out after `timeout` and is retried.
#[test]
fn v2_output_retries_a_request_that_timed_out() {
    let mock = InfluxV2Mock::start(|index, _| {
        if index == 0 {
            Reply::Stall
        } else {
            Reply::no_content()
        }
    });
    let (gateway, plaintext) = v2_gateway(&mock.url(), "token = \"t\"\ntimeout = \"1s\"", &[]);
    send_lines(plaintext, (0..4).map(|i| stream_line("e2e.v2.slow", i)));
    let received = mock.wait_for(2);
    assert_eq!(received[0].body, received[1].body);
    assert!(
        received[1].at.duration_since(received[0].at) >= Duration::from_millis(900),
        "retried before the 1 s timeout"
    );
    wait_metric(&gateway, "fluxgate_sent_points_total", &cloud(&[]), 4.0);
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_send_errors_total",
            &cloud(&[("reason", "timeout")])
        ),
        1.0,
        "{}",
        gateway.metrics()
    );
    assert_eq!(metric(&gateway, "fluxgate_retries_total", &cloud(&[])), 1.0);
    assert_eq!(metric(&gateway, "fluxgate_dropped_total", &cloud(&[])), 0.0);
}

#[test]
fn v2_output_does_not_retry_what_the_upstream_refused() {
    // (measurement, status, 2.x code, dropped reason)
    const REFUSALS: [(&str, u16, &str, &str); 5] = [
        ("e2e.v2.invalid", 400, "invalid", "rejected"),
        ("e2e.v2.unauthorized", 401, "unauthorized", "unauthorized"),
        ("e2e.v2.forbidden", 403, "forbidden", "forbidden"),
        ("e2e.v2.notfound", 404, "not found", "not_found"),
        (
            "e2e.v2.unprocessable",
            422,
            "unprocessable entity",
            "unprocessable",
        ),
    ];
    let mock = InfluxV2Mock::start(|_, request| {
        let text = request.text();
        REFUSALS
            .iter()
            .find(|(measurement, ..)| text.starts_with(&format!("{measurement} ")))
            .map_or_else(Reply::no_content, |(_, status, code, _)| {
                Reply::error(*status, code, "refused by the stand-in")
            })
    });
    let (gateway, plaintext) = v2_gateway(&mock.url(), "token = \"t\"", &[]);
    for (i, (measurement, ..)) in REFUSALS.iter().enumerate() {
        send_lines(plaintext, [format!("{measurement} 1 {BASE}")]);
        mock.wait_for(i + 1);
    }
    send_lines(plaintext, [format!("e2e.v2.sentinel 1 {BASE}")]);
    let received = mock.wait_for(REFUSALS.len() + 1);
    // One request each, in order: no refused write was sent twice.
    let seen: Vec<(String, Option<u16>)> = received
        .iter()
        .map(|r| {
            let text = r.text();
            let measurement = text.split(' ').next().unwrap_or_default().to_owned();
            (measurement, r.answered)
        })
        .collect();
    let mut expected: Vec<(String, Option<u16>)> = REFUSALS
        .iter()
        .map(|(measurement, status, ..)| ((*measurement).to_owned(), Some(*status)))
        .collect();
    expected.push(("e2e.v2.sentinel".to_owned(), Some(204)));
    assert_eq!(seen, expected);

    wait_metric(&gateway, "fluxgate_sent_points_total", &cloud(&[]), 1.0);
    for (_, status, _, reason) in REFUSALS {
        assert_eq!(
            metric(
                &gateway,
                "fluxgate_dropped_total",
                &cloud(&[("reason", reason)])
            ),
            1.0,
            "{status} → dropped{{reason={reason:?}}}\n{}",
            gateway.metrics()
        );
    }
    assert_eq!(metric(&gateway, "fluxgate_retries_total", &cloud(&[])), 0.0);
    wait_metric(&gateway, "fluxgate_queue_points", &cloud(&[]), 0.0);
}

// ---------------------------------------------------------------------------------------------
// 6. backpressure

/// A gateway whose only output (`stall`) is a server that reads requests and never answers.
fn stalled_gateway(
    mock: &InfluxV2Mock,
    overflow: &str,
    write_timeout: &str,
) -> (Gateway, SocketAddr) {
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
shutdown_timeout = "1s"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
write_timeout = "{write_timeout}"
ack = "queued"
[[outputs.influxdb]]
name = "stall"
url = "{url}"
database = "graphite"
timeout = "30s"
queue_points = 1000
batch_size = 100
flush_interval = "100ms"
overflow = "{overflow}"
"#,
            url = mock.url()
        ),
        http,
    );
    (gateway, plaintext)
}

fn lines_body(measurement: &str, n: usize) -> Vec<u8> {
    let mut body = String::new();
    for i in 0..n {
        let _ = writeln!(
            body,
            "{measurement},n={i} v=1 {}",
            1_700_000_000_000_000_000_i64 + i as i64
        );
    }
    body.into_bytes()
}

#[test]
fn full_queue_makes_http_writes_wait_then_answer_503() {
    let mock = InfluxV2Mock::start(|_, _| Reply::Stall);
    let (gateway, _) = stalled_gateway(&mock, "block", "500ms");
    let write = format!("{}/write?db=stalled", gateway.url());
    let stall = [("output", "stall")];

    let response = post(&write, &[], &lines_body("e2e.fill", 1000));
    assert_eq!(response.status, 204, "{}", response.text());
    mock.wait_for(1);
    wait_metric(&gateway, "fluxgate_queue_points", &stall, 1000.0);

    let started = Instant::now();
    let response = post(&write, &[], &lines_body("e2e.more", 100));
    let waited = started.elapsed();
    let overloaded = "fluxgate is overloaded: an output queue is full; retry later";
    assert_eq!(
        answer(&response),
        (
            503,
            json!({ "error": overloaded }),
            Some(overloaded.to_owned())
        )
    );
    assert_eq!(response.header("Retry-After"), Some("1"));
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_secs(10),
        "answered after {waited:?}, write_timeout is 500ms"
    );
    // The v2 API says it in its own dialect.
    let response = post(
        &format!("{}/api/v2/write?org=o&bucket=stalled", gateway.url()),
        &[],
        &lines_body("e2e.more", 10),
    );
    assert_eq!(
        (response.status, response.json()["code"].clone()),
        (503, json!("unavailable"))
    );
    assert_eq!(response.header("Retry-After"), Some("1"));

    // Nothing of the refused writes was queued, nothing was dropped.
    assert_eq!(metric(&gateway, "fluxgate_queue_points", &stall), 1000.0);
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "http"), ("reason", "queue_full")]
        ),
        110.0
    );
    assert_eq!(
        metric(&gateway, "fluxgate_received_total", &[("listener", "http")]),
        1000.0
    );
    assert_eq!(metric(&gateway, "fluxgate_dropped_total", &stall), 0.0);
}

#[test]
fn drop_newest_counts_every_point_it_drops() {
    let mock = InfluxV2Mock::start(|_, _| Reply::Stall);
    let (gateway, plaintext) = stalled_gateway(&mock, "drop_newest", "10s");
    let write = format!("{}/write?db=stalled", gateway.url());
    let stall = [("output", "stall")];
    let queue_full = [("output", "stall"), ("reason", "queue_full")];

    assert_eq!(post(&write, &[], &lines_body("e2e.fill", 1000)).status, 204);
    mock.wait_for(1);

    // The excess is dropped at once (no waiting for room), counted, and the client told.
    let started = Instant::now();
    let response = post(&write, &[], &lines_body("e2e.more", 100));
    let waited = started.elapsed();
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(
        waited < Duration::from_secs(5),
        "drop_newest waited {waited:?} (write_timeout is 10s)"
    );
    wait_metric(&gateway, "fluxgate_dropped_total", &queue_full, 100.0);

    // Plaintext senders are not pushed back either: what does not fit is dropped and counted.
    send_lines(plaintext, (0..500).map(|i| stream_line("e2e.tcp", i)));
    wait_metric(
        &gateway,
        "fluxgate_received_total",
        &[("listener", "plaintext_tcp")],
        500.0,
    );
    wait_metric(&gateway, "fluxgate_dropped_total", &queue_full, 600.0);
    assert_eq!(metric(&gateway, "fluxgate_queue_points", &stall), 1000.0);
    assert_eq!(metric(&gateway, "fluxgate_dropped_total", &stall), 600.0);
}

/// With `overflow = "block"` a full queue stops the gateway reading from TCP senders (their
/// writes block), nothing is dropped, and once the upstream answers again every point is
/// delivered exactly once.
#[test]
fn full_queue_pushes_back_on_tcp_senders_and_loses_nothing() {
    const LINES: usize = 400_000;
    const MEASUREMENT: &str = "e2e.backpressure.padding_padding_padding_padding_padding_padding";
    let release = Arc::new(AtomicBool::new(false));
    let mock = InfluxV2Mock::start({
        let release = Arc::clone(&release);
        move |_, _| Reply::Hold(Arc::clone(&release))
    });
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
[[outputs.influxdb]]
name = "held"
url = "{url}"
database = "graphite"
timeout = "60s"
queue_points = 2000
batch_size = 1000
flush_interval = "100ms"
overflow = "block"
gzip = false
"#,
            url = mock.url()
        ),
        http,
    );

    let mut payload = Vec::with_capacity(LINES * (MEASUREMENT.len() + 24));
    for i in 0..LINES {
        let _ = writeln!(payload, "{MEASUREMENT} {i} {}", BASE + i as i64);
    }
    let total = payload.len();
    let written = Arc::new(AtomicUsize::new(0));
    let blocked = Arc::new(AtomicBool::new(false));
    let sender = {
        let (written, blocked) = (Arc::clone(&written), Arc::clone(&blocked));
        thread::spawn(move || {
            let mut stream = connect(plaintext);
            // A write that makes no progress for 1 s means the gateway stopped reading.
            stream
                .set_write_timeout(Some(Duration::from_secs(1)))
                .expect("write timeout");
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut at = 0;
            while at < payload.len() {
                assert!(Instant::now() < deadline, "sender: stuck for 120 s");
                match stream.write(&payload[at..(at + 64 * 1024).min(payload.len())]) {
                    Ok(n) => {
                        at += n;
                        written.store(at, Ordering::SeqCst);
                    }
                    Err(err)
                        if matches!(
                            err.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        blocked.store(true, Ordering::SeqCst);
                    }
                    Err(err) => panic!("sender: write failed after {at} bytes: {err}"),
                }
            }
            finish(stream);
        })
    };

    eventually(Duration::from_secs(30), || {
        if blocked.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(format!(
                "the sender was never pushed back: {} of {total} bytes written",
                written.load(Ordering::SeqCst)
            ))
        }
    });
    let received = metric(
        &gateway,
        "fluxgate_received_total",
        &[("listener", "plaintext_tcp")],
    );
    assert!(
        written.load(Ordering::SeqCst) < total && received < (LINES / 10) as f64,
        "pushed back after {} of {total} bytes with {received} points taken in",
        written.load(Ordering::SeqCst)
    );
    assert_eq!(metric(&gateway, "fluxgate_dropped_total", &[]), 0.0);

    // The upstream answers again: everything flows, once.
    release.store(true, Ordering::SeqCst);
    sender.join().expect("sender thread");
    wait_metric(
        &gateway,
        "fluxgate_received_total",
        &[("listener", "plaintext_tcp")],
        LINES as f64,
    );
    eventually(Duration::from_secs(60), || {
        let n: usize = mock
            .received()
            .iter()
            .map(|r| r.body.iter().filter(|&&b| b == b'\n').count())
            .sum();
        if n >= LINES {
            Ok(())
        } else {
            Err(format!("the upstream has {n} of {LINES} points"))
        }
    });
    let mut seen = vec![false; LINES];
    let mut problems = Vec::new();
    for request in mock.received() {
        for line in request.text().lines() {
            let value = line
                .strip_prefix(MEASUREMENT)
                .and_then(|rest| rest.strip_prefix(" value="))
                .and_then(|rest| rest.split(' ').next())
                .and_then(|v| v.parse::<usize>().ok());
            match value {
                Some(i) if i < LINES && !seen[i] => seen[i] = true,
                _ if problems.len() < 10 => {
                    problems.push(format!("unexpected or repeated: {line}"));
                }
                _ => {}
            }
        }
    }
    let missing = seen.iter().filter(|s| !**s).count();
    assert!(
        problems.is_empty() && missing == 0,
        "{missing} point(s) missing; {problems:#?}"
    );
    wait_metric(
        &gateway,
        "fluxgate_sent_points_total",
        &[("output", "held")],
        LINES as f64,
    );
    wait_metric(
        &gateway,
        "fluxgate_queue_points",
        &[("output", "held")],
        0.0,
    );
    assert_eq!(metric(&gateway, "fluxgate_dropped_total", &[]), 0.0);
}

// ---------------------------------------------------------------------------------------------
// 7. signals

#[test]
fn sigterm_delivers_queued_points_before_exiting() {
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    influx.create_database("httpdb");
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let mut gateway = Gateway::start(
        &format!(
            r#"
shutdown_timeout = "10s"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
ack = "queued"
[[outputs.influxdb]]
name = "influx"
url = "{url}"
database = "graphite"
flush_interval = "30s"
linger = "30s"
{FAST_RETRY}
"#,
            url = influx.url()
        ),
        http,
    );
    // The sender keeps its connection open, as collectd and carbon-relay do.
    let mut sender = connect(plaintext);
    let lines: String = (0..50)
        .map(|i| format!("{}\n", stream_line("e2e.term", i)))
        .collect();
    sender.write_all(lines.as_bytes()).expect("send");
    let response = post(
        &format!("{}/write?db=httpdb", gateway.url()),
        &[],
        &lines_body("e2e.term.http", 5),
    );
    assert_eq!(response.status, 204, "{}", response.text());
    wait_metric(
        &gateway,
        "fluxgate_received_total",
        &[("listener", "plaintext_tcp")],
        50.0,
    );
    wait_metric(
        &gateway,
        "fluxgate_received_total",
        &[("listener", "http")],
        5.0,
    );
    // Still batching (flush_interval is 30 s): nothing is stored yet.
    assert_eq!(count(&influx, "graphite", "e2e.term"), 0);
    assert_eq!(influx.points("httpdb"), Vec::<Point>::new());

    gateway.sigterm();
    let status = gateway.wait_exit(Duration::from_secs(20));
    // The gateway closed the sender's connection on its way out.
    assert_closed_by_gateway(&mut sender, "an open connection at SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}\n{}",
        gateway.log_tail(20)
    );
    let expected: Vec<Point> = (0..50)
        .map(|i| graphite_point("e2e.term", BASE + i as i64, value_of(i)))
        .collect();
    assert_eq!(wait_exact_points(&influx, "graphite", 50), expected);
    let expected: Vec<Point> = (0..5)
        .map(|i| {
            point(
                "e2e.term.http",
                &[("n", &i.to_string())],
                1_700_000_000_000_000_000 + i,
                &[("v", json!(1))],
            )
        })
        .collect();
    assert_eq!(wait_exact_points(&influx, "httpdb", 5), expected);
}

/// An upstream that never answers cannot hold shutdown hostage: after `shutdown_timeout`
/// the gateway exits and reports what it could not deliver.
#[test]
fn sigterm_gives_up_after_shutdown_timeout_and_says_what_was_lost() {
    let mock = InfluxV2Mock::start(|_, _| Reply::Stall);
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let mut gateway = Gateway::start(
        &format!(
            r#"
shutdown_timeout = "1s"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
[[outputs.influxdb]]
name = "stall"
url = "{url}"
database = "graphite"
timeout = "60s"
flush_interval = "100ms"
"#,
            url = mock.url()
        ),
        http,
    );
    send_lines(plaintext, (0..10).map(|i| stream_line("e2e.lost", i)));
    mock.wait_for(1);
    wait_metric(
        &gateway,
        "fluxgate_queue_points",
        &[("output", "stall")],
        10.0,
    );
    let signalled = Instant::now();
    gateway.sigterm();
    let status = gateway.wait_exit(Duration::from_secs(20));
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "exit took {took:?} with shutdown_timeout = 1s"
    );
    assert!(status.code().is_some(), "killed by a signal: {status}");
    let log = gateway.log();
    let line = log
        .lines()
        .find(|line| line.contains("shutdown deadline passed"))
        .unwrap_or_else(|| panic!("the log does not report the undelivered points:\n{log}"));
    assert!(line.contains("points=10"), "{line}");
}

/// Changed templates apply to an open connection from its next read on, without a restart.
#[test]
fn sighup_applies_new_templates_to_open_connections() {
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let config = |graphite: &str| {
        format!(
            r#"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
{graphite}
[[outputs.influxdb]]
name = "influx"
url = "{url}"
database = "graphite"
flush_interval = "100ms"
{FAST_RETRY}
"#,
            url = influx.url()
        )
    };
    let mut gateway = Gateway::start(&config(""), http);
    let mut sender = connect(plaintext);
    sender
        .write_all(format!("servers.web01.cpu 1 {BASE}\n").as_bytes())
        .expect("send");
    wait_exact_points(&influx, "graphite", 1);

    gateway.write_config(&config(
        "[graphite]\ntemplates = [\"servers.* .host.measurement*\"]\ntags = [\"env=prod\"]",
    ));
    gateway.sighup();
    eventually(WAIT, || {
        if gateway.log().contains("configuration reloaded") {
            Ok(())
        } else {
            Err(format!("no reload in the log:\n{}", gateway.log_tail(20)))
        }
    });
    sender
        .write_all(format!("servers.web01.cpu 2 {}\n", BASE + 1).as_bytes())
        .expect("the connection survives a reload that did not touch its listener");
    finish(sender);
    assert_eq!(
        wait_exact_points(&influx, "graphite", 2),
        vec![
            point(
                "cpu",
                &[("env", "prod"), ("host", "web01")],
                (BASE + 1) * 1_000_000_000,
                &[("value", json!(2))]
            ),
            graphite_point("servers.web01.cpu", BASE, 1.0),
        ]
    );
}

fn reload_config(
    plaintext: SocketAddr,
    http: SocketAddr,
    url: &str,
    database: &str,
    flush: &str,
) -> String {
    format!(
        r#"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
[[outputs.influxdb]]
name = "influx"
url = "{url}"
database = "{database}"
flush_interval = "{flush}"
linger = "{flush}"
{FAST_RETRY}
"#
    )
}

#[test]
fn sighup_switches_database_without_losing_queued_points() {
    let influx = InfluxDb::start();
    influx.create_database("first");
    influx.create_database("second");
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let mut gateway = Gateway::start(
        &reload_config(plaintext, http, &influx.url(), "first", "30s"),
        http,
    );
    let pid = gateway.pid();

    // One long-lived sender connection across the reload, as collectd keeps one.
    let mut sender = connect(plaintext);
    let mut before = String::new();
    for i in 0..20 {
        let _ = writeln!(before, "{}", stream_line("e2e.reload.before", i));
    }
    sender.write_all(before.as_bytes()).expect("send before");
    wait_metric(
        &gateway,
        "fluxgate_received_total",
        &[("listener", "plaintext_tcp")],
        20.0,
    );
    assert_eq!(
        count(&influx, "first", "e2e.reload.before"),
        0,
        "still batching"
    );

    gateway.write_config(&reload_config(
        plaintext,
        http,
        &influx.url(),
        "second",
        "100ms",
    ));
    gateway.sighup();
    eventually(WAIT, || {
        if gateway.log().contains("configuration reloaded") {
            Ok(())
        } else {
            Err(format!("no reload in the log:\n{}", gateway.log_tail(20)))
        }
    });

    let mut after = String::new();
    for i in 0..20 {
        let _ = writeln!(after, "{}", stream_line("e2e.reload.after", i));
    }
    sender
        .write_all(after.as_bytes())
        .expect("send after the reload");
    finish(sender);

    let expected = |measurement: &str| -> Vec<Point> {
        (0..20)
            .map(|i| graphite_point(measurement, BASE + i as i64, value_of(i)))
            .collect()
    };
    assert_eq!(
        wait_exact_points(&influx, "second", 20),
        expected("e2e.reload.after")
    );
    assert_eq!(
        wait_exact_points(&influx, "first", 20),
        expected("e2e.reload.before")
    );
    assert!(gateway.is_running(), "{}", gateway.log_tail(20));
    assert_eq!(
        gateway.pid(),
        pid,
        "the gateway was restarted, not reloaded"
    );
    assert_eq!(gateway.get("/health").map(|r| r.status).ok(), Some(200));
    wait_metric(
        &gateway,
        "fluxgate_sent_points_total",
        &[("output", "influx")],
        40.0,
    );

    // A broken config on SIGHUP is refused and the running one kept.
    gateway.write_config(&format!(
        "unknown_key = 1\n{}",
        reload_config(plaintext, http, &influx.url(), "first", "100ms")
    ));
    gateway.sighup();
    eventually(WAIT, || {
        if gateway.log().contains("reload failed") {
            Ok(())
        } else {
            Err(format!(
                "no failed reload in the log:\n{}",
                gateway.log_tail(20)
            ))
        }
    });
    send_lines(plaintext, [format!("e2e.reload.kept 1 {BASE}")]);
    let stored = wait_exact_points(&influx, "second", 21);
    assert!(stored.contains(&graphite_point("e2e.reload.kept", BASE, 1.0)));
    assert_eq!(influx.points("first").len(), 20);
    assert!(gateway.is_running());
    assert_eq!(gateway.pid(), pid);
}
