//! Device polling and v2 reads end to end.
//!
//! - `[[inputs.http_poll]]` against a device server written here (it serves JSON readings the
//!   way the DatabaseInterface library's devices do, `{"<sensor>": {"<param>": n}}`): one
//!   point per cycle in the InfluxDB 2.x stand-in and in a real VictoriaMetrics (its
//!   `/api/v2/write`, read back through its export API), a parameter tracked under two
//!   sensors averaged into one field, nested documents read through JSON pointers;
//! - a device that answers 500, times out or sends bad JSON: counted by reason, never fatal,
//!   polling goes on; a slow device: cycles never overlap, and the cycles it outlasts are
//!   counted as missed;
//! - v2 reads through the gateway: influxdb-client's `query_api`, `buckets_api`, `ready()` and
//!   the raw endpoints against the stand-in, the answer streamed (the first table reaches the
//!   client while the upstream still holds the rest), and the credential rules of `/query`:
//!   an anonymous client's own token goes upstream and the output's never does; under
//!   fluxgate's own tokens the output's token does; `read_only` refuses a Flux `to()`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fluxgate_e2e::{
    eventually, free_port, http_request, loopback, metric, Gateway, InfluxV2Mock, Python, Reply,
    VictoriaMetrics,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// What the device does with one request.
#[derive(Debug, Clone)]
enum DeviceReply {
    /// 200 with this JSON body.
    Json(String),
    /// This status with an empty JSON object.
    Status(u16),
    /// Waits, then 200 with this body.
    Slow(Duration, String),
}

/// A device: an HTTP/1.1 server answering `GET` from a script `(request index) -> reply`,
/// counting requests and the most it ever served at once.
struct Device {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Device {
    fn start(script: impl Fn(usize) -> DeviceReply + Send + Sync + 'static) -> Device {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the device");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("address");
        let requests = Arc::new(AtomicUsize::new(0));
        let most_at_once = Arc::new(AtomicUsize::new(0));
        let active = Arc::new(AtomicUsize::new(0));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(script);
        {
            let (requests, most_at_once, paths, stop) = (
                requests.clone(),
                most_at_once.clone(),
                paths.clone(),
                stop.clone(),
            );
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((stream, _)) = listener.accept() else {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let (requests, most_at_once, active, paths, script) = (
                        requests.clone(),
                        most_at_once.clone(),
                        active.clone(),
                        paths.clone(),
                        script.clone(),
                    );
                    thread::spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                        let mut request_line = String::new();
                        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                            return;
                        }
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                                break;
                            }
                        }
                        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                        most_at_once.fetch_max(now, Ordering::SeqCst);
                        let index = requests.fetch_add(1, Ordering::SeqCst);
                        paths.lock().unwrap().push(
                            request_line
                                .split(' ')
                                .nth(1)
                                .unwrap_or_default()
                                .to_owned(),
                        );
                        let (status, body) = match script(index) {
                            DeviceReply::Json(b) => (200, b),
                            DeviceReply::Status(s) => (s, "{}".to_owned()),
                            DeviceReply::Slow(d, b) => {
                                thread::sleep(d);
                                (200, b)
                            }
                        };
                        // Done before the reply goes out: the next request may come as
                        // soon as the gateway has read it.
                        active.fetch_sub(1, Ordering::SeqCst);
                        let mut stream = stream;
                        let _ = write!(
                            stream,
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.flush();
                    });
                }
            });
        }
        Device {
            addr,
            requests,
            most_at_once,
            paths,
            stop,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// The readings of two sensors, both tracking `temperature`.
fn readings(t1: f64, t2: f64, humidity: f64) -> String {
    json!({
        "bme280": {"temperature": t1, "humidity": humidity, "pressure": 1013.25},
        "dht22": {"temperature": t2, "humidity": 99.0},
        "ccs811": {"eco2": 400}
    })
    .to_string()
}

fn v2_output(url: &str) -> String {
    format!(
        "[[outputs.influxdb]]\nname = \"v2\"\nurl = \"{url}\"\napi = \"v2\"\norg = \"lab\"\n\
         bucket = \"readings\"\ntoken = \"output-token\"\nflush_interval = \"50ms\"\n\
         retry_initial = \"50ms\"\n"
    )
}

fn poll_section(device: &str, interval: &str, extra: &str) -> String {
    format!(
        "[[inputs.http_poll]]\nname = \"lab\"\nurl = \"{device}\"\ninterval = \"{interval}\"\n\
         measurement = \"env\"\ntags = {{ device = \"lab1\" }}\n\
         sensors = {{ bme280 = [\"temperature\", \"humidity\"], dht22 = [\"temperature\"] }}\n{extra}"
    )
}

#[test]
fn each_cycle_is_one_point_with_a_parameter_of_two_sensors_averaged() {
    let device = Device::start(|_| DeviceReply::Json(readings(21.0, 22.5, 40.5)));
    let mock = InfluxV2Mock::start(|_, _| Reply::no_content());
    let http = loopback(free_port());
    let before = now_ns();
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\n{}{}",
        poll_section(&device.url("/readings"), "200ms", ""),
        v2_output(&mock.url())
    );
    let gateway = Gateway::start(&config, http);
    let lines = eventually(WAIT, || {
        let lines: Vec<String> = mock.received().iter().flat_map(|r| r.lines()).collect();
        if lines.len() >= 3 {
            Ok(lines)
        } else {
            Err(format!("{lines:?}\n{}", gateway.log_tail(20)))
        }
    });
    let after = now_ns();
    let mut last = 0;
    for line in &lines {
        let (head, ts) = line.rsplit_once(' ').expect("a timestamp");
        // temperature: (21.0 + 22.5) / 2; humidity only from bme280; pressure and eco2 not tracked.
        assert_eq!(
            head, "env,device=lab1 humidity=40.5,temperature=21.75",
            "{line}"
        );
        let ts: i64 = ts.parse().unwrap();
        assert!(
            before <= ts && ts <= after,
            "{ts} is not the time of a cycle"
        );
        assert!(
            ts > last,
            "one point per cycle, each its own time: {lines:?}"
        );
        last = ts;
    }
    let write = &mock.received()[0];
    assert_eq!(write.path(), "/api/v2/write");
    assert!(write
        .query()
        .contains(&("bucket".to_owned(), "readings".to_owned())));
    assert!(device
        .paths
        .lock()
        .unwrap()
        .iter()
        .all(|p| p == "/readings"));
    assert!(
        metric(
            &gateway,
            "fluxgate_received_total",
            &[("listener", "http_poll")]
        ) >= 3.0
    );
    assert!(metric(&gateway, "fluxgate_poll_cycles_total", &[("input", "lab")]) >= 3.0);
    assert_eq!(metric(&gateway, "fluxgate_poll_errors_total", &[]), 0.0);
}

