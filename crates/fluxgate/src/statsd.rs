//! StatsD: the line format and the per-interval aggregation, as Etsy statsd 0.9 and its
//! graphite backend do them (`stats.js`, `lib/process_metrics.js`, `backends/graphite.js`).
//!
//! Sans-IO: [`parse_line`] reads one line, [`Aggregator`] keeps the state of one flush
//! interval and turns it into Graphite samples at each flush. The listener owns the socket
//! and the clock.

use std::{
    collections::{HashMap, HashSet},
    fmt,
};

/// What a metric's `|type` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `c`: added up over the interval (a sampled value counts `1/rate` times).
    Counter,
    /// `g`: the last value; `+N` / `-N` adjust the current one.
    Gauge,
    /// `ms` (or `h`): every value kept for the interval's statistics.
    Timer,
    /// `s`: distinct values counted.
    Set,
}

/// One value of a line (`name:1|c:2|c` holds two).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    pub kind: Kind,
    /// The number (0 for a set, whose member is `raw`).
    pub value: f64,
    /// The value as sent: a set's member.
    pub raw: &'a str,
    /// A gauge's `+N` / `-N`.
    pub delta: bool,
    /// `@rate` (1 when absent).
    pub rate: f64,
}

/// Why a line, or one value of it, was refused; `pos` is the byte offset in the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("at byte {pos}: empty metric name")]
    EmptyName { pos: usize },
    #[error("at byte {pos}: no |type after the value")]
    NoType { pos: usize },
    #[error("at byte {pos}: unknown type {ty:?} (c, g, ms, h, s)")]
    BadType { pos: usize, ty: String },
    #[error("at byte {pos}: value {value:?} is not a number (a timer's must not be negative)")]
    BadValue { pos: usize, value: String },
    #[error("at byte {pos}: sample rate {rate:?} is not @ and a positive number")]
    BadRate { pos: usize, rate: String },
    #[error("line is not UTF-8")]
    NotUtf8,
}

impl ParseError {
    /// The `reason` label of `fluxgate_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::EmptyName { .. } => "empty_name",
            ParseError::NoType { .. } => "no_type",
            ParseError::BadType { .. } => "bad_type",
            ParseError::BadValue { .. } => "bad_value",
            ParseError::BadRate { .. } => "bad_rate",
            ParseError::NotUtf8 => "not_utf8",
        }
    }
}

/// One parsed line: its key (name, then `;tag=value` as statsd folds tags in, sanitized as
/// statsd does) and each of its values, good or bad.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub key: String,
    pub samples: Vec<Result<Sample<'a>, ParseError>>,
}

/// Parses one line (without its `\n`): `name:value|type[|@rate][:value|type...][|#k:v,...]`.
///
/// As statsd: the part after the first `|#` holds DogStatsD tags, folded into the key as
/// `;k=v`; Graphite tags (`name;k=v`) stay as sent; the key is sanitized (whitespace runs to
/// `_`, `/` to `-`, anything but `[A-Za-z0-9_.;=-]` dropped); a line without a value is a
/// bad line. Unlike statsd, an unknown type and a rate of 0 are refused rather than counted
/// as a counter or as infinity.
pub fn parse_line(line: &str) -> Result<Line<'_>, ParseError> {
    let (body, tags) = match line.find("|#") {
        Some(i) => (&line[..i], Some(&line[i + 2..])),
        None => (line, None),
    };
    let mut parts = body.split(':');
    let name = parts.next().unwrap_or("");
    let mut key = String::with_capacity(name.len());
    key.push_str(name);
    if let Some(tags) = tags.filter(|t| !t.is_empty()) {
        for tag in tags.split(',') {
            key.push(';');
            // JavaScript's replace: the first occurrence only.
            key.push_str(&tag.replacen(';', "_", 1).replacen(':', "=", 1));
        }
    }
    let key = sanitize(&key);
    if key.is_empty() || key.starts_with(';') {
        return Err(ParseError::EmptyName { pos: 0 });
    }
    let mut samples = Vec::with_capacity(1);
    let mut pos = name.len() + 1;
    let mut any = false;
    for field in parts {
        any = true;
        samples.push(parse_value(field, pos));
        pos += field.len() + 1;
    }
    if !any {
        samples.push(Err(ParseError::NoType { pos: line.len() }));
    }
    Ok(Line { key, samples })
}

