//! One failure costs only itself: a destination, database or output that is down, refusing or
//! not draining never stalls the others, and signals arriving while senders are parked on a
//! full queue neither hang the gateway nor lose or invent points.
//!
//! - InfluxDB outputs are partitioned by destination (db/rp, bucket): a write InfluxDB keeps
//!   refusing (an unknown retention policy) or keeps failing never holds up another database,
//!   and a batch retried for longer than `max_retry_time` is given up and counted.
//! - A `Retry-After` longer than `retry_max` is clamped to it.
//! - Graphite outputs queue per destination: a dead `carbon_ch` member or a destination that
//!   accepts and never reads sheds what is routed to it after `stall_timeout`, and the others
//!   keep flowing. Outputs are fed side by side: a full one does not block those after it.
//! - SIGTERM finishes within `shutdown_timeout` with a sender blocked on a full queue and says
//!   (exit status 1) that points were lost; SIGHUP restarting a listener does not hang, and
//!   SIGHUP replacing an output loses nothing in flight.
//! - A read cut short (by SIGTERM, or a UDP datagram longer than `max_datagram_bytes`) does not
//!   turn its unterminated tail into a point; it is counted as `truncated`.
//! - An HTTP write answered 503 left nothing in any output, so the client's retry delivers each
//!   point once.
//!
//! Every outage is placed on progress (after so many points were stored or requests seen), and
//! every wait is bounded. Upstreams are real where they can be (`influxd`, carbon-cache); the
//! InfluxDB 2.x stand-in plays upstreams that fail, hold or stall on cue.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fluxgate_e2e::{
    connect_sender as connect, eventually, finish_sender as finish, free_port, free_udp_port,
    http_request, loopback, metric, run_fluxgate, send_lines, send_udp, unix_now, wait_metric,
    CarbonCache, Gateway, HttpResponse, InfluxDb, InfluxV2Mock, Reply, Stored, TcpCapture,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

/// Graphite timestamps start here (seconds).
const BASE: i64 = 1_700_000_000;

/// Retry settings for InfluxDB outputs: a failed send is retried quickly.
const FAST_RETRY: &str = "retry_initial = \"50ms\"\nretry_max = \"500ms\"";

// ---------------------------------------------------------------------------------------------
// helpers

fn post(url: &str, body: &[u8]) -> HttpResponse {
    http_request("POST", url, &[], body).unwrap_or_else(|err| panic!("POST {url}: {err}"))
}

/// `n` line-protocol points of `measurement`, each its own series (`n=<i>`), nanoseconds.
fn lines_body(measurement: &str, n: usize) -> Vec<u8> {
    let mut body = String::new();
    for i in 0..n {
        let _ = writeln!(
            body,
            "{measurement},n={i} v={i}i {}",
            1_700_000_000_000_000_000_i64 + i as i64
        );
    }
    body.into_bytes()
}

/// Polls until the gateway's log contains `text`.
fn wait_log(gateway: &Gateway, text: &str, timeout: Duration) {
    eventually(timeout, || {
        if gateway.log().contains(text) {
            Ok(())
        } else {
            Err(format!(
                "the log does not say {text:?}:\n{}",
                gateway.log_tail(20)
            ))
        }
    });
}

/// Waits until `output` holds most of its `queue_points = 1000`: a socket read's worth of
/// points more would not fit, and nothing of it was delivered.
fn wait_queue_full(gateway: &Gateway, output: &str) {
    eventually(WAIT, || {
        let queued = metric(gateway, "fluxgate_queue_points", &[("output", output)]);
        if queued >= 500.0 {
            Ok(())
        } else {
            Err(format!(
                "{output} holds {queued} points\n{}",
                gateway.log_tail(10)
            ))
        }
    });
    assert_eq!(
        metric(gateway, "fluxgate_sent_points_total", &[("output", output)]),
        0.0
    );
}

/// Lines of line protocol the stand-in accepted (answered 204), over every request.
fn accepted_lines(mock: &InfluxV2Mock) -> Vec<String> {
    mock.received()
        .iter()
        .filter(|r| r.answered == Some(204))
        .flat_map(|r| r.lines())
        .collect()
}

/// The `bucket` query parameter of a v2 write.
fn bucket(request: &fluxgate_e2e::Received) -> String {
    request
        .query()
        .into_iter()
        .find(|(key, _)| key == "bucket")
        .map(|(_, value)| value)
        .unwrap_or_default()
}

