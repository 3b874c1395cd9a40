//! What a hostile or careless client cannot make the gateway do: allocate without bound or
//! die. Each case sends what used to abort the process or take gigabytes, and checks that the
//! gateway is still serving, that its peak RSS (`VmHWM`) stayed under a bound, and that good
//! writes still get in.
//!
//! - one 20 MiB line of line protocol (the batch used to reserve `batch_size` times its length);
//! - a pickle frame that names one memoized 4 KiB path for every item (each point copied the
//!   path: 1.9 GiB from a 0.96 MB frame);
//! - wide points written while the upstream does not answer: bounded by `queue_bytes`, then 503;
//! - many connections each holding a partial pickle frame, and many HTTP requests each holding
//!   a partial body: bounded by the listener's `max_buffered_bytes`.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use fluxgate_e2e::{
    free_port, http_request, loopback, metric, Gateway, HttpResponse, InfluxDb, InfluxV2Mock, Reply,
};

/// The peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024.0
}

fn post(url: &str, body: &[u8]) -> HttpResponse {
    http_request("POST", url, &[], body).unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

fn ok_write(gateway: &Gateway, db: &str, line: &str) {
    let response = post(&format!("{}/write?db={db}", gateway.url()), line.as_bytes());
    assert_eq!(response.status, 204, "{}", response.text());
}

#[test]
fn one_huge_line_is_refused_and_costs_nothing_else() {
    let influx = InfluxDb::start();
    influx.create_database("limits");
    let http = loopback(free_port());
    let gateway = Gateway::start(
        &format!(
            "[listeners.http]\naddress = \"{http}\"\n\
             [[outputs.influxdb]]\nname = \"influx\"\nurl = \"{}\"\ndatabase = \"limits\"\n",
            influx.url()
        ),
        http,
    );
    let pid = gateway.pid().expect("running");
    let mut body = b"m s=\"".to_vec();
    body.resize(body.len() + (20 << 20), b'x');
    body.extend_from_slice(b"\" 1700000000000000000\n");
    let response = post(&format!("{}/write?db=limits", gateway.url()), &body);
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(
        response.text().contains("line too long"),
        "{}",
        response.text()
    );
    ok_write(&gateway, "limits", "m v=1 1700000000000000000");
    let stored = influx.wait_for_points("limits", 1, Duration::from_secs(10));
    assert_eq!(stored.len(), 1);
    assert!(gateway.get("/health").is_ok_and(|r| r.status == 200));
    let peak = peak_rss_mib(pid);
    assert!(peak < 256.0, "peak RSS {peak:.0} MiB");
}

/// A protocol-2 pickle of `items` points that all name one memoized path of `path_len`
/// bytes and one memoized `(timestamp, value)` tuple: each item costs 5 bytes of frame.
fn repeating_pickle(path_len: usize, items: usize) -> Vec<u8> {
    let path = "p".repeat(path_len);
    let mut body = vec![0x80, 2, b']', b'q', 0, b'('];
    // The first item, memoizing its path (memo 1) and its tuple (memo 2).
    body.push(b'X');
    body.extend_from_slice(&(path.len() as u32).to_le_bytes());
    body.extend_from_slice(path.as_bytes());
    body.extend_from_slice(&[b'q', 1]);
    body.push(b'J');
    body.extend_from_slice(&1_700_000_000i32.to_le_bytes());
    body.push(b'G');
    body.extend_from_slice(&1.5f64.to_be_bytes());
    body.extend_from_slice(&[0x86, b'q', 2, 0x86]);
    for _ in 1..items {
        body.extend_from_slice(&[b'h', 1, b'h', 2, 0x86]);
    }
    body.extend_from_slice(b"e.");
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

#[test]
fn a_pickle_that_repeats_one_memoized_path_stays_within_the_queue_bytes() {
    // The upstream never answers: whatever the frame expands to has to stay in the queue.
    let mock = InfluxV2Mock::start(|_, _| Reply::Stall);
    let (http, pickle) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            "shutdown_timeout = \"1s\"\n\
             [listeners.pickle]\ntcp = \"{pickle}\"\n\
             [listeners.http]\naddress = \"{http}\"\n\
             [[outputs.influxdb]]\nname = \"held\"\nurl = \"{}\"\ngzip = false\n\
             queue_bytes = 67108864\n",
            mock.url()
        ),
        http,
    );
    let pid = gateway.pid().expect("running");
    let frame = repeating_pickle(4096, 190_000);
    assert!(frame.len() < 1 << 20, "{} bytes", frame.len());
    let mut sender = TcpStream::connect(pickle).expect("connect");
    sender
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    sender.write_all(&frame).expect("send the frame");
    // The gateway takes what fits in the queue and then stops reading that frame's points.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let queued = metric(&gateway, "fluxgate_queue_points", &[("output", "held")]);
        if queued >= 1000.0 || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    // Time for the connection to expand as much as it ever would.
    thread::sleep(Duration::from_secs(2));
    assert!(gateway.get("/health").is_ok_and(|r| r.status == 200));
    let queued = metric(&gateway, "fluxgate_queue_points", &[("output", "held")]);
    assert!(
        queued * 4096.0 < 80.0 * 1024.0 * 1024.0,
        "{queued} points of 4 KiB queued past queue_bytes"
    );
    let peak = peak_rss_mib(pid);
    assert!(peak < 256.0, "peak RSS {peak:.0} MiB");
    drop(sender);
}

