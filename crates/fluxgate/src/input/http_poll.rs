//! `[[inputs.http_poll]]`: fetches a device's JSON readings on an interval and hands one point
//! per cycle to the pipeline, as the DatabaseInterface library's data daemon does for its
//! devices (its `AsyncFetcher` GETs `http://srv_ip:srv_port/handle`, its `JSONInfluxParser`
//! keeps the tracked parameters and averages one that is tracked under several sensors).
//!
//! The document is `{"<sensor>": {"<param>": <number>, ...}, ...}` by default; for a device
//! that nests it, `readings_pointer` (a JSON Pointer, RFC 6901) names the object that holds the
//! sensors and `value_pointer` the number inside each parameter's entry
//! (`{"temperature": {"value": 21.5, "unit": "C"}}` with `value_pointer = "/value"`).
//!
//! Every tracked parameter becomes one float field named after the parameter: the mean of its
//! values under every sensor that tracks it and reported it in this cycle. The point is
//! stamped with the time the cycle began. A cycle that fails (not 200, timeout, connection
//! refused, a body over `max_body_bytes`, not JSON, no readings object, no tracked value) sends
//! nothing, is counted in `fluxgate_poll_errors_total{input,reason}` and logged (rate-limited);
//! the next cycle runs as usual. A tracked parameter missing from an otherwise good document,
//! or not a number, is counted too (`missing_param`, `not_a_number`) and the point carries the
//! others.
//!
//! Cycles never overlap: one runs, then the next is due on the interval's grid; when a cycle
//! (fetch plus handing the point on, which waits while the outputs push back) outlasts one or
//! more intervals, the cycles that fell in it are skipped and counted in
//! `fluxgate_poll_missed_cycles_total{input}`.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::{future::BoxFuture, FutureExt, StreamExt};
use prometheus::IntCounter;
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use super::Input;
use crate::{
    config::redact_url,
    error_chain,
    listener::ListenerCtx,
    metrics::Metrics,
    output::influxdb::{Destination, Target},
    pipeline::{Batch, Wait},
    warn_limited,
};

/// The `listener` label of the points polled inputs hand on (`fluxgate_received_total`).
pub const LISTENER: &str = "http_poll";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpPollConfig {
    /// Names the input in metrics and logs; unique across inputs.
    pub name: String,
    /// The device's readings, `http://srv_ip:srv_port/handle` (http or https).
    pub url: String,
    /// Time between the starts of two cycles.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// One fetch's deadline (connect, headers and body); unset: the interval.
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Sensors and the parameters to keep from each (`{ bme280 = ["temperature"] }`).
    pub sensors: BTreeMap<String, Vec<String>>,
    /// The measurement of the points.
    pub measurement: String,
    /// Tags on every point.
    pub tags: BTreeMap<String, String>,
    /// Where the points go in an InfluxDB output: `db`, `db/rp` or a v2 bucket name; empty:
    /// the output's own `database` / `bucket`.
    pub bucket: String,
    /// JSON Pointer to the object holding the sensors ("" = the whole document).
    pub readings_pointer: String,
    /// JSON Pointer to the number inside a parameter's entry ("" = the entry is the number).
    pub value_pointer: String,
    /// Largest response body read; a longer one fails the cycle (`too_large`).
    pub max_body_bytes: usize,
}

impl Default for HttpPollConfig {
    fn default() -> Self {
        Self {
            name: LISTENER.to_owned(),
            url: String::new(),
            interval: Duration::from_secs(1),
            timeout: None,
            sensors: BTreeMap::new(),
            measurement: "device".to_owned(),
            tags: BTreeMap::new(),
            bucket: String::new(),
            readings_pointer: String::new(),
            value_pointer: String::new(),
            max_body_bytes: 1 << 20,
        }
    }
}

