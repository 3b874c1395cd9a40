//! Security end to end: who may write and read through the gateway, what it lets through
//! `/query`, what it never prints, how it holds up against clients that hold connections
//! open, and TLS everywhere it speaks TCP.
//!
//! - Inbound auth on the HTTP listener (`users`, `tokens`, also from the environment): 401 in
//!   each API's shape, `/ping` and `/health` open, `/metrics` behind `metrics_auth`.
//! - `/query`: an anonymous client never borrows the output's credentials (the privilege
//!   escalation this fixes: `CREATE USER ... WITH ALL PRIVILEGES` through an admin output),
//!   and `query = "read_only"` passes only SELECT, SHOW and CREATE DATABASE, however the
//!   statement is sent.
//! - Secrets stay out of `fluxgate check`, logs, `/metrics` and the 502 body of `/query`.
//! - Timeouts: 1,100 slowloris and idle clients against `max_connections = 1024` do not
//!   keep a new client out for longer than `header_timeout`; idle Graphite connections are
//!   closed after `idle_timeout`.
//! - TLS: InfluxDB over https with a custom CA (and an untrusted certificate refused),
//!   the HTTPS listener with curl and Python, the TLS Graphite listeners with Python `ssl`,
//!   mutual TLS, TLS to a carbon destination, and certificates reloaded on SIGHUP.
//!
//! Certificates are made in each test with `rcgen`; every server runs on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fluxgate_e2e::{
    curl_request, eventually, form_urlencode, free_port, http_request, loopback, run_fluxgate,
    wait_metric, Gateway, HttpResponse, InfluxDb, Python,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const PYTHON_TIMEOUT: Duration = Duration::from_secs(30);

