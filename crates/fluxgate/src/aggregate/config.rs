//! The TOML of aggregation: `[aggregation]` (carbon-aggregator's rules) and `[[aggregate]]`
//! (carbon-c-relay's `aggregate` statements). Key names are the contract (DESIGN.md).

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::route::Patterns;

/// `[aggregation]`: carbon-aggregator's rules, from its own `aggregation-rules.conf` and/or
/// inline, with its settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregationConfig {
    /// carbon's `aggregation-rules.conf`, read as carbon reads it (comments, blank lines).
    pub carbon_rules: Option<PathBuf>,
    /// Rules in the same syntax, after those of `carbon_rules`:
    /// `"<output> (<frequency>) = <method> <input>"`.
    pub rules: Vec<String>,
    /// carbon's MAX_AGGREGATION_INTERVALS: buckets older than this many frequencies before
    /// the current one are forgotten after each pass.
    pub max_intervals: u32,
    /// carbon's FORWARD_ALL: inputs that feed an aggregate also go on as themselves (except
    /// one whose own name is an aggregate it feeds).
    pub forward_inputs: bool,
    /// Most aggregate series (carbon: output buffers; `[[aggregate]]`: one per compute and
    /// output name) each aggregator keeps; a value that would open one more is dropped and
    /// counted (`max_series`).
    pub max_series: usize,
    /// Most values one bucket keeps for the methods that need them all (percentiles,
    /// median, variance, stddev); more are dropped and counted (`max_values`).
    pub max_bucket_values: usize,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        Self {
            carbon_rules: None,
            rules: Vec::new(),
            max_intervals: 5,
            forward_inputs: true,
            max_series: 1_000_000,
            max_bucket_values: 100_000,
        }
    }
}

/// Where in its bucket an `[[aggregate]]` stamps what it computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestampAt {
    Start,
    Middle,
    /// carbon-c-relay's default.
    #[default]
    End,
}

/// One `compute = [{ fn = "sum", write_to = "..." }]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeConfig {
    /// `sum`, `count`, `max`, `min`, `average`, `median`, `percentile<N>` (1..99),
    /// `variance`, `stddev`.
    #[serde(rename = "fn")]
    pub function: String,
    /// The aggregate's name: the input's name with the matched part replaced by this, `\1`
    /// for groups (carbon-c-relay's `write to`).
    pub write_to: String,
}

/// Seconds, as an integer or a duration string (`60`, `"60s"`, `"1m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Seconds(pub u64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("whole seconds: an integer or a duration such as \"60s\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v)
                    .map(Seconds)
                    .map_err(|_| E::custom("must not be negative"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Seconds, E> {
                let d = humantime_serde::re::humantime::parse_duration(v).map_err(E::custom)?;
                if d.subsec_nanos() != 0 {
                    return Err(E::custom("must be whole seconds"));
                }
                Ok(Seconds(d.as_secs()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// One `[[aggregate]]`: carbon-c-relay's `aggregate <regex>... every N seconds expire after M
/// seconds [timestamp at start|middle|end of bucket] compute ... write to ... [send to ...]
/// [stop]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// The `aggregator` label of its metrics (default `aggregate<index>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Regexes on the Graphite path (without tags), unanchored; `"*"` matches everything.
    #[serde(rename = "match")]
    pub pattern: Patterns,
    /// The bucket width.
    pub every: Seconds,
    /// How long after a bucket began its aggregates are computed (more than `every`).
    pub expire: Seconds,
    #[serde(default)]
    pub timestamp: TimestampAt,
    pub compute: Vec<ComputeConfig>,
    /// Outputs the aggregates go to; without it they are routed by `[[routes]]`.
    #[serde(default)]
    pub send_to: Option<Patterns>,
    /// A matching input goes no further: not to later `[[aggregate]]`s, not to the routes.
    #[serde(default)]
    pub stop: bool,
}