impl HttpPollConfig {
    /// The fetch deadline in force.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(self.interval)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("name must not be empty".into());
        }
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
            Ok(_) => {
                return Err(format!(
                    "url {:?} must be an http:// or https:// URL with a host",
                    redact_url(&self.url)
                ))
            }
            Err(e) => return Err(format!("url {:?}: {e}", redact_url(&self.url))),
        }
        if self.interval.is_zero() {
            return Err("interval must be greater than zero".into());
        }
        if self.timeout().is_zero() {
            return Err("timeout must be greater than zero".into());
        }
        if self.sensors.is_empty() || self.sensors.values().all(Vec::is_empty) {
            return Err("sensors must name at least one sensor and parameter, e.g. sensors = { bme280 = [\"temperature\"] }".into());
        }
        if self.measurement.is_empty() {
            return Err("measurement must not be empty".into());
        }
        for (what, p) in [
            ("readings_pointer", &self.readings_pointer),
            ("value_pointer", &self.value_pointer),
        ] {
            if !p.is_empty() && !p.starts_with('/') {
                return Err(format!(
                    "{what} {p:?} is not a JSON Pointer: it must be empty or start with '/'"
                ));
            }
        }
        if self.max_body_bytes == 0 {
            return Err("max_body_bytes must be at least 1".into());
        }
        // The point must be writable: a measurement, tag or field the writer refuses is a
        // config error now rather than a failed cycle every second.
        let mut probe = Vec::new();
        let fields: Vec<(&str, f64)> = self.params().map(|p| (p, 0.0)).collect();
        encode_point(&self.measurement, &self.tags, &fields, 0, &mut probe)
            .map_err(|e| format!("the point cannot be written as line protocol: {e}"))?;
        Ok(())
    }

    /// The distinct tracked parameters, sorted.
    fn params(&self) -> impl Iterator<Item = &str> {
        let mut all: Vec<&str> = self
            .sensors
            .values()
            .flatten()
            .map(String::as_str)
            .collect();
        all.sort_unstable();
        all.dedup();
        all.into_iter()
    }
}

/// Why a cycle sent nothing, or a parameter was left out: the `reason` label.
#[derive(Debug, Clone, PartialEq)]
pub enum PollError {
    /// The device answered with another status than 200.
    Status(u16),
    Timeout,
    /// Connection refused, reset, TLS failure, bad redirect, ...
    Request(String),
    TooLarge(usize),
    BadJson(String),
    /// `readings_pointer` names nothing, or not an object.
    NoReadings,
    /// The document held none of the tracked parameters as a number.
    NoValues,
}

impl PollError {
    pub fn reason(&self) -> &'static str {
        match self {
            PollError::Status(_) => "http_status",
            PollError::Timeout => "timeout",
            PollError::Request(_) => "request",
            PollError::TooLarge(_) => "too_large",
            PollError::BadJson(_) => "bad_json",
            PollError::NoReadings => "no_readings",
            PollError::NoValues => "no_values",
        }
    }
}

impl std::fmt::Display for PollError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PollError::Status(s) => write!(f, "the device answered HTTP {s}, not 200"),
            PollError::Timeout => f.write_str("the device did not answer within the timeout"),
            PollError::Request(e) => write!(f, "the request failed: {e}"),
            PollError::TooLarge(n) => {
                write!(f, "the answer is longer than max_body_bytes ({n})")
            }
            PollError::BadJson(e) => write!(f, "the answer is not JSON: {e}"),
            PollError::NoReadings => {
                f.write_str("readings_pointer names no JSON object in the answer")
            }
            PollError::NoValues => {
                f.write_str("the answer holds none of the tracked parameters as a number")
            }
        }
    }
}

/// A tracked parameter left out of a point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub sensor: String,
    pub param: String,
    /// `missing_param` or `not_a_number`.
    pub reason: &'static str,
}

/// What one document gives: the fields (parameter, mean), sorted by parameter, and the
/// tracked values that were not there or not numbers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Readings {
    pub fields: Vec<(String, f64)>,
    pub skipped: Vec<Skipped>,
}

