//! Aggregation: many input series in, fewer aggregate series out, on a clock.
//!
//! An aggregator kind is one module behind the [`Aggregator`] trait: [`carbon`] runs
//! carbon-aggregator's `aggregation-rules.conf` (`[aggregation]`), [`relay`] runs
//! carbon-c-relay's `aggregate` statements (`[[aggregate]]`). Both are sans-IO: the pipeline
//! [offers](Aggregator::offer) each Graphite point after cleansing and `[[rewrite]]`, and
//! [`task`] asks them on a clock for what is due ([`Aggregator::tick`]) and feeds that into
//! the pipeline, where it is routed like any other point (to `send_to` outputs only, when an
//! `[[aggregate]]` names them) and never aggregated again.
//!
//! Order: carbon's rules first, then the `[[aggregate]]`s top to bottom, then the
//! `stage = "post"` rewrites, then `[[routes]]`.
//!
//! State is bounded (`max_series`, `max_bucket_values`; what is over is dropped and
//! counted), and survives a reload for every rule that did not change: a new configuration
//! takes over the state of the rules it keeps.

use std::{
    any::Any,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use prometheus::{IntCounter, IntGauge};

use crate::metrics::{Metrics, RateLimit};

pub mod carbon;
pub mod config;
pub mod relay;
pub mod task;

pub use config::{AggregateConfig, AggregationConfig};

/// How many input names an aggregator remembers the rules' verdict for (past it, it starts
/// over): the regexes run once per series, not once per point.
pub(crate) const MAX_CACHED_NAMES: usize = 262_144;

/// What an aggregator made of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// No rule matched.
    Pass,
    /// It fed one or more aggregates and goes on.
    Fed,
    /// It fed aggregates and goes no further (`stop`, or carbon's rule that an input
    /// feeding its own name, or any input without `forward_inputs`, is not passed on).
    Consumed,
}

/// One aggregate datapoint, due now.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub name: String,
    /// Seconds since the epoch.
    pub timestamp: i64,
    pub value: f64,
    /// Output indices (router order) it goes to; `None`: routed by `[[routes]]`.
    pub send_to: Option<u64>,
}

/// Bounds on an aggregator's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_series: usize,
    pub max_bucket_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let d = AggregationConfig::default();
        Self {
            max_series: d.max_series,
            max_bucket_values: d.max_bucket_values,
        }
    }
}

/// An aggregator kind. Implementations are shared by every connection (`&self`, locking
/// inside) and never block on I/O.
pub trait Aggregator: fmt::Debug + Send + Sync + Any {
    /// The kind, for logs.
    fn label(&self) -> &str;
    /// Takes one input: `name` is the Graphite name after cleansing and rewriting (tags
    /// included), `timestamp` whole seconds. `now_ms` reads the clock (only when a new
    /// series needs it).
    fn offer(&self, name: &str, value: f64, timestamp: i64, now_ms: &dyn Fn() -> i64) -> Offer;
    /// Appends the aggregates due at `now_ms` (milliseconds since the epoch).
    fn tick(&self, now_ms: i64, out: &mut Vec<Emitted>);
    /// Aggregate series held now.
    fn series(&self) -> usize;
    /// For a successor built on reload to find its predecessor's state.
    fn as_any(&self) -> &dyn Any;
}

/// A configuration that cannot aggregate, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    #[error("{origin}:{line}: {message} (rule: {rule:?})")]
    CarbonRule {
        origin: String,
        line: usize,
        rule: String,
        message: String,
    },
    #[error("cannot read carbon_rules {path}: {message}")]
    Read { path: String, message: String },
    #[error("{section}: {message}")]
    Invalid { section: String, message: String },
}

/// One aggregator's counters (`aggregator` label) and its rate-limited log.
#[derive(Debug, Clone)]
pub struct AggregateMetrics {
    label: String,
    pub received: IntCounter,
    pub emitted: IntCounter,
    pub dropped_late: IntCounter,
    pub dropped_too_early: IntCounter,
    pub dropped_max_series: IntCounter,
    pub dropped_max_values: IntCounter,
    pub series: IntGauge,
    log: Arc<RateLimit>,
}