#[test]
fn polled_points_land_in_victoria_metrics_with_their_means() {
    // Nested, as some devices send it: {"data": {"sensors": {s: {p: {"value": n}}}}}, and
    // values that change every cycle.
    let device = Device::start(|i| {
        let i = i as f64;
        let entry = |v: f64| json!({"value": v, "unit": "x"});
        DeviceReply::Json(
            json!({"data": {"sensors": {
                "bme280": {"temperature": entry(i), "humidity": entry(10.0 * i)},
                "dht22": {"temperature": entry(i + 1.0)}
            }}})
            .to_string(),
        )
    });
    let vm = VictoriaMetrics::start();
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\n{}{}",
        poll_section(
            &device.url("/api/readings"),
            "250ms",
            "readings_pointer = \"/data/sensors\"\nvalue_pointer = \"/value\"\n"
        ),
        v2_output(&vm.url())
    );
    let gateway = Gateway::start(&config, http);
    let series = vm.wait_for_series("env_.*", 2, 4);
    let humidity = series
        .iter()
        .find(|s| s.label("__name__") == Some("env_humidity"))
        .expect("env_humidity");
    let temperature = series
        .iter()
        .find(|s| s.label("__name__") == Some("env_temperature"))
        .expect("env_temperature");
    assert_eq!(humidity.label("device"), Some("lab1"));
    assert_eq!(temperature.label("device"), Some("lab1"));
    // One point per cycle: both fields at one time. Cycle i: humidity 10·i, temperature
    // mean(i, i + 1) = i + 0.5.
    let mut matched = 0;
    for t in &temperature.samples {
        if let Some(h) = humidity.samples.iter().find(|h| h.0 == t.0) {
            assert_eq!(t.1, h.1 / 10.0 + 0.5, "{humidity:?}\n{temperature:?}");
            matched += 1;
        }
    }
    assert!(matched >= 3, "{humidity:?}\n{temperature:?}");
    let mut values: Vec<f64> = temperature.samples.iter().map(|s| s.1).collect();
    values.dedup();
    assert_eq!(
        values.len(),
        temperature.samples.len(),
        "a new value every cycle: {values:?}"
    );
    assert_eq!(metric(&gateway, "fluxgate_poll_errors_total", &[]), 0.0);
}

