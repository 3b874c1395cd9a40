//! An InfluxDB 2.x write API stand-in: an HTTP/1.1 server on a free loopback port whose
//! answers come from a script, recording every request it received.
//!
//! InfluxDB 2.x does not run here, so its write API is played by this server answering as
//! PROTOCOLS.md §5 says the real one does (`{"code","message"}` JSON, Retry-After). The same
//! server, never answering or holding its answer, plays a stalled upstream. It speaks plain
//! HTTP/1.1 with keep-alive, so it serves `api = "v1"` outputs just as well; for those it
//! answers `/query` (the `CREATE DATABASE` an output sends at start) as InfluxDB 1.8 does,
//! without recording it among the writes.
//!
//! It also answers the 2.x read API from what it took: every point of a write it answered
//! with a 2xx is kept under its bucket, and
//! - `POST /api/v2/query` (a JSON `{"query": ...}` or an `application/vnd.flux` body) answers
//!   every kept point of the bucket named by `from(bucket: "...")` (no other Flux is run) as
//!   InfluxDB 2.x's annotated CSV (`text/csv; charset=utf-8`): one table per series and field,
//!   `#datatype`, `#group` and `#default` annotations, a header row, columns `result`, `table`,
//!   `_start`, `_stop`, `_time`, `_value`, `_field`, `_measurement` and the tags, times in
//!   RFC 3339 with nanoseconds, tables separated by an empty line; sent chunked, and, when
//!   [`InfluxV2Mock::hold_query_answers`] was given a flag, with the first table sent before
//!   the stand-in waits for the flag to send the rest (so a test can see an answer streamed);
//! - `GET /api/v2/buckets` lists the buckets written to (`{"buckets": [{"id", "name", ...}]}`);
//! - `GET /health` and `GET /ready` answer as 2.7 does.
//!
//! These reads are recorded apart from the writes ([`InfluxV2Mock::reads`]).

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::json;

/// How long [`InfluxV2Mock::wait_for`] waits.
const WAIT: Duration = Duration::from_secs(20);

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// When the request was complete.
    pub at: Instant,
    /// `POST`, ...
    pub method: String,
    /// Path and query string, as sent.
    pub target: String,
    /// Header names and values as sent.
    pub headers: Vec<(String, String)>,
    /// The body, gunzipped when it came with `Content-Encoding: gzip`.
    pub body: Vec<u8>,
    /// The status the stand-in answered (`None`: it never answered).
    pub answered: Option<u16>,
}

impl Received {
    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The path without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The query string's parameters, decoded.
    pub fn query(&self) -> Vec<(String, String)> {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (url_decode(key), url_decode(value))
            })
            .collect()
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body's lines (line protocol: one point each).
    pub fn lines(&self) -> Vec<String> {
        self.text().lines().map(str::to_owned).collect()
    }
}

fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the stand-in does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answers with this status, headers and body.
    Answer {
        /// The status code.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// The body.
        body: String,
    },
    /// Reads the request and never answers (the connection stays open).
    Stall,
    /// Holds the request until the flag is set, then answers 204.
    Hold(Arc<AtomicBool>),
}

