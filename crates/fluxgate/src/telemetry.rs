//! fluxgate's own figures as Graphite metrics, in its own pipeline, under the names
//! carbon-c-relay gives its statistics (`collector.c`), so `carbon.relays.*` dashboards built
//! for carbon-c-relay keep working when fluxgate takes its place.
//!
//! Every `interval` these go in, stamped with the time of the round, each name under
//! `graphite_prefix` (default `carbon.relays.<host>`):
//!
//! | name | value |
//! |---|---|
//! | `metricsReceived` | points taken by the listeners, these included (carbon-c-relay counts its own statistics too) |
//! | `metricsSent` | points delivered by the outputs |
//! | `metricsDropped` | points the outputs gave up on |
//! | `metricsQueued` | points waiting in the outputs now (a sample, never reset) |
//! | `metricsDiscarded` | lines the listeners refused |
//! | `metricsBlackholed` | points no route sent anywhere |
//! | `destinations.<d>.sent` / `.dropped` / `.queued` | per Graphite destination (`host:port`, dots as `_`) and per InfluxDB output (its name) |
//! | `destinations.internal.sent` | these statistics themselves |
//! | `cpuUsage` | percent of one CPU used over the interval (carbon's relay metric) |
//! | `memUsage` | resident memory in bytes (carbon's relay metric) |
//!
//! As carbon-c-relay's, the counters run from the start of the process (apply
//! `nonNegativeDerivative()`); with `reset_counters = true` (carbon-c-relay's `statistics reset
//! counters after interval`) each is what happened in the interval. Sources are the
//! Prometheus counters of `/metrics`, so both views always agree.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use graphite_plaintext::Timestamp;
use prometheus::proto::MetricFamily;
use serde::Deserialize;

use crate::{
    config::ConfigError,
    listener::{graphite::GraphiteBatch, ListenerCtx},
};

/// The `listener` label of the points this injects.
pub const LISTENER: &str = "telemetry";

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Prefix of the injected names; absent = nothing injected. `<host>` is the host name with
    /// dots as `_` (carbon-c-relay's default `carbon.relays.<host>`), `<host_short>` its
    /// first label.
    pub graphite_prefix: Option<String>,
    /// How often the figures go in (carbon-c-relay's `submit every`; default 60s).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Each counter as the change over the interval instead of the running total.
    pub reset_counters: bool,
    /// `/metrics` (and `/health`) on an address of their own; absent = none.
    pub address: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            graphite_prefix: None,
            interval: Duration::from_secs(60),
            reset_counters: false,
            address: None,
        }
    }
}

impl TelemetryConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "telemetry",
                "interval must be at least 1s",
            ));
        }
        if let Some(p) = &self.graphite_prefix {
            let expanded = expand_prefix(p, "host");
            if expanded.is_empty()
                || expanded.starts_with('.')
                || expanded.ends_with('.')
                || expanded.contains(char::is_whitespace)
            {
                return Err(ConfigError::invalid(
                    "telemetry",
                    format!("graphite_prefix {p:?} is not a Graphite name prefix"),
                ));
            }
        }
        Ok(())
    }
}

/// The host name, as carbon-c-relay takes it (`gethostname`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

/// `<host>`: the host name with dots as `_` (carbon-c-relay's `\.1`); `<host_short>`: the
/// part before the first dot (its `\2`).
pub fn expand_prefix(prefix: &str, host: &str) -> String {
    let short = host.split('.').next().unwrap_or(host);
    prefix
        .replace("<host_short>", short)
        .replace("<host>", &host.replace('.', "_"))
}

/// The figures read at one round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub received: f64,
    pub discarded: f64,
    pub blackholed: f64,
    pub sent: f64,
    pub dropped: f64,
    pub queued: f64,
    /// Points this module injected (`received{listener="telemetry"}`).
    pub internal: f64,
    pub cpu_seconds: f64,
    pub rss_bytes: f64,
    /// Per destination: sent, dropped, queued.
    pub destinations: BTreeMap<String, [f64; 3]>,
}

fn value(f: &MetricFamily, m: &prometheus::proto::Metric) -> f64 {
    if f.get_field_type() == prometheus::proto::MetricType::COUNTER {
        m.get_counter().get_value()
    } else {
        m.get_gauge().get_value()
    }
}

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> Option<&'a str> {
    m.get_label()
        .iter()
        .find(|l| l.get_name() == name)
        .map(|l| l.get_value())
}

