//! The InfluxDB output: batches line protocol per destination and writes it to an InfluxDB
//! 1.x (`/write`) or 2.x (`/api/v2/write`) upstream.
//!
//! Shape: the pipeline reserves capacity in the output's budget and queues [`Entry`]s in one
//! inbox; one worker task sorts them into *partitions* (one per destination: a v1 db/rp, a
//! v2 bucket) and, inside a partition, into `max_in_flight` *lanes* by a hash of the series
//! key. Each lane has at most one request in flight, so writes to one series stay in order (a
//! later value for the same series and time still wins, exactly as if the sender wrote
//! directly), while lanes and partitions go in parallel. The worker never waits on a request:
//! requests run as tasks, and what arrives for a busy lane is batched behind it.
//!
//! Isolation: each partition is a share of the output's budget (`partition_queue_points`),
//! so a destination that keeps failing fills only its own share and holds back only the
//! writes bound for it. A request is retried for at most `max_retry_time`; past that its
//! points are dropped and counted (`retry_budget`), and the partition moves on.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::future::BoxFuture;
use prometheus::{Histogram, IntCounter};
use reqwest::{header, StatusCode};
use tokio::{sync::oneshot, task::JoinSet};
use tracing::info;

use super::{Answer, Chunk, Form, Grant, Output, Reservation, Shed, Slot};
use crate::{
    config::{InfluxApi, InfluxOutputConfig, Overflow},
    error_chain,
    metrics::{Metrics, RateLimit},
    queue::{Acquire, Budget, EntryQueue, Permit, Waiter},
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

/// What the worker takes from its inbox, in commit order.
#[derive(Debug)]
enum Item {
    Entry(Entry),
    /// Answer once everything for this database that came before is delivered.
    Barrier {
        db: Arc<str>,
        reply: oneshot::Sender<()>,
    },
}

/// Points queued for the worker: line protocol for one destination, with the capacity they
/// hold in the output's budget.
#[derive(Debug)]
struct Entry {
    dest: Destination,
    body: Bytes,
    points: usize,
    permit: Permit,
    /// When the output took it (the start of `fluxgate_write_latency_seconds`).
    received: Instant,
}

/// A request is cut when its body reaches this size even if it holds fewer than
/// `batch_size` points: wide points must not make one request unboundedly large.
const MAX_REQUEST_BYTES: usize = 8 << 20;

/// Partition budgets kept for destinations with nothing outstanding, before the idle ones
/// are forgotten (a client may name any number of databases).
const IDLE_PARTITIONS: usize = 1024;

#[derive(Debug)]
struct Ctx {
    cfg: InfluxOutputConfig,
    client: reqwest::Client,
    write_url: reqwest::Url,
    default_dest: Destination,
    form: Form,
    /// Everything the output holds.
    total: Budget,
    /// Each destination's share of `total`.
    partitions: Mutex<HashMap<Destination, Share>>,
    inbox: EntryQueue<Item>,
    /// Writes sent at once (`ack = "delivered"`) in flight, at most `max_in_flight`.
    direct: Arc<tokio::sync::Semaphore>,
    /// Set by [`Output::hand_over`]: where the worker sends what it has not sent yet.
    successor: Mutex<Option<Arc<dyn Output>>>,
    abandoned: AtomicBool,
    /// Since when the upstream has been failing (for one line down, one line back).
    down_since: Mutex<Option<Instant>>,
    /// The version the upstream last reported (`X-Influxdb-Version`).
    upstream_version: Mutex<Option<String>>,
    sent: IntCounter,
    retries: IntCounter,
    duration: Histogram,
    latency: Histogram,
    metrics: Metrics,
    log_limit: RateLimit,
}

/// One destination's part of the output's budget, and since when offers have found it full.
#[derive(Debug)]
struct Share {
    budget: Budget,
    full_since: Option<Instant>,
}

/// Handle to a running InfluxDB output.
#[derive(Debug, Clone)]
pub struct InfluxOutput {
    ctx: Arc<Ctx>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl InfluxOutput {
    /// Builds the output; [`Output::start`] spawns its tasks.
    pub fn new(
        cfg: InfluxOutputConfig,
        metrics: &Metrics,
        log_interval: Duration,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(cfg.max_in_flight)
            .pool_idle_timeout(Duration::from_secs(50))
            .tcp_nodelay(true)
            .user_agent(concat!("fluxgate/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.tls_ca {
            // The output's own CAs replace the system's (as curl's --cacert does).
            let pem = std::fs::read(ca).map_err(|e| format!("tls_ca {ca}: {e}"))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("tls_ca {ca}: {e}"))?;
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(|e| e.to_string())?;
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
            total: Budget::new(
                cfg.queue_points,
                cfg.queue_bytes,
                Some(metrics.queue_points.with_label_values(&[name])),
            ),
            partitions: Mutex::new(HashMap::new()),
            inbox: EntryQueue::default(),
            direct: Arc::new(tokio::sync::Semaphore::new(cfg.max_in_flight)),
            successor: Mutex::new(None),
            abandoned: AtomicBool::new(false),
            down_since: Mutex::new(None),
            upstream_version: Mutex::new(None),
            latency: metrics.write_latency.with_label_values(&[name]),
            sent: metrics.sent_points.with_label_values(&[name]),
            retries: metrics.retries.with_label_values(&[name]),
            duration: metrics.batch_duration.with_label_values(&[name]),
            metrics: metrics.clone(),
            log_limit: RateLimit::new(log_interval),
            form: Form::LineProtocol,
            client,
            write_url,
            default_dest,
            cfg,
        };
        Ok(Self { ctx: Arc::new(ctx) })
    }

    pub fn config(&self) -> &InfluxOutputConfig {
        &self.ctx.cfg
    }

    /// The version the upstream reported, once it answered.
    pub fn upstream_version(&self) -> Option<String> {
        lock(&self.ctx.upstream_version).clone()
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

    /// The share of the output's budget for `dest`, made on first use.
    fn partition<'a>(
        &self,
        parts: &'a mut HashMap<Destination, Share>,
        dest: &Destination,
    ) -> &'a mut Share {
        if !parts.contains_key(dest) {
            if parts.len() >= IDLE_PARTITIONS {
                parts.retain(|_, s| !s.budget.is_idle());
            }
            let budget = self.ctx.total.child(
                self.ctx.cfg.partition_points(),
                self.ctx.cfg.queue_bytes / 2,
            );
            parts.insert(
                dest.clone(),
                Share {
                    budget,
                    full_since: None,
                },
            );
        }
        parts.get_mut(dest).expect("inserted")
    }
}

impl Output for InfluxOutput {
    fn name(&self) -> &str {
        &self.ctx.cfg.name
    }

    fn form(&self) -> &Form {
        &self.ctx.form
    }

    fn start(&self, tasks: &mut JoinSet<()>) {
        let ctx = self.ctx.clone();
        tasks.spawn(async move { worker(ctx).await });
        let ctx = self.ctx.clone();
        if ctx.creates(&ctx.default_dest) {
            // As Telegraf does: a fresh setup where nobody ran CREATE DATABASE loses nothing.
            tokio::spawn(async move { ctx.create_database().await });
        }
    }

    fn reserve(&self, mut chunk: Chunk, into: &mut Reservation) {
        let dest = self.destination(&chunk.target);
        let bytes = chunk.body.len();
        // Acquired under the map's lock, so an idle share is never forgotten while taken.
        let mut stalled = false;
        let acquired = {
            let mut parts = lock(&self.ctx.partitions);
            let share = self.partition(&mut parts, &dest);
            match share.budget.try_acquire(chunk.points, bytes) {
                Acquire::Full if self.ctx.cfg.overflow == Overflow::DropOldest => {
                    // Taken over the limit; the worker makes room by dropping the
                    // partition's oldest batched points.
                    Acquire::Granted(share.budget.force(chunk.points, bytes))
                }
                Acquire::Full => {
                    // Take what fits; the rest waits.
                    let split = chunk.split_to_fit(share.budget.room(), super::line_protocol_lines);
                    if let Some((head, tail)) = split {
                        if let Acquire::Granted(permit) =
                            share.budget.try_acquire(head.points, head.body.len())
                        {
                            into.grants.push(Grant {
                                slot: Slot::Partition(dest.clone()),
                                target: head.target,
                                body: head.body,
                                points: head.points,
                                permit: permit.with_tickets(head.tickets),
                            });
                            chunk = tail;
                        }
                    }
                    let since = *share.full_since.get_or_insert_with(Instant::now);
                    let stall = self.ctx.cfg.stall_timeout;
                    stalled = !stall.is_zero() && since.elapsed() >= stall;
                    Acquire::Full
                }
                other => {
                    share.full_since = None;
                    other
                }
            }
        };
        match acquired {
            Acquire::Granted(permit) => into.grants.push(Grant {
                slot: Slot::Partition(dest),
                target: chunk.target,
                body: chunk.body,
                points: chunk.points,
                permit: permit.with_tickets(chunk.tickets),
            }),
            Acquire::Closed => into.closed.push(chunk),
            Acquire::Full => match self.ctx.cfg.overflow {
                Overflow::DropNewest => into.shed.push(Shed {
                    points: chunk.points,
                    reason: "queue_full",
                    why: "the queue is full",
                }),
                _ if stalled => into.shed.push(Shed {
                    points: chunk.points,
                    reason: "destination_stalled",
                    why: "the destination's share of the queue stayed full for stall_timeout",
                }),
                _ => into.rest.push(chunk),
            },
        }
    }

    fn commit(&self, reservation: Reservation) -> Vec<Chunk> {
        for s in reservation.shed {
            self.ctx.drop_points(s.points, s.reason, s.why);
        }
        let mut refused = Vec::new();
        for g in reservation.grants {
            let Slot::Partition(dest) = g.slot else {
                continue;
            };
            let entry = Entry {
                dest,
                body: g.body,
                points: g.points,
                permit: g.permit,
                received: Instant::now(),
            };
            if let Err(Item::Entry(mut e)) = self.ctx.inbox.push(Item::Entry(entry)) {
                let mut c = Chunk::new(g.target, e.body, e.points);
                c.tickets = e.permit.take_tickets();
                refused.push(c);
            }
        }
        refused
    }

    fn waiter(&self) -> Waiter {
        self.ctx.total.waiter()
    }

    fn stall_deadline(&self, rest: &[Chunk]) -> Option<tokio::time::Instant> {
        // Without a stall budget a full partition holds back only its own writers, for as
        // long as the retry budget keeps it full.
        let stall = self.ctx.cfg.stall_timeout;
        if stall.is_zero() {
            return None;
        }
        let parts = lock(&self.ctx.partitions);
        rest.iter()
            .filter_map(|c| parts.get(&self.destination(&c.target))?.full_since)
            .map(|since| tokio::time::Instant::from_std(since + stall))
            .min()
    }

    fn adopt(&self, chunks: Vec<Chunk>) {
        for chunk in chunks {
            let dest = self.destination(&chunk.target);
            let permit = {
                let mut parts = lock(&self.ctx.partitions);
                self.partition(&mut parts, &dest)
                    .budget
                    .force(chunk.points, chunk.body.len())
                    .with_tickets(chunk.tickets)
            };
            let entry = Entry {
                dest,
                body: chunk.body,
                points: chunk.points,
                permit,
                received: Instant::now(),
            };
            if let Err(Item::Entry(e)) = self.ctx.inbox.push(Item::Entry(entry)) {
                self.ctx
                    .drop_points(e.points, "shutdown", "handed over while shutting down");
            }
        }
    }

    fn close(&self) {
        self.ctx.total.close();
        self.ctx.inbox.close();
    }

    fn hand_over(&self, successor: Arc<dyn Output>) {
        *lock(&self.ctx.successor) = Some(successor);
        self.close();
    }

    fn upstream_key(&self) -> String {
        let c = &self.ctx.cfg;
        format!(
            "influxdb {} {} {:?} {:?} {:?} {:?}",
            c.url, c.api, c.org, self.ctx.default_dest, c.username, c.password
        )
    }

    fn outstanding(&self) -> usize {
        self.ctx.total.points()
    }

    fn abandon(&self, reason: &str) {
        if self.ctx.abandoned.swap(true, Ordering::SeqCst) {
            return;
        }
        let n = self.ctx.total.points();
        if n > 0 {
            self.ctx
                .drop_points(n, reason, "deadline passed with points undelivered");
        }
    }

    fn drop_points(&self, n: usize, reason: &str, why: &str) {
        self.ctx.drop_points(n, reason, why);
    }

    fn as_influx(&self) -> Option<&InfluxOutput> {
        Some(self)
    }

    fn answers_writes(&self) -> bool {
        true
    }

    fn commit_delivered(
        &self,
        reservation: Reservation,
        deadline: tokio::time::Instant,
    ) -> BoxFuture<'static, Answer> {
        for s in reservation.shed {
            self.ctx.drop_points(s.points, s.reason, s.why);
        }
        let ctx = self.ctx.clone();
        let requests: Vec<Request> = reservation
            .grants
            .into_iter()
            .filter_map(|g| match g.slot {
                Slot::Partition(dest) => Some(Request {
                    id: 0,
                    received: Instant::now(),
                    dest,
                    body: g.body.to_vec(),
                    points: g.points,
                    permit: g.permit,
                }),
                Slot::Destination(_) | Slot::Disk => None,
            })
            .collect();
        Box::pin(async move {
            let mut answer = Answer::Delivered;
            for req in requests {
                let Ok(_slot) = ctx.direct.clone().acquire_owned().await else {
                    return Answer::Unavailable("shutting down".into());
                };
                let got = ctx.deliver_answer(req, deadline).await;
                if answer == Answer::Delivered {
                    answer = got;
                }
            }
            answer
        })
    }

    fn barrier(&self, db: &str) -> Option<BoxFuture<'static, ()>> {
        let (reply, done) = oneshot::channel();
        let item = Item::Barrier {
            db: db.into(),
            reply,
        };
        self.ctx.inbox.push(item).ok()?;
        Some(Box::pin(async move {
            let _ = done.await;
        }))
    }
}

