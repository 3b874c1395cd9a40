//! carbon-aggregator's rules, as carbon 1.1.7 reads and applies them
//! (`carbon/aggregator/rules.py`, `buffers.py`, `processor.py`).
//!
//! - A rule is `output_template (frequency) = method input_pattern`. The input pattern is
//!   split on `.`; a part holding `<<name>>` becomes `pre(?P<name>.+?)post`, one holding
//!   `<name>` becomes `pre(?P<name>[^.]+?)post`, a part that is `*` becomes `[^.]+`, any
//!   other `*` becomes `[^.]*`, and the rest is taken as regex text as it is; the parts are
//!   joined with `\.`, `$` is appended and the result is matched from the start of the name.
//! - The output template's `<name>` is the captured text.
//! - Buffers are keyed by output name. The first rule to create a buffer sets its frequency
//!   and method; a later rule writing the same output feeds the same buffer. Each value goes
//!   into the bucket `timestamp - timestamp % frequency`.
//! - Every buffer computes every `frequency` seconds from when it was created: each bucket
//!   that received values since its last emission is emitted with the aggregate of all its
//!   values (late values make the whole bucket go out again), then buckets older than
//!   `max_intervals` frequencies before the current one are forgotten; a buffer left with no
//!   bucket goes away, and a value for it later starts a new one.
//! - An input that fed some aggregate also goes on as itself when `forward_inputs` is set
//!   (carbon's FORWARD_ALL), unless its own name is one of the aggregates it fed.
//!
//! Where fluxgate differs: a rule that cannot work is a configuration error at load time
//! (carbon raises while processing, losing that datapoint): an output template naming a field
//! the input pattern does not capture, `<<name>>` or a `%` in an output template. With
//! `forward_inputs = false`, inputs that no rule matches still go on to the routes (carbon
//! drops them; a `drop = true` route does that here).

use std::{
    any::Any,
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    sync::{Arc, Mutex},
};

use regex::{Regex, RegexSet};

use super::{
    lock, AggregateError, AggregateMetrics, Aggregator, Emitted, Limits, Offer, MAX_CACHED_NAMES,
};

/// carbon's aggregation methods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    /// `p50` ... `p999`: the factor (0.5 ... 0.999).
    Percentile(f64),
}

impl Method {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "sum" => Self::Sum,
            "avg" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            "count" => Self::Count,
            "p50" => Self::Percentile(0.50),
            "p75" => Self::Percentile(0.75),
            "p80" => Self::Percentile(0.80),
            "p90" => Self::Percentile(0.90),
            "p95" => Self::Percentile(0.95),
            "p99" => Self::Percentile(0.99),
            "p999" => Self::Percentile(0.999),
            _ => return None,
        })
    }

    fn keeps_values(self) -> bool {
        matches!(self, Self::Percentile(_))
    }
}