impl AggregateMetrics {
    pub fn new(metrics: &Metrics, label: &str) -> Self {
        let dropped = |reason| {
            metrics
                .aggregate_dropped
                .with_label_values(&[label, reason])
        };
        Self {
            label: label.to_owned(),
            received: metrics.aggregate_received.with_label_values(&[label]),
            emitted: metrics.aggregate_emitted.with_label_values(&[label]),
            dropped_late: dropped("late"),
            dropped_too_early: dropped("too_early"),
            dropped_max_series: dropped("max_series"),
            dropped_max_values: dropped("max_values"),
            series: metrics.aggregate_series.with_label_values(&[label]),
            log: Arc::new(RateLimit::new(std::time::Duration::from_secs(10))),
        }
    }

    /// Counts and (rate-limited) logs a value that could not be aggregated.
    pub fn drop(&self, reason: &'static str, output: &str) {
        let counter = match reason {
            "late" => &self.dropped_late,
            "too_early" => &self.dropped_too_early,
            "max_series" => &self.dropped_max_series,
            _ => &self.dropped_max_values,
        };
        counter.inc();
        let why = match reason {
            "late" => "its bucket was produced already or is older than the buckets kept",
            "too_early" => "its timestamp is beyond the buckets kept ahead",
            "max_series" => "max_series aggregate series are held already",
            _ => "its bucket holds max_bucket_values values already",
        };
        crate::warn_limited!(
            self.log,
            aggregator = %self.label,
            reason,
            "value for {output} not aggregated: {why}"
        );
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The aggregators of one configuration, in the order inputs meet them.
#[derive(Debug)]
pub struct Aggregation {
    aggregators: Vec<Arc<dyn Aggregator>>,
}

impl Aggregation {
    /// Builds what `[aggregation]` and `[[aggregate]]` ask for (`None` when neither has a
    /// rule), taking over the state of `previous`'s unchanged rules. `outputs` are the output
    /// names in router order. Reads `carbon_rules` now: a reload re-reads it.
    pub fn build(
        aggregation: &AggregationConfig,
        aggregates: &[AggregateConfig],
        outputs: &[String],
        metrics: &Metrics,
        previous: Option<&Aggregation>,
    ) -> Result<Option<Self>, AggregateError> {
        let limits = Limits {
            max_series: aggregation.max_series,
            max_bucket_values: aggregation.max_bucket_values,
        };
        if limits.max_series == 0 || limits.max_bucket_values == 0 {
            return Err(AggregateError::Invalid {
                section: "aggregation".into(),
                message: "max_series and max_bucket_values must be at least 1".into(),
            });
        }
        let find = |label: &str| -> Option<&dyn Aggregator> {
            previous?
                .aggregators
                .iter()
                .find(|a| a.label() == label)
                .map(|a| &**a)
        };
        let mut rules = Vec::new();
        if let Some(path) = &aggregation.carbon_rules {
            let text = std::fs::read_to_string(path).map_err(|e| AggregateError::Read {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            rules.extend(carbon::parse_rules(&text, &path.display().to_string())?);
        }
        for (i, line) in aggregation.rules.iter().enumerate() {
            let origin = format!("aggregation.rules[{i}]");
            let mut parsed = carbon::parse_rules(line, &origin)?;
            if parsed.is_empty() {
                return Err(AggregateError::Invalid {
                    section: origin,
                    message: "empty rule".into(),
                });
            }
            rules.append(&mut parsed);
        }
        let mut aggregators: Vec<Arc<dyn Aggregator>> = Vec::new();
        if !rules.is_empty() {
            let m = AggregateMetrics::new(metrics, "carbon");
            aggregators.push(Arc::new(carbon::CarbonAggregator::new(
                rules,
                aggregation.max_intervals,
                aggregation.forward_inputs,
                limits,
                m,
                find("carbon"),
            )?));
        }
        if !aggregates.is_empty() {
            aggregators.push(Arc::new(relay::RelayAggregator::new(
                aggregates,
                outputs,
                limits,
                metrics,
                find("aggregate"),
            )?));
        }
        Ok((!aggregators.is_empty()).then_some(Self { aggregators }))
    }

    /// Offers an input to each aggregator in turn; false when one consumed it.
    #[inline]
    pub fn offer(&self, name: &str, value: f64, timestamp: i64) -> bool {
        let now = now_ms;
        for a in &self.aggregators {
            if a.offer(name, value, timestamp, &now) == Offer::Consumed {
                return false;
            }
        }
        true
    }

    /// Everything due at `now_ms`.
    pub fn tick(&self, now_ms: i64, out: &mut Vec<Emitted>) {
        for a in &self.aggregators {
            a.tick(now_ms, out);
        }
    }

    pub fn aggregators(&self) -> &[Arc<dyn Aggregator>] {
        &self.aggregators
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const EXAMPLE: &str = r#"
[[outputs.graphite]]
name = "carbon"
destinations = ["127.0.0.1:2004"]

[[rewrite]]
match = '^(a)\.'
replace = '\g<1>_'
stage = "post"
replace_all = true

[aggregation]
rules = ["<env>.all.requests (60) = sum <env>.*.requests"]
max_intervals = 3

[[aggregate]]
name = "cpu"
match = ['^sys\.dc1\.([^.]+)\.cpu$']
every = "60s"
expire = 120
timestamp = "middle"
compute = [{ fn = "sum", write_to = 'sys.dc1.all.\1.sum' },
           { fn = "percentile95", write_to = 'sys.dc1.all.\1.p95' }]
send_to = ["carbon"]
stop = true
"#;

    #[test]
    fn the_documented_keys_parse_and_build() {
        let config = Config::from_toml(EXAMPLE, "example").unwrap();
        assert_eq!(config.aggregate[0].every.0, 60);
        assert_eq!(config.aggregate[0].expire.0, 120);
        let aggregation = config.aggregation(&Metrics::new(), None).unwrap().unwrap();
        assert_eq!(aggregation.aggregators().len(), 2);
        // carbon's rule takes the input and forwards it; the stop aggregate consumes it.
        assert!(aggregation.offer("prod.h1.requests", 1.0, 60));
        assert!(!aggregation.offer("sys.dc1.h1.cpu", 1.0, now_ms() / 1000));
        // Post rewrites: every match (Python's re.sub), `\g<1>` references.
        let router = config.router().unwrap();
        let mut scratch = String::new();
        assert_eq!(router.rewrite_post("a.a.b", &mut scratch), "a_a.b");
        assert_eq!(router.rewrite("a.a.b", &mut scratch), "a.a.b");
    }

    #[test]
    fn mistakes_are_reported_with_where() {
        for (extra, says) in [
            ("[aggregation]\nrules = [\"x (60) = median y\"]\n", "aggregation.rules[0]:1"),
            (
                "[aggregation]\ncarbon_rules = \"/nonexistent/rules.conf\"\n",
                "cannot read carbon_rules",
            ),
            (
                "[[aggregate]]\nmatch = \"x\"\nevery = 60\nexpire = 60\ncompute = [{ fn = \"sum\", write_to = \"y\" }]\n",
                "must be greater than `every`",
            ),
            (
                "[[aggregate]]\nmatch = \"x\"\nevery = 6\nexpire = 60\ncompute = [{ fn = \"p9\", write_to = \"y\" }]\n",
                "unknown fn",
            ),
            (
                "[[aggregate]]\nmatch = \"(x)\"\nevery = 6\nexpire = 60\ncompute = [{ fn = \"sum\", write_to = 'y\\2' }]\n",
                "group 2",
            ),
            (
                "[[aggregate]]\nmatch = \"x\"\nevery = 6\nexpire = 60\nsend_to = \"nowhere\"\ncompute = [{ fn = \"sum\", write_to = \"y\" }]\n",
                "unknown output",
            ),
            (
                "[[aggregate]]\nmatch = \"x\"\nevery = \"1.5s\"\nexpire = 60\ncompute = [{ fn = \"sum\", write_to = \"y\" }]\n",
                "whole seconds",
            ),
        ] {
            let e = Config::from_toml(extra, "t").unwrap_err().to_string();
            assert!(e.contains(says), "{extra}: {e}");
        }
    }
}
