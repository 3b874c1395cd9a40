//! fluxgate: a Graphite/InfluxDB protocol gateway.
//!
//! Listeners parse what they read into batches, translation turns Graphite samples into
//! InfluxDB points, and outputs batch, queue and deliver them with retries. Work moves in
//! batches through bounded queues, never one message per metric.

pub mod aggregate;
pub mod app;
pub mod cluster;
pub mod config;
pub mod dry_run;
pub mod import;
pub mod input;
mod line_scan;
pub mod listener;
pub mod metrics;
pub mod name_cache;
pub mod nats;
pub mod output;
pub mod pipeline;
pub mod queue;
pub mod route;
pub mod statsd;
pub mod telemetry;
pub mod tls;
pub mod translate;

pub use app::Gateway;
pub use config::Config;

/// What can stop the gateway from starting or reloading.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot listen on {address} ({listener}): {source}")]
    Bind {
        listener: &'static str,
        address: String,
        source: std::io::Error,
    },
    #[error("listener {listener}: TLS: {message}")]
    Tls {
        listener: &'static str,
        message: String,
    },
    #[error("output {output:?}: {message}")]
    Output { output: String, message: String },
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// An error with its sources, `outer: inner: innermost`: reqwest's own text says only
/// "error sending request", the cause is further down.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
