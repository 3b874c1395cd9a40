//! The InfluxDB output: batches line protocol per destination and writes it to an InfluxDB
//! 1.x (`/write`) or 2.x (`/api/v2/write`) upstream.
//!
//! Shape: listeners push [`Chunk`]s (line protocol with nanosecond timestamps) into a bounded
//! [`PointQueue`]; one worker task cuts them into batches per destination and per *lane*; each
//! lane is a task that sends one request at a time and retries it until it is delivered.
//! Points go to a lane by a hash of their series key, so `max_in_flight` requests run in
//! parallel while writes to one series stay in order: a later value for the same series and
//! time still wins, exactly as if the sender wrote directly.

use std::{
    collections::HashMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use prometheus::{Histogram, IntCounter};
use reqwest::{header, StatusCode};
use tokio::{sync::mpsc, task::JoinSet};

use crate::{
    config::{InfluxApi, InfluxOutputConfig},
    metrics::{Metrics, RateLimit},
    queue::{PointQueue, Push, Weighted},
    warn_limited,
};

/// Where a point is written: a database and retention policy. A v2 upstream receives it as
/// bucket `db` or `db/rp`, the DBRP naming InfluxDB itself uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub db: Arc<str>,
    pub rp: Arc<str>,
}

impl Destination {
    pub fn new(db: &str, rp: &str) -> Self {
        Self {
            db: db.into(),
            rp: rp.into(),
        }
    }

    /// A v2 bucket name maps to db and rp on its first `/`, as InfluxDB 1.8's v2 API does.
    pub fn from_bucket(bucket: &str) -> Self {
        match bucket.split_once('/') {
            Some((db, rp)) => Self::new(db, rp),
            None => Self::new(bucket, ""),
        }
    }

    fn bucket(&self) -> String {
        if self.rp.is_empty() {
            self.db.to_string()
        } else {
            format!("{}/{}", self.db, self.rp)
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rp.is_empty() {
            f.write_str(&self.db)
        } else {
            write!(f, "{}/{}", self.db, self.rp)
        }
    }
}

/// Whose destination a chunk goes to.
#[derive(Debug, Clone)]
pub enum Target {
    /// Graphite-origin points: the output's own `database` / `retention_policy` / `bucket`.
    Default,
    /// An HTTP write keeps the db/rp (or bucket) it named.
    Explicit(Destination),
}

/// Line protocol, one point per line, each ending in `\n` and carrying a nanosecond
/// timestamp (a buffered point must not take the time of a late retry). `Bytes` so that
/// one translated chunk fans out to several outputs without a copy.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub target: Target,
    pub body: Bytes,
    pub points: usize,
}

#[derive(Debug)]
struct Entry {
    dest: Destination,
    body: Bytes,
    points: usize,
}

impl Weighted for Entry {
    fn points(&self) -> usize {
        self.points
    }
}

#[derive(Debug)]
struct Ctx {
    cfg: InfluxOutputConfig,
    client: reqwest::Client,
    write_url: reqwest::Url,
    default_dest: Destination,
    queue: PointQueue<Entry>,
    sent: IntCounter,
    retries: IntCounter,
    duration: Histogram,
    metrics: Metrics,
    log_limit: RateLimit,
}

/// Handle to a running InfluxDB output.
#[derive(Debug, Clone)]
pub struct InfluxOutput {
    ctx: Arc<Ctx>,
}