/// A TCP server that accepts every connection and never reads from it: a carbon that is
/// connected and not draining. Connections stay open until it is dropped.
struct NeverReads {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl NeverReads {
    fn start() -> NeverReads {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
            thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            held.push(stream);
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        NeverReads {
            addr,
            accepted,
            stop,
            acceptor: Some(acceptor),
        }
    }
}

impl Drop for NeverReads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A sender writing `payload` on one connection in a thread, noting how far it got and
/// whether a write made no progress for a second (the gateway stopped reading). It keeps the
/// connection open when done unless `close` is set, and gives up when `stop` is set.
struct Sender {
    written: Arc<AtomicUsize>,
    blocked: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    total: usize,
    thread: Option<JoinHandle<()>>,
}

impl Sender {
    fn start(addr: SocketAddr, payload: Vec<u8>, close: bool) -> Sender {
        let total = payload.len();
        let written = Arc::new(AtomicUsize::new(0));
        let blocked = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (written, blocked, stop) = (
                Arc::clone(&written),
                Arc::clone(&blocked),
                Arc::clone(&stop),
            );
            thread::spawn(move || {
                let mut stream = connect(addr);
                stream
                    .set_write_timeout(Some(Duration::from_secs(1)))
                    .expect("write timeout");
                let deadline = Instant::now() + Duration::from_secs(90);
                let mut at = 0;
                while at < payload.len() {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        return;
                    }
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
                        Err(_) => return,
                    }
                }
                if close {
                    finish(stream);
                } else {
                    while !stop.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        };
        Sender {
            written,
            blocked,
            stop,
            total,
            thread: Some(thread),
        }
    }

    /// Waits until a write made no progress: the gateway pushes back.
    fn wait_blocked(&self, timeout: Duration) {
        eventually(timeout, || {
            if self.blocked.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(format!(
                    "the sender was never pushed back: {} of {} bytes written",
                    self.written.load(Ordering::SeqCst),
                    self.total
                ))
            }
        });
    }