fn join_path(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url
}

/// One request's worth of points for one destination, with the capacity it holds.
#[derive(Debug)]
struct Request {
    /// In the order the worker cut them (0 for writes sent at once).
    id: u64,
    /// When its oldest point was taken.
    received: Instant,
    dest: Destination,
    body: Vec<u8>,
    points: usize,
    permit: Permit,
}

/// One lane of a partition: the batch being filled, batches cut and waiting, and whether a
/// request is in flight (one at a time keeps a series in order).
#[derive(Debug, Default)]
struct Lane {
    open: Vec<u8>,
    open_points: usize,
    open_permit: Permit,
    since: Option<Instant>,
    /// When the oldest point of the open batch was taken.
    oldest: Option<Instant>,
    ready: VecDeque<Request>,
    busy: bool,
}

/// Numbers the requests the worker cuts and remembers which are not finished, so a
/// read-your-writes barrier knows what it waits for.
#[derive(Debug, Default)]
struct Ids {
    next: u64,
    outstanding: std::collections::BTreeMap<u64, Arc<str>>,
}

impl Ids {
    fn issue(&mut self, dest: &Destination) -> u64 {
        self.next += 1;
        self.outstanding.insert(self.next, dest.db.clone());
        self.next
    }

    fn finish(&mut self, id: u64) {
        self.outstanding.remove(&id);
    }