fn parse_value(field: &str, pos: usize) -> Result<Sample<'_>, ParseError> {
    let mut f = field.split('|');
    let value = f.next().unwrap_or("");
    let Some(ty) = f.next() else {
        return Err(ParseError::NoType {
            pos: pos + field.len(),
        });
    };
    let ty_pos = pos + value.len() + 1;
    let mut rate = 1.0;
    if let Some(r) = f.next() {
        let rate_pos = ty_pos + ty.len() + 1;
        let bad = || ParseError::BadRate {
            pos: rate_pos,
            rate: r.to_string(),
        };
        let digits = r.strip_prefix('@').ok_or_else(bad)?;
        rate = number(digits).filter(|r| *r > 0.0).ok_or_else(bad)?;
    }
    let kind = match ty.trim() {
        "c" => Kind::Counter,
        "g" => Kind::Gauge,
        "ms" | "h" => Kind::Timer,
        "s" => Kind::Set,
        other => {
            return Err(ParseError::BadType {
                pos: ty_pos,
                ty: other.to_string(),
            })
        }
    };
    let bad_value = || ParseError::BadValue {
        pos,
        value: value.to_string(),
    };
    let (value_num, raw) = match kind {
        Kind::Set => (0.0, if value.is_empty() { "0" } else { value }),
        Kind::Timer => (
            number(value).filter(|v| *v >= 0.0).ok_or_else(bad_value)?,
            value,
        ),
        Kind::Counter | Kind::Gauge => (number(value).ok_or_else(bad_value)?, value),
    };
    Ok(Sample {
        kind,
        value: value_num,
        raw,
        delta: kind == Kind::Gauge && (value.starts_with('+') || value.starts_with('-')),
        rate,
    })
}

/// A finite number, as statsd's `isNumber` (non-empty, surrounding whitespace allowed).
fn number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// statsd's `sanitizeKeyName`.
fn sanitize(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_space = false;
    for c in key.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push('_');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        match c {
            '/' => out.push('-'),
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' | '.' | ';' | '=' => out.push(c),
            _ => {}
        }
    }
    out
}

/// How the flushed names are built and what survives a flush (the listener's config).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Milliseconds: rates are per second of this.
    pub flush_interval_ms: u64,
    pub percent_threshold: Vec<f64>,
    pub legacy_namespace: bool,
    pub global_prefix: String,
    pub prefix_counter: String,
    pub prefix_timer: String,
    pub prefix_gauge: String,
    pub prefix_set: String,
    pub global_suffix: String,
    pub delete_counters: bool,
    pub delete_timers: bool,
    pub delete_gauges: bool,
    pub delete_sets: bool,
    pub max_series: usize,
    pub max_samples: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            flush_interval_ms: 10_000,
            percent_threshold: vec![90.0],
            legacy_namespace: true,
            global_prefix: "stats".into(),
            prefix_counter: "counters".into(),
            prefix_timer: "timers".into(),
            prefix_gauge: "gauges".into(),
            prefix_set: "sets".into(),
            global_suffix: String::new(),
            delete_counters: false,
            delete_timers: false,
            delete_gauges: false,
            delete_sets: false,
            max_series: 100_000,
            max_samples: 10_000,
        }
    }
}

#[derive(Debug, Default)]
struct Timer {
    /// At most `max_samples` of the interval's values (the first ones).
    values: Vec<f64>,
    /// Every value, `1/rate` each.
    count: f64,
}

/// A value or line refused while aggregating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub reason: &'static str,
    pub detail: String,
}

/// The state of one flush interval.
#[derive(Debug, Default)]
pub struct Aggregator {
    settings: Settings,
    counters: HashMap<String, f64>,
    timers: HashMap<String, Timer>,
    gauges: HashMap<String, f64>,
    sets: HashMap<String, HashSet<String>>,
}

impl Aggregator {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    /// Distinct (type, name) series held.
    pub fn series(&self) -> usize {
        self.counters.len() + self.timers.len() + self.gauges.len() + self.sets.len()
    }

