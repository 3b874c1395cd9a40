//! fluxgate as a Graphite relay between real carbon daemons: what reaches carbon-cache's
//! whisper files through fluxgate's Graphite outputs, point by point.
//!
//! - plaintext and pickle delivery of plaintext, tagged and pickled input;
//! - `carbon_ch` placement over three carbon-caches, checked against carbon's own
//!   `ConsistentHashingRouter`, with replication 1 and 2, each name sent twice (the second
//!   time placed from what the gateway remembers);
//! - `forward` passes a canonically spelled line on as it arrived and re-encodes any other
//!   spelling (captured byte for byte);
//! - a real carbon-relay forwarding into fluxgate's pickle listener;
//! - a carbon-cache stopped, or killed, in the middle of a stream and started again;
//! - InfluxDB line protocol over HTTP turned into Graphite paths;
//! - `any_of` and `failover` with one destination that never answers.
//!
//! Every carbon-cache keeps every second for an hour (`1s:1h`), so each datapoint is one
//! whisper slot; timestamps are a little in the past because carbon drops future points.
//! Whisper files are read with Debian's `whisper` module in one Python process per look, and
//! values are compared bit for bit.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use fluxgate_e2e::{
    free_port, http_post, loopback, pickle_frame, send_lines, send_tcp, system_python, unix_now,
    CarbonCache, CarbonRelay, Gateway, RelayMethod, Stored, TcpCapture,
};
use serde_json::json;

/// How long whisper may take to show what was sent (carbon writes asynchronously, and a
/// loaded 2-core machine is slow to start Python).
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(200);
const PYTHON_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// helpers

/// fluxgate's three listeners on free loopback ports.
struct Listeners {
    http: SocketAddr,
    plaintext: SocketAddr,
    pickle: SocketAddr,
}

impl Listeners {
    fn new() -> Self {
        Listeners {
            http: loopback(free_port()),
            plaintext: loopback(free_port()),
            pickle: loopback(free_port()),
        }
    }

    /// Starts fluxgate with these listeners and the given `[[outputs.graphite]]` sections.
    fn start(&self, outputs: &str) -> Gateway {
        let config = format!(
            "shutdown_timeout = \"1s\"\n\n\
             [listeners.plaintext]\ntcp = \"{}\"\n\n\
             [listeners.pickle]\ntcp = \"{}\"\n\n\
             [listeners.http]\naddress = \"{}\"\n\n{outputs}",
            self.plaintext, self.pickle, self.http
        );
        Gateway::start(&config, self.http)
    }
}

/// One `[[outputs.graphite]]` section; `extra` holds further `key = value` lines. Reconnects
/// are retried at least every 500 ms so that a restarted carbon is found again quickly.
fn graphite_output(
    name: &str,
    protocol: &str,
    cluster: &str,
    destinations: &[String],
    extra: &str,
) -> String {
    let destinations: Vec<String> = destinations.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        "[[outputs.graphite]]\nname = \"{name}\"\nprotocol = \"{protocol}\"\n\
         cluster = \"{cluster}\"\ndestinations = [{}]\nretry_initial = \"50ms\"\n\
         retry_max = \"500ms\"\n{extra}\n",
        destinations.join(", ")
    )
}

