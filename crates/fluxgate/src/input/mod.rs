//! Inputs: sources the gateway fetches from on its own schedule (where listeners wait for
//! senders to connect). Each kind is one module behind [`Input`], registered in [`build`];
//! the running set is [`Inputs`], restarted as a whole when its config changes on reload.
//!
//! An input hands its points to the same pipeline the listeners use (routes, outputs,
//! queues), so everything downstream treats a polled point like a written one.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::info;

use crate::{config::ConfigError, listener::ListenerCtx, metrics::Metrics, pipeline::Pipeline};

pub mod http_poll;

/// The `[inputs]` section: one list per kind.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputsConfig {
    /// `[[inputs.http_poll]]`: devices whose JSON readings are fetched on an interval.
    pub http_poll: Vec<http_poll::HttpPollConfig>,
}

impl InputsConfig {
    /// Checks every input section; names must be unique across inputs (they label metrics).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.http_poll.iter().enumerate() {
            let section = format!("inputs.http_poll[{i}]");
            c.validate().map_err(|message| ConfigError::Invalid {
                section: section.clone(),
                message,
            })?;
            if !seen.insert(c.name.as_str()) {
                return Err(ConfigError::Invalid {
                    section,
                    message: format!(
                        "name {:?} is used by another input: give each [[inputs.http_poll]] its own `name`",
                        c.name
                    ),
                });
            }
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.http_poll.is_empty()
    }
}

/// One input kind: built once from its section, then run until its context is cancelled.
pub trait Input: Send + Sync + std::fmt::Debug {
    /// The input's name (the `input` label of its metrics).
    fn name(&self) -> &str;
    /// Fetches and hands points to `ctx`'s pipeline until `ctx.stop_accepting` is cancelled.
    fn run(self: Arc<Self>, ctx: Arc<ListenerCtx>) -> BoxFuture<'static, ()>;
}

/// Every input of the config, built (a bad one is a config error naming it).
pub fn build(config: &InputsConfig, metrics: &Metrics) -> Result<Vec<Arc<dyn Input>>, String> {
    let mut inputs: Vec<Arc<dyn Input>> = Vec::new();
    for c in &config.http_poll {
        let input = http_poll::HttpPoll::new(c.clone(), metrics)
            .map_err(|e| format!("inputs.http_poll {:?}: {e}", c.name))?;
        inputs.push(Arc::new(input));
    }
    Ok(inputs)
}

/// The inputs in operation.
#[derive(Debug)]
pub struct Inputs {
    config: InputsConfig,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Inputs {
    /// Builds and starts every input of `config`.
    pub fn start(
        config: &InputsConfig,
        pipeline: &watch::Receiver<Arc<Pipeline>>,
        metrics: &Metrics,
    ) -> Result<Self, String> {
        let built = build(config, metrics)?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        for input in built {
            let ctx = ListenerCtx::new(
                http_poll::LISTENER,
                pipeline.clone(),
                metrics,
                cancel.clone(),
                cancel.clone(),
                usize::MAX,
            );
            info!(input = input.name(), "input started");
            tracker.spawn(input.run(ctx));
        }
        tracker.close();
        Ok(Self {
            config: config.clone(),
            cancel,
            tracker,
        })
    }

    /// On reload: when the inputs' config changed, the new set is built first (a bad one
    /// keeps the old running), then the old one is stopped and the new one takes over.
    pub fn apply(
        &mut self,
        config: &InputsConfig,
        pipeline: &watch::Receiver<Arc<Pipeline>>,
        metrics: &Metrics,
    ) -> Result<(), String> {
        if *config == self.config {
            return Ok(());
        }
        let fresh = Self::start(config, pipeline, metrics)?;
        let old = std::mem::replace(self, fresh);
        old.cancel.cancel();
        Ok(())
    }

    /// Stops every input: a fetch in progress is given up, a point being handed on is
    /// finished. The returned pair is what shutdown waits on.
    pub fn stop(&self) -> (CancellationToken, TaskTracker) {
        self.cancel.cancel();
        (self.cancel.clone(), self.tracker.clone())
    }
}
