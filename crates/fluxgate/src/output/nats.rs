//! `[[outputs.nats]]`: publishes batches to a NATS JetStream stream, the durable link between
//! fluxgate edges and the deliverers that read the stream (`[listeners.nats]`).
//!
//! Shape (as the other request/response outputs): the pipeline's chunks are queued under one
//! budget (`queue_points`, `queue_bytes`); a worker cuts them into messages, one per subject
//! and target, of at most `batch_size` points and `max_message_bytes` (never splitting a
//! line), after `flush_interval` at the latest; each message is published with a JetStream
//! acknowledgement, at most `max_in_flight` at once, and counts as sent only once the stream
//! acknowledged it. A failed publish is retried with backoff for at most `max_retry_time`
//! (then dropped and counted, `retry_budget`). A stream at its limits (`max_bytes` with the
//! `new` discard policy) refuses the publish: with `overflow = "block"` the batch is retried,
//! the queue fills and senders are pushed back; with a drop policy the batch is dropped and
//! counted (`stream_full`).
//!
//! The subject is the `subject` template with `{db}`, `{rp}`, `{measurement}` and
//! `{partition}` (a hash of the series, `0..partitions`) filled in, so deliverers can split
//! the stream by subject; see [`Subjects`].

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{stream::FuturesUnordered, StreamExt};
use prometheus::{Histogram, IntCounter};
use serde::Deserialize;
use tokio::task::JoinSet;
use tracing::{error, info};

use super::{Chunk, Form, Grant, Output, Reservation, Shed, Slot, Target};
use crate::{
    config::{BufferKind, BufferSettings, Overflow},
    metrics::{Metrics, RateLimit},
    nats::{Connect, Format},
    queue::{Acquire, Budget, EntryQueue, Permit, Waiter},
    translate::influx::{InfluxToGraphite, InfluxToGraphiteConfig},
    warn_limited,
};

/// Where a stream the output creates keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    #[default]
    File,
    Memory,
}

/// When a stream the output creates lets go of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Once a consumer acknowledged them: the stream holds the backlog, and "full" means
    /// deliverers are behind. One consumer (one group of deliverers) per subject.
    #[default]
    WorkQueue,
    /// Once every consumer acknowledged them (several groups); messages published while no
    /// consumer exists are not kept.
    Interest,
    /// By `max_bytes` and `max_age` only (a replayable log).
    Limits,
}

/// `[[outputs.nats]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsOutputConfig {
    pub name: String,
    /// `nats://host:port` (or `tls://`); the client fails over between them.
    pub servers: Vec<String>,
    /// The stream. Created when missing (subjects `subject_prefix.>`, `replicas`,
    /// `max_bytes`, discard `new`); an existing stream is used as it is.
    pub stream: String,
    /// Subject template: `{db}`, `{rp}`, `{measurement}`, `{partition}`.
    pub subject: String,
    /// `{partition}` is a hash of the series (measurement and tags, or the Graphite path)
    /// modulo this.
    pub partitions: u32,
    /// `line_protocol` or `graphite` (InfluxDB points become paths by `template`).
    pub format: Format,
    /// Replicas of a stream the output creates (1, 3 or 5 on a JetStream cluster).
    pub replicas: usize,
    /// Subjects of a stream the output creates; none: the subject's first token and `>`
    /// (`fluxgate.>` for `fluxgate.{db}`), so outputs that share a stream share its subjects.
    pub stream_subjects: Vec<String>,
    /// Size limit of a stream the output creates; 0: none.
    pub max_bytes: i64,
    /// Storage of a stream the output creates.
    pub storage: Storage,
    /// Retention of a stream the output creates.
    pub retention: Retention,
    /// Age after which a stream the output creates drops messages; 0s: never.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Points per message.
    pub batch_size: usize,
    /// A message is cut before its body would pass this (the server's `max_payload`, 1 MiB
    /// by default, bounds it too).
    pub max_message_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Publishes awaiting the stream's acknowledgement at once.
    pub max_in_flight: usize,
    pub queue_points: usize,
    pub queue_bytes: usize,
    pub overflow: Overflow,
    /// `memory` or `disk` (a log under `[gateway] data_dir` that survives restarts and
    /// crashes until the stream acknowledged it).
    pub buffer: BufferKind,
    /// Largest size of the disk buffer; then the overflow policy applies.
    pub max_buffer_bytes: u64,
    /// Points per second replayed from the disk buffer after a restart (0: no limit).
    pub replay_rate: u64,
    /// How long one publish waits for its acknowledgement.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    #[serde(with = "humantime_serde")]
    pub max_retry_time: Duration,
    pub username: String,
    /// Also from `FLUXGATE_<NAME>_PASSWORD`.
    pub password: String,
    /// Also from `FLUXGATE_<NAME>_TOKEN`.
    pub token: String,
    /// An nkey seed; also from `FLUXGATE_<NAME>_NKEY`.
    pub nkey: String,
    pub credentials_file: Option<String>,
    pub tls: bool,
    pub tls_ca: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// With `format = "graphite"`: how InfluxDB points become paths (as `[[outputs.graphite]]`).
    pub template: String,
    pub templates: Vec<String>,
    pub prefix: String,
    pub tag_support: bool,
    pub separator: String,
    pub bool_mode: crate::translate::influx::BoolMode,
    pub name_encoding: metric_name::Encoding,
    pub encode_slash: bool,
}