/// Starts `n` carbon-caches (`1s:1h`) at once: each costs a Twisted start-up.
fn start_caches(n: usize) -> Vec<CarbonCache> {
    thread::scope(|scope| {
        let starting: Vec<_> = (0..n)
            .map(|_| scope.spawn(|| CarbonCache::builder().retentions("1s:1h").start()))
            .collect();
        starting
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// The key [`CarbonCache::stored`] lists `metric` under: its whisper file relative to the whisper
/// directory, dotted (a tagged series is under carbon's hashed `_tagged` file).
fn whisper_key(cache: &CarbonCache, metric: &str) -> String {
    let path = cache.whisper_path(metric);
    let relative = path
        .strip_prefix(cache.whisper_dir())
        .expect("whisper files live under the whisper directory")
        .with_extension("");
    let segments: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    segments.join(".")
}

/// Adds one expected datapoint, keeping each series sorted by time.
fn expect_point(expected: &mut Stored, key: &str, timestamp: i64, value: f64) {
    let series = expected.entry(key.to_owned()).or_default();
    series.push((timestamp, value));
    series.sort_by_key(|&(t, _)| t);
}

/// What differs between two stores, at most a few lines of each kind.
fn describe_difference(expected: &Stored, stored: &Stored) -> String {
    let missing: Vec<&String> = expected
        .keys()
        .filter(|k| !stored.contains_key(*k))
        .collect();
    let extra: Vec<&String> = stored
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    let differing: Vec<String> = expected
        .iter()
        .filter_map(|(key, points)| {
            let got = stored.get(key)?;
            (got != points).then(|| format!("{key}: expected {points:?}, stored {got:?}"))
        })
        .collect();
    format!(
        "{} metric(s) missing, first {:?}\n{} unexpected metric(s), first {:?}\n\
         {} metric(s) with other points:\n{}",
        missing.len(),
        &missing[..missing.len().min(8)],
        extra.len(),
        &extra[..extra.len().min(8)],
        differing.len(),
        differing[..differing.len().min(8)].join("\n")
    )
}

/// Polls `cache` until its whisper files hold exactly `expected`: every point, exact values,
/// exact timestamps, and nothing else.
fn wait_stored(cache: &CarbonCache, expected: &Stored, gateway: &Gateway, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let stored = cache.stored();
        if &stored == expected {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{what}: after {WAIT:?} carbon-cache (pickle {}) does not hold exactly the \
                 expected {} metric(s):\n{}\n--- carbon log ---\n{}\n--- fluxgate metrics ---\n{}\
                 --- fluxgate log ---\n{}",
                cache.pickle_addr(),
                expected.len(),
                describe_difference(expected, &stored),
                cache.log_tail(15),
                relevant_metrics(gateway),
                gateway.log_tail(15)
            );
        }
        thread::sleep(POLL);
    }
}

/// The fluxgate samples a failing relay test needs to be understood.
fn relevant_metrics(gateway: &Gateway) -> String {
    gateway
        .metrics()
        .lines()
        .filter(|line| {
            !line.starts_with('#')
                && [
                    "fluxgate_received_total",
                    "fluxgate_rejected_total",
                    "fluxgate_sent_points_total",
                    "fluxgate_send_errors_total",
                    "fluxgate_dropped_total",
                    "fluxgate_queue_points",
                    "fluxgate_destination_up",
                ]
                .iter()
                .any(|name| line.starts_with(name))
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

/// A metric's value, 0 when the gateway has no such sample (a counter never incremented).
fn metric(gateway: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    gateway.metric(name, labels).unwrap_or(0.0)
}

/// Polls `/metrics` until `name{labels}` is `expected`.
fn wait_metric(gateway: &Gateway, name: &str, labels: &[(&str, &str)], expected: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = metric(gateway, name, labels);
        if value == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} is {value} after {WAIT:?}, expected {expected}\n{}{}",
            relevant_metrics(gateway),
            gateway.log_tail(15)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Graphite plaintext for `(path, timestamp, value)`.
fn line(path: &str, timestamp: i64, value: f64) -> String {
    format!("{path} {value} {timestamp}")
}

// ---------------------------------------------------------------------------------------------
// 1. pickle and plaintext delivery

#[test]
fn pickle_and_plaintext_outputs_deliver_every_point_exactly() {
    let caches = start_caches(2);
    let (pickled_cache, plaintext_cache) = (&caches[0], &caches[1]);
    let listeners = Listeners::new();
    let outputs = graphite_output(
        "to_pickle",
        "pickle",
        "forward",
        &[pickled_cache.pickle_addr().to_string()],
        "",
    ) + &graphite_output(
        "to_plaintext",
        "plaintext",
        "forward",
        &[plaintext_cache.line_addr().to_string()],
        "",
    );
    let gateway = listeners.start(&outputs);

    let now = unix_now();
    // Plaintext input: several series, several timestamps each, values that need every digit
    // (or an exponent) to survive, negative and integral values, and a tagged series.
    let plaintext: Vec<(&str, i64, f64)> = vec![
        ("relay.plain.cpu.user", now - 40, 12.5),
        ("relay.plain.cpu.user", now - 39, 0.1),
        ("relay.plain.cpu.user", now - 38, -2.25),
        ("relay.plain.mem.free", now - 40, 123_456_789.125),
        ("relay.plain.mem.free", now - 37, 1e-7),
        ("relay.plain.requests", now - 36, 42.0),
        (
            "relay.plain.requests",
            now - 35,
            1.797_693_134_862_315_7e308,
        ),
        ("relay.plain.pi", now - 34, std::f64::consts::PI),
        ("relay.tagged.load;host=web01;dc=par", now - 33, 0.75),
        ("relay.tagged.load;host=web01;dc=par", now - 32, 1.5),
    ];
    send_lines(
        listeners.plaintext,
        plaintext.iter().map(|&(p, t, v)| line(p, t, v)),
    );
    let pickled: Vec<(&str, i64, f64)> = (0..20)
        .map(|i| ("relay.pickled.series", now - 60 + i, i as f64 * 1.1))
        .chain([
            ("relay.pickled.other", now - 31, -0.0),
            ("relay.pickled.other", now - 30, 6.02e23),
        ])
        .collect();
    send_tcp(listeners.pickle, &pickle_frame(&pickled));

    for (cache, what) in [
        (pickled_cache, "pickle output"),
        (plaintext_cache, "plaintext output"),
    ] {
        let mut expected = Stored::new();
        for &(path, timestamp, value) in plaintext.iter().chain(&pickled) {
            expect_point(&mut expected, &whisper_key(cache, path), timestamp, value);
        }
        assert_eq!(expected.len(), 7, "seven series, one of them tagged");
        wait_stored(cache, &expected, &gateway, what);
    }
    let total = (plaintext.len() + pickled.len()) as f64;
    wait_metric(
        &gateway,
        "fluxgate_sent_points_total",
        &[("output", "to_pickle")],
        total,
    );
    wait_metric(
        &gateway,
        "fluxgate_sent_points_total",
        &[("output", "to_plaintext")],
        total,
    );
    assert_eq!(metric(&gateway, "fluxgate_dropped_total", &[]), 0.0);
}

// ---------------------------------------------------------------------------------------------
// 2. carbon_ch placement over three carbon-caches

/// Prints, for each config of `{"configs": [{destinations, replication, diverse}], "names"}`
/// and each name, carbon's `getDestinations` as `host:port:instance` strings.
const CARBON_ROUTER: &str = r#"
import json, sys
from types import SimpleNamespace
from carbon.routers import ConsistentHashingRouter
from carbon.util import parseDestinations
request = json.load(sys.stdin)
placements = []
for config in request['configs']:
    router = ConsistentHashingRouter(SimpleNamespace(
        REPLICATION_FACTOR=config['replication'],
        DIVERSE_REPLICAS=config['diverse'],
        ROUTER_HASH_TYPE=None))
    for destination in parseDestinations(config['destinations']):
        router.addDestination(destination)
    placements.append([['%s:%d:%s' % d for d in router.getDestinations(name)]
                       for name in config['names']])
json.dump(placements, sys.stdout)
"#;

/// `n` distinct names of several shapes, all starting with `prefix.`.
fn placement_names(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 5 {
            0 => format!("{prefix}.servers.dc{}.host{i:04}.cpu.user", i % 3),
            1 => format!("{prefix}.stats.counters.app-{i}.requests.2xx.count"),
            2 => format!("{prefix}.collectd.web_{i}.interface-eth0.if_octets.rx"),
            3 => format!("{prefix}.m{i}"),
            _ => format!("{prefix}.carbon.agents.relay-{}.{i}.metricsReceived", i % 7),
        })
        .collect()
}

#[test]
fn carbon_ch_places_each_name_on_the_caches_carbon_would() {
    let caches = start_caches(3);
    let destinations: Vec<String> = caches
        .iter()
        .zip(["a", "b", "c"])
        .map(|(cache, instance)| format!("127.0.0.1:{}:{instance}", cache.pickle_addr().port()))
        .collect();
    // (name prefix, replication, diverse_replicas, how many names). All three caches share one
    // host, so carbon's diverse replicas put a second copy nowhere: that is what carbon does.
    let configs = [
        ("r1", 1, true, 300),
        ("r2", 2, false, 300),
        ("r2diverse", 2, true, 60),
    ];
    let names: Vec<Vec<String>> = configs
        .iter()
        .map(|&(prefix, _, _, n)| placement_names(prefix, n))
        .collect();
    let request = json!({
        "configs": configs.iter().zip(&names).map(|(&(_, replication, diverse, _), names)| json!({
            "destinations": destinations,
            "replication": replication,
            "diverse": diverse,
            "names": names,
        })).collect::<Vec<_>>(),
    });
    let (status, stdout, stderr) = system_python().run_with_input(
        CARBON_ROUTER,
        &[],
        request.to_string().as_bytes(),
        PYTHON_TIMEOUT,
    );
    assert!(
        status.success(),
        "carbon's router failed ({status}): {stderr}"
    );
    let reference: Vec<Vec<Vec<String>>> =
        serde_json::from_str(&stdout).expect("carbon's placements as JSON");

    let now = unix_now();
    let mut expected = vec![Stored::new(); caches.len()];
    let mut gateways = Vec::new();
    for ((&(prefix, replication, diverse, _), names), placements) in
        configs.iter().zip(&names).zip(&reference)
    {
        let listeners = Listeners::new();
        let extra = format!("replication = {replication}\ndiverse_replicas = {diverse}\n");
        let gateway = listeners.start(&graphite_output(
            prefix,
            "pickle",
            "carbon_ch",
            &destinations,
            &extra,
        ));
        let mut lines = Vec::new();
        // Every name comes again a minute earlier, after all of them: placed the second time
        // from what the gateway remembers of the first.
        let mut again = Vec::new();
        let mut copies = vec![0; caches.len()];
        for (i, (name, placement)) in names.iter().zip(placements).enumerate() {
            let value = i as f64 + 0.5;
            let timestamp = now - 30 - (i % 20) as i64;
            lines.push(line(name, timestamp, value));
            again.push(line(name, timestamp - 60, value + 0.25));
            let wanted = if diverse { 1 } else { replication };
            assert_eq!(
                placement.len(),
                wanted,
                "carbon placed {name} on {placement:?}"
            );
            for destination in placement {
                let index = destinations
                    .iter()
                    .position(|d| d == destination)
                    .unwrap_or_else(|| panic!("carbon named an unknown {destination}"));
                expect_point(&mut expected[index], name, timestamp, value);
                expect_point(&mut expected[index], name, timestamp - 60, value + 0.25);
                copies[index] += 1;
            }
        }
        assert!(
            copies.iter().all(|&n| n > 0),
            "{prefix}: carbon leaves a cache empty ({copies:?}); pick other names"
        );
        lines.extend(again);
        send_lines(listeners.plaintext, &lines);
        gateways.push(gateway);
    }
    for (i, cache) in caches.iter().enumerate() {
        wait_stored(
            cache,
            &expected[i],
            &gateways[0],
            &format!("cache {}", destinations[i]),
        );
    }
    for (gateway, &(prefix, replication, diverse, n)) in gateways.iter().zip(&configs) {
        let copies = if diverse { 1 } else { replication };
        wait_metric(
            gateway,
            "fluxgate_sent_points_total",
            &[("output", prefix)],
            (2 * n * copies) as f64,
        );
    }
}

/// A line spelled as fluxgate would write it is forwarded as the bytes it arrived as; any other
/// spelling of the same sample is written the canonical way, exactly as before.
#[test]
fn forward_passes_canonical_lines_on_as_sent_and_rewrites_the_others() {
    let capture = TcpCapture::start();
    let listeners = Listeners::new();
    let gateway = listeners.start(&graphite_output(
        "capture",
        "plaintext",
        "forward",
        &[capture.addr().to_string()],
        "",
    ));
    // (as sent, as forwarded)
    let cases = [
        ("pass.a 12.5 1700000000", "pass.a 12.5 1700000000"),
        ("pass.b -0.25 1700000001", "pass.b -0.25 1700000001"),
        ("pass.c 0.0000001 1700000002", "pass.c 0.0000001 1700000002"),
        (
            "pass.d 123456789012345 1700000003",
            "pass.d 123456789012345 1700000003",
        ),
        ("pass.e;dc=eu 3 1700000004", "pass.e;dc=eu 3 1700000004"),
        ("pass.f 0 0", "pass.f 0 0"),
        ("spelled.a 12.50 1700000000", "spelled.a 12.5 1700000000"),
        ("spelled.b 1e3 1700000000", "spelled.b 1000 1700000000"),
        ("spelled.c -0 1700000000", "spelled.c 0 1700000000"),
        ("spelled.d +7 1700000000", "spelled.d 7 1700000000"),
        ("spelled.e 007 1700000000", "spelled.e 7 1700000000"),
        ("spelled.f .5 1700000000", "spelled.f 0.5 1700000000"),
        ("spelled.g 1.5 1700000000.75", "spelled.g 1.5 1700000000"),
        ("spelled.h\t2\t1700000000", "spelled.h 2 1700000000"),
        ("spelled.i  3  1700000000  ", "spelled.i 3 1700000000"),
        ("spelled.j 4 1700000000\r", "spelled.j 4 1700000000"),
        (
            "spelled.k 1234567890123456 1700000000",
            "spelled.k 1234567890123456 1700000000",
        ),
        (
            "spelled.l 0.1000000000000000055511151231257827 1700000000",
            "spelled.l 0.1 1700000000",
        ),
        (
            "spelled.m 1E-7 1700000000",
            "spelled.m 0.0000001 1700000000",
        ),
    ];
    let input: String = cases.iter().map(|(sent, _)| format!("{sent}\n")).collect();
    send_tcp(listeners.plaintext, input.as_bytes());
    let got = capture.wait_for_lines(cases.len(), WAIT);
    let want: Vec<String> = cases.iter().map(|(_, out)| (*out).to_owned()).collect();
    assert_eq!(got, want, "{}", relevant_metrics(&gateway));
}

// ---------------------------------------------------------------------------------------------
// 3. carbon-relay → fluxgate → carbon-cache

#[test]
fn carbon_relay_forwards_into_fluxgates_pickle_listener() {
    let listeners = Listeners::new();
    let fluxgate_pickle = listeners.pickle.to_string();
    // carbon-relay reconnects to fluxgate by itself, so both carbons start at once.
    let (cache, relay) = thread::scope(|scope| {
        let cache = scope.spawn(|| CarbonCache::builder().retentions("1s:1h").start());
        let relay = scope.spawn(|| {
            CarbonRelay::builder()
                .method(RelayMethod::Rules)
                .destination(&fluxgate_pickle)
                .start()
        });
        (
            cache
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            relay
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    let gateway = listeners.start(&graphite_output(
        "carbon",
        "pickle",
        "forward",
        &[cache.pickle_addr().to_string()],
        "",
    ));

    let now = unix_now();
    let mut points = Vec::new();
    for i in 0..30_i64 {
        let metric = ["via.relay.cpu", "via.relay.mem", "via.relay.disk.sda.reads"][i as usize % 3];
        points.push((metric, now - 90 + i, i as f64 * 0.125 - 1.0));
    }
    points.push(("via.relay.big", now - 20, 9_007_199_254_740_994.0));
    points.push(("via.relay.tiny", now - 20, 5e-324));
    relay.send_lines(points.iter().map(|&(p, t, v)| line(p, t, v)));

    let mut expected = Stored::new();
    for &(path, timestamp, value) in &points {
        expect_point(&mut expected, path, timestamp, value);
    }
    wait_stored(
        &cache,
        &expected,
        &gateway,
        "carbon-relay → fluxgate → carbon-cache",
    );
    wait_metric(
        &gateway,
        "fluxgate_received_total",
        &[("listener", "pickle")],
        points.len() as f64,
    );
    assert_eq!(
        metric(&gateway, "fluxgate_rejected_total", &[]),
        0.0,
        "{}",
        relay.log_tail(20)
    );
}

// ---------------------------------------------------------------------------------------------
// 4. carbon-cache restarted mid-stream

/// How carbon-cache goes away in the middle of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// SIGTERM: carbon stops listening and flushes its cache to whisper.
    Stop,
    /// SIGKILL: whatever carbon had received but not yet written is gone with it; only
    /// fluxgate's replay of the last points written on the broken connection brings it back.
    Crash,
}

#[test]
fn carbon_cache_restart_mid_stream_loses_nothing() {
    restart_mid_stream(Outage::Stop);
}

#[test]
fn carbon_cache_crash_mid_stream_loses_nothing() {
    restart_mid_stream(Outage::Crash);
}

/// Streams 3,000 points over ~10 s into fluxgate while its carbon-cache goes away for ~3 s
/// and comes back: every point must be in whisper afterwards, none dropped.
fn restart_mid_stream(outage: Outage) {
    const SERIES: usize = 10;
    const CHUNKS: usize = 30;
    const PER_CHUNK: usize = 100;
    let mut cache = CarbonCache::builder().retentions("1s:1h").start();
    let listeners = Listeners::new();
    let destination = cache.pickle_addr().to_string();
    let gateway = listeners.start(&graphite_output(
        "carbon",
        "pickle",
        "forward",
        std::slice::from_ref(&destination),
        "",
    ));

    // Point i: series i % 10, one second after its predecessor in that series.
    let base = unix_now() - 1_200;
    let point = move |i: usize| {
        (
            format!("restart.series{}", i % SERIES),
            base + (i / SERIES) as i64,
            i as f64 * 0.5 + 0.25,
        )
    };
    let plaintext = listeners.plaintext;
    let streamer = thread::spawn(move || {
        let mut stream = TcpStream::connect(plaintext).expect("connect to fluxgate");
        for chunk in 0..CHUNKS {
            let mut text = String::new();
            for i in chunk * PER_CHUNK..(chunk + 1) * PER_CHUNK {
                let (path, timestamp, value) = point(i);
                text.push_str(&line(&path, timestamp, value));
                text.push('\n');
            }
            stream
                .write_all(text.as_bytes())
                .expect("write to fluxgate");
            thread::sleep(Duration::from_millis(330));
        }
        stream.shutdown(Shutdown::Write).expect("half-close");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });

    // The outage falls in the middle of the ~10 s stream.
    thread::sleep(Duration::from_millis(2_500));
    match outage {
        Outage::Stop => cache.stop(),
        Outage::Crash => cache.kill(),
    }
    thread::sleep(Duration::from_secs(3));
    cache.start_again();
    streamer.join().expect("the stream was sent");

    let mut expected = Stored::new();
    for i in 0..CHUNKS * PER_CHUNK {
        let (path, timestamp, value) = point(i);
        expect_point(&mut expected, &path, timestamp, value);
    }
    wait_stored(
        &cache,
        &expected,
        &gateway,
        &format!("stream across a carbon-cache {outage:?}"),
    );
    let labels = [("output", "carbon"), ("destination", destination.as_str())];
    wait_metric(&gateway, "fluxgate_destination_up", &labels, 1.0);
    wait_metric(
        &gateway,
        "fluxgate_sent_points_total",
        &[("output", "carbon")],
        (CHUNKS * PER_CHUNK) as f64,
    );
    assert!(
        metric(
            &gateway,
            "fluxgate_send_errors_total",
            &[("output", "carbon")]
        ) > 0.0,
        "the outage was not seen:\n{}",
        relevant_metrics(&gateway)
    );
    assert_eq!(
        metric(&gateway, "fluxgate_dropped_total", &[("output", "carbon")]),
        0.0
    );
    assert_eq!(
        metric(&gateway, "fluxgate_queue_points", &[("output", "carbon")]),
        0.0
    );
}

// ---------------------------------------------------------------------------------------------
// 5. InfluxDB line protocol over HTTP → Graphite paths

#[test]
fn http_line_protocol_becomes_encoded_graphite_paths() {
    let cache = CarbonCache::builder().retentions("1s:1h").start();
    let listeners = Listeners::new();
    let gateway = listeners.start(&graphite_output(
        "carbon",
        "plaintext",
        "forward",
        &[cache.line_addr().to_string()],
        "",
    ));

    let now = unix_now();
    let (t1, t2) = (now - 20, now - 19);
    let body = format!(
        "cpu,host=web\\ 01,region=café usage_user=12.5,usage_idle=80i,ok=true,msg=\"x\" \
         {t1}000000000\n\
         disk,host=db.example.com,path=/var/lib free=1024i,used=0.5 {t2}500000000\n"
    );
    let response = http_post(
        &format!("{}/write?db=telegraf", gateway.url()),
        "text/plain; charset=utf-8",
        body.as_bytes(),
    )
    .expect("POST /write");
    assert_eq!(response.status, 204, "{}", response.text());

    // Every segment goes through the GraphiteEncoder: a space is %20, é is punycode, a dot
    // inside a tag value is %2E, a slash %2F; timestamps are rounded down to the second.
    let mut expected = Stored::new();
    for (key, timestamp, value) in [
        ("web%2001.xn--caf-dma.cpu.usage_user", t1, 12.5),
        ("web%2001.xn--caf-dma.cpu.usage_idle", t1, 80.0),
        ("web%2001.xn--caf-dma.cpu.ok", t1, 1.0),
        ("db%2Eexample%2Ecom.%2Fvar%2Flib.disk.free", t2, 1024.0),
        ("db%2Eexample%2Ecom.%2Fvar%2Flib.disk.used", t2, 0.5),
    ] {
        expect_point(&mut expected, key, timestamp, value);
    }
    wait_stored(&cache, &expected, &gateway, "HTTP line protocol → carbon");
    // carbon keeps `%` in file names: one directory per segment.
    let file = cache
        .whisper_dir()
        .join("web%2001/xn--caf-dma/cpu/usage_user.wsp");
    assert!(file.is_file(), "{} is not a whisper file", file.display());

    assert_eq!(
        metric(
            &gateway,
            "fluxgate_dropped_total",
            &[("output", "carbon"), ("reason", "string")]
        ),
        1.0,
        "{}",
        relevant_metrics(&gateway)
    );
    assert_eq!(
        metric(&gateway, "fluxgate_dropped_total", &[("output", "carbon")]),
        1.0,
        "only the string field is left out:\n{}",
        relevant_metrics(&gateway)
    );
    wait_metric(
        &gateway,
        "fluxgate_sent_points_total",
        &[("output", "carbon")],
        5.0,
    );
}

// ---------------------------------------------------------------------------------------------
// 6. any_of and failover with a dead destination

/// Sends 100 names through a `cluster` output whose first destination refuses every
/// connection and whose second is a carbon-cache: every point must end up in the cache.
fn dead_member_loses_nothing(cluster: &str) {
    let cache = CarbonCache::builder().retentions("1s:1h").start();
    // Nothing listens here: every connection is refused.
    let dead = loopback(free_port()).to_string();
    let live = cache.pickle_addr().to_string();
    let listeners = Listeners::new();
    let gateway = listeners.start(&graphite_output(
        cluster,
        "pickle",
        cluster,
        &[dead.clone(), live.clone()],
        "",
    ));
    let now = unix_now();
    let names = placement_names(cluster, 100);
    let mut expected = Stored::new();
    let mut lines = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (timestamp, value) = (now - 30, i as f64 + 0.75);
        lines.push(line(name, timestamp, value));
        expect_point(&mut expected, name, timestamp, value);
    }
    send_lines(listeners.plaintext, &lines);

    wait_stored(
        &cache,
        &expected,
        &gateway,
        &format!("{cluster} with its first destination down"),
    );
    wait_metric(
        &gateway,
        "fluxgate_destination_up",
        &[("output", cluster), ("destination", &live)],
        1.0,
    );
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_destination_up",
            &[("output", cluster), ("destination", &dead)]
        ),
        0.0
    );
    wait_metric(
        &gateway,
        "fluxgate_sent_points_total",
        &[("output", cluster)],
        100.0,
    );
    // Nothing may stay queued for the dead destination (the gauge follows the sent counter
    // by a moment).
    wait_metric(
        &gateway,
        "fluxgate_queue_points",
        &[("output", cluster)],
        0.0,
    );
}

#[test]
fn any_of_with_a_dead_member_delivers_everything_to_the_live_one() {
    // carbon-c-relay's any_of hash (FNV-1a modulo the member count) puts some of these names
    // on the dead member first.
    let first_choices: BTreeSet<usize> = placement_names("any_of", 100)
        .iter()
        .map(|name| fnv1a_32(name.as_bytes()) as usize % 2)
        .collect();
    assert_eq!(
        first_choices.len(),
        2,
        "the names must hash to both members"
    );
    dead_member_loses_nothing("any_of");
}

#[test]
fn failover_with_a_dead_primary_delivers_everything_to_the_secondary() {
    dead_member_loses_nothing("failover");
}

/// carbon-c-relay's any_of hash (32-bit FNV-1a).
fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Lines that go on as they came are taken in runs straight from the read buffer; lines cut
/// across writes, bad lines among them and an over-long one still come out right: every good
/// line in order, each bad one refused with its own line number.
#[test]
fn runs_of_unchanged_lines_across_writes_keep_order_and_bad_lines_their_numbers() {
    let capture = TcpCapture::start();
    let listeners = Listeners::new();
    let gateway = listeners.start(&graphite_output(
        "capture",
        "plaintext",
        "forward",
        &[capture.addr().to_string()],
        "",
    ));
    let mut input = String::new();
    let mut want = Vec::new();
    let mut bad = Vec::new();
    for i in 1..=20_000u32 {
        let line = match i {
            5_000 | 12_345 => {
                bad.push(i);
                "not a line".to_owned()
            }
            15_000 => {
                bad.push(i);
                format!("long.{} 1 1700000000", "x".repeat(20_000))
            }
            _ if i % 997 == 0 => {
                // Re-encoded, in its place.
                want.push(format!("respelled.{i} 1.5 1700000000"));
                format!("respelled.{i} 1.50 1700000000")
            }
            _ => {
                let line = format!(
                    "run.h{}.cpu {}.{} 1700000{:03}",
                    i % 50,
                    i,
                    i % 9 + 1,
                    i % 1000
                );
                want.push(line.clone());
                line
            }
        };
        input.push_str(&line);
        input.push('\n');
    }
    // Writes of odd sizes, so reads end in the middle of lines.
    let mut stream = TcpStream::connect(listeners.plaintext).expect("connect");
    for piece in input.as_bytes().chunks(7_919) {
        stream.write_all(piece).expect("write");
        stream.flush().expect("flush");
    }
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let got = capture.wait_for_lines(want.len(), WAIT);
    assert_eq!(got.len(), want.len(), "{}", relevant_metrics(&gateway));
    assert!(got == want, "lines out of order or changed");
    // Each refused, counted by reason; the first named by its line (the log is rate
    // limited).
    let rejected = |reason| {
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "plaintext_tcp"), ("reason", reason)],
        )
    };
    assert_eq!(
        rejected("invalid_value"),
        2.0,
        "{}",
        relevant_metrics(&gateway)
    );
    assert_eq!(
        rejected("line_too_long"),
        1.0,
        "{}",
        relevant_metrics(&gateway)
    );
    assert_eq!(bad, [5_000, 12_345, 15_000]);
    let log = gateway.log();
    assert!(
        log.contains("at line 5000,"),
        "the log does not name line 5000:\n{}",
        gateway.log_tail(20)
    );
}
