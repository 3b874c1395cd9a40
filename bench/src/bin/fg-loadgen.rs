//! `fg-loadgen`: sends Graphite plaintext (or pickle) over TCP as fast as the receiver takes
//! it, or at a set rate.
//!
//! The whole stream is generated before the clock starts, so the measurement is the
//! receiver's speed, not the generator's formatting. Each connection is one thread doing
//! large blocking writes: a blocked write is the receiver pushing back, which is exactly what
//! the benchmark measures. The last line on stdout is machine-readable `key=value` pairs.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs},
    process::ExitCode,
    sync::{Arc, Barrier},
    thread,
    time::{Duration, Instant},
};

use clap::Parser;
use fluxgate_bench::{corpus::Corpus, sys};

#[derive(Debug, Parser)]
#[command(
    name = "fg-loadgen",
    about = "Send Graphite plaintext lines over TCP as fast as possible"
)]
struct Args {
    /// Where to send (a plaintext TCP listener).
    #[arg(long, default_value = "127.0.0.1:2003")]
    addr: String,
    /// Lines to send, over all connections.
    #[arg(long, default_value_t = 2_000_000)]
    lines: u64,
    /// Concurrent TCP connections; each sends the series of its own hosts.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Distinct metric names (8 per host: servers.dcN.hostNNNN.cpu.{user,system,...}).
    #[arg(long, default_value_t = 50_000)]
    names: usize,
    /// Datacenters the hosts are spread over.
    #[arg(long, default_value_t = 4)]
    datacenters: usize,
    /// Timestamp of the first interval (seconds).
    #[arg(long, default_value_t = 1_700_000_000)]
    start: u64,
    /// Seconds between two reports of one series.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Varies the values between runs that should not be byte-identical.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Bytes per write call.
    #[arg(long, default_value_t = 1 << 20)]
    write_bytes: usize,
    /// After sending, wait this long for the receiver to close the connection (it has then
    /// read everything); 0 = do not wait.
    #[arg(long, default_value_t = 60)]
    wait_close: u64,
    /// Keep trying to connect for this long (the receiver may still be starting).
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Wire format: Graphite plaintext, or the same points as pickle frames (500 points
    /// each, as carbon-relay writes them) for a pickle listener.
    #[arg(long, value_enum, default_value_t = Format::Plaintext)]
    format: Format,
    /// Lines per second over all connections; 0 = as fast as the receiver takes them. Paced
    /// per write, so use a small `--write-bytes` for a steady stream.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Plaintext,
    Pickle,
}

/// The same points as pickle frames.
fn to_pickle(plain: &[u8]) -> Vec<u8> {
    let points = plain.split(|&b| b == b'\n').filter_map(|line| {
        let s = graphite_plaintext::parse_line(line).ok()?;
        let graphite_plaintext::Timestamp::Seconds(ts) = s.timestamp else {
            return None;
        };
        Some((s.path, ts, s.value))
    });
    let mut out = Vec::with_capacity(plain.len());
    graphite_pickle::FrameEncoder::new().encode(points, &mut out);
    out
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fg-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What one connection did.
#[derive(Debug)]
struct Sent {
    bytes: u64,
    /// Last byte handed to the kernel.
    written: Instant,
    /// The receiver closed its side (so it read everything), if we waited for it.
    closed: Option<Instant>,
}

fn run(args: &Args) -> Result<(), String> {
    let conns = args.connections.max(1);
    let corpus = Corpus {
        names: args.names,
        datacenters: args.datacenters,
        start: args.start,
        interval: args.interval,
        seed: args.seed,
    };
    if corpus.hosts() < conns {
        return Err(format!(
            "--names {} gives {} hosts, fewer than --connections {conns}: some connections would have nothing to send",
            args.names,
            corpus.hosts()
        ));
    }
    let addr = resolve(&args.addr)?;

    let gen_started = Instant::now();
    let streams: Vec<Vec<u8>> = thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|p| {
                let lines = Corpus::lines_of_part(args.lines, p, conns);
                let format = args.format;
                s.spawn(move || {
                    let plain = corpus.generate(p, conns, lines);
                    match format {
                        Format::Plaintext => plain,
                        Format::Pickle => to_pickle(&plain),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("generator thread"))
            .collect()
    });
    let total_bytes: u64 = streams.iter().map(|s| s.len() as u64).sum();
    eprintln!(
        "fg-loadgen: generated {} lines ({:.1} MB, {} distinct names) for {conns} connections in {:.2}s",
        args.lines,
        total_bytes as f64 / 1e6,
        args.names,
        gen_started.elapsed().as_secs_f64()
    );

    let sockets = streams
        .iter()
        .map(|_| connect(addr, Duration::from_secs(args.connect_timeout)))
        .collect::<Result<Vec<_>, _>>()?;

    // Every thread is connected and waiting: the clock starts when they are released.
    let barrier = Arc::new(Barrier::new(conns + 1));
    let cpu_before = sys::cpu_seconds();
    let handles: Vec<_> = sockets
        .into_iter()
        .zip(streams)
        .map(|(sock, data)| {
            let barrier = barrier.clone();
            let write_bytes = args.write_bytes.max(1);
            let wait_close = Duration::from_secs(args.wait_close);
            // Each connection sends its share of the rate: its lines over the same span.
            let span =
                (args.rate > 0.0).then(|| Duration::from_secs_f64(args.lines as f64 / args.rate));
            thread::spawn(move || send(sock, &data, write_bytes, wait_close, span, &barrier))
        })
        .collect();
    let start_unix = sys::unix_nanos();
    let start = Instant::now();
    barrier.wait();
    let mut results = Vec::with_capacity(conns);
    for h in handles {
        results.push(
            h.join()
                .map_err(|_| "sender thread panicked".to_string())??,
        );
    }
    let written = results
        .iter()
        .map(|r| r.written)
        .max()
        .unwrap_or(start)
        .duration_since(start);
    let end_unix = start_unix + written.as_nanos();
    let closed = results
        .iter()
        .map(|r| r.closed)
        .collect::<Option<Vec<_>>>()
        .and_then(|c| c.into_iter().max())
        .map(|t| t.duration_since(start));
    let secs = written.as_secs_f64().max(1e-9);
    let bytes: u64 = results.iter().map(|r| r.bytes).sum();
    let cpu = match (cpu_before, sys::cpu_seconds()) {
        (Some(a), Some(b)) => format!("{:.2}", b - a),
        _ => "na".into(),
    };
    println!(
        "result lines={} bytes={bytes} connections={conns} names={} start_unix_ns={start_unix} end_unix_ns={end_unix} elapsed_s={secs:.6} lines_per_s={:.0} mb_per_s={:.1} closed_after_s={} cpu_s={cpu}",
        args.lines,
        args.names,
        args.lines as f64 / secs,
        bytes as f64 / 1e6 / secs,
        closed.map_or("na".into(), |d| format!("{:.6}", d.as_secs_f64())),
    );
    Ok(())
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("bad --addr {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("--addr {addr} resolves to nothing"))
}

fn connect(addr: SocketAddr, patience: Duration) -> Result<TcpStream, String> {
    let deadline = Instant::now() + patience;
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("cannot connect to {addr}: {e}"))
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn send(
    mut sock: TcpStream,
    data: &[u8],
    write_bytes: usize,
    wait_close: Duration,
    span: Option<Duration>,
    barrier: &Barrier,
) -> Result<Sent, String> {
    barrier.wait();
    let started = Instant::now();
    let mut offset = 0usize;
    for chunk in data.chunks(write_bytes) {
        if let Some(span) = span {
            // Paced: this chunk leaves when its share of the span has passed.
            let due = started + span.mul_f64(offset as f64 / data.len().max(1) as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
        }
        sock.write_all(chunk)
            .map_err(|e| format!("write failed: {e}"))?;
        offset += chunk.len();
    }
    let written = Instant::now();
    sock.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown failed: {e}"))?;
    let closed = if wait_close.is_zero() {
        None
    } else {
        sock.set_read_timeout(Some(wait_close))
            .map_err(|e| format!("set_read_timeout failed: {e}"))?;
        let mut scratch = [0u8; 4096];
        loop {
            match sock.read(&mut scratch) {
                Ok(0) => break Some(Instant::now()),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("fg-loadgen: the receiver did not close the connection: {e}");
                    break None;
                }
            }
        }
    };
    Ok(Sent {
        bytes: data.len() as u64,
        written,
        closed,
    })
}
