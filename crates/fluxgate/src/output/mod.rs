//! Where points go: batching, queueing and delivery to upstreams.
//!
//! Every output kind is one module behind one trait, [`Output`]. The pipeline never waits on
//! an output to push: it *reserves* capacity for a chunk ([`Output::reserve`] answers at once
//! with what fits, what does not, and what the output's policy sheds), *commits* what it
//! reserved, and only then waits, concurrently across outputs, for room for the rest. A full
//! or failing output therefore holds back only the senders whose points it cannot take, and
//! never the outputs beside it. Capacity travels with the data as [`Permit`]s, so it comes
//! back however a chunk ends (delivered, refused, shed, abandoned).
//!
//! An HTTP write reserves in every output before it commits in any (all or nothing), so a
//! write answered 503 left nothing behind that the client's retry would duplicate.

pub mod disk;
pub mod graphite;
pub mod influxdb;
pub mod nats;
mod placement;
pub mod registry;

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::task::JoinSet;

use crate::{
    queue::{Permit, Waiter},
    translate::influx::InfluxToGraphite,
    warn_limited,
};

pub use influxdb::{Destination, Target};

/// Counts `n` points an output gave up on (`fluxgate_dropped_total{output,reason}`) and logs
/// why, rate-limited: the one way every output reports a drop.
pub(crate) fn count_dropped(
    metrics: &crate::metrics::Metrics,
    log_limit: &crate::metrics::RateLimit,
    output: &str,
    n: usize,
    reason: &str,
    why: &str,
) {
    if n == 0 {
        return;
    }
    metrics
        .dropped
        .with_label_values(&[output, reason])
        .inc_by(n as u64);
    warn_limited!(log_limit, output = %output, reason, points = n, "dropped points: {why}");
}

/// Counts one failed delivery attempt of `output` (`fluxgate_send_errors_total`).
pub(crate) fn count_send_error(metrics: &crate::metrics::Metrics, output: &str, reason: &str) {
    metrics
        .send_errors
        .with_label_values(&[output, reason])
        .inc();
}

/// The wire form an output wants its points in; the pipeline makes each form once per point.
#[derive(Debug, Clone)]
pub enum Form {
    /// Line protocol with nanosecond timestamps, `\n`-terminated.
    LineProtocol,
    /// Canonical Graphite plaintext; line-protocol points become paths by this translator.
    Graphite(Arc<InfluxToGraphite>),
}

/// Points in an output's wire form, one per line, bound for one target.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub target: Target,
    pub body: Bytes,
    pub points: usize,
    /// Set by an output on the part of a chunk it already placed (a Graphite destination),
    /// so what is retried after waiting goes where it was placed.
    pub(crate) slot: Option<usize>,
    /// The disk-buffer records these points came from (acknowledged once delivered).
    pub(crate) tickets: Vec<Arc<disk::Ticket>>,
}

impl Chunk {
    pub fn new(target: Target, body: Bytes, points: usize) -> Self {
        Self {
            target,
            body,
            points,
            slot: None,
            tickets: Vec::new(),
        }
    }

    /// Splits off the leading points that fit in `room` (points, bytes): a full queue takes
    /// what it has room for instead of refusing a whole chunk that is larger than what is
    /// left. `None` when not even one point fits. Lines are found as `lines` splits them.
    pub(crate) fn split_to_fit(
        &self,
        room: (usize, usize),
        lines: impl for<'b> Fn(&'b [u8]) -> Box<dyn Iterator<Item = &'b [u8]> + 'b>,
    ) -> Option<(Chunk, Chunk)> {
        let body: &[u8] = &self.body;
        let (max_points, max_bytes) = room;
        let (mut points, mut at) = (0, 0);
        for line in lines(body) {
            let end = line.as_ptr() as usize - body.as_ptr() as usize + line.len() + 1;
            if points + 1 > max_points || end.min(body.len()) > max_bytes {
                break;
            }
            points += 1;
            at = end.min(body.len());
        }
        if points == 0 || points >= self.points {
            return None;
        }
        let head = Chunk {
            target: self.target.clone(),
            body: self.body.slice(..at),
            points,
            slot: self.slot,
            tickets: self.tickets.clone(),
        };
        let tail = Chunk {
            target: self.target.clone(),
            body: self.body.slice(at..),
            points: self.points - points,
            slot: self.slot,
            tickets: self.tickets.clone(),
        };
        Some((head, tail))
    }
}