fn form_post(url: &str, pairs: &[(&str, &str)], headers: &[(&str, &str)]) -> HttpResponse {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    http_request("POST", url, &all, form_urlencode(pairs).as_bytes())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

fn users_of(influx: &InfluxDb) -> String {
    influx.query("", "SHOW USERS").to_string()
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    // A tiny base64 encoder: the harness has no dependency for it.
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in raw.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

// ---------------------------------------------------------------------------------------------
// /query credentials and policy

/// The escalation: with an admin output, the proxy used to attach the output's credentials
/// to a `/query` that came without any, so anyone who could reach the gateway could create
/// an admin user. Now an anonymous client is anonymous upstream too; a client that sends
/// its own credentials is itself upstream; and under fluxgate's own auth, the output's
/// credentials serve only clients that authenticated.
#[test]
fn an_anonymous_query_never_borrows_the_outputs_credentials() {
    let influx = InfluxDb::builder().admin("admin", "adminpw").start();
    let http = loopback(free_port());
    let output = format!(
        "[[outputs.influxdb]]\nname = \"influx\"\nurl = \"{}\"\nusername = \"admin\"\npassword = \"adminpw\"\n",
        influx.url()
    );
    let config =
        format!("[listeners.http]\naddress = \"{http}\"\nquery = \"passthrough\"\n{output}");
    let gw = Gateway::start(&config, http);
    let url = format!("{}/query", gw.url());
    let evil = "CREATE USER evil WITH PASSWORD 'x' WITH ALL PRIVILEGES";

    let r = form_post(&url, &[("q", evil)], &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(!users_of(&influx).contains("evil"), "{}", users_of(&influx));
    // In the query string, by GET, the same.
    let r = http_request(
        "GET",
        &format!("{url}?{}", form_urlencode(&[("q", evil)])),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(!users_of(&influx).contains("evil"));

    // The client's own credentials go upstream, as they are.
    let r = form_post(
        &url,
        &[("q", "SHOW USERS")],
        &[("Authorization", &basic("admin", "adminpw"))],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = form_post(
        &url,
        &[("q", "SHOW USERS")],
        &[("Authorization", &basic("admin", "wrong"))],
    );
    assert_eq!(r.status, 401, "{}", r.text());
    let r = http_request(
        "GET",
        &format!(
            "{url}?{}",
            form_urlencode(&[("q", "SHOW USERS"), ("u", "admin"), ("p", "adminpw")])
        ),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    drop(gw);

    // Under fluxgate's own auth: an authenticated client is served with the output's
    // credentials (its fluxgate password is not passed on); an anonymous one is refused here.
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\nquery = \"passthrough\"\nusers = [\"reader:readpw\"]\n{output}"
    );
    let gw = Gateway::start(&config, http);
    let url = format!("{}/query", gw.url());
    let r = form_post(
        &url,
        &[("q", "SHOW USERS")],
        &[("Authorization", &basic("reader", "readpw"))],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("admin"), "{}", r.text());
    let r = form_post(
        &url,
        &[("q", "SHOW USERS"), ("u", "reader"), ("p", "readpw")],
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = form_post(&url, &[("q", evil)], &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "authorization failed"}));
    assert!(!users_of(&influx).contains("evil"));
    assert_eq!(
        gw.get("/metrics").unwrap().status,
        401,
        "/metrics needs credentials once auth is on"
    );
}

#[test]
fn read_only_passes_select_and_show_and_refuses_everything_else() {
    let influx = InfluxDb::start();
    influx.create_database("db");
    influx.write("db", "cpu value=1 1700000000000000000");
    let http = loopback(free_port());
    // No `query` key: read_only is the default.
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\n[[outputs.influxdb]]\nname = \"influx\"\nurl = \"{}\"\ndatabase = \"db\"\n",
        influx.url()
    );
    let gw = Gateway::start(&config, http);
    let url = format!("{}/query", gw.url());

    let r = http_request(
        "GET",
        &format!(
            "{url}?{}",
            form_urlencode(&[("db", "db"), ("q", "SELECT * FROM cpu")])
        ),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"cpu\""), "{}", r.text());
    let r = form_post(
        &url,
        &[("q", "SHOW DATABASES; show measurements"), ("db", "db")],
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let refused = json!({"error": "fluxgate: only SELECT, SHOW and CREATE DATABASE statements are allowed through /query (query = \"read_only\")"});
    for q in [
        "CREATE RETENTION POLICY rp ON db DURATION 1d REPLICATION 1",
        "CREATE USER evil WITH PASSWORD 'x' WITH ALL PRIVILEGES",
        "DROP DATABASE db",
        "SHOW DATABASES; DROP DATABASE db",
        "SELECT * INTO copy FROM cpu",
        "/* SELECT */ DROP MEASUREMENT cpu",
        "-- SHOW\nDROP MEASUREMENT cpu",
    ] {
        let r = form_post(&url, &[("q", q)], &[]);
        assert_eq!((r.status, r.json()), (403, refused.clone()), "{q}");
        let get = format!("{url}?{}", form_urlencode(&[("q", q)]));
        let r = http_request("POST", &get, &[], &[]).unwrap();
        assert_eq!(r.status, 403, "{q} in the query string");
    }
    // A read in the query string does not carry a write in the body.
    let r = http_request(
        "POST",
        &format!("{url}?{}", form_urlencode(&[("q", "SHOW DATABASES")])),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form_urlencode(&[("q", "DROP DATABASE db")]).as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 403);
    // Nor in a body this check cannot read (InfluxDB would read a multipart `q`).
    let r = http_request(
        "POST",
        &format!("{url}?{}", form_urlencode(&[("q", "SHOW DATABASES")])),
        &[("Content-Type", "multipart/form-data; boundary=x")],
        b"--x\r\nContent-Disposition: form-data; name=\"q\"\r\n\r\nDROP DATABASE db\r\n--x--\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 403);

    assert_eq!(influx.databases(), vec!["db".to_owned()]);
    assert_eq!(influx.points("db").len(), 1);
    assert_eq!(
        gw.metric(
            "fluxgate_rejected_total",
            &[("listener", "http"), ("reason", "query_refused")]
        ),
        Some(16.0)
    );
    // Refused statements are logged by their keyword only (a CREATE USER carries a password).
    let log = gw.log();
    assert!(log.contains("/query refused"), "{log}");
    assert!(!log.contains("WITH PASSWORD"), "{log}");
    drop(gw);

    // query = "off": no /query at all.
    let http = loopback(free_port());
    let off = format!(
        "[listeners.http]\naddress = \"{http}\"\nquery = \"off\"\n[[outputs.influxdb]]\nname = \"influx\"\nurl = \"{}\"\n",
        influx.url()
    );
    let gw = Gateway::start(&off, http);
    let r = form_post(
        &format!("{}/query", gw.url()),
        &[("q", "SHOW DATABASES")],
        &[],
    );
    assert_eq!(r.status, 404, "{}", r.text());
}

/// `/query` answers are streamed as they come, and an upstream that breaks off in the middle
/// of one ends the client's response with an error (a chunked body without its last chunk),
/// never with a complete-looking 200. (The upstream is a stand-in: no real InfluxDB can be
/// made to break off mid-answer on cue.)
#[test]
fn query_answers_stream_and_an_upstream_break_is_not_a_complete_answer() {
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"results\":[",
        )
        .unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        // Then the upstream dies mid-answer.
        drop(s);
        String::from_utf8_lossy(&head).into_owned()
    });
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\n[[outputs.influxdb]]\nname = \"influx\"\nurl = \"http://{up_addr}\"\n\
         create_database = false\n"
    );
    let gw = Gateway::start(&config, http);
    let mut c = TcpStream::connect(http).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let q = form_urlencode(&[("q", "SELECT * FROM m"), ("db", "d")]);
    c.write_all(format!("GET /query?{q} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let t0 = Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let mut first_body_at = None;
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&raw);
        if first_body_at.is_none() && text.contains("{\"results\":[") {
            first_body_at = Some(t0.elapsed());
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let forwarded = server.join().unwrap();
    assert!(forwarded.starts_with("GET /query?"), "{forwarded}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let first = first_body_at.expect("the start of the answer never arrived");
    assert!(
        first < Duration::from_secs(1),
        "not streamed: the first bytes came after {first:?}"
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "ended before the upstream broke"
    );
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a broken answer must not end like a complete one: {text:?}"
    );
    // And with the upstream gone, the next query is a 502.
    let r = http_request("GET", &format!("{}/query?{q}", gw.url()), &[], &[]).unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
}

// ---------------------------------------------------------------------------------------------
// inbound auth

#[test]
fn writes_need_credentials_when_users_or_tokens_are_set() {
    let influx = InfluxDb::start();
    influx.create_database("db");
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\nusers = [\"from-file:not-used\"]\n\
         [[outputs.influxdb]]\nname = \"influx\"\nurl = \"{}\"\ndatabase = \"db\"\nflush_interval = \"100ms\"\n",
        influx.url()
    );
    // The environment replaces the file's lists.
    let gw = Gateway::builder(&config)
        .http_addr(http)
        .env("FLUXGATE_HTTP_USERS", "writer:w-pass,other:o-pass")
        .env("FLUXGATE_HTTP_TOKENS", "tok-v2")
        .start();
    let base = gw.url();
    let write = |path: &str, headers: &[(&str, &str)]| {
        http_request(
            "POST",
            &format!("{base}{path}"),
            headers,
            b"m v=1 1700000000000000000",
        )
        .unwrap()
    };
    let v1_refused = json!({"error": "authorization failed"});
    let v2_refused = json!({"code": "unauthorized", "message": "unauthorized access"});
    for (path, headers) in [
        ("/write?db=db", vec![]),
        ("/write?db=db&u=writer&p=nope", vec![]),
        ("/write?db=db&u=from-file&p=not-used", vec![]),
        ("/write?db=db", vec![("Authorization", "Token tok-v")]),
    ] {
        let r = write(path, &headers);
        assert_eq!(
            (r.status, r.json()),
            (401, v1_refused.clone()),
            "{path} {headers:?}"
        );
        assert!(r.header("WWW-Authenticate").is_some());
    }
    for headers in [vec![], vec![("Authorization", "Token nope")]] {
        let r = write("/api/v2/write?org=o&bucket=db", &headers);
        assert_eq!(
            (r.status, r.json()),
            (401, v2_refused.clone()),
            "{headers:?}"
        );
    }
    let basic_auth = basic("writer", "w-pass");
    for (path, headers) in [
        ("/write?db=db&u=writer&p=w-pass", vec![]),
        ("/write?db=db", vec![("Authorization", basic_auth.as_str())]),
        (
            "/write?db=db",
            vec![("Authorization", "Token other:o-pass")],
        ),
        (
            "/api/v2/write?org=o&bucket=db",
            vec![("Authorization", "Token tok-v2")],
        ),
    ] {
        let r = write(path, &headers);
        assert_eq!(r.status, 204, "{path} {headers:?}: {}", r.text());
    }
    // A real client with credentials (influxdb-python sends Basic auth).
    let port = http.port().to_string();
    Python::venv().run_ok(
        "import sys, influxdb\n\
         c = influxdb.InfluxDBClient('127.0.0.1', int(sys.argv[1]), 'writer', 'w-pass', 'db')\n\
         assert c.write_points([{'measurement': 'py', 'fields': {'v': 1.0}, 'time': 1700000000000000000}])\n\
         bad = influxdb.InfluxDBClient('127.0.0.1', int(sys.argv[1]), 'writer', 'bad', 'db')\n\
         try:\n    bad.write_points([{'measurement': 'py', 'fields': {'v': 2.0}}])\n    sys.exit('accepted a wrong password')\n\
         except influxdb.exceptions.InfluxDBClientError as e:\n    assert e.code == 401, e\n",
        &[&port],
        PYTHON_TIMEOUT,
    );
    influx.wait_for_points("db", 2, WAIT);

    // Open: /ping and /health. Closed: /metrics, unless authenticated.
    assert_eq!(gw.get("/ping").unwrap().status, 204);
    assert_eq!(gw.get("/health").unwrap().status, 200);
    assert_eq!(gw.get("/metrics").unwrap().status, 401);
    let m = http_request(
        "GET",
        &format!("{base}/metrics"),
        &[("Authorization", "Token tok-v2")],
        &[],
    )
    .unwrap();
    assert_eq!(m.status, 200);
    let text = m.text();
    assert_eq!(
        fluxgate_e2e::prometheus_value(
            &text,
            "fluxgate_rejected_total",
            &[("listener", "http"), ("reason", "unauthorized")]
        ),
        Some(8.0),
        "{text}"
    );
    for secret in ["w-pass", "o-pass", "tok-v2", "not-used"] {
        assert!(!text.contains(secret), "/metrics shows {secret}");
        assert!(!gw.log().contains(secret), "the log shows {secret}");
    }
}

#[test]
fn metrics_can_stay_open_under_auth() {
    let http = loopback(free_port());
    let config =
        format!("[listeners.http]\naddress = \"{http}\"\ntokens = [\"t\"]\nmetrics_auth = false\n");
    let gw = Gateway::start(&config, http);
    assert_eq!(gw.get("/metrics").unwrap().status, 200);
    let r = http_request("POST", &format!("{}/write?db=x", gw.url()), &[], b"m v=1").unwrap();
    assert_eq!(r.status, 401);
}

// ---------------------------------------------------------------------------------------------
// secrets

#[test]
fn secrets_stay_out_of_check_output_logs_and_502_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let closed = loopback(free_port());
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\nquery = \"passthrough\"\nack = \"queued\"\n\
         [[outputs.influxdb]]\nname = \"influx\"\nurl = \"http://admin:URLSECRET@{closed}\"\n\
         password = \"OUTSECRET\"\nusername = \"admin\"\nretry_max = \"200ms\"\n"
    );
    let path = dir.path().join("fluxgate.toml");
    std::fs::write(&path, &config).unwrap();
    let (status, stdout, stderr) =
        run_fluxgate(&["check", "--config", path.to_str().unwrap()], "", WAIT);
    assert!(status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("http://admin:***@{closed}")),
        "{stdout}"
    );
    let (_, dry, dry_err) = run_fluxgate(
        &["dry-run", "--config", path.to_str().unwrap(), "--json"],
        "a.b 1 1700000000\n",
        WAIT,
    );
    for secret in ["URLSECRET", "OUTSECRET"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "check shows {secret}"
        );
        assert!(
            !dry.contains(secret) && !dry_err.contains(secret),
            "dry-run shows {secret}"
        );
    }

    let gw = Gateway::start(&config, http);
    // The upstream is down: 502, naming it without its password, and without the client's.
    let r = http_request(
        "GET",
        &format!(
            "{}/query?{}",
            gw.url(),
            form_urlencode(&[
                ("q", "SHOW DATABASES"),
                ("u", "alice"),
                ("p", "CLIENTSECRET")
            ])
        ),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    let body = r.text();
    assert!(
        body.contains(&format!(
            "upstream http://admin:***@{closed} did not answer"
        )),
        "{body}"
    );
    // A point for the output to fail on, so its errors are logged too.
    let w = http_request("POST", &format!("{}/write?db=x", gw.url()), &[], b"m v=1").unwrap();
    assert_eq!(w.status, 204);
    let deadline = Instant::now() + WAIT;
    while gw
        .metric("fluxgate_send_errors_total", &[("output", "influx")])
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "no send error counted\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = gw.metrics();
    let log = gw.log();
    for secret in ["URLSECRET", "OUTSECRET", "CLIENTSECRET"] {
        assert!(
            !body.contains(secret),
            "the 502 body shows {secret}: {body}"
        );
        assert!(!log.contains(secret), "the log shows {secret}:\n{log}");
        assert!(!metrics.contains(secret), "/metrics shows {secret}");
    }
}

