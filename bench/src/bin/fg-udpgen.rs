//! `fg-udpgen`: sends StatsD or Graphite plaintext over UDP at a fixed rate, for loss
//! measurements (UDP has no backpressure: what the receiver cannot take is lost, so the
//! figure is how much arrived at a given rate, not how fast it could go).
//!
//! The datagrams are generated before the clock starts; then they are sent in bursts paced
//! to `--rate` lines per second. StatsD traffic is counters (`bench.cN:1|c`) and, one line in
//! `--timer-every`, timers (`bench.tN:V|ms`), so what arrived can be counted from what a
//! StatsD server flushes: the sum of `stats_counts.bench.c*` plus the sum of
//! `stats.timers.bench.t*.count`. The last line on stdout is machine-readable `key=value`
//! pairs.

use std::{
    net::{SocketAddr, ToSocketAddrs, UdpSocket},
    process::ExitCode,
    thread,
    time::{Duration, Instant},
};

use clap::{Parser, ValueEnum};
use fluxgate_bench::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Statsd,
    Plaintext,
}

#[derive(Debug, Parser)]
#[command(
    name = "fg-udpgen",
    about = "Send StatsD or Graphite plaintext over UDP at a fixed rate"
)]
struct Args {
    #[arg(value_enum)]
    format: Format,
    /// Where to send.
    #[arg(long)]
    addr: String,
    /// Lines (metrics) to send in all.
    #[arg(long, default_value_t = 2_500_000)]
    lines: u64,
    /// Target rate, lines per second.
    #[arg(long, default_value_t = 500_000)]
    rate: u64,
    /// Lines per datagram (StatsD clients batch up to about one MTU).
    #[arg(long, default_value_t = 20)]
    per_datagram: usize,
    /// Distinct metric names.
    #[arg(long, default_value_t = 1000)]
    names: usize,
    /// StatsD: one line in this many is a timer (0: counters only).
    #[arg(long, default_value_t = 10)]
    timer_every: usize,
    /// SO_SNDBUF of the sending socket.
    #[arg(long, default_value_t = 4 << 20)]
    send_buffer: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fg-udpgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `i`-th line of the stream.
fn line(args: &Args, i: u64, out: &mut String) {
    use std::fmt::Write;
    let n = (i % args.names as u64) as usize;
    match args.format {
        Format::Statsd => {
            if args.timer_every > 0 && i.is_multiple_of(args.timer_every as u64) {
                let _ = writeln!(out, "bench.t{n}:{}|ms", i % 997);
            } else {
                let _ = writeln!(out, "bench.c{n}:1|c");
            }
        }
        Format::Plaintext => {
            let _ = writeln!(
                out,
                "bench.udp.host{:04}.m{n} {} 1700000000",
                n % 100,
                i % 1000
            );
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let addr: SocketAddr = args
        .addr
        .to_socket_addrs()
        .map_err(|e| format!("bad --addr {}: {e}", args.addr))?
        .next()
        .ok_or_else(|| format!("--addr {} resolves to nothing", args.addr))?;
    let per = args.per_datagram.max(1) as u64;
    let datagrams_total = args.lines.div_ceil(per);
    // A ring of distinct datagrams, long enough to cover every name several times.
    let ring_len = datagrams_total.min(20_000);
    let mut ring = Vec::with_capacity(ring_len as usize);
    // Timer lines in each datagram of the ring, to count what was sent of each type.
    let mut timers_in = Vec::with_capacity(ring_len as usize);
    let mut text = String::new();
    for d in 0..ring_len {
        text.clear();
        for k in 0..per {
            line(args, d * per + k, &mut text);
        }
        timers_in.push(text.matches("|ms").count() as u64);
        ring.push(text.clone().into_bytes());
    }
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let sock2 = socket2::SockRef::from(&sock);
    let _ = sock2.set_send_buffer_size(args.send_buffer);
    sock.connect(addr)
        .map_err(|e| format!("connect {addr}: {e}"))?;

    let cpu_before = sys::cpu_seconds();
    let start_unix = sys::unix_nanos();
    let start = Instant::now();
    let rate = args.rate.max(1) as f64 / per as f64; // datagrams per second
    let mut sent: u64 = 0;
    let mut errors: u64 = 0;
    let mut bytes: u64 = 0;
    let mut timers: u64 = 0;
    while sent < datagrams_total {
        let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(datagrams_total);
        if due <= sent {
            thread::sleep(Duration::from_micros(200));
            continue;
        }
        while sent < due {
            let i = (sent % ring_len) as usize;
            timers += timers_in[i];
            match sock.send(&ring[i]) {
                Ok(n) => bytes += n as u64,
                // ENOBUFS / ECONNREFUSED: counted, not retried (the line is lost).
                Err(_) => errors += 1,
            }
            sent += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let end_unix = sys::unix_nanos();
    let cpu = match (cpu_before, sys::cpu_seconds()) {
        (Some(a), Some(b)) => format!("{:.2}", b - a),
        _ => "na".into(),
    };
    // Every datagram holds `per` lines (`--lines` is rounded up to a whole datagram).
    let lines = sent * per;
    println!(
        "result format={:?} lines={lines} timers={timers} datagrams={sent} send_errors={errors} bytes={bytes} per_datagram={per} start_unix_ns={start_unix} end_unix_ns={end_unix} elapsed_s={secs:.6} lines_per_s={:.0} cpu_s={cpu}",
        args.format,
        lines as f64 / secs,
    );
    Ok(())
}