/// The sans-IO core: the tracked parameters of `doc`, a parameter tracked under several
/// sensors averaged into one field (JSONInfluxParser's rule).
pub fn extract(doc: &Value, cfg: &HttpPollConfig) -> Result<Readings, PollError> {
    let readings = doc
        .pointer(&cfg.readings_pointer)
        .and_then(Value::as_object)
        .ok_or(PollError::NoReadings)?;
    let mut sums: BTreeMap<&str, (f64, u32)> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (sensor, params) in &cfg.sensors {
        for param in params {
            let entry = readings
                .get(sensor)
                .and_then(|s| s.get(param))
                .and_then(|e| e.pointer(&cfg.value_pointer));
            let reason = match entry {
                Some(v) => match v.as_f64() {
                    Some(x) => {
                        let s = sums.entry(param).or_insert((0.0, 0));
                        s.0 += x;
                        s.1 += 1;
                        continue;
                    }
                    None => "not_a_number",
                },
                None => "missing_param",
            };
            skipped.push(Skipped {
                sensor: sensor.clone(),
                param: param.clone(),
                reason,
            });
        }
    }
    if sums.is_empty() {
        return Err(PollError::NoValues);
    }
    Ok(Readings {
        fields: sums
            .into_iter()
            .map(|(p, (sum, n))| (p.to_owned(), sum / f64::from(n)))
            .collect(),
        skipped,
    })
}

/// Appends the point as line protocol (float fields, nanosecond timestamp, `\n`).
fn encode_point(
    measurement: &str,
    tags: &BTreeMap<String, String>,
    fields: &[(impl AsRef<str>, f64)],
    timestamp_ns: i64,
    out: &mut Vec<u8>,
) -> Result<usize, String> {
    let mut w = line_protocol::LineWriter::new(out).measurement(measurement);
    for (k, v) in tags {
        w = w.tag(k, v);
    }
    let mut fields = fields.iter();
    let Some((k, v)) = fields.next() else {
        return Err("a point needs at least one field".into());
    };
    let mut f = w.field_f64(k.as_ref(), *v);
    for (k, v) in fields {
        f = f.field_f64(k.as_ref(), *v);
    }
    f.timestamp(timestamp_ns)
        .finish()
        .map_err(|e| e.to_string())
}

/// A polled device.
#[derive(Debug)]
pub struct HttpPoll {
    cfg: HttpPollConfig,
    client: reqwest::Client,
    cycles: IntCounter,
    missed: IntCounter,
    metrics: Metrics,
}