    /// Adds every line of a packet (`\n`-separated; empty lines skipped).
    pub fn add_packet(&mut self, packet: &[u8], reject: &mut impl FnMut(Rejected)) {
        for line in packet.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            match std::str::from_utf8(line) {
                Ok(line) => self.add_line(line, reject),
                Err(_) => reject(Rejected {
                    reason: ParseError::NotUtf8.reason(),
                    detail: ParseError::NotUtf8.to_string(),
                }),
            }
        }
    }

    /// Adds one line; what is refused is handed to `reject`.
    pub fn add_line(&mut self, line: &str, reject: &mut impl FnMut(Rejected)) {
        let parsed = match parse_line(line) {
            Ok(p) => p,
            Err(e) => {
                return reject(Rejected {
                    reason: e.reason(),
                    detail: format!("{line:?}: {e}"),
                })
            }
        };
        for sample in parsed.samples {
            match sample {
                Ok(s) => self.add(&parsed.key, &s, reject),
                Err(e) => reject(Rejected {
                    reason: e.reason(),
                    detail: format!("{line:?}: {e}"),
                }),
            }
        }
    }

    fn add(&mut self, key: &str, s: &Sample<'_>, reject: &mut impl FnMut(Rejected)) {
        let full = self.series() >= self.settings.max_series;
        let refuse = |reject: &mut dyn FnMut(Rejected)| {
            reject(Rejected {
                reason: "max_series",
                detail: format!(
                    "{key}: max_series ({}) reached, new series refused",
                    self.settings.max_series
                ),
            })
        };
        match s.kind {
            Kind::Counter => {
                let inc = s.value * (1.0 / s.rate);
                match self.counters.get_mut(key) {
                    Some(c) => *c += inc,
                    None if full => refuse(reject),
                    None => {
                        self.counters.insert(key.to_string(), inc);
                    }
                }
            }
            Kind::Gauge => match self.gauges.get_mut(key) {
                // statsd adds a delta only to a gauge that is set and not 0.
                Some(g) if s.delta && *g != 0.0 => *g += s.value,
                Some(g) => *g = s.value,
                None if full => refuse(reject),
                None => {
                    self.gauges.insert(key.to_string(), s.value);
                }
            },
            Kind::Timer => {
                let max = self.settings.max_samples;
                let t = match self.timers.get_mut(key) {
                    Some(t) => t,
                    None if full => return refuse(reject),
                    None => self.timers.entry(key.to_string()).or_default(),
                };
                t.count += 1.0 / s.rate;
                if t.values.len() < max {
                    t.values.push(s.value);
                } else {
                    reject(Rejected {
                        reason: "max_samples",
                        detail: format!(
                            "{key}: max_samples ({max}) reached this interval: value counted, not kept"
                        ),
                    });
                }
            }
            Kind::Set => match self.sets.get_mut(key) {
                Some(set) => {
                    if !set.contains(s.raw) {
                        set.insert(s.raw.to_string());
                    }
                }
                None if full => refuse(reject),
                None => {
                    self.sets
                        .entry(key.to_string())
                        .or_default()
                        .insert(s.raw.to_string());
                }
            },
        }
    }

    /// Ends the interval: every series as the graphite backend names and computes it, handed
    /// to `out`; then the state is reset (or deleted) as statsd's `delete*` settings say.
    pub fn flush(&mut self, out: &mut impl FnMut(&str, f64)) {
        let st = &self.settings;
        let secs = st.flush_interval_ms as f64 / 1000.0;
        let suffix = if st.global_suffix.is_empty() {
            String::new()
        } else {
            format!(".{}", st.global_suffix)
        };
        fn ns<'a>(global: &'a str, prefix: &'a str) -> Vec<&'a str> {
            [global, prefix]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect()
        }
        let (counter_ns, timer_ns, gauge_ns, set_ns) = if st.legacy_namespace {
            (
                vec!["stats"],
                vec!["stats", "timers"],
                vec!["stats", "gauges"],
                vec!["stats", "sets"],
            )
        } else {
            (
                ns(&st.global_prefix, &st.prefix_counter),
                ns(&st.global_prefix, &st.prefix_timer),
                ns(&st.global_prefix, &st.prefix_gauge),
                ns(&st.global_prefix, &st.prefix_set),
            )
        };
        let mut name = String::new();
        let mut emit = |namespace: &[&str], key: &str, parts: &[&str], value: f64| {
            let (base, tags) = match key.find(';') {
                Some(i) => key.split_at(i),
                None => (key, ""),
            };
            name.clear();
            for n in namespace {
                name.push_str(n);
                name.push('.');
            }
            name.push_str(base);
            for p in parts {
                name.push('.');
                name.push_str(p);
            }
            name.push_str(&suffix);
            name.push_str(tags);
            out(&name, value);
        };
        for (key, value) in &self.counters {
            if st.legacy_namespace {
                emit(&counter_ns, key, &[], value / secs);
                emit(&["stats_counts"], key, &[], *value);
            } else {
                emit(&counter_ns, key, &["rate"], value / secs);
                emit(&counter_ns, key, &["count"], *value);
            }
        }
        for (key, timer) in &mut self.timers {
            for (stat, value) in timer_stats(timer, &st.percent_threshold, secs) {
                emit(&timer_ns, key, &[stat.as_str()], value);
            }
        }
        for (key, value) in &self.gauges {
            emit(&gauge_ns, key, &[], *value);
        }
        for (key, set) in &self.sets {
            emit(&set_ns, key, &["count"], set.len() as f64);
        }
        self.reset();
    }

    fn reset(&mut self) {
        let st = &self.settings;
        if st.delete_counters {
            self.counters.clear();
        } else {
            self.counters.values_mut().for_each(|v| *v = 0.0);
        }
        if st.delete_timers {
            self.timers.clear();
        } else {
            self.timers.values_mut().for_each(|t| *t = Timer::default());
        }
        if st.delete_sets {
            self.sets.clear();
        } else {
            self.sets.values_mut().for_each(HashSet::clear);
        }
        // statsd's gaugesMaxTTL is 1: a deleted gauge goes after the flush it was sent in.
        if st.delete_gauges {
            self.gauges.clear();
        }
    }
}