    /// Waits for the thread to finish writing (and closing, if asked).
    fn join(mut self, timeout: Duration) {
        let thread = self.thread.take().expect("joined once");
        eventually(timeout, || {
            if thread.is_finished() {
                Ok(())
            } else {
                Err(format!(
                    "the sender is still writing: {} of {} bytes written",
                    self.written.load(Ordering::SeqCst),
                    self.total
                ))
            }
        });
        thread.join().expect("sender thread");
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `n` plaintext lines `<prefix>.<i> <i> <BASE + i>`.
fn plaintext_payload(prefix: &str, n: usize) -> Vec<u8> {
    let mut payload = String::with_capacity(n * (prefix.len() + 24));
    for i in 0..n {
        let _ = writeln!(payload, "{prefix}.{} {i} {}", i % 1000, BASE + i as i64);
    }
    payload.into_bytes()
}

/// Each line of `lines` once, and exactly the lines of `expected`: a report of what differs.
fn exactly_once(expected: &[String], lines: &[String]) -> Result<(), String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in lines {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    let repeated = counts.values().filter(|&&n| n > 1).count();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|line| !counts.contains_key(line.as_str()))
        .take(5)
        .collect();
    let wanted: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    let extra = counts.keys().filter(|line| !wanted.contains(*line)).count();
    if repeated == 0 && missing.is_empty() && extra == 0 && lines.len() == expected.len() {
        Ok(())
    } else {
        Err(format!(
            "{} line(s) received for {} expected: {repeated} repeated, {extra} unexpected, \
             missing (first 5) {missing:?}",
            lines.len(),
            expected.len()
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// 1. one failing database does not stall another

/// Graphite lines of `names` series, `per_name` points each: 20 × 10 by default.
fn graphite_stream(prefix: &str, names: usize, per_name: usize) -> Vec<String> {
    (0..names * per_name)
        .map(|i| {
            format!(
                "{prefix}.s{} {} {}",
                i % names,
                i as f64 + 0.5,
                BASE + (i / names) as i64
            )
        })
        .collect()
}

/// InfluxDB 1.x answers a write to an unknown retention policy with a 500
/// (`retention policy not found: nope`). That is a refusal, not an outage: it is dropped and
/// counted at once, and the other series of the same database, sent after it, all land.
#[test]
fn one_failing_database_does_not_stall_another() {
    let influx = InfluxDb::start();
    influx.create_database("good");
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
shutdown_timeout = "1s"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
ack = "queued"
[[outputs.influxdb]]
name = "influx"
url = "{url}"
database = "good"
batch_size = 20
flush_interval = "100ms"
{FAST_RETRY}
"#,
            url = influx.url()
        ),
        http,
    );
    let response = post(
        &format!("{}/write?db=good&rp=nope", gateway.url()),
        &lines_body("e2e.bad", 40),
    );
    assert_eq!(response.status, 204, "{}", response.text());
    // The outage is in place once influxd has refused the write.
    eventually(WAIT, || {
        let refused = metric(
            &gateway,
            "fluxgate_send_errors_total",
            &[("output", "influx"), ("reason", "http_500")],
        );
        if refused >= 1.0 {
            Ok(())
        } else {
            Err(format!(
                "influxd has not refused anything yet\n{}",
                gateway.metrics()
            ))
        }
    });

    let response = post(
        &format!("{}/write?db=good", gateway.url()),
        &lines_body("e2e.good", 40),
    );
    assert_eq!(response.status, 204, "{}", response.text());
    send_lines(plaintext, graphite_stream("e2e.stream", 20, 10));

    let points = influx.wait_exact_points("good", 240, WAIT);
    assert!(points.iter().all(|p| p.measurement != "e2e.bad"));
    wait_metric(
        &gateway,
        "fluxgate_dropped_total",
        &[("output", "influx"), ("reason", "not_found")],
        40.0,
    );
    wait_metric(
        &gateway,
        "fluxgate_queue_points",
        &[("output", "influx")],
        0.0,
    );
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_sent_points_total",
            &[("output", "influx")]
        ),
        240.0
    );
    assert_eq!(
        metric(&gateway, "fluxgate_dropped_total", &[("output", "influx")]),
        40.0,
        "{}",
        gateway.metrics()
    );
}

/// A bucket whose writes keep failing with a retryable 503 is retried on its own: the `ok`
/// bucket's points land meanwhile, and after `max_retry_time` the bad batch is given up and
/// counted (`retry_budget`).
#[test]
fn a_bucket_that_keeps_failing_does_not_stall_another_and_is_given_up() {
    let mock = InfluxV2Mock::start(|_, request| {
        if bucket(request) == "bad" {
            Reply::error(503, "unavailable", "the bucket is temporarily unavailable")
        } else {
            Reply::no_content()
        }
    });
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
shutdown_timeout = "1s"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
ack = "queued"
[[outputs.influxdb]]
name = "cloud"
url = "{url}"
api = "v2"
org = "acme"
bucket = "ok"
token = "t"
batch_size = 20
flush_interval = "100ms"
max_retry_time = "15s"
{FAST_RETRY}
"#,
            url = mock.url()
        ),
        http,
    );
    let response = post(
        &format!("{}/api/v2/write?org=acme&bucket=bad", gateway.url()),
        &lines_body("e2e.bad", 40),
    );
    assert_eq!(response.status, 204, "{}", response.text());
    eventually(WAIT, || {
        if mock.received().iter().any(|r| r.answered == Some(503)) {
            Ok(())
        } else {
            Err("the bad bucket has not failed yet".to_owned())
        }
    });

    let response = post(
        &format!("{}/api/v2/write?org=acme&bucket=ok", gateway.url()),
        &lines_body("e2e.good", 40),
    );
    assert_eq!(response.status, 204, "{}", response.text());
    let stream = graphite_stream("e2e.stream", 20, 10);
    send_lines(plaintext, &stream);
    let mut expected: Vec<String> = String::from_utf8(lines_body("e2e.good", 40))
        .expect("ASCII")
        .lines()
        .map(str::to_owned)
        .collect();
    expected.extend(stream.iter().map(|line| {
        let mut fields = line.split(' ');
        let (name, value, time) = (
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        format!("{name} value={value} {time}000000000")
    }));
    eventually(WAIT, || {
        let ok: Vec<String> = accepted_lines(&mock);
        if ok.len() >= expected.len() {
            Ok(())
        } else {
            Err(format!(
                "the ok bucket has {} of {} points while the bad one is retried\n{}",
                ok.len(),
                expected.len(),
                gateway.log_tail(10)
            ))
        }
    });
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_dropped_total",
            &[("output", "cloud"), ("reason", "retry_budget")]
        ),
        0.0,
        "the ok bucket landed only after the bad batch was given up"
    );
    let mut ok = accepted_lines(&mock);
    ok.sort();
    expected.sort();
    exactly_once(&expected, &ok).unwrap();

    // Given up max_retry_time after its first try, which may be most of that from now.
    eventually(WAIT + Duration::from_secs(15), || {
        let dropped = metric(
            &gateway,
            "fluxgate_dropped_total",
            &[("output", "cloud"), ("reason", "retry_budget")],
        );
        if dropped == 40.0 {
            Ok(())
        } else {
            Err(format!(
                "dropped{{retry_budget}} is {dropped}, expected 40\n{}",
                gateway.log_tail(10)
            ))
        }
    });
    let bad: Vec<Instant> = mock
        .received()
        .iter()
        .filter(|r| bucket(r) == "bad")
        .map(|r| r.at)
        .collect();
    assert!(bad.len() > 1, "the bad batch was never retried");
    let span = bad[bad.len() - 1].duration_since(bad[0]);
    assert!(
        span < Duration::from_secs(18),
        "retried for {span:?} with max_retry_time = 15s"
    );
    wait_metric(
        &gateway,
        "fluxgate_queue_points",
        &[("output", "cloud")],
        0.0,
    );
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_sent_points_total",
            &[("output", "cloud")]
        ),
        expected.len() as f64
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Retry-After is clamped to retry_max

