//! `fg-floor`: the byte-copy floor for relay benchmarks.
//!
//! A relay that does nothing but copy: every accepted connection gets its own upstream
//! connection and a thread that reads up to 64 KiB and writes it on, until the sender closes.
//! No parsing, no queue, no batching: what a Graphite relay would cost if it did no work per
//! line. `bench/all.sh` runs it next to fluxgate and carbon-c-relay so the relay's rate and
//! CPU per line can be read against the cost of moving the bytes at all on the same machine.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    process::ExitCode,
    thread,
};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "fg-floor",
    about = "Copy TCP bytes from each accepted connection to an upstream, nothing else"
)]
struct Args {
    /// Where to listen (port 0 picks a free one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Where to copy to (one upstream connection per accepted connection).
    #[arg(long)]
    upstream: String,
    /// Bytes per read.
    #[arg(long, default_value_t = 64 * 1024)]
    read_bytes: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let listener = match TcpListener::bind(&args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fg-floor: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("listening floor {a}"),
        Err(e) => {
            eprintln!("fg-floor: {e}");
            return ExitCode::FAILURE;
        }
    }
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let upstream = args.upstream.clone();
        let read_bytes = args.read_bytes.max(1);
        thread::spawn(move || {
            if let Err(e) = copy(conn, &upstream, read_bytes) {
                eprintln!("fg-floor: {e}");
            }
        });
    }
    ExitCode::SUCCESS
}

fn copy(mut from: TcpStream, upstream: &str, read_bytes: usize) -> Result<(), String> {
    let mut to =
        TcpStream::connect(upstream).map_err(|e| format!("cannot connect to {upstream}: {e}"))?;
    let mut buf = vec![0u8; read_bytes];
    loop {
        let n = from.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).map_err(|e| format!("write: {e}"))?;
    }
    // The sender is done: close both ways so it sees everything was read.
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Both);
    Ok(())
}