#[test]
fn wide_points_while_the_upstream_is_down_stay_within_the_queue_bytes() {
    let mock = InfluxV2Mock::start(|_, _| Reply::Stall);
    let http = loopback(free_port());
    let gateway = Gateway::start(
        &format!(
            "shutdown_timeout = \"1s\"\n\
             [listeners.http]\naddress = \"{http}\"\nack = \"queued\"\nwrite_timeout = \"200ms\"\n\
             [[outputs.influxdb]]\nname = \"held\"\nurl = \"{}\"\ngzip = false\n",
            mock.url()
        ),
        http,
    );
    let pid = gateway.pid().expect("running");
    // 10 MB writes of 10 KB points: the defaults bound the queue at 128 MiB.
    let mut body = Vec::with_capacity(10 << 20);
    let mut i = 0;
    while body.len() < 10_000_000 {
        body.extend_from_slice(format!("wide,n={i} s=\"").as_bytes());
        body.resize(body.len() + 10_000, b'w');
        body.extend_from_slice(b"\" 1700000000000000000\n");
        i += 1;
    }
    let (mut taken, mut refused) = (0, 0);
    for _ in 0..30 {
        match post(&format!("{}/write?db=wide", gateway.url()), &body).status {
            204 => taken += 1,
            503 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        taken >= 1 && refused >= 1,
        "taken {taken}, refused {refused}"
    );
    assert!(
        taken <= 14,
        "{taken} writes of 10 MB taken past queue_bytes = 128 MiB"
    );
    let peak = peak_rss_mib(pid);
    assert!(peak < 256.0 + 40.0, "peak RSS {peak:.0} MiB");
    assert!(gateway.get("/health").is_ok_and(|r| r.status == 200));
}

/// Opens `n` connections to `addr` and on each writes `head` then `partial` bytes of
/// filler, without ever finishing; returns the open streams.
fn hold_partial(addr: SocketAddr, n: usize, head: &[u8], partial: usize) -> Vec<TcpStream> {
    let filler = vec![b'a'; partial];
    let mut streams = Vec::new();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (head, filler) = (head.to_vec(), filler.clone());
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.set_write_timeout(Some(Duration::from_secs(3)))
                    .expect("timeout");
                let _ = s.write_all(&head);
                // Pushed back once the budget is spent: a timed-out write is expected.
                let _ = s.write_all(&filler);
                s
            })
        })
        .collect();
    for h in handles {
        streams.push(h.join().expect("sender"));
    }
    streams
}