/// JavaScript's `Math.round`: halves toward +infinity.
fn js_round(x: f64) -> f64 {
    (x + 0.5).floor()
}

/// `process_metrics.js` for one timer: `(stat name, value)` in its order.
fn timer_stats(t: &mut Timer, pcts: &[f64], secs: f64) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if t.values.is_empty() {
        out.push(("count".to_string(), 0.0));
        out.push(("count_ps".to_string(), 0.0));
        return out;
    }
    let values = &mut t.values;
    values.sort_by(|a, b| a.total_cmp(b));
    let count = values.len();
    let min = values[0];
    let max = values[count - 1];
    let mut cumul = Vec::with_capacity(count);
    let mut cumul_sq = Vec::with_capacity(count);
    cumul.push(min);
    cumul_sq.push(min * min);
    for i in 1..count {
        cumul.push(values[i] + cumul[i - 1]);
        cumul_sq.push(values[i] * values[i] + cumul_sq[i - 1]);
    }
    let mut sum = min;
    let mut sum_sq = min * min;
    let mut mean = min;
    let mut boundary = max;
    for &pct in pcts {
        let mut n = count;
        if count > 1 {
            n = (js_round(pct.abs() / 100.0 * count as f64) as usize).min(count);
            if n == 0 {
                continue;
            }
            if pct > 0.0 {
                boundary = values[n - 1];
                sum = cumul[n - 1];
                sum_sq = cumul_sq[n - 1];
            } else {
                boundary = values[count - n];
                let before = if count > n { count - n - 1 } else { usize::MAX };
                // statsd reads cumulativeValues[-1] (undefined, so NaN) when all are kept.
                let (b, bsq) = if before == usize::MAX {
                    (f64::NAN, f64::NAN)
                } else {
                    (cumul[before], cumul_sq[before])
                };
                sum = cumul[count - 1] - b;
                sum_sq = cumul_sq[count - 1] - bsq;
            }
            mean = sum / n as f64;
        }
        let clean = pct_name(pct);
        out.push((format!("count_{clean}"), n as f64));
        out.push((format!("mean_{clean}"), mean));
        let bound = if pct > 0.0 { "upper" } else { "lower" };
        out.push((format!("{bound}_{clean}"), boundary));
        out.push((format!("sum_{clean}"), sum));
        out.push((format!("sum_squares_{clean}"), sum_sq));
    }
    let sum = cumul[count - 1];
    let sum_sq = cumul_sq[count - 1];
    let mean = sum / count as f64;
    let diffs: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    let mid = count / 2;
    let median = if count % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    };
    out.push(("std".into(), (diffs / count as f64).sqrt()));
    out.push(("upper".into(), max));
    out.push(("lower".into(), min));
    out.push(("count".into(), t.count));
    out.push(("count_ps".into(), t.count / secs));
    out.push(("sum".into(), sum));
    out.push(("sum_squares".into(), sum_sq));
    out.push(("mean".into(), mean));
    out.push(("median".into(), median));
    out
}

