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
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use graphite_pickle::FrameEncoder;
use prometheus::{Histogram, IntCounter, IntGauge};
use tokio::{io::AsyncWriteExt, net::TcpStream, task::JoinSet};
use tracing::info;

use super::{
    placement::PlacementCache, Chunk, Form, Grant, Output, Reservation, Shed, Slot, Target,
};
use crate::{
    cluster::{Cluster, Destination},
    config::{GraphiteOutputConfig, GraphiteProtocol, Overflow},
    metrics::{Metrics, RateLimit},
    queue::{Acquire, Budget, EntryQueue, Permit, Waiter},
    tls::{ClientTls, Conn},
    translate::influx::InfluxToGraphite,
    warn_limited,
};

/// Plaintext lines bound for one destination, with the capacity they hold in its queue.
#[derive(Debug)]
struct Entry {
    body: Bytes,
    points: usize,
    permit: Permit,
}

#[derive(Debug)]
struct DestCtx {
    output: String,
    destination: Destination,
    label: String,
    /// This destination's `queue_points`, a share of the output's (unbounded) total so that
    /// a wait on the output hears every destination's releases.
    budget: Budget,
    queue: EntryQueue<Entry>,
    /// Since when offers have found this destination full: past `stall_timeout` what is
    /// routed to it is shed instead of waited for.
    full_since: Mutex<Option<Instant>>,
    up: AtomicBool,
    up_gauge: IntGauge,
    cfg: GraphiteOutputConfig,
    sent: IntCounter,
    /// This destination's share of `sent` and of the output's drops.
    dest_sent: IntCounter,
    dest_dropped: IntCounter,
    retries: IntCounter,
    duration: Histogram,
    metrics: Metrics,
    log_limit: RateLimit,
    /// With `tls = true`.
    tls: Option<ClientTls>,
}

#[derive(Debug)]
struct Inner {
    cfg: GraphiteOutputConfig,
    cluster: Cluster,
    dests: Vec<Arc<DestCtx>>,
    total: Budget,
    form: Form,
    /// Set by [`Output::hand_over`]: where each destination worker moves what it holds.
    successor: Mutex<Option<Arc<dyn Output>>>,
    abandoned: AtomicBool,
    metrics: Metrics,
    log_limit: RateLimit,
    /// Where names were placed, for hashing clusters (a name's place depends on it alone).
    placements: Mutex<PlacementCache>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Handle to a running Graphite output.
#[derive(Debug, Clone)]
pub struct GraphiteOutput {
    inner: Arc<Inner>,
}

impl GraphiteOutput {
    pub fn new(
        cfg: GraphiteOutputConfig,
        to_graphite: InfluxToGraphite,
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
        let total = Budget::new(
            usize::MAX,
            usize::MAX,
            Some(metrics.queue_points.with_label_values(&[name])),
        );
        let dests = destinations
            .into_iter()
            .map(|destination| {
                let label = destination.to_string();
                let tls = cfg
                    .tls
                    .then(|| {
                        let name = cfg.tls_server_name.as_deref().unwrap_or(destination.host());
                        ClientTls::new(cfg.tls_ca.as_deref(), name)
                            .map_err(|e| format!("destination {label}: TLS: {e}"))
                    })
                    .transpose()?;
                Ok(Arc::new(DestCtx {
                    output: cfg.name.clone(),
                    budget: total.child_with_gauge(
                        cfg.queue_points,
                        cfg.queue_bytes,
                        metrics.destination_queue.with_label_values(&[name, &label]),
                    ),
                    dest_sent: metrics.destination_sent.with_label_values(&[name, &label]),
                    dest_dropped: metrics
                        .destination_dropped
                        .with_label_values(&[name, &label]),
                    queue: EntryQueue::default(),
                    full_since: Mutex::new(None),
                    up: AtomicBool::new(false),
                    up_gauge: metrics.destination_up.with_label_values(&[name, &label]),
                    sent: metrics.sent_points.with_label_values(&[name]),
                    retries: metrics.retries.with_label_values(&[name]),
                    duration: metrics.batch_duration.with_label_values(&[name]),
                    metrics: metrics.clone(),
                    log_limit: RateLimit::new(log_interval),
                    cfg: cfg.clone(),
                    tls,
                    destination,
                    label,
                }))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                cluster,
                dests,
                total,
                form: Form::Graphite(Arc::new(to_graphite)),
                successor: Mutex::new(None),
                abandoned: AtomicBool::new(false),
                metrics: metrics.clone(),
                log_limit: RateLimit::new(log_interval),
                placements: Mutex::new(PlacementCache::new()),
                cfg,
            }),
        })
    }

    pub fn config(&self) -> &GraphiteOutputConfig {
        &self.inner.cfg
    }
}