#[test]
fn failures_are_counted_by_reason_and_polling_goes_on() {
    let device = Device::start(|i| match i {
        0 => DeviceReply::Status(500),
        1 => DeviceReply::Json("{\"bme280\": {\"temperature\": 2".to_owned()),
        2 => DeviceReply::Slow(Duration::from_millis(900), readings(1.0, 1.0, 1.0)),
        3 => DeviceReply::Json(json!({"bme280": {"temperature": "warm"}}).to_string()),
        _ => DeviceReply::Json(readings(20.0, 30.0, 50.0)),
    });
    let mock = InfluxV2Mock::start(|_, _| Reply::no_content());
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\n{}{}",
        poll_section(&device.url("/"), "300ms", "timeout = \"400ms\"\n"),
        v2_output(&mock.url())
    );
    let mut gateway = Gateway::start(&config, http);
    let errors = |reason: &str| {
        metric(
            &gateway,
            "fluxgate_poll_errors_total",
            &[("input", "lab"), ("reason", reason)],
        )
    };
    let lines = eventually(WAIT, || {
        let lines: Vec<String> = mock.received().iter().flat_map(|r| r.lines()).collect();
        if lines.len() >= 2 {
            Ok(lines)
        } else {
            Err(format!("{lines:?}\n{}", gateway.log_tail(20)))
        }
    });
    assert_eq!(errors("http_status"), 1.0);
    assert_eq!(errors("bad_json"), 1.0);
    assert_eq!(errors("timeout"), 1.0);
    // "warm" is no number, dht22 sent nothing: the cycle sends nothing and says why.
    assert_eq!(errors("no_values"), 1.0);
    for line in &lines {
        assert!(
            line.starts_with("env,device=lab1 humidity=50,temperature=25 "),
            "{line}"
        );
    }
    // The 400 ms cycle that timed out outlasted the 300 ms interval.
    assert!(
        metric(
            &gateway,
            "fluxgate_poll_missed_cycles_total",
            &[("input", "lab")]
        ) >= 1.0
    );
    assert!(gateway.is_running());
    let log = gateway.log();
    assert!(log.contains("poll failed"), "{log}");
    assert!(log.contains("HTTP 500"), "{log}");
}

#[test]
fn a_slow_device_is_never_asked_twice_at_once_and_missed_cycles_are_counted() {
    // Each answer takes 350 ms; the interval is 100 ms.
    let device =
        Device::start(|_| DeviceReply::Slow(Duration::from_millis(350), readings(1.0, 3.0, 5.0)));
    let mock = InfluxV2Mock::start(|_, _| Reply::no_content());
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\n{}{}",
        poll_section(&device.url("/"), "100ms", "timeout = \"5s\"\n"),
        v2_output(&mock.url())
    );
    let gateway = Gateway::start(&config, http);
    eventually(WAIT, || {
        if device.requests() >= 5 {
            Ok(())
        } else {
            Err(format!("{} requests", device.requests()))
        }
    });
    assert_eq!(
        device.most_at_once.load(Ordering::SeqCst),
        1,
        "cycles overlapped"
    );
    let cycles = metric(&gateway, "fluxgate_poll_cycles_total", &[("input", "lab")]);
    let missed = metric(
        &gateway,
        "fluxgate_poll_missed_cycles_total",
        &[("input", "lab")],
    );
    // Every cycle outlasts three intervals: at least two due times fall inside each one.
    assert!(
        missed >= 2.0 * (cycles - 1.0),
        "missed {missed} over {cycles} cycles"
    );
    assert_eq!(metric(&gateway, "fluxgate_poll_errors_total", &[]), 0.0);
}

/// A gateway with the stand-in as its v2 output and points already written to it.
fn read_setup(http_extra: &str) -> (InfluxV2Mock, Gateway, SocketAddr) {
    let mock = InfluxV2Mock::start(|_, _| Reply::no_content());
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\n{http_extra}\n{}",
        v2_output(&mock.url())
    );
    let gateway = Gateway::start(&config, http);
    let mut headers = vec![("Content-Type", "text/plain")];
    if http_extra.contains("tokens") {
        headers.push(("Authorization", "Token gateway-token"));
    }
    let body = "env,device=lab1 temperature=21.75,humidity=40.5 1715817600000000000\n\
                env,device=lab1 temperature=22.25,humidity=41 1715817601000000000\n\
                env,device=lab2 temperature=19 1715817600500000000\n";
    let resp = http_request(
        "POST",
        &format!("http://{http}/api/v2/write?org=lab&bucket=readings&precision=ns"),
        &headers,
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(resp.status, 204, "{}", resp.text());
    eventually(WAIT, || {
        if mock.points().len() == 5 {
            Ok(())
        } else {
            Err(format!("{:?}", mock.points()))
        }
    });
    (mock, gateway, http)
}

