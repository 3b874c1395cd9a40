//! `buffer = "disk"`: an output whose queue is a log on disk (the `disk-buffer` crate), in
//! front of the output that delivers.
//!
//! Every batch an output takes is appended to its log first (a write-ahead copy), then a
//! feeder task reads the log in order and hands each record to the delivering output as its
//! memory queue has room. A record is acknowledged, and its segment eventually deleted, only
//! once every point of it was delivered or given up on and counted: the record travels as a
//! [`Ticket`] inside the points' permits, through every split and merge of the delivering
//! output, and the last piece dropped acknowledges it. So:
//!
//! - a stuck destination fills the log, not memory, and does not push back on senders until
//!   the log reaches `max_buffer_bytes`;
//! - a restart (or `kill -9`) replays every record not acknowledged, in order, first, at most
//!   `replay_rate` points a second so a recovering upstream is not flattened; delivery is at
//!   least once (a repeated point is harmless in InfluxDB and carbon);
//! - a torn or corrupt tail is cut at open and counted, never a crash loop;
//! - a batch the delivering output gives up on (its retry budget) goes to a dead-letter log
//!   beside it, listed by `fluxgate buffer list` and replayed by `fluxgate buffer replay`;
//! - what is in memory at SIGTERM is already on disk: the log is fsynced and whatever is not
//!   delivered by the deadline stays for the next start instead of being dropped.
//!
//! The log is fsynced every `sync_interval` (the output's flush interval) and on demand for
//! `ack = "durable"`, which answers a write once it is on disk.

use std::{
    collections::VecDeque,
    fmt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use disk_buffer::{Buffer, Options, RecordId};
use futures::future::BoxFuture;
use tokio::{
    sync::{watch, Notify},
    task::JoinSet,
};
use tracing::{error, info, warn};

use super::{Chunk, Destination, Form, Grant, Output, Reservation, Shed, Slot, Target};
use crate::{
    metrics::Metrics,
    queue::{Permit, Waiter},
};

/// One disk-buffer record the points of a permit came from. Dropping the last clone
/// acknowledges the record, unless the log was frozen (shutdown deadline): then it stays for
/// the next start.
///
/// A ticket can also stand for a message read from elsewhere ([`Ticket::on_done`], a NATS
/// message): its last drop then acknowledges that message.
pub struct Ticket {
    record: Option<(Arc<DiskShared>, RecordId)>,
    done: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.record {
            Some((shared, id)) => write!(f, "Ticket({}, {})", shared.name, id),
            None => write!(f, "Ticket(message)"),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(done) = self.done.get_mut().ok().and_then(Option::take) {
            done();
        }
        let Some((shared, id)) = &self.record else {
            return;
        };
        if shared.frozen.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = shared.buffer.ack(*id) {
            warn!(output = %shared.name, "cannot acknowledge a buffered record: {e}");
        }
        shared.room.notify_waiters();
    }
}

impl Ticket {
    fn record(shared: Arc<DiskShared>, id: RecordId) -> Self {
        Self {
            record: Some((shared, id)),
            done: std::sync::Mutex::new(None),
        }
    }

    /// A ticket that runs `done` once its last clone is dropped: every point that carried
    /// it was delivered, or given up on and counted.
    pub fn on_done(done: impl FnOnce() + Send + 'static) -> Self {
        Self {
            record: None,
            done: std::sync::Mutex::new(Some(Box::new(done))),
        }
    }

    /// Keeps points the delivering output gave up on in the dead-letter log. True when
    /// they were kept; false for a ticket that is not a disk-buffer record.
    pub fn dead_letter(&self, target: &Target, body: &[u8], points: usize) -> bool {
        let Some((shared, _)) = &self.record else {
            return false;
        };
        let record = encode(target, points, body);
        match shared.dead.append(&record).and_then(|_| shared.dead.sync()) {
            Ok(_) => true,
            Err(e) => {
                error!(output = %shared.name, points, "cannot keep points in the dead-letter buffer: {e}");
                false
            }
        }
    }
}

/// The log of one output and what reads it; kept across reloads of the output.
pub struct DiskShared {
    name: String,
    buffer: Buffer,
    dead: Buffer,
    /// Set at the shutdown deadline: nothing more is acknowledged.
    frozen: AtomicBool,
    /// Woken when a record is appended.
    appended: Notify,
    /// Woken when a record is acknowledged (room on disk).
    room: Arc<Notify>,
    /// Records appended, and records known fsynced (for `ack = "durable"`).
    written: AtomicU64,
    synced: watch::Sender<u64>,
    sync_now: Notify,
    /// Records recovered at open and not read again yet: these are replayed at `replay_rate`.
    backlog: AtomicU64,
    metrics: Metrics,
}

impl fmt::Debug for DiskShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskShared")
            .field("name", &self.name)
            .field("dir", &self.buffer.dir())
            .finish_non_exhaustive()
    }
}