/// An upstream asking for an hour's pause (`Retry-After: 3600`) does not get it when
/// `retry_max` is 1 s: the retry comes within a second, jitter included (3 s allowed for a
/// loaded machine, still far from an hour).
#[test]
fn retry_after_is_clamped_to_retry_max() {
    let mock = InfluxV2Mock::start(|index, _| {
        if index == 0 {
            Reply::error(503, "unavailable", "come back in an hour")
                .with_header("Retry-After", "3600")
        } else {
            Reply::no_content()
        }
    });
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
shutdown_timeout = "1s"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
[[outputs.influxdb]]
name = "cloud"
url = "{url}"
api = "v2"
org = "acme"
bucket = "metrics"
token = "t"
flush_interval = "100ms"
max_in_flight = 1
retry_initial = "50ms"
retry_max = "1s"
"#,
            url = mock.url()
        ),
        http,
    );
    send_lines(plaintext, [format!("e2e.clamped 1 {BASE}")]);
    let received = mock.wait_for_within(2, Duration::from_secs(5));
    let gap = received[1].at.duration_since(received[0].at);
    assert!(
        gap <= Duration::from_secs(3),
        "retried {gap:?} after Retry-After: 3600 with retry_max = 1s"
    );
    assert_eq!(received[0].body, received[1].body);
    assert_eq!(received[1].answered, Some(204));
    wait_metric(
        &gateway,
        "fluxgate_sent_points_total",
        &[("output", "cloud")],
        1.0,
    );
    assert_eq!(
        metric(&gateway, "fluxgate_dropped_total", &[("output", "cloud")]),
        0.0
    );
}

// ---------------------------------------------------------------------------------------------
// 3. a Graphite destination that is down or not draining costs only what is routed to it

/// `fluxgate dry-run --json` on the running gateway's own config: for each Graphite name, the
/// destinations it is placed on.
fn placements(gateway: &Gateway, names: &[String]) -> BTreeMap<String, Vec<String>> {
    let config = gateway.config_path().to_string_lossy().into_owned();
    let input: String = names
        .iter()
        .map(|name| format!("{name} 1 {BASE}\n"))
        .collect();
    let (status, stdout, stderr) = run_fluxgate(
        &["dry-run", "--config", &config, "--json"],
        &input,
        Duration::from_secs(30),
    );
    assert!(status.success(), "dry-run failed: {stderr}\n{stdout}");
    stdout
        .lines()
        .map(|line| {
            let object: Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("dry-run printed no JSON ({err}): {line}"));
            let name = object["name"].as_str().unwrap_or_default().to_owned();
            let destinations = object["destinations"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .filter_map(|d| d["destination"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (name, destinations)
        })
        .collect()
}

/// A `carbon_ch` member nobody listens on fills its queue; from then on what is placed on it is
/// shed (`destination_down`) after `stall_timeout`, and every point placed on the live member
/// reaches its whisper files.
#[test]
fn dead_carbon_ch_member_does_not_freeze_the_cluster() {
    const NAMES: usize = 100;
    const PER_NAME: usize = 100;
    let cache = CarbonCache::builder().retentions("1s:10m").start();
    // carbon_ch places by host and instance: the instances tell the members apart.
    let dead = format!("{}:a", loopback(free_port()));
    let live = format!("{}:b", cache.pickle_addr());
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
shutdown_timeout = "1s"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
[[outputs.graphite]]
name = "carbon"
protocol = "pickle"
cluster = "carbon_ch"
destinations = ["{dead}", "{live}"]
queue_points = 1000
retry_initial = "50ms"
retry_max = "500ms"
"#
        ),
        http,
    );
    let names: Vec<String> = (0..NAMES).map(|i| format!("e2e.ch.m{i:03}")).collect();
    let placed = placements(&gateway, &names);
    let on_live: BTreeSet<&String> = names
        .iter()
        .filter(|name| placed.get(*name).is_some_and(|d| *d == [live.as_str()]))
        .collect();
    let on_dead = names
        .iter()
        .filter(|name| placed.get(*name).is_some_and(|d| *d == [dead.as_str()]))
        .count();
    assert_eq!(on_live.len() + on_dead, NAMES, "{placed:#?}");
    assert!(!on_live.is_empty() && on_dead > 0, "{placed:#?}");

    // Round-robin over the names, so both members get points all along the stream.
    let start = unix_now() - 300;
    let mut lines = Vec::with_capacity(NAMES * PER_NAME);
    let mut expected = Stored::new();
    for step in 0..PER_NAME {
        for (n, name) in names.iter().enumerate() {
            let (timestamp, value) = (start + step as i64, (step * NAMES + n) as f64 + 0.5);
            lines.push(format!("{name} {value} {timestamp}"));
            if on_live.contains(name) {
                expected
                    .entry(name.clone())
                    .or_default()
                    .push((timestamp, value));
            }
        }
    }
    let sender = {
        let lines = lines.clone();
        thread::spawn(move || send_lines(plaintext, &lines))
    };
    eventually(Duration::from_secs(30), || {
        let stored = cache.stored();
        if stored == expected {
            Ok(())
        } else {
            let have: usize = stored.values().map(Vec::len).sum();
            let want: usize = expected.values().map(Vec::len).sum();
            Err(format!(
                "the live cache holds {have} of {want} points ({} of {} files)\n{}",
                stored.len(),
                expected.len(),
                gateway.log_tail(10)
            ))
        }
    });
    sender.join().expect("sender");
    let sent_to_dead = (on_dead * PER_NAME) as f64;
    let shed = metric(
        &gateway,
        "fluxgate_dropped_total",
        &[("output", "carbon"), ("reason", "destination_down")],
    );
    let queued = metric(&gateway, "fluxgate_queue_points", &[("output", "carbon")]);
    assert!(shed > 0.0, "{}", gateway.metrics());
    assert_eq!(
        shed + queued,
        sent_to_dead,
        "every point for the dead member is queued or counted as shed\n{}",
        gateway.metrics()
    );
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_sent_points_total",
            &[("output", "carbon")]
        ),
        (on_live.len() * PER_NAME) as f64
    );
}