/// Line-protocol points as InfluxDB splits them (a newline inside a string is content).
pub(crate) fn line_protocol_lines(body: &[u8]) -> Box<dyn Iterator<Item = &[u8]> + '_> {
    Box::new(line_protocol::split_lines(body).filter(|l| !l.is_empty()))
}

/// Graphite plaintext lines.
pub(crate) fn plaintext_lines(body: &[u8]) -> Box<dyn Iterator<Item = &[u8]> + '_> {
    Box::new(body.split(|&b| b == b'\n').filter(|l| !l.is_empty()))
}

/// Where a granted part goes inside its output.
#[derive(Debug)]
pub(crate) enum Slot {
    /// An InfluxDB partition.
    Partition(Destination),
    /// A Graphite destination by index.
    Destination(usize),
    /// A disk buffer's log.
    Disk,
}

/// Capacity taken for one part of a chunk, not yet queued.
#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) slot: Slot,
    pub(crate) target: Target,
    pub(crate) body: Bytes,
    pub(crate) points: usize,
    pub(crate) permit: Permit,
}

/// Points an output's policy gives up on at commit (drop_newest, a stalled destination).
#[derive(Debug)]
pub(crate) struct Shed {
    pub(crate) points: usize,
    pub(crate) reason: &'static str,
    pub(crate) why: &'static str,
}

/// What one output holds for a submit between [`Output::reserve`] and [`Output::commit`].
/// Dropping it without committing gives every grant back.
#[derive(Debug, Default)]
pub struct Reservation {
    pub(crate) grants: Vec<Grant>,
    pub(crate) shed: Vec<Shed>,
    /// What did not fit: to be offered again after [`Output::waiter`] fires.
    pub rest: Vec<Chunk>,
    /// What a closed (retired or stopping) output could not take.
    pub closed: Vec<Chunk>,
}

impl Reservation {
    pub fn is_complete(&self) -> bool {
        self.rest.is_empty() && self.closed.is_empty()
    }

    /// Points that would be taken or shed by a commit.
    pub fn settled_points(&self) -> usize {
        self.grants.iter().map(|g| g.points).sum::<usize>()
            + self.shed.iter().map(|s| s.points).sum::<usize>()
    }
}

/// The upstream's own answer to a write sent at once (`ack = "delivered"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Every point was written.
    Delivered,
    /// The upstream refused the write (or part of it): its status and message, as the
    /// client would have had them writing directly.
    Refused { status: u16, message: String },
    /// No answer from the upstream in time (down, or failing with retryable errors); nothing
    /// is kept for it, so the client's retry is the only copy.
    Unavailable(String),
}

