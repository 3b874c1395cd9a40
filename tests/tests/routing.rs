//! Routing end to end: `[[routes]]`, `[[rewrite]]` and `[graphite] validation` between real
//! servers. Which destination got which point is read back where a user would look: InfluxDB
//! by query, Graphite plaintext destinations by the exact lines they received (a `TcpCapture`,
//! fast and exact), one real carbon-cache by its whisper files.
//!
//! - routes split traffic between an InfluxDB and two Graphite outputs, with `stop`, `drop`
//!   and a match-all rule; points sent nowhere are counted in `fluxgate_unrouted_total`;
//! - without a match-all rule an unmatched point goes nowhere (`no_route`);
//! - fall-through without `stop` adds outputs, compared with a live carbon-c-relay running the
//!   same rules;
//! - `on = "measurement"` / `on = "path"`;
//! - rewrites run before routing and templates, in order, with `\_1` lower-casing;
//! - `validation = "cleanse"` compared byte for byte with a live carbon-c-relay, and
//!   `validation = "encode"`;
//! - SIGHUP swaps the routes in place, also for a connection that stays open;
//! - `fluxgate dry-run --json` predicts exactly the outputs the live gateway delivered to.
//!
//! Every point carries a value of its own, so the value alone tells which input a delivered
//! point came from.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use fluxgate_e2e::{
    eventually, free_port, http_post, loopback, pickle_frame, prometheus_value, run_fluxgate,
    send_lines, send_tcp, unix_now, CarbonCRelay, CarbonCache, Gateway, InfluxDb, Point,
    TcpCapture,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// A fixed Graphite timestamp (seconds) for destinations that keep any time.
const T: i64 = 1_700_000_000;

// ---------------------------------------------------------------------------------------------
// helpers

/// The gateway's listeners on free loopback ports.
#[derive(Debug, Clone, Copy)]
struct Ports {
    http: SocketAddr,
    plaintext: SocketAddr,
    pickle: SocketAddr,
}

impl Ports {
    fn free() -> Self {
        Ports {
            http: loopback(free_port()),
            plaintext: loopback(free_port()),
            pickle: loopback(free_port()),
        }
    }

    /// A whole config: the three listeners, then `body` (`[graphite]`, outputs, routes...).
    fn config(&self, body: &str) -> String {
        format!(
            "shutdown_timeout = \"1s\"\n\n\
             [listeners.plaintext]\ntcp = \"{}\"\n\n\
             [listeners.pickle]\ntcp = \"{}\"\n\n\
             [listeners.http]\naddress = \"{}\"\n\n{body}",
            self.plaintext, self.pickle, self.http
        )
    }

    fn start(&self, body: &str) -> Gateway {
        Gateway::start(&self.config(body), self.http)
    }
}

/// A Graphite output writing plaintext to one destination (`forward`), reconnecting quickly.
fn graphite_output(name: &str, destination: SocketAddr) -> String {
    format!(
        "[[outputs.graphite]]\nname = \"{name}\"\nprotocol = \"plaintext\"\n\
         cluster = \"forward\"\ndestinations = [\"{destination}\"]\n\
         retry_initial = \"50ms\"\nretry_max = \"500ms\"\n\n"
    )
}

/// An InfluxDB v1 output flushing every 100 ms into `database` (Graphite-origin points).
fn influx_output(name: &str, influx: &InfluxDb, database: &str) -> String {
    format!(
        "[[outputs.influxdb]]\nname = \"{name}\"\nurl = \"{}\"\ndatabase = \"{database}\"\n\
         flush_interval = \"100ms\"\nretry_initial = \"50ms\"\nretry_max = \"500ms\"\n\n",
        influx.url()
    )
}

/// `POST /write?db=<db>` (nanosecond timestamps) on the gateway; returns status and body.
fn write_lp(gateway: &Gateway, db: &str, body: &str) -> (u16, String) {
    let url = format!("{}/write?db={db}", gateway.url());
    let response = http_post(&url, "text/plain; charset=utf-8", body.as_bytes())
        .unwrap_or_else(|err| panic!("POST {url} failed: {err}"));
    (response.status, response.text())
}

/// A counter of the gateway, 0 when it has no sample yet.
fn counter(gateway: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    gateway.metric(name, labels).unwrap_or(0.0)
}

/// `fluxgate_unrouted_total{listener, reason}`.
fn unrouted(gateway: &Gateway, listener: &str, reason: &str) -> f64 {
    counter(
        gateway,
        "fluxgate_unrouted_total",
        &[("listener", listener), ("reason", reason)],
    )
}

