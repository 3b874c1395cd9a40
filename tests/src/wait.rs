//! Waiting for what a test expects: a condition polled until it holds, and the gateway's
//! `/metrics` samples.

use std::thread;
use std::time::{Duration, Instant};

use crate::gateway::Gateway;

/// How long [`wait_metric`] waits.
pub const METRIC_WAIT: Duration = Duration::from_secs(20);

const POLL: Duration = Duration::from_millis(50);

/// Polls `probe` until it returns `Ok` and returns its value.
///
/// # Panics
/// After `timeout`, with the last `Err` the probe gave.
pub fn eventually<T>(timeout: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(why) if Instant::now() >= deadline => {
                panic!("still not the case after {timeout:?}: {why}")
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// A metric's value summed over the samples matching `labels`, 0 when the gateway has no such
/// sample (a counter never incremented).
///
/// # Panics
/// When `/metrics` does not answer 200.
pub fn metric(gateway: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    gateway.metric(name, labels).unwrap_or(0.0)
}

/// Polls `/metrics` until `name{labels}` equals `expected` (for up to [`METRIC_WAIT`]).
///
/// # Panics
/// When it does not, with the metrics and the end of the gateway's log.
pub fn wait_metric(gateway: &Gateway, name: &str, labels: &[(&str, &str)], expected: f64) {
    eventually(METRIC_WAIT, || {
        let value = metric(gateway, name, labels);
        if value == expected {
            Ok(())
        } else {
            Err(format!(
                "{name}{labels:?} is {value}, expected {expected}\n{}\n{}",
                gateway.metrics(),
                gateway.log_tail(20)
            ))
        }
    });
}