    /// Nothing cut up to `upto` for `db` is still outstanding.
    fn clear(&self, db: &str, upto: u64) -> bool {
        self.outstanding.range(..=upto).all(|(_, d)| &**d != db)
    }
}

impl Lane {
    fn cut(&mut self, dest: &Destination, ids: &mut Ids) {
        if self.open_points == 0 {
            return;
        }
        self.since = None;
        self.ready.push_back(Request {
            id: ids.issue(dest),
            received: self.oldest.take().unwrap_or_else(Instant::now),
            dest: dest.clone(),
            body: std::mem::take(&mut self.open),
            points: std::mem::take(&mut self.open_points),
            permit: std::mem::take(&mut self.open_permit),
        });
    }

    fn is_idle(&self) -> bool {
        !self.busy && self.open_points == 0 && self.ready.is_empty()
    }
}

#[derive(Debug)]
struct Partition {
    lanes: Vec<Lane>,
}

/// The output's one worker: sorts entries into partitions and lanes, cuts batches by size and
/// time, and starts a request task whenever a lane is free. It never waits on a request.
async fn worker(ctx: Arc<Ctx>) {
    let n_lanes = ctx.cfg.max_in_flight;
    let batch_size = ctx.cfg.batch_size;
    let flush_every = ctx.cfg.flush_interval;
    let mut parts: HashMap<Destination, Partition> = HashMap::new();
    let mut inflight: JoinSet<(Destination, usize, u64)> = JoinSet::new();
    let mut items = Vec::new();
    let mut added: Vec<(usize, usize)> = vec![(0, 0); n_lanes];
    let mut ids = Ids::default();
    let mut barriers: Vec<(Arc<str>, u64, oneshot::Sender<()>)> = Vec::new();
    let mut open = true;
    let mut tick = tokio::time::interval(
        flush_every
            .min(Duration::from_millis(100))
            .max(Duration::from_millis(5)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A lane with no request in flight sends its partial batch once it lingered, instead of
    // waiting for `flush_interval`: a point then waits for the upstream's answer to the
    // request before it, or for this, not for a timer. While a request is in flight the batch
    // keeps filling, so under load batches still reach `batch_size`.
    let linger = ctx.cfg.linger.min(flush_every);
    // When the earliest partial batch of an idle lane is due.
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        if !open && inflight.is_empty() && parts.values().all(|p| p.lanes.iter().all(Lane::is_idle))
        {
            break;
        }
        tokio::select! {
            got = ctx.inbox.pop_all(&mut items), if open => {
                for item in items.drain(..) {
                    match item {
                        Item::Entry(entry) => {
                            if ctx.cfg.overflow == Overflow::DropOldest {
                                evict_oldest(&ctx, &mut parts, &entry, &mut ids);
                            }
                            let p = parts.entry(entry.dest.clone()).or_insert_with(|| Partition {
                                lanes: (0..n_lanes).map(|_| Lane::default()).collect(),
                            });
                            distribute(entry, p, &mut added, batch_size, &mut ids);
                        }
                        Item::Barrier { db, reply } => {
                            // What is batching for it goes now; the barrier waits for it and
                            // for what is already on its way.
                            for (dest, p) in parts.iter_mut().filter(|(d, _)| d.db == db) {
                                p.lanes.iter_mut().for_each(|l| l.cut(dest, &mut ids));
                            }
                            barriers.push((db, ids.next, reply));
                        }
                    }
                }
                if got.is_none() {
                    open = false;
                    let successor = lock(&ctx.successor).take();
                    match successor {
                        Some(s) => hand_over_buffers(&ctx, &mut parts, s, &mut ids),
                        None => {
                            for (dest, p) in parts.iter_mut() {
                                p.lanes.iter_mut().for_each(|l| l.cut(dest, &mut ids));
                            }
                        }
                    }
                }
            }
            Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                if let Ok((dest, lane, id)) = done {
                    ids.finish(id);
                    if let Some(l) = parts.get_mut(&dest).and_then(|p| p.lanes.get_mut(lane)) {
                        l.busy = false;
                    }
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {}
            _ = tick.tick() => {
                for (dest, p) in parts.iter_mut() {
                    for l in &mut p.lanes {
                        if l.since.is_some_and(|t| t.elapsed() >= flush_every) {
                            l.cut(dest, &mut ids);
                        }
                    }
                }
                parts.retain(|_, p| !p.lanes.iter().all(Lane::is_idle));
            }
        }
        // Answer the barriers whose writes are all through.
        let mut i = 0;
        while i < barriers.len() {
            if ids.clear(&barriers[i].0, barriers[i].1) {
                let (_, _, reply) = barriers.swap_remove(i);
                let _ = reply.send(());
            } else {
                i += 1;
            }
        }
        // A free lane with nothing waiting sends its partial batch once it lingered.
        due = None;
        for (dest, p) in parts.iter_mut() {
            for l in &mut p.lanes {
                if l.busy || !l.ready.is_empty() {
                    continue;
                }
                let Some(since) = l.since else { continue };
                if since.elapsed() >= linger {
                    l.cut(dest, &mut ids);
                } else {
                    let at = tokio::time::Instant::from_std(since + linger);
                    due = Some(due.map_or(at, |d| d.min(at)));
                }
            }
        }
        // Start a request on every free lane that has one waiting.
        for p in parts.values_mut() {
            for (i, l) in p.lanes.iter_mut().enumerate() {
                if l.busy {
                    continue;
                }
                if let Some(req) = l.ready.pop_front() {
                    l.busy = true;
                    let ctx = ctx.clone();
                    inflight.spawn(async move {
                        let (dest, id) = (req.dest.clone(), req.id);
                        ctx.deliver(req).await;
                        (dest, i, id)
                    });
                }
            }
        }
    }
    for (_, _, reply) in barriers {
        let _ = reply.send(());
    }
}

/// Sorts an entry's lines into the partition's lanes by series, moving its capacity with
/// them, and cuts every batch that is full.
fn distribute(
    mut entry: Entry,
    p: &mut Partition,
    added: &mut [(usize, usize)],
    batch: usize,
    ids: &mut Ids,
) {
    let n_lanes = p.lanes.len();
    added.iter_mut().for_each(|a| *a = (0, 0));
    for line in lines(&entry.body) {
        let lane = if n_lanes == 1 {
            0
        } else {
            lane_of(line, n_lanes)
        };
        let l = &mut p.lanes[lane];
        if l.open_points == 0 {
            l.since = Some(Instant::now());
        }
        l.oldest = Some(l.oldest.map_or(entry.received, |o| o.min(entry.received)));
        l.open.extend_from_slice(line);
        l.open.push(b'\n');
        l.open_points += 1;
        added[lane].0 += 1;
        added[lane].1 += line.len() + 1;
        if l.open_points >= batch || l.open.len() >= MAX_REQUEST_BYTES {
            let permit = entry.permit.split(added[lane].0, added[lane].1);
            l.open_permit.merge(permit);
            added[lane] = (0, 0);
            l.cut(&entry.dest, ids);
        }
    }
    let mut last = None;
    for (i, &(points, bytes)) in added.iter().enumerate() {
        if points > 0 {
            p.lanes[i]
                .open_permit
                .merge(entry.permit.split(points, bytes));
            last = Some(i);
        }
    }
    // What the split left (blank lines' bytes) stays with the last lane that took a line.
    let rest = std::mem::take(&mut entry.permit);
    match last {
        Some(i) => p.lanes[i].open_permit.merge(rest),
        None => drop(rest),
    }
}

/// `drop_oldest`: while the entry's partition (or the whole output) is over its limit, drops
/// the partition's oldest batched points that are not in flight.
fn evict_oldest(
    ctx: &Ctx,
    parts: &mut HashMap<Destination, Partition>,
    entry: &Entry,
    ids: &mut Ids,
) {
    let share = lock(&ctx.partitions)
        .get(&entry.dest)
        .map(|s| s.budget.clone());
    let Some(share) = share else { return };
    let over = || {
        share.points() > share.max_points().max(entry.points)
            || ctx.total.points() > ctx.total.max_points().max(entry.points)
    };
    let Some(p) = parts.get_mut(&entry.dest) else {
        return;
    };
    while over() {
        // The oldest is a waiting request, else the open batch filled first.
        let oldest = p
            .lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.ready.is_empty() || l.open_points > 0)
            .min_by_key(|(_, l)| (l.ready.is_empty(), l.since))
            .map(|(i, _)| i);
        let Some(i) = oldest else { break };
        let l = &mut p.lanes[i];
        let dropped = match l.ready.pop_front() {
            Some(req) => {
                ids.finish(req.id);
                req.points
            }
            None => {
                l.open.clear();
                l.since = None;
                l.oldest = None;
                drop(std::mem::take(&mut l.open_permit));
                std::mem::take(&mut l.open_points)
            }
        };
        ctx.drop_points(
            dropped,
            "queue_full",
            "the queue is full (dropping the oldest)",
        );
    }
}

/// A retiring output's batches that are not in flight go to its successor.
fn hand_over_buffers(
    ctx: &Ctx,
    parts: &mut HashMap<Destination, Partition>,
    successor: Arc<dyn Output>,
    ids: &mut Ids,
) {
    let mut chunks = Vec::new();
    let mut queued = Vec::new();
    ctx.inbox.take_all(&mut queued);
    for item in queued {
        if let Item::Entry(mut e) = item {
            let mut c = Chunk::new(Target::Explicit(e.dest), e.body, e.points);
            c.tickets = e.permit.take_tickets();
            chunks.push(c);
        }
    }
    for (dest, p) in parts.iter_mut() {
        for l in &mut p.lanes {
            l.cut(dest, ids);
            for mut req in l.ready.drain(..) {
                ids.finish(req.id);
                let mut c = Chunk::new(
                    Target::Explicit(dest.clone()),
                    Bytes::from(req.body),
                    req.points,
                );
                c.tickets = req.permit.take_tickets();
                chunks.push(c);
            }
        }
    }
    let points: usize = chunks.iter().map(|c| c.points).sum();
    if points > 0 {
        info!(output = %ctx.cfg.name, points, "handing what is queued to the reloaded output");
    }
    successor.adopt(chunks);
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
    // A fixed seed: a series keeps its lane for the life of the output, which is what keeps
    // its writes in order. foldhash reads the key eight bytes and more at a time.
    use std::hash::BuildHasher;
    let h = foldhash::fast::FixedState::with_seed(0x6c61_6e65).hash_one(&line[..end]);
    (h % lanes as u64) as usize
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    /// The upstream refused the content; retrying cannot help.
    Rejected {
        reason: &'static str,
        dropped: usize,
        status: u16,
        message: String,
    },
    TooLarge,
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

impl Ctx {
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

    /// Delivers a request, retrying what can be retried (for at most `max_retry_time`) and
    /// splitting what is too large, until every point is written, refused or given up on.
    /// Capacity goes back as each part's permit is dropped.
    async fn deliver(&self, req: Request) {
        let budget = tokio::time::Instant::now() + self.cfg.max_retry_time;
        if let Err(left) = self.send(req, budget, &mut None).await {
            for req in left {
                // Points from a disk buffer go to its dead-letter buffer rather than away.
                let kept = match req.permit.tickets().first() {
                    Some(t) => {
                        t.dead_letter(&Target::Explicit(req.dest.clone()), &req.body, req.points)
                    }
                    None => false,
                };
                let reason = if kept { "dead_letter" } else { "retry_budget" };
                self.metrics
                    .dropped
                    .with_label_values(&[&self.cfg.name, reason])
                    .inc_by(req.points as u64);
            }
        }
    }

    /// Sends at once and answers with the upstream's word: retryable failures are retried
    /// until `deadline`, then the write is given up (not kept) and the answer says so.
    async fn deliver_answer(&self, req: Request, deadline: tokio::time::Instant) -> Answer {
        let mut refusal = None;
        match self.send(req, deadline, &mut refusal).await {
            Ok(()) => refusal.unwrap_or(Answer::Delivered),
            Err(_) => refusal.unwrap_or_else(|| {
                Answer::Unavailable("the upstream did not take the write in time".into())
            }),
        }
    }

    /// The delivery loop shared by batches and writes sent at once. `Err` holds what was
    /// left undelivered when time ran out; a refusal is recorded in `refusal` (the first one).
    async fn send(
        &self,
        req: Request,
        deadline: tokio::time::Instant,
        refusal: &mut Option<Answer>,
    ) -> Result<(), Vec<Request>> {
        let started = Instant::now();
        let mut created = false;
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
                        self.latency.observe(req.received.elapsed().as_secs_f64());
                        self.back_up();
                        break;
                    }
                    Attempt::Rejected { status: 404, .. }
                        if !created && self.creates(&req.dest) && self.create_database().await =>
                    {
                        // The output's own database was missing and now exists: again at once.
                        created = true;
                    }
                    Attempt::Rejected {
                        reason,
                        dropped,
                        status,
                        message,
                    } => {
                        let dropped = dropped.min(req.points);
                        self.sent.inc_by((req.points - dropped) as u64);
                        if dropped > 0 {
                            self.metrics
                                .dropped
                                .with_label_values(&[&self.cfg.name, reason])
                                .inc_by(dropped as u64);
                        }
                        if refusal.is_none() {
                            *refusal = Some(Answer::Refused { status, message });
                        }
                        break;
                    }
                    Attempt::TooLarge => {
                        if req.points <= 1 {
                            self.drop_points(
                                req.points,
                                "too_large",
                                "the upstream refuses even a single point as too large",
                            );
                            if refusal.is_none() {
                                *refusal = Some(Answer::Refused {
                                    status: 413,
                                    message: "request entity too large".into(),
                                });
                            }
                        } else {
                            let (a, b) = split(req);
                            work.push(b);
                            work.push(a);
                        }
                        break;
                    }
                    Attempt::Retry { reason, after } => {
                        self.gone_down(&reason);
                        let delay = after
                            .unwrap_or_else(|| self.backoff(attempt))
                            .min(self.cfg.retry_max);
                        if tokio::time::Instant::now() + delay > deadline {
                            warn_limited!(
                                self.log_limit,
                                output = %self.cfg.name,
                                destination = %req.dest,
                                points = req.points,
                                "giving up after retrying for {:?} ({reason})",
                                started.elapsed()
                            );
                            work.push(req);
                            return Err(work);
                        }
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
        Ok(())
    }

    /// Remembers the version the upstream reports, for `/ping`.
    fn note_version(&self, headers: &reqwest::header::HeaderMap) {
        if let Some(v) = headers
            .get("x-influxdb-version")
            .and_then(|v| v.to_str().ok())
        {
            let mut known = lock(&self.upstream_version);
            if known.as_deref() != Some(v) {
                *known = Some(v.to_owned());
            }
        }
    }

    /// One line when the upstream starts failing (not one per retry).
    fn gone_down(&self, reason: &str) {
        let mut down = lock(&self.down_since);
        if down.is_none() {
            *down = Some(Instant::now());
            tracing::warn!(output = %self.cfg.name, upstream = %crate::config::redact_url(&self.cfg.url),
                "upstream is failing ({reason}); retrying, points wait in the queue");
        }
    }

    /// One line when it delivers again: how long it was failing and what waited meanwhile.
    fn back_up(&self) {
        let since = lock(&self.down_since).take();
        if let Some(since) = since {
            info!(output = %self.cfg.name, upstream = %crate::config::redact_url(&self.cfg.url),
                down_for = ?since.elapsed(), queued = self.total.points(),
                "upstream is delivering again");
        }
    }

    /// Whether a 404 for `dest` is answered by creating the output's own database.
    fn creates(&self, dest: &Destination) -> bool {
        self.cfg.create_database
            && self.cfg.api == InfluxApi::V1
            && !self.cfg.database.is_empty()
            && *dest.db == *self.cfg.database
    }

    /// `CREATE DATABASE` for the output's own database, with its own credentials (what
    /// Telegraf and InfluxDB's graphite service do). True when it now exists.
    async fn create_database(&self) -> bool {
        let url = join_path(
            &reqwest::Url::parse(&self.cfg.url).expect("validated url"),
            "query",
        );
        let q = format!(
            "CREATE DATABASE \"{}\"",
            self.cfg.database.replace('"', "\\\"")
        );
        let mut req = self.client.post(url).form(&[("q", q.as_str())]);
        if !self.cfg.username.is_empty() {
            req = req.basic_auth(&self.cfg.username, Some(&self.cfg.password));
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                self.note_version(resp.headers());
                let message = upstream_message(resp).await;
                if message.contains("\"error\"") {
                    warn_limited!(self.log_limit, output = %self.cfg.name,
                        database = %self.cfg.database, "cannot create the database: {}", brief(&message));
                    return false;
                }
                info!(output = %self.cfg.name, database = %self.cfg.database, "database created (or already there)");
                true
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let message = upstream_message(resp).await;
                warn_limited!(self.log_limit, output = %self.cfg.name, database = %self.cfg.database,
                    "cannot create the database: HTTP {status}: {}", brief(&message));
                false
            }
            Err(e) => {
                warn_limited!(self.log_limit, output = %self.cfg.name, database = %self.cfg.database,
                    "cannot create the database: {}", error_chain(&e));
                false
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
        self.note_version(resp.headers());
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
                    "upstream answered 413 ({}); splitting the batch", brief(&message)
                );
                Attempt::TooLarge
            }
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => Attempt::Retry {
                reason: format!("HTTP {code}: {}", brief(&message)),
                after: retry_after,
            },
            // InfluxDB 1.x answers 500 for a retention policy (and some builds for a
            // database) that does not exist: no retry can make it appear.
            s if s.is_server_error() && is_missing_destination(&message) => {
                warn_limited!(
                    self.log_limit,
                    output = %self.cfg.name,
                    destination = %req.dest,
                    points = req.points,
                    "upstream refused the write, not retrying: HTTP {code}: {}", brief(&message)
                );
                Attempt::Rejected {
                    reason: "not_found",
                    dropped: req.points,
                    status: code,
                    message,
                }
            }
            s if s.is_server_error() => Attempt::Retry {
                reason: format!("HTTP {code}: {}", brief(&message)),
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
                    "upstream refused the write, not retrying: HTTP {code}: {}", brief(&message)
                );
                Attempt::Rejected {
                    reason,
                    dropped,
                    status: code,
                    message,
                }
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
    let mut permit = req.permit;
    let first_permit = permit.split(half, at);
    (
        Request {
            id: req.id,
            received: req.received,
            dest: req.dest.clone(),
            body: first,
            points: half,
            permit: first_permit,
        },
        Request {
            id: req.id,
            received: req.received,
            dest: req.dest,
            body: second,
            points: req.points - half,
            permit,
        },
    )
}

/// A request body gzipped at the fast level.
///
/// Each thread keeps one compressor and resets it between bodies: making one sets up (and
/// zeroes) about 300 KiB of deflate state, which for a batch of a few thousand lines cost
/// as much as compressing it. The gzip wrapper is zlib's own, so the CRC is computed as the
/// input is read into the window rather than in a second pass.
fn gzip(body: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    use std::cell::RefCell;
    thread_local! {
        static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new_gzip(Compression::fast(), 15));
    }
    DEFLATE.with_borrow_mut(|z| {
        z.reset();
        let mut out = Vec::with_capacity(body.len() / 4 + 64);
        loop {
            let read = usize::try_from(z.total_in())
                .unwrap_or(usize::MAX)
                .min(body.len());
            match z.compress_vec(&body[read..], &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => break,
                Ok(Status::Ok | Status::BufError) => out.reserve(out.capacity().max(64)),
                // Deflate refuses only misuse (a stream used past its end), which `reset`
                // rules out; should it happen, a compressor of its own does the body.
                Err(_) => {
                    *z = Compress::new_gzip(Compression::fast(), 15);
                    return gzip_once(body);
                }
            }
        }
        out
    })
}

/// [`gzip`] with a compressor made for this body alone.
fn gzip_once(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// Most of an upstream's error body that is read: enough for every message InfluxDB writes
/// (a partial write lists each refused line), bounded against a misbehaving upstream.
const MAX_ERROR_BODY: usize = 1 << 20;

/// The upstream's error text: InfluxDB's `{"error": ...}` (v1) or `{"message": ...}` (v2),
/// else the raw body; read up to [`MAX_ERROR_BODY`].
async fn upstream_message(mut resp: reqwest::Response) -> String {
    let mut raw = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_ERROR_BODY - raw.len();
        raw.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if raw.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw);
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            v.get("error")
                .or_else(|| v.get("message"))
                .and_then(|m| m.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| text.into_owned())
        .trim()
        .to_owned()
}

/// An upstream message cut to a log-friendly length.
fn brief(message: &str) -> std::borrow::Cow<'_, str> {
    match message.char_indices().nth(512) {
        Some((i, _)) => format!("{}…", &message[..i]).into(),
        None => message.into(),
    }
}