/// Waits until each output has delivered exactly its expected number of points and has
/// nothing queued. Call it after every input was handed over (`send_tcp` returns once the
/// gateway closed the connection, a `/write` once it answered), so that every point has been
/// routed: then no more can arrive and "exactly these points" is a sound assertion.
///
/// # Panics
/// When an output delivers more than expected, or after [`WAIT`].
fn settle(gateway: &Gateway, expected: &[(&str, f64)]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = gateway.metrics();
        let mut done = true;
        for (output, n) in expected {
            let labels = [("output", *output)];
            let sent =
                prometheus_value(&text, "fluxgate_sent_points_total", &labels).unwrap_or(0.0);
            let queued = prometheus_value(&text, "fluxgate_queue_points", &labels).unwrap_or(0.0);
            assert!(
                sent <= *n,
                "output {output:?} delivered {sent} points, expected {n}\n{text}"
            );
            done &= sent == *n && queued == 0.0;
        }
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "outputs did not settle at {expected:?} within {WAIT:?}:\n{text}\n{}",
            gateway.log_tail(30)
        );
        thread::sleep(POLL);
    }
}

/// A stored InfluxDB point as one line-protocol-like text (tags and fields sorted, the JSON
/// spelling of values, nanosecond time), for comparisons that show the whole point.
fn render(point: &Point) -> String {
    let mut s = point.measurement.clone();
    for (key, value) in &point.tags {
        s.push_str(&format!(",{key}={value}"));
    }
    let fields: Vec<String> = point
        .fields
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    format!("{s} {} {}", fields.join(","), point.time)
}

fn rendered(points: &[Point]) -> Vec<String> {
    let mut all: Vec<String> = points.iter().map(render).collect();
    all.sort();
    all
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

fn strings(lines: &[&str]) -> Vec<String> {
    sorted(lines.iter().map(|l| (*l).to_owned()).collect())
}

/// Waits for `n` lines at `capture` and returns them sorted.
fn lines_at(capture: &TcpCapture, n: usize) -> Vec<String> {
    sorted(capture.wait_for_lines(n, WAIT))
}

/// Waits for `n` distinct lines at `capture` (a sender may repeat some) and returns them.
fn distinct_lines_at(capture: &TcpCapture, n: usize) -> BTreeSet<String> {
    let what = format!("{n} distinct line(s)");
    capture.wait_for(&what, WAIT, |connections| {
        let mut distinct = BTreeSet::new();
        for conn in connections {
            let complete = conn
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(&conn[..0], |end| &conn[..end]);
            distinct.extend(complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()));
        }
        distinct.len() >= n
    });
    capture.lines().into_iter().collect()
}

/// Polls the gateway log until `needle` occurs `count` times.
fn wait_for_log(gateway: &Gateway, needle: &str, count: usize) {
    let deadline = Instant::now() + WAIT;
    while gateway.log().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "log never said {needle:?} {count} time(s):\n{}",
            gateway.log_tail(40)
        );
        thread::sleep(POLL);
    }
}