impl Default for NatsOutputConfig {
    fn default() -> Self {
        let i2g = InfluxToGraphiteConfig::default();
        Self {
            name: String::new(),
            servers: vec!["nats://127.0.0.1:4222".into()],
            stream: "fluxgate".into(),
            subject: "fluxgate.{db}".into(),
            partitions: 16,
            format: Format::LineProtocol,
            replicas: 1,
            stream_subjects: Vec::new(),
            max_bytes: 0,
            storage: Storage::File,
            retention: Retention::WorkQueue,
            max_age: Duration::ZERO,
            batch_size: 5000,
            max_message_bytes: 1 << 20,
            flush_interval: Duration::from_millis(200),
            max_in_flight: 64,
            queue_points: 1_000_000,
            queue_bytes: 128 << 20,
            overflow: Overflow::Block,
            buffer: BufferKind::Memory,
            max_buffer_bytes: 1 << 30,
            replay_rate: 0,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            max_retry_time: Duration::from_secs(3600),
            username: String::new(),
            password: String::new(),
            token: String::new(),
            nkey: String::new(),
            credentials_file: None,
            tls: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            template: i2g.template,
            templates: i2g.templates,
            prefix: i2g.prefix,
            tag_support: i2g.tag_support,
            separator: i2g.separator,
            bool_mode: i2g.bool_mode,
            name_encoding: i2g.name_encoding,
            encode_slash: i2g.encode_slash,
        }
    }
}

impl NatsOutputConfig {
    pub fn connect(&self) -> Connect {
        Connect {
            name: format!("fluxgate output {}", self.name),
            servers: self.servers.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            nkey: self.nkey.clone(),
            credentials_file: self.credentials_file.clone(),
            tls: self.tls,
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            connect_timeout: self.connect_timeout,
        }
    }

    pub fn to_graphite_config(&self) -> InfluxToGraphiteConfig {
        InfluxToGraphiteConfig {
            template: self.template.clone(),
            templates: self.templates.clone(),
            prefix: self.prefix.clone(),
            tag_support: self.tag_support,
            separator: self.separator.clone(),
            bool_mode: self.bool_mode,
            name_encoding: self.name_encoding,
            encode_slash: self.encode_slash,
            // Paths as [[outputs.graphite]] makes them by default (sanitize = "encode").
            ..InfluxToGraphiteConfig::default()
        }
    }

