//! `[telemetry]`: fluxgate's own figures injected into its pipeline under carbon-c-relay's
//! `carbon.relays.*` names, read where they land (a Graphite capture), checked against what
//! was sent and against the names and identities of the real carbon-c-relay's statistics for
//! the same traffic; and `/metrics` on its own address.

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use fluxgate_e2e::{
    free_port, http_get, loopback, send_lines, send_tcp, CarbonCRelay, Gateway, TcpCapture,
};

/// Telemetry rounds seen at a capture: timestamp to (name under the prefix, value).
fn rounds(lines: &[String], prefix: &str) -> BTreeMap<u64, BTreeMap<String, f64>> {
    let mut by_ts: BTreeMap<u64, BTreeMap<String, f64>> = BTreeMap::new();
    for line in lines {
        let mut f = line.split(' ');
        let (Some(name), Some(value), Some(ts)) = (f.next(), f.next(), f.next()) else {
            panic!("not a Graphite line: {line:?}");
        };
        let Some(name) = name.strip_prefix(prefix) else {
            continue;
        };
        by_ts
            .entry(ts.parse().expect("timestamp"))
            .or_default()
            .insert(
                name.to_owned(),
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("value in {line:?}")),
            );
    }
    by_ts
}

/// Waits until a round satisfies `ok` (and is complete: its last name arrived) and returns it
/// with the number of telemetry lines of the rounds before it.
fn wait_round(
    capture: &TcpCapture,
    prefix: &str,
    last_name: &str,
    what: &str,
    mut ok: impl FnMut(&BTreeMap<String, f64>, f64) -> bool,
) -> (BTreeMap<String, f64>, f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = rounds(&capture.lines(), prefix);
        let mut before = 0.0;
        for round in all.values() {
            if round.contains_key(last_name) && ok(round, before) {
                return (round.clone(), before);
            }
            before += round.len() as f64;
        }
        assert!(
            Instant::now() < deadline,
            "no telemetry round where {what} within 20 s: {all:#?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("host name")
        .trim()
        .to_owned()
}

fn gateway(capture: &TcpCapture, extra: &str) -> (Gateway, std::net::SocketAddr) {
    let http = loopback(free_port());
    let plaintext = loopback(free_port());
    let config = format!(
        "shutdown_timeout = \"1s\"\n\n\
         [listeners.http]\naddress = \"{http}\"\n\n\
         [listeners.plaintext]\ntcp = \"{plaintext}\"\n\n\
         [telemetry]\ngraphite_prefix = \"carbon.relays.<host>\"\ninterval = \"1s\"\n{extra}\n\
         [[outputs.graphite]]\nname = \"carbon\"\nprotocol = \"plaintext\"\ncluster = \"forward\"\n\
         destinations = [\"{}\"]\n",
        capture.addr()
    );
    (Gateway::start(&config, http), plaintext)
}

#[test]
fn telemetry_reports_what_was_received_sent_and_refused() {
    let capture = TcpCapture::start();
    let (_gateway, plaintext) = gateway(&capture, "");
    let prefix = format!("carbon.relays.{}.", hostname().replace('.', "_"));
    let lines: Vec<String> = (0..50)
        .map(|i| format!("app.web.m{i} {i} 1700000000"))
        .collect();
    send_lines(plaintext, &lines);
    send_tcp(plaintext, b"not a number here\nalso.bad x 1\n");
    let dest = format!(
        "destinations.{}.sent",
        capture.addr().to_string().replace('.', "_")
    );
    // Received counts every point the listeners took, these figures' own rounds included
    // (as carbon-c-relay's does); everything went to the one destination and was written.
    let (round, before) = wait_round(
        &capture,
        &prefix,
        "memUsage",
        "all 50 points were sent",
        |r, before| r.get("metricsSent") == Some(&(50.0 + before)),
    );
    assert_eq!(round["metricsReceived"], 50.0 + before, "{round:#?}");
    assert_eq!(round["destinations.internal.sent"], before, "{round:#?}");
    assert_eq!(round[&dest], 50.0 + before, "{round:#?}");
    assert_eq!(round["metricsDiscarded"], 2.0, "{round:#?}");
    assert_eq!(round["metricsDropped"], 0.0, "{round:#?}");
    assert_eq!(round["metricsQueued"], 0.0, "{round:#?}");
    assert_eq!(round["metricsBlackholed"], 0.0, "{round:#?}");
    assert!(round["memUsage"] > 1_000_000.0, "{round:#?}");
    assert!(round["cpuUsage"] >= 0.0, "{round:#?}");
    let names: BTreeSet<&str> = round.keys().map(String::as_str).collect();
    let (queued, dropped) = (
        dest.replace(".sent", ".queued"),
        dest.replace(".sent", ".dropped"),
    );
    let want: BTreeSet<&str> = [
        "metricsReceived",
        "metricsSent",
        "metricsDropped",
        "metricsQueued",
        "metricsDiscarded",
        "metricsBlackholed",
        "destinations.internal.sent",
        "destinations.internal.queued",
        "destinations.internal.dropped",
        dest.as_str(),
        queued.as_str(),
        dropped.as_str(),
        "cpuUsage",
        "memUsage",
    ]
    .into_iter()
    .collect();
    assert_eq!(names, want);
}

#[test]
fn telemetry_with_reset_counters_reports_each_interval() {
    let capture = TcpCapture::start();
    let (_gateway, plaintext) = gateway(&capture, "reset_counters = true\n");
    let prefix = format!("carbon.relays.{}.", hostname().replace('.', "_"));
    // A first round, then the points: they show in one round only.
    wait_round(&capture, &prefix, "memUsage", "a round arrived", |_, _| {
        true
    });
    let lines: Vec<String> = (0..30).map(|i| format!("app.x{i} 1 1700000000")).collect();
    send_lines(plaintext, &lines);
    let (round, _) = wait_round(
        &capture,
        &prefix,
        "memUsage",
        "the 30 points were received",
        |r, _| r["metricsReceived"] >= 30.0,
    );
    // These rounds' own points (one round of them) plus the 30.
    let own = round["destinations.internal.sent"];
    assert_eq!(round["metricsReceived"], 30.0 + own, "{round:#?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = rounds(&capture.lines(), &prefix);
        let got: Vec<f64> = all
            .values()
            .filter(|r| r.contains_key("memUsage"))
            .map(|r| r["metricsReceived"] - r["destinations.internal.sent"])
            .collect();
        if got
            .iter()
            .rposition(|v| *v >= 30.0)
            .is_some_and(|i| i + 1 < got.len())
        {
            // The round after the one with the points: only the rounds' own points.
            let i = got.iter().rposition(|v| *v >= 30.0).unwrap();
            assert_eq!(got[i], 30.0, "{got:?}");
            assert_eq!(got[i + 1], 0.0, "{got:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no round after the points: {got:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The same traffic into carbon-c-relay (statistics every second) and fluxgate: every name
/// fluxgate reports is one carbon-c-relay reports (destinations by `host_port`), apart from
/// carbon's `cpuUsage` and `memUsage`; and the figures keep carbon-c-relay's identities:
/// received less its own statistics is what the senders sent, and all of it was sent on.
#[test]
fn telemetry_names_and_identities_match_carbon_c_relay() {
    let relay_out = TcpCapture::start();
    let fg_out = TcpCapture::start();
    let relay = CarbonCRelay::builder()
        .statistics()
        .routes(&format!(
            "cluster dest forward {};\nmatch * send to dest stop;\n\
             statistics submit every 1 seconds prefix with carbon.relays.test;\n",
            relay_out.addr()
        ))
        .start();
    let (_gateway, plaintext) = gateway(&fg_out, "");
    let lines: Vec<String> = (0..40)
        .map(|i| format!("app.y{i} {i} 1700000000"))
        .collect();
    relay.send_lines(&lines);
    send_lines(plaintext, &lines);

    let identities = |r: &BTreeMap<String, f64>, dest: &str| {
        r["metricsReceived"] - r["destinations.internal.sent"] == 40.0
            && r["metricsSent"] == r["metricsReceived"]
            && r.get(dest) == Some(&r["metricsSent"])
    };
    let dest_name = |c: &TcpCapture| {
        format!(
            "destinations.{}.sent",
            c.addr().to_string().replace('.', "_")
        )
    };
    let (relay_dest, fg_dest) = (dest_name(&relay_out), dest_name(&fg_out));
    let (theirs, _) = wait_round(
        &relay_out,
        "carbon.relays.test.",
        "disconnects",
        "carbon-c-relay's identities hold",
        |r, _| identities(r, &relay_dest),
    );
    let fg_prefix = format!("carbon.relays.{}.", hostname().replace('.', "_"));
    let (ours, _) = wait_round(
        &fg_out,
        &fg_prefix,
        "memUsage",
        "fluxgate's identities hold",
        |r, _| identities(r, &fg_dest),
    );
    let normalize = |r: &BTreeMap<String, f64>, c: &TcpCapture| -> BTreeSet<String> {
        let d = c.addr().to_string().replace('.', "_");
        r.keys().map(|n| n.replace(&d, "DEST")).collect()
    };
    let theirs = normalize(&theirs, &relay_out);
    let ours = normalize(&ours, &fg_out);
    let carbons: BTreeSet<String> = ["cpuUsage", "memUsage"].map(String::from).into();
    let missing: Vec<&String> = ours
        .difference(&theirs)
        .filter(|n| !carbons.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "names carbon-c-relay does not report: {missing:?}\ncarbon-c-relay: {theirs:#?}"
    );
    for name in [
        "metricsReceived",
        "metricsSent",
        "metricsDropped",
        "metricsQueued",
        "metricsBlackholed",
        "metricsDiscarded",
        "destinations.DEST.sent",
        "destinations.DEST.queued",
        "destinations.DEST.dropped",
        "destinations.internal.sent",
    ] {
        assert!(ours.contains(name) && theirs.contains(name), "{name}");
    }
}

/// `[telemetry] address` serves `/metrics` without the HTTP listener.
#[test]
fn telemetry_address_serves_metrics_without_the_http_listener() {
    let metrics = loopback(free_port());
    let plaintext = loopback(free_port());
    let capture = TcpCapture::start();
    let config = format!(
        "shutdown_timeout = \"1s\"\n\n\
         [listeners.http]\naddress = \"\"\n\n\
         [listeners.plaintext]\ntcp = \"{plaintext}\"\n\n\
         [telemetry]\naddress = \"{metrics}\"\n\n\
         [[outputs.graphite]]\nname = \"carbon\"\nprotocol = \"plaintext\"\ncluster = \"forward\"\n\
         destinations = [\"{}\"]\n",
        capture.addr()
    );
    let _gateway = Gateway::start(&config, metrics);
    send_lines(plaintext, ["a.b 1 1700000000"]);
    capture.wait_for_lines(1, Duration::from_secs(10));
    let resp = http_get(&format!("http://{metrics}/metrics")).expect("GET /metrics");
    assert_eq!(resp.status, 200);
    let text = resp.text();
    assert!(
        text.contains("fluxgate_received_total{listener=\"plaintext_tcp\"} 1"),
        "{text}"
    );
    let other = http_get(&format!("http://{metrics}/write")).expect("GET /write");
    assert_eq!(other.status, 404);
}

/// The telemetry address asks for the credentials `[listeners.http]` asks for on `/metrics`.
#[test]
fn telemetry_address_takes_the_http_listeners_metrics_credentials() {
    let metrics = loopback(free_port());
    let capture = TcpCapture::start();
    let config = format!(
        "shutdown_timeout = \"1s\"\n\n\
         [listeners.http]\naddress = \"\"\nusers = [\"ops:s3cret\"]\n\n\
         [telemetry]\naddress = \"{metrics}\"\n\n\
         [[outputs.graphite]]\nname = \"carbon\"\nprotocol = \"plaintext\"\ncluster = \"forward\"\n\
         destinations = [\"{}\"]\n",
        capture.addr()
    );
    let _gateway = Gateway::start(&config, metrics);
    let url = format!("http://{metrics}/metrics");
    let refused = http_get(&url).expect("GET /metrics");
    assert_eq!(refused.status, 401);
    let ok = http_get(&format!("{url}?u=ops&p=s3cret")).expect("GET /metrics with credentials");
    assert_eq!(ok.status, 200);
    assert!(ok.text().contains("fluxgate_build_info"));
}