/// A log of at most `max_bytes` in eight or so segments (1 to 64 MiB each), so that a fully
/// delivered segment gives back a useful part of it.
fn log_options(max_bytes: u64) -> Options {
    Options {
        max_bytes,
        segment_bytes: (max_bytes / 8).clamp(1 << 20, 64 << 20),
    }
}

/// Where an output's logs live under `data_dir`.
pub fn buffer_dir(data_dir: &Path, output: &str) -> PathBuf {
    data_dir.join("buffer").join(output)
}

/// Where an output's dead-letter log lives under `data_dir`.
pub fn dead_letter_dir(data_dir: &Path, output: &str) -> PathBuf {
    data_dir.join("dead-letter").join(output)
}

impl DiskShared {
    /// Opens (or recovers) the logs of output `name`. What recovery cut is counted and
    /// logged.
    pub fn open(
        data_dir: &Path,
        name: &str,
        max_bytes: u64,
        metrics: &Metrics,
    ) -> Result<Arc<Self>, String> {
        let options = log_options(max_bytes);
        let dir = buffer_dir(data_dir, name);
        let (buffer, recovery) =
            Buffer::open(&dir, options).map_err(|e| format!("{}: {e}", dir.display()))?;
        let dead_dir = dead_letter_dir(data_dir, name);
        let (dead, dead_recovery) =
            Buffer::open(&dead_dir, options).map_err(|e| format!("{}: {e}", dead_dir.display()))?;
        for (what, r) in [
            ("buffer", &recovery),
            ("dead-letter buffer", &dead_recovery),
        ] {
            if !r.is_clean() {
                metrics
                    .buffer_repaired
                    .with_label_values(&[name])
                    .inc_by(r.cuts.len() as u64);
                warn!(output = name, "the {what} was damaged and repaired: {r}");
            }
        }
        if recovery.records > 0 {
            info!(
                output = name,
                records = recovery.records,
                bytes = recovery.bytes,
                "replaying what the disk buffer kept"
            );
        }
        Ok(Arc::new(Self {
            name: name.to_owned(),
            buffer,
            dead,
            frozen: AtomicBool::new(false),
            appended: Notify::new(),
            room: Arc::new(Notify::new()),
            written: AtomicU64::new(0),
            synced: watch::channel(0).0,
            sync_now: Notify::new(),
            backlog: AtomicU64::new(recovery.records),
            metrics: metrics.clone(),
        }))
    }

    fn append(
        &self,
        target: &Target,
        points: usize,
        body: &[u8],
    ) -> Result<u64, disk_buffer::Error> {
        self.buffer.append(&encode(target, points, body))?;
        let n = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        self.appended.notify_one();
        Ok(n)
    }

    /// Resolves once record number `n` (of this run) is fsynced.
    async fn synced_past(&self, n: u64) {
        let mut rx = self.synced.subscribe();
        self.sync_now.notify_one();
        let _ = rx.wait_for(|&s| s >= n).await;
    }

    /// Fsyncs what was appended; the count it covers is published for durable writers.
    async fn sync(self: &Arc<Self>) {
        let upto = self.written.load(Ordering::SeqCst);
        let me = self.clone();
        let done = tokio::task::spawn_blocking(move || me.buffer.sync()).await;
        match done {
            Ok(Ok(_)) => {
                self.synced.send_if_modified(|s| {
                    let moved = upto > *s;
                    *s = (*s).max(upto);
                    moved
                });
            }
            Ok(Err(e)) => error!(output = %self.name, "cannot fsync the disk buffer: {e}"),
            Err(e) => error!(output = %self.name, "the disk buffer's fsync failed: {e}"),
        }
    }
}

