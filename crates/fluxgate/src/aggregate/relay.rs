//! carbon-c-relay's `aggregate`, as carbon-c-relay 3.7 runs it (`aggregator.c`, `router.c`).
//!
//! - Each `[[aggregate]]` keeps, per compute and per output name (an "invocation"), a ring of
//!   `ceil(expire / every) + 2` buckets `every` seconds wide, aligned to multiples of `every`.
//!   When an invocation is created (its first value), its first bucket starts at
//!   `floor((now - expire) / every) * every`: the ring covers the recent past and a little
//!   of the future.
//! - A value goes into the bucket its timestamp (whole seconds) falls in. A timestamp before
//!   the first bucket is dropped as `late` (its bucket was produced already, or is older than
//!   the ring); one beyond the last bucket is dropped as `too_early`. Both are counted.
//! - A bucket is final `expire` seconds after it began (plus a random 0..`every` splay per
//!   invocation, against thundering herds): its aggregates go out, stamped with the bucket's
//!   start, middle or end (`timestamp`), and the ring moves on by one bucket. An invocation
//!   whose buckets are all empty goes away.
//! - `write_to` replaces the part of the input's name that the regex matched, keeping what
//!   is around it, with `\1` ... for the groups; with `match = "*"` it is the name as written.
//! - Values go out as carbon-c-relay prints them: `%f` (six decimals), counts as integers;
//!   percentiles and the median by its nearest-rank rule over values sorted as glibc's
//!   `qsort` sorts them with carbon-c-relay's comparator (which compares the difference
//!   truncated to an integer); variance and stddev over the population.
//! - Order among routes: `[[aggregate]]`s are tried before `[[routes]]`, top to bottom, each
//!   of its regexes in turn (an input matching two regexes of one aggregate feeds it twice, as
//!   in carbon-c-relay); one with `stop = true` that matches ends it there, so the input goes
//!   nowhere else. That is carbon-c-relay's order when its `aggregate` rules come before its
//!   `match` rules. With `send_to` the aggregates go only to those outputs; without, they are
//!   routed by `[[routes]]` (not aggregated again: no loops).

use std::{
    any::Any,
    collections::VecDeque,
    sync::{
        atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use std::cell::RefCell;

use foldhash::{HashMap, HashMapExt};
use regex::{Regex, RegexSet};

use super::{
    config::{AggregateConfig, TimestampAt},
    lock, AggregateError, AggregateMetrics, Aggregator, Emitted, Limits, Offer, MAX_CACHED_NAMES,
};
use crate::{metrics::Metrics, route::Rewrite};

/// carbon-c-relay's compute functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Sum,
    Count,
    Max,
    Min,
    Average,
    /// `median` is `percentile50`.
    Percentile(u8),
    Variance,
    Stddev,
}

impl Func {
    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "sum" => Self::Sum,
            "count" | "cnt" => Self::Count,
            "max" => Self::Max,
            "min" => Self::Min,
            "average" | "avg" => Self::Average,
            "median" => Self::Percentile(50),
            "variance" => Self::Variance,
            "stddev" => Self::Stddev,
            other => match other.strip_prefix("percentile").map(str::parse::<u8>) {
                Some(Ok(n)) if (1..=99).contains(&n) => Self::Percentile(n),
                Some(_) => return Err(format!("{other:?}: percentile<x> needs x from 1 to 99")),
                None => {
                    return Err(format!(
                        "unknown fn {other:?} (sum count max min average median \
                         percentile<N> variance stddev)"
                    ))
                }
            },
        })
    }

    fn keeps_values(self) -> bool {
        matches!(self, Self::Percentile(_) | Self::Variance | Self::Stddev)
    }
}

/// carbon-c-relay's `cmp_entry`: `return l - r;` in a function returning `int`, so the
/// difference is truncated (and, out of range, is x86's "integer indefinite", INT_MIN).
fn c_cmp(l: f64, r: f64) -> i32 {
    let d = l - r;
    if d > -2_147_483_649.0 && d < 2_147_483_648.0 {
        d as i32
    } else {
        i32::MIN
    }
}

