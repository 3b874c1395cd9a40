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

pub mod graphite;
pub mod influxdb;

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use tokio::task::JoinSet;

use crate::{
    queue::{Permit, Waiter},
    translate::influx::InfluxToGraphite,
};

pub use influxdb::{Destination, Target};

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
}

impl Chunk {
    pub fn new(target: Target, body: Bytes, points: usize) -> Self {
        Self {
            target,
            body,
            points,
            slot: None,
        }
    }
}

/// Where a granted part goes inside its output.
#[derive(Debug)]
pub(crate) enum Slot {
    /// An InfluxDB partition.
    Partition(Destination),
    /// A Graphite destination by index.
    Destination(usize),
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