    /// What is wrong with the section, if anything.
    pub fn validate(&self) -> Result<(), String> {
        self.connect().validate()?;
        if self.stream.is_empty() || self.stream.contains(['.', ' ', '*', '>', '\t']) {
            return Err("stream must be a name without '.', '*', '>' or spaces".into());
        }
        Subjects::new(&self.subject, self.partitions)?;
        if self.batch_size == 0 || self.max_in_flight == 0 || self.queue_points == 0 {
            return Err("batch_size, max_in_flight and queue_points must be at least 1".into());
        }
        if self.queue_points < self.batch_size {
            return Err("queue_points must be at least batch_size".into());
        }
        if self.queue_bytes < 1 << 16 || self.max_message_bytes < 1024 {
            return Err(
                "queue_bytes must be at least 65536, max_message_bytes at least 1024".into(),
            );
        }
        if !matches!(self.replicas, 1..=5) {
            return Err("replicas must be 1 to 5".into());
        }
        if self.max_bytes < 0 {
            return Err("max_bytes must not be negative".into());
        }
        if self.flush_interval.is_zero() || self.timeout.is_zero() || self.max_retry_time.is_zero()
        {
            return Err(
                "flush_interval, timeout and max_retry_time must be greater than zero".into(),
            );
        }
        if self.format == Format::Graphite {
            InfluxToGraphite::new(&self.to_graphite_config()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings {
            kind: self.buffer,
            max_bytes: self.max_buffer_bytes,
            replay_rate: self.replay_rate,
            sync_interval: self.flush_interval,
            overflow: self.overflow,
        }
    }

    /// The subjects a stream the output creates takes: `stream_subjects`, or the subject's
    /// first token and `>`.
    pub fn stream_subjects(&self) -> Vec<String> {
        if !self.stream_subjects.is_empty() {
            return self.stream_subjects.clone();
        }
        match self.subject.split('.').next() {
            Some(head) if !head.contains('{') => vec![format!("{head}.>")],
            _ => vec![">".into()],
        }
    }
}

/// The subject template, compiled: which placeholder each token is.
#[derive(Debug, Clone)]
pub struct Subjects {
    parts: Vec<Part>,
    partitions: u32,
    /// Whether any part depends on the point itself (not only on the chunk's target).
    per_point: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Db,
    Rp,
    Measurement,
    Partition,
}

impl Subjects {
    pub fn new(template: &str, partitions: u32) -> Result<Self, String> {
        if template.is_empty() {
            return Err("subject must not be empty".into());
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("subject {template:?}: unclosed '{{'"))?;
            let part = match &rest[open + 1..open + close] {
                "db" => Part::Db,
                "rp" => Part::Rp,
                "measurement" => Part::Measurement,
                "partition" => Part::Partition,
                other => {
                    return Err(format!(
                        "subject {template:?}: unknown placeholder {{{other}}} (db, rp, measurement, partition)"
                    ))
                }
            };
            parts.push(part);
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        for p in &parts {
            if let Part::Text(t) = p {
                if t.contains(['*', '>', ' ', '\t', '\r', '\n']) || t.contains("..") {
                    return Err(format!(
                        "subject {template:?}: no wildcards, spaces or empty tokens"
                    ));
                }
            }
        }
        if template.starts_with('.') || template.ends_with('.') {
            return Err(format!("subject {template:?}: no empty tokens"));
        }
        if parts.contains(&Part::Partition) && partitions == 0 {
            return Err("partitions must be at least 1".into());
        }
        let per_point = parts
            .iter()
            .any(|p| matches!(p, Part::Measurement | Part::Partition));
        Ok(Self {
            parts,
            partitions,
            per_point,
        })
    }

    /// Whether lines of one chunk can go to different subjects.
    pub fn per_point(&self) -> bool {
        self.per_point
    }

    /// The subject of a point: `series` is its series (line protocol up to the first
    /// unescaped space, or the Graphite path) and `measurement` its measurement (for
    /// Graphite, the path's first node).
    pub fn subject(&self, target: &Target, measurement: &str, series: &[u8]) -> String {
        let mut s = String::with_capacity(64);
        for p in &self.parts {
            match p {
                Part::Text(t) => s.push_str(t),
                Part::Db => push_token(&mut s, target_db(target)),
                Part::Rp => push_token(&mut s, target_rp(target)),
                Part::Measurement => push_token(&mut s, measurement),
                Part::Partition => {
                    let h = fnv1a(series) % u64::from(self.partitions.max(1));
                    s.push_str(itoa::Buffer::new().format(h));
                }
            }
        }
        s
    }
}

fn target_db(t: &Target) -> &str {
    match t {
        Target::Default => "default",
        Target::Explicit(d) => &d.db,
    }
}

fn target_rp(t: &Target) -> &str {
    match t {
        Target::Explicit(d) if !d.rp.is_empty() => &d.rp,
        _ => "default",
    }
}

/// One subject token from a name: characters a subject cannot hold in a token (`.`, `*`,
/// `>`, whitespace) become `_`; an empty name becomes `_`.
fn push_token(s: &mut String, value: &str) {
    if value.is_empty() {
        s.push('_');
        return;
    }
    for c in value.chars() {
        s.push(match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        });
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The measurement and series of one line in `format`.
pub fn line_key(format: Format, line: &[u8]) -> (String, &[u8]) {
    match format {
        Format::LineProtocol => {
            let series_end = unescaped(line, |b| b == b' ').unwrap_or(line.len());
            let series = &line[..series_end];
            let m_end = unescaped(series, |b| b == b',').unwrap_or(series.len());
            let m = String::from_utf8_lossy(&series[..m_end]).replace('\\', "");
            (m, series)
        }
        Format::Graphite => {
            let path_end = memchr::memchr(b' ', line).unwrap_or(line.len());
            let path = &line[..path_end];
            let name_end = memchr::memchr2(b'.', b';', path).unwrap_or(path.len());
            (
                String::from_utf8_lossy(&path[..name_end]).into_owned(),
                path,
            )
        }
    }
}

/// The first byte matching `is` that is not escaped by a backslash.
fn unescaped(s: &[u8], is: impl Fn(u8) -> bool) -> Option<usize> {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            i += 2;
            continue;
        }
        if is(s[i]) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Points queued for the worker, with the capacity they hold.
#[derive(Debug)]
struct Entry {
    target: Target,
    body: Bytes,
    points: usize,
    permit: Permit,
}

/// A message being filled: one subject and target.
#[derive(Debug)]
struct Pending {
    target: Target,
    body: Vec<u8>,
    points: usize,
    permit: Permit,
    since: Instant,
}

#[derive(Debug)]
struct Inner {
    cfg: NatsOutputConfig,
    form: Form,
    subjects: Subjects,
    budget: Budget,
    queue: EntryQueue<Entry>,
    successor: Mutex<Option<Arc<dyn Output>>>,
    abandoned: AtomicBool,
    /// Since when publishes have been failing (one line down, one line back).
    down_since: Mutex<Option<Instant>>,
    /// Per-process prefix and counter of `Nats-Msg-Id`.
    id_prefix: u64,
    next_id: AtomicU64,
    sent: IntCounter,
    retries: IntCounter,
    duration: Histogram,
    metrics: Metrics,
    log_limit: RateLimit,
}

/// A running NATS output.
#[derive(Debug, Clone)]
pub struct NatsOutput {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl NatsOutput {
    pub fn new(
        cfg: NatsOutputConfig,
        metrics: &Metrics,
        log_interval: Duration,
    ) -> Result<Self, String> {
        cfg.validate()?;
        let form = match cfg.format {
            Format::LineProtocol => Form::LineProtocol,
            Format::Graphite => Form::Graphite(Arc::new(
                InfluxToGraphite::new(&cfg.to_graphite_config()).map_err(|e| e.to_string())?,
            )),
        };
        let name = cfg.name.as_str();
        Ok(Self {
            inner: Arc::new(Inner {
                subjects: Subjects::new(&cfg.subject, cfg.partitions)?,
                budget: Budget::new(
                    cfg.queue_points,
                    cfg.queue_bytes,
                    Some(metrics.queue_points.with_label_values(&[name])),
                ),
                queue: EntryQueue::default(),
                successor: Mutex::new(None),
                abandoned: AtomicBool::new(false),
                down_since: Mutex::new(None),
                id_prefix: rand::random(),
                next_id: AtomicU64::new(0),
                sent: metrics.sent_points.with_label_values(&[name]),
                retries: metrics.retries.with_label_values(&[name]),
                duration: metrics.batch_duration.with_label_values(&[name]),
                metrics: metrics.clone(),
                log_limit: RateLimit::new(log_interval),
                form,
                cfg,
            }),
        })
    }

    pub fn config(&self) -> &NatsOutputConfig {
        &self.inner.cfg
    }
}

impl Inner {
    fn drop_points(&self, n: usize, reason: &str, why: &str) {
        super::count_dropped(
            &self.metrics,
            &self.log_limit,
            &self.cfg.name,
            n,
            reason,
            why,
        );
    }

    fn send_error(&self, reason: &str) {
        super::count_send_error(&self.metrics, &self.cfg.name, reason);
    }

    fn lines<'b>(&self, body: &'b [u8]) -> Box<dyn Iterator<Item = &'b [u8]> + 'b> {
        match self.cfg.format {
            Format::LineProtocol => super::line_protocol_lines(body),
            Format::Graphite => super::plaintext_lines(body),
        }
    }

    fn went_down(&self, why: &str) {
        let mut d = lock(&self.down_since);
        if d.is_none() {
            *d = Some(Instant::now());
            error!(output = %self.cfg.name, stream = %self.cfg.stream, "JetStream does not take publishes: {why}");
        }
    }

    fn came_back(&self) {
        if let Some(since) = lock(&self.down_since).take() {
            info!(output = %self.cfg.name, stream = %self.cfg.stream, after = ?since.elapsed(), "JetStream takes publishes again");
        }
    }
}

impl Output for NatsOutput {
    fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    fn form(&self) -> &Form {
        &self.inner.form
    }

    fn start(&self, tasks: &mut JoinSet<()>) {
        let inner = self.inner.clone();
        tasks.spawn(async move { worker(inner).await });
    }

    fn reserve(&self, mut chunk: Chunk, into: &mut Reservation) {
        let inner = &self.inner;
        let bytes = chunk.body.len();
        let acquired = match inner.budget.try_acquire(chunk.points, bytes) {
            Acquire::Full if inner.cfg.overflow == Overflow::DropOldest => {
                // Taken over the limit; commit drops the oldest queued points to make room.
                Acquire::Granted(inner.budget.force(chunk.points, bytes))
            }
            Acquire::Full if inner.cfg.overflow == Overflow::Block => {
                let split = chunk.split_to_fit(inner.budget.room(), |b| inner.lines(b));
                if let Some((head, tail)) = split {
                    if let Acquire::Granted(permit) =
                        inner.budget.try_acquire(head.points, head.body.len())
                    {
                        into.grants.push(Grant {
                            slot: Slot::Disk,
                            target: head.target,
                            body: head.body,
                            points: head.points,
                            permit: permit.with_tickets(head.tickets),
                        });
                        chunk = tail;
                    }
                }
                Acquire::Full
            }
            other => other,
        };
        match acquired {
            Acquire::Granted(permit) => into.grants.push(Grant {
                slot: Slot::Disk,
                target: chunk.target,
                body: chunk.body,
                points: chunk.points,
                permit: permit.with_tickets(chunk.tickets),
            }),
            Acquire::Closed => into.closed.push(chunk),
            Acquire::Full => match inner.cfg.overflow {
                Overflow::Block => into.rest.push(chunk),
                _ => into.shed.push(Shed {
                    points: chunk.points,
                    reason: "queue_full",
                    why: "the queue is full",
                }),
            },
        }
    }

    fn commit(&self, reservation: Reservation) -> Vec<Chunk> {
        let inner = &self.inner;
        for s in reservation.shed {
            inner.drop_points(s.points, s.reason, s.why);
        }
        let mut refused = Vec::new();
        for g in reservation.grants {
            let entry = Entry {
                target: g.target,
                body: g.body,
                points: g.points,
                permit: g.permit,
            };
            if let Err(mut e) = inner.queue.push(entry) {
                let mut c = Chunk::new(e.target, e.body, e.points);
                c.tickets = e.permit.take_tickets();
                refused.push(c);
            }
        }
        if inner.cfg.overflow == Overflow::DropOldest {
            while inner.budget.points() > inner.cfg.queue_points
                || inner.budget.bytes() > inner.cfg.queue_bytes
            {
                let Some(old) = inner.queue.pop_front() else {
                    break;
                };
                inner.drop_points(
                    old.points,
                    "queue_full",
                    "the queue is full: oldest points dropped",
                );
            }
        }
        refused
    }

    fn waiter(&self) -> Waiter {
        self.inner.budget.waiter()
    }

    fn stall_deadline(&self, _rest: &[Chunk]) -> Option<tokio::time::Instant> {
        // One stream: a full queue holds back only this output's senders, for as long as
        // the retry budget keeps it full.
        None
    }

    fn adopt(&self, chunks: Vec<Chunk>) {
        for chunk in chunks {
            let permit = self
                .inner
                .budget
                .force(chunk.points, chunk.body.len())
                .with_tickets(chunk.tickets);
            let entry = Entry {
                target: chunk.target,
                body: chunk.body,
                points: chunk.points,
                permit,
            };
            if let Err(e) = self.inner.queue.push(entry) {
                self.inner
                    .drop_points(e.points, "shutdown", "handed over while shutting down");
            }
        }
    }

    fn close(&self) {
        self.inner.budget.close();
        self.inner.queue.close();
    }

    fn hand_over(&self, successor: Arc<dyn Output>) {
        *lock(&self.inner.successor) = Some(successor);
        self.close();
    }

    fn upstream_key(&self) -> String {
        let c = &self.inner.cfg;
        format!("nats {:?} {} {:?}", c.servers, c.stream, c.format)
    }

    fn outstanding(&self) -> usize {
        self.inner.budget.points()
    }

    fn abandon(&self, reason: &str) {
        let inner = &self.inner;
        inner.abandoned.store(true, Ordering::SeqCst);
        self.close();
        let left = inner.budget.points();
        inner.drop_points(left, reason, "gave up on undelivered points");
        let mut gone = Vec::new();
        inner.queue.take_all(&mut gone);
    }

    fn drop_points(&self, n: usize, reason: &str, why: &str) {
        self.inner.drop_points(n, reason, why);
    }
}

/// Cuts queued points into messages and publishes them, until closed and drained.
async fn worker(inner: Arc<Inner>) {
    let client = match inner.cfg.connect().connect().await {
        Ok(c) => c,
        Err(e) => {
            error!(output = %inner.cfg.name, "cannot connect to NATS: {e}");
            // Nothing can be published: what comes is counted as it is given up on.
            drain_unpublishable(&inner, "connect").await;
            return;
        }
    };
    let mut js = async_nats::jetstream::new(client.clone());
    js.set_timeout(inner.cfg.timeout);
    {
        // Publishes before the stream exists fail (no_stream) and are retried meanwhile.
        let (inner, js) = (inner.clone(), js.clone());
        tokio::spawn(async move { ensure_stream(&inner, &js).await });
    }
    // The server's limit on a message, less room for headers.
    let max_body = |client: &async_nats::Client| {
        let server = client.server_info().max_payload;
        let cap = if server > 0 {
            server.saturating_sub(512)
        } else {
            usize::MAX
        };
        inner.cfg.max_message_bytes.min(cap).max(1024)
    };
    let mut messages = Messages::default();
    let mut in_flight = FuturesUnordered::new();
    let mut entries = Vec::new();
    let mut open = true;
    let flush_every = inner.cfg.flush_interval;
    let mut tick = tokio::time::interval(flush_every.min(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while open || !messages.is_empty() || !in_flight.is_empty() {
        if inner.abandoned.load(Ordering::SeqCst) {
            return;
        }
        // Room for more only while the ready messages can be published.
        let can_take = in_flight.len() < inner.cfg.max_in_flight && messages.ready.is_empty();
        tokio::select! {
            got = inner.queue.pop_all(&mut entries), if open && can_take => {
                if got.is_none() {
                    open = false;
                }
            }
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            _ = tick.tick() => {}
        }
        let successor = lock(&inner.successor).clone();
        if let Some(successor) = successor {
            // Reloaded with the same upstream: what is not in flight goes to the successor.
            let mut rest = Vec::new();
            inner.queue.take_all(&mut rest);
            let mut chunks: Vec<Chunk> = Vec::new();
            for mut e in entries.drain(..).chain(rest) {
                let mut c = Chunk::new(e.target, e.body, e.points);
                c.tickets = e.permit.take_tickets();
                chunks.push(c);
            }
            let filling: Vec<(String, Pending)> =
                messages.filling.drain().map(|(k, p)| (k.0, p)).collect();
            for (_, mut p) in messages.ready.drain(..).chain(filling) {
                let mut c = Chunk::new(p.target, Bytes::from(p.body), p.points);
                c.tickets = p.permit.take_tickets();
                chunks.push(c);
            }
            successor.adopt(chunks);
            open = false;
            continue;
        }
        let cap = max_body(&client);
        for e in entries.drain(..) {
            messages.add(&inner, e, cap);
        }
        messages.seal_due(&inner, cap, !open);
        while in_flight.len() < inner.cfg.max_in_flight {
            let Some((subject, p)) = messages.ready.pop_front() else {
                break;
            };
            in_flight.push(publish(inner.clone(), js.clone(), subject, p));
        }
    }
}

/// A hashable form of a target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TargetKey {
    Default,
    Explicit(Arc<str>, Arc<str>),
}

fn target_key(t: &Target) -> TargetKey {
    match t {
        Target::Default => TargetKey::Default,
        Target::Explicit(d) => TargetKey::Explicit(d.db.clone(), d.rp.clone()),
    }
}

/// Messages being filled, by subject and target, and messages full or due, in order.
#[derive(Debug, Default)]
struct Messages {
    filling: HashMap<(String, TargetKey), Pending>,
    ready: std::collections::VecDeque<(String, Pending)>,
}

impl Messages {
    fn is_empty(&self) -> bool {
        self.filling.is_empty() && self.ready.is_empty()
    }

    /// Moves the message at `key` to the ready ones.
    fn seal(&mut self, key: &(String, TargetKey)) {
        if let Some(p) = self.filling.remove(key) {
            self.ready.push_back((key.0.clone(), p));
        }
    }

    /// Moves every message that is full or waited `flush_interval` (all of them with `all`).
    fn seal_due(&mut self, inner: &Inner, cap: usize, all: bool) {
        let now = Instant::now();
        let every = inner.cfg.flush_interval;
        let due: Vec<(String, TargetKey)> = self
            .filling
            .iter()
            .filter(|(_, p)| {
                all || p.points >= inner.cfg.batch_size
                    || p.body.len() >= cap
                    || now.duration_since(p.since) >= every
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.seal(&k);
        }
    }

    /// Adds an entry's lines to the messages being filled, by subject; a message that would
    /// pass `cap` bytes or `batch_size` points is sealed first. Lines are never split.
    fn add(&mut self, inner: &Inner, mut e: Entry, cap: usize) {
        let tk = target_key(&e.target);
        if !inner.subjects.per_point() {
            let key = (inner.subjects.subject(&e.target, "", b""), tk.clone());
            let (bytes, points) = self
                .filling
                .get(&key)
                .map_or((0, 0), |p| (p.body.len(), p.points));
            if bytes + e.body.len() <= cap && points + e.points <= inner.cfg.batch_size {
                self.append(key, &e.target, &e.body, e.points, e.permit);
                return;
            }
        }
        // Line by line: each line's subject, and messages cut at the caps.
        let body = e.body.clone();
        let lines: Vec<&[u8]> = inner.lines(&body).collect();
        let n = lines.len();
        let mut left = e.points;
        for (i, line) in lines.into_iter().enumerate() {
            let key = (subject_of(inner, &e.target, line), tk.clone());
            if let Some(p) = self.filling.get(&key) {
                if p.body.len() + line.len() + 1 > cap || p.points >= inner.cfg.batch_size {
                    self.seal(&key);
                }
            }
            // The last line takes whatever the entry's permit still holds.
            let (points, permit) = if i + 1 == n {
                (left, std::mem::take(&mut e.permit))
            } else {
                let p = 1.min(left);
                (p, e.permit.split(p, line.len() + 1))
            };
            left -= points;
            self.append(key, &e.target, line, points, permit);
        }
    }

    fn append(
        &mut self,
        key: (String, TargetKey),
        target: &Target,
        body: &[u8],
        points: usize,
        permit: Permit,
    ) {
        let p = self.filling.entry(key).or_insert_with(|| Pending {
            target: target.clone(),
            body: Vec::with_capacity(body.len().max(4096)),
            points: 0,
            permit: Permit::default(),
            since: Instant::now(),
        });
        p.body.extend_from_slice(body);
        if !p.body.ends_with(b"\n") {
            p.body.push(b'\n');
        }
        p.points += points;
        p.permit.merge(permit);
    }
}

fn subject_of(inner: &Inner, target: &Target, line: &[u8]) -> String {
    if !inner.subjects.per_point() {
        return inner.subjects.subject(target, "", b"");
    }
    let (m, series) = line_key(inner.cfg.format, line);
    inner.subjects.subject(target, &m, series)
}

/// Why a publish failed, as a `send_errors` reason.
fn classify(e: &async_nats::jetstream::context::PublishError) -> &'static str {
    use async_nats::jetstream::context::PublishErrorKind as K;
    match e.kind() {
        K::StreamNotFound => "no_stream",
        K::TimedOut => "timeout",
        K::BrokenPipe => "disconnected",
        K::MaxPayloadExceeded => "too_large",
        K::MaxAckPending => "in_flight",
        _ => {
            let text = crate::error_chain(e).to_ascii_lowercase();
            let api_code = std::error::Error::source(e)
                .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
                .map(|j| j.error_code());
            if api_code == Some(async_nats::jetstream::ErrorCode::STREAM_STORE_FAILED)
                || text.contains("maximum bytes")
                || text.contains("maximum messages")
                || text.contains("resources exceeded")
            {
                "stream_full"
            } else {
                "other"
            }
        }
    }
}

/// Publishes one message and waits for the stream's acknowledgement, retrying for at most
/// `max_retry_time`. The message's points are sent once acknowledged; its permit (and the
/// queue room and tickets it holds) is let go however it ends.
async fn publish(
    inner: Arc<Inner>,
    js: async_nats::jetstream::Context,
    subject: String,
    p: Pending,
) {
    let budget = Instant::now() + inner.cfg.max_retry_time;
    let mut headers = crate::nats::headers(inner.cfg.format, &p.target, p.points);
    let id = format!(
        "{:016x}-{}",
        inner.id_prefix,
        inner.next_id.fetch_add(1, Ordering::Relaxed)
    );
    headers.insert("Nats-Msg-Id", id.as_str());
    let body = Bytes::from(p.body);
    let permit = p.permit;
    let mut attempt = 0u32;
    loop {
        if inner.abandoned.load(Ordering::SeqCst) {
            return;
        }
        let started = Instant::now();
        let result = match js
            .publish_with_headers(subject.clone(), headers.clone(), body.clone())
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => {
                inner.duration.observe(started.elapsed().as_secs_f64());
                inner.sent.inc_by(p.points as u64);
                inner.came_back();
                drop(permit);
                return;
            }
            Err(e) => {
                let reason = classify(&e);
                inner.send_error(reason);
                let why = crate::error_chain(&e);
                if reason == "too_large" {
                    inner.drop_points(
                        p.points,
                        "too_large",
                        &format!(
                            "the server refused a message of {} bytes: {why}",
                            body.len()
                        ),
                    );
                    return;
                }
                if reason == "stream_full" && inner.cfg.overflow != Overflow::Block {
                    inner.drop_points(
                        p.points,
                        "stream_full",
                        &format!("stream {} is at its limits: {why}", inner.cfg.stream),
                    );
                    return;
                }
                inner.went_down(&why);
                warn_limited!(inner.log_limit, output = %inner.cfg.name, reason, subject = %subject, "publish failed, retrying: {why}");
                if Instant::now() >= budget {
                    inner.drop_points(
                        p.points,
                        "retry_budget",
                        &format!("not acknowledged within max_retry_time: {why}"),
                    );
                    return;
                }
                inner.retries.inc();
                let wait = super::backoff(inner.cfg.retry_initial, inner.cfg.retry_max, attempt);
                attempt = attempt.saturating_add(1);
                tokio::time::sleep(wait.min(budget.saturating_duration_since(Instant::now())))
                    .await;
            }
        }
    }
}

/// Creates the stream when it is missing; an existing one is used as it is. Retried until
/// it works (the server may be down, or the cluster without a leader yet).
async fn ensure_stream(inner: &Inner, js: &async_nats::jetstream::Context) {
    use async_nats::jetstream::stream;
    let cfg = &inner.cfg;
    let mut attempt = 0;
    loop {
        if inner.abandoned.load(Ordering::SeqCst) {
            return;
        }
        match js.get_stream(&cfg.stream).await {
            Ok(_) => {
                info!(output = %cfg.name, stream = %cfg.stream, "using the existing stream as it is");
                return;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::context::GetStreamErrorKind::JetStream(j)
                        if j.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                let config = stream::Config {
                    name: cfg.stream.clone(),
                    subjects: cfg.stream_subjects(),
                    max_bytes: if cfg.max_bytes > 0 { cfg.max_bytes } else { -1 },
                    num_replicas: cfg.replicas,
                    discard: stream::DiscardPolicy::New,
                    retention: match cfg.retention {
                        Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
                        Retention::Interest => stream::RetentionPolicy::Interest,
                        Retention::Limits => stream::RetentionPolicy::Limits,
                    },
                    max_age: cfg.max_age,
                    storage: match cfg.storage {
                        Storage::File => stream::StorageType::File,
                        Storage::Memory => stream::StorageType::Memory,
                    },
                    ..Default::default()
                };
                match js.create_stream(config).await {
                    Ok(_) => {
                        info!(output = %cfg.name, stream = %cfg.stream, subjects = ?cfg.stream_subjects(), replicas = cfg.replicas, max_bytes = cfg.max_bytes, "created the stream");
                        return;
                    }
                    Err(e) => {
                        warn_limited!(inner.log_limit, output = %cfg.name, stream = %cfg.stream, "cannot create the stream: {}", crate::error_chain(&e));
                    }
                }
            }
            Err(e) => {
                warn_limited!(inner.log_limit, output = %cfg.name, stream = %cfg.stream, "cannot look up the stream: {}", crate::error_chain(&e));
            }
        }
        tokio::time::sleep(super::backoff(
            Duration::from_millis(200),
            Duration::from_secs(5),
            attempt,
        ))
        .await;
        attempt += 1;
    }
}

/// Without a client nothing is published: what the queue holds is given up on and counted.
async fn drain_unpublishable(inner: &Inner, reason: &str) {
    let mut entries = Vec::new();
    while inner.queue.pop_all(&mut entries).await.is_some() {
        for e in entries.drain(..) {
            inner.drop_points(e.points, reason, "no connection to NATS");
        }
    }
}

/// `[[outputs.nats]]`.
impl super::registry::OutputSpec for NatsOutputConfig {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn buffer_settings(&self) -> BufferSettings {
        NatsOutputConfig::buffer_settings(self)
    }

    fn build(&self, metrics: &Metrics, log_interval: Duration) -> Result<Arc<dyn Output>, String> {
        Ok(Arc::new(NatsOutput::new(
            self.clone(),
            metrics,
            log_interval,
        )?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn same(&self, other: &dyn super::registry::OutputSpec) -> bool {
        super::registry::same_as(self, other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Destination;

    #[test]
    fn subjects_fill_placeholders_with_safe_tokens() {
        let s = Subjects::new("metrics.{db}.{rp}.{measurement}", 4).unwrap();
        let t = Target::Explicit(Destination::new("tele.graf", ""));
        let (m, series) = line_key(Format::LineProtocol, b"cpu\\ load,host=a value=1 1");
        assert_eq!(m, "cpu load");
        assert_eq!(series, b"cpu\\ load,host=a");
        assert_eq!(
            s.subject(&t, &m, series),
            "metrics.tele_graf.default.cpu_load"
        );
        assert_eq!(
            s.subject(&Target::Default, "m", b""),
            "metrics.default.default.m"
        );
    }

    #[test]
    fn partitions_split_by_series_and_keep_a_series_together() {
        let s = Subjects::new("p.{partition}", 8).unwrap();
        let a1 = s.subject(&Target::Default, "", b"cpu,host=a");
        let a2 = s.subject(&Target::Default, "", b"cpu,host=a");
        assert_eq!(a1, a2);
        let all: std::collections::HashSet<String> = (0..200)
            .map(|i| s.subject(&Target::Default, "", format!("cpu,host={i}").as_bytes()))
            .collect();
        assert!(all.len() > 4, "{all:?}");
        assert!(all
            .iter()
            .all(|x| x["p.".len()..].parse::<u32>().unwrap() < 8));
        let (m, series) = line_key(Format::Graphite, b"servers.a.cpu 1 2");
        assert_eq!((m.as_str(), series), ("servers", &b"servers.a.cpu"[..]));
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in ["", "a.{nope}", "a.{db", "a.*.b", "a..b", ".a", "a.>"] {
            assert!(Subjects::new(bad, 4).is_err(), "{bad}");
        }
        assert!(Subjects::new("a.{partition}", 0).is_err());
    }

    #[test]
    fn created_streams_take_the_subjects_head() {
        let c = NatsOutputConfig {
            subject: "fluxgate.lp.{db}".into(),
            ..NatsOutputConfig::default()
        };
        assert_eq!(c.stream_subjects(), ["fluxgate.>"]);
    }
}