/// glibc's `qsort` (its top-down merge sort, `msort_with_tmp`) with [`c_cmp`]: with that
/// comparator values less than 1 apart count as equal, so the order, and with it the
/// percentile, is the one carbon-c-relay gets.
pub fn c_qsort(values: &mut [f64]) {
    let mut tmp = Vec::with_capacity(values.len());
    msort(values, &mut tmp);
}

fn msort(b: &mut [f64], tmp: &mut Vec<f64>) {
    let n = b.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    msort(&mut b[..n1], tmp);
    msort(&mut b[n1..], tmp);
    tmp.clear();
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if c_cmp(b[i], b[j]) <= 0 {
            tmp.push(b[i]);
            i += 1;
        } else {
            tmp.push(b[j]);
            j += 1;
        }
    }
    tmp.extend_from_slice(&b[i..n1]);
    let done = tmp.len();
    b[..done].copy_from_slice(tmp);
}

/// carbon-c-relay's nearest rank: `values[(int)(p / 100 * n + 0.9) - 1]` after sorting.
pub fn nearest_rank(values: &mut [f64], pct: u8) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    c_qsort(values);
    let k = (f64::from(pct) / 100.0 * values.len() as f64 + 0.9) as usize;
    Some(values[k.clamp(1, values.len()) - 1])
}

/// What C's `printf("%f")` keeps of a value: six decimals.
pub fn six_decimals(v: f64) -> f64 {
    if !v.is_finite() {
        return v;
    }
    format!("{v:.6}").parse().unwrap_or(v)
}

#[derive(Debug)]
struct Compute {
    func: Func,
    write_to: String,
    /// Per pattern of the section: its `write_to` rewrite (`None` for `"*"`).
    rewrites: Vec<Option<Rewrite>>,
}

#[derive(Debug, Clone)]
struct Bucket {
    start: i64,
    cnt: u64,
    sum: f64,
    min: f64,
    max: f64,
    values: Vec<f64>,
}

impl Bucket {
    fn new(start: i64) -> Self {
        Self {
            start,
            cnt: 0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
            values: Vec::new(),
        }
    }

    fn value(&mut self, func: Func) -> f64 {
        let v = match func {
            Func::Sum => self.sum,
            Func::Count => return self.cnt as f64,
            Func::Max => self.max,
            Func::Min => self.min,
            Func::Average => self.sum / self.cnt as f64,
            Func::Percentile(p) => nearest_rank(&mut self.values, p).unwrap_or(f64::NAN),
            Func::Variance | Func::Stddev => {
                let avg = self.sum / self.cnt as f64;
                let mut k = 0.0;
                for v in &self.values {
                    k += (v - avg) * (v - avg);
                }
                k /= self.cnt as f64;
                if func == Func::Stddev {
                    k.sqrt()
                } else {
                    k
                }
            }
        };
        six_decimals(v)
    }
}

#[derive(Debug, Clone)]
struct Invocation {
    /// `expire` plus this invocation's splay.
    expire: i64,
    buckets: VecDeque<Bucket>,
}

/// One compute's invocations, in slots so that an input seen before reaches its invocation by
/// index (kept in the per-thread name cache) instead of hashing the output name again; a
/// slot's generation changes when its invocation goes away, which tells a cached index it is
/// stale.
#[derive(Debug, Default)]
struct Invocations {
    by_name: HashMap<Box<str>, u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    /// The output name and its invocation; `None` while the slot is free.
    live: Option<(Box<str>, Invocation)>,
}

impl Invocations {
    /// The invocation of `target`, by its cached slot when that is still its own.
    fn find(&mut self, target: &mut Target) -> Option<&mut Invocation> {
        let cached = self
            .slots
            .get(target.slot as usize)
            .is_some_and(|s| s.generation == target.generation && s.live.is_some());
        if !cached {
            let &slot = self.by_name.get(&target.output)?;
            target.slot = slot;
            target.generation = self.slots[slot as usize].generation;
        }
        self.slots[target.slot as usize]
            .live
            .as_mut()
            .map(|(_, inv)| inv)
    }