/// Record payload: `[u8 target kind][u32 LE points][u16 LE db len][db][u16 LE rp len][rp]`
/// then the body (the delivering output's wire form).
fn encode(target: &Target, points: usize, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 16);
    let (kind, db, rp): (u8, &str, &str) = match target {
        Target::Default => (0, "", ""),
        Target::Explicit(d) => (1, &d.db, &d.rp),
    };
    out.push(kind);
    out.extend_from_slice(&(points as u32).to_le_bytes());
    for s in [db, rp] {
        out.extend_from_slice(&(s.len().min(u16::MAX as usize) as u16).to_le_bytes());
        out.extend_from_slice(&s.as_bytes()[..s.len().min(u16::MAX as usize)]);
    }
    out.extend_from_slice(body);
    out
}

fn decode(record: &[u8]) -> Option<(Target, usize, Bytes)> {
    let kind = *record.first()?;
    let points = u32::from_le_bytes(record.get(1..5)?.try_into().ok()?) as usize;
    let mut at = 5;
    let mut field = || -> Option<String> {
        let len = u16::from_le_bytes(record.get(at..at + 2)?.try_into().ok()?) as usize;
        let s = std::str::from_utf8(record.get(at + 2..at + 2 + len)?).ok()?;
        at += 2 + len;
        Some(s.to_owned())
    };
    let (db, rp) = (field()?, field()?);
    let target = match kind {
        0 => Target::Default,
        1 => Target::Explicit(Destination::new(&db, &rp)),
        _ => return None,
    };
    Some((target, points, Bytes::copy_from_slice(&record[at..])))
}

/// An output with a disk buffer in front of the output that delivers.
#[derive(Debug)]
pub struct DiskBuffered {
    shared: Arc<DiskShared>,
    inner: Arc<dyn Output>,
    max_bytes: u64,
    drop_when_full: bool,
    replay_rate: u64,
    sync_interval: Duration,
    closing: AtomicBool,
    /// Set by a reload: the feeder stops and the successor's feeder carries on.
    retired: AtomicBool,
    stop: Notify,
}

impl DiskBuffered {
    pub fn new(
        shared: Arc<DiskShared>,
        inner: Arc<dyn Output>,
        max_bytes: u64,
        drop_when_full: bool,
        replay_rate: u64,
        sync_interval: Duration,
    ) -> Self {
        Self {
            shared,
            inner,
            max_bytes,
            drop_when_full,
            replay_rate,
            sync_interval,
            closing: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            stop: Notify::new(),
        }
    }

    fn closed(&self) -> bool {
        self.closing.load(Ordering::SeqCst) || self.retired.load(Ordering::SeqCst)
    }
}

/// Records the feeder holds back (their destination was full) before it stops reading.
const MAX_DEFERRED_BYTES: usize = 16 << 20;

/// Records read from the log per blocking call.
const READ_BATCH: usize = 256;

impl Output for DiskBuffered {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn form(&self) -> &Form {
        self.inner.form()
    }

    fn start(&self, _tasks: &mut JoinSet<()>) {
        unreachable!("a disk-buffered output is started with start_buffered");
    }

    fn reserve(&self, chunk: Chunk, into: &mut Reservation) {
        if self.closed() {
            return into.closed.push(chunk);
        }
        let needed = chunk.body.len() as u64 + 64;
        if self.shared.buffer.disk_bytes() + needed > self.max_bytes {
            if self.drop_when_full {
                into.shed.push(Shed {
                    points: chunk.points,
                    reason: "buffer_full",
                    why: "the disk buffer is full (max_buffer_bytes)",
                });
            } else {
                into.rest.push(chunk);
            }
            return;
        }
        into.grants.push(Grant {
            slot: Slot::Disk,
            target: chunk.target,
            body: chunk.body,
            points: chunk.points,
            // Tickets of messages read from elsewhere: let go once the log is fsynced.
            permit: Permit::default().with_tickets(chunk.tickets),
        });
    }