// ---------------------------------------------------------------------------------------------
// timeouts

/// 1,100 clients that connect and then trickle headers or send nothing, against
/// `max_connections = 1024`: with `header_timeout = "2s"`, a new client's /ping and /write
/// get in within about that long once they are all connected.
#[test]
fn slowloris_clients_do_not_lock_out_new_ones() {
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\nheader_timeout = \"2s\"\nmax_connections = 1024\n\
         [log]\nlevel = \"error\"\n"
    );
    let gw = Gateway::start(&config, http);
    // Connect from several threads, so that all 1,100 are in before the first ones time out.
    let started = Instant::now();
    let openers: Vec<_> = (0..10)
        .map(|t| {
            std::thread::spawn(move || {
                (0..110)
                    .map(|i| {
                        let mut s =
                            TcpStream::connect_timeout(&http, Duration::from_secs(2)).unwrap();
                        if (t + i) % 2 == 0 {
                            let _ =
                                s.write_all(b"POST /write?db=x HTTP/1.1\r\nHost: x\r\nX-Slow: ");
                        }
                        s
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut attackers: Vec<TcpStream> = openers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let connected = started.elapsed();
    // The bound below runs from here: opening 1,100 sockets takes longer on a loaded machine,
    // and is not what is bounded.
    let all_connected = Instant::now();
    // Trickle one header byte per connection every 200 ms from another thread, for at most
    // 6 s: a slowloris client never finishes its headers.
    let trickler = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            for s in &mut attackers {
                let _ = s.write_all(b"a");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        attackers
    });
    // A new client retries until it is served: once the slots held by the clients above
    // are taken back. Its first try finds the gateway full.
    let t0 = Instant::now();
    let mut attempts = 0;
    let ping = loop {
        attempts += 1;
        match http_request("GET", &format!("http://{http}/ping"), &[], &[]) {
            Ok(r) => break r,
            Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("no /ping in 10 s: {e}"),
        }
    };
    let waited = t0.elapsed();
    assert_eq!(ping.status, 204);
    let w = http_request("POST", &format!("http://{http}/write?db=x"), &[], b"m v=1").unwrap();
    assert_eq!(w.status, 204);
    eprintln!(
        "1100 connections opened in {connected:?}; a new client waited {waited:?} \
         ({attempts} attempts) for /ping; {:?} after the first connection",
        started.elapsed()
    );
    assert!(
        attempts > 1,
        "the gateway was never full: the test proves nothing"
    );
    // header_timeout (2 s) plus at most one recheck (1 s), with slack for a loaded machine.
    assert!(
        all_connected.elapsed() < Duration::from_secs(2 + 3),
        "a new client got in {:?} after all attackers were connected",
        all_connected.elapsed()
    );
    let _attackers = trickler.join().unwrap();
    let timed_out = gw
        .metric(
            "fluxgate_rejected_total",
            &[("listener", "http"), ("reason", "header_timeout")],
        )
        .unwrap_or(0.0);
    assert!(timed_out >= 1000.0, "header_timeout closes: {timed_out}");
}

/// Idle keep-alive connections are closed after `idle_timeout`, not `header_timeout`.
#[test]
fn idle_keep_alive_connections_are_closed_after_idle_timeout() {
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\nheader_timeout = \"1s\"\nidle_timeout = \"3s\"\nwrite_timeout = \"1s\"\n"
    );
    let gw = Gateway::start(&config, http);
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 204"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let t0 = Instant::now();
    // Past header_timeout, the idle connection still serves a second request.
    std::thread::sleep(Duration::from_millis(1800));
    // The gateway's idle clock starts when it has answered the request written next: measured
    // from before the write, a late wake-up of this thread cannot make the close look early.
    let t1 = Instant::now();
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let n = s.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 204"));
    let n = s.read(&mut buf).unwrap_or(0);
    let closed_after = t1.elapsed();
    assert_eq!(n, 0, "the idle connection was closed");
    assert!(
        closed_after >= Duration::from_millis(2500) && closed_after < Duration::from_secs(6),
        "closed after {closed_after:?} (idle_timeout 3 s); first request {:?} ago",
        t0.elapsed()
    );
    assert_eq!(
        gw.metric("fluxgate_rejected_total", &[("reason", "idle_timeout")]),
        Some(1.0)
    );
}

/// Graphite connections that send nothing hold a slot only for `idle_timeout`.
#[test]
fn idle_graphite_connections_are_closed_and_new_senders_get_in() {
    let http = loopback(free_port());
    let plaintext = loopback(free_port());
    let pickle = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\n\
         [listeners.plaintext]\ntcp = \"{plaintext}\"\nmax_connections = 100\nidle_timeout = \"3s\"\n\
         [listeners.pickle]\ntcp = \"{pickle}\"\nmax_connections = 100\nidle_timeout = \"3s\"\n\
         [log]\nlevel = \"error\"\n"
    );
    let gw = Gateway::start(&config, http);
    let mut idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(plaintext).unwrap())
        .chain((0..100).map(|_| TcpStream::connect(pickle).unwrap()))
        .collect();
    // Full: a new sender is turned away at once...
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw
        .metric(
            "fluxgate_rejected_total",
            &[("listener", "plaintext_tcp"), ("reason", "max_connections")],
        )
        .is_none()
    {
        let mut s = TcpStream::connect(plaintext).unwrap();
        let _ = s.write_all(b"refused.while.full 1 1700000000\n");
        assert!(
            Instant::now() < deadline,
            "a 101st connection was not refused"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...and the idle ones are closed after idle_timeout. (A read that times out counts as
    // closed here, so the timeout is well past the bound on closed_in.)
    let t0 = Instant::now();
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(
            s.read(&mut b).unwrap_or(0),
            0,
            "an idle connection stayed open"
        );
    }
    let closed_in = t0.elapsed();
    assert!(
        closed_in < Duration::from_secs(6),
        "idle connections closed after {closed_in:?} (idle_timeout 3 s)"
    );
    let mut s = TcpStream::connect(plaintext).unwrap();
    s.write_all(b"new.sender 1 1700000000\n").unwrap();
    drop(s);
    let deadline = Instant::now() + WAIT;
    while gw.metric("fluxgate_received_total", &[("listener", "plaintext_tcp")]) != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "the new sender's line did not arrive"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let idle_closed = gw
        .metric("fluxgate_rejected_total", &[("reason", "idle_timeout")])
        .unwrap_or(0.0);
    assert!(
        idle_closed >= 200.0,
        "idle_timeout closes counted: {idle_closed}"
    );
}

// ---------------------------------------------------------------------------------------------
// TLS

/// A CA, a server certificate for `localhost` and `127.0.0.1`, and a client certificate,
/// as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("fluxgate test CA {name}"));
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf = |sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let mut p = CertificateParams::new(sans).unwrap();
            p.extended_key_usages = vec![usage];
            p.distinguished_name
                .push(DnType::CommonName, "fluxgate test");
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (cert, key) = leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            vec!["client.test".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let write = |file: &str, text: &str| {
            let path = dir.join(format!("{name}-{file}"));
            std::fs::write(&path, text).unwrap();
            path
        };
        Pki {
            ca: write("ca.pem", &ca.pem()),
            cert: write("cert.pem", &cert),
            key: write("key.pem", &key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
        }
    }
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Starts a gateway whose HTTP listener serves HTTPS, waiting for `/health` over curl.
fn start_https_gateway(config: &str, http: SocketAddr, ca: &Path) -> Gateway {
    let mut gw = Gateway::builder(config).spawn();
    let deadline = Instant::now() + WAIT;
    loop {
        if fluxgate_e2e::tcp_is_listening(http)
            && curl_request(
                "GET",
                &format!("https://localhost:{}/health", http.port()),
                &[],
                &[],
                Some(ca),
            )
            .is_ok_and(|r| r.status == 200)
        {
            return gw;
        }
        assert!(gw.is_running(), "the gateway exited:\n{}", gw.log_tail(30));
        assert!(
            Instant::now() < deadline,
            "no HTTPS /health:\n{}",
            gw.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn https_metric(ca: &Path, http: SocketAddr, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let r = curl_request(
        "GET",
        &format!("https://127.0.0.1:{}/metrics", http.port()),
        &[],
        &[],
        Some(ca),
    )
    .unwrap();
    fluxgate_e2e::prometheus_value(&r.text(), name, labels)
}

#[test]
fn delivers_to_https_influxdb_with_a_custom_ca_and_refuses_an_untrusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "influx");
    let influx = InfluxDb::builder()
        .https(&pki.cert, &pki.key, &pki.ca)
        .start();
    influx.create_database("tls");
    assert!(influx.url().starts_with("https://"));
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\n\
         [[outputs.influxdb]]\nname = \"trusted\"\nurl = \"{url}\"\ndatabase = \"tls\"\ntls_ca = {ca}\nflush_interval = \"100ms\"\n\
         [[outputs.influxdb]]\nname = \"untrusted\"\nurl = \"{url}\"\ndatabase = \"tls\"\nflush_interval = \"100ms\"\nretry_max = \"200ms\"\n",
        url = influx.url(),
        ca = toml_path(&pki.ca),
    );
    let gw = Gateway::start(&config, http);
    let r = http_request(
        "POST",
        &format!("{}/write?db=tls&precision=s", gw.url()),
        &[],
        b"secure v=1 1700000000\n",
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.text());
    let points = influx.wait_for_points("tls", 1, WAIT);
    assert_eq!(points[0].measurement, "secure");
    // Counted once InfluxDB has answered, which can be after the point is queryable.
    wait_metric(
        &gw,
        "fluxgate_sent_points_total",
        &[("output", "trusted")],
        1.0,
    );
    // The same upstream without its CA: refused, counted, logged; nothing sent.
    let deadline = Instant::now() + WAIT;
    while gw
        .metric("fluxgate_send_errors_total", &[("output", "untrusted")])
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "no send error for the untrusted certificate"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        gw.metric("fluxgate_sent_points_total", &[("output", "untrusted")])
            .unwrap_or(0.0),
        0.0
    );
    let log = gw.log();
    assert!(
        log.lines()
            .any(|l| l.contains("untrusted") && l.to_lowercase().contains("certificate")),
        "the refusal is logged with its reason:\n{log}"
    );
}

#[test]
fn https_listener_serves_curl_and_python_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "gw");
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\ntls_cert = {}\ntls_key = {}\n",
        toml_path(&pki.cert),
        toml_path(&pki.key)
    );
    let gw = start_https_gateway(&config, http, &pki.ca);
    let base = format!("https://localhost:{}", http.port());
    let ping = curl_request("GET", &format!("{base}/ping"), &[], &[], Some(&pki.ca)).unwrap();
    assert_eq!(ping.status, 204);
    assert!(ping.header("X-Influxdb-Version").is_some());
    let w = curl_request(
        "POST",
        &format!("{base}/write?db=x"),
        &[],
        b"m v=1 1",
        Some(&pki.ca),
    )
    .unwrap();
    assert_eq!(w.status, 204, "{}", w.text());
    // Without the CA, curl refuses the certificate.
    assert!(curl_request("GET", &format!("{base}/ping"), &[], &[], None).is_err());
    Python::venv().run_ok(
        "import ssl, sys, urllib.request\n\
         ctx = ssl.create_default_context(cafile=sys.argv[2])\n\
         r = urllib.request.urlopen(sys.argv[1] + '/ping', context=ctx, timeout=10)\n\
         assert r.status == 204, r.status\n\
         req = urllib.request.Request(sys.argv[1] + '/write?db=x', data=b'm v=2 2', method='POST')\n\
         r = urllib.request.urlopen(req, context=ctx, timeout=10)\n\
         assert r.status == 204, r.status\n",
        &[&base, pki.ca.to_str().unwrap()],
        PYTHON_TIMEOUT,
    );
    // Plain HTTP to the TLS port gets no answer, and is counted.
    let handshakes = || {
        https_metric(
            &pki.ca,
            http,
            "fluxgate_rejected_total",
            &[("reason", "tls_handshake")],
        )
        .unwrap_or(0.0)
    };
    let before = handshakes();
    assert!(http_request("GET", &format!("http://{http}/ping"), &[], &[]).is_err());
    // The client may see the connection closed before the gateway has counted it.
    eventually(WAIT, || {
        let now = handshakes();
        if now == before + 1.0 {
            Ok(())
        } else {
            Err(format!(
                "tls_handshake {now}, expected {}\n{}",
                before + 1.0,
                gw.log_tail(20)
            ))
        }
    });
    assert_eq!(
        https_metric(
            &pki.ca,
            http,
            "fluxgate_received_total",
            &[("listener", "http")]
        ),
        Some(2.0)
    );
}

