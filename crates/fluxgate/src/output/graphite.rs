//! The Graphite output: forwards to carbon-cache / carbon-relay clusters over persistent TCP
//! connections, in plaintext or pickle, placing each metric as carbon or carbon-c-relay would.
//!
//! Shape: the pipeline hands over chunks of canonical plaintext (`path value ts\n`); the
//! output places each line on its destination(s) by the cluster's hash and queues it in that
//! destination's bounded queue; one task per destination keeps a connection, writes batches
//! and reconnects with backoff. A destination's queue outlives its connections, so a carbon
//! restart costs a reconnect, not data. Because carbon's protocols have no acknowledgements,
//! the last `replay_points` written on a connection that then broke are written again after
//! the reconnect: carbon keeps one value per timestamp, so a repeat is harmless where a loss
//! would not be.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use graphite_pickle::FrameEncoder;
use prometheus::{Histogram, IntCounter, IntGauge};
use tokio::{io::AsyncWriteExt, net::TcpStream, task::JoinSet};
use tracing::info;

use crate::{
    cluster::{Cluster, Destination},
    config::{GraphiteOutputConfig, GraphiteProtocol},
    metrics::{Metrics, RateLimit},
    queue::{PointQueue, Push, Weighted},
    warn_limited,
};

/// Plaintext lines bound for one destination.
#[derive(Debug)]
struct Entry {
    body: Bytes,
    points: usize,
}

impl Weighted for Entry {
    fn points(&self) -> usize {
        self.points
    }
}

#[derive(Debug)]
struct DestCtx {
    output: String,
    destination: Destination,
    label: String,
    queue: PointQueue<Entry>,
    up: AtomicBool,
    up_gauge: IntGauge,
    cfg: GraphiteOutputConfig,
    sent: IntCounter,
    retries: IntCounter,
    duration: Histogram,
    metrics: Metrics,
    log_limit: RateLimit,
}

#[derive(Debug)]
struct Inner {
    cfg: GraphiteOutputConfig,
    cluster: Cluster,
    dests: Vec<Arc<DestCtx>>,
    metrics: Metrics,
    log_limit: RateLimit,
}

/// Handle to a running Graphite output.
#[derive(Debug, Clone)]
pub struct GraphiteOutput {
    inner: Arc<Inner>,
}