    fn commit(&self, reservation: Reservation) -> Vec<Chunk> {
        for s in reservation.shed {
            self.inner.drop_points(s.points, s.reason, s.why);
        }
        let mut held = Vec::new();
        for mut g in reservation.grants {
            held.extend(g.permit.take_tickets());
            if let Err(e) = self.shared.append(&g.target, g.points, &g.body) {
                let reason = if matches!(e, disk_buffer::Error::Full { .. }) {
                    "buffer_full"
                } else {
                    "buffer_error"
                };
                self.inner
                    .drop_points(g.points, reason, "cannot append to the disk buffer");
                warn!(output = self.name(), "disk buffer: {e}");
            }
        }
        if !held.is_empty() {
            let shared = self.shared.clone();
            let upto = shared.written.load(Ordering::SeqCst);
            tokio::spawn(async move {
                shared.synced_past(upto).await;
                drop(held);
            });
        }
        Vec::new()
    }

    fn waiter(&self) -> Waiter {
        Waiter::new(self.shared.room.clone())
    }

    fn stall_deadline(&self, _rest: &[Chunk]) -> Option<tokio::time::Instant> {
        None
    }

    fn adopt(&self, chunks: Vec<Chunk>) {
        // From a retiring output: on disk already when they carry records, else now.
        let (buffered, fresh): (Vec<Chunk>, Vec<Chunk>) =
            chunks.into_iter().partition(|c| !c.tickets.is_empty());
        self.inner.adopt(buffered);
        for c in fresh {
            if self.shared.append(&c.target, c.points, &c.body).is_err() {
                self.inner.drop_points(
                    c.points,
                    "buffer_full",
                    "handed over to a full disk buffer",
                );
            }
        }
    }

    fn close(&self) {
        // The feeder reads the log to its end, then closes the delivering output.
        self.closing.store(true, Ordering::SeqCst);
        self.stop.notify_waiters();
        self.shared.room.notify_waiters();
    }

    fn hand_over(&self, successor: Arc<dyn Output>) {
        self.retired.store(true, Ordering::SeqCst);
        self.stop.notify_waiters();
        self.inner.hand_over(successor);
    }

    fn upstream_key(&self) -> String {
        format!("disk {}", self.inner.upstream_key())
    }

    fn outstanding(&self) -> usize {
        self.inner.outstanding()
    }

    fn persists(&self) -> bool {
        true
    }

    fn abandon(&self, _reason: &str) {
        // Nothing is lost: what is not delivered stays in the log for the next start.
        self.shared.frozen.store(true, Ordering::SeqCst);
        if let Err(e) = self.shared.buffer.sync() {
            error!(output = self.name(), "cannot fsync the disk buffer: {e}");
        }
        info!(
            output = self.name(),
            records = self.shared.buffer.pending_records(),
            bytes = self.shared.buffer.pending_bytes(),
            "undelivered points stay in the disk buffer for the next start"
        );
    }

    fn drop_points(&self, n: usize, reason: &str, why: &str) {
        self.inner.drop_points(n, reason, why);
    }

    fn as_influx(&self) -> Option<&super::influxdb::InfluxOutput> {
        self.inner.as_influx()
    }

    fn commit_durable(&self, reservation: Reservation) -> BoxFuture<'static, bool> {
        let before = self.shared.written.load(Ordering::SeqCst);
        let count = reservation.grants.len() as u64;
        self.commit(reservation);
        let shared = self.shared.clone();
        Box::pin(async move {
            shared.synced_past(before + count).await;
            true
        })
    }

    fn barrier(&self, db: &str) -> Option<BoxFuture<'static, ()>> {
        self.inner.barrier(db)
    }
}