/// The timestamps (unique per line) of the plaintext lines a capture received.
fn received_timestamps(capture: &TcpCapture) -> Vec<i64> {
    capture
        .lines()
        .iter()
        .filter_map(|line| line.rsplit(' ').next()?.parse().ok())
        .collect()
}

/// Waits until `capture` holds every line of [`plaintext_payload`] (`n` lines), each once.
fn wait_every_line_once(capture: &TcpCapture, n: usize, gateway: &Gateway) {
    eventually(Duration::from_secs(30), || {
        let got = received_timestamps(capture);
        if got.len() >= n {
            Ok(())
        } else {
            Err(format!(
                "the healthy destination has {} of {n} lines\n{}",
                got.len(),
                gateway.log_tail(10)
            ))
        }
    });
    let mut got = received_timestamps(capture);
    got.sort_unstable();
    let expected: Vec<i64> = (0..n).map(|i| BASE + i as i64).collect();
    assert!(
        got == expected,
        "{} lines received, {} expected; first differing at {:?}",
        got.len(),
        n,
        got.iter().zip(&expected).position(|(a, b)| a != b)
    );
}

/// Points shed because a destination did not drain (connected or not).
fn shed(gateway: &Gateway, output: &str) -> f64 {
    ["destination_stalled", "destination_down"]
        .iter()
        .map(|reason| {
            metric(
                gateway,
                "fluxgate_dropped_total",
                &[("output", output), ("reason", reason)],
            )
        })
        .sum()
}

/// Lines sent in the stall tests: several times what the kernel buffers of a connection that is
/// never read hold (about 4 MB on loopback), so the stalled destination's queue does fill.
const STALL_LINES: usize = 300_000;

/// `cluster = "forward"`: one destination accepts and never reads. Its queue fills and, after
/// `stall_timeout`, what is meant for it is shed; the other destination gets every line once.
#[test]
fn never_reading_carbon_destination_does_not_stall_a_healthy_one() {
    let stalled = NeverReads::start();
    let capture = TcpCapture::start();
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
shutdown_timeout = "1s"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
[[outputs.graphite]]
name = "carbon"
protocol = "plaintext"
cluster = "forward"
destinations = ["{stalled}", "{healthy}"]
queue_points = 1000
write_timeout = "30s"
retry_initial = "50ms"
retry_max = "500ms"
"#,
            stalled = stalled.addr,
            healthy = capture.addr()
        ),
        http,
    );
    let sender = Sender::start(plaintext, plaintext_payload("e2e.fwd", STALL_LINES), true);
    wait_every_line_once(&capture, STALL_LINES, &gateway);
    sender.join(Duration::from_secs(10));
    assert!(
        stalled.accepted.load(Ordering::SeqCst) > 0,
        "never connected"
    );
    assert!(shed(&gateway, "carbon") > 0.0, "{}", gateway.metrics());
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_dropped_total",
            &[("output", "carbon"), ("reason", "queue_full")]
        ),
        0.0
    );
}

/// Two outputs: the first one's only destination never reads. The pipeline feeds outputs side
/// by side, so the second output gets every line, and only the first counts drops.
#[test]
fn full_output_does_not_block_outputs_after_it() {
    let stalled = NeverReads::start();
    let capture = TcpCapture::start();
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            r#"
shutdown_timeout = "1s"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
[[outputs.graphite]]
name = "stalled"
protocol = "plaintext"
destinations = ["{stalled}"]
queue_points = 1000
write_timeout = "30s"
retry_initial = "50ms"
retry_max = "500ms"
[[outputs.graphite]]
name = "healthy"
protocol = "plaintext"
destinations = ["{healthy}"]
retry_initial = "50ms"
retry_max = "500ms"
"#,
            stalled = stalled.addr,
            healthy = capture.addr()
        ),
        http,
    );
    let sender = Sender::start(plaintext, plaintext_payload("e2e.fan", STALL_LINES), true);
    wait_every_line_once(&capture, STALL_LINES, &gateway);
    sender.join(Duration::from_secs(10));
    assert!(shed(&gateway, "stalled") > 0.0, "{}", gateway.metrics());
    assert_eq!(
        metric(&gateway, "fluxgate_dropped_total", &[("output", "healthy")]),
        0.0,
        "{}",
        gateway.metrics()
    );
    wait_metric(
        &gateway,
        "fluxgate_sent_points_total",
        &[("output", "healthy")],
        STALL_LINES as f64,
    );
}