impl GraphiteOutput {
    pub fn new(
        cfg: GraphiteOutputConfig,
        metrics: &Metrics,
        log_interval: Duration,
    ) -> Result<Self, String> {
        let destinations = cfg
            .destinations
            .iter()
            .map(|d| {
                d.parse::<Destination>()
                    .map_err(|e| format!("destination {d:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = Cluster::new(
            cfg.cluster,
            destinations.clone(),
            cfg.replication,
            cfg.diverse_replicas,
        )
        .map_err(|e| e.to_string())?;
        let name = cfg.name.as_str();
        let dests = destinations
            .into_iter()
            .map(|destination| {
                let label = destination.to_string();
                Arc::new(DestCtx {
                    output: cfg.name.clone(),
                    queue: PointQueue::new(
                        cfg.queue_points,
                        metrics.queue_points.with_label_values(&[name]),
                    ),
                    up: AtomicBool::new(false),
                    up_gauge: metrics.destination_up.with_label_values(&[name, &label]),
                    sent: metrics.sent_points.with_label_values(&[name]),
                    retries: metrics.retries.with_label_values(&[name]),
                    duration: metrics.batch_duration.with_label_values(&[name]),
                    metrics: metrics.clone(),
                    log_limit: RateLimit::new(log_interval),
                    cfg: cfg.clone(),
                    destination,
                    label,
                })
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                cluster,
                dests,
                metrics: metrics.clone(),
                log_limit: RateLimit::new(log_interval),
                cfg,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    pub fn config(&self) -> &GraphiteOutputConfig {
        &self.inner.cfg
    }

    pub fn start(&self, tasks: &mut JoinSet<()>) {
        for index in 0..self.inner.dests.len() {
            let inner = self.inner.clone();
            tasks.spawn(async move { destination_worker(inner, index).await });
        }
    }

    /// Places each line of `body` (canonical plaintext, `points` lines) and queues it for its
    /// destinations under the overflow policy; drops are counted. The result is the worst any
    /// destination gave.
    pub async fn push(&self, body: Bytes, points: usize) -> Push {
        self.inner.push(body, points).await
    }

    /// Counts (and logs, rate-limited) points this output could not carry.
    pub fn drop_points(&self, n: usize, reason: &str, why: &str) {
        self.inner.drop_points(n, reason, why);
    }

    pub fn close(&self) {
        for d in &self.inner.dests {
            d.queue.close();
        }
    }

    pub fn outstanding(&self) -> usize {
        self.inner.dests.iter().map(|d| d.queue.outstanding()).sum()
    }

    pub fn abandon(&self) {
        for d in &self.inner.dests {
            let n = d.queue.outstanding();
            if n > 0 {
                d.queue.release(n);
                d.drop_points(n, "shutdown", "shutdown deadline passed");
            }
        }
    }
}

impl Inner {
    /// Places each line of `body` (canonical plaintext, `points` lines) and queues it for its
    /// destinations under the overflow policy; drops are counted. The result is the worst any
    /// destination gave.
    async fn push(&self, body: Bytes, points: usize) -> Push {
        let inner = self;
        let n = inner.dests.len();
        let mut worst = Push::Accepted;
        if n == 1 || inner.cluster.sends_everything() {
            for d in &inner.dests {
                worst = worse(worst, push_to(d, body.clone(), points).await);
            }
            return worst;
        }
        let mut bufs: Vec<(Vec<u8>, usize)> = (0..n).map(|_| (Vec::new(), 0)).collect();
        let mut chosen = Vec::with_capacity(4);
        for line in body.split_inclusive(|&b| b == b'\n') {
            let end = memchr::memchr(b' ', line).unwrap_or(line.len());
            let Ok(name) = std::str::from_utf8(&line[..end]) else {
                continue;
            };
            self.place(name, &mut chosen);
            if chosen.is_empty() {
                self.drop_points(1, "no_destination", "no healthy destination");
            }
            for &i in &chosen {
                bufs[i].0.extend_from_slice(line);
                bufs[i].1 += 1;
            }
        }
        for (i, (buf, count)) in bufs.into_iter().enumerate() {
            if count > 0 {
                worst = worse(
                    worst,
                    push_to(&inner.dests[i], Bytes::from(buf), count).await,
                );
            }
        }
        worst
    }

    /// The destinations a metric name goes to now (health counts for `any_of`/`failover`).
    fn place(&self, name: &str, out: &mut Vec<usize>) {
        let dests = &self.dests;
        self.cluster
            .place_healthy(name, &|i| dests[i].up.load(Ordering::Relaxed), out);
    }

    fn drop_points(&self, n: usize, reason: &str, why: &str) {
        self.metrics
            .dropped
            .with_label_values(&[&self.cfg.name, reason])
            .inc_by(n as u64);
        warn_limited!(self.log_limit, output = %self.cfg.name, reason, points = n, "dropped points: {why}");
    }

    /// `any_of` and `failover` send a metric to whichever member is up, so the points a member
    /// that went down still holds move to the members that are up (carbon-c-relay does the
    /// same). Hashing clusters keep them: the metric's place is fixed, and a copy on another
    /// cache would split its whisper file.
    fn rehomes(&self, index: usize) -> bool {
        !self.cluster.kind().is_hashing()
            && !self.cluster.sends_everything()
            && self
                .dests
                .iter()
                .enumerate()
                .any(|(i, d)| i != index && d.up.load(Ordering::Relaxed))
    }
}

async fn push_to(d: &DestCtx, body: Bytes, points: usize) -> Push {
    let res = d.queue.push(Entry { body, points }, d.cfg.overflow).await;
    match res {
        Push::DroppedNewest(n) | Push::DroppedOldest(n) if n > 0 => {
            d.drop_points(n, "queue_full", "the destination's queue is full")
        }
        Push::Closed => d.drop_points(points, "shutdown", "shutting down"),
        _ => {}
    }
    res
}

/// Ranks push results so a batch reports its worst one: closed, refused, then accepted.
fn worse(a: Push, b: Push) -> Push {
    let rank = |p: &Push| match p {
        Push::Closed => 3,
        Push::DroppedNewest(_) => 2,
        Push::DroppedOldest(_) => 1,
        Push::Accepted => 0,
    };
    if rank(&b) > rank(&a) {
        b
    } else {
        a
    }
}

impl DestCtx {
    fn drop_points(&self, n: usize, reason: &str, why: &str) {
        self.metrics
            .dropped
            .with_label_values(&[&self.output, reason])
            .inc_by(n as u64);
        warn_limited!(self.log_limit, output = %self.output, destination = %self.label, reason, points = n, "dropped points: {why}");
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        self.up_gauge.set(i64::from(up));
    }

    fn backoff(&self, attempt: u32) -> Duration {
        super::backoff(self.cfg.retry_initial, self.cfg.retry_max, attempt)
    }

    fn send_error(&self, reason: &str) {
        self.metrics
            .send_errors
            .with_label_values(&[&self.output, reason])
            .inc();
    }
}

/// Owns one destination's connection: keeps it up whether or not there is data (`any_of`
/// and `failover` route by who is up), pops what is queued, writes it, reconnects when the
/// connection breaks, and writes again what may have been lost with it.
async fn destination_worker(inner: Arc<Inner>, index: usize) {
    let d = inner.dests[index].clone();
    let mut conn: Option<TcpStream> = None;
    // Taken from the queue, not yet written: (entry, is_replay).
    let mut pending: VecDeque<(Entry, bool)> = VecDeque::new();
    // Written on the current connection, kept for a replay if it breaks.
    let mut replay: VecDeque<Entry> = VecDeque::new();
    let mut replay_points = 0usize;
    let mut popped = Vec::new();
    let mut wire = Vec::with_capacity(256 * 1024);
    let mut attempt = 0u32;
    let encoder = FrameEncoder::new();
    loop {
        if pending.is_empty() && d.queue.is_drained() {
            break;
        }
        // A connection the peer closed (carbon restarting) is noticed before writing into it.
        if conn.as_ref().is_some_and(peer_closed) {
            conn = None;
            broken(&d, "closed by the peer", "closed");
            requeue_replay(&d, &mut pending, &mut replay, &mut replay_points);
        }
        if conn.is_none() {
            if attempt > 0 {
                d.retries.inc();
            }
            match connect(&d).await {
                Ok(c) => {
                    if attempt > 0 {
                        info!(output = %d.output, destination = %d.label, "connected");
                    }
                    attempt = 0;
                    d.set_up(true);
                    conn = Some(c);
                }
                Err(e) => {
                    d.set_up(false);
                    d.send_error("connect");
                    if inner.rehomes(index) {
                        rehome(&inner, &d, &mut pending).await;
                    }
                    let delay = d.backoff(attempt);
                    warn_limited!(d.log_limit, output = %d.output, destination = %d.label,
                        queued = d.queue.outstanding(), "cannot connect ({e}); retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    attempt = attempt.saturating_add(1);
                    continue;
                }
            }
        }
        if pending.is_empty() {
            // Idle: wake now and then to notice a peer that went away.
            tokio::select! {
                got = d.queue.pop_all(&mut popped) => {
                    if got.is_none() {
                        continue;
                    }
                    pending.extend(popped.drain(..).map(|e| (e, false)));
                }
                _ = tokio::time::sleep(IDLE_CHECK) => continue,
            }
        }
        // Write a batch of at most `batch_size` points worth of entries.
        wire.clear();
        let mut batch: Vec<(Entry, bool)> = Vec::new();
        let mut batch_points = 0;
        while let Some((e, replayed)) = pending.pop_front() {
            batch_points += e.points;
            batch.push((e, replayed));
            if batch_points >= d.cfg.batch_size {
                break;
            }
        }
        let mut oversized = 0;
        for (e, _) in &batch {
            match d.cfg.protocol {
                GraphiteProtocol::Plaintext => wire.extend_from_slice(&e.body),
                GraphiteProtocol::Pickle => {
                    let summary = encoder.encode(plaintext_points(&e.body), &mut wire);
                    oversized += summary.oversized;
                }
            }
        }
        if oversized > 0 {
            d.drop_points(
                oversized,
                "too_large",
                "a point does not fit in one pickle frame",
            );
        }
        let started = Instant::now();
        let stream = conn.as_mut().expect("connected");
        let failure = match tokio::time::timeout(d.cfg.write_timeout, stream.write_all(&wire)).await
        {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some((format!("write failed: {e}"), "write")),
            Err(_) => Some(("write timed out".to_string(), "timeout")),
        };
        match failure {
            None => {
                d.duration.observe(started.elapsed().as_secs_f64());
                for (e, replayed) in batch {
                    if !replayed {
                        d.sent.inc_by(e.points as u64);
                        d.queue.release(e.points);
                    }
                    replay_points += e.points;
                    replay.push_back(e);
                }
                while replay_points > d.cfg.replay_points {
                    match replay.pop_front() {
                        Some(old) => replay_points -= old.points,
                        None => break,
                    }
                }
            }
            Some((why, reason)) => {
                broken(&d, &why, reason);
                conn = None;
                for item in batch.into_iter().rev() {
                    pending.push_front(item);
                }
                requeue_replay(&d, &mut pending, &mut replay, &mut replay_points);
            }
        }
    }
    if let Some(mut c) = conn {
        let _ = c.shutdown().await;
    }
    d.set_up(false);
}

/// How often an idle connection is checked for a peer that went away.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Moves what a down member of an `any_of`/`failover` cluster holds to the members that are
/// up. Replays are left out: they were written once already, to this member.
async fn rehome(inner: &Inner, d: &DestCtx, pending: &mut VecDeque<(Entry, bool)>) {
    let mut moved = Vec::new();
    d.queue.take_all(&mut moved);
    let mut points = 0;
    for (e, replayed) in pending.drain(..) {
        if !replayed {
            moved.push(e);
        }
    }
    for e in moved {
        points += e.points;
        d.queue.release(e.points);
        inner.push(e.body, e.points).await;
    }
    if points > 0 {
        info!(output = %d.output, destination = %d.label, points, "destination is down: its points go to the others");
    }
}

fn broken(d: &DestCtx, why: &str, reason: &str) {
    d.set_up(false);
    d.send_error(reason);
    warn_limited!(d.log_limit, output = %d.output, destination = %d.label, "connection lost ({why}); reconnecting");
}

/// Puts what was written on a connection that broke back in front of the pending work.
fn requeue_replay(
    d: &DestCtx,
    pending: &mut VecDeque<(Entry, bool)>,
    replay: &mut VecDeque<Entry>,
    replay_points: &mut usize,
) {
    if replay.is_empty() {
        return;
    }
    info!(output = %d.output, destination = %d.label, points = *replay_points,
        "connection broke: writing the last points again after reconnecting");
    for e in replay.drain(..).rev() {
        pending.push_front((e, true));
    }
    *replay_points = 0;
}

/// Whether the peer has closed (or reset) the connection. carbon never sends anything, so
/// readable data or EOF both mean the connection is not the one we want to write into.
fn peer_closed(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 64];
    match stream.try_read(&mut probe) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

async fn connect(d: &DestCtx) -> std::io::Result<TcpStream> {
    let addr = d.destination.socket_addr();
    let stream = tokio::time::timeout(d.cfg.connect_timeout, TcpStream::connect(addr.as_str()))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The points of canonical plaintext lines, for the pickle encoder.
fn plaintext_points(body: &[u8]) -> impl Iterator<Item = (&str, f64, f64)> {
    body.split(|&b| b == b'\n').filter_map(|line| {
        let s = graphite_plaintext::parse_line(line).ok()?;
        let ts = match s.timestamp {
            graphite_plaintext::Timestamp::Seconds(t) => t,
            graphite_plaintext::Timestamp::Now => return None,
        };
        Some((s.path, ts, s.value))
    })
}