impl InfluxOutput {
    /// Builds the output; [`InfluxOutput::start`] spawns its tasks.
    pub fn new(
        cfg: InfluxOutputConfig,
        metrics: &Metrics,
        log_interval: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(cfg.max_in_flight)
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_nodelay(true)
            .user_agent(concat!("fluxgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base = reqwest::Url::parse(&cfg.url).expect("validated url");
        let path = match cfg.api {
            InfluxApi::V1 => "write",
            InfluxApi::V2 => "api/v2/write",
        };
        let write_url = join_path(&base, path);
        let default_dest = if cfg.api == InfluxApi::V2 && !cfg.bucket.is_empty() {
            Destination::from_bucket(&cfg.bucket)
        } else {
            Destination::new(&cfg.database, &cfg.retention_policy)
        };
        let name = cfg.name.as_str();
        let ctx = Ctx {
            queue: PointQueue::new(
                cfg.queue_points,
                metrics.queue_points.with_label_values(&[name]),
            ),
            sent: metrics.sent_points.with_label_values(&[name]),
            retries: metrics.retries.with_label_values(&[name]),
            duration: metrics.batch_duration.with_label_values(&[name]),
            metrics: metrics.clone(),
            log_limit: RateLimit::new(log_interval),
            client,
            write_url,
            default_dest,
            cfg,
        };
        Ok(Self { ctx: Arc::new(ctx) })
    }

    pub fn name(&self) -> &str {
        &self.ctx.cfg.name
    }

    pub fn config(&self) -> &InfluxOutputConfig {
        &self.ctx.cfg
    }

    /// The upstream's base URL (for proxying `/query`).
    pub fn base_url(&self) -> &str {
        &self.ctx.cfg.url
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.ctx.client
    }

    /// The destination a chunk resolves to.
    fn destination(&self, target: &Target) -> Destination {
        match target {
            Target::Default => self.ctx.default_dest.clone(),
            Target::Explicit(d) => d.clone(),
        }
    }

    /// Spawns the worker and lane tasks into `tasks`; they end once [`InfluxOutput::close`]
    /// was called and everything queued has been delivered.
    pub fn start(&self, tasks: &mut JoinSet<()>) {
        let lanes = self.ctx.cfg.max_in_flight;
        let mut senders = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            let (tx, rx) = mpsc::channel::<Request>(1);
            senders.push(tx);
            let ctx = self.ctx.clone();
            tasks.spawn(async move { lane(ctx, rx).await });
        }
        let ctx = self.ctx.clone();
        tasks.spawn(async move { worker(ctx, senders).await });
    }

    /// Queues a chunk under the output's overflow policy; drops are counted here.
    pub async fn push(&self, chunk: Chunk) -> Push {
        let policy = self.ctx.cfg.overflow;
        let entry = Entry {
            dest: self.destination(&chunk.target),
            body: chunk.body,
            points: chunk.points,
        };
        let res = self.ctx.queue.push(entry, policy).await;
        match res {
            Push::DroppedNewest(n) | Push::DroppedOldest(n) if n > 0 => {
                self.ctx.drop_points(n, "queue_full", "the queue is full");
            }
            Push::Closed => self
                .ctx
                .drop_points(chunk.points, "shutdown", "shutting down"),
            _ => {}
        }
        res
    }

    pub fn close(&self) {
        self.ctx.queue.close();
    }

    /// Counts (and logs, rate-limited) points this output could not carry.
    pub fn drop_points(&self, n: usize, reason: &str, why: &str) {
        self.ctx.drop_points(n, reason, why);
    }

    /// Points accepted and not yet delivered.
    pub fn outstanding(&self) -> usize {
        self.ctx.queue.outstanding()
    }

    /// Counts whatever is still undelivered as dropped (shutdown deadline passed).
    pub fn abandon(&self) {
        let n = self.ctx.queue.outstanding();
        if n > 0 {
            self.ctx.queue.release(n);
            self.ctx
                .drop_points(n, "shutdown", "shutdown deadline passed");
        }
    }
}

fn join_path(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url
}

/// One request's worth of points for one destination.
#[derive(Debug)]
struct Request {
    dest: Destination,
    body: Vec<u8>,
    points: usize,
}

#[derive(Debug, Default)]
struct LaneBuf {
    body: Vec<u8>,
    points: usize,
    since: Option<Instant>,
}

async fn worker(ctx: Arc<Ctx>, lanes: Vec<mpsc::Sender<Request>>) {
    let n_lanes = lanes.len();
    let batch_size = ctx.cfg.batch_size;
    let flush_every = ctx.cfg.flush_interval;
    let mut pending: HashMap<Destination, Vec<LaneBuf>> = HashMap::new();
    let mut entries = Vec::new();
    let mut tick = tokio::time::interval(
        flush_every
            .min(Duration::from_millis(100))
            .max(Duration::from_millis(5)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            got = ctx.queue.pop_all(&mut entries) => {
                if got.is_none() {
                    break;
                }
                for entry in entries.drain(..) {
                    let bufs = pending
                        .entry(entry.dest.clone())
                        .or_insert_with(|| (0..n_lanes).map(|_| LaneBuf::default()).collect());
                    for line in lines(&entry.body) {
                        let lane = if n_lanes == 1 { 0 } else { lane_of(line, n_lanes) };
                        let buf = &mut bufs[lane];
                        if buf.points == 0 {
                            buf.since = Some(Instant::now());
                            buf.body.reserve(batch_size * (line.len() + 1));
                        }
                        buf.body.extend_from_slice(line);
                        buf.body.push(b'\n');
                        buf.points += 1;
                        if buf.points >= batch_size {
                            let req = take(&entry.dest, buf);
                            if lanes[lane].send(req).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            _ = tick.tick() => {
                for (dest, bufs) in pending.iter_mut() {
                    for (lane, buf) in bufs.iter_mut().enumerate() {
                        if buf.since.is_some_and(|t| t.elapsed() >= flush_every) {
                            let req = take(dest, buf);
                            if lanes[lane].send(req).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                pending.retain(|_, bufs| bufs.iter().any(|b| b.points > 0));
            }
        }
    }
    // Closed: everything still batching goes out now.
    for (dest, bufs) in pending.iter_mut() {
        for (lane, buf) in bufs.iter_mut().enumerate() {
            if buf.points > 0 {
                let req = take(dest, buf);
                if lanes[lane].send(req).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn take(dest: &Destination, buf: &mut LaneBuf) -> Request {
    buf.since = None;
    Request {
        dest: dest.clone(),
        body: std::mem::take(&mut buf.body),
        points: std::mem::take(&mut buf.points),
    }
}

/// The points of a chunk, without their `\n`. Split as InfluxDB splits: a string value may
/// hold a newline, and cutting there would tear the point in two.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    line_protocol::split_lines(body).filter(|l| !l.is_empty())
}

/// Lane of a line-protocol line: a hash of its series key (everything before the first
/// unescaped space), so one series always takes the same lane.
fn lane_of(line: &[u8], lanes: usize) -> usize {
    let mut end = line.len();
    let mut from = 0;
    while let Some(i) = memchr::memchr(b' ', &line[from..]) {
        let at = from + i;
        let backslashes = line[..at].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            end = at;
            break;
        }
        from = at + 1;
    }
    // FNV-1a: short keys, no allocation, good enough spread for a handful of lanes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &line[..end] {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % lanes as u64) as usize
}

async fn lane(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Request>) {
    while let Some(req) = rx.recv().await {
        ctx.deliver(req).await;
    }
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    /// The upstream refused the content; retrying cannot help.
    Rejected {
        reason: &'static str,
        dropped: usize,
    },
    TooLarge,
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

impl Ctx {
    fn drop_points(&self, n: usize, reason: &str, why: &str) {
        self.metrics
            .dropped
            .with_label_values(&[&self.cfg.name, reason])
            .inc_by(n as u64);
        warn_limited!(
            self.log_limit,
            output = %self.cfg.name,
            reason,
            points = n,
            "dropped points: {why}"
        );
    }

    fn send_error(&self, reason: &str) {
        self.metrics
            .send_errors
            .with_label_values(&[&self.cfg.name, reason])
            .inc();
    }

    /// Delivers a request, retrying what can be retried and splitting what is too large,
    /// until every point is written or refused. Capacity goes back to the queue as points
    /// leave.
    async fn deliver(&self, req: Request) {
        let mut work = vec![req];
        while let Some(req) = work.pop() {
            let mut attempt = 0u32;
            loop {
                if attempt > 0 {
                    self.retries.inc();
                }
                match self.attempt(&req).await {
                    Attempt::Delivered => {
                        self.sent.inc_by(req.points as u64);
                        self.queue.release(req.points);
                        break;
                    }
                    Attempt::Rejected { reason, dropped } => {
                        let dropped = dropped.min(req.points);
                        self.sent.inc_by((req.points - dropped) as u64);
                        self.metrics
                            .dropped
                            .with_label_values(&[&self.cfg.name, reason])
                            .inc_by(dropped as u64);
                        self.queue.release(req.points);
                        break;
                    }
                    Attempt::TooLarge => {
                        if req.points <= 1 {
                            self.metrics
                                .dropped
                                .with_label_values(&[&self.cfg.name, "too_large"])
                                .inc_by(req.points as u64);
                            self.queue.release(req.points);
                        } else {
                            let (a, b) = split(req);
                            work.push(b);
                            work.push(a);
                        }
                        break;
                    }
                    Attempt::Retry { reason, after } => {
                        let delay = after.unwrap_or_else(|| self.backoff(attempt));
                        warn_limited!(
                            self.log_limit,
                            output = %self.cfg.name,
                            destination = %req.dest,
                            points = req.points,
                            "write failed ({reason}); retrying in {delay:?}"
                        );
                        tokio::time::sleep(delay).await;
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        super::backoff(self.cfg.retry_initial, self.cfg.retry_max, attempt)
    }

    async fn attempt(&self, req: &Request) -> Attempt {
        let mut url = self.write_url.clone();
        {
            let mut q = url.query_pairs_mut();
            match self.cfg.api {
                InfluxApi::V1 => {
                    q.append_pair("db", &req.dest.db);
                    if !req.dest.rp.is_empty() {
                        q.append_pair("rp", &req.dest.rp);
                    }
                    q.append_pair("precision", "n");
                }
                InfluxApi::V2 => {
                    q.append_pair("org", &self.cfg.org);
                    q.append_pair("bucket", &req.dest.bucket());
                    q.append_pair("precision", "ns");
                }
            }
        }
        let mut builder = self
            .client
            .post(url)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
        match self.cfg.api {
            InfluxApi::V1 if !self.cfg.username.is_empty() => {
                builder = builder.basic_auth(&self.cfg.username, Some(&self.cfg.password));
            }
            InfluxApi::V2 if !self.cfg.token.is_empty() => {
                builder =
                    builder.header(header::AUTHORIZATION, format!("Token {}", self.cfg.token));
            }
            _ => {}
        }
        let body = if self.cfg.gzip {
            builder = builder.header(header::CONTENT_ENCODING, "gzip");
            gzip(&req.body)
        } else {
            req.body.clone()
        };
        let started = Instant::now();
        let resp = match builder.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                let reason = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "io"
                };
                self.send_error(reason);
                return Attempt::Retry {
                    reason: format!("{reason}: {}", error_chain(&e)),
                    after: None,
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            self.duration.observe(started.elapsed().as_secs_f64());
            return Attempt::Delivered;
        }
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(3600)));
        let message = upstream_message(resp).await;
        let code = status.as_u16();
        self.send_error(&format!("http_{code}"));
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => {
                warn_limited!(
                    self.log_limit,
                    output = %self.cfg.name,
                    points = req.points,
                    "upstream answered 413 ({message}); splitting the batch"
                );
                Attempt::TooLarge
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => Attempt::Retry {
                reason: format!("HTTP {code}: {message}"),
                after: retry_after,
            },
            s if s.is_server_error() => Attempt::Retry {
                reason: format!("HTTP {code}: {message}"),
                after: retry_after,
            },
            _ => {
                let (reason, dropped) = match code {
                    400 => match partial_write_dropped(&message) {
                        Some(n) => ("partial_write", n),
                        None => ("rejected", req.points),
                    },
                    401 => ("unauthorized", req.points),
                    403 => ("forbidden", req.points),
                    404 => ("not_found", req.points),
                    422 => ("unprocessable", req.points),
                    _ => ("rejected", req.points),
                };
                warn_limited!(
                    self.log_limit,
                    output = %self.cfg.name,
                    destination = %req.dest,
                    points = dropped,
                    "upstream refused the write, not retrying: HTTP {code}: {message}"
                );
                Attempt::Rejected { reason, dropped }
            }
        }
    }
}

/// Splits a request in two halves on a point boundary (for a 413).
fn split(req: Request) -> (Request, Request) {
    let half = req.points / 2;
    let mut at = 0;
    for line in lines(&req.body).take(half) {
        // Offset just past this point's `\n`.
        at = line.as_ptr() as usize - req.body.as_ptr() as usize + line.len() + 1;
    }
    let at = at.min(req.body.len());
    let second = req.body[at..].to_vec();
    let mut first = req.body;
    first.truncate(at);
    (
        Request {
            dest: req.dest.clone(),
            body: first,
            points: half,
        },
        Request {
            dest: req.dest,
            body: second,
            points: req.points - half,
        },
    )
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// The upstream's error text: InfluxDB's `{"error": ...}` (v1) or `{"message": ...}` (v2),
/// else the raw body, cut to a log-friendly length.
async fn upstream_message(resp: reqwest::Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    let msg = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("error")
                .or_else(|| v.get("message"))
                .and_then(|m| m.as_str().map(str::to_owned))
        })
        .unwrap_or(text);
    let msg = msg.trim();
    match msg.char_indices().nth(512) {
        Some((i, _)) => format!("{}…", &msg[..i]),
        None => msg.to_string(),
    }
}

/// How many points InfluxDB 1.x's `partial write: ... dropped=N` lost; the others were
/// written. 1.x counts only what its storage refused in `dropped=`: lines it could not parse
/// are listed as `unable to parse '...'` and reported as `dropped=0`, so those are counted
/// from the message.
fn partial_write_dropped(message: &str) -> Option<usize> {
    if !message.starts_with("partial write") {
        return None;
    }
    let at = message.rfind("dropped=")?;
    let stored: usize = message[at + 8..]
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let unparsable = message.matches("unable to parse '").count();
    Some(stored + unparsable)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_map_to_db_and_rp() {
        assert_eq!(
            Destination::from_bucket("db/rp"),
            Destination::new("db", "rp")
        );
        assert_eq!(Destination::from_bucket("db"), Destination::new("db", ""));
        assert_eq!(Destination::new("db", "rp").bucket(), "db/rp");
        assert_eq!(Destination::new("db", "").bucket(), "db");
    }

    #[test]
    fn one_series_always_takes_one_lane() {
        let a = lane_of(b"cpu,host=a value=1 1", 4);
        assert_eq!(a, lane_of(b"cpu,host=a value=2 2", 4));
        assert_eq!(
            lane_of(b"my\\ cpu,host=a\\ b value=1 1", 4),
            lane_of(b"my\\ cpu,host=a\\ b other=7 5", 4)
        );
        let spread: std::collections::HashSet<_> = (0..100)
            .map(|i| lane_of(format!("cpu,host=h{i} value=1 1").as_bytes(), 4))
            .collect();
        assert_eq!(spread.len(), 4);
    }

    #[test]
    fn partial_write_counts_dropped_points() {
        assert_eq!(
            partial_write_dropped(
                "partial write: field type conflict: input field \"value\" on measurement \"m\" \
                 is type integer, already exists as type float dropped=2"
            ),
            Some(2)
        );
        assert_eq!(
            partial_write_dropped("unable to parse 'x': missing fields"),
            None
        );
    }

    #[test]
    fn split_halves_on_line_boundaries() {
        let req = Request {
            dest: Destination::new("d", ""),
            body: b"a v=1 1\nb v=2 2\nc v=3 3\n".to_vec(),
            points: 3,
        };
        let (a, b) = split(req);
        assert_eq!((a.points, a.body.as_slice()), (1, &b"a v=1 1\n"[..]));
        assert_eq!(
            (b.points, b.body.as_slice()),
            (2, &b"b v=2 2\nc v=3 3\n"[..])
        );
    }

    #[test]
    fn write_url_keeps_a_base_path() {
        let base = reqwest::Url::parse("http://h:1/influx/").unwrap();
        assert_eq!(
            join_path(&base, "write").as_str(),
            "http://h:1/influx/write"
        );
        let base = reqwest::Url::parse("http://h:1").unwrap();
        assert_eq!(
            join_path(&base, "api/v2/write").as_str(),
            "http://h:1/api/v2/write"
        );
    }
}