// ---------------------------------------------------------------------------------------------
// 4. signals while senders are parked on a full queue

/// A long measurement name: 100,000 lines of it are several times what the kernel buffers of
/// one connection hold, so a sender really is pushed back.
const PADDED: &str = "e2e.held.padding_padding_padding_padding_padding_padding_padding_padding";

/// A gateway with plaintext and HTTP listeners and one InfluxDB output `held` to `url`, small
/// enough to fill at once (`queue_points = 1000`).
fn held_gateway(url: &str, shutdown_timeout: &str, batch_size: usize) -> (Gateway, SocketAddr) {
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let config = held_config(plaintext, http, url, shutdown_timeout, batch_size);
    (Gateway::start(&config, http), plaintext)
}

fn held_config(
    plaintext: SocketAddr,
    http: SocketAddr,
    url: &str,
    shutdown_timeout: &str,
    batch_size: usize,
) -> String {
    format!(
        r#"
shutdown_timeout = "{shutdown_timeout}"
[listeners.plaintext]
tcp = "{plaintext}"
[listeners.http]
address = "{http}"
[[outputs.influxdb]]
name = "held"
url = "{url}"
database = "graphite"
timeout = "60s"
queue_points = 1000
batch_size = {batch_size}
flush_interval = "100ms"
overflow = "block"
gzip = false
{FAST_RETRY}
"#
    )
}

/// SIGTERM with the upstream down and a sender parked on the full queue (its socket open): the
/// gateway stops reading, gives the output `shutdown_timeout`, then exits with status 1 and says
/// what it could not deliver.
#[test]
fn sigterm_completes_with_a_sender_blocked_on_a_full_queue() {
    let mock = InfluxV2Mock::start(|_, _| Reply::Stall);
    let (mut gateway, plaintext) = held_gateway(&mock.url(), "2s", 100);
    let sender = Sender::start(plaintext, plaintext_payload(PADDED, 100_000), false);
    sender.wait_blocked(Duration::from_secs(30));
    mock.wait_for(1);
    wait_queue_full(&gateway, "held");

    let signalled = Instant::now();
    gateway.sigterm();
    let status = gateway.wait_exit(Duration::from_secs(2 + 5));
    let took = signalled.elapsed();
    drop(sender);
    assert!(
        took < Duration::from_secs(7),
        "exit took {took:?} with shutdown_timeout = 2s"
    );
    assert_eq!(
        status.code(),
        Some(1),
        "points were lost at the deadline: exit status {status}\n{}",
        gateway.log_tail(20)
    );
    let log = gateway.log();
    let line = log
        .lines()
        .find(|line| line.contains("undelivered"))
        .unwrap_or_else(|| panic!("the log does not report the undelivered points:\n{log}"));
    assert!(line.contains("held"), "{line}");
}