impl Output for GraphiteOutput {
    fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    fn form(&self) -> &Form {
        &self.inner.form
    }

    fn start(&self, tasks: &mut JoinSet<()>) {
        for index in 0..self.inner.dests.len() {
            let inner = self.inner.clone();
            tasks.spawn(async move { destination_worker(inner, index).await });
        }
    }

    fn reserve(&self, chunk: Chunk, into: &mut Reservation) {
        self.inner.reserve(chunk, into, false);
    }

    fn commit(&self, reservation: Reservation) -> Vec<Chunk> {
        self.inner.commit(reservation)
    }

    fn waiter(&self) -> Waiter {
        self.inner.total.waiter()
    }

    fn stall_deadline(&self, rest: &[Chunk]) -> Option<tokio::time::Instant> {
        let stall = self.inner.cfg.stall_timeout;
        rest.iter()
            .filter_map(|c| {
                let d = self.inner.dests.get(c.slot?)?;
                let since = (*lock(&d.full_since))?;
                Some(tokio::time::Instant::from_std(since + stall))
            })
            .min()
    }

    fn adopt(&self, chunks: Vec<Chunk>) {
        for chunk in chunks {
            let mut r = Reservation::default();
            self.inner.reserve(chunk, &mut r, true);
            let refused: usize = self.inner.commit(r).iter().map(|c| c.points).sum();
            self.inner
                .drop_points(refused, "shutdown", "handed over while shutting down");
        }
    }

    fn close(&self) {
        self.inner.total.close();
        for d in &self.inner.dests {
            d.budget.close();
            d.queue.close();
        }
    }

    fn hand_over(&self, successor: Arc<dyn Output>) {
        *lock(&self.inner.successor) = Some(successor);
        self.close();
    }

    fn upstream_key(&self) -> String {
        let c = &self.inner.cfg;
        format!(
            "graphite {:?} {} {} {:?}",
            c.cluster, c.replication, c.diverse_replicas, c.destinations
        )
    }

    fn outstanding(&self) -> usize {
        self.inner.total.points()
    }

    fn abandon(&self, reason: &str) {
        if self.inner.abandoned.swap(true, Ordering::SeqCst) {
            return;
        }
        for d in &self.inner.dests {
            let n = d.budget.points();
            d.drop_points(n, reason, "deadline passed with points undelivered");
        }
    }

    fn drop_points(&self, n: usize, reason: &str, why: &str) {
        self.inner.drop_points(n, reason, why);
    }
}

