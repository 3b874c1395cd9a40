//! `fg-sink`: a counting upstream for benchmarks.
//!
//! `http` mode plays InfluxDB's write endpoints (`POST /write`, `POST /api/v2/write`, gzip or
//! not) and answers 204 as soon as the body is counted; `tcp` mode plays a Graphite
//! plaintext server. Either way it stores nothing: the only question is how many points
//! arrived and when, so a benchmark measures the gateway, not a database. It exits once it has
//! seen `--expect` points (after a short linger, so the last 204 reaches the gateway), or
//! after `--idle-exit` seconds without data. The last line on stdout is machine-readable
//! `key=value` pairs; progress goes to stderr.

use std::{
    convert::Infallible,
    io::Read,
    net::SocketAddr,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use fluxgate_bench::{
    count::{Dialect, LineCounter},
    sys,
};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::{body::Incoming, header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::Notify,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// InfluxDB write API (v1 `/write` and v2 `/api/v2/write`), line protocol, gzip or not.
    Http,
    /// Graphite plaintext over TCP.
    Tcp,
}

#[derive(Debug, Parser)]
#[command(
    name = "fg-sink",
    about = "Count points sent by a gateway (InfluxDB HTTP writes or Graphite plaintext)"
)]
struct Args {
    #[arg(value_enum)]
    mode: Mode,
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Listen on this many sockets, all counted together (a cluster of destinations, one
    /// sink): the first on `--listen`, the others on free ports of its address. Every address
    /// is printed on the `listening` line.
    #[arg(long, default_value_t = 1)]
    listeners: usize,
    /// Exit once this many points have arrived.
    #[arg(long)]
    expect: Option<u64>,
    /// Exit after this many seconds without data (counted from start until data arrives).
    #[arg(long)]
    idle_exit: Option<f64>,
    /// Seconds between progress lines on stderr; 0 = none.
    #[arg(long, default_value_t = 1.0)]
    progress: f64,
    /// Keep answering this long after `--expect` is reached, so in-flight responses finish.
    #[arg(long, default_value_t = 200)]
    linger_ms: u64,
    /// Runtime worker threads; 0 = one per core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Largest request body accepted (as sent, before decompression); larger gets 413.
    #[arg(long, default_value_t = 256 << 20)]
    max_body_bytes: usize,
}

/// Everything counted, shared by all connections. Times are nanoseconds since `origin`.
#[derive(Debug)]
struct Stats {
    expect: Option<u64>,
    origin: Instant,
    origin_unix: u128,
    points: AtomicU64,
    wire_bytes: AtomicU64,
    decoded_bytes: AtomicU64,
    requests: AtomicU64,
    bad_requests: AtomicU64,
    connections: AtomicU64,
    first: AtomicU64,
    last: AtomicU64,
    activity: AtomicU64,
    reached: AtomicBool,
    done: Notify,
}

const NONE: u64 = u64::MAX;

impl Stats {
    fn new(expect: Option<u64>) -> Self {
        Self {
            expect,
            origin: Instant::now(),
            origin_unix: sys::unix_nanos(),
            points: AtomicU64::new(0),
            wire_bytes: AtomicU64::new(0),
            decoded_bytes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            bad_requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            first: AtomicU64::new(NONE),
            // Meaningful once `first` is set.
            last: AtomicU64::new(0),
            activity: AtomicU64::new(0),
            reached: AtomicBool::new(false),
            done: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn record(&self, points: u64, wire: u64, decoded: u64) {
        let now = self.now();
        self.activity.store(now, Ordering::Relaxed);
        self.wire_bytes.fetch_add(wire, Ordering::Relaxed);
        self.decoded_bytes.fetch_add(decoded, Ordering::Relaxed);
        if points == 0 {
            return;
        }
        let _ = self
            .first
            .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last.fetch_max(now, Ordering::Relaxed);
        let total = self.points.fetch_add(points, Ordering::AcqRel) + points;
        if self.expect.is_some_and(|e| total >= e) && !self.reached.swap(true, Ordering::AcqRel) {
            self.done.notify_one();
        }
    }

    fn unix(&self, at: u64) -> Option<u128> {
        (at != NONE).then(|| self.origin_unix + u128::from(at))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fg-sink: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(run(args))
}

#[derive(Debug, Clone, Copy)]
enum Exit {
    Expected,
    Idle,
    Interrupted,
}

async fn run(args: Args) -> ExitCode {
    let listener = match TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fg-sink: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(2);
        }
    };
    let mut listeners = vec![listener];
    for _ in 1..args.listeners {
        let extra = SocketAddr::new(args.listen.ip(), 0);
        match TcpListener::bind(extra).await {
            Ok(l) => listeners.push(l),
            Err(e) => {
                eprintln!("fg-sink: cannot listen on {extra}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap_or(args.listen).to_string())
        .collect();
    let mode = match args.mode {
        Mode::Http => "http",
        Mode::Tcp => "tcp",
    };
    println!("listening {mode} {}", addrs.join(" "));
    let stats = Arc::new(Stats::new(args.expect));
    let cpu_before = sys::cpu_seconds();
    for listener in listeners {
        tokio::spawn(accept(
            listener,
            args.mode,
            stats.clone(),
            args.max_body_bytes,
        ));
    }

    let exit = tokio::select! {
        _ = stats.done.notified() => Exit::Expected,
        e = watch(&stats, args.idle_exit, args.progress) => e,
        _ = tokio::signal::ctrl_c() => Exit::Interrupted,
    };
    if matches!(exit, Exit::Expected) {
        tokio::time::sleep(Duration::from_millis(args.linger_ms)).await;
    }
    report(&stats, mode, exit, cpu_before)
}

/// Prints progress and returns once the sink has been idle for `idle` seconds.
async fn watch(stats: &Stats, idle: Option<f64>, progress: f64) -> Exit {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let every = Duration::from_secs_f64(progress.max(0.0));
    let mut shown = (Instant::now(), 0u64);
    loop {
        tick.tick().await;
        let now = stats.now();
        if let Some(idle) = idle {
            let quiet = now.saturating_sub(stats.activity.load(Ordering::Relaxed));
            if Duration::from_nanos(quiet).as_secs_f64() >= idle {
                return Exit::Idle;
            }
        }
        if !every.is_zero() && shown.0.elapsed() >= every {
            let points = stats.points.load(Ordering::Relaxed);
            let rate = (points - shown.1) as f64 / shown.0.elapsed().as_secs_f64();
            eprintln!("fg-sink: {points} points ({rate:.0}/s)");
            shown = (Instant::now(), points);
        }
    }
}

fn report(stats: &Stats, mode: &str, exit: Exit, cpu_before: Option<f64>) -> ExitCode {
    let points = stats.points.load(Ordering::Acquire);
    let (first, last) = (
        stats.first.load(Ordering::Relaxed),
        stats.last.load(Ordering::Relaxed),
    );
    let span = if first == NONE {
        0.0
    } else {
        Duration::from_nanos(last - first).as_secs_f64()
    };
    let rate = if span > 0.0 {
        points as f64 / span
    } else {
        0.0
    };
    let opt = |v: Option<u128>| v.map_or("na".to_string(), |v| v.to_string());
    let cpu = match (cpu_before, sys::cpu_seconds()) {
        (Some(a), Some(b)) => format!("{:.2}", b - a),
        _ => "na".into(),
    };
    let exit_name = match exit {
        Exit::Expected => "expected",
        Exit::Idle => "idle",
        Exit::Interrupted => "interrupted",
    };
    println!(
        "result mode={mode} points={points} requests={} bad_requests={} connections={} wire_bytes={} decoded_bytes={} first_unix_ns={} last_unix_ns={} elapsed_s={span:.6} points_per_s={rate:.0} cpu_s={cpu} exit={exit_name}",
        stats.requests.load(Ordering::Relaxed),
        stats.bad_requests.load(Ordering::Relaxed),
        stats.connections.load(Ordering::Relaxed),
        stats.wire_bytes.load(Ordering::Relaxed),
        stats.decoded_bytes.load(Ordering::Relaxed),
        opt(stats.unix(first)),
        opt(stats.unix(first).and(stats.unix(last))),
    );
    match stats.expect {
        Some(e) if points > e => {
            eprintln!(
                "fg-sink: {points} points, {} more than expected (duplicates?)",
                points - e
            );
            ExitCode::FAILURE
        }
        Some(e) if points < e => {
            eprintln!("fg-sink: only {points} of {e} expected points arrived");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

async fn accept(listener: TcpListener, mode: Mode, stats: Arc<Stats>, max_body: usize) {
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                eprintln!("fg-sink: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Responses are tiny: without this, Nagle plus delayed ACKs stall each one ~40 ms.
        let _ = stream.set_nodelay(true);
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let stats = stats.clone();
        match mode {
            Mode::Http => tokio::spawn(serve_http(stream, stats, max_body)),
            Mode::Tcp => tokio::spawn(serve_tcp(stream, stats)),
        };
    }
}

async fn serve_tcp(mut stream: TcpStream, stats: Arc<Stats>) {
    let mut counter = LineCounter::new(Dialect::Plaintext);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                let points = counter.feed(&buf[..n]);
                stats.record(points, n as u64, n as u64);
            }
            Err(e) => {
                eprintln!("fg-sink: read failed: {e}");
                return;
            }
        }
    }
}

async fn serve_http(stream: TcpStream, stats: Arc<Stats>, max_body: usize) {
    let service = hyper::service::service_fn(move |req| {
        let stats = stats.clone();
        async move { Ok::<_, Infallible>(handle(req, &stats, max_body).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        if !e.is_incomplete_message() {
            eprintln!("fg-sink: connection error: {e}");
        }
    }
}

fn respond(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
    }
    resp.headers_mut().insert(
        "X-Influxdb-Version",
        header::HeaderValue::from_static("fg-sink"),
    );
    resp
}

async fn handle(req: Request<Incoming>, stats: &Stats, max_body: usize) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/write" | "/api/v2/write") => {}
        (&Method::GET | &Method::HEAD, "/ping") => return respond(StatusCode::NO_CONTENT, ""),
        (&Method::GET, "/health") => return respond(StatusCode::OK, r#"{"status":"pass"}"#),
        // The CREATE DATABASE an output sends at start.
        (&Method::POST | &Method::GET, "/query") => {
            return respond(StatusCode::OK, r#"{"results":[{"statement_id":0}]}"#)
        }
        _ => return respond(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
    }
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let gzip = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip"));
    let body = match Limited::new(req.into_body(), max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            stats.bad_requests.fetch_add(1, Ordering::Relaxed);
            return if e.downcast_ref::<LengthLimitError>().is_some() {
                respond(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    r#"{"error":"request entity too large"}"#,
                )
            } else {
                respond(StatusCode::BAD_REQUEST, r#"{"error":"cannot read body"}"#)
            };
        }
    };
    let counted = if gzip {
        gunzip_count(&body)
    } else {
        let mut c = LineCounter::new(Dialect::LineProtocol);
        Ok((c.feed(&body), body.len() as u64))
    };
    match counted {
        Ok((points, decoded)) => {
            stats.record(points, body.len() as u64, decoded);
            respond(StatusCode::NO_CONTENT, "")
        }
        Err(e) => {
            stats.bad_requests.fetch_add(1, Ordering::Relaxed);
            eprintln!("fg-sink: bad gzip body: {e}");
            respond(StatusCode::BAD_REQUEST, r#"{"error":"bad gzip body"}"#)
        }
    }
}

/// Points and decompressed size of a gzip body, streamed through a small buffer: a sink
/// that inflated whole bodies would measure its own allocator.
fn gunzip_count(body: &[u8]) -> std::io::Result<(u64, u64)> {
    let mut counter = LineCounter::new(Dialect::LineProtocol);
    if body.is_empty() {
        return Ok((0, 0));
    }
    let mut dec = flate2::read::MultiGzDecoder::new(body);
    let mut buf = vec![0u8; 64 * 1024];
    let mut decoded = 0u64;
    loop {
        let n = dec.read(&mut buf)?;
        if n == 0 {
            return Ok((counter.points(), decoded));
        }
        decoded += n as u64;
        counter.feed(&buf[..n]);
    }
}