#[test]
fn influxdb_client_query_api_reads_through_the_gateway() {
    let (mock, gateway, http) = read_setup("");
    let code = r#"
import json, sys
from influxdb_client import InfluxDBClient
with InfluxDBClient(url=sys.argv[1], token="client-token", org="lab", timeout=20000) as client:
    assert client.ready().status == "ready"
    tables = client.query_api().query('from(bucket: "readings") |> range(start: 2024-05-16T00:00:00Z)')
    rows = []
    for table in tables:
        for r in table.records:
            rows.append([r.get_measurement(), r.values.get("device"), r.get_field(), r.get_value(), r.get_time().isoformat()])
    names = [b.name for b in client.buckets_api().find_buckets().buckets]
    print(json.dumps({"rows": rows, "buckets": names}))
"#;
    let out = Python::venv().run_ok(code, &[&format!("http://{http}")], WAIT);
    let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let mut rows: Vec<String> = got["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.to_string())
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            r#"["env","lab1","humidity",40.5,"2024-05-16T00:00:00+00:00"]"#,
            r#"["env","lab1","humidity",41.0,"2024-05-16T00:00:01+00:00"]"#,
            r#"["env","lab1","temperature",21.75,"2024-05-16T00:00:00+00:00"]"#,
            r#"["env","lab1","temperature",22.25,"2024-05-16T00:00:01+00:00"]"#,
            r#"["env","lab2","temperature",19.0,"2024-05-16T00:00:00.500000+00:00"]"#,
        ]
    );
    assert_eq!(got["buckets"], json!(["readings"]));
    // No fluxgate auth: the client's own token went upstream, never the output's.
    let reads = mock.reads();
    let query = reads
        .iter()
        .find(|r| r.path() == "/api/v2/query")
        .expect("the query reached the upstream");
    assert_eq!(query.header("authorization"), Some("Token client-token"));
    assert!(query
        .query()
        .contains(&("org".to_owned(), "lab".to_owned())));
    let body: serde_json::Value = serde_json::from_slice(&query.body).unwrap();
    assert_eq!(
        body["query"],
        json!("from(bucket: \"readings\") |> range(start: 2024-05-16T00:00:00Z)")
    );
    assert!(reads
        .iter()
        .any(|r| r.path() == "/ready" && r.header("authorization").is_none()));
    drop(gateway);
}

