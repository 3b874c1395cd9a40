//! The StatsD listener against the real Etsy statsd 0.9: the same packets go to both, each
//! flushes to a Graphite capture every second, and every flush must hold the same series
//! with the same values (statsd's own `statsd.*` metrics, which fluxgate does not send, and
//! timestamps aside).
//!
//! statsd is installed by scripts/install-test-deps.sh (`npm install` in tests/statsd).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fluxgate_e2e::{free_port, free_udp_port, loopback, require_binary, Gateway, TcpCapture};

/// statsd's entry point, installed under tests/statsd.
fn statsd_js() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("statsd/node_modules/statsd");
    let js = dir.join("stats.js");
    assert!(
        js.is_file(),
        "Etsy statsd not found at {}: run scripts/install-test-deps.sh \
         (or `npm install` in tests/statsd)",
        js.display()
    );
    js
}

/// A statsd process, killed when dropped.
struct Statsd {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Statsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the packets travel: datagrams, or lines over one TCP connection per daemon.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    Udp,
    Tcp,
}

fn start_statsd(
    input: SocketAddr,
    graphite: SocketAddr,
    legacy: bool,
    transport: Transport,
) -> Statsd {
    let node = require_binary("node", "nodejs");
    let js = statsd_js();
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("config.js");
    std::fs::write(
        &config,
        format!(
            "{{ servers: [{{ server: \"./servers/{}\", address: \"127.0.0.1\", port: {} }}], \
             mgmt_address: \"127.0.0.1\", mgmt_port: {}, \
             graphiteHost: \"127.0.0.1\", graphitePort: {}, flushInterval: 1000, \
             backends: [\"./backends/graphite\"], graphite: {{ legacyNamespace: {legacy} }} }}\n",
            if transport == Transport::Tcp {
                "tcp"
            } else {
                "udp"
            },
            input.port(),
            free_port(),
            graphite.port()
        ),
    )
    .expect("write statsd config");
    let log = std::fs::File::create(dir.path().join("statsd.log")).expect("statsd log");
    let child = Command::new(node)
        .arg(&js)
        .arg(&config)
        .current_dir(js.parent().expect("statsd directory"))
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start statsd");
    Statsd { child, _dir: dir }
}

fn start_fluxgate(
    input: SocketAddr,
    graphite: SocketAddr,
    legacy: bool,
    transport: Transport,
) -> Gateway {
    let http = loopback(free_port());
    let key = if transport == Transport::Tcp {
        "tcp"
    } else {
        "udp"
    };
    let config = format!(
        "shutdown_timeout = \"1s\"\n\n\
         [listeners.http]\naddress = \"{http}\"\n\n\
         [listeners.statsd]\n{key} = \"{input}\"\nflush_interval = \"1s\"\nlegacy_namespace = {legacy}\n\n\
         [[outputs.graphite]]\nname = \"carbon\"\nprotocol = \"plaintext\"\ncluster = \"forward\"\n\
         destinations = [\"{graphite}\"]\nretry_initial = \"50ms\"\nretry_max = \"500ms\"\n"
    );
    Gateway::start(&config, http)
}

/// Sleeps until the wall clock is 400 ms past a whole second: flushes of both fall on whole
/// seconds, so what is sent then belongs to the flush at the next second.
fn to_mid_second() {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .subsec_millis();
    let mut wait = (1400 - ms) % 1000;
    if wait < 100 {
        // Just sent: the next second's.
        wait += 1000;
    }
    thread::sleep(Duration::from_millis(u64::from(wait)));
}

/// Where the packets go: a UDP socket and the daemons' addresses, or a TCP connection to each.
enum Senders {
    Udp(UdpSocket, Vec<SocketAddr>),
    Tcp(Vec<TcpStream>),
}

impl Senders {
    fn new(transport: Transport, to: &[SocketAddr]) -> Self {
        match transport {
            Transport::Udp => {
                Senders::Udp(UdpSocket::bind("127.0.0.1:0").expect("bind"), to.to_vec())
            }
            Transport::Tcp => Senders::Tcp(
                to.iter()
                    .map(|a| TcpStream::connect(a).expect("connect to the StatsD TCP listener"))
                    .collect(),
            ),
        }
    }
}

/// One packet to each daemon: a datagram, or over TCP its lines with a final newline (statsd's
/// TCP server takes lines up to the last newline it has).
fn send(senders: &mut Senders, packet: &str) {
    match senders {
        Senders::Udp(sock, to) => {
            for addr in to.iter() {
                sock.send_to(packet.as_bytes(), addr).expect("send_to");
            }
        }
        Senders::Tcp(streams) => {
            for stream in streams.iter_mut() {
                stream
                    .write_all(format!("{}\n", packet.trim_end_matches('\n')).as_bytes())
                    .expect("write to the StatsD TCP listener");
            }
        }
    }
}