#[test]
fn tls_graphite_listeners_take_python_ssl_senders_and_mtls_refuses_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "graphite");
    let (http, plaintext, pickle) = (
        loopback(free_port()),
        loopback(free_port()),
        loopback(free_port()),
    );
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\n\
         [listeners.plaintext]\ntcp = \"{plaintext}\"\ntls_cert = {cert}\ntls_key = {key}\n\
         [listeners.pickle]\ntcp = \"{pickle}\"\ntls_cert = {cert}\ntls_key = {key}\ntls_client_ca = {ca}\n",
        cert = toml_path(&pki.cert),
        key = toml_path(&pki.key),
        ca = toml_path(&pki.ca),
    );
    let gw = Gateway::start(&config, http);
    let sender = r#"
import pickle, socket, ssl, struct, sys
port, ca, kind, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
if len(sys.argv) > 5:
    ctx.load_cert_chain(sys.argv[5], sys.argv[6])
if kind == "plaintext":
    data = b"tls.a 1 1700000000\ntls.b 2 1700000000\n"
else:
    body = pickle.dumps([("tls.p", (1700000000, 3.0))], protocol=2)
    data = struct.pack("!L", len(body)) + body
try:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(data)
            # Read what the server sends after the handshake (TLS 1.3 session tickets, or
            # an alert) before closing, so the close is not a reset.
            s.settimeout(0.5 if mode == "send" else 5)
            try:
                got = s.recv(1)
                print("closed" if not got else "data")
            except socket.timeout:
                print("open")