/// Runs `fluxgate dry-run --json` on `input` for a config file and returns one object per
/// input line.
fn dry_run(config_path: &std::path::Path, input_kind: &str, input: &str) -> Vec<Value> {
    let path = config_path.to_string_lossy();
    let (status, stdout, stderr) = run_fluxgate(
        &[
            "dry-run", "--config", &path, "--input", input_kind, "--json",
        ],
        input,
        CLI_TIMEOUT,
    );
    assert!(status.success(), "dry-run failed: {stderr}\n{stdout}");
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {line}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1 and 8: routes split traffic; dry-run agrees

/// Graphite outputs A and B, an InfluxDB output, and carbon-c-relay-style rules:
/// `servers.` to InfluxDB and A (stop), `^junk\.` dropped, everything else to B.
fn split_routes(influx: &InfluxDb, a: &TcpCapture, b: &TcpCapture) -> String {
    format!(
        "[graphite]\ntemplates = [\"servers.* .host.measurement.field*\"]\n\n{}{}{}\
         [[routes]]\nprefix = \"servers.\"\noutputs = [\"influx\", \"A\"]\nstop = true\n\n\
         [[routes]]\nmatch = '^junk\\.'\ndrop = true\n\n\
         [[routes]]\nmatch = \"*\"\noutputs = [\"B\"]\n",
        influx_output("influx", influx, "graphite"),
        graphite_output("A", a.addr()),
        graphite_output("B", b.addr()),
    )
}

/// Plaintext input of the split scenario; every value is distinct.
const SPLIT_GRAPHITE: &[&str] = &[
    "servers.web01.cpu.user 1.5 1700000000",
    "servers.web02.mem.free 2048 1700000001",
    "junk.tmp.one 3 1700000000",
    "junk.tmp.two 4 1700000000",
    "apps.api.latency 5.25 1700000000",
    "xservers.web01.cpu 6 1700000000",
    "servers.web03.disk.used;dc=eu 7 1700000000",
    "junkyard.size 8 1700000000",
];

/// `/write` input of the split scenario (measurements are routed like paths).
const SPLIT_LINE: &[&str] = &[
    "cpu,host=h1 value=0.5 1700000000000000000",
    "servers.lp,host=h2 load=2.5 1700000000000000000",
    "junk.lp,host=h3 v=9 1700000000000000000",
];

/// What each destination received in the split scenario, after everything settled.
struct Delivered {
    gateway: Gateway,
    influx: Vec<Point>,
    a: Vec<String>,
    b: Vec<String>,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
}

fn run_split_scenario() -> Delivered {
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    let (a, b) = (TcpCapture::start(), TcpCapture::start());
    let ports = Ports::free();
    let gateway = ports.start(&split_routes(&influx, &a, &b));

    send_lines(ports.plaintext, SPLIT_GRAPHITE);
    let (status, body) = write_lp(&gateway, "graphite", &SPLIT_LINE.join("\n"));
    assert_eq!(status, 204, "{body}");

    // servers.* (3 plaintext + 1 line protocol) to influx and A; B the rest but junk.
    settle(&gateway, &[("influx", 4.0), ("A", 4.0), ("B", 4.0)]);
    let influx_points = influx.wait_for_points("graphite", 4, WAIT);
    let a_lines = lines_at(&a, 4);
    let b_lines = lines_at(&b, 4);
    Delivered {
        gateway,
        influx: influx_points,
        a: a_lines,
        b: b_lines,
        a_addr: a.addr(),
        b_addr: b.addr(),
    }
}

#[test]
fn routes_split_traffic_between_influxdb_and_two_graphite_outputs() {
    let d = run_split_scenario();
    assert_eq!(
        rendered(&d.influx),
        strings(&[
            "cpu,host=web01 user=1.5 1700000000000000000",
            "disk,dc=eu,host=web03 used=7 1700000000000000000",
            "mem,host=web02 free=2048 1700000001000000000",
            "servers.lp,host=h2 load=2.5 1700000000000000000",
        ])
    );
    assert_eq!(
        d.a,
        strings(&[
            "servers.web01.cpu.user 1.5 1700000000",
            "servers.web02.mem.free 2048 1700000001",
            "servers.web03.disk.used;dc=eu 7 1700000000",
            // The line-protocol point by the output's template (host.tags.measurement.field).
            "h2.servers%2Elp.load 2.5 1700000000",
        ])
    );
    assert_eq!(
        d.b,
        strings(&[
            "apps.api.latency 5.25 1700000000",
            // A prefix matches at the start only; `^junk\.` needs the dot.
            "xservers.web01.cpu 6 1700000000",
            "junkyard.size 8 1700000000",
            // The `*` rule takes line-protocol points too (on = "any"); field `value` is left
            // out of the path as Telegraf does.
            "h1.cpu 0.5 1700000000",
        ])
    );
    let g = &d.gateway;
    assert_eq!(unrouted(g, "plaintext_tcp", "drop_route"), 2.0);
    assert_eq!(unrouted(g, "http", "drop_route"), 1.0);
    assert_eq!(
        counter(g, "fluxgate_unrouted_total", &[("reason", "no_route")]),
        0.0
    );
    assert_eq!(counter(g, "fluxgate_rejected_total", &[]), 0.0);
}

/// The outputs each input line went to, found by its distinct value: InfluxDB by the stored
/// field, A and B by the received lines.
fn delivered_outputs(d: &Delivered, value: f64) -> BTreeSet<String> {
    let mut outputs = BTreeSet::new();
    if d.influx.iter().any(|p| {
        p.fields
            .values()
            .any(|v| v.as_f64().is_some_and(|f| f == value))
    }) {
        outputs.insert("influx".to_owned());
    }
    for (name, lines) in [("A", &d.a), ("B", &d.b)] {
        if lines
            .iter()
            .any(|l| l.split(' ').nth(1).and_then(|v| v.parse::<f64>().ok()) == Some(value))
        {
            outputs.insert(name.to_owned());
        }
    }
    outputs
}

fn input_value(kind: &str, line: &str) -> f64 {
    let text = if kind == "graphite" {
        line.split(' ').nth(1)
    } else {
        // `measurement,tags field=value ts`: one field per test line.
        line.split(' ')
            .nth(1)
            .and_then(|field| field.split('=').nth(1))
    };
    text.and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {line:?}"))
}

#[test]
fn dry_run_predicts_the_outputs_the_live_gateway_delivered_to() {
    let d = run_split_scenario();
    let config = d.gateway.config_path().to_owned();
    for (kind, input) in [("graphite", SPLIT_GRAPHITE), ("line", SPLIT_LINE)] {
        let objects = dry_run(&config, kind, &input.join("\n"));
        assert_eq!(objects.len(), input.len(), "{objects:#?}");
        for (line, object) in input.iter().zip(&objects) {
            assert_eq!(object["input"], *line);
            assert_eq!(object["error"], Value::Null, "{object}");
            let value = input_value(kind, line);
            let predicted: BTreeSet<String> = object["destinations"]
                .as_array()
                .expect("destinations")
                .iter()
                .map(|dest| dest["output"].as_str().expect("output").to_owned())
                .collect();
            assert_eq!(
                predicted,
                delivered_outputs(&d, value),
                "dry-run vs live for {line:?}: {object}"
            );
            // The destinations named are the real ones, and the Graphite text predicted is
            // byte for byte what they received.
            for dest in object["destinations"].as_array().expect("destinations") {
                let expected = match dest["output"].as_str() {
                    Some("A") => d.a_addr.to_string(),
                    Some("B") => d.b_addr.to_string(),
                    _ if kind == "graphite" => "graphite".to_owned(),
                    _ => "(the db or bucket of the request)".to_owned(),
                };
                assert_eq!(dest["destination"], expected.as_str(), "{object}");
            }
            for graphite in object["graphite"].as_array().expect("graphite") {
                let graphite = graphite.as_str().expect("a line");
                assert!(
                    d.a.iter().chain(&d.b).any(|l| l == graphite),
                    "dry-run predicted {graphite:?}; A got {:?}, B got {:?}",
                    d.a,
                    d.b
                );
            }
            // And the line protocol predicted is what InfluxDB stored.
            let stored = rendered(&d.influx);
            for point in object["points"].as_array().expect("points") {
                let point = point.as_str().expect("a line");
                assert!(
                    stored.iter().any(|s| s == point),
                    "dry-run predicted {point:?}; InfluxDB holds {stored:#?}"
                );
            }
            let route = object["route"].as_str().expect("route text");
            if line.starts_with("junk.") {
                assert!(route.ends_with("\ndropped"), "{route}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2: no match-all rule

#[test]
fn without_a_match_all_rule_an_unmatched_point_goes_nowhere_and_is_counted() {
    let (a, b) = (TcpCapture::start(), TcpCapture::start());
    let ports = Ports::free();
    let gateway = ports.start(&format!(
        "{}{}[[routes]]\nprefix = [\"servers.\", \"hosts.\"]\noutputs = [\"A\"]\n\n\
         [[routes]]\nmatch = ['\\.errors$', '^alerts\\.']\noutputs = [\"B\"]\n",
        graphite_output("A", a.addr()),
        graphite_output("B", b.addr()),
    ));
    send_lines(
        ports.plaintext,
        [
            "servers.web01.errors 1 1700000000",
            "apps.api.errors 2 1700000000",
            "apps.api.latency 3 1700000000",
            "other 4 1700000000",
            "hosts.h1.up 8 1700000000",
            "alerts.disk.full 9 1700000000",
            // The tags do not count: the path does not end in `.errors`.
            "apps.tagged;suffix=y.errors 7 1700000000",
        ],
    );
    send_tcp(
        ports.pickle,
        &pickle_frame(&[("apps.pickled.latency", T, 5.0)]),
    );
    // Every point of a write may be routed nowhere: the write itself still succeeded.
    let (status, body) = write_lp(&gateway, "db", "mem,host=h1 free=6 1700000000000000000");
    assert_eq!((status, body.as_str()), (204, ""));

    settle(&gateway, &[("A", 2.0), ("B", 3.0)]);
    assert_eq!(
        lines_at(&a, 2),
        strings(&[
            "servers.web01.errors 1 1700000000",
            "hosts.h1.up 8 1700000000"
        ])
    );
    assert_eq!(
        lines_at(&b, 3),
        strings(&[
            // No `stop`: servers.web01.errors falls through to the second rule too.
            "servers.web01.errors 1 1700000000",
            "apps.api.errors 2 1700000000",
            "alerts.disk.full 9 1700000000",
        ])
    );
    // The pickled point reaches no output, so settle does not wait for it: wait for its count.
    eventually(WAIT, || {
        let got = [
            unrouted(&gateway, "plaintext_tcp", "no_route"),
            unrouted(&gateway, "pickle", "no_route"),
            unrouted(&gateway, "http", "no_route"),
        ];
        if got == [3.0, 1.0, 1.0] {
            Ok(())
        } else {
            Err(format!(
                "unrouted (plaintext_tcp, pickle, http) {got:?}, expected [3, 1, 1]\n{}",
                gateway.metrics()
            ))
        }
    });
    assert_eq!(
        counter(
            &gateway,
            "fluxgate_unrouted_total",
            &[("reason", "drop_route")]
        ),
        0.0
    );
}

// ---------------------------------------------------------------------------------------------
// 3: fall-through, against carbon-c-relay

/// Rules exercising fall-through: two rules without `stop` add their outputs, a later `stop`
/// ends it, a `drop` after earlier matches keeps what they chose (carbon-c-relay: a blackhole
/// match stops, earlier destinations already have the metric).
const FALL_THROUGH_INPUT: &[&str] = &[
    "app.web.cpu 1 1700000000",
    "app.web.mem 2 1700000000",
    "app.db.cpu 3 1700000000",
    "other.cpu 4 1700000000",
    "other.mem 5 1700000000",
    "app.secret.cpu 6 1700000000",
    "app.secret.mem 7 1700000000",
    // Rules look at the path only, never at the tags.
    "other.mem;dc=eu.cpu 8 1700000000",
];

#[test]
fn rules_without_stop_fall_through_and_add_outputs_as_carbon_c_relay_does() {
    let fluxgate_dest = [
        TcpCapture::start(),
        TcpCapture::start(),
        TcpCapture::start(),
    ];
    let relay_dest = [
        TcpCapture::start(),
        TcpCapture::start(),
        TcpCapture::start(),
    ];
    let ports = Ports::free();
    let gateway = ports.start(&format!(
        "{}{}{}\
         [[routes]]\nmatch = '^app\\.'\noutputs = [\"A\"]\n\n\
         [[routes]]\nmatch = '\\.cpu$'\noutputs = [\"B\"]\n\n\
         [[routes]]\nmatch = '^app\\.secret\\.'\ndrop = true\n\n\
         [[routes]]\nprefix = \"app.web.\"\noutputs = [\"C\"]\nstop = true\n\n\
         [[routes]]\nmatch = \"*\"\noutputs = [\"A\"]\n",
        graphite_output("A", fluxgate_dest[0].addr()),
        graphite_output("B", fluxgate_dest[1].addr()),
        graphite_output("C", fluxgate_dest[2].addr()),
    ));
    let relay = CarbonCRelay::builder()
        .routes(&format!(
            "cluster A forward {};\ncluster B forward {};\ncluster C forward {};\n\
             match ^app\\. send to A;\nmatch \\.cpu$ send to B;\n\
             match ^app\\.secret\\. send to blackhole;\n\
             match ^app\\.web\\. send to C stop;\nmatch * send to A;\n",
            relay_dest[0].addr(),
            relay_dest[1].addr(),
            relay_dest[2].addr(),
        ))
        .start();

    send_lines(ports.plaintext, FALL_THROUGH_INPUT);
    relay.send_lines(FALL_THROUGH_INPUT);

    // app.web.cpu A B C; app.web.mem A C; app.db.cpu A B (A once); other.cpu A B; other.mem A;
    // app.secret.cpu A B (then dropped); app.secret.mem A (then dropped); other.mem;… A.
    settle(&gateway, &[("A", 8.0), ("B", 4.0), ("C", 2.0)]);
    let expected: [&[&str]; 3] = [
        &[
            "app.web.cpu 1 1700000000",
            "app.web.mem 2 1700000000",
            "app.db.cpu 3 1700000000",
            "other.cpu 4 1700000000",
            "other.mem 5 1700000000",
            "app.secret.cpu 6 1700000000",
            "app.secret.mem 7 1700000000",
            "other.mem;dc=eu.cpu 8 1700000000",
        ],
        &[
            "app.web.cpu 1 1700000000",
            "app.db.cpu 3 1700000000",
            "other.cpu 4 1700000000",
            "app.secret.cpu 6 1700000000",
        ],
        &["app.web.cpu 1 1700000000", "app.web.mem 2 1700000000"],
    ];
    for (i, want) in expected.iter().enumerate() {
        let got = lines_at(&fluxgate_dest[i], want.len());
        assert_eq!(got, strings(want), "fluxgate output {}", ["A", "B", "C"][i]);
        // carbon-c-relay sends app.db.cpu and other.cpu to A twice (two rules chose A);
        // fluxgate sends a point once per output. Compared as sets, they agree.
        let relay_got = distinct_lines_at(&relay_dest[i], want.len());
        assert_eq!(
            relay_got,
            want.iter()
                .map(|l| (*l).to_owned())
                .collect::<BTreeSet<_>>(),
            "carbon-c-relay cluster {}",
            ["A", "B", "C"][i]
        );
    }
    // A drop after earlier matches sends nowhere else, and the point was routed: not counted.
    assert_eq!(counter(&gateway, "fluxgate_unrouted_total", &[]), 0.0);
}

// ---------------------------------------------------------------------------------------------
// 4: on = "measurement" / "path"

#[test]
fn on_measurement_and_on_path_restrict_a_rule_to_line_protocol_or_graphite_points() {
    let (a, b, c) = (
        TcpCapture::start(),
        TcpCapture::start(),
        TcpCapture::start(),
    );
    let ports = Ports::free();
    let gateway = ports.start(&format!(
        "{}{}{}\
         [[routes]]\nmatch = '^cpu'\non = \"measurement\"\noutputs = [\"A\"]\nstop = true\n\n\
         [[routes]]\nmatch = '^cpu'\non = \"path\"\noutputs = [\"B\"]\nstop = true\n\n\
         [[routes]]\nprefix = \"mem\"\non = \"measurement\"\noutputs = [\"C\"]\n",
        graphite_output("A", a.addr()),
        graphite_output("B", b.addr()),
        graphite_output("C", c.addr()),
    ));
    send_lines(
        ports.plaintext,
        ["cpu.load 1 1700000000", "mem.free 2 1700000000"],
    );
    let (status, body) = write_lp(
        &gateway,
        "db",
        "cpu,host=h1 value=3 1700000000000000000\n\
         mem,host=h1 free=4 1700000000000000000\n\
         disk,host=h1 used=5 1700000000000000000",
    );
    assert_eq!(status, 204, "{body}");

    settle(&gateway, &[("A", 1.0), ("B", 1.0), ("C", 1.0)]);
    assert_eq!(lines_at(&a, 1), strings(&["h1.cpu 3 1700000000"]));
    assert_eq!(lines_at(&b, 1), strings(&["cpu.load 1 1700000000"]));
    assert_eq!(lines_at(&c, 1), strings(&["h1.mem.free 4 1700000000"]));
    // mem.free is a Graphite point: the measurement-only rule does not see it.
    assert_eq!(unrouted(&gateway, "plaintext_tcp", "no_route"), 1.0);
    assert_eq!(unrouted(&gateway, "http", "no_route"), 1.0);
}

// ---------------------------------------------------------------------------------------------
// 5: rewrites

#[test]
fn rewrites_run_in_order_before_routing_and_templates() {
    let (influx, carbon) = thread::scope(|scope| {
        let influx = scope.spawn(InfluxDb::start);
        let carbon = scope.spawn(|| CarbonCache::builder().retentions("1s:1h").start());
        (
            influx
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            carbon
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    influx.create_database("graphite");
    let capture = TcpCapture::start();
    let ports = Ports::free();
    let gateway = ports.start(&format!(
        "[graphite]\ntemplates = [\"servers.* .host.measurement.field*\"]\n\n{}{}{}\
         [[rewrite]]\nmatch = '^collectd\\.([^.]+)\\.'\nreplace = 'servers.\\1.'\n\n\
         [[rewrite]]\nmatch = '^servers\\.([A-Za-z]+[0-9]+)\\.'\nreplace = 'servers.\\_1.'\n\n\
         [[routes]]\nprefix = \"servers.\"\noutputs = [\"influx\", \"carbon\", \"capture\"]\n\
         stop = true\n\n\
         [[routes]]\nmatch = \"*\"\ndrop = true\n",
        influx_output("influx", &influx, "graphite"),
        graphite_output("carbon", carbon.line_addr()),
        graphite_output("capture", capture.addr()),
    ));
    // carbon keeps the last hour and refuses the future.
    let now = unix_now() - 60;
    let input = [
        // Rule 1 makes it servers.WEB01..., which rule 2 then lower-cases.
        format!("collectd.WEB01.load.shortterm 0.25 {now}"),
        format!("collectd.db02.memory.used 1024 {now}"),
        // Rule 2 alone; the tags stay after the rewritten path.
        format!("servers.Mixed7.disk.free;dc=eu 5 {now}"),
        // No rewrite applies, no route takes it.
        format!("apps.web01.cpu 7 {now}"),
    ];
    send_lines(ports.plaintext, &input);

    settle(
        &gateway,
        &[("influx", 3.0), ("carbon", 3.0), ("capture", 3.0)],
    );
    let ns = now * 1_000_000_000;
    assert_eq!(
        rendered(&influx.wait_for_points("graphite", 3, WAIT)),
        sorted(vec![
            format!("disk,dc=eu,host=mixed7 free=5 {ns}"),
            format!("load,host=web01 shortterm=0.25 {ns}"),
            format!("memory,host=db02 used=1024 {ns}"),
        ])
    );
    assert_eq!(
        lines_at(&capture, 3),
        sorted(vec![
            format!("servers.db02.memory.used 1024 {now}"),
            format!("servers.mixed7.disk.free;dc=eu 5 {now}"),
            format!("servers.web01.load.shortterm 0.25 {now}"),
        ])
    );
    assert_eq!(
        carbon.wait_for_points("servers.web01.load.shortterm", 1, WAIT),
        vec![(now, 0.25)]
    );
    assert_eq!(
        carbon.wait_for_points("servers.db02.memory.used", 1, WAIT),
        vec![(now, 1024.0)]
    );
    let untagged: Vec<String> = carbon
        .metrics()
        .into_iter()
        .filter(|m| !m.starts_with("_tagged"))
        .collect();
    assert_eq!(
        untagged,
        ["servers.db02.memory.used", "servers.web01.load.shortterm"]
    );
    assert_eq!(unrouted(&gateway, "plaintext_tcp", "drop_route"), 1.0);

    // dry-run shows the same names.
    let objects = dry_run(gateway.config_path(), "graphite", &input.join("\n"));
    let names: Vec<&Value> = objects.iter().map(|o| &o["name"]).collect();
    assert_eq!(
        names,
        [
            "servers.web01.load.shortterm",
            "servers.db02.memory.used",
            "servers.mixed7.disk.free;dc=eu",
            "apps.web01.cpu",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 6: validation

/// Names carbon-c-relay cleanses: odd bytes, stray dots, non-ASCII, tags with odd bytes.
const ODD_NAMES: &[&str] = &[
    "app.web@01.cpu$load",
    "app.web@01.cpu$load;dc=e@u;x=a$b",
    "..app..dots.",
    "app.café.cpu",
    "app/slash.x",
    "keep:all#of-these_chars",
];

#[test]
fn validation_cleanse_makes_the_names_carbon_c_relay_makes() {
    for allowed in [None, Some("-_:#@")] {
        let fluxgate_dest = TcpCapture::start();
        let relay_dest = TcpCapture::start();
        let ports = Ports::free();
        let allowed_line = allowed.map_or(String::new(), |a| format!("allowed_chars = \"{a}\"\n"));
        let gateway = ports.start(&format!(
            "[graphite]\nvalidation = \"cleanse\"\n{allowed_line}\n{}",
            graphite_output("out", fluxgate_dest.addr())
        ));
        let mut relay = CarbonCRelay::builder()
            .hash("forward")
            .destination(&relay_dest.addr().to_string());
        if let Some(chars) = allowed {
            relay = relay.arg("-c").arg(chars);
        }
        let relay = relay.start();
        let input: Vec<String> = ODD_NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name} {} {T}", i + 1))
            .collect();
        send_lines(ports.plaintext, &input);
        relay.send_lines(&input);

        settle(&gateway, &[("out", ODD_NAMES.len() as f64)]);
        let ours = lines_at(&fluxgate_dest, ODD_NAMES.len());
        let expected = match allowed {
            None => strings(&[
                "app.web_01.cpu_load 1 1700000000",
                "app.web_01.cpu_load;dc=e@u;x=a$b 2 1700000000",
                "app.dots 3 1700000000",
                "app.caf__.cpu 4 1700000000",
                "app_slash.x 5 1700000000",
                "keep:all#of-these_chars 6 1700000000",
            ]),
            Some(_) => strings(&[
                "app.web@01.cpu_load 1 1700000000",
                "app.web@01.cpu_load;dc=e@u;x=a$b 2 1700000000",
                "app.dots 3 1700000000",
                "app.caf__.cpu 4 1700000000",
                "app_slash.x 5 1700000000",
                "keep:all#of-these_chars 6 1700000000",
            ]),
        };
        assert_eq!(ours, expected, "allowed_chars {allowed:?}");
        assert_eq!(
            lines_at(&relay_dest, ODD_NAMES.len()),
            ours,
            "carbon-c-relay (allowed {allowed:?}) and fluxgate disagree"
        );
        assert_eq!(counter(&gateway, "fluxgate_rejected_total", &[]), 0.0);
        // dry-run names the cleansed names and the lines the destination received.
        let objects = dry_run(gateway.config_path(), "graphite", &input.join("\n"));
        let predicted: Vec<String> = objects
            .iter()
            .flat_map(|o| o["graphite"].as_array().cloned().unwrap_or_default())
            .map(|l| l.as_str().expect("a line").to_owned())
            .collect();
        assert_eq!(sorted(predicted), ours, "dry-run (allowed {allowed:?})");
    }
}

#[test]
fn validation_encode_encodes_each_segment_once() {
    let capture = TcpCapture::start();
    let ports = Ports::free();
    let gateway = ports.start(&format!(
        "[graphite]\nvalidation = \"encode\"\n\n{}",
        graphite_output("out", capture.addr())
    ));
    send_lines(
        ports.plaintext,
        [
            "app.café.cpu 1 1700000000",
            // Already encoded upstream: unchanged, not encoded twice.
            "app.xn--caf-dma.cpu 2 1700000000",
            "app.web%2001.cpu 3 1700000000",
            "plain.name 4 1700000000",
            "app.café.cpu;dc=café 5 1700000000",
        ],
    );
    // Pickle carries what plaintext cannot: a space inside a segment.
    send_tcp(
        ports.pickle,
        &pickle_frame(&[("app.web 01.cpu", T, 6.0), ("..a..b.", T, 7.0)]),
    );
    settle(&gateway, &[("out", 7.0)]);
    assert_eq!(
        lines_at(&capture, 7),
        strings(&[
            "app.xn--caf-dma.cpu 1 1700000000",
            "app.xn--caf-dma.cpu 2 1700000000",
            "app.web%2001.cpu 3 1700000000",
            "plain.name 4 1700000000",
            // Tags are left as they came.
            "app.xn--caf-dma.cpu;dc=café 5 1700000000",
            "app.web%2001.cpu 6 1700000000",
            "a.b 7 1700000000",
        ])
    );
    assert_eq!(counter(&gateway, "fluxgate_rejected_total", &[]), 0.0);
}

/// With `validation = "none"` (the default) a pickled name may hold a space, which Graphite
/// plaintext cannot carry. The point must not vanish: either delivered or counted.
#[test]
fn an_unencodable_name_routed_to_a_graphite_output_is_counted_not_lost() {
    let capture = TcpCapture::start();
    let ports = Ports::free();
    let gateway = ports.start(&graphite_output("out", capture.addr()));
    send_tcp(
        ports.pickle,
        &pickle_frame(&[("app.web 01.cpu", T, 1.0), ("app.web01.cpu", T, 2.0)]),
    );
    settle(&gateway, &[("out", 1.0)]);
    assert_eq!(
        lines_at(&capture, 1),
        strings(&["app.web01.cpu 2 1700000000"])
    );
    let rejected = counter(
        &gateway,
        "fluxgate_rejected_total",
        &[("listener", "pickle")],
    );
    let dropped = counter(&gateway, "fluxgate_dropped_total", &[("output", "out")]);
    assert_eq!(
        rejected + dropped,
        1.0,
        "a point with a space in its name reached no destination and was counted nowhere:\n{}",
        gateway.metrics()
    );
}

// ---------------------------------------------------------------------------------------------
// 7: SIGHUP

/// Before the reload: `x.` to A, the rest to B.
fn routes_before(ports: &Ports, a: &TcpCapture, b: &TcpCapture) -> String {
    ports.config(&format!(
        "{}{}[[routes]]\nprefix = \"x.\"\noutputs = [\"A\"]\nstop = true\n\n\
         [[routes]]\nmatch = \"*\"\noutputs = [\"B\"]\n",
        graphite_output("A", a.addr()),
        graphite_output("B", b.addr()),
    ))
}

/// After the reload: a new output C, `x.` to B and C, the rest to A, and `y.` renamed `z.`.
/// `bad_output` names an output in the first route instead (a config the reload refuses).
fn routes_after(
    ports: &Ports,
    a: &TcpCapture,
    b: &TcpCapture,
    c: &TcpCapture,
    bad_output: Option<&str>,
) -> String {
    ports.config(&format!(
        "{}{}{}[[rewrite]]\nmatch = '^y\\.'\nreplace = 'z.'\n\n\
         [[routes]]\nprefix = \"x.\"\noutputs = [{}]\nstop = true\n\n\
         [[routes]]\nmatch = \"*\"\noutputs = [\"A\"]\n",
        graphite_output("A", a.addr()),
        graphite_output("B", b.addr()),
        graphite_output("C", c.addr()),
        bad_output.map_or("\"B\", \"C\"".to_owned(), |o| format!("\"{o}\"")),
    ))
}

#[test]
fn sighup_applies_new_routes_to_new_and_open_connections() {
    let (a, b, c) = (
        TcpCapture::start(),
        TcpCapture::start(),
        TcpCapture::start(),
    );
    let ports = Ports::free();
    let mut gateway = Gateway::start(&routes_before(&ports, &a, &b), ports.http);
    let pid = gateway.pid();

    // A sender that keeps its connection open across the reloads, as carbon senders do.
    let mut open = TcpStream::connect(ports.plaintext).expect("connect to the plaintext listener");
    open.write_all(b"x.before 1 1700000000\ny.before 2 1700000000\n")
        .expect("write");
    assert_eq!(lines_at(&a, 1), strings(&["x.before 1 1700000000"]));
    assert_eq!(lines_at(&b, 1), strings(&["y.before 2 1700000000"]));

    gateway.write_config(&routes_after(&ports, &a, &b, &c, None));
    gateway.sighup();
    wait_for_log(&gateway, "configuration reloaded", 1);
    assert_eq!(gateway.pid(), pid, "a reload keeps the process");

    open.write_all(b"x.open 3 1700000000\ny.open 4 1700000000\n")
        .expect("write");
    send_lines(
        ports.plaintext,
        ["x.new 5 1700000000", "y.new 6 1700000000"],
    );
    settle(&gateway, &[("A", 3.0), ("B", 3.0), ("C", 2.0)]);

    // A config naming an unknown output is refused; the routes in force stay.
    gateway.write_config(&routes_after(&ports, &a, &b, &c, Some("nope")));
    gateway.sighup();
    wait_for_log(&gateway, "reload failed", 1);
    // The message names the rule and its key, and the line of the key.
    let log = gateway.log();
    assert!(
        log.contains("routes[0]: outputs (line ")
            && log.contains("unknown output \"nope\" (configured outputs: A, B, C)"),
        "{}",
        gateway.log_tail(10)
    );
    open.write_all(b"x.after 7 1700000000\ny.after 8 1700000000\n")
        .expect("write");
    drop(open);

    settle(&gateway, &[("A", 4.0), ("B", 4.0), ("C", 3.0)]);
    assert_eq!(
        lines_at(&a, 4),
        strings(&[
            "x.before 1 1700000000",
            "z.open 4 1700000000",
            "z.new 6 1700000000",
            "z.after 8 1700000000",
        ])
    );
    let x_after_reload = [
        "x.open 3 1700000000",
        "x.new 5 1700000000",
        "x.after 7 1700000000",
    ];
    let mut b_expected = vec!["y.before 2 1700000000"];
    b_expected.extend(x_after_reload);
    assert_eq!(lines_at(&b, 4), strings(&b_expected));
    assert_eq!(lines_at(&c, 3), strings(&x_after_reload));
    // A and B did not change, so they kept their connections.
    assert_eq!((a.connection_count(), b.connection_count()), (1, 1));
    assert_eq!(gateway.pid(), pid);
    assert!(gateway.is_running());
}