/// carbon's `percentile(factor)`: sort, rank = factor * (n - 1), interpolate linearly
/// between the values at the floor and the ceiling of the rank.
pub fn percentile(values: &mut [f64], factor: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    // Python's sorted() is stable and compares with `<`; NaN never reaches a bucket.
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let rank = factor * (values.len() - 1) as f64;
    let left = rank.floor() as usize;
    let right = rank.ceil() as usize;
    Some(if left == right {
        values[left]
    } else {
        values[left] * (right as f64 - rank) + values[right] * (rank - left as f64)
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Literal(String),
    Field(String),
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// The rule as written, which identifies it across reloads.
    pub text: String,
    regex: Regex,
    template: Vec<Piece>,
    pub frequency: i64,
    pub method: Method,
}

/// carbon's `build_regex`, character for character.
pub fn build_regex(input_pattern: &str) -> String {
    let mut parts = Vec::new();
    for part in input_pattern.split('.') {
        let regex_part = if part.contains("<<") && part.contains(">>") {
            let i = part.find("<<").unwrap_or(0);
            let j = part.find(">>").unwrap_or(0);
            let pre = &part[..i];
            let post = &part[j + 2..];
            let field = part.get(i + 2..j).unwrap_or("");
            format!("{pre}(?P<{field}>.+?){post}")
        } else {
            match (part.find('<'), part.find('>')) {
                (Some(i), Some(j)) if j > i => {
                    let (pre, post, field) = (&part[..i], &part[j + 1..], &part[i + 1..j]);
                    format!("{pre}(?P<{field}>[^.]+?){post}")
                }
                _ if part == "*" => "[^.]+".to_owned(),
                _ => part.replace('*', "[^.]*"),
            }
        };
        parts.push(regex_part);
    }
    parts.join("\\.") + "$"
}

impl Rule {
    /// Parses one line as carbon's `parse_definition` does.
    pub fn parse(line: &str) -> Result<Self, String> {
        let (left, right) = line
            .split_once('=')
            .ok_or("expected `<output> (<frequency>) = <method> <input>`")?;
        let left: Vec<&str> = left.split_whitespace().collect();
        let right: Vec<&str> = right.split_whitespace().collect();
        let (&[output, frequency], &[method, input]) = (&left[..], &right[..]) else {
            return Err("expected `<output> (<frequency>) = <method> <input>`".to_owned());
        };
        let digits = frequency.trim_start_matches('(').trim_end_matches(')');
        let frequency: i64 = digits
            .parse()
            .map_err(|_| format!("frequency {frequency:?} is not a whole number of seconds"))?;
        if frequency <= 0 {
            return Err(format!("frequency {frequency} must be at least 1 second"));
        }
        let method = Method::parse(method).ok_or_else(|| {
            format!(
                "invalid aggregation method {method:?} \
                 (sum avg min max count p50 p75 p80 p90 p95 p99 p999)"
            )
        })?;
        let pattern = build_regex(input);
        let regex = Regex::new(&format!("^(?:{pattern})"))
            .map_err(|e| format!("input pattern {input:?} makes an invalid regex: {e}"))?;
        let template = parse_template(output, &regex)?;
        Ok(Self {
            text: line.to_owned(),
            regex,
            template,
            frequency,
            method,
        })
    }

    /// The aggregate name for `name`, or `None` when the rule does not match.
    fn output(&self, name: &str) -> Option<String> {
        let caps = self.regex.captures(name)?;
        let mut out = String::new();
        for piece in &self.template {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                // Python formats a group that did not take part as `None`.
                Piece::Field(f) => out.push_str(caps.name(f).map_or("None", |m| m.as_str())),
            }
        }
        Some(out)
    }
}

/// carbon turns `<x>` into `%(x)s` and formats with the captured fields; what would raise
/// there is refused here.
fn parse_template(output: &str, regex: &Regex) -> Result<Vec<Piece>, String> {
    if output.contains('%') {
        return Err(format!(
            "output {output:?}: `%` is a format directive in carbon's output templates"
        ));
    }
    if output.contains("<<") {
        return Err(format!(
            "output {output:?}: `<<name>>` only works in the input pattern; write `<name>`"
        ));
    }
    let mut pieces = Vec::new();
    let mut rest = output;
    while let Some(i) = rest.find('<') {
        let Some(j) = rest[i..].find('>').map(|j| i + j) else {
            return Err(format!("output {output:?}: `<` without `>`"));
        };
        if i > 0 {
            pieces.push(Piece::Literal(rest[..i].to_owned()));
        }
        let field = &rest[i + 1..j];
        if !regex.capture_names().any(|n| n == Some(field)) {
            return Err(format!(
                "output {output:?}: field <{field}> is not captured by the input pattern"
            ));
        }
        pieces.push(Piece::Field(field.to_owned()));
        rest = &rest[j + 1..];
    }
    if rest.contains('>') {
        return Err(format!("output {output:?}: `>` without `<`"));
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest.to_owned()));
    }
    Ok(pieces)
}

/// Parses an `aggregation-rules.conf` as carbon's `read_rules` does: lines stripped, blank
/// lines and `#` comments skipped. `origin` names the file in errors.
pub fn parse_rules(text: &str, origin: &str) -> Result<Vec<Rule>, AggregateError> {
    let mut rules = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        rules.push(
            Rule::parse(line).map_err(|message| AggregateError::CarbonRule {
                origin: origin.to_owned(),
                line: n + 1,
                rule: line.to_owned(),
                message,
            })?,
        );
    }
    Ok(rules)
}