#[test]
fn v2_reads_follow_the_query_policy_and_credential_rules() {
    let (mock, gateway, http) = read_setup("tokens = [\"gateway-token\"]\nmetrics_auth = false");
    let url = |p: &str| format!("http://{http}{p}");
    let flux = |q: &str, token: Option<&str>| {
        let mut headers = vec![("Content-Type", "application/vnd.flux")];
        let auth = token.map(|t| format!("Token {t}"));
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        http_request(
            "POST",
            &url("/api/v2/query?org=lab"),
            &headers,
            q.as_bytes(),
        )
        .unwrap()
    };
    // Without fluxgate's token: 401 in the v2 shape, nothing sent upstream.
    let r = flux("from(bucket: \"readings\") |> range(start: 0)", None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["code"], json!("unauthorized"));
    assert!(mock.reads().iter().all(|r| r.path() != "/api/v2/query"));
    // With it: the output's token goes upstream, fluxgate's stays here.
    let r = flux(
        "from(bucket: \"readings\") |> range(start: 0)",
        Some("gateway-token"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    assert!(r.text().contains(",,0,"), "{}", r.text());
    let sent = mock
        .reads()
        .into_iter()
        .find(|r| r.path() == "/api/v2/query")
        .unwrap();
    assert_eq!(sent.header("authorization"), Some("Token output-token"));
    // read_only: a write in Flux is refused and counted.
    let r = flux(
        "from(bucket: \"readings\") |> range(start: 0) |> to(bucket: \"other\")",
        Some("gateway-token"),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], json!("forbidden"));
    let r = flux(
        "import \"http\"\nhttp.post(url: \"http://169.254.169.254/\")",
        Some("gateway-token"),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_rejected_total",
            &[("listener", "http"), ("reason", "query_refused")]
        ),
        2.0
    );
    // Creating a bucket is not a read.
    let r = http_request(
        "POST",
        &url("/api/v2/buckets"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Token gateway-token"),
        ],
        br#"{"name": "new", "orgID": "1"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    let r = http_request(
        "GET",
        &url("/api/v2/buckets?org=lab"),
        &[("Authorization", "Token gateway-token")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["buckets"][0]["name"], json!("readings"));
    // Health and readiness need no credentials and send none.
    let r = http_request("GET", &url("/api/v2/health"), &[], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"], json!("influxdb"));
    let r = http_request("GET", &url("/ready"), &[], b"").unwrap();
    assert_eq!(r.json()["status"], json!("ready"));
    assert!(mock
        .reads()
        .iter()
        .filter(|r| r.path() == "/health" || r.path() == "/ready")
        .all(|r| r.header("authorization").is_none()));
}

#[test]
fn a_query_answer_is_streamed_as_the_upstream_sends_it() {
    let (mock, _gateway, http) = read_setup("");
    let release = Arc::new(AtomicBool::new(false));
    mock.hold_query_answers(release.clone());
    let mut stream = TcpStream::connect(http).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let body = r#"{"query": "from(bucket: \"readings\") |> range(start: 0)", "type": "flux"}"#;
    write!(
        stream,
        "POST /api/v2/query?org=lab HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The first table arrives while the upstream still holds the others.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(",,0,") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let first = String::from_utf8_lossy(&seen).into_owned();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(
        !first.contains(",,1,"),
        "the held tables came early: {first}"
    );
    release.store(true, Ordering::SeqCst);
    stream.read_to_end(&mut seen).unwrap();
    let all = String::from_utf8_lossy(&seen).into_owned();
    assert!(all.contains(",,1,") && all.contains(",,2,"), "{all}");
}

#[test]
fn a_reload_moves_polling_to_the_new_device_and_stops_the_old() {
    let old = Device::start(|_| DeviceReply::Json(readings(1.0, 1.0, 1.0)));
    let new = Device::start(|_| DeviceReply::Json(readings(2.0, 4.0, 6.0)));
    let mock = InfluxV2Mock::start(|_, _| Reply::no_content());
    let http = loopback(free_port());
    let config = |device: &Device| {
        format!(
            "[listeners.http]\naddress = \"{http}\"\n{}{}",
            poll_section(&device.url("/"), "100ms", ""),
            v2_output(&mock.url())
        )
    };
    let mut gateway = Gateway::start(&config(&old), http);
    let requests_reach = |device: &Device, n: usize| {
        eventually(WAIT, || {
            if device.requests() >= n {
                Ok(())
            } else {
                Err(format!("{} requests", device.requests()))
            }
        })
    };
    requests_reach(&old, 2);
    gateway.write_config(&config(&new));
    gateway.sighup();
    requests_reach(&new, 2);
    let old_after_reload = old.requests();
    let new_seen = new.requests();
    requests_reach(&new, new_seen + 3);
    assert_eq!(
        old.requests(),
        old_after_reload,
        "the old input kept polling"
    );
    eventually(WAIT, || {
        let lines: Vec<String> = mock.received().iter().flat_map(|r| r.lines()).collect();
        if lines
            .iter()
            .any(|l| l.starts_with("env,device=lab1 humidity=6,temperature=3 "))
        {
            Ok(())
        } else {
            Err(format!("{lines:?}"))
        }
    });
    assert!(metric(&gateway, "fluxgate_poll_cycles_total", &[("input", "lab")]) >= 4.0);
    let text = fluxgate_e2e::run_fluxgate(
        &[
            "check",
            "--config",
            &gateway.config_path().display().to_string(),
        ],
        "",
        WAIT,
    );
    assert!(text.0.success(), "{}", text.2);
    assert!(
        text.1.contains("http_poll \"lab\""),
        "check lists the input: {}",
        text.1
    );
}

#[test]
fn query_off_turns_the_v2_reads_off_and_without_a_v2_output_they_are_unavailable() {
    let (mock, _gateway, http) = read_setup("query = \"off\"");
    let r = http_request(
        "POST",
        &format!("http://{http}/api/v2/query?org=lab"),
        &[("Content-Type", "application/vnd.flux")],
        b"buckets()",
    )
    .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    let r = http_request("GET", &format!("http://{http}/api/v2/buckets"), &[], b"").unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(mock.reads().is_empty(), "{:?}", mock.reads());
    // A gateway whose only InfluxDB output is v1 has no one to ask.
    let http = loopback(free_port());
    let v1 = InfluxV2Mock::start(|_, _| Reply::no_content());
    let gateway = Gateway::start(
        &format!(
            "[listeners.http]\naddress = \"{http}\"\n[[outputs.influxdb]]\nname = \"v1\"\nurl = \"{}\"\n",
            v1.url()
        ),
        http,
    );
    for path in ["/ready", "/api/v2/health"] {
        let r = http_request("GET", &format!("http://{http}{path}"), &[], b"").unwrap();
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(r.json()["code"], json!("unavailable"));
    }
    drop(gateway);
}