    fn insert(&mut self, target: &mut Target, inv: Invocation) -> &mut Invocation {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    live: None,
                });
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.by_name.insert(target.output.clone(), slot);
        let entry = &mut self.slots[slot as usize];
        target.slot = slot;
        target.generation = entry.generation;
        &mut entry.live.insert((target.output.clone(), inv)).1
    }

    /// Calls `keep` on every invocation and frees those it returns `false` for; how many.
    fn retain(&mut self, mut keep: impl FnMut(&str, &mut Invocation) -> bool) -> usize {
        let mut gone = 0;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some((name, inv)) = slot.live.as_mut() else {
                continue;
            };
            if !keep(name, inv) {
                self.by_name.remove(&**name);
                slot.live = None;
                slot.generation = slot.generation.wrapping_add(1);
                self.free.push(u32::try_from(i).unwrap_or(u32::MAX));
                gone += 1;
            }
        }
        gone
    }

    #[cfg(test)]
    fn get(&self, output: &str) -> Option<&Invocation> {
        let &slot = self.by_name.get(output)?;
        self.slots[slot as usize].live.as_ref().map(|(_, inv)| inv)
    }
}

#[derive(Debug, Default)]
struct SectionState {
    /// Per compute: its invocations by output name.
    computes: Vec<Invocations>,
    /// The second of the last expiry scan (carbon-c-relay's clock is `time()`).
    scanned: i64,
    /// Values taken since the counter was last brought up to date (at each tick): a shared
    /// atomic per value would bounce between the cores.
    received: u64,
}

#[derive(Debug)]
struct Section {
    fingerprint: String,
    every: i64,
    expire: i64,
    buckets: usize,
    timestamp: TimestampAt,
    computes: Vec<Compute>,
    send_to: Option<u64>,
    stop: bool,
    state: Arc<Mutex<SectionState>>,
    series: Arc<AtomicI64>,
    metrics: AggregateMetrics,
}

/// One destination of an input: a section's compute and the output name it writes to, with
/// the slot its invocation had when last seen.
#[derive(Debug)]
struct Target {
    section: u32,
    compute: u32,
    output: Box<str>,
    slot: u32,
    generation: u32,
}

/// One input's destinations.
#[derive(Debug, Default)]
struct Resolved {
    targets: Vec<Target>,
    stopped: bool,
}

/// Every `[[aggregate]]`, in order.
#[derive(Debug)]
pub struct RelayAggregator {
    sections: Vec<Section>,
    /// The regexes of all sections; `index[i]` says whose.
    set: RegexSet,
    /// For each (section, pattern), in order: its index in `set` (`None` for `"*"`).
    order: Vec<(usize, usize, Option<usize>)>,
    /// Tells this aggregator's entries in the per-thread name caches from another's.
    id: u64,
    limits: Limits,
    series: AtomicUsize,
}

/// Gives each [`RelayAggregator`] its own [`RelayAggregator::id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// Input name → where it goes, per worker thread: the common case (a series seen before)
    /// takes no lock shared with the other threads. Holds one aggregator's entries (the one
    /// in force); a reload's successor starts it over.
    static NAMES: RefCell<(u64, HashMap<Box<str>, Resolved>)> = RefCell::new((0, HashMap::new()));
}

fn section_label(i: usize, c: &AggregateConfig) -> String {
    c.name.clone().unwrap_or_else(|| format!("aggregate{i}"))
}