/// The running aggregate of one bucket: what carbon's list of values gives each method.
/// Sums are added in arrival order, as Python's `sum` adds the list.
#[derive(Debug, Clone)]
struct Interval {
    start: i64,
    sum: f64,
    count: u64,
    min: f64,
    max: f64,
    values: Vec<f64>,
    active: bool,
}

impl Interval {
    fn new(start: i64) -> Self {
        Self {
            start,
            sum: 0.0,
            count: 0,
            min: f64::NAN,
            max: f64::NAN,
            values: Vec::new(),
            active: true,
        }
    }

    fn input(&mut self, value: f64, keep: bool) {
        self.sum += value;
        // Python's min()/max() keep the first of equal values.
        if self.count == 0 || value < self.min {
            self.min = value;
        }
        if self.count == 0 || value > self.max {
            self.max = value;
        }
        self.count += 1;
        if keep {
            self.values.push(value);
        }
        self.active = true;
    }

    fn value(&mut self, method: Method) -> f64 {
        match method {
            Method::Sum => self.sum,
            Method::Avg => self.sum / self.count as f64,
            Method::Min => self.min,
            Method::Max => self.max,
            Method::Count => self.count as f64,
            Method::Percentile(f) => {
                let mut sorted = self.values.clone();
                percentile(&mut sorted, f).unwrap_or(f64::NAN)
            }
        }
    }
}

/// carbon's MetricBuffer.
#[derive(Debug, Clone)]
struct Buffer {
    /// Which incarnation this is: a buffer that went away and came back is a new one, whose
    /// timer starts anew.
    generation: u64,
    frequency: i64,
    method: Method,
    /// The rule that created it (its text), so a reload can tell whether it still exists.
    rule: Arc<str>,
    /// In order of creation, as Python's dict keeps them.
    intervals: Vec<Interval>,
    due_ms: i64,
}

/// Where one input goes: an output buffer name and the rule that produced it.
#[derive(Debug)]
struct Target {
    output: Box<str>,
    rule: usize,
}

#[derive(Debug)]
struct Resolved {
    targets: Vec<Target>,
    /// The input's own name is one of the aggregates it feeds (it is then never forwarded).
    feeds_itself: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Input name → what the rules make of it (carbon caches this per rule too).
    names: HashMap<Box<str>, Arc<Resolved>>,
    buffers: HashMap<Box<str>, Buffer>,
    timers: BinaryHeap<Reverse<(i64, u64, Box<str>)>>,
    generation: u64,
}

/// `[aggregation]`: carbon-aggregator's rules.
#[derive(Debug)]
pub struct CarbonAggregator {
    fingerprint: String,
    rules: Vec<Rule>,
    rule_texts: Vec<Arc<str>>,
    set: RegexSet,
    max_intervals: i64,
    forward_inputs: bool,
    limits: Limits,
    state: Arc<Mutex<State>>,
    metrics: AggregateMetrics,
}

