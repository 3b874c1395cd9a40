//! The load generator and the sink as the benchmark script drives them: real processes,
//! real sockets, and the `result` lines the script parses.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Child, ChildStdout, Command, Stdio},
    time::Duration,
};

struct Sink {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: String,
}

fn sink(args: &[&str]) -> Sink {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fg-sink"))
        .args(args)
        .args(["--progress", "0", "--linger-ms", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fg-sink");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .expect("listening line")
        .to_owned();
    assert!(line.starts_with("listening "), "{line}");
    Sink {
        child,
        stdout,
        addr,
    }
}

/// The `result` line as a map, and the exit status.
fn finish(mut s: Sink) -> (HashMap<String, String>, bool) {
    let mut rest = String::new();
    s.stdout.read_to_string(&mut rest).unwrap();
    let ok = s.child.wait().unwrap().success();
    (parse_result(&rest), ok)
}

fn parse_result(out: &str) -> HashMap<String, String> {
    let line = out
        .lines()
        .find(|l| l.starts_with("result "))
        .unwrap_or_else(|| panic!("no result line in {out:?}"));
    line.split(' ')
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn post(addr: &str, path: &str, body: &[u8], gzip: bool) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let enc = if gzip {
        "Content-Encoding: gzip\r\n"
    } else {
        ""
    };
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\n{enc}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.lines().next().unwrap_or_default().to_owned()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn http_sink_counts_points_in_plain_and_gzip_writes_and_exits_at_expect() {
    let s = sink(&["http", "--expect", "5"]);
    let addr = s.addr.clone();
    assert_eq!(
        post(
            &addr,
            "/write?db=x",
            b"cpu v=1 1\n# note\n\nmem v=2 2",
            false
        ),
        "HTTP/1.1 204 No Content"
    );
    assert_eq!(
        post(
            &addr,
            "/api/v2/write?bucket=x",
            &gzip(b"a v=1\nb v=2\nc v=3\n"),
            true
        ),
        "HTTP/1.1 204 No Content"
    );
    let (r, ok) = finish(s);
    assert!(ok);
    assert_eq!(r["points"], "5");
    assert_eq!(r["requests"], "2");
    assert_eq!(r["bad_requests"], "0");
    assert_eq!(r["exit"], "expected");
    assert_ne!(r["last_unix_ns"], "na");
}

#[test]
fn http_sink_refuses_bad_gzip_and_unknown_paths() {
    let s = sink(&["http", "--idle-exit", "0.5"]);
    let addr = s.addr.clone();
    assert_eq!(
        post(&addr, "/write", b"not gzip", true),
        "HTTP/1.1 400 Bad Request"
    );
    assert_eq!(post(&addr, "/nope", b"", false), "HTTP/1.1 404 Not Found");
    let (r, ok) = finish(s);
    assert!(ok, "no --expect: an idle exit is a success");
    assert_eq!(r["points"], "0");
    assert_eq!(r["bad_requests"], "1");
    assert_eq!(r["exit"], "idle");
    assert_eq!(r["first_unix_ns"], "na");
}

#[test]
fn idle_exit_before_expect_is_a_failure() {
    let s = sink(&["tcp", "--expect", "10", "--idle-exit", "0.3"]);
    let (r, ok) = finish(s);
    assert!(!ok);
    assert_eq!(r["points"], "0");
    assert_eq!(r["exit"], "idle");
}

#[test]
fn loadgen_to_tcp_sink_delivers_every_line() {
    let s = sink(&["tcp", "--expect", "30001", "--idle-exit", "20"]);
    let out = Command::new(env!("CARGO_BIN_EXE_fg-loadgen"))
        .args(["--addr", &s.addr, "--lines", "30001", "--connections", "3"])
        .args(["--names", "1000", "--write-bytes", "4096"])
        .output()
        .expect("run fg-loadgen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let g = parse_result(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(g["lines"], "30001");
    assert_eq!(g["connections"], "3");
    assert_ne!(g["closed_after_s"], "na", "the sink closes after EOF");
    let (r, ok) = finish(s);
    assert!(ok);
    assert_eq!(r["points"], "30001");
    assert_eq!(r["connections"], "3");
    assert_eq!(r["wire_bytes"], g["bytes"]);
    let start: u128 = g["start_unix_ns"].parse().unwrap();
    let last: u128 = r["last_unix_ns"].parse().unwrap();
    assert!(last > start);
}

#[test]
fn loadgen_refuses_more_connections_than_hosts() {
    let out = Command::new(env!("CARGO_BIN_EXE_fg-loadgen"))
        .args([
            "--addr",
            "127.0.0.1:9",
            "--names",
            "16",
            "--connections",
            "3",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "fg-loadgen: --names 16 gives 2 hosts, fewer than --connections 3: some connections would have nothing to send"
    );
}