impl Inner {
    /// Places each line of the chunk on its destination(s) and takes room in each one's
    /// queue. `force` takes it over the limit (handed-over points).
    fn reserve(&self, chunk: Chunk, into: &mut Reservation, force: bool) {
        let n = self.dests.len();
        if let Some(i) = chunk.slot.filter(|&i| i < n) {
            // Placed before: it stays placed, unless its member is down and the cluster
            // sends such points to the members that are up.
            if !self.rehomes(i) || self.dests[i].up.load(Ordering::Relaxed) {
                return self.reserve_on(i, chunk, into, force);
            }
        }
        if n == 1 || self.cluster.sends_everything() {
            for i in 0..n {
                let part = Chunk {
                    slot: Some(i),
                    ..chunk.clone()
                };
                self.reserve_on(i, part, into, force);
            }
            return;
        }
        // Room for an even spread, so most parts never grow.
        let share = chunk.body.len() / n + chunk.body.len() / (4 * n);
        let mut bufs: Vec<(Vec<u8>, usize)> =
            (0..n).map(|_| (Vec::with_capacity(share), 0)).collect();
        let mut chosen = Vec::with_capacity(4);
        let mut homeless = 0;
        // Hashing clusters place a name by the name alone: places seen before are kept.
        let mut cache = self
            .cluster
            .kind()
            .is_hashing()
            .then(|| lock(&self.placements));
        let body = &chunk.body[..];
        // Lines go in groups: their names are looked up one after the other before any is
        // placed, so the cache's misses overlap instead of adding up.
        const GROUP: usize = 8;
        let mut group = [(0usize, 0usize, 0usize, 0u64, None); GROUP];
        let mut start = 0;
        while start < body.len() {
            let mut n = 0;
            while n < GROUP && start < body.len() {
                let (name_end, end) = crate::line_scan::name_and_end(body, start);
                let hash = cache.as_ref().map_or(0, |c| c.hash(&body[start..name_end]));
                group[n] = (start, end, name_end, hash, None);
                start = end;
                n += 1;
            }
            let epoch = cache.as_ref().map(|c| {
                for (start, _, name_end, hash, found) in &mut group[..n] {
                    *found = c.find(*hash, &body[*start..*name_end]);
                }
                c.epoch()
            });
            for &(start, end, name_end, hash, found) in &group[..n] {
                let name = &body[start..name_end];
                match cache.as_mut() {
                    Some(cache) => match found.filter(|_| Some(cache.epoch()) == epoch) {
                        Some(found) => cache.found(found, &mut chosen),
                        None => cache
                            .place_hashed(hash, name, &mut chosen, |n, o| self.cluster.place(n, o)),
                    },
                    None => match std::str::from_utf8(name) {
                        Ok(name) => self.place(name, &mut chosen),
                        Err(_) => chosen.clear(),
                    },
                }
                if chosen.is_empty() {
                    homeless += 1;
                }
                for &i in &chosen {
                    bufs[i].0.extend_from_slice(&body[start..end]);
                    bufs[i].1 += 1;
                }
            }
        }
        drop(cache);
        if homeless > 0 {
            into.shed.push(Shed {
                points: homeless,
                reason: "no_destination",
                why: "no healthy destination",
            });
        }
        for (i, (buf, count)) in bufs.into_iter().enumerate() {
            if count > 0 {
                let part = Chunk {
                    target: chunk.target.clone(),
                    body: Bytes::from(buf),
                    points: count,
                    slot: Some(i),
                    tickets: chunk.tickets.clone(),
                };
                self.reserve_on(i, part, into, force);
            }
        }
    }

    fn reserve_on(&self, i: usize, mut chunk: Chunk, into: &mut Reservation, force: bool) {
        let d = &self.dests[i];
        if !force && d.cfg.overflow == Overflow::Block {
            // A chunk larger than the room left takes what fits; the rest waits.
            let (points_room, bytes_room) = d.budget.room();
            if chunk.points > points_room || chunk.body.len() > bytes_room {
                if let Some((head, tail)) =
                    chunk.split_to_fit((points_room, bytes_room), super::plaintext_lines)
                {
                    if let Acquire::Granted(permit) =
                        d.budget.try_acquire(head.points, head.body.len())
                    {
                        into.grants.push(Grant {
                            slot: Slot::Destination(i),
                            target: head.target,
                            body: head.body,
                            points: head.points,
                            permit: permit.with_tickets(head.tickets),
                        });
                        chunk = tail;
                    }
                }
            }
        }
        let bytes = chunk.body.len();
        let acquired = if force {
            Acquire::Granted(d.budget.force(chunk.points, bytes))
        } else {
            let mut a = d.budget.try_acquire(chunk.points, bytes);
            if matches!(a, Acquire::Full) && d.cfg.overflow == Overflow::DropOldest {
                // Make room by dropping what waits longest (not what is being written).
                while matches!(a, Acquire::Full) {
                    let Some(old) = d.queue.pop_front() else {
                        break;
                    };
                    d.drop_points(
                        old.points,
                        "queue_full",
                        "the destination's queue is full (dropping the oldest)",
                    );
                    drop(old);
                    a = d.budget.try_acquire(chunk.points, bytes);
                }
            }
            a
        };
        match acquired {
            Acquire::Granted(permit) => {
                *lock(&d.full_since) = None;
                into.grants.push(Grant {
                    slot: Slot::Destination(i),
                    target: chunk.target,
                    body: chunk.body,
                    points: chunk.points,
                    permit: permit.with_tickets(chunk.tickets),
                });
            }
            Acquire::Closed => into.closed.push(chunk),
            Acquire::Full => {
                if d.cfg.overflow != Overflow::Block {
                    into.shed.push(Shed {
                        points: chunk.points,
                        reason: "queue_full",
                        why: "the destination's queue is full",
                    });
                    return;
                }
                let since = *lock(&d.full_since).get_or_insert_with(Instant::now);
                if since.elapsed() >= d.cfg.stall_timeout {
                    let (reason, why) = if d.up.load(Ordering::Relaxed) {
                        (
                            "destination_stalled",
                            "the destination does not drain its queue",
                        )
                    } else {
                        (
                            "destination_down",
                            "the destination is down and its queue is full",
                        )
                    };
                    into.shed.push(Shed {
                        points: chunk.points,
                        reason,
                        why,
                    });
                } else {
                    into.rest.push(chunk);
                }
            }
        }
    }

