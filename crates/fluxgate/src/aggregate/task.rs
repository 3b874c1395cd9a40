//! The aggregation clock: asks the pipeline's aggregators what is due and hands it on as
//! one batch, counted under the `aggregate` listener (`fluxgate_received_total`).
//!
//! One task per gateway, across reloads: each tick reads the pipeline in force, so a new
//! configuration's aggregators (with the state they took over) are asked from then on.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::now_ms;
use crate::{
    listener::ListenerCtx,
    output::Target,
    pipeline::{Batch, Wait},
    warn_limited,
};

/// How often the aggregators are asked. carbon-c-relay looks every 250 ms, carbon's timers
/// fire on the second; a tenth of a second is finer than both.
pub const TICK: Duration = Duration::from_millis(100);

/// A batch this large is handed on before the tick is done.
const FLUSH_POINTS: usize = 10_000;

pub async fn run(ctx: Arc<ListenerCtx>, stop: CancellationToken) {
    let mut clock = tokio::time::interval(TICK);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut due = Vec::new();
    let mut batch = Batch::new(ctx.name);
    loop {
        tokio::select! {
            _ = clock.tick() => {}
            _ = stop.cancelled() => return,
        }
        let pipeline = ctx.pipeline();
        let Some(aggregation) = pipeline.aggregation.clone() else {
            continue;
        };
        due.clear();
        aggregation.tick(now_ms(), &mut due);
        if due.is_empty() {
            continue;
        }
        let mut translator = pipeline.templates.translator();
        for (i, aggregate) in due.iter().enumerate() {
            if let Err(e) = batch.add_aggregate(&pipeline, &mut translator, aggregate) {
                ctx.reject(e.reason(), 1);
                warn_limited!(
                    ctx.log_limit,
                    listener = ctx.name,
                    reason = e.reason(),
                    "aggregate {} not sent: {e}",
                    aggregate.name
                );
            }
            if batch.len() >= FLUSH_POINTS || i + 1 == due.len() {
                let points = batch.len();
                ctx.received.inc_by(points as u64);
                batch
                    .submit(&ctx, &pipeline, &Target::Default, Wait::Partial)
                    .await;
            }
        }
    }
}