impl CarbonAggregator {
    pub fn new(
        rules: Vec<Rule>,
        max_intervals: u32,
        forward_inputs: bool,
        limits: Limits,
        metrics: AggregateMetrics,
        previous: Option<&dyn Aggregator>,
    ) -> Result<Self, AggregateError> {
        let set = RegexSet::new(rules.iter().map(|r| r.regex.as_str())).map_err(|e| {
            AggregateError::Invalid {
                section: "aggregation".into(),
                message: format!("the rules' patterns together: {e}"),
            }
        })?;
        let fingerprint = format!(
            "carbon {max_intervals} {forward_inputs} {:?} {}",
            limits,
            rules
                .iter()
                .map(|r| r.text.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        let rule_texts: Vec<Arc<str>> = rules.iter().map(|r| Arc::from(r.text.as_str())).collect();
        let old = previous.and_then(|p| p.as_any().downcast_ref::<CarbonAggregator>());
        let state = match old {
            // Nothing changed: the very same buffers go on.
            Some(old) if old.fingerprint == fingerprint => old.state.clone(),
            // Buffers made by a rule that is still there go on; the others are let go.
            Some(old) => {
                let mut state = State::default();
                let mut o = lock(&old.state);
                for (name, buffer) in o.buffers.drain() {
                    if let Some(text) = rule_texts.iter().find(|t| **t == buffer.rule) {
                        let mut buffer = buffer;
                        buffer.rule = text.clone();
                        state.timers.push(Reverse((
                            buffer.due_ms,
                            buffer.generation,
                            name.clone(),
                        )));
                        state.generation = state.generation.max(buffer.generation + 1);
                        state.buffers.insert(name, buffer);
                    }
                }
                o.names.clear();
                o.timers.clear();
                Arc::new(Mutex::new(state))
            }
            None => Arc::default(),
        };
        let series = lock(&state).buffers.len();
        metrics.series.set(series as i64);
        Ok(Self {
            fingerprint,
            rules,
            rule_texts,
            set,
            max_intervals: i64::from(max_intervals),
            forward_inputs,
            limits,
            state,
            metrics,
        })
    }

    fn resolve(&self, name: &str) -> Resolved {
        let mut targets = Vec::new();
        if self.rules.is_empty() {
            return Resolved {
                targets,
                feeds_itself: false,
            };
        }
        for i in self.set.matches(name).iter() {
            if let Some(output) = self.rules[i].output(name) {
                targets.push(Target {
                    output: output.into_boxed_str(),
                    rule: i,
                });
            }
        }
        let feeds_itself = targets.iter().any(|t| &*t.output == name);
        Resolved {
            targets,
            feeds_itself,
        }
    }
}

impl Aggregator for CarbonAggregator {
    fn label(&self) -> &str {
        "carbon"
    }

    fn offer(&self, name: &str, value: f64, timestamp: i64, now_ms: &dyn Fn() -> i64) -> Offer {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let resolved = match state.names.get(name) {
            Some(r) => r.clone(),
            None => {
                let r = Arc::new(self.resolve(name));
                if state.names.len() >= MAX_CACHED_NAMES {
                    state.names.clear();
                }
                state.names.insert(name.into(), r.clone());
                r
            }
        };
        if resolved.targets.is_empty() {
            return Offer::Pass;
        }
        for target in &resolved.targets {
            let buffer = match state.buffers.get_mut(&*target.output) {
                Some(b) => b,
                None => {
                    if state.buffers.len() >= self.limits.max_series {
                        self.metrics.drop("max_series", &target.output);
                        continue;
                    }
                    let rule = &self.rules[target.rule];
                    let generation = state.generation;
                    state.generation += 1;
                    let due_ms = now_ms() + rule.frequency * 1000;
                    state
                        .timers
                        .push(Reverse((due_ms, generation, target.output.clone())));
                    self.metrics.series.inc();
                    state
                        .buffers
                        .entry(target.output.clone())
                        .or_insert(Buffer {
                            generation,
                            frequency: rule.frequency,
                            method: rule.method,
                            rule: self.rule_texts[target.rule].clone(),
                            intervals: Vec::new(),
                            due_ms,
                        })
                }
            };
            let start = timestamp - timestamp.rem_euclid(buffer.frequency);
            let keep = buffer.method.keeps_values();
            let interval = match buffer.intervals.iter().position(|i| i.start == start) {
                Some(i) => &mut buffer.intervals[i],
                None => {
                    buffer.intervals.push(Interval::new(start));
                    buffer.intervals.last_mut().expect("just pushed")
                }
            };
            if keep && interval.values.len() >= self.limits.max_bucket_values {
                self.metrics.drop("max_values", &target.output);
                continue;
            }
            interval.input(value, keep);
            self.metrics.received.inc();
        }
        if self.forward_inputs && !resolved.feeds_itself {
            Offer::Fed
        } else {
            Offer::Consumed
        }
    }

    fn tick(&self, now_ms: i64, out: &mut Vec<Emitted>) {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let now = now_ms.div_euclid(1000);
        while let Some(Reverse((due, generation, _))) = state.timers.peek() {
            if *due > now_ms {
                break;
            }
            let (due, generation) = (*due, *generation);
            let Some(Reverse((_, _, name))) = state.timers.pop() else {
                break;
            };
            let Some(buffer) = state.buffers.get_mut(&name) else {
                continue;
            };
            if buffer.generation != generation {
                continue;
            }
            // carbon's compute_value.
            let frequency = buffer.frequency;
            let current = now - now.rem_euclid(frequency);
            let threshold = current - self.max_intervals * frequency;
            let method = buffer.method;
            buffer.intervals.retain_mut(|interval| {
                if interval.active {
                    out.push(Emitted {
                        name: name.to_string(),
                        timestamp: interval.start,
                        value: interval.value(method),
                        send_to: None,
                    });
                    self.metrics.emitted.inc();
                    interval.active = false;
                }
                interval.start >= threshold
            });
            if buffer.intervals.is_empty() {
                state.buffers.remove(&name);
                self.metrics.series.dec();
                continue;
            }
            // A LoopingCall keeps its cadence and skips the calls it missed.
            let mut next = due + frequency * 1000;
            while next <= now_ms {
                next += frequency * 1000;
            }
            buffer.due_ms = next;
            state.timers.push(Reverse((next, generation, name)));
        }
    }

    fn series(&self) -> usize {
        lock(&self.state).buffers.len()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn agg(rules: &[&str], max_intervals: u32, forward: bool) -> CarbonAggregator {
        let rules = rules.iter().map(|r| Rule::parse(r).unwrap()).collect();
        let metrics = AggregateMetrics::new(&Metrics::new(), "carbon");
        CarbonAggregator::new(
            rules,
            max_intervals,
            forward,
            Limits::default(),
            metrics,
            None,
        )
        .unwrap()
    }

    fn emitted(a: &CarbonAggregator, now_ms: i64) -> Vec<(String, i64, f64)> {
        let mut out = Vec::new();
        a.tick(now_ms, &mut out);
        out.into_iter()
            .map(|e| (e.name, e.timestamp, e.value))
            .collect()
    }

    #[test]
    fn regexes_are_built_as_carbon_builds_them() {
        assert_eq!(
            build_regex("<env>.applications.<app>.*.requests"),
            "(?P<env>[^.]+?)\\.applications\\.(?P<app>[^.]+?)\\.[^.]+\\.requests$"
        );
        assert_eq!(build_regex("a<<rest>>z.x*y"), "a(?P<rest>.+?)z\\.x[^.]*y$");
        assert_eq!(build_regex("srv-<n>s.*"), "srv-(?P<n>[^.]+?)s\\.[^.]+$");
    }

    #[test]
    fn rules_parse_and_name_outputs() {
        let r = Rule::parse(
            "<env>.applications.<app>.all.requests (60) = sum <env>.applications.<app>.*.requests",
        )
        .unwrap();
        assert_eq!(r.frequency, 60);
        assert_eq!(r.method, Method::Sum);
        assert_eq!(
            r.output("prod.applications.api.host1.requests").as_deref(),
            Some("prod.applications.api.all.requests")
        );
        assert_eq!(r.output("prod.applications.api.requests"), None);
        assert_eq!(r.output("x.prod.applications.api.h.requests.y"), None);
        let r = Rule::parse("all.<rest> (10) = avg x.<<rest>>").unwrap();
        assert_eq!(r.output("x.a.b.c").as_deref(), Some("all.a.b.c"));
        for (bad, says) in [
            ("a (60) sum b", "expected"),
            ("a (x) = sum b", "frequency"),
            ("a (0) = sum b", "at least"),
            ("a (60) = median b", "method"),
            ("a.<x> (60) = sum b", "not captured"),
            ("a.<<x>> (60) = sum <<x>>", "only works"),
            ("a.%d (60) = sum b", "format directive"),
            ("a (60) = sum b c", "expected"),
        ] {
            let e = Rule::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = parse_rules("# c\n\nok (1) = sum x\nbad line\n", "rules.conf").unwrap_err();
        assert!(e.to_string().starts_with("rules.conf:4:"), "{e}");
    }

    #[test]
    fn percentiles_interpolate_as_carbon() {
        let mut v = vec![1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&mut v, 0.5), Some(2.5));
        assert_eq!(percentile(&mut [5.0], 0.99), Some(5.0));
        let mut v: Vec<f64> = (1..=10).map(f64::from).rev().collect();
        assert!((percentile(&mut v, 0.9).unwrap() - 9.1).abs() < 1e-12);
        assert_eq!(percentile(&mut [], 0.5), None);
    }

    #[test]
    fn buckets_are_emitted_while_they_get_values_and_forgotten_when_old() {
        let a = agg(&["agg.<n> (10) = sum in.<n>.*"], 2, true);
        let t0 = 1_700_000_000_000i64; // created here: computes at t0 + 10 s, + 20 s, ...
        let now = || t0;
        assert_eq!(a.offer("in.x.a", 1.0, 1_700_000_003, &now), Offer::Fed);
        assert_eq!(a.offer("in.x.b", 2.0, 1_700_000_007, &now), Offer::Fed);
        assert_eq!(a.offer("other", 2.0, 1_700_000_007, &now), Offer::Pass);
        assert_eq!(emitted(&a, t0 + 9_999), vec![]);
        assert_eq!(
            emitted(&a, t0 + 10_000),
            vec![("agg.x".into(), 1_700_000_000, 3.0)]
        );
        // Nothing new: nothing emitted. A late value re-emits the whole bucket.
        assert_eq!(emitted(&a, t0 + 20_000), vec![]);
        a.offer("in.x.a", 4.0, 1_700_000_001, &now);
        assert_eq!(
            emitted(&a, t0 + 30_000),
            vec![("agg.x".into(), 1_700_000_000, 7.0)]
        );
        // At t0+30 the bucket was already older than 2 intervals before the current one: once
        // emitted it went, and with it the buffer; a value for it later starts from nothing.
        assert_eq!(emitted(&a, t0 + 40_000), vec![]);
        assert_eq!(a.series(), 0);
        a.offer("in.x.a", 5.0, 1_700_000_001, &|| t0 + 41_000);
        assert_eq!(emitted(&a, t0 + 50_000), vec![]);
        assert_eq!(
            emitted(&a, t0 + 51_000),
            vec![("agg.x".into(), 1_700_000_000, 5.0)]
        );
    }

    #[test]
    fn outputs_share_buffers_and_inputs_forward_unless_they_feed_themselves() {
        let a = agg(
            &[
                "s.<n> (5) = sum in.<n>",
                "s.<n> (60) = max in.<n>",
                "in.<n> (5) = count in.<n>",
            ],
            5,
            true,
        );
        let now = || 0;
        // Fed to s.x twice (two rules, one buffer set up by the first) and to in.x, its own
        // name: not forwarded.
        assert_eq!(a.offer("in.x", 2.0, 100, &now), Offer::Consumed);
        let mut got = emitted(&a, 5_000);
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![("in.x".into(), 100, 1.0), ("s.x".into(), 100, 4.0)]
        );
        let b = agg(&["s.<n> (5) = sum in.<n>"], 5, false);
        assert_eq!(b.offer("in.x", 2.0, 100, &now), Offer::Consumed);
        assert_eq!(b.offer("else", 2.0, 100, &now), Offer::Pass);
    }

    proptest::proptest! {
        #[test]
        fn bucketing_is_timestamp_minus_its_remainder(
            ts in -2_000_000_000i64..4_000_000_000, freq in 1i64..100_000,
        ) {
            let start = ts - ts.rem_euclid(freq);
            proptest::prop_assert!(start <= ts && ts - start < freq);
            proptest::prop_assert_eq!(start.rem_euclid(freq), 0);
            // Python's `ts - ts % freq` on floats of whole seconds says the same.
            let py = (ts as f64) - (ts as f64).rem_euclid(freq as f64);
            proptest::prop_assert_eq!(py, start as f64);
        }

        #[test]
        fn percentiles_stay_between_neighbours(
            mut values in proptest::collection::vec(-1e6f64..1e6, 1..200),
            which in 0usize..7,
        ) {
            let factor = [0.5, 0.75, 0.8, 0.9, 0.95, 0.99, 0.999][which];
            let p = percentile(&mut values, factor).unwrap();
            let rank = factor * (values.len() - 1) as f64;
            let (lo, hi) = (values[rank.floor() as usize], values[rank.ceil() as usize]);
            proptest::prop_assert!(lo <= p + 1e-9 && p <= hi + 1e-9, "{lo} {p} {hi}");
            proptest::prop_assert!(values.windows(2).all(|w| w[0] <= w[1]));
        }
    }
}