impl HttpPoll {
    pub fn new(cfg: HttpPollConfig, metrics: &Metrics) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout())
            .connect_timeout(cfg.timeout())
            .user_agent(concat!("fluxgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| error_chain(&e))?;
        Ok(Self {
            cycles: metrics.poll_cycles.with_label_values(&[&cfg.name]),
            missed: metrics.poll_missed_cycles.with_label_values(&[&cfg.name]),
            metrics: metrics.clone(),
            client,
            cfg,
        })
    }

    fn count(&self, reason: &str, n: u64) {
        self.metrics
            .poll_errors
            .with_label_values(&[&self.cfg.name, reason])
            .inc_by(n);
    }

    /// GETs the document, reading at most `max_body_bytes`.
    async fn fetch(&self) -> Result<Value, PollError> {
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                PollError::Timeout
            } else {
                // Without the URL: it may carry credentials.
                PollError::Request(error_chain(&e.without_url()))
            }
        };
        let resp = self
            .client
            .get(&self.cfg.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(classify)?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(PollError::Status(resp.status().as_u16()));
        }
        let limit = self.cfg.max_body_bytes;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(PollError::TooLarge(limit));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(classify)?;
            if body.len() + chunk.len() > limit {
                return Err(PollError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| PollError::BadJson(e.to_string()))
    }

    /// One cycle: fetch and extract (given up at once when the input stops: nothing was
    /// taken yet), then hand the point on (finished even when the input stops meanwhile, so a
    /// point read is never lost uncounted: like a listener's connection at shutdown, it waits
    /// for room until the queues close, and what it then holds is counted as dropped).
    async fn cycle(&self, ctx: &ListenerCtx, started_ns: i64) {
        self.cycles.inc();
        let fetched = tokio::select! {
            r = self.fetch() => r,
            _ = ctx.stop_accepting.cancelled() => return,
        };
        let readings = match fetched.and_then(|doc| extract(&doc, &self.cfg)) {
            Ok(r) => r,
            Err(e) => {
                self.count(e.reason(), 1);
                warn_limited!(
                    ctx.log_limit,
                    input = %self.cfg.name,
                    url = %redact_url(&self.cfg.url),
                    reason = e.reason(),
                    "poll failed: {e}"
                );
                return;
            }
        };
        for s in &readings.skipped {
            self.count(s.reason, 1);
        }
        if let Some(s) = readings.skipped.first() {
            warn_limited!(
                ctx.log_limit,
                input = %self.cfg.name,
                sensor = %s.sensor,
                param = %s.param,
                reason = s.reason,
                skipped = readings.skipped.len(),
                "poll: tracked parameter left out of the point"
            );
        }
        let mut line = Vec::with_capacity(128);
        if let Err(e) = encode_point(
            &self.cfg.measurement,
            &self.cfg.tags,
            &readings.fields,
            started_ns,
            &mut line,
        ) {
            // A field name the writer refuses cannot pass validate(); counted all the same.
            self.count("unwritable", 1);
            warn_limited!(ctx.log_limit, input = %self.cfg.name, "poll: point not writable: {e}");
            return;
        }
        let text = std::str::from_utf8(&line).expect("line protocol is UTF-8");
        let parsed = match line_protocol::parse_line(text.trim_end()) {
            Ok(p) => p,
            Err(e) => {
                self.count("unwritable", 1);
                warn_limited!(ctx.log_limit, input = %self.cfg.name, "poll: point not writable: {e}");
                return;
            }
        };
        let pipeline = ctx.pipeline();
        let mut batch = Batch::new(LISTENER);
        batch.add_line_protocol(&pipeline, &parsed, &line, started_ns);
        let target = if self.cfg.bucket.is_empty() {
            Target::Default
        } else {
            Target::Explicit(Destination::from_bucket(&self.cfg.bucket))
        };
        // Waits for room as a TCP listener does: a full output holds the cycle back, and the
        // cycles it outlasts are counted as missed, never queued up.
        batch.submit(ctx, &pipeline, &target, Wait::Partial).await;
        ctx.received.inc();
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// After a cycle that ended at `end`, the next cycle due on the grid `due + k·interval` (the
/// first at or after `end`) and how many due times fell inside the cycle (missed).
pub fn next_due(due: Instant, interval: Duration, end: Instant) -> (Instant, u64) {
    let mut next = due + interval;
    if next >= end {
        return (next, 0);
    }
    let behind = end - next;
    let skipped = (behind.as_nanos() / interval.as_nanos().max(1)) as u64;
    next += interval * (skipped as u32);
    if next < end {
        next += interval;
        return (next, skipped + 1);
    }
    (next, skipped)
}

impl Input for HttpPoll {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn run(self: Arc<Self>, ctx: Arc<ListenerCtx>) -> BoxFuture<'static, ()> {
        async move {
            let interval = self.cfg.interval;
            let mut due = Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = ctx.stop_accepting.cancelled() => return,
                }
                let started_ns = now_ns();
                self.cycle(&ctx, started_ns).await;
                if ctx.stop_accepting.is_cancelled() {
                    return;
                }
                let (next, missed) = next_due(due, interval, Instant::now());
                if missed > 0 {
                    self.missed.inc_by(missed);
                    warn_limited!(
                        ctx.log_limit,
                        input = %self.cfg.name,
                        missed,
                        "poll: a cycle outlasted the interval; the cycles due meanwhile were skipped"
                    );
                }
                due = next;
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(sensors: &[(&str, &[&str])]) -> HttpPollConfig {
        HttpPollConfig {
            url: "http://127.0.0.1:1/readings".into(),
            sensors: sensors
                .iter()
                .map(|(s, ps)| (s.to_string(), ps.iter().map(|p| p.to_string()).collect()))
                .collect(),
            ..HttpPollConfig::default()
        }
    }

    #[test]
    fn a_parameter_tracked_under_two_sensors_is_their_mean() {
        let c = cfg(&[
            ("bme280", &["temperature", "humidity"]),
            ("dht22", &["temperature"]),
        ]);
        let doc = json!({
            "bme280": {"temperature": 21.0, "humidity": 40, "pressure": 1013.2},
            "dht22": {"temperature": 22.5, "humidity": 99},
            "other": {"temperature": 100}
        });
        let r = extract(&doc, &c).unwrap();
        assert_eq!(
            r.fields,
            vec![("humidity".into(), 40.0), ("temperature".into(), 21.75)]
        );
        assert!(r.skipped.is_empty());
    }

    #[test]
    fn missing_and_non_numeric_parameters_are_reported_and_the_rest_kept() {
        let c = cfg(&[("a", &["x", "y"]), ("b", &["x"])]);
        let doc = json!({"a": {"x": "warm", "y": 2}});
        let r = extract(&doc, &c).unwrap();
        assert_eq!(r.fields, vec![("y".into(), 2.0)]);
        assert_eq!(
            r.skipped,
            vec![
                Skipped {
                    sensor: "a".into(),
                    param: "x".into(),
                    reason: "not_a_number"
                },
                Skipped {
                    sensor: "b".into(),
                    param: "x".into(),
                    reason: "missing_param"
                },
            ]
        );
        assert_eq!(extract(&json!({"a": {}}), &c), Err(PollError::NoValues));
        assert_eq!(extract(&json!([1, 2]), &c), Err(PollError::NoReadings));
    }

    #[test]
    fn nested_documents_are_read_through_json_pointers() {
        let mut c = cfg(&[("s1", &["t"]), ("s2", &["t"])]);
        c.readings_pointer = "/data/sensors".into();
        c.value_pointer = "/value".into();
        let doc = json!({"data": {"sensors": {
            "s1": {"t": {"value": 1.0, "unit": "C"}},
            "s2": {"t": {"value": 2.0, "unit": "C"}}
        }}});
        assert_eq!(extract(&doc, &c).unwrap().fields, vec![("t".into(), 1.5)]);
    }

    #[test]
    fn the_point_is_line_protocol_with_float_fields() {
        let mut tags = BTreeMap::new();
        tags.insert("device".to_owned(), "lab 1".to_owned());
        let mut out = Vec::new();
        encode_point(
            "env",
            &tags,
            &[("humidity", 40.0), ("temperature", 21.75)],
            1_700_000_000_000_000_000,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "env,device=lab\\ 1 humidity=40,temperature=21.75 1700000000000000000\n"
        );
    }

    #[test]
    fn missed_cycles_are_the_due_times_a_cycle_outlasted() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(
            next_due(t0, s, t0 + Duration::from_millis(300)),
            (t0 + s, 0)
        );
        assert_eq!(next_due(t0, s, t0 + s), (t0 + s, 0));
        assert_eq!(
            next_due(t0, s, t0 + Duration::from_millis(1500)),
            (t0 + 2 * s, 1)
        );
        assert_eq!(next_due(t0, s, t0 + 3 * s), (t0 + 3 * s, 2));
        assert_eq!(
            next_due(t0, s, t0 + Duration::from_millis(3100)),
            (t0 + 4 * s, 3)
        );
    }

    #[test]
    fn the_commented_example_in_config_toml_is_valid() {
        // The reference config shows [[inputs.http_poll]] commented out (no device to poll);
        // uncommented, it must load.
        let text = include_str!("../../../../config.toml");
        let start = text
            .find("# [[inputs.http_poll]]")
            .expect("the example is there");
        let example: String = text[start..]
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.strip_prefix("# ").unwrap_or(""))
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let c = crate::Config::from_toml(&example, "config.toml example").unwrap();
        let poll = &c.inputs.http_poll[0];
        assert_eq!(poll.name, "lab");
        assert_eq!(poll.interval, Duration::from_secs(1));
        assert_eq!(poll.sensors["dht22"], ["temperature", "humidity"]);
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let ok = cfg(&[("a", &["x"])]);
        assert_eq!(ok.validate(), Ok(()));
        let mut c = ok.clone();
        c.url = "ftp://x/".into();
        assert!(c.validate().unwrap_err().contains("http://"));
        let mut c = ok.clone();
        c.sensors.clear();
        assert!(c.validate().unwrap_err().contains("sensors"));
        let mut c = ok.clone();
        c.readings_pointer = "data".into();
        assert!(c.validate().unwrap_err().contains("JSON Pointer"));
        let mut c = ok;
        c.interval = Duration::ZERO;
        assert!(c.validate().unwrap_err().contains("interval"));
    }
}