/// Starts the delivering output, the feeder and the syncer.
pub fn start_buffered(output: &Arc<DiskBuffered>, tasks: &mut JoinSet<()>) {
    let mut inner_tasks = JoinSet::new();
    output.inner.start(&mut inner_tasks);
    let me = output.clone();
    tasks.spawn(async move {
        feed(&me).await;
        // Whatever the feeder ends with, the delivering output finishes what it took.
        while inner_tasks.join_next().await.is_some() {}
        me.shared.sync().await;
    });
    let me = output.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(me.sync_interval) => {}
                _ = me.shared.sync_now.notified() => {}
                _ = me.stop.notified(), if me.closed() => {}
            }
            // Also when records are already fsynced but not yet published as such: a sync
            // that started before they were counted covered them without saying so, and
            // their writers wait for the count.
            if me.shared.buffer.appended_since_sync() > 0
                || *me.shared.synced.borrow() < me.shared.written.load(Ordering::SeqCst)
            {
                me.shared.sync().await;
            }
            let m = &me.shared.metrics;
            m.buffer_records
                .with_label_values(&[&me.shared.name])
                .set(me.shared.buffer.pending_records() as i64);
            m.buffer_bytes
                .with_label_values(&[&me.shared.name])
                .set(me.shared.buffer.disk_bytes() as i64);
            if me.closed() && me.inner.outstanding() == 0 {
                break;
            }
        }
    });
}

/// Reads the log in order and hands each record to the delivering output as it has room. A
/// record whose destination is full is set aside (in memory, bounded) so the others flow;
/// later records for the same destination wait behind it, keeping their order.
async fn feed(me: &Arc<DiskBuffered>) {
    let shared = &me.shared;
    let mut deferred: VecDeque<Chunk> = VecDeque::new();
    let mut deferred_bytes = 0usize;
    let mut at_end = false;
    loop {
        if me.retired.load(Ordering::SeqCst) {
            return;
        }
        let waiter = me.inner.waiter();
        let room = waiter.register();
        // 1. What was set aside, in order; a destination still full keeps the rest of its
        //    records behind it.
        let mut progressed = false;
        let mut still: VecDeque<Chunk> = VecDeque::new();
        let mut blocked: Vec<Target> = Vec::new();
        while let Some(chunk) = deferred.pop_front() {
            deferred_bytes -= chunk.body.len();
            if blocked.iter().any(|t| same_target(t, &chunk.target)) {
                deferred_bytes += chunk.body.len();
                still.push_back(chunk);
                continue;
            }
            match offer(me, chunk) {
                None => progressed = true,
                Some(rest) => {
                    blocked.push(rest.target.clone());
                    deferred_bytes += rest.body.len();
                    still.push_back(rest);
                }
            }
        }
        deferred = still;
        // 2. New records, while what is set aside stays bounded.
        if deferred_bytes < MAX_DEFERRED_BYTES {
            let reader = shared.clone();
            let read = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                for _ in 0..READ_BATCH {
                    match reader.buffer.read_next() {
                        Ok(Some(r)) => out.push(r),
                        Ok(None) => break,
                        Err(e) => {
                            warn!(output = %reader.name, "skipping a damaged buffered record: {e}");
                            reader
                                .metrics
                                .buffer_repaired
                                .with_label_values(&[&reader.name])
                                .inc();
                        }
                    }
                }
                out
            })
            .await
            .unwrap_or_default();
            at_end = read.is_empty();
            for (id, payload) in read {
                let Some((target, points, body)) = decode(&payload) else {
                    warn!(output = %shared.name, record = %id, "skipping a buffered record that does not decode");
                    let _ = shared.buffer.ack(id);
                    continue;
                };
                progressed = true;
                let backlog = shared.backlog.load(Ordering::SeqCst);
                if backlog > 0 {
                    shared.backlog.fetch_sub(1, Ordering::SeqCst);
                    if me.replay_rate > 0 {
                        let pause = Duration::from_secs_f64(points as f64 / me.replay_rate as f64);
                        tokio::time::sleep(pause).await;
                    }
                }
                let mut chunk = Chunk::new(target, body, points);
                chunk
                    .tickets
                    .push(Arc::new(Ticket::record(shared.clone(), id)));
                if deferred
                    .iter()
                    .any(|d| same_target(&d.target, &chunk.target))
                {
                    deferred_bytes += chunk.body.len();
                    deferred.push_back(chunk);
                    continue;
                }
                if let Some(rest) = offer(me, chunk) {
                    deferred_bytes += rest.body.len();
                    deferred.push_back(rest);
                }
            }
        }
        if me.closing.load(Ordering::SeqCst) && at_end && deferred.is_empty() {
            me.inner.close();
            return;
        }
        if progressed && !at_end {
            continue;
        }
        tokio::select! {
            _ = room => {}
            _ = shared.appended.notified() => {}
            _ = me.stop.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

fn same_target(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (Target::Default, Target::Default) => true,
        (Target::Explicit(x), Target::Explicit(y)) => x == y,
        _ => false,
    }
}