impl Snapshot {
    /// Reads the figures out of gathered Prometheus metrics.
    pub fn from_families(families: &[MetricFamily]) -> Self {
        let mut s = Snapshot::default();
        // Outputs that report per destination (Graphite): the rest are one destination each.
        let mut per_output: BTreeMap<String, [f64; 3]> = BTreeMap::new();
        let mut graphite_outputs = std::collections::BTreeSet::new();
        for f in families {
            for m in f.get_metric() {
                let v = value(f, m);
                let output = label(m, "output").unwrap_or("").to_owned();
                let dest = || label(m, "destination").unwrap_or("").replace('.', "_");
                match f.get_name() {
                    "fluxgate_received_total" => {
                        s.received += v;
                        if label(m, "listener") == Some(LISTENER) {
                            s.internal += v;
                        }
                    }
                    "fluxgate_rejected_total" => s.discarded += v,
                    "fluxgate_unrouted_total" => s.blackholed += v,
                    "fluxgate_sent_points_total" => {
                        s.sent += v;
                        per_output.entry(output).or_default()[0] += v;
                    }
                    "fluxgate_dropped_total" => {
                        s.dropped += v;
                        per_output.entry(output).or_default()[1] += v;
                    }
                    "fluxgate_queue_points" => {
                        s.queued += v;
                        per_output.entry(output).or_default()[2] += v;
                    }
                    "fluxgate_destination_sent_points_total" => {
                        graphite_outputs.insert(output);
                        s.destinations.entry(dest()).or_default()[0] += v;
                    }
                    "fluxgate_destination_dropped_total" => {
                        graphite_outputs.insert(output);
                        s.destinations.entry(dest()).or_default()[1] += v;
                    }
                    "fluxgate_destination_queue_points" => {
                        graphite_outputs.insert(output);
                        s.destinations.entry(dest()).or_default()[2] += v;
                    }
                    "process_cpu_seconds_total" => s.cpu_seconds = v,
                    "process_resident_memory_bytes" => s.rss_bytes = v,
                    _ => {}
                }
            }
        }
        for (output, figures) in per_output {
            if !graphite_outputs.contains(&output) {
                let key = output.replace('.', "_");
                let entry = s.destinations.entry(key).or_default();
                for (e, f) in entry.iter_mut().zip(figures) {
                    *e += f;
                }
            }
        }
        s
    }
}

/// The lines of one round: `(name under the prefix, value)`. `prev` is the round before (or
/// the start), `elapsed` the seconds since it.
pub fn report(
    now: &Snapshot,
    prev: &Snapshot,
    elapsed: f64,
    reset_counters: bool,
) -> Vec<(String, f64)> {
    let counter = |cur: f64, before: f64| {
        if reset_counters {
            (cur - before).max(0.0)
        } else {
            cur
        }
    };
    let mut out = vec![
        (
            "metricsReceived".to_owned(),
            counter(now.received, prev.received),
        ),
        (
            "metricsBlackholed".to_owned(),
            counter(now.blackholed, prev.blackholed),
        ),
        (
            "metricsDiscarded".to_owned(),
            counter(now.discarded, prev.discarded),
        ),
    ];
    out.push((
        "destinations.internal.sent".to_owned(),
        counter(now.internal, prev.internal),
    ));
    out.push(("destinations.internal.queued".to_owned(), 0.0));
    out.push(("destinations.internal.dropped".to_owned(), 0.0));
    for (d, [sent, dropped, queued]) in &now.destinations {
        let before = prev.destinations.get(d).copied().unwrap_or_default();
        out.push((format!("destinations.{d}.sent"), counter(*sent, before[0])));
        out.push((format!("destinations.{d}.queued"), *queued));
        out.push((
            format!("destinations.{d}.dropped"),
            counter(*dropped, before[1]),
        ));
    }
    out.push(("metricsSent".to_owned(), counter(now.sent, prev.sent)));
    out.push(("metricsQueued".to_owned(), now.queued));
    out.push((
        "metricsDropped".to_owned(),
        counter(now.dropped, prev.dropped),
    ));
    let cpu = if elapsed > 0.0 {
        (now.cpu_seconds - prev.cpu_seconds).max(0.0) / elapsed * 100.0
    } else {
        0.0
    };
    out.push(("cpuUsage".to_owned(), cpu));
    out.push(("memUsage".to_owned(), now.rss_bytes));
    out
}

