//! Where points go: batching, queueing and delivery to upstreams.

pub mod graphite;
pub mod influxdb;

use std::time::Duration;

/// The delay before retry `attempt` (0-based): `initial` doubled per attempt, capped at
/// `max`, then spread by ±50% so that many senders that failed together do not retry in step.
pub(crate) fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    use rand::Rng;
    let base = initial.saturating_mul(1u32 << attempt.min(20)).min(max);
    base.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let ms = Duration::from_millis;
        for (attempt, base) in [(0, 100), (1, 200), (3, 800), (10, 5000), (40, 5000)] {
            let d = backoff(ms(100), ms(5000), attempt);
            assert!(
                d >= ms(base / 2) && d <= ms(base * 3 / 2),
                "attempt {attempt}: {d:?}"
            );
        }
    }
}