/// Offers one record's points to the delivering output; what did not fit comes back.
fn offer(me: &DiskBuffered, chunk: Chunk) -> Option<Chunk> {
    let mut r = Reservation::default();
    me.inner.reserve(chunk, &mut r);
    let mut rest = std::mem::take(&mut r.rest);
    let closed = std::mem::take(&mut r.closed);
    rest.extend(closed);
    rest.extend(me.inner.commit(r));
    merge(rest)
}

/// The parts of one record that did not fit, as one chunk to offer again.
fn merge(mut parts: Vec<Chunk>) -> Option<Chunk> {
    let first = parts.pop()?;
    if parts.is_empty() {
        return Some(first);
    }
    let mut body = Vec::with_capacity(first.body.len());
    let mut points = 0;
    let mut tickets = Vec::new();
    let target = first.target.clone();
    for c in parts.into_iter().chain(std::iter::once(first)) {
        body.extend_from_slice(&c.body);
        points += c.points;
        tickets.extend(c.tickets);
    }
    let mut c = Chunk::new(target, Bytes::from(body), points);
    c.tickets = tickets;
    Some(c)
}

/// What `fluxgate buffer list` prints for one output.
pub fn describe(data_dir: &Path, output: &str) -> String {
    let mut out = String::new();
    for (what, dir) in [
        ("buffer", buffer_dir(data_dir, output)),
        ("dead-letter", dead_letter_dir(data_dir, output)),
    ] {
        match Buffer::list(&dir) {
            Ok(l) => out.push_str(&format!(
                "{output}\t{what}\t{} records\t{} bytes\t{} segments\t{}\n",
                l.records,
                l.bytes,
                l.segments.len(),
                dir.display()
            )),
            Err(e) => out.push_str(&format!("{output}\t{what}\t{e}\n")),
        }
    }
    out
}

/// `fluxgate buffer replay`: moves an output's dead-letter records back into its buffer (the
/// gateway must not be running: both logs are locked while it is).
pub fn replay_dead_letters(data_dir: &Path, output: &str, max_bytes: u64) -> Result<u64, String> {
    let options = log_options(max_bytes);
    let open = |dir: PathBuf| {
        Buffer::open(&dir, options)
            .map(|(b, _)| b)
            .map_err(|e| format!("{}: {e}", dir.display()))
    };
    let main = open(buffer_dir(data_dir, output))?;
    let dead = open(dead_letter_dir(data_dir, output))?;
    let drained = dead.drain_into(&main).map_err(|e| e.to_string())?;
    if drained.full {
        return Err(format!(
            "moved {} records, then the buffer was full (max_buffer_bytes)",
            drained.records
        ));
    }
    Ok(drained.records)
}

/// `fluxgate buffer drop`: discards an output's dead-letter records, saying how many.
pub fn drop_dead_letters(data_dir: &Path, output: &str) -> Result<u64, String> {
    let dir = dead_letter_dir(data_dir, output);
    let (dead, _) =
        Buffer::open(&dir, Options::default()).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut n = 0;
    while let Some((id, _)) = dead.read_next().map_err(|e| e.to_string())? {
        dead.ack(id).map_err(|e| e.to_string())?;
        n += 1;
    }
    dead.sync().map_err(|e| e.to_string())?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_target_points_and_body() {
        for target in [
            Target::Default,
            Target::Explicit(Destination::new("db", "rp")),
            Target::Explicit(Destination::new("métrics", "")),
        ] {
            let record = encode(&target, 3, b"a v=1 1\nb v=2 2\nc v=3 3\n");
            let (t, points, body) = decode(&record).unwrap();
            assert!(same_target(&t, &target));
            assert_eq!(points, 3);
            assert_eq!(&body[..], b"a v=1 1\nb v=2 2\nc v=3 3\n");
        }
        assert!(decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
        assert!(decode(&[1, 0]).is_none());
    }
}