/// Flushes by timestamp: name to value, statsd's own metrics left out.
fn flushes(lines: &[String]) -> BTreeMap<u64, BTreeMap<String, f64>> {
    let mut by_ts: BTreeMap<u64, BTreeMap<String, f64>> = BTreeMap::new();
    for line in lines {
        let mut f = line.split(' ');
        let (Some(name), Some(value), Some(ts)) = (f.next(), f.next(), f.next()) else {
            panic!("not a Graphite line: {line:?}");
        };
        if name.starts_with("statsd.") || name.contains(".statsd.") {
            continue;
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        let ts: u64 = ts
            .parse()
            .unwrap_or_else(|_| panic!("timestamp in {line:?}"));
        by_ts.entry(ts).or_default().insert(name.to_string(), value);
    }
    by_ts
}

fn differential(legacy: bool, transport: Transport) {
    let reference_out = TcpCapture::start();
    let fluxgate_out = TcpCapture::start();
    let port = || match transport {
        Transport::Udp => free_udp_port(),
        Transport::Tcp => free_port(),
    };
    let reference_in = loopback(port());
    let fluxgate_in = loopback(port());
    let _statsd = start_statsd(reference_in, reference_out.addr(), legacy, transport);
    let _gateway = start_fluxgate(fluxgate_in, fluxgate_out.addr(), legacy, transport);
    // statsd flushes its own metrics from the first second on: then it is listening.
    reference_out.wait_for_lines(1, Duration::from_secs(15));

    let mut sock = Senders::new(transport, &[reference_in, fluxgate_in]);
    let timer: String = (0..300)
        .map(|i| {
            let v = f64::from((i * 7919) % 1000) / 10.0;
            if i % 3 == 0 {
                format!("lat:{v}|ms|@0.5\n")
            } else {
                format!("lat:{v}|ms\n")
            }
        })
        .collect();
    to_mid_second();
    send(
        &mut sock,
        "hits:1|c\nhits:3|c|@0.5\nhits:2|c:5|c\nsampled:1|c|@0.1",
    );
    send(
        &mut sock,
        "g.temp:20|g\ng.temp:+5|g\ng.temp:-2.5|g\ng.neg:-3|g",
    );
    send(&mut sock, &timer);
    send(
        &mut sock,
        "one:42|ms\nusers:alice|s\nusers:bob|s\nusers:alice|s",
    );
    send(
        &mut sock,
        "req:1|c|#dc:a,env:prod\ntagged;host=h1:4|c\nbad line\n",
    );
    to_mid_second();
    send(
        &mut sock,
        "hits:10|c\ng.temp:+1|g\nlat:5|ms\nusers:carol|s\nnew:0.25|g",
    );

    // Two flushes with data, one more after it (counters at 0, gauges kept), and the next.
    let have_flushes = |cap: &TcpCapture, n: usize| {
        flushes(&cap.lines())
            .values()
            .filter(|f| !f.is_empty())
            .count()
            >= n
    };
    for cap in [&reference_out, &fluxgate_out] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !have_flushes(cap, 4) {
            assert!(
                std::time::Instant::now() < deadline,
                "no 4 flushes within 10 s on {}: {:?}",
                cap.addr(),
                cap.lines()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
    let reference = flushes(&reference_out.lines());
    let ours = flushes(&fluxgate_out.lines());
    let first = *ours.keys().next().expect("a flush");
    assert_eq!(
        reference.keys().find(|ts| !reference[*ts].is_empty()),
        Some(&first),
        "the first flush with data falls on the same second"
    );
    for ts in first..first + 3 {
        let (want, got) = (&reference[&ts], &ours[&ts]);
        if want != got {
            let mut diff = String::new();
            for (name, v) in want {
                if got.get(name) != Some(v) {
                    diff += &format!("  {name}: statsd {v}, fluxgate {:?}\n", got.get(name));
                }
            }
            for (name, v) in got {
                if !want.contains_key(name) {
                    diff += &format!("  {name}: fluxgate {v}, not from statsd\n");
                }
            }
            panic!(
                "flush {} (legacy_namespace = {legacy}) differs:\n{diff}",
                ts - first
            );
        }
    }
    // Not a comparison of two empty flushes: every type is there.
    let count = if legacy {
        "stats_counts.hits"
    } else {
        "stats.counters.hits.count"
    };
    let tagged = if legacy {
        "stats.req;dc=a;env=prod"
    } else {
        "stats.counters.req.rate;dc=a;env=prod"
    };
    let f = &ours[&first];
    assert_eq!(f.get("stats.gauges.g.temp"), Some(&22.5), "{f:?}");
    assert_eq!(f.get(count), Some(&14.0), "{f:?}");
    assert_eq!(f.get("stats.timers.lat.count"), Some(&400.0), "{f:?}");
    assert_eq!(f.get("stats.sets.users.count"), Some(&2.0), "{f:?}");
    assert!(f.contains_key(tagged), "{f:?}");
    assert!(f.len() > 30, "{f:?}");
}

#[test]
fn statsd_flushes_match_etsy_statsd_legacy_namespace() {
    differential(true, Transport::Udp);
}

#[test]
fn statsd_over_tcp_flushes_match_etsy_statsd() {
    differential(true, Transport::Tcp);
}

#[test]
fn statsd_flushes_match_etsy_statsd_new_namespace() {
    differential(false, Transport::Udp);
}

/// Over TCP a line longer than `max_line_bytes` is skipped up to its newline and counted;
/// the lines around it count, and so does a last line the sender closes without a newline.
#[test]
fn statsd_tcp_refuses_an_over_long_line_and_keeps_the_rest() {
    let out = TcpCapture::start();
    let tcp = loopback(free_port());
    let http = loopback(free_port());
    let config = format!(
        "shutdown_timeout = \"1s\"\n\n\
         [listeners.http]\naddress = \"{http}\"\n\n\
         [listeners.statsd]\ntcp = \"{tcp}\"\nflush_interval = \"1s\"\nmax_line_bytes = 64\n\n\
         [[outputs.graphite]]\nname = \"carbon\"\nprotocol = \"plaintext\"\ncluster = \"forward\"\n\
         destinations = [\"{}\"]\n",
        out.addr()
    );
    let gateway = Gateway::start(&config, http);
    let long = format!("{}:1|c", "x".repeat(100));
    let mut stream = TcpStream::connect(tcp).expect("connect");
    stream
        .write_all(format!("a:1|c\n{long}\nb:2|c\nc:3|c").as_bytes())
        .expect("write");
    drop(stream);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines = out.lines();
        let has =
            |name: &str, v: &str| lines.iter().any(|l| l.starts_with(&format!("{name} {v} ")));
        if has("stats_counts.a", "1") && has("stats_counts.b", "2") && has("stats_counts.c", "3") {
            assert!(!lines.iter().any(|l| l.contains("xxxx")), "{lines:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a, b and c not flushed within 10 s: {lines:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        gateway.metric(
            "fluxgate_rejected_total",
            &[("listener", "statsd"), ("reason", "line_too_long")]
        ),
        Some(1.0)
    );
}

/// A burst of datagrams larger than one wakeup's share: every one of them counts (or, if the
/// kernel dropped some, is counted in `fluxgate_udp_receive_drops_total`).
#[test]
fn statsd_udp_burst_counts_every_datagram() {
    let out = TcpCapture::start();
    let udp = loopback(free_udp_port());
    let http = loopback(free_port());
    let config = format!(
        "shutdown_timeout = \"1s\"\n\n\
         [listeners.http]\naddress = \"{http}\"\n\n\
         [listeners.statsd]\nudp = \"{udp}\"\nflush_interval = \"1s\"\n\n\
         [[outputs.graphite]]\nname = \"carbon\"\nprotocol = \"plaintext\"\ncluster = \"forward\"\n\
         destinations = [\"{}\"]\n",
        out.addr()
    );
    let gateway = Gateway::start(&config, http);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sent = 3000u32;
    for _ in 0..sent {
        sock.send_to(b"burst:1|c", udp).expect("send_to");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let counted: f64 = out
            .lines()
            .iter()
            .filter_map(|l| l.strip_prefix("stats_counts.burst "))
            .filter_map(|rest| rest.split(' ').next()?.parse::<f64>().ok())
            .sum();
        let dropped = gateway
            .metric(
                "fluxgate_udp_receive_drops_total",
                &[("listener", "statsd")],
            )
            .unwrap_or(0.0);
        if counted + dropped == f64::from(sent) {
            break;
        }
        assert!(
            counted + dropped < f64::from(sent),
            "{counted} counted and {dropped} dropped of {sent}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "{counted} counted and {dropped} dropped of {sent} within 15 s"
        );
        thread::sleep(Duration::from_millis(100));
    }
}