impl Reply {
    /// 204, the answer to an accepted write.
    pub fn no_content() -> Reply {
        Reply::Answer {
            status: 204,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// An InfluxDB 2.x error: `{"code": ..., "message": ...}`.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::Answer {
            status,
            headers: vec![(
                "Content-Type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            )],
            body: json!({ "code": code, "message": message }).to_string(),
        }
    }

    /// Adds a header to an [`Reply::Answer`].
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Answer { headers, .. } = &mut self {
            headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }
}

/// The script: `(request index, request) -> Reply`.
type Script = Box<dyn FnMut(usize, &Received) -> Reply + Send>;

struct MockState {
    received: Vec<Received>,
    script: Script,
    /// Points kept from accepted writes: (bucket, point).
    points: Vec<(String, StoredPoint)>,
    reads: Vec<Received>,
    hold: Option<Arc<AtomicBool>>,
}

/// A point the stand-in keeps from an accepted write.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPoint {
    /// The measurement.
    pub measurement: String,
    /// Tags, sorted by key.
    pub tags: Vec<(String, String)>,
    /// Field name and value, as the CSV prints it.
    pub field: String,
    /// The value's text and its CSV datatype (`double`, `long`, `unsignedLong`, `boolean`,
    /// `string`).
    pub value: (String, &'static str),
    /// Nanoseconds since the epoch.
    pub time_ns: i64,
}

/// An HTTP/1.1 server on a free loopback port whose answers come from a script
/// (`(request index, request) -> Reply`), recording every request.
pub struct InfluxV2Mock {
    addr: SocketAddr,
    state: Arc<Mutex<MockState>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for InfluxV2Mock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxV2Mock")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InfluxV2Mock {
    /// Listens on a free loopback port and answers every request as `script` says.
    ///
    /// # Panics
    /// When no port can be bound.
    pub fn start(script: impl FnMut(usize, &Received) -> Reply + Send + 'static) -> InfluxV2Mock {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(Mutex::new(MockState {
            received: Vec::new(),
            script: Box::new(script),
            points: Vec::new(),
            reads: Vec::new(),
            hold: None,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            thread::spawn(move || {
                let mut connections = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
                            connections.push(thread::spawn(move || serve(stream, &state, &stop)));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
                for connection in connections {
                    let _ = connection.join();
                }
            })
        };
        InfluxV2Mock {
            addr,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:<port>`, for an output's `url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state).received.clone()
    }

    /// The read requests (`/api/v2/query`, `/api/v2/buckets`, `/health`, `/ready`) so far.
    pub fn reads(&self) -> Vec<Received> {
        lock(&self.state).reads.clone()
    }

    /// The points kept from accepted writes, with their bucket.
    pub fn points(&self) -> Vec<(String, StoredPoint)> {
        lock(&self.state).points.clone()
    }

    /// From now on, a query answer sends its first table, then waits until `release` is set
    /// before it sends the rest.
    pub fn hold_query_answers(&self, release: Arc<AtomicBool>) {
        lock(&self.state).hold = Some(release);
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits (up to 20 s) until at least `n` requests arrived and returns all of them.
    ///
    /// # Panics
    /// When fewer arrived in time, listing what did.
    pub fn wait_for(&self, n: usize) -> Vec<Received> {
        self.wait_for_within(n, WAIT)
    }

    /// Waits until at least `n` requests arrived and returns all of them.
    ///
    /// # Panics
    /// After `timeout`, listing what arrived.
    pub fn wait_for_within(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "the stand-in received {} of {n} request(s) after {timeout:?}: {received:#?}",
                received.len()
            );
            thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for InfluxV2Mock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<MockState>, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buffer = Vec::new();
    // Keep-alive: several requests per connection, as InfluxDB allows.
    while let Some(mut request) = read_request(&mut stream, &mut buffer, stop) {
        if request.target.starts_with("/query") {
            let body = r#"{"results":[{"statement_id":0}]}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        if is_read(&request) {
            if !answer_read(&mut stream, request, state, stop) {
                return;
            }
            continue;
        }
        let reply = {
            let mut state = lock(state);
            let index = state.received.len();
            let reply = (state.script)(index, &request);
            match &reply {
                Reply::Answer { status, .. } => request.answered = Some(*status),
                Reply::Hold(_) => request.answered = Some(204),
                Reply::Stall => {}
            }
            if request.answered.is_some_and(|s| (200..300).contains(&s)) {
                let kept = keep_points(&request);
                state.points.extend(kept);
            }
            state.received.push(request);
            reply
        };
        let (status, headers, body) = match reply {
            Reply::Stall => {
                while !stop.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(20));
                }
                return;
            }
            Reply::Hold(release) => {
                while !release.load(Ordering::SeqCst) {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                (204, Vec::new(), String::new())
            }
            Reply::Answer {
                status,
                headers,
                body,
            } => (status, headers, body),
        };
        let mut response = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        response.push_str("X-Influxdb-Version: v2.7.10\r\n");
        for (name, value) in headers {
            let _ = write!(response, "{name}: {value}\r\n");
        }
        if status != 204 {
            let _ = write!(response, "Content-Length: {}\r\n", body.len());
        }
        response.push_str("\r\n");
        response.push_str(&body);
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Request Entity Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Reads one complete request (Content-Length or chunked body); `None` at EOF or on stop.
fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    stop: &AtomicBool,
) -> Option<Received> {
    let mut chunk = vec![0_u8; 64 * 1024];
    loop {
        if let Some(request) = parse_request(buffer) {
            return Some(request);
        }
        if stop.load(Ordering::SeqCst) {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return None,
        }
    }
}

/// Takes one complete request off the front of `buffer`, if there is one.
fn parse_request(buffer: &mut Vec<u8>) -> Option<Received> {
    let head_end = find(buffer, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    let start = head_end + 4;
    let (raw, consumed) =
        if header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
            let mut body = Vec::new();
            let mut at = start;
            loop {
                let line_end = at + find(&buffer[at..], b"\r\n")?;
                let size_text = std::str::from_utf8(&buffer[at..line_end]).ok()?;
                let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
                at = line_end + 2;
                if size == 0 {
                    let end = at + find(&buffer[at..], b"\r\n")? + 2;
                    break (body, end);
                }
                body.extend_from_slice(buffer.get(at..at + size)?);
                at += size + 2;
                if at > buffer.len() {
                    return None;
                }
            }
        } else {
            let length: usize = header("content-length").map_or(0, |l| l.parse().unwrap_or(0));
            (buffer.get(start..start + length)?.to_vec(), start + length)
        };
    buffer.drain(..consumed);
    let body = if header("content-encoding").is_some_and(|ce| ce.eq_ignore_ascii_case("gzip")) {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut plain)
            .unwrap_or_else(|err| panic!("the gateway sent a bad gzip body: {err}"));
        plain
    } else {
        raw
    };
    Some(Received {
        at: Instant::now(),
        method,
        target,
        headers,
        body,
        answered: None,
    })
}

/// Whether a request is one of the reads the stand-in answers itself.
fn is_read(request: &Received) -> bool {
    matches!(
        (request.method.as_str(), request.path()),
        ("POST", "/api/v2/query")
            | ("GET", "/api/v2/buckets")
            | ("GET", "/health")
            | ("GET", "/ready")
    )
}

/// The points of an accepted write, under the bucket it named (`db[/rp]` for a v1 write).
fn keep_points(request: &Received) -> Vec<(String, StoredPoint)> {
    let query = request.query();
    let param = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let bucket = match request.path() {
        "/api/v2/write" => param("bucket").unwrap_or_default(),
        "/write" => match param("rp").filter(|rp| !rp.is_empty()) {
            Some(rp) => format!("{}/{rp}", param("db").unwrap_or_default()),
            None => param("db").unwrap_or_default(),
        },
        _ => return Vec::new(),
    };
    let precision = match param("precision").as_deref() {
        Some("s") => line_protocol::Precision::Seconds,
        Some("ms") => line_protocol::Precision::Milliseconds,
        Some("us" | "u") => line_protocol::Precision::Microseconds,
        _ => line_protocol::Precision::Nanoseconds,
    };
    let text = request.text();
    let mut out = Vec::new();
    for parsed in line_protocol::parse_lines(&text).precision(precision) {
        let Ok(p) = parsed else { continue };
        let time_ns = p.timestamp_nanos(precision).ok().flatten().unwrap_or(0);
        let mut tags: Vec<(String, String)> = p
            .tags
            .iter()
            .map(|(k, v)| (k.as_str().into_owned(), v.as_str().into_owned()))
            .collect();
        tags.sort();
        for (key, value) in &p.fields {
            let value = match value {
                line_protocol::FieldValue::F64(x) => (format!("{x}"), "double"),
                line_protocol::FieldValue::I64(x) => (x.to_string(), "long"),
                line_protocol::FieldValue::U64(x) => (x.to_string(), "unsignedLong"),
                line_protocol::FieldValue::Bool(x) => (x.to_string(), "boolean"),
                line_protocol::FieldValue::String(x) => (x.as_str().into_owned(), "string"),
            };
            out.push((
                bucket.clone(),
                StoredPoint {
                    measurement: p.measurement.as_str().into_owned(),
                    tags: tags.clone(),
                    field: key.as_str().into_owned(),
                    value,
                    time_ns,
                },
            ));
        }
    }
    out
}

/// Nanoseconds since the epoch as RFC 3339 (`2024-05-16T00:00:00.5Z`), as InfluxDB prints
/// them (trailing zeros of the fraction cut).
pub fn rfc3339_nanos(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// The bucket a Flux query reads: the string after `from(bucket:`.
fn flux_bucket(query: &str) -> Option<String> {
    let at = query.find("bucket")?;
    let rest = query[at + "bucket".len()..]
        .trim_start()
        .strip_prefix(':')?;
    let rest = rest.trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

/// What one CSV table holds: measurement, tags, field and the value's datatype.
type SeriesKey<'a> = (&'a str, &'a [(String, String)], &'a str, &'static str);

/// The annotated CSV of `points`: one table per (measurement, tags, field).
fn annotated_csv(points: &[StoredPoint]) -> Vec<String> {
    let mut series: Vec<SeriesKey<'_>> = Vec::new();
    for p in points {
        let key = (
            p.measurement.as_str(),
            p.tags.as_slice(),
            p.field.as_str(),
            p.value.1,
        );
        if !series.contains(&key) {
            series.push(key);
        }
    }
    let start = points.iter().map(|p| p.time_ns).min().unwrap_or(0);
    let stop = points.iter().map(|p| p.time_ns).max().unwrap_or(0) + 1;
    let mut tables = Vec::new();
    for (table, (measurement, tags, field, datatype)) in series.iter().enumerate() {
        let mut t = String::new();
        let tag_types = ",string".repeat(tags.len());
        let tag_groups = ",true".repeat(tags.len());
        let _ = write!(
            t,
            "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,{datatype},string,string{tag_types}\r\n\
             #group,false,false,true,true,false,false,true,true{tag_groups}\r\n\
             #default,_result,,,,,,,{}\r\n\
             ,result,table,_start,_stop,_time,_value,_field,_measurement",
            ",".repeat(tags.len())
        );
        for (k, _) in tags.iter() {
            t.push(',');
            t.push_str(k);
        }
        t.push_str("\r\n");
        for p in points.iter().filter(|p| {
            p.measurement == *measurement && p.tags.as_slice() == *tags && p.field == *field
        }) {
            let _ = write!(
                t,
                ",,{table},{},{},{},{},{field},{measurement}",
                rfc3339_nanos(start),
                rfc3339_nanos(stop),
                rfc3339_nanos(p.time_ns),
                csv_cell(&p.value.0),
            );
            for (_, v) in tags.iter() {
                t.push(',');
                t.push_str(&csv_cell(v));
            }
            t.push_str("\r\n");
        }
        t.push_str("\r\n");
        tables.push(t);
    }
    if tables.is_empty() {
        tables.push("\r\n".to_owned());
    }
    tables
}

fn csv_cell(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

fn write_chunk(stream: &mut TcpStream, data: &str) -> bool {
    let chunk = format!("{:x}\r\n{data}\r\n", data.len());
    stream
        .write_all(chunk.as_bytes())
        .and_then(|()| stream.flush())
        .is_ok()
}

/// Answers one read request; false when the connection is done with.
fn answer_read(
    stream: &mut TcpStream,
    request: Received,
    state: &Mutex<MockState>,
    stop: &AtomicBool,
) -> bool {
    let (points, hold, buckets) = {
        let mut st = lock(state);
        st.reads.push(request.clone());
        let mut buckets: Vec<String> = st.points.iter().map(|(b, _)| b.clone()).collect();
        buckets.sort();
        buckets.dedup();
        (st.points.clone(), st.hold.clone(), buckets)
    };
    let json_answer = |stream: &mut TcpStream, status: u16, body: String| {
        let response = format!(
            "HTTP/1.1 {status} {}\r\nX-Influxdb-Version: v2.7.10\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            reason(status),
            body.len()
        );
        stream.write_all(response.as_bytes()).is_ok()
    };
    match request.path() {
        "/health" => json_answer(
            stream,
            200,
            json!({"name": "influxdb", "message": "ready for queries and writes", "status": "pass",
                   "checks": [], "version": "v2.7.10", "commit": "f302d9730c"})
            .to_string(),
        ),
        "/ready" => json_answer(
            stream,
            200,
            json!({"status": "ready", "started": "2024-05-16T00:00:00Z", "up": "1h0m0s"})
                .to_string(),
        ),
        "/api/v2/buckets" => {
            let list: Vec<_> = buckets
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    json!({"id": format!("{:016x}", i + 1), "orgID": "0000000000000001", "type": "user",
                           "name": name, "retentionRules": [], "createdAt": "2024-05-16T00:00:00Z",
                           "updatedAt": "2024-05-16T00:00:00Z", "labels": [],
                           "links": {"self": format!("/api/v2/buckets/{:016x}", i + 1),
                                     "org": "/api/v2/orgs/0000000000000001"}})
                })
                .collect();
            json_answer(stream, 200, json!({"links": {"self": "/api/v2/buckets?descending=false&limit=20&offset=0"}, "buckets": list}).to_string())
        }
        _ => {
            let media = request
                .header("content-type")
                .unwrap_or_default()
                .to_ascii_lowercase();
            let query = if media.starts_with("application/vnd.flux") {
                Some(request.text())
            } else {
                serde_json::from_slice::<serde_json::Value>(&request.body)
                    .ok()
                    .and_then(|v| v.get("query").and_then(|q| q.as_str().map(str::to_owned)))
            };
            let Some(bucket) = query.as_deref().and_then(flux_bucket) else {
                return json_answer(
                    stream,
                    400,
                    json!({"code": "invalid", "message": "compilation failed: no from(bucket: ...)"})
                        .to_string(),
                );
            };
            let mine: Vec<StoredPoint> = points
                .into_iter()
                .filter(|(b, _)| *b == bucket)
                .map(|(_, p)| p)
                .collect();
            let tables = annotated_csv(&mine);
            let head = "HTTP/1.1 200 OK\r\nX-Influxdb-Version: v2.7.10\r\nContent-Type: text/csv; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n";
            if stream.write_all(head.as_bytes()).is_err() {
                return false;
            }
            for (i, table) in tables.iter().enumerate() {
                if i == 1 {
                    if let Some(release) = &hold {
                        while !release.load(Ordering::SeqCst) {
                            if stop.load(Ordering::SeqCst) {
                                return false;
                            }
                            thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
                if !write_chunk(stream, table) {
                    return false;
                }
            }
            stream.write_all(b"0\r\n\r\n").is_ok()
        }
    }
}