except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
    print("refused:", e)
"#;
    let py = Python::venv();
    let ca = pki.ca.to_str().unwrap();
    let run = |port: SocketAddr, kind: &str, client: bool| {
        let port = port.port().to_string();
        let mode = if client || kind == "plaintext" {
            "send"
        } else {
            "refused"
        };
        let mut args = vec![port.as_str(), ca, kind, mode];
        if client {
            args.push(pki.client_cert.to_str().unwrap());
            args.push(pki.client_key.to_str().unwrap());
        }
        let (status, stdout, stderr) = py.run(sender, &args, PYTHON_TIMEOUT);
        (status.success(), stdout, stderr)
    };
    let (ok, out, err) = run(plaintext, "plaintext", false);
    assert!(ok && out.trim() == "open", "{out}{err}");
    // mTLS: without a client certificate the pickle listener refuses the sender...
    let (ok, out, err) = run(pickle, "pickle", false);
    assert!(ok && out.starts_with("refused"), "{out}{err}");
    assert!(out.to_lowercase().contains("certificate"), "{out}");
    // ...and takes it with one.
    let (ok, out, err) = run(pickle, "pickle", true);
    assert!(ok && out.trim() == "open", "{out}{err}");
    let deadline = Instant::now() + WAIT;
    while gw.metric("fluxgate_received_total", &[("listener", "pickle")]) != Some(1.0)
        || gw.metric("fluxgate_received_total", &[("listener", "plaintext_tcp")]) != Some(2.0)
    {
        assert!(Instant::now() < deadline, "{}", gw.metrics());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        gw.metric(
            "fluxgate_rejected_total",
            &[("listener", "pickle"), ("reason", "tls_handshake")]
        ),
        Some(1.0)
    );
    // Plain text to a TLS port is a failed handshake, not a metric.
    fluxgate_e2e::send_tcp(plaintext, b"plain.text 1 1700000000\n");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        gw.metric("fluxgate_received_total", &[("listener", "plaintext_tcp")]),
        Some(2.0)
    );
}