    fn commit(&self, reservation: Reservation) -> Vec<Chunk> {
        for s in reservation.shed {
            self.drop_points(s.points, s.reason, s.why);
        }
        let mut refused = Vec::new();
        for g in reservation.grants {
            let Slot::Destination(i) = g.slot else {
                continue;
            };
            let entry = Entry {
                body: g.body,
                points: g.points,
                permit: g.permit,
            };
            if let Err(mut e) = self.dests[i].queue.push(entry) {
                refused.push(Chunk {
                    target: g.target,
                    body: e.body,
                    points: e.points,
                    slot: Some(i),
                    tickets: e.permit.take_tickets(),
                });
            }
        }
        refused
    }

    /// The destinations a metric name goes to now (health counts for `any_of`/`failover`).
    fn place(&self, name: &str, out: &mut Vec<usize>) {
        let dests = &self.dests;
        self.cluster
            .place_healthy(name, &|i| dests[i].up.load(Ordering::Relaxed), out);
    }

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

impl DestCtx {
    fn drop_points(&self, n: usize, reason: &str, why: &str) {
        self.metrics
            .dropped
            .with_label_values(&[&self.output, reason])
            .inc_by(n as u64);
        self.dest_dropped.inc_by(n as u64);
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
    let mut conn: Option<Conn> = None;
    // Taken from the queue, not yet written: (entry, is_replay).
    let mut pending: VecDeque<(Entry, bool)> = VecDeque::new();
    // Written on the current connection, kept for a replay if it breaks.
    let mut replay: VecDeque<Entry> = VecDeque::new();
    let mut replay_points = 0usize;
    let mut popped = Vec::new();
    let mut wire = Vec::with_capacity(256 * 1024);
    let mut attempt = 0u32;
    let encoder = FrameEncoder::new();
    let mut handed_over = false;
    // Since when it could not connect (for one line down, one line back).
    let mut down_since: Option<Instant> = None;
    loop {
        if !handed_over {
            let successor = lock(&inner.successor).clone();
            if let Some(successor) = successor {
                // Reloaded with the same destinations: what is not written yet goes to the
                // new output, which keeps the same place for it.
                handed_over = true;
                hand_over(&d, index, &mut pending, successor);
            }
        }
        if pending.is_empty() && d.queue.is_drained() {
            break;
        }
        // A connection the peer closed (carbon restarting) is noticed before writing into it.
        if conn.as_mut().is_some_and(|c| c.peer_closed()) {
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
                    if let Some(since) = down_since.take() {
                        info!(output = %d.output, destination = %d.label,
                            down_for = ?since.elapsed(), queued = d.budget.points(),
                            "destination is back");
                    }
                    attempt = 0;
                    d.set_up(true);
                    conn = Some(c);
                }
                Err(e) => {
                    if down_since.is_none() {
                        down_since = Some(Instant::now());
                        tracing::warn!(output = %d.output, destination = %d.label,
                            "destination is down ({e}); its points wait in its queue");
                    }
                    d.set_up(false);
                    d.send_error("connect");
                    if inner.rehomes(index) {
                        rehome(&inner, &d, index, &mut pending);
                    }
                    let delay = d.backoff(attempt);
                    warn_limited!(d.log_limit, output = %d.output, destination = %d.label,
                        queued = d.budget.points(), "cannot connect ({e}); retrying in {delay:?}");
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
        // Plaintext is written as it is queued: one entry goes out from its own buffer, only
        // several are gathered into one write.
        let single = d.cfg.protocol == GraphiteProtocol::Plaintext && batch.len() == 1;
        for (e, _) in &batch {
            match d.cfg.protocol {
                GraphiteProtocol::Plaintext if single => {}
                GraphiteProtocol::Plaintext => wire.extend_from_slice(&e.body),
                GraphiteProtocol::Pickle => {
                    let summary = encoder.encode(plaintext_points(&e.body), &mut wire);
                    oversized += summary.oversized;
                }
            }
        }
        let bytes: &[u8] = if single { &batch[0].0.body } else { &wire };
        if oversized > 0 {
            d.drop_points(
                oversized,
                "too_large",
                "a point does not fit in one pickle frame",
            );
        }
        let started = Instant::now();
        let stream = conn.as_mut().expect("connected");
        let write = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        let failure = match tokio::time::timeout(d.cfg.write_timeout, write).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some((format!("write failed: {e}"), "write")),
            Err(_) => Some(("write timed out".to_string(), "timeout")),
        };
        match failure {
            None => {
                d.duration.observe(started.elapsed().as_secs_f64());
                for (mut e, replayed) in batch {
                    if !replayed {
                        d.sent.inc_by(e.points as u64);
                        d.dest_sent.inc_by(e.points as u64);
                    }
                    // Written: the queue's capacity comes back; the copy kept for a replay
                    // is bounded by `replay_points` instead.
                    drop(std::mem::take(&mut e.permit));
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
/// up, without waiting: what finds no room stays here. Replays are left out: they were
/// written once already, to this member.
fn rehome(inner: &Inner, d: &DestCtx, index: usize, pending: &mut VecDeque<(Entry, bool)>) {
    let mut moved = Vec::new();
    d.queue.take_all(&mut moved);
    moved.extend(
        pending
            .drain(..)
            .filter(|(_, replayed)| !replayed)
            .map(|(e, _)| e),
    );
    let mut r = Reservation::default();
    let mut points = 0;
    for mut e in moved {
        points += e.points;
        // Released here, taken again where it lands (or here again if nowhere has room).
        let chunk = Chunk {
            target: Target::Default,
            tickets: e.permit.take_tickets(),
            body: e.body,
            points: e.points,
            slot: None,
        };
        inner.reserve(chunk, &mut r, false);
    }
    let mut kept = std::mem::take(&mut r.rest);
    kept.append(&mut r.closed);
    kept.extend(inner.commit(r));
    for c in kept {
        points -= c.points;
        let permit = d
            .budget
            .force(c.points, c.body.len())
            .with_tickets(c.tickets);
        let entry = Entry {
            body: c.body,
            points: c.points,
            permit,
        };
        pending.push_back((entry, false));
    }
    if points > 0 {
        info!(output = %d.output, destination = %d.label, index, points, "destination is down: its points go to the others");
    }
}

/// Moves what a retiring destination holds (queued, and taken but not written) to the
/// successor output's same destination.
fn hand_over(
    d: &DestCtx,
    index: usize,
    pending: &mut VecDeque<(Entry, bool)>,
    successor: Arc<dyn Output>,
) {
    let mut moved = Vec::new();
    moved.extend(
        pending
            .drain(..)
            .filter(|(_, replayed)| !replayed)
            .map(|(e, _)| e),
    );
    d.queue.take_all(&mut moved);
    let chunks: Vec<Chunk> = moved
        .into_iter()
        .map(|mut e| Chunk {
            target: Target::Default,
            tickets: e.permit.take_tickets(),
            body: e.body,
            points: e.points,
            slot: Some(index),
        })
        .collect();
    let points: usize = chunks.iter().map(|c| c.points).sum();
    if points > 0 {
        info!(output = %d.output, destination = %d.label, points, "handing what is queued to the reloaded output");
    }
    successor.adopt(chunks);
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

/// Connects (and with `tls`, does the handshake, which must verify the destination's
/// certificate), all within `connect_timeout`.
async fn connect(d: &DestCtx) -> std::io::Result<Conn> {
    let addr = d.destination.socket_addr();
    let connect = async {
        let stream = TcpStream::connect(addr.as_str()).await?;
        stream.set_nodelay(true)?;
        match &d.tls {
            None => Ok(Conn::Plain(stream)),
            Some(tls) => tls.connect(stream).await,
        }
    };
    tokio::time::timeout(d.cfg.connect_timeout, connect)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
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

/// `[[outputs.graphite]]`.
impl super::registry::OutputSpec for GraphiteOutputConfig {
    fn kind(&self) -> &'static str {
        "graphite"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn buffer_settings(&self) -> crate::config::BufferSettings {
        GraphiteOutputConfig::buffer_settings(self)
    }

    fn build(&self, metrics: &Metrics, log_interval: Duration) -> Result<Arc<dyn Output>, String> {
        let to_graphite =
            InfluxToGraphite::new(&self.to_graphite_config()).map_err(|e| e.to_string())?;
        Ok(Arc::new(GraphiteOutput::new(
            self.clone(),
            to_graphite,
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