/// Injects the figures every `interval` until the gateway stops.
pub async fn run(ctx: Arc<ListenerCtx>, cfg: TelemetryConfig) {
    let Some(prefix) = &cfg.graphite_prefix else {
        return;
    };
    let prefix = expand_prefix(prefix, &hostname());
    let mut batch = GraphiteBatch::new(ctx.clone(), None);
    let mut prev = Snapshot::from_families(&ctx.metrics.gather());
    let mut prev_at = std::time::Instant::now();
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + cfg.interval, cfg.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = ctx.stop_accepting.cancelled() => return,
        }
        let now = Snapshot::from_families(&ctx.metrics.gather());
        let elapsed = prev_at.elapsed().as_secs_f64();
        prev_at = std::time::Instant::now();
        let lines = report(&now, &prev, elapsed, cfg.reset_counters);
        prev = now;
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0) as f64;
        batch.begin();
        let pipeline = ctx.pipeline();
        let mut translator = pipeline.templates.translator();
        for (name, value) in &lines {
            let path = format!("{prefix}.{name}");
            batch.add(
                &pipeline,
                &mut translator,
                &path,
                *value,
                Timestamp::Seconds(ts),
            );
        }
        drop(translator);
        batch.flush(&pipeline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_placeholders_as_carbon_c_relay() {
        assert_eq!(
            expand_prefix("carbon.relays.<host>", "relay01.dc1.example"),
            "carbon.relays.relay01_dc1_example"
        );
        assert_eq!(
            expand_prefix("carbon.relays.<host_short>", "relay01.dc1.example"),
            "carbon.relays.relay01"
        );
        assert_eq!(expand_prefix("fixed.prefix", "h"), "fixed.prefix");
    }

    fn figures() -> Metrics {
        let m = Metrics::new();
        m.received.with_label_values(&["plaintext_tcp"]).inc_by(100);
        m.received.with_label_values(&[LISTENER]).inc_by(20);
        m.rejected
            .with_label_values(&["plaintext_tcp", "nan"])
            .inc_by(3);
        m.sent_points.with_label_values(&["carbon"]).inc_by(90);
        m.sent_points.with_label_values(&["influx"]).inc_by(120);
        m.destination_sent
            .with_label_values(&["carbon", "10.0.0.1:2003"])
            .inc_by(60);
        m.destination_sent
            .with_label_values(&["carbon", "10.0.0.2:2003"])
            .inc_by(30);
        m.dropped
            .with_label_values(&["influx", "rejected"])
            .inc_by(5);
        m.queue_points.with_label_values(&["influx"]).set(7);
        m
    }
    use crate::metrics::Metrics;

    #[test]
    fn counters_run_from_the_start_or_per_interval() {
        let m = figures();
        let s = Snapshot::from_families(&m.gather());
        assert_eq!(s.received, 120.0);
        assert_eq!(s.internal, 20.0);
        assert_eq!(s.sent, 210.0);
        assert_eq!(s.dropped, 5.0);
        assert_eq!(s.queued, 7.0);
        assert_eq!(s.discarded, 3.0);
        assert_eq!(s.destinations["10_0_0_1:2003"], [60.0, 0.0, 0.0]);
        assert_eq!(s.destinations["influx"], [120.0, 5.0, 7.0]);
        assert!(!s.destinations.contains_key("carbon"));
        let cumulative: BTreeMap<_, _> = report(&s, &Snapshot::default(), 1.0, false)
            .into_iter()
            .collect();
        assert_eq!(cumulative["metricsReceived"], 120.0);
        assert_eq!(cumulative["metricsSent"], 210.0);
        assert_eq!(cumulative["destinations.internal.sent"], 20.0);
        assert_eq!(cumulative["destinations.10_0_0_2:2003.sent"], 30.0);
        assert_eq!(cumulative["destinations.influx.dropped"], 5.0);

        m.received.with_label_values(&["plaintext_tcp"]).inc_by(10);
        let later = Snapshot::from_families(&m.gather());
        let delta: BTreeMap<_, _> = report(&later, &s, 1.0, true).into_iter().collect();
        assert_eq!(delta["metricsReceived"], 10.0);
        assert_eq!(delta["metricsSent"], 0.0);
        // A sample, not a counter.
        assert_eq!(delta["metricsQueued"], 7.0);
        assert_eq!(delta["destinations.influx.queued"], 7.0);
    }
}