#[test]
fn https_listener_with_mtls_refuses_curl_without_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "mtls");
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\ntls_cert = {}\ntls_key = {}\ntls_client_ca = {}\n",
        toml_path(&pki.cert),
        toml_path(&pki.key),
        toml_path(&pki.ca)
    );
    let mut gw = Gateway::builder(&config).spawn();
    let url = format!("https://localhost:{}/ping", http.port());
    let with_cert = |url: &str| {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
                "--cacert",
            ])
            .arg(&pki.ca)
            .arg("--cert")
            .arg(&pki.client_cert)
            .arg("--key")
            .arg(&pki.client_key)
            .arg(url)
            .output()
            .unwrap()
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let out = with_cert(&url);
        if String::from_utf8_lossy(&out.stdout) == "204" {
            break;
        }
        assert!(
            gw.is_running() && Instant::now() < deadline,
            "{}",
            gw.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = curl_request("GET", &url, &[], &[], Some(&pki.ca));
    assert!(
        refused.is_err(),
        "served without a client certificate: {refused:?}"
    );
}

/// A carbon destination over TLS: the relay's own TLS plaintext listener stands in for a
/// TLS-terminating carbon (carbon-c-relay and stunnel setups speak the same bytes).
#[test]
fn graphite_output_delivers_over_tls_and_checks_the_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "carbon");
    let (sink_http, sink_tcp) = (loopback(free_port()), loopback(free_port()));
    let sink = Gateway::start(
        &format!(
            "[listeners.http]\naddress = \"{sink_http}\"\n\
             [listeners.plaintext]\ntcp = \"{sink_tcp}\"\ntls_cert = {}\ntls_key = {}\n",
            toml_path(&pki.cert),
            toml_path(&pki.key)
        ),
        sink_http,
    );
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\n[listeners.plaintext]\ntcp = \"{plaintext}\"\n\
         [[outputs.graphite]]\nname = \"carbon\"\nprotocol = \"plaintext\"\ncluster = \"forward\"\n\
         destinations = [\"{sink_tcp}\"]\ntls = true\ntls_ca = {ca}\n\
         [[outputs.graphite]]\nname = \"wrong_name\"\nprotocol = \"plaintext\"\ncluster = \"forward\"\n\
         destinations = [\"{sink_tcp}\"]\ntls = true\ntls_ca = {ca}\ntls_server_name = \"carbon.example\"\nretry_max = \"200ms\"\n",
        ca = toml_path(&pki.ca),
    );
    let gw = Gateway::start(&config, http);
    fluxgate_e2e::send_lines(plaintext, ["relayed.over.tls 5 1700000000"]);
    let deadline = Instant::now() + WAIT;
    while sink.metric("fluxgate_received_total", &[("listener", "plaintext_tcp")]) != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "nothing arrived over TLS\n{}",
            gw.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Counted once the write is done, which can be after the sink has read the line.
    wait_metric(
        &gw,
        "fluxgate_sent_points_total",
        &[("output", "carbon")],
        1.0,
    );
    // A certificate for another name is refused.
    while gw
        .metric(
            "fluxgate_send_errors_total",
            &[("output", "wrong_name"), ("reason", "connect")],
        )
        .is_none()
    {
        assert!(Instant::now() < deadline, "{}", gw.log_tail(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        gw.metric("fluxgate_sent_points_total", &[("output", "wrong_name")])
            .unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        sink.metric("fluxgate_received_total", &[("listener", "plaintext_tcp")]),
        Some(1.0)
    );
}

#[test]
fn sighup_picks_up_renewed_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let old = Pki::new(dir.path(), "old");
    let new = Pki::new(dir.path(), "new");
    let cert = dir.path().join("live-cert.pem");
    let key = dir.path().join("live-key.pem");
    std::fs::copy(&old.cert, &cert).unwrap();
    std::fs::copy(&old.key, &key).unwrap();
    let http = loopback(free_port());
    let config = format!(
        "[listeners.http]\naddress = \"{http}\"\ntls_cert = {}\ntls_key = {}\n",
        toml_path(&cert),
        toml_path(&key)
    );
    let mut gw = start_https_gateway(&config, http, &old.ca);
    let url = format!("https://localhost:{}/ping", http.port());
    assert!(curl_request("GET", &url, &[], &[], Some(&new.ca)).is_err());
    // Renew: same paths, new contents; the config file is unchanged.
    std::fs::copy(&new.cert, &cert).unwrap();
    std::fs::copy(&new.key, &key).unwrap();
    gw.sighup();
    let deadline = Instant::now() + WAIT;
    while !curl_request("GET", &url, &[], &[], Some(&new.ca)).is_ok_and(|r| r.status == 204) {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate is not served\n{}",
            gw.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(curl_request("GET", &url, &[], &[], Some(&old.ca)).is_err());
}