/// InfluxDB's words for a destination that does not exist.
fn is_missing_destination(message: &str) -> bool {
    message.contains("retention policy not found") || message.contains("database not found")
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

/// `[[outputs.influxdb]]`.
impl super::registry::OutputSpec for InfluxOutputConfig {
    fn kind(&self) -> &'static str {
        "influxdb"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn buffer_settings(&self) -> crate::config::BufferSettings {
        InfluxOutputConfig::buffer_settings(self)
    }

    fn build(&self, metrics: &Metrics, log_interval: Duration) -> Result<Arc<dyn Output>, String> {
        Ok(Arc::new(InfluxOutput::new(
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

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .expect("a whole gzip member");
        out
    }

    #[test]
    fn a_reused_compressor_gives_each_body_whole() {
        // Incompressible bytes outgrow the first guess at the output's size.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let lines = b"cpu,host=a value=1 1700000000000000000\n".repeat(5_000);
        for body in [&lines[..], &noise, b"", &lines[..100], &noise[..10]] {
            let gz = gzip(body);
            assert_eq!(&gz[..3], [0x1f, 0x8b, 8], "a gzip header");
            assert_eq!(gunzip(&gz), body);
        }
    }

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
            id: 0,
            received: Instant::now(),
            dest: Destination::new("d", ""),
            body: b"a v=1 1\nb v=2 2\nc v=3 3\n".to_vec(),
            points: 3,
            permit: Permit::default(),
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
