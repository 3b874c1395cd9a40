//! Every Prometheus metric fluxgate exports, registered in one place.
//!
//! The metric names are a public contract (DESIGN.md). Labels stay low-cardinality: listener
//! and output names from the config and a fixed vocabulary of reasons, never peer addresses or
//! metric names. One registry per gateway instance (no globals), so tests can run several.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Points (lines, pickle items, line-protocol points) accepted by a listener.
    pub received: IntCounterVec,
    /// Lines, items, requests or connections refused by a listener, by reason.
    pub rejected: IntCounterVec,
    pub sent_points: IntCounterVec,
    /// Failed send attempts, by reason (each attempt counts; see `retries` and `dropped`).
    pub send_errors: IntCounterVec,
    pub retries: IntCounterVec,
    /// Points an output gave up on, by reason.
    pub dropped: IntCounterVec,
    /// Points accepted by an output and not yet delivered.
    pub queue_points: IntGaugeVec,
    pub batch_duration: HistogramVec,
    /// Open connections per listener.
    pub connections: IntGaugeVec,
    /// 1 while a Graphite output holds a connection to a destination.
    pub destination_up: IntGaugeVec,
    /// Points no output took by the routes: a `drop` rule matched (`drop_route`) or, with
    /// routes configured, none matched (`no_route`).
    pub unrouted: IntCounterVec,
    /// Proxied queries that waited for earlier writes (read-your-writes), by outcome:
    /// `delivered`, or `timed_out` (answered anyway after `query_wait`).
    pub query_waits: IntCounterVec,
    /// Damaged disk-buffer records or segment tails cut at open or skipped when read.
    pub buffer_repaired: IntCounterVec,
    /// From receipt of a batch's oldest point to the upstream's acknowledgement of it.
    pub write_latency: HistogramVec,
    /// Records and bytes in an output's disk buffer.
    pub buffer_records: IntGaugeVec,
    pub buffer_bytes: IntGaugeVec,
    /// JetStream messages a NATS listener handled, by outcome: `received`, `redelivered`
    /// (delivered before, to this or another deliverer), `acked`, `ack_failed`, `bad`.
    pub nats_messages: IntCounterVec,
    /// Datagrams the kernel dropped on a UDP listener's socket (its receive buffer was full).
    pub udp_receive_drops: IntCounterVec,
    /// Per Graphite destination: points written, given up on, and waiting.
    pub destination_sent: IntCounterVec,
    pub destination_dropped: IntCounterVec,
    pub destination_queue: IntGaugeVec,
    /// `[[inputs.http_poll]]`: cycles run, cycles or parameters that failed (by reason), and
    /// cycles skipped because the one before outlasted the interval.
    pub poll_cycles: IntCounterVec,
    pub poll_errors: IntCounterVec,
    pub poll_missed_cycles: IntCounterVec,
    /// Input values taken into an aggregate bucket, per aggregator (`carbon`, or an
    /// `[[aggregate]]`'s name).
    pub aggregate_received: IntCounterVec,
    /// Aggregate datapoints produced (each goes into the pipeline like a received point).
    pub aggregate_emitted: IntCounterVec,
    /// Input values an aggregator could not take, by reason: `late`, `too_early`,
    /// `max_series`, `max_values`.
    pub aggregate_dropped: IntCounterVec,
    /// Aggregate series held.
    pub aggregate_series: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let received = counter(
            "fluxgate_received_total",
            "Points accepted by a listener.",
            &["listener"],
        );
        let rejected = counter(
            "fluxgate_rejected_total",
            "Lines, items, requests or connections rejected by a listener, by reason.",
            &["listener", "reason"],
        );
        let sent_points = counter(
            "fluxgate_sent_points_total",
            "Points delivered to an upstream.",
            &["output"],
        );
        let send_errors = counter(
            "fluxgate_send_errors_total",
            "Failed send attempts, by reason.",
            &["output", "reason"],
        );
        let retries = counter(
            "fluxgate_retries_total",
            "Send attempts that were retries of a failed one.",
            &["output"],
        );
        let dropped = counter(
            "fluxgate_dropped_total",
            "Points an output gave up on, by reason.",
            &["output", "reason"],
        );
        let queue_points = gauge(
            "fluxgate_queue_points",
            "Points accepted by an output and not yet delivered.",
            &["output"],
        );
        let connections = gauge(
            "fluxgate_connections",
            "Open connections per listener.",
            &["listener"],
        );
        let unrouted = counter(
            "fluxgate_unrouted_total",
            "Points sent nowhere by the routes: a drop rule matched, or no rule did.",
            &["listener", "reason"],
        );
        let query_waits = counter(
            "fluxgate_query_waits_total",
            "Proxied queries that waited for the writes acknowledged before them, by outcome.",
            &["outcome"],
        );
        // CPU seconds, resident memory and open file descriptors of the process
        // (process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds).
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        // Always 1: the version as a label, so dashboards can tell which build runs where.
        gauge(
            "fluxgate_build_info",
            "The running build (always 1).",
            &["version"],
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        let buffer_repaired = counter(
            "fluxgate_buffer_repaired_total",
            "Damaged disk-buffer records or segment tails cut at open or skipped when read.",
            &["output"],
        );
        let buffer_records = gauge(
            "fluxgate_buffer_records",
            "Records in an output's disk buffer not yet delivered.",
            &["output"],
        );
        let buffer_bytes = gauge(
            "fluxgate_buffer_bytes",
            "Bytes of an output's disk buffer on disk.",
            &["output"],
        );
        let nats_messages = counter(
            "fluxgate_nats_messages_total",
            "JetStream messages a NATS listener handled, by outcome.",
            &["outcome"],
        );
        let destination_up = gauge(
            "fluxgate_destination_up",
            "1 while a Graphite output is connected to the destination, else 0.",
            &["output", "destination"],
        );
        let batch_duration = HistogramVec::new(
            HistogramOpts::new(
                "fluxgate_batch_duration_seconds",
                "Time to deliver one batch (one request or one write), successful attempts.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["output"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(batch_duration.clone()))
            .expect("unique metric");
        let write_latency = HistogramVec::new(
            HistogramOpts::new(
                "fluxgate_write_latency_seconds",
                "From receipt of the oldest point of a request to the upstream's acknowledgement.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["output"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(write_latency.clone()))
            .expect("unique metric");
        let udp_receive_drops = counter(
            "fluxgate_udp_receive_drops_total",
            "Datagrams the kernel dropped on a UDP listener's socket because its receive buffer was full.",
            &["listener"],
        );
        let destination_sent = counter(
            "fluxgate_destination_sent_points_total",
            "Points written to one destination of a Graphite output.",
            &["output", "destination"],
        );
        let destination_dropped = counter(
            "fluxgate_destination_dropped_total",
            "Points one destination of a Graphite output gave up on.",
            &["output", "destination"],
        );
        let destination_queue = gauge(
            "fluxgate_destination_queue_points",
            "Points queued for one destination of a Graphite output.",
            &["output", "destination"],
        );
        let poll_cycles = counter(
            "fluxgate_poll_cycles_total",
            "Poll cycles an input ran.",
            &["input"],
        );
        let poll_errors = counter(
            "fluxgate_poll_errors_total",
            "Poll cycles that sent nothing, or tracked parameters left out of a point, by reason.",
            &["input", "reason"],
        );
        let poll_missed_cycles = counter(
            "fluxgate_poll_missed_cycles_total",
            "Poll cycles skipped because the cycle before outlasted the interval.",
            &["input"],
        );
        let aggregate_received = counter(
            "fluxgate_aggregate_received_total",
            "Input values taken into an aggregate bucket.",
            &["aggregator"],
        );
        let aggregate_emitted = counter(
            "fluxgate_aggregate_emitted_total",
            "Aggregate datapoints produced.",
            &["aggregator"],
        );
        let aggregate_dropped = counter(
            "fluxgate_aggregate_dropped_total",
            "Input values an aggregator could not take, by reason.",
            &["aggregator", "reason"],
        );
        let aggregate_series = gauge(
            "fluxgate_aggregate_series",
            "Aggregate series held by an aggregator.",
            &["aggregator"],
        );
        Self {
            aggregate_received,
            aggregate_emitted,
            aggregate_dropped,
            aggregate_series,
            registry,
            received,
            rejected,
            sent_points,
            send_errors,
            retries,
            dropped,
            queue_points,
            batch_duration,
            connections,
            destination_up,
            unrouted,
            query_waits,
            write_latency,
            buffer_repaired,
            buffer_records,
            buffer_bytes,
            nats_messages,
            udp_receive_drops,
            destination_sent,
            destination_dropped,
            destination_queue,
            poll_cycles,
            poll_errors,
            poll_missed_cycles,
        }
    }

    /// Every metric as gathered now, for the Graphite telemetry.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding to a Vec cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

/// Lets one warning through per interval and counts the ones it held back, so the next line
/// that gets through can say how many were suppressed. Lock-free on the suppressed path: a
/// flood of bad lines costs one atomic load each.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    start: Instant,
    /// Milliseconds since `start` of the last line let through, plus one (0 = never).
    last: AtomicU64,
    suppressed: AtomicU64,
    gate: Mutex<()>,
}

impl RateLimit {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            start: Instant::now(),
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            gate: Mutex::new(()),
        }
    }

    /// `Some(suppressed_since_last)` when this occurrence should be logged.
    pub fn check(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        let interval = self.interval.as_millis() as u64;
        if last != 0 && now.saturating_sub(last) < interval {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let _g = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < interval {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.last.store(now, Ordering::Relaxed);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// A rate-limited `warn!`: same arguments as `tracing::warn!` after the limiter; the event
/// carries a `suppressed` field counting the similar events held back since the last one.
#[macro_export]
macro_rules! warn_limited {
    ($limit:expr, $($arg:tt)+) => {
        if let Some(suppressed) = $limit.check() {
            tracing::warn!(suppressed, $($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_names_are_exported() {
        let m = Metrics::new();
        m.received.with_label_values(&["plaintext_tcp"]).inc();
        m.rejected
            .with_label_values(&["plaintext_tcp", "nan"])
            .inc();
        m.sent_points.with_label_values(&["influx"]).inc();
        m.send_errors
            .with_label_values(&["influx", "http_503"])
            .inc();
        m.retries.with_label_values(&["influx"]).inc();
        m.dropped.with_label_values(&["influx", "rejected"]).inc();
        m.queue_points.with_label_values(&["influx"]).set(3);
        m.batch_duration
            .with_label_values(&["influx"])
            .observe(0.01);
        let text = m.render();
        for name in [
            "fluxgate_received_total{listener=\"plaintext_tcp\"} 1",
            "fluxgate_rejected_total{listener=\"plaintext_tcp\",reason=\"nan\"} 1",
            "fluxgate_sent_points_total{output=\"influx\"} 1",
            "fluxgate_send_errors_total{output=\"influx\",reason=\"http_503\"} 1",
            "fluxgate_retries_total{output=\"influx\"} 1",
            "fluxgate_dropped_total{output=\"influx\",reason=\"rejected\"} 1",
            "fluxgate_queue_points{output=\"influx\"} 3",
            "fluxgate_batch_duration_seconds_count{output=\"influx\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    #[test]
    fn rate_limit_lets_one_through_per_interval_and_counts_the_rest() {
        let r = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(r.check(), Some(0));
        assert_eq!(r.check(), None);
        assert_eq!(r.check(), None);
        let r = RateLimit::new(Duration::ZERO);
        assert_eq!(r.check(), Some(0));
        assert_eq!(r.check(), Some(0));
    }
}