/// One configured output, whatever its kind.
pub trait Output: Send + Sync + fmt::Debug + 'static {
    fn name(&self) -> &str;

    /// The wire form the pipeline must give it.
    fn form(&self) -> &Form;

    /// Spawns the output's tasks; they end once it is closed and drained.
    fn start(&self, tasks: &mut JoinSet<()>);

    /// Takes capacity for what of `chunk` fits now, never waiting. What does not fit goes to
    /// `into.rest`; what the policy gives up on goes to `into.shed` (counted at commit).
    fn reserve(&self, chunk: Chunk, into: &mut Reservation);

    /// Queues what was granted and counts what was shed. Grants a queue refused because it
    /// closed meanwhile come back as chunks, for the caller to offer elsewhere or count.
    fn commit(&self, reservation: Reservation) -> Vec<Chunk>;

    /// Interest in the next release of capacity (or close) anywhere in the output.
    fn waiter(&self) -> Waiter;

    /// When waiting for room for `rest` must stop, so the policy can shed it: the stall
    /// budget of the slots it is bound for. `None`: wait as long as it takes.
    fn stall_deadline(&self, rest: &[Chunk]) -> Option<tokio::time::Instant>;

    /// Takes chunks regardless of room: what a retiring output with the same upstream hands
    /// over, accepted long ago and not to be refused now.
    fn adopt(&self, chunks: Vec<Chunk>);

    /// Stops taking points; what was queued is still delivered.
    fn close(&self);

    /// Closes and moves everything queued and not in flight to `successor` (same upstream).
    fn hand_over(&self, successor: Arc<dyn Output>);

    /// Identifies the upstream: outputs with equal keys may hand their queues to each other.
    fn upstream_key(&self) -> String;

    /// Points accepted and not yet delivered or dropped.
    fn outstanding(&self) -> usize;

    /// Gives up on everything undelivered (a deadline passed), counting it under `reason`.
    fn abandon(&self, reason: &str);

    /// Counts (and logs, rate-limited) points this output could not carry.
    fn drop_points(&self, n: usize, reason: &str, why: &str);

    /// The InfluxDB output behind this one, for proxying reads.
    fn as_influx(&self) -> Option<&influxdb::InfluxOutput> {
        None
    }

    /// Whether [`Output::commit_delivered`] sends a write at once and answers with its
    /// upstream's word (`ack = "delivered"`).
    fn answers_writes(&self) -> bool {
        false
    }

    /// Sends what was reserved at once, outside the batches, and answers with what the
    /// upstream said (retrying what can be retried until `deadline`). An output that does
    /// not answer for writes queues it and says it was taken.
    fn commit_delivered(
        &self,
        reservation: Reservation,
        _deadline: tokio::time::Instant,
    ) -> BoxFuture<'static, Answer> {
        let refused = self.commit(reservation);
        let answer = if refused.is_empty() {
            Answer::Delivered
        } else {
            Answer::Unavailable("shutting down".into())
        };
        Box::pin(std::future::ready(answer))
    }

    /// Whether what it holds survives the process (a disk buffer): at the shutdown deadline
    /// it is kept for the next start, not lost.
    fn persists(&self) -> bool {
        false
    }

    /// Commits and resolves once what was committed is on disk and fsynced (`ack =
    /// "durable"`); false from an output that keeps nothing on disk.
    fn commit_durable(&self, reservation: Reservation) -> BoxFuture<'static, bool> {
        self.commit(reservation);
        Box::pin(std::future::ready(false))
    }

    /// Resolves once every point for database `db` that was committed before the call has
    /// been delivered or given up on (read-your-writes for a proxied query). `None`: the
    /// output keeps nothing to wait for.
    fn barrier(&self, _db: &str) -> Option<BoxFuture<'static, ()>> {
        None
    }
}

/// The delay before retry `attempt` (0-based): `initial` doubled per attempt, spread by ±50%
/// so that many senders that failed together do not retry in step, and never above `max`.
pub(crate) fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    use rand::Rng;
    let base = initial.saturating_mul(1u32 << attempt.min(20)).min(max);
    base.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_inside_it() {
        let ms = Duration::from_millis;
        for (attempt, base) in [(0, 100), (1, 200), (3, 800), (10, 5000), (40, 5000)] {
            let d = backoff(ms(100), ms(5000), attempt);
            assert!(
                d >= ms(base / 2) && d <= ms((base * 3 / 2).min(5000)),
                "attempt {attempt}: {d:?}"
            );
        }
        for _ in 0..1000 {
            assert!(backoff(ms(100), ms(1000), 30) <= ms(1000));
        }
    }
}