/// SIGHUP changing `[listeners.plaintext]` restarts that listener while one of its
/// connections is parked on a full queue (the upstream holds every request) and another is
/// idle: the reload completes, `/health` answers throughout, the same address takes a new
/// connection right after, and SIGTERM still ends the gateway.
#[test]
fn sighup_changing_a_listener_does_not_hang() {
    let release = Arc::new(AtomicBool::new(false));
    let mock = InfluxV2Mock::start({
        let release = Arc::clone(&release);
        move |_, _| Reply::Hold(Arc::clone(&release))
    });
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let config = |max_line_bytes: usize| {
        held_config(plaintext, http, &mock.url(), "2s", 500).replace(
            "[listeners.http]",
            &format!("max_line_bytes = {max_line_bytes}\n[listeners.http]"),
        )
    };
    let mut gateway = Gateway::start(&config(16384), http);
    let pid = gateway.pid();
    // An idle connection after a complete line, as collectd keeps one open.
    let mut idle = connect(plaintext);
    idle.write_all(format!("e2e.hup.idle 1 {BASE}\n").as_bytes())
        .expect("send");
    let sender = Sender::start(plaintext, plaintext_payload(PADDED, 100_000), false);
    sender.wait_blocked(Duration::from_secs(30));
    wait_queue_full(&gateway, "held");

    gateway.write_config(&config(8192));
    gateway.sighup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gateway.log().contains("configuration reloaded") {
        assert!(
            Instant::now() < deadline,
            "the reload did not complete within 10 s:\n{}",
            gateway.log_tail(20)
        );
        assert_eq!(
            gateway.get("/health").map(|r| r.status).ok(),
            Some(200),
            "/health stopped answering during the reload"
        );
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(gateway.get("/health").map(|r| r.status).ok(), Some(200));
    assert_eq!(gateway.pid(), pid, "restarted, not reloaded");

    // The same address is served at once.
    let mut after = connect(plaintext);
    after
        .write_all(format!("e2e.hup.after 4 {}\n", BASE + 1).as_bytes())
        .expect("a new connection right after the reload");
    release.store(true, Ordering::SeqCst);
    let line = format!("e2e.hup.after value=4 {}000000000", BASE + 1);
    eventually(WAIT, || {
        if accepted_lines(&mock).contains(&line) {
            Ok(())
        } else {
            Err(format!("{line:?} not delivered\n{}", gateway.log_tail(10)))
        }
    });
    finish(after);
    drop((idle, sender));

    gateway.sigterm();
    let status = gateway.wait_exit(Duration::from_secs(2 + 5));
    assert!(status.code().is_some(), "killed by a signal: {status}");
}

/// SIGHUP changing only an output's `batch_size` while a sender is blocked on its full queue
/// with 100,000 points on the way (the upstream holds every request): once the upstream
/// answers, every point is delivered exactly once and none is dropped.
#[test]
fn sighup_changing_an_output_loses_no_point_in_flight() {
    const LINES: usize = 100_000;
    let release = Arc::new(AtomicBool::new(false));
    let mock = InfluxV2Mock::start({
        let release = Arc::clone(&release);
        move |_, _| Reply::Hold(Arc::clone(&release))
    });
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let mut gateway = Gateway::start(&held_config(plaintext, http, &mock.url(), "2s", 500), http);
    let sender = Sender::start(plaintext, plaintext_payload(PADDED, LINES), true);
    sender.wait_blocked(Duration::from_secs(30));
    mock.wait_for(1);
    wait_queue_full(&gateway, "held");

    gateway.write_config(&held_config(plaintext, http, &mock.url(), "2s", 250));
    gateway.sighup();
    wait_log(&gateway, "configuration reloaded", Duration::from_secs(10));
    release.store(true, Ordering::SeqCst);

    sender.join(Duration::from_secs(60));
    wait_metric(
        &gateway,
        "fluxgate_received_total",
        &[("listener", "plaintext_tcp")],
        LINES as f64,
    );
    eventually(Duration::from_secs(30), || {
        let queued = metric(&gateway, "fluxgate_queue_points", &[("output", "held")]);
        if queued == 0.0 {
            Ok(())
        } else {
            Err(format!(
                "{queued} points still queued\n{}",
                gateway.metrics()
            ))
        }
    });
    assert_eq!(
        metric(&gateway, "fluxgate_dropped_total", &[]),
        0.0,
        "{}",
        gateway.metrics()
    );
    let expected: Vec<String> = (0..LINES)
        .map(|i| {
            format!(
                "{PADDED}.{} value={i} {}000000000",
                i % 1000,
                BASE + i as i64
            )
        })
        .collect();
    let mut delivered = accepted_lines(&mock);
    delivered.sort_unstable();
    let mut expected_sorted = expected;
    expected_sorted.sort_unstable();
    exactly_once(&expected_sorted, &delivered).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5. a cut-off read is not a point

/// SIGTERM while a sender has written a line without its newline and keeps the socket open:
/// the complete line before it is stored, the unterminated tail (`servers.a.cpu 42 17000`, a
/// valid-looking line cut short) is not.
#[test]
fn cancelled_read_is_not_a_point() {
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let mut gateway = Gateway::start(
        &format!(
            r#"
shutdown_timeout = "5s"
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
    let mut sender = connect(plaintext);
    sender
        .write_all(format!("servers.a.ok 1 {BASE}\nservers.a.cpu 42 17000").as_bytes())
        .expect("send");
    influx.wait_exact_points("graphite", 1, WAIT);

    gateway.sigterm();
    let status = gateway.wait_exit(Duration::from_secs(5 + 5));
    assert_eq!(status.code(), Some(0), "{}", gateway.log_tail(20));
    drop(sender);
    let points = influx.points("graphite");
    assert_eq!(
        points
            .iter()
            .map(|p| p.measurement.as_str())
            .collect::<Vec<_>>(),
        ["servers.a.ok"],
        "{points:#?}"
    );
    // /metrics is gone with the process: the log is what the operator has.
    let log = gateway.log();
    assert!(
        log.lines()
            .any(|line| line.contains("plaintext_tcp") && line.contains("truncated")),
        "the cut-off tail is not reported as truncated:\n{log}"
    );
}

/// A UDP datagram longer than `max_datagram_bytes` is cut by the read: its complete lines are
/// stored, its cut-off last line (`servers.a.cpu 42 17000` of `... 1700000003`) is not, and it
/// is counted as `truncated`.
#[test]
fn oversized_datagram_tail_is_not_a_point() {
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    let http = loopback(free_port());
    let udp = loopback(free_udp_port());
    let complete: String = (0..3)
        .map(|i| format!("e2e.udp.m{i} {i} {}\n", BASE + i))
        .collect();
    let cut = "servers.a.cpu 42 17000";
    let max_datagram = complete.len() + cut.len();
    let gateway = Gateway::start(
        &format!(
            r#"
shutdown_timeout = "1s"
[listeners.plaintext]
udp = "{udp}"
max_datagram_bytes = {max_datagram}
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
    send_udp(
        udp,
        format!("{complete}servers.a.cpu 42 1700000003\n").as_bytes(),
    );
    // A sentinel datagram after it: once it is stored, the first one was handled.
    send_udp(udp, format!("e2e.udp.after 9 {BASE}\n").as_bytes());
    let points = influx.wait_exact_points("graphite", 4, WAIT);
    let measurements: Vec<&str> = points.iter().map(|p| p.measurement.as_str()).collect();
    assert_eq!(
        measurements,
        ["e2e.udp.after", "e2e.udp.m0", "e2e.udp.m1", "e2e.udp.m2"],
        "{points:#?}"
    );
    wait_metric(
        &gateway,
        "fluxgate_rejected_total",
        &[("listener", "plaintext_udp"), ("reason", "truncated")],
        1.0,
    );
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_received_total",
            &[("listener", "plaintext_udp")]
        ),
        4.0
    );
}

// ---------------------------------------------------------------------------------------------
// 6. an HTTP write is taken by every output or by none

/// Two outputs, the first full (its upstream holds every request). A write that cannot get into
/// the first one within `write_timeout` is answered 503 and left nothing in the second: after
/// room frees, the client's retry delivers each point once to both.
#[test]
fn refused_http_write_takes_nothing_from_any_output() {
    let influx = InfluxDb::start();
    influx.create_database("metrics");
    let release = Arc::new(AtomicBool::new(false));
    let mock = InfluxV2Mock::start({
        let release = Arc::clone(&release);
        move |_, _| Reply::Hold(Arc::clone(&release))
    });
    let http = loopback(free_port());
    let gateway = Gateway::start(
        &format!(
            r#"
shutdown_timeout = "1s"
[listeners.http]
address = "{http}"
ack = "queued"
write_timeout = "500ms"
[[outputs.influxdb]]
name = "held"
url = "{held}"
database = "graphite"
timeout = "60s"
queue_points = 100
batch_size = 100
flush_interval = "100ms"
overflow = "block"
{FAST_RETRY}
[[outputs.influxdb]]
name = "influx"
url = "{url}"
database = "graphite"
flush_interval = "100ms"
{FAST_RETRY}
"#,
            held = mock.url(),
            url = influx.url()
        ),
        http,
    );
    let write = format!("{}/write?db=metrics", gateway.url());
    let response = post(&write, &lines_body("e2e.fill", 100));
    assert_eq!(response.status, 204, "{}", response.text());
    mock.wait_for(1);
    influx.wait_exact_points("metrics", 100, WAIT);
    wait_metric(
        &gateway,
        "fluxgate_queue_points",
        &[("output", "held")],
        100.0,
    );

    let refused = lines_body("e2e.refused", 50);
    let response = post(&write, &refused);
    assert_eq!(response.status, 503, "{}", response.text());
    // Whatever the second output took would be delivered by the time its queue is empty.
    wait_metric(
        &gateway,
        "fluxgate_queue_points",
        &[("output", "influx")],
        0.0,
    );
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_sent_points_total",
            &[("output", "influx")]
        ),
        100.0,
        "a write answered 503 was delivered to the other output"
    );
    assert_eq!(influx.points("metrics").len(), 100);

    release.store(true, Ordering::SeqCst);
    wait_metric(
        &gateway,
        "fluxgate_queue_points",
        &[("output", "held")],
        0.0,
    );
    let response = post(&write, &refused);
    assert_eq!(response.status, 204, "{}", response.text());
    influx.wait_exact_points("metrics", 150, WAIT);
    wait_metric(
        &gateway,
        "fluxgate_queue_points",
        &[("output", "held")],
        0.0,
    );
    wait_metric(
        &gateway,
        "fluxgate_queue_points",
        &[("output", "influx")],
        0.0,
    );
    for output in ["held", "influx"] {
        assert_eq!(
            metric(
                &gateway,
                "fluxgate_sent_points_total",
                &[("output", output)]
            ),
            150.0,
            "{output}: each point once\n{}",
            gateway.metrics()
        );
    }
    let refused_lines = accepted_lines(&mock)
        .iter()
        .filter(|line| line.starts_with("e2e.refused,"))
        .count();
    assert_eq!(refused_lines, 50);
    assert_eq!(metric(&gateway, "fluxgate_dropped_total", &[]), 0.0);
}
