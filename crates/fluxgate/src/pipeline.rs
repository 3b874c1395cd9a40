//! What listeners hand their batches to: the current set of outputs and the translation
//! tables. Swapped as a whole on reload, so a batch always sees one consistent config.

use std::{sync::Arc, time::Duration};

use crate::{
    config::Config,
    metrics::Metrics,
    output::influxdb::{Chunk, InfluxOutput},
    queue::Push,
    translate::graphite::TemplateSet,
};

#[derive(Debug)]
pub struct Pipeline {
    pub influx: Vec<InfluxOutput>,
    pub templates: Arc<TemplateSet>,
    pub config: Arc<Config>,
    pub metrics: Metrics,
}

/// How a submitted batch fared across outputs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    /// Outputs that took the batch.
    pub accepted: usize,
    /// Outputs that refused it because they were full (counted as dropped by them).
    pub dropped: usize,
    /// Outputs that were closing.
    pub closed: usize,
    /// Outputs whose wait for room ran out (HTTP writes only).
    pub timed_out: usize,
}

impl Pipeline {
    /// Hands a chunk of line protocol to every InfluxDB output, waiting for room as each
    /// output's overflow policy says. TCP listeners await this, which is what stops them
    /// reading from their sockets when an output is full.
    pub async fn submit(&self, chunk: Chunk) -> Submitted {
        let mut s = Submitted::default();
        if chunk.points == 0 {
            return s;
        }
        let last = self.influx.len().saturating_sub(1);
        let mut chunk = Some(chunk);
        for (i, out) in self.influx.iter().enumerate() {
            let c = if i == last {
                chunk.take().expect("chunk present")
            } else {
                chunk.clone().expect("chunk present")
            };
            tally(&mut s, out.push(c).await);
        }
        s
    }

    /// Like [`Pipeline::submit`] but a blocked output waits at most `wait` (HTTP writes
    /// answer 503 rather than hold a client forever).
    pub async fn submit_within(&self, chunk: Chunk, wait: Duration) -> Submitted {
        let mut s = Submitted::default();
        if chunk.points == 0 {
            return s;
        }
        let deadline = tokio::time::Instant::now() + wait;
        for out in &self.influx {
            let push = out.push(chunk.clone());
            match tokio::time::timeout_at(deadline, push).await {
                Ok(r) => tally(&mut s, r),
                Err(_) => s.timed_out += 1,
            }
        }
        s
    }
}

fn tally(s: &mut Submitted, r: Push) {
    match r {
        Push::Accepted | Push::DroppedOldest(_) => s.accepted += 1,
        Push::DroppedNewest(_) => s.dropped += 1,
        Push::Closed => s.closed += 1,
    }
}