/// statsd's `clean_pct`: `'' + pct` with the first `.` as `_` and the first `-` as `top`.
fn pct_name(pct: f64) -> String {
    format!("{pct}")
        .replacen('.', "_", 1)
        .replacen('-', "top", 1)
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Timer => "timer",
            Kind::Set => "set",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(line: &str) -> Sample<'_> {
        let l = parse_line(line).unwrap();
        assert_eq!(l.samples.len(), 1);
        l.samples[0].clone().unwrap()
    }

    fn flushed(agg: &mut Aggregator) -> Vec<(String, f64)> {
        let mut v = Vec::new();
        agg.flush(&mut |n, x| v.push((n.to_string(), x)));
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn agg_of(settings: Settings, lines: &[&str]) -> (Aggregator, Vec<Rejected>) {
        let mut agg = Aggregator::new(settings);
        let mut rejected = Vec::new();
        for l in lines {
            agg.add_line(l, &mut |r| rejected.push(r));
        }
        (agg, rejected)
    }

    #[test]
    fn every_type() {
        let c = one("a.b:3|c");
        assert_eq!((c.kind, c.value, c.rate), (Kind::Counter, 3.0, 1.0));
        let c = one("a:2|c|@0.5");
        assert_eq!((c.kind, c.value, c.rate), (Kind::Counter, 2.0, 0.5));
        let g = one("g:-4|g");
        assert_eq!((g.kind, g.value, g.delta), (Kind::Gauge, -4.0, true));
        let g = one("g:4|g");
        assert!(!g.delta);
        assert_eq!(one("t:12.5|ms").kind, Kind::Timer);
        assert_eq!(one("t:12|h").kind, Kind::Timer);
        let s = one("u:alice|s");
        assert_eq!((s.kind, s.raw), (Kind::Set, "alice"));
    }

    #[test]
    fn several_values_and_tags() {
        let l = parse_line("a:1|c:2|c|@0.1").unwrap();
        assert_eq!(l.key, "a");
        assert_eq!(l.samples.len(), 2);
        assert_eq!(l.samples[1].as_ref().unwrap().rate, 0.1);
        let l = parse_line("req:1|c|#env:prod,dc:a").unwrap();
        assert_eq!(l.key, "req;env=prod;dc=a");
        let l = parse_line("req;env=prod:1|c").unwrap();
        assert_eq!(l.key, "req;env=prod");
        let l = parse_line("my key/x$:1|c").unwrap();
        assert_eq!(l.key, "my_key-x");
    }

    #[test]
    fn bad_lines_say_where() {
        let first = |l: &str| parse_line(l).unwrap().samples[0].clone().unwrap_err();
        assert_eq!(first("abc"), ParseError::NoType { pos: 3 });
        assert_eq!(first("abc:1"), ParseError::NoType { pos: 5 });
        assert_eq!(
            first("abc:x|c"),
            ParseError::BadValue {
                pos: 4,
                value: "x".into()
            }
        );
        assert_eq!(
            first("abc:1|q"),
            ParseError::BadType {
                pos: 6,
                ty: "q".into()
            }
        );
        assert_eq!(
            first("abc:1|c|0.5"),
            ParseError::BadRate {
                pos: 8,
                rate: "0.5".into()
            }
        );
        assert_eq!(first("t:-1|ms").reason(), "bad_value");
        assert_eq!(first("t:1|c|@0").reason(), "bad_rate");
        assert_eq!(
            parse_line(":1|c").unwrap_err(),
            ParseError::EmptyName { pos: 0 }
        );
        let l = parse_line("a:1|c:x|c").unwrap();
        assert!(l.samples[0].is_ok());
        assert_eq!(
            l.samples[1],
            Err(ParseError::BadValue {
                pos: 6,
                value: "x".into()
            })
        );
    }

    #[test]
    fn legacy_names_and_arithmetic() {
        let (mut agg, rej) = agg_of(
            Settings::default(),
            &[
                "hits:1|c",
                "hits:2|c|@0.5",
                "g:5|g",
                "g:+3|g",
                "u:a|s",
                "u:b|s",
                "u:a|s",
                "t:1|ms",
                "t:2|ms",
                "t:3|ms",
            ],
        );
        assert!(rej.is_empty());
        let out: HashMap<_, _> = flushed(&mut agg).into_iter().collect();
        assert_eq!(out["stats.hits"], 0.5);
        assert_eq!(out["stats_counts.hits"], 5.0);
        assert_eq!(out["stats.gauges.g"], 8.0);
        assert_eq!(out["stats.sets.u.count"], 2.0);
        assert_eq!(out["stats.timers.t.count"], 3.0);
        assert_eq!(out["stats.timers.t.count_90"], 3.0);
        assert_eq!(out["stats.timers.t.upper_90"], 3.0);
        assert_eq!(out["stats.timers.t.mean"], 2.0);
        assert_eq!(out["stats.timers.t.median"], 2.0);
        assert_eq!(out["stats.timers.t.sum_squares"], 14.0);
        assert_eq!(out["stats.timers.t.std"], (2.0f64 / 3.0).sqrt());
        assert_eq!(out["stats.timers.t.count_ps"], 0.3);
        // The next interval: counters and timers at zero, the gauge kept, the set empty.
        let out: HashMap<_, _> = flushed(&mut agg).into_iter().collect();
        assert_eq!(out["stats.hits"], 0.0);
        assert_eq!(out["stats.gauges.g"], 8.0);
        assert_eq!(out["stats.sets.u.count"], 0.0);
        assert_eq!(out["stats.timers.t.count"], 0.0);
        assert!(!out.contains_key("stats.timers.t.mean"));
    }

    #[test]
    fn new_namespace_prefixes_suffix_and_tags() {
        let settings = Settings {
            legacy_namespace: false,
            global_suffix: "x".into(),
            delete_counters: true,
            ..Settings::default()
        };
        let (mut agg, _) = agg_of(settings, &["hits:10|c|#env:prod"]);
        let out = flushed(&mut agg);
        assert_eq!(
            out,
            vec![
                ("stats.counters.hits.count.x;env=prod".to_string(), 10.0),
                ("stats.counters.hits.rate.x;env=prod".to_string(), 1.0),
            ]
        );
        assert!(flushed(&mut agg).is_empty());
    }

    #[test]
    fn bounded_state() {
        let settings = Settings {
            max_series: 2,
            max_samples: 2,
            ..Settings::default()
        };
        let (mut agg, rej) = agg_of(settings, &["a:1|c", "b:1|g", "c:1|c", "t:1|ms"]);
        assert_eq!(rej.len(), 2);
        assert!(rej.iter().all(|r| r.reason == "max_series"));
        let settings = Settings {
            max_samples: 2,
            ..Settings::default()
        };
        let (mut t, rej) = agg_of(settings, &["t:1|ms", "t:5|ms", "t:9|ms"]);
        assert_eq!(rej.len(), 1);
        assert_eq!(rej[0].reason, "max_samples");
        let out: HashMap<_, _> = flushed(&mut t).into_iter().collect();
        assert_eq!(out["stats.timers.t.count"], 3.0);
        assert_eq!(out["stats.timers.t.upper"], 5.0);
        assert_eq!(flushed(&mut agg).len(), 3);
    }

    #[test]
    fn percentiles_as_statsd() {
        let settings = Settings {
            percent_threshold: vec![50.0, -10.0, 99.9],
            ..Settings::default()
        };
        let lines: Vec<String> = (1..=10).map(|i| format!("t:{i}|ms")).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (mut agg, _) = agg_of(settings, &lines);
        let out: HashMap<_, _> = flushed(&mut agg).into_iter().collect();
        assert_eq!(out["stats.timers.t.upper_50"], 5.0);
        assert_eq!(out["stats.timers.t.sum_50"], 15.0);
        assert_eq!(out["stats.timers.t.lower_top10"], 10.0);
        assert_eq!(out["stats.timers.t.sum_top10"], 10.0);
        assert_eq!(out["stats.timers.t.count_99_9"], 10.0);
        assert_eq!(out["stats.timers.t.median"], 5.5);
    }

    proptest! {
        #[test]
        fn counters_sum(values in proptest::collection::vec(0u32..1000, 1..50)) {
            let mut agg = Aggregator::new(Settings::default());
            let packet: String = values.iter().map(|v| format!("n:{v}|c\n")).collect();
            agg.add_packet(packet.as_bytes(), &mut |r| panic!("{r:?}"));
            let out: HashMap<_, _> = flushed(&mut agg).into_iter().collect();
            let total: u64 = values.iter().map(|v| u64::from(*v)).sum();
            prop_assert_eq!(out["stats_counts.n"], total as f64);
            prop_assert_eq!(out["stats.n"], total as f64 / 10.0);
        }
    }
}