#[test]
fn partial_pickle_frames_stay_within_max_buffered_bytes() {
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    let (http, pickle) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &format!(
            "[listeners.pickle]\ntcp = \"{pickle}\"\nmax_buffered_bytes = 16777216\n\
             [listeners.http]\naddress = \"{http}\"\n\
             [[outputs.influxdb]]\nname = \"influx\"\nurl = \"{}\"\n",
            influx.url()
        ),
        http,
    );
    let pid = gateway.pid().expect("running");
    // 100 frames that announce 1 MiB - 1 and never finish: 100 MiB held without a budget.
    let head = ((1u32 << 20) - 1).to_be_bytes();
    let held = hold_partial(pickle, 100, &head, (1 << 20) - 2);
    thread::sleep(Duration::from_secs(1));
    let peak = peak_rss_mib(pid);
    assert!(
        peak < 80.0,
        "peak RSS {peak:.0} MiB with 100 partial frames"
    );
    // Once the hogs have gone (the gateway has read and discarded what they had sent), a
    // sender that finishes its frame gets in.
    drop(held);
    fluxgate_e2e::eventually(Duration::from_secs(60), || {
        let open = metric(&gateway, "fluxgate_connections", &[("listener", "pickle")]);
        if open == 0.0 {
            Ok(())
        } else {
            Err(format!("{open} pickle connections still open"))
        }
    });
    let frame = fluxgate_e2e::pickle_frame(&[("limits.pickle.ok", 1_700_000_000, 1.0)]);
    fluxgate_e2e::send_tcp(pickle, &frame);
    let points = influx.wait_for_points("graphite", 1, Duration::from_secs(30));
    assert_eq!(points[0].measurement, "limits.pickle.ok");
}

#[test]
fn partial_http_bodies_stay_within_max_buffered_bytes() {
    let influx = InfluxDb::start();
    influx.create_database("limits");
    let http = loopback(free_port());
    let gateway = Gateway::start(
        &format!(
            "[listeners.http]\naddress = \"{http}\"\nmax_buffered_bytes = 16777216\n\
             idle_timeout = \"3s\"\nwrite_timeout = \"2s\"\n\
             [[outputs.influxdb]]\nname = \"influx\"\nurl = \"{}\"\ndatabase = \"limits\"\n",
            influx.url()
        ),
        http,
    );
    let pid = gateway.pid().expect("running");
    // 10 requests that announce 25 MB and send 20 MB of it: 200 MB held without a budget.
    let head = format!(
        "POST /write?db=limits HTTP/1.1\r\nHost: {http}\r\nContent-Length: 25000000\r\n\r\n"
    );
    let held = hold_partial(http, 10, head.as_bytes(), 20_000_000);
    let peak = peak_rss_mib(pid);
    assert!(
        peak < 100.0,
        "peak RSS {peak:.0} MiB with 10 partial bodies"
    );
    // The stalled bodies give their room back after idle_timeout; a normal write then lands.
    fluxgate_e2e::eventually(Duration::from_secs(30), || {
        // Each stalled body ends as idle (it stopped arriving) or, if it never got room, as
        // refused for the budget.
        let gave_up: f64 = ["idle_timeout", "buffer_budget"]
            .iter()
            .map(|reason| {
                metric(
                    &gateway,
                    "fluxgate_rejected_total",
                    &[("listener", "http"), ("reason", reason)],
                )
            })
            .sum();
        if gave_up >= 10.0 {
            Ok(())
        } else {
            Err(format!("{gave_up} of 10 stalled bodies given up"))
        }
    });
    ok_write(&gateway, "limits", "ok v=1 1700000000000000000");
    influx.wait_for_points("limits", 1, Duration::from_secs(10));
    drop(held);
}