impl RelayAggregator {
    /// `outputs` are the configured output names (for `send_to`), in router index order.
    pub fn new(
        configs: &[AggregateConfig],
        outputs: &[String],
        limits: Limits,
        metrics: &Metrics,
        previous: Option<&dyn Aggregator>,
    ) -> Result<Self, AggregateError> {
        let old = previous.and_then(|p| p.as_any().downcast_ref::<RelayAggregator>());
        let mut sections = Vec::new();
        let mut regexes = Vec::new();
        let mut order = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let bad = |message: String| AggregateError::Invalid {
                section: format!("aggregate[{i}]"),
                message,
            };
            let (every, expire) = (c.every.0 as i64, c.expire.0 as i64);
            if every == 0 {
                return Err(bad("`every` must be at least 1 second".into()));
            }
            if expire <= every {
                return Err(bad(format!(
                    "`expire` ({expire} s) must be greater than `every` ({every} s)"
                )));
            }
            if c.compute.is_empty() {
                return Err(bad("needs at least one `compute`".into()));
            }
            let patterns = c.pattern.as_slice();
            if patterns.is_empty() || patterns.iter().any(String::is_empty) {
                return Err(bad(
                    "`match` is empty; write match = \"*\" for everything".into()
                ));
            }
            let mut compiled = Vec::new();
            for (p, pattern) in patterns.iter().enumerate() {
                if pattern == "*" {
                    compiled.push(None);
                    order.push((i, p, None));
                } else {
                    let r = Regex::new(pattern)
                        .map_err(|e| bad(format!("invalid regex {pattern:?}: {e}")))?;
                    order.push((i, p, Some(regexes.len())));
                    regexes.push(pattern.clone());
                    compiled.push(Some(r));
                }
            }
            let mut computes = Vec::new();
            for comp in &c.compute {
                let func = Func::parse(&comp.function).map_err(bad)?;
                if comp.write_to.is_empty() {
                    return Err(bad("`write_to` is empty".into()));
                }
                let rewrites = compiled
                    .iter()
                    .map(|r| {
                        r.as_ref()
                            .map(|r| Rewrite::new(r.clone(), &comp.write_to))
                            .transpose()
                    })
                    .collect::<Result<Vec<_>, String>>()
                    .map_err(|e| bad(format!("write_to {:?}: {e}", comp.write_to)))?;
                if compiled.iter().any(Option::is_none) && comp.write_to.contains('\\') {
                    return Err(bad(format!(
                        "write_to {:?}: match = \"*\" captures no groups",
                        comp.write_to
                    )));
                }
                computes.push(Compute {
                    func,
                    write_to: comp.write_to.clone(),
                    rewrites,
                });
            }
            let send_to = match &c.send_to {
                None => None,
                Some(names) => {
                    let mut bits = 0u64;
                    for name in names.as_slice() {
                        let index = outputs.iter().position(|o| o == name).ok_or_else(|| {
                            bad(format!(
                                "send_to: unknown output {name:?} (configured outputs: {})",
                                outputs.join(", ")
                            ))
                        })?;
                        bits |= 1 << index;
                    }
                    if bits == 0 {
                        return Err(bad("`send_to` names no output".into()));
                    }
                    Some(bits)
                }
            };
            let fingerprint = format!(
                "{:?}",
                (
                    patterns,
                    every,
                    expire,
                    c.timestamp,
                    &c.compute,
                    &c.send_to,
                    c.stop,
                    limits
                )
            );
            let label = section_label(i, c);
            let kept = old.and_then(|o| o.sections.iter().find(|s| s.fingerprint == fingerprint));
            let (state, series) = match kept {
                Some(s) => (s.state.clone(), s.series.clone()),
                None => {
                    let state = SectionState {
                        computes: (0..computes.len())
                            .map(|_| Invocations::default())
                            .collect(),
                        scanned: 0,
                        received: 0,
                    };
                    (Arc::new(Mutex::new(state)), Arc::default())
                }
            };
            let metrics = AggregateMetrics::new(metrics, &label);
            metrics.series.set(series.load(Ordering::Relaxed));
            sections.push(Section {
                fingerprint,
                every,
                expire,
                buckets: ((expire + every - 1) / every + 2) as usize,
                timestamp: c.timestamp,
                computes,
                send_to,
                stop: c.stop,
                state,
                series,
                metrics,
            });
        }
        let set = RegexSet::new(&regexes).map_err(|e| AggregateError::Invalid {
            section: "aggregate".into(),
            message: e.to_string(),
        })?;
        let series = sections
            .iter()
            .map(|s| s.series.load(Ordering::Relaxed).max(0) as usize)
            .sum();
        Ok(Self {
            sections,
            set,
            order,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            limits,
            series: AtomicUsize::new(series),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    fn resolve(&self, name: &str) -> Resolved {
        let path = &name[..memchr::memchr(b';', name.as_bytes()).unwrap_or(name.len())];
        let matched = self.set.matches(path);
        let mut r = Resolved::default();
        let mut scratch = String::new();
        for &(s, p, index) in &self.order {
            if index.is_some_and(|i| !matched.matched(i)) {
                continue;
            }
            let section = &self.sections[s];
            for (c, compute) in section.computes.iter().enumerate() {
                let output = match &compute.rewrites[p] {
                    None => compute.write_to.clone(),
                    Some(rw) => {
                        if !rw.rewrite_into(name, &mut scratch) {
                            continue;
                        }
                        scratch.clone()
                    }
                };
                r.targets.push(Target {
                    section: s as u32,
                    compute: c as u32,
                    output: output.into_boxed_str(),
                    slot: u32::MAX,
                    generation: 0,
                });
            }
            if section.stop {
                r.stopped = true;
                break;
            }
        }
        r
    }

    fn feed(
        &self,
        resolved: &mut Resolved,
        value: f64,
        timestamp: i64,
        now_ms: &dyn Fn() -> i64,
    ) -> Offer {
        if resolved.targets.is_empty() && !resolved.stopped {
            return Offer::Pass;
        }
        for target in &mut resolved.targets {
            self.put(target, value, timestamp, now_ms);
        }
        if resolved.stopped {
            Offer::Consumed
        } else {
            Offer::Fed
        }
    }

    fn put(&self, target: &mut Target, value: f64, epoch: i64, now_ms: &dyn Fn() -> i64) {
        let c = target.compute as usize;
        let section = &self.sections[target.section as usize];
        let mut guard = lock(&section.state);
        let state = &mut *guard;
        let invocations = &mut state.computes[c];
        let inv = match invocations.find(target) {
            Some(inv) => inv,
            None => {
                if self.series.load(Ordering::Relaxed) >= self.limits.max_series {
                    section.metrics.drop("max_series", &target.output);
                    return;
                }
                self.series.fetch_add(1, Ordering::Relaxed);
                section.series.fetch_add(1, Ordering::Relaxed);
                section.metrics.series.inc();
                let now = now_ms().div_euclid(1000);
                let first = (now - section.expire).div_euclid(section.every) * section.every;
                let splay = rand::random::<u32>() as i64 % section.every;
                let buckets = (0..section.buckets)
                    .map(|i| Bucket::new(first + i as i64 * section.every))
                    .collect();
                invocations.insert(
                    target,
                    Invocation {
                        expire: section.expire + splay,
                        buckets,
                    },
                )
            }
        };
        let output = &*target.output;
        let itime = epoch - inv.buckets[0].start;
        if itime < 0 {
            section.metrics.drop("late", output);
            return;
        }
        if itime >= section.buckets as i64 * section.every {
            section.metrics.drop("too_early", output);
            return;
        }
        let keep = section.computes[c].func.keeps_values();
        let bucket = &mut inv.buckets[(itime / section.every) as usize];
        if keep && bucket.values.len() >= self.limits.max_bucket_values {
            section.metrics.drop("max_values", output);
            return;
        }
        if bucket.cnt == 0 {
            (bucket.sum, bucket.min, bucket.max) = (value, value, value);
        } else {
            bucket.sum += value;
            if bucket.max < value {
                bucket.max = value;
            }
            if bucket.min > value {
                bucket.min = value;
            }
        }
        if keep {
            bucket.values.push(value);
        }
        bucket.cnt += 1;
        state.received += 1;
    }
}

impl Aggregator for RelayAggregator {
    fn label(&self) -> &str {
        "aggregate"
    }

    fn offer(&self, name: &str, value: f64, timestamp: i64, now_ms: &dyn Fn() -> i64) -> Offer {
        NAMES.with(|cell| {
            let mut cache = cell.borrow_mut();
            let (id, names) = &mut *cache;
            if *id != self.id {
                names.clear();
                *id = self.id;
            }
            if let Some(resolved) = names.get_mut(name) {
                return self.feed(resolved, value, timestamp, now_ms);
            }
            let mut resolved = self.resolve(name);
            let offer = self.feed(&mut resolved, value, timestamp, now_ms);
            if names.len() >= MAX_CACHED_NAMES {
                names.clear();
            }
            names.insert(name.into(), resolved);
            offer
        })
    }

    fn tick(&self, now_ms: i64, out: &mut Vec<Emitted>) {
        let now = now_ms.div_euclid(1000);
        for section in &self.sections {
            let mut guard = lock(&section.state);
            let state = &mut *guard;
            if state.received > 0 {
                section
                    .metrics
                    .received
                    .inc_by(std::mem::take(&mut state.received));
            }
            if state.scanned == now {
                continue;
            }
            state.scanned = now;
            let every = section.every;
            let offset = match section.timestamp {
                TimestampAt::Start => 0,
                TimestampAt::Middle => every / 2,
                TimestampAt::End => every,
            };
            for (c, invocations) in state.computes.iter_mut().enumerate() {
                let func = section.computes[c].func;
                let gone = invocations.retain(|name, inv| {
                    while inv.buckets[0].start + inv.expire < now {
                        let Some(mut b) = inv.buckets.pop_front() else {
                            break;
                        };
                        if b.cnt > 0 {
                            out.push(Emitted {
                                name: name.to_string(),
                                timestamp: b.start + offset,
                                value: b.value(func),
                                send_to: section.send_to,
                            });
                            section.metrics.emitted.inc();
                        }
                        let last = inv.buckets.back().map_or(b.start, |l| l.start);
                        b.start = last + every;
                        (b.cnt, b.sum, b.min, b.max) = (0, 0.0, 0.0, 0.0);
                        b.values.clear();
                        inv.buckets.push_back(b);
                    }
                    inv.buckets.iter().any(|b| b.cnt > 0)
                });
                if gone > 0 {
                    self.series.fetch_sub(gone, Ordering::Relaxed);
                    section.series.fetch_sub(gone as i64, Ordering::Relaxed);
                    section.metrics.series.sub(gone as i64);
                }
            }
        }
    }

    fn series(&self) -> usize {
        self.series.load(Ordering::Relaxed)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::config::{ComputeConfig, Seconds};
    use crate::route::Patterns;

    fn section(
        pattern: &[&str],
        every: u64,
        expire: u64,
        computes: &[(&str, &str)],
    ) -> AggregateConfig {
        AggregateConfig {
            name: None,
            pattern: Patterns::Many(pattern.iter().map(|s| s.to_string()).collect()),
            every: Seconds(every),
            expire: Seconds(expire),
            timestamp: TimestampAt::End,
            compute: computes
                .iter()
                .map(|(f, w)| ComputeConfig {
                    function: f.to_string(),
                    write_to: w.to_string(),
                })
                .collect(),
            send_to: None,
            stop: false,
        }
    }

    fn build(configs: &[AggregateConfig]) -> RelayAggregator {
        RelayAggregator::new(configs, &[], Limits::default(), &Metrics::new(), None).unwrap()
    }

    fn tick(a: &RelayAggregator, now_s: i64) -> Vec<(String, i64, f64)> {
        let mut out = Vec::new();
        a.tick(now_s * 1000, &mut out);
        let mut v: Vec<_> = out
            .into_iter()
            .map(|e| (e.name, e.timestamp, e.value))
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    }

    #[test]
    fn buckets_expire_and_late_and_early_values_are_dropped() {
        let a = build(&[section(
            &["^sys\\.(.+)\\.cpu$"],
            10,
            30,
            &[("sum", "agg.\\1.sum"), ("count", "agg.\\1.count")],
        )]);
        // First bucket: floor((now - 30) / 10) * 10 = 999_970; five buckets.
        let now = std::cell::Cell::new(1_000_000i64);
        let clock = || now.get() * 1000;
        assert_eq!(a.offer("sys.a.cpu", 1.5, 999_995, &clock), Offer::Fed);
        assert_eq!(a.offer("sys.a.cpu", 2.25, 999_999, &clock), Offer::Fed);
        assert_eq!(a.offer("sys.b.cpu", 1.0, 1_000_001, &clock), Offer::Fed);
        assert_eq!(a.offer("other", 1.0, 1_000_001, &clock), Offer::Pass);
        // Too old (before 999_970), too far ahead (at or after 999_970 + 5 * 10).
        a.offer("sys.a.cpu", 7.0, 999_969, &clock);
        a.offer("sys.a.cpu", 7.0, 1_000_020, &clock);
        let m = &a.sections[0].metrics;
        assert_eq!(m.dropped_late.get(), 2); // one per compute
        assert_eq!(m.dropped_too_early.get(), 2);
        // The bucket [999_990, 1_000_000) is final once 999_990 + 30 + splay < now.
        assert!(tick(&a, 1_000_020).is_empty());
        assert_eq!(
            tick(&a, 1_000_030),
            vec![
                ("agg.a.count".into(), 1_000_000, 2.0),
                ("agg.a.sum".into(), 1_000_000, 3.75)
            ]
        );
        // Produced: a value for it now is late.
        now.set(1_000_030);
        a.offer("sys.a.cpu", 1.0, 999_991, &clock);
        assert_eq!(m.dropped_late.get(), 4);
        assert_eq!(
            tick(&a, 1_000_040),
            vec![
                ("agg.b.count".into(), 1_000_010, 1.0),
                ("agg.b.sum".into(), 1_000_010, 1.0)
            ]
        );
        // Everything produced and nothing new: the invocations went away.
        tick(&a, 1_000_100);
        assert_eq!(a.series(), 0);
    }

    #[test]
    fn an_invocation_gone_and_its_slot_taken_by_another_name_is_found_again_by_name() {
        let a = build(&[section(&["^(a|b)$"], 10, 20, &[("sum", "o.\\1")])]);
        let now = std::cell::Cell::new(1_000_000i64);
        let clock = || now.get() * 1000;
        // `a` takes the first slot, then goes away once its bucket is produced.
        a.offer("a", 1.0, 1_000_000, &clock);
        assert_eq!(tick(&a, 1_000_040), vec![("o.a".into(), 1_000_010, 1.0)]);
        assert_eq!(a.series(), 0);
        // `b` takes the freed slot; `a`, whose cached target still names it, must not feed `b`.
        now.set(1_000_050);
        a.offer("b", 2.0, 1_000_050, &clock);
        a.offer("a", 3.0, 1_000_050, &clock);
        a.offer("a", 4.0, 1_000_050, &clock);
        assert_eq!(a.series(), 2);
        assert_eq!(
            tick(&a, 1_000_090),
            vec![
                ("o.a".into(), 1_000_060, 7.0),
                ("o.b".into(), 1_000_060, 2.0)
            ]
        );
    }

    #[test]
    fn write_to_keeps_the_text_around_the_match_and_stop_ends_it() {
        let mut first = section(&["^a\\.(x|y)"], 10, 20, &[("max", "m.\\1")]);
        first.stop = true;
        let a = build(&[first, section(&["*"], 10, 20, &[("min", "all.min")])]);
        let targets = |r: &Resolved| -> Vec<(u32, u32, String)> {
            r.targets
                .iter()
                .map(|t| (t.section, t.compute, t.output.to_string()))
                .collect()
        };
        let r = a.resolve("a.x.b");
        assert_eq!(targets(&r), vec![(0, 0, "m.x.b".into())]);
        assert!(r.stopped);
        let r = a.resolve("c.d");
        assert_eq!(targets(&r), vec![(1, 0, "all.min".into())]);
        assert!(!r.stopped);
    }

    #[test]
    fn functions_compute_as_carbon_c_relay_prints_them() {
        let mut b = Bucket::new(0);
        for v in [3.0, 1.0, 4.0, 1.0, 5.0] {
            if b.cnt == 0 {
                (b.sum, b.min, b.max) = (v, v, v);
            } else {
                b.sum += v;
                b.min = b.min.min(v);
                b.max = b.max.max(v);
            }
            b.values.push(v);
            b.cnt += 1;
        }
        assert_eq!(b.value(Func::Sum), 14.0);
        assert_eq!(b.value(Func::Average), 2.8);
        assert_eq!(b.value(Func::Percentile(50)), 3.0);
        assert_eq!(b.value(Func::Percentile(99)), 5.0);
        assert_eq!(b.value(Func::Variance), 2.56);
        assert_eq!(b.value(Func::Stddev), 1.6);
        assert_eq!(six_decimals(1.0 / 3.0), 0.333333);
        assert_eq!(six_decimals(1e-9), 0.0);
        assert!(Func::parse("percentile0").is_err());
        assert!(Func::parse("percentile100").is_err());
        assert_eq!(Func::parse("percentile95"), Ok(Func::Percentile(95)));
    }

    #[test]
    fn qsort_follows_the_truncating_comparator() {
        // 0.5 and 0.2 "compare equal": the merge keeps their order.
        let mut v = [0.5, 0.2, 3.0, 0.1];
        c_qsort(&mut v);
        assert_eq!(v, [0.5, 0.2, 0.1, 3.0]);
        let mut w = [5.0, 3.0, 9.0, 1.0, 7.0];
        c_qsort(&mut w);
        assert_eq!(w, [1.0, 3.0, 5.0, 7.0, 9.0]);
    }

    proptest::proptest! {
        #[test]
        fn nearest_rank_is_a_member_and_ordered(
            values in proptest::collection::vec(-1_000_000i64..1_000_000, 1..300),
            pct in 1u8..=99,
        ) {
            // Whole numbers: the comparator is exact, so the sort is a true sort.
            let mut v: Vec<f64> = values.iter().map(|&x| x as f64).collect();
            let p = nearest_rank(&mut v, pct).unwrap();
            proptest::prop_assert!(v.windows(2).all(|w| w[0] <= w[1]));
            let k = ((f64::from(pct) / 100.0 * v.len() as f64) + 0.9) as usize;
            proptest::prop_assert_eq!(p, v[k.clamp(1, v.len()) - 1]);
            let below = v.iter().filter(|&&x| x < p).count();
            proptest::prop_assert!(below < k.max(1));
        }

        #[test]
        fn every_bucket_is_aligned(now in 1_000_000i64..4_000_000_000, every in 1u64..600, extra in 1u64..600) {
            let a = build(&[section(&["*"], every, every + extra, &[("sum", "s")])]);
            let clock = || now * 1000;
            a.offer("x", 1.0, now, &clock);
            let state = lock(&a.sections[0].state);
            let inv = state.computes[0].get("s").unwrap();
            for (i, b) in inv.buckets.iter().enumerate() {
                proptest::prop_assert_eq!(b.start.rem_euclid(every as i64), 0);
                if i > 0 {
                    proptest::prop_assert_eq!(b.start - inv.buckets[i - 1].start, every as i64);
                }
            }
            // The ring reaches past now, and its first bucket is at least `expire` back.
            proptest::prop_assert!(inv.buckets.back().unwrap().start + every as i64 > now);
            proptest::prop_assert!(inv.buckets[0].start <= now - (every + extra) as i64);
        }
    }
}
