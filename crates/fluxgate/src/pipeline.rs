//! What listeners hand their points to: the outputs, the translation tables and the routes.
//! Swapped as a whole on reload, so a batch always sees one consistent config.
//!
//! A listener fills one [`Batch`] per socket read or HTTP request: one buffer per output, in
//! that output's own wire form (line protocol for InfluxDB outputs, canonical plaintext for
//! Graphite outputs). A point is translated once per form, not once per output, and a batch is
//! handed on once, never a point at a time.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::future::{select_all, BoxFuture, FutureExt};

use crate::{
    config::Config,
    listener::ListenerCtx,
    metrics::Metrics,
    name_cache::NameCache,
    output::{Answer, Chunk, Form, Output, Reservation, Target},
    route::{NameError, NameScratch, Origin, OutputSet, PlainNames, Router},
    translate::graphite::{TemplateSet, TranslateError, Translator},
};

#[derive(Debug)]
pub struct Pipeline {
    /// In the order of [`Config::output_names`]: the router's indices.
    pub outputs: Vec<Arc<dyn Output>>,
    pub router: Router,
    pub templates: Arc<TemplateSet>,
    pub config: Arc<Config>,
    pub metrics: Metrics,
    /// `[aggregation]` and `[[aggregate]]`, when configured: offered every Graphite point
    /// after rewriting, before routing. Its state outlives a reload (the successor takes over
    /// the unchanged rules' buckets).
    pub aggregation: Option<Arc<crate::aggregate::Aggregation>>,
}

impl Pipeline {
    /// When a canonical plaintext line whose name cleansing keeps would reach every output
    /// as the very bytes it came as (no aggregation, rewrite or route rule; only Graphite
    /// outputs), the test for such lines: a relay then copies them on without parsing them.
    pub fn passthrough(&self) -> Option<Passthrough<'_>> {
        self.names_unchanged(|form| matches!(form, Form::Graphite(_)))
            .map(|names| Passthrough { names })
    }

    /// When a canonical plaintext line whose name cleansing keeps would reach every output
    /// as the line protocol the templates make of it (no aggregation, rewrite or route rule;
    /// only InfluxDB outputs), the translation of such lines by a lookup of their name's
    /// series text ([`LpThrough`]) instead of a parse and a run of the template engine.
    pub fn lp_through(&self) -> Option<LpThrough<'_>> {
        self.names_unchanged(|form| matches!(form, Form::LineProtocol))
            .map(|names| LpThrough {
                pass: Passthrough { names },
                templates: &self.templates,
            })
    }

    /// When nothing configured can change a Graphite name on its way (no aggregation,
    /// rewrite or route rule) and there are outputs, each of a form `takes` accepts: the
    /// names cleansing keeps as they are.
    fn names_unchanged(&self, takes: impl Fn(&Form) -> bool) -> Option<&PlainNames> {
        let forms_fit = !self.outputs.is_empty() && self.outputs.iter().all(|o| takes(o.form()));
        if self.aggregation.is_some() || !forms_fit {
            return None;
        }
        self.router.identity()
    }
}

/// Bytes one generation of a worker thread's series texts may hold: about 85,000 names of 40
/// bytes. Connections move between worker threads, so each sees every name: a generation
/// smaller than the names sent every interval would drop some of them on each turn.
const SERIES_GENERATION_BYTES: usize = 8 << 20;

thread_local! {
    /// Per worker thread, so a lookup takes no lock: the series texts of the names seen,
    /// for the templates they were made with (the `Weak` keeps that address from being
    /// reused by a later set, so a reload is never mistaken for the same templates).
    static SERIES: std::cell::RefCell<(std::sync::Weak<TemplateSet>, NameCache)> =
        std::cell::RefCell::new((std::sync::Weak::new(), NameCache::with_limit(SERIES_GENERATION_BYTES)));
}

/// Translates plaintext lines to line protocol by their name's cached series text
/// ([`Pipeline::lp_through`]).
#[derive(Clone, Copy, Debug)]
pub struct LpThrough<'a> {
    pass: Passthrough<'a>,
    templates: &'a Arc<TemplateSet>,
}

impl LpThrough<'_> {
    /// The lines at the start of `input` that [`Passthrough::line_len`] accepts and whose
    /// value line protocol spells as it came, translated onto `out`: how many bytes of
    /// `input` they take (with their `\n`s) and how many lines they are. Stops at the first
    /// other line, or one whose name the templates refuse (the parsing way says why). Each
    /// line's output is what [`Batch::add_graphite`] writes for it: the series text, `=`, the
    /// value as sent, and the time in nanoseconds.
    pub fn take_run(
        &self,
        input: &[u8],
        max_line: usize,
        tr: &mut Translator<'_>,
        out: &mut Vec<u8>,
    ) -> (usize, usize) {
        SERIES.with_borrow_mut(|(templates, cache)| {
            if !std::ptr::eq(templates.as_ptr(), Arc::as_ptr(self.templates)) {
                *templates = Arc::downgrade(self.templates);
                cache.clear();
            }
            self.translate_run(input, max_line, tr, cache, out)
        })
    }

    fn translate_run(
        &self,
        input: &[u8],
        max_line: usize,
        tr: &mut Translator<'_>,
        cache: &mut NameCache,
        out: &mut Vec<u8>,
    ) -> (usize, usize) {
        // Lines go in groups: their names are looked up one after the other before any is
        // used, so the lookups' cache misses overlap instead of adding up.
        const GROUP: usize = 8;
        let (mut used, mut lines) = (0, 0);
        let mut group = [(0usize, Fields::EMPTY, 0u64, None); GROUP];
        loop {
            let (mut n, mut pos, mut last) = (0, used, false);
            while n < GROUP {
                let Some(fields) = self.pass.fields(&input[pos..], max_line) else {
                    last = true;
                    break;
                };
                let line = &input[pos..pos + fields.len];
                if !crate::translate::graphite::spelled_as_written(fields.value(line)) {
                    last = true;
                    break;
                }
                group[n] = (pos, fields, cache.hash(&line[..fields.path_end]), None);
                pos += fields.len + 1;
                n += 1;
            }
            let epoch = cache.epoch();
            for (pos, fields, hash, found) in &mut group[..n] {
                *found = cache.find(*hash, &input[*pos..*pos + fields.path_end]);
            }
            for &(pos, fields, hash, found) in &group[..n] {
                let line = &input[pos..pos + fields.len];
                let name = &line[..fields.path_end];
                let series = match found {
                    Some(found) if cache.epoch() == epoch => cache.value(found),
                    _ => {
                        let made = cache.get_hashed(hash, name, |series| {
                            std::str::from_utf8(name)
                                .is_ok_and(|name| tr.write_series(name, series).is_ok())
                        });
                        match made {
                            Some(series) => series,
                            None => return (used, lines),
                        }
                    }
                };
                let value = fields.value(line);
                let seconds = &line[fields.value_end + 1..];
                out.reserve(series.len() + value.len() + seconds.len() + 12);
                out.extend_from_slice(series);
                out.push(b'=');
                out.extend_from_slice(value);
                out.push(b' ');
                out.extend_from_slice(seconds);
                if seconds != b"0" {
                    out.extend_from_slice(b"000000000");
                }
                out.push(b'\n');
                used = pos + fields.len + 1;
                lines += 1;
            }
            if last {
                return (used, lines);
            }
        }
    }
}

/// Where the fields of a line [`Passthrough`] accepts end.
#[derive(Clone, Copy, Debug)]
struct Fields {
    /// The space after the path.
    path_end: usize,
    /// The space after the value.
    value_end: usize,
    /// The whole line, without its `\n`.
    len: usize,
}

impl Fields {
    const EMPTY: Self = Self {
        path_end: 0,
        value_end: 0,
        len: 0,
    };

    fn value<'l>(&self, line: &'l [u8]) -> &'l [u8] {
        &line[self.path_end + 1..self.value_end]
    }
}

/// Tells plaintext lines that go on unchanged ([`Pipeline::passthrough`]).
#[derive(Clone, Copy, Debug)]
pub struct Passthrough<'a> {
    names: &'a PlainNames,
}

impl Passthrough<'_> {
    /// The lines at the start of `input` that go on as they are, back to back: how many
    /// bytes they take (with their `\n`s) and how many lines they are. Stops at the first
    /// line that is not accepted ([`Passthrough::line_len`]) or longer than `max_line`.
    pub fn take_run(&self, input: &[u8], max_line: usize) -> (usize, usize) {
        let (mut used, mut lines) = (0, 0);
        while let Some(len) = self.line_len(&input[used..], max_line) {
            used += len + 1;
            lines += 1;
        }
        (used, lines)
    }

    /// The length of the first line of `input` when it is at most `max_line` bytes, ends in
    /// a plain `\n` and is `path value timestamp` spelled canonically
    /// ([`graphite_plaintext::is_canonical`]), its path kept by cleansing and its timestamp in
    /// range: the line the parsing way would write for it is the line itself. No parsing of
    /// the value, and a few short passes over the bytes.
    #[inline]
    pub fn line_len(&self, input: &[u8], max_line: usize) -> Option<usize> {
        self.fields(input, max_line).map(|f| f.len)
    }

    /// [`Passthrough::line_len`], with where the path and the value end.
    #[inline(always)]
    fn fields(&self, input: &[u8], max_line: usize) -> Option<Fields> {
        if self.names.any_graphic() {
            if let Some(told) = crate::line_scan::fields(input, max_line) {
                return told.map(|(path_end, value_end, len)| Fields {
                    path_end,
                    value_end,
                    len,
                });
            }
        }
        self.fields_bytewise(input, max_line)
    }

    /// [`Passthrough::fields`] a few bytes at a time: for what [`crate::line_scan`] cannot
    /// tell, and the names other than `validation = "none"`'s.
    #[inline(always)]
    fn fields_bytewise(&self, input: &[u8], max_line: usize) -> Option<Fields> {
        let window = &input[..input.len().min(max_line.saturating_add(1))];
        let path_end = self.names.path_end(window)?;
        let rest = &window[path_end + 1..];
        let value_len = graphite_plaintext::canonical_value_len(rest)?;
        let after = &rest[value_len..];
        if after.first() != Some(&b' ') {
            return None;
        }
        // Canonical, then: at most ten digits, and at most what nanoseconds hold.
        let ts_text = &after[1..];
        let ts_len = graphite_plaintext::canonical_timestamp_len(ts_text)?;
        if ts_text.get(ts_len) != Some(&b'\n')
            || (ts_len == 10 && &ts_text[..10] > b"9223372036".as_slice())
        {
            return None;
        }
        Some(Fields {
            path_end,
            value_end: path_end + 1 + value_len,
            len: window.len() - ts_text.len() + ts_len,
        })
    }
}

/// How a submitted batch fared across outputs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Outputs that took their part.
    pub accepted: usize,
    /// Outputs that refused it because they were full (counted as dropped by them).
    pub dropped: usize,
    /// Outputs that were closing.
    pub closed: usize,
    /// Outputs whose wait for room ran out (HTTP writes only).
    pub timed_out: usize,
    /// With [`Wait::Delivered`]: what the upstream that answers for the write said (`None`
    /// when no output can answer; the write was then queued).
    pub answer: Option<Answer>,
}

/// How a submit may wait for room.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// Each output takes what fits at once; the rest is waited for, concurrently across
    /// outputs, as long as each output's policy lets it wait (TCP and UDP listeners: the
    /// wait is what stops them reading, which is how TCP pushes back on a sender).
    Partial,
    /// Nothing is taken unless every output can take its whole part; wait at most this
    /// long for that (HTTP writes: a refused write left nothing behind to duplicate).
    AllOrNothing(Duration),
    /// As [`Wait::AllOrNothing`], and the first output that can answer for a write sends it
    /// at once and answers with its upstream's word, within the same time.
    Delivered(Duration),
    /// As [`Wait::AllOrNothing`], and done once every output has it on disk, fsynced.
    Durable(Duration),
}

/// Why a point was not taken into a batch; the caller counts it under [`Reject::reason`].
#[derive(Debug)]
pub enum Reject {
    /// A name that cleansing or rewriting cannot make valid.
    Name(NameError),
    /// A name no routed output can carry (e.g. a space in a Graphite path with
    /// `validation = "none"`).
    Unrepresentable(graphite_plaintext::Error),
    /// A tagged series (`name;k=v`) that breaks carbon's tag rules.
    Tags(graphite_plaintext::Error),
    Translate(TranslateError),
}

impl Reject {
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::Name(e) => e.reason(),
            Reject::Unrepresentable(e) => e.reason(),
            Reject::Tags(e) => e.reason(),
            Reject::Translate(e) => e.reason(),
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reject::Name(e) => e.fmt(f),
            Reject::Unrepresentable(e) => e.fmt(f),
            Reject::Tags(e) => e.fmt(f),
            Reject::Translate(e) => e.fmt(f),
        }
    }
}

/// Per-output buffers filled from one read or request.
#[derive(Debug)]
pub struct Batch {
    /// The `listener` label for points the routes send nowhere.
    listener: &'static str,
    bufs: Vec<(Vec<u8>, usize)>,
    /// Per output, how large its last handed-on buffer was: the next one takes that much
    /// room when its first point arrives, not before, so a connection waiting for room (or
    /// idle) holds no empty buffer.
    hints: Vec<usize>,
    /// The current point as line protocol and as plaintext, made once each and copied to
    /// every output that takes that form.
    lp: Vec<u8>,
    plain: Vec<u8>,
    names: NameScratch,
    /// The name after the `stage = "post"` rewrites.
    post: String,
    routed: OutputSet,
    points: usize,
    /// A run of lines that goes to these outputs (bits) as it arrived, kept as a piece of
    /// the read buffer instead of copied ([`Batch::add_plain_shared`]): only while nothing
    /// else is in the batch.
    shared: Option<(Bytes, usize, u64)>,
}

impl Batch {
    pub fn new(listener: &'static str) -> Self {
        Self {
            listener,
            bufs: Vec::new(),
            hints: Vec::new(),
            lp: Vec::new(),
            plain: Vec::new(),
            names: NameScratch::default(),
            post: String::new(),
            routed: OutputSet::default(),
            points: 0,
            shared: None,
        }
    }

    /// Routes `key`; false (and counted) when the routes send the point nowhere.
    fn route(&mut self, pipeline: &Pipeline, key: &str, origin: Origin) -> bool {
        pipeline.router.route(key, origin, &mut self.routed);
        if !self.routed.is_empty() {
            return true;
        }
        let reason = if self.routed.dropped() {
            "drop_route"
        } else {
            "no_route"
        };
        pipeline
            .metrics
            .unrouted
            .with_label_values(&[self.listener, reason])
            .inc();
        false
    }

    /// Canonical plaintext lines, back to back with their `\n` terminators, each accepted by
    /// [`Pipeline::passthrough`]: copied to every output as they are, in one piece.
    pub fn add_plain_run(&mut self, pipeline: &Pipeline, lines: &[u8], count: usize) {
        self.prepare(pipeline);
        self.copy_run(lines, count, pipeline.router.all_outputs());
        self.points += count;
    }

    /// [`Batch::add_plain_run`] for lines the caller can hand over as they are: into an
    /// empty batch they go to every output as this very piece of memory, no copy made.
    pub fn add_plain_shared(&mut self, pipeline: &Pipeline, lines: Bytes, count: usize) {
        if self.points == 0 && self.shared.is_none() && self.bufs.iter().all(|(b, _)| b.is_empty())
        {
            self.shared = Some((lines, count, pipeline.router.all_outputs()));
            self.points += count;
        } else {
            self.add_plain_run(pipeline, &lines, count);
        }
    }

    /// Line protocol that `write` appends (returning what it returns: bytes of input used,
    /// lines written), for every output: each a line the parsing way would write the same
    /// ([`LpThrough::take_run`]). Written once, copied to the other outputs.
    pub fn add_lp_run(
        &mut self,
        pipeline: &Pipeline,
        write: impl FnOnce(&mut Vec<u8>) -> (usize, usize),
    ) -> (usize, usize) {
        self.prepare(pipeline);
        let all = pipeline.router.all_outputs();
        let first = all.trailing_zeros() as usize;
        let Some((head, tail)) = self.bufs.get_mut(first..).and_then(|b| b.split_first_mut())
        else {
            return (0, 0);
        };
        make_room(&mut head.0, self.hints[first]);
        let start = head.0.len();
        let (used, count) = write(&mut head.0);
        if count == 0 {
            return (used, 0);
        }
        head.1 += count;
        for (i, (buf, n)) in tail.iter_mut().enumerate() {
            if all & (1 << (first + 1 + i)) != 0 {
                make_room(buf, self.hints[first + 1 + i]);
                buf.extend_from_slice(&head.0[start..]);
                *n += count;
            }
        }
        self.points += count;
        (used, count)
    }

    /// Points added since the last submit.
    pub fn len(&self) -> usize {
        self.points
    }

    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    /// Bytes held for the outputs: a caller whose input can expand (a pickle that repeats a
    /// memoized path) hands the batch on before this grows large.
    pub fn bytes(&self) -> usize {
        self.shared.as_ref().map_or(0, |(b, _, _)| b.len())
            + self.bufs.iter().map(|(b, _)| b.len()).sum::<usize>()
    }

    fn prepare(&mut self, pipeline: &Pipeline) {
        if self.bufs.len() != pipeline.outputs.len() {
            self.bufs
                .resize_with(pipeline.outputs.len(), Default::default);
            self.hints.resize(pipeline.outputs.len(), 0);
        }
        if let Some((lines, count, outputs)) = self.shared.take() {
            // Something else joins the batch: the shared run becomes a copy, in order.
            self.copy_run(&lines, count, outputs);
        }
    }

    fn copy_run(&mut self, lines: &[u8], count: usize, outputs: u64) {
        for (i, (buf, n)) in self.bufs.iter_mut().enumerate() {
            if outputs & (1 << i) != 0 {
                make_room(buf, self.hints[i]);
                buf.extend_from_slice(lines);
                *n += count;
            }
        }
    }

    /// A Graphite sample: line protocol for the InfluxDB outputs (by the graphite templates),
    /// canonical plaintext for the Graphite outputs.
    pub fn add_graphite(
        &mut self,
        pipeline: &Pipeline,
        tr: &mut Translator<'_>,
        path: &str,
        value: f64,
        timestamp_ns: i64,
    ) -> Result<(), Reject> {
        self.add_graphite_as_sent(pipeline, tr, path, value, timestamp_ns, None)
    }

    /// [`Batch::add_graphite`] for a sample that came as the plaintext line `as_sent`
    /// (without its terminator) when [`graphite_plaintext::is_canonical`] holds for it: if
    /// cleansing and rewrites leave the name as it is, the Graphite outputs get the line as it
    /// arrived (it is the very text the encoder would write), without formatting it again.
    pub fn add_graphite_as_sent(
        &mut self,
        pipeline: &Pipeline,
        tr: &mut Translator<'_>,
        path: &str,
        value: f64,
        timestamp_ns: i64,
        as_sent: Option<&[u8]>,
    ) -> Result<(), Reject> {
        self.prepare(pipeline);
        if value.is_nan() {
            return Err(Reject::Translate(TranslateError::NaN));
        }
        // Cleansing and rewrites first: routes, templates and hashing all see the final name.
        let mut names = std::mem::take(&mut self.names);
        let result = self.add_named(
            pipeline,
            tr,
            path,
            (value, timestamp_ns),
            as_sent,
            &mut names,
        );
        self.names = names;
        result
    }

    fn add_named(
        &mut self,
        pipeline: &Pipeline,
        tr: &mut Translator<'_>,
        path: &str,
        (value, timestamp_ns): (f64, i64),
        as_sent: Option<&[u8]>,
        names: &mut NameScratch,
    ) -> Result<(), Reject> {
        let sent_path = path;
        if memchr::memchr(b';', path.as_bytes()).is_some() {
            // Tag syntax is judged on the name as sent: that is what the sender must fix.
            graphite_plaintext::TaggedPath::parse(path).map_err(Reject::Tags)?;
        }
        let path = pipeline
            .router
            .normalize(path, names)
            .map_err(Reject::Name)?;
        if let Some(aggregation) = &pipeline.aggregation {
            let seconds = timestamp_ns.div_euclid(1_000_000_000);
            if !aggregation.offer(path, value, seconds) {
                // Taken by an aggregator (`stop`, or carbon's rules not forwarding it).
                self.points += 1;
                return Ok(());
            }
        }
        let mut post = std::mem::take(&mut self.post);
        let result = {
            let path = pipeline.router.rewrite_post(path, &mut post);
            let as_sent = as_sent.map(|line| AsSent {
                line,
                unchanged: std::ptr::eq(path, sent_path) || path == sent_path,
            });
            self.add_routed(pipeline, tr, path, (value, timestamp_ns), None, as_sent)
        };
        self.post = post;
        result
    }

    /// An aggregate produced by [`crate::aggregate`]: routed (or sent to `send_to`) like a
    /// received Graphite point, without cleansing, rewriting or aggregating it again.
    pub fn add_aggregate(
        &mut self,
        pipeline: &Pipeline,
        tr: &mut Translator<'_>,
        aggregate: &crate::aggregate::Emitted,
    ) -> Result<(), Reject> {
        self.prepare(pipeline);
        if aggregate.value.is_nan() {
            return Err(Reject::Translate(TranslateError::NaN));
        }
        let ns = aggregate
            .timestamp
            .checked_mul(1_000_000_000)
            .ok_or(Reject::Translate(TranslateError::NaN))?;
        self.add_routed(
            pipeline,
            tr,
            &aggregate.name,
            (aggregate.value, ns),
            aggregate.send_to,
            None,
        )
    }

    /// Routes a final name (or takes `send_to`, output indices) and writes it in each
    /// routed output's form.
    fn add_routed(
        &mut self,
        pipeline: &Pipeline,
        tr: &mut Translator<'_>,
        path: &str,
        (value, timestamp_ns): (f64, i64),
        send_to: Option<u64>,
        as_sent: Option<AsSent<'_>>,
    ) -> Result<(), Reject> {
        // Tagged series are checked whatever the outputs, so every sender sees one rule.
        let tagged;
        let tagged_name = memchr::memchr(b';', path.as_bytes()).is_some();
        let (name, tags): (&str, Vec<(&str, &str)>) = if tagged_name {
            tagged = graphite_plaintext::TaggedPath::parse(path).map_err(Reject::Tags)?;
            (
                tagged.name(),
                tagged.tags().map(|t| (t.key, t.value)).collect(),
            )
        } else {
            (path, Vec::new())
        };
        let routed = match send_to {
            Some(bits) => {
                self.routed.clear();
                for i in (0..pipeline.outputs.len()).filter(|i| bits & (1 << i) != 0) {
                    self.routed.insert(i);
                }
                !self.routed.is_empty()
            }
            None => self.route(pipeline, path, Origin::Graphite),
        };
        if !routed {
            // Valid, and sent nowhere on purpose: received, and counted as unrouted.
            self.points += 1;
            return Ok(());
        }
        // A canonical line whose name is unchanged is its own plaintext form.
        let sent_line = as_sent.map(|a| a.line);
        let as_sent = as_sent.filter(|a| a.unchanged).map(|a| a.line);
        // Each form is made once, for the first output that needs it, into a reused buffer.
        let Batch {
            bufs,
            hints,
            lp,
            plain,
            routed,
            ..
        } = self;
        let mut lp_made: Option<Result<(), TranslateError>> = None;
        let mut plain_made: Option<Result<(), graphite_plaintext::Error>> = None;
        let mut taken = false;
        for i in routed.iter() {
            let (buf, n) = &mut bufs[i];
            make_room(buf, hints[i]);
            if let (Some(line), Form::Graphite(_)) = (as_sent, pipeline.outputs[i].form()) {
                buf.extend_from_slice(line);
                buf.push(b'\n');
                *n += 1;
                taken = true;
                continue;
            }
            let made = match pipeline.outputs[i].form() {
                Form::LineProtocol => lp_made
                    .get_or_insert_with(|| {
                        lp.clear();
                        // The value as sent, when line protocol spells it the same way:
                        // copied, not formatted again.
                        let spelled = sent_line
                            .and_then(value_text)
                            .filter(|text| crate::translate::graphite::spelled_as_written(text));
                        tr.write_point_spelled(name, &tags, value, spelled, timestamp_ns, lp)
                    })
                    .is_ok()
                    .then_some(&*lp),
                Form::Graphite(_) => plain_made
                    .get_or_insert_with(|| {
                        plain.clear();
                        let seconds = timestamp_ns.div_euclid(1_000_000_000);
                        graphite_plaintext::encode_sample(path, value, seconds, plain)
                    })
                    .is_ok()
                    .then_some(&*plain),
            };
            if let Some(line) = made {
                buf.extend_from_slice(line);
                *n += 1;
                taken = true;
            }
        }
        let lp_err = lp_made.and_then(Result::err);
        let plain_err = plain_made.and_then(Result::err);
        if !taken {
            // No output could carry it: for the sender, the point is refused.
            return match (lp_err, plain_err) {
                (Some(e), _) => Err(Reject::Translate(e)),
                (None, Some(e)) => Err(Reject::Unrepresentable(e)),
                (None, None) => Ok(()),
            };
        }
        self.points += 1;
        // Some outputs took it (carbon stores ±Inf, InfluxDB does not, say): each one that
        // could not counts it as dropped, with the reason.
        for i in self.routed.iter() {
            let output = &pipeline.outputs[i];
            let refused = match output.form() {
                Form::LineProtocol => lp_err.as_ref().map(|e| (e.reason(), e.to_string())),
                Form::Graphite(_) => plain_err.as_ref().map(|e| (e.reason(), e.to_string())),
            };
            if let Some((reason, why)) = refused {
                output.drop_points(1, reason, &format!("{path}: {why}"));
            }
        }
        Ok(())
    }

    /// A line-protocol point whose normalized text (nanosecond timestamp, `\n`-terminated) is
    /// `line`: as is for the InfluxDB outputs, through each Graphite output's template for the
    /// Graphite outputs. Returns how many fields a Graphite output could not carry.
    pub fn add_line_protocol(
        &mut self,
        pipeline: &Pipeline,
        point: &line_protocol::ParsedLine<'_>,
        line: &[u8],
        timestamp_ns: i64,
    ) {
        self.prepare(pipeline);
        if !self.route(pipeline, &point.measurement.as_str(), Origin::Line) {
            self.points += 1;
            return;
        }
        for i in self.routed.iter() {
            let (buf, n) = &mut self.bufs[i];
            make_room(buf, self.hints[i]);
            let output = &pipeline.outputs[i];
            match output.form() {
                Form::LineProtocol => {
                    buf.extend_from_slice(line);
                    *n += 1;
                }
                Form::Graphite(to_graphite) => {
                    let written = to_graphite.write_point(point, timestamp_ns, buf);
                    *n += written.lines;
                    let skipped = written.skipped.total();
                    if skipped > 0 {
                        for (reason, count) in written.skipped.iter() {
                            pipeline
                                .metrics
                                .dropped
                                .with_label_values(&[output.name(), reason.as_str()])
                                .inc_by(u64::from(count));
                        }
                    }
                }
            }
        }
        self.points += 1;
    }

    /// Hands every output its part. With [`Wait::Partial`] each output takes what fits at
    /// once and the rest is waited for concurrently, so a full output holds back only its own
    /// part; with [`Wait::AllOrNothing`] nothing is taken until every output has room.
    /// An output retired by a reload meanwhile passes its part to its successor.
    pub async fn submit(
        &mut self,
        ctx: &ListenerCtx,
        pipeline: &Pipeline,
        target: &Target,
        wait: Wait,
    ) -> Submitted {
        if self.points == 0 {
            return Submitted::default();
        }
        let work = self.take_work(pipeline, target);
        Self::dispatch(ctx, work, wait).await
    }

    /// As [`Batch::submit`] with [`Wait::Partial`], every part carrying `ticket`: its last
    /// drop, once every output delivered (or fsynced, or gave up on and counted) its part,
    /// acknowledges the message the batch came from (the NATS listener).
    pub async fn submit_tracked(
        &mut self,
        ctx: &ListenerCtx,
        pipeline: &Pipeline,
        target: &Target,
        ticket: Arc<crate::queue::Ticket>,
    ) -> Submitted {
        let mut work = self.take_work(pipeline, target);
        for (_, chunks) in &mut work {
            for c in chunks {
                c.tickets.push(ticket.clone());
            }
        }
        drop(ticket);
        submit_partial(ctx, work).await
    }

    /// Each output's part as a chunk, the buffers emptied for the next batch.
    fn take_work(
        &mut self,
        pipeline: &Pipeline,
        target: &Target,
    ) -> Vec<(Arc<dyn Output>, Vec<Chunk>)> {
        self.points = 0;
        let mut work: Vec<(Arc<dyn Output>, Vec<Chunk>)> = Vec::new();
        if let Some((lines, count, outputs)) = self.shared.take() {
            // Alone in the batch (see `prepare`): every output's part is this piece.
            for (i, o) in pipeline.outputs.iter().enumerate() {
                if outputs & (1 << i) != 0 {
                    let chunk = Chunk::new(target.clone(), lines.clone(), count);
                    work.push((o.clone(), vec![chunk]));
                }
            }
            return work;
        }
        for (i, o) in pipeline.outputs.iter().enumerate() {
            let Some((buf, n)) = self.bufs.get_mut(i) else {
                break;
            };
            if *n == 0 {
                buf.clear();
                continue;
            }
            let points = std::mem::take(n);
            self.hints[i] = buf.len();
            let body = Bytes::from(std::mem::take(buf));
            work.push((o.clone(), vec![Chunk::new(target.clone(), body, points)]));
        }
        work
    }

    async fn dispatch(
        ctx: &ListenerCtx,
        work: Vec<(Arc<dyn Output>, Vec<Chunk>)>,
        wait: Wait,
    ) -> Submitted {
        match wait {
            Wait::Partial => submit_partial(ctx, work).await,
            Wait::AllOrNothing(limit) => submit_all_or_nothing(ctx, work, limit, Ack::Queued).await,
            Wait::Delivered(limit) => submit_all_or_nothing(ctx, work, limit, Ack::Delivered).await,
            Wait::Durable(limit) => submit_all_or_nothing(ctx, work, limit, Ack::Durable).await,
        }
    }
}

/// A Graphite sample's plaintext line as it arrived, spelled canonically
/// ([`graphite_plaintext::is_canonical`]).
#[derive(Debug, Clone, Copy)]
struct AsSent<'a> {
    /// Without its terminator.
    line: &'a [u8],
    /// Cleansing and rewrites left the name as sent: the line is its own plaintext form.
    unchanged: bool,
}

/// Takes the room an output's last buffer needed before the first point goes into a new one
/// (saving the copies of growing it from nothing).
#[inline(always)]
fn make_room(buf: &mut Vec<u8>, hint: usize) {
    if buf.capacity() == 0 {
        buf.reserve(hint);
    }
}

/// The value field of a canonical plaintext line (`path value timestamp`).
fn value_text(line: &[u8]) -> Option<&[u8]> {
    let start = memchr::memchr(b' ', line)? + 1;
    let len = memchr::memchr(b' ', &line[start..])?;
    Some(&line[start..start + len])
}

/// The output of the same name in the pipeline in force now, when it is another one than
/// `old` and takes the same wire form: where a retired output's part goes.
fn successor(ctx: &ListenerCtx, old: &Arc<dyn Output>) -> Option<Arc<dyn Output>> {
    let current = ctx.pipeline();
    let found = current
        .outputs
        .iter()
        .find(|o| o.name() == old.name() && !Arc::ptr_eq(o, old))?;
    let same_form = matches!(
        (found.form(), old.form()),
        (Form::LineProtocol, Form::LineProtocol) | (Form::Graphite(_), Form::Graphite(_))
    );
    same_form.then(|| found.clone())
}

/// Resolves when room may have come back in the output (or it closed), or when its stall
/// budget for `rest` runs out.
fn room_or_stall(
    output: &Arc<dyn Output>,
    registered: std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>>,
    rest: &[Chunk],
) -> BoxFuture<'static, ()> {
    match output.stall_deadline(rest) {
        Some(at) => async move {
            tokio::select! {
                _ = registered => {}
                _ = tokio::time::sleep_until(at) => {}
            }
        }
        .boxed(),
        None => registered.map(|_| ()).boxed(),
    }
}

async fn submit_partial(
    ctx: &ListenerCtx,
    mut work: Vec<(Arc<dyn Output>, Vec<Chunk>)>,
) -> Submitted {
    let mut s = Submitted::default();
    let mut first = true;
    loop {
        let mut waits: Vec<BoxFuture<'static, ()>> = Vec::new();
        let mut next = Vec::new();
        for (out, chunks) in work.drain(..) {
            let waiter = out.waiter();
            let registered = waiter.register();
            let mut r = Reservation::default();
            for chunk in chunks {
                out.reserve(chunk, &mut r);
            }
            let rest = std::mem::take(&mut r.rest);
            let mut closed = std::mem::take(&mut r.closed);
            let took = !r.grants.is_empty();
            let shed = !r.shed.is_empty();
            closed.extend(out.commit(r));
            if first {
                if took {
                    s.accepted += 1;
                } else if shed && rest.is_empty() {
                    s.dropped += 1;
                }
            }
            if !closed.is_empty() {
                match successor(ctx, &out) {
                    Some(next_out) => next.push((next_out, closed)),
                    None => {
                        s.closed += 1;
                        let points = closed.iter().map(|c| c.points).sum();
                        out.drop_points(points, "shutdown", "shutting down");
                    }
                }
            }
            if !rest.is_empty() {
                waits.push(room_or_stall(&out, registered, &rest));
                next.push((out, rest));
            }
        }
        first = false;
        if next.is_empty() {
            return s;
        }
        if !waits.is_empty() && waits.len() == next.len() {
            // Every output left is full: wait until any of them may have room.
            select_all(waits).await;
        }
        work = next;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ack {
    Queued,
    Delivered,
    Durable,
}

async fn submit_all_or_nothing(
    ctx: &ListenerCtx,
    mut work: Vec<(Arc<dyn Output>, Vec<Chunk>)>,
    limit: Duration,
    ack: Ack,
) -> Submitted {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut waits: Vec<BoxFuture<'static, ()>> = Vec::new();
        let mut reservations = Vec::with_capacity(work.len());
        let mut retired = false;
        for (out, chunks) in &mut work {
            let waiter = out.waiter();
            let registered = waiter.register();
            let mut r = Reservation::default();
            for chunk in chunks.iter() {
                out.reserve(chunk.clone(), &mut r);
            }
            if !r.closed.is_empty() {
                if let Some(next_out) = successor(ctx, out) {
                    *out = next_out;
                    retired = true;
                }
            } else if !r.rest.is_empty() {
                waits.push(room_or_stall(out, registered, &r.rest));
            }
            reservations.push(r);
        }
        if retired {
            // Taken back (the reservations drop) and offered to the reloaded outputs.
            continue;
        }
        if reservations.iter().all(Reservation::is_complete) {
            let mut s = Submitted::default();
            let mut answering = None;
            let mut syncs = Vec::new();
            for ((out, _), r) in work.iter().zip(reservations) {
                let took = !r.grants.is_empty();
                if took {
                    s.accepted += 1;
                } else {
                    s.dropped += 1;
                }
                // The first output that can answer for the write sends it at once.
                if ack == Ack::Delivered && took && answering.is_none() && out.answers_writes() {
                    answering = Some(out.commit_delivered(r, deadline));
                    continue;
                }
                if ack == Ack::Durable {
                    syncs.push(out.commit_durable(r));
                    continue;
                }
                let refused = out.commit(r);
                if !refused.is_empty() {
                    let points = refused.iter().map(|c| c.points).sum();
                    out.drop_points(points, "shutdown", "shutting down");
                }
            }
            if let Some(answer) = answering {
                s.answer = Some(answer.await);
            }
            if !syncs.is_empty() {
                let durable = tokio::time::timeout_at(deadline, futures::future::join_all(syncs))
                    .await
                    .is_ok_and(|all| all.into_iter().all(|d| d));
                if !durable {
                    s.answer = Some(Answer::Unavailable(
                        "the write is queued but not yet on disk".into(),
                    ));
                }
            }
            return s;
        }
        if reservations.iter().any(|r| !r.closed.is_empty()) {
            // An output is stopping: the gateway is shutting down.
            return Submitted {
                closed: 1,
                ..Submitted::default()
            };
        }
        // Nothing is taken while anything is missing: give every grant back, then wait.
        drop(reservations);
        tokio::select! {
            _ = select_all(waits) => {}
            _ = tokio::time::sleep_until(deadline) => {
                return Submitted { timed_out: 1, ..Submitted::default() };
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Submitted {
                timed_out: 1,
                ..Submitted::default()
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Cleanser, Validation, DEFAULT_ALLOWED_CHARS};
    use crate::translate::influx::SegmentEncoder;
    use proptest::prelude::*;

    fn cleansers() -> Vec<Cleanser> {
        [Validation::None, Validation::Cleanse, Validation::Encode]
            .into_iter()
            .map(|v| {
                let encoder = SegmentEncoder::new(metric_name::Encoding::Idna, true);
                Cleanser::new(v, DEFAULT_ALLOWED_CHARS, encoder).unwrap()
            })
            .collect()
    }

    /// Lines near the canonical form: names with dots, tags, odd and non-ASCII bytes, long
    /// segments; values and timestamps with the spellings that are and are not canonical.
    fn near_canonical() -> impl Strategy<Value = Vec<u8>> {
        let name = prop::collection::vec(
            prop_oneof![
                8 => "[a-z0-9]{1,8}",
                1 => Just(".".to_string()),
                1 => Just(";k=v".to_string()),
                1 => "[-_:#%~!]",
                1 => Just("é".to_string()),
                1 => "[a-z]{60,70}",
            ],
            1..6,
        )
        .prop_map(|parts| parts.join("."));
        let value = prop_oneof![
            "-?[0-9]{1,3}(\\.[0-9]{1,3})?",
            Just("1e3".to_string()),
            Just("-0".to_string()),
            Just("nan".to_string()),
            Just("12.50".to_string()),
            "[0-9]{14,17}",
        ];
        let ts = prop_oneof![
            "[1-9][0-9]{0,9}",
            Just("9223372036".to_string()),
            Just("9223372037".to_string()),
            Just("9999999999".to_string()),
            Just("0".to_string()),
            Just("01".to_string()),
            Just("1.5".to_string()),
        ];
        let sep = prop_oneof![8 => Just(" "), 1 => Just("  "), 1 => Just("\t")];
        (name, sep.clone(), value, sep, ts)
            .prop_map(|(n, a, v, b, t)| format!("{n}{a}{v}{b}{t}").into_bytes())
    }

    proptest! {
        /// With `validation = "none"` a path is kept when it is printable ASCII without `;`,
        /// whatever its length and wherever an odd byte sits (the check goes eight at a time).
        #[test]
        fn none_keeps_printable_paths_without_semicolons(
            line in prop::collection::vec(
                prop_oneof![16 => 0x21u8..0x7f, 2 => Just(b' '), 1 => any::<u8>()],
                0..40,
            )
        ) {
            let none = cleansers().remove(0).plain_names();
            let space = line.iter().position(|&b| b == b' ');
            let expected = space.filter(|&end| {
                end > 0 && line[..end].iter().all(|&b| b.is_ascii_graphic() && b != b';')
            });
            prop_assert_eq!(none.path_end(&line), expected);
            if let Some(end) = space {
                prop_assert_eq!(none.keeps(&line[..end]), expected.is_some());
            }
        }

        /// The mask check ([`crate::line_scan`]) answers as the byte-wise one, whatever
        /// follows the line and whatever the longest line allowed, or says it cannot tell
        /// only when no newline is among the first 64 bytes.
        #[test]
        fn masks_decide_as_the_bytewise_check(
            line in prop_oneof![
                near_canonical(),
                prop::collection::vec(
                    prop_oneof![
                        8 => b'0'..=b'9',
                        4 => b'a'..=b'z',
                        2 => Just(b' '),
                        1 => Just(b'.'),
                        1 => Just(b'-'),
                        1 => Just(b';'),
                        1 => Just(b'\n'),
                        1 => any::<u8>(),
                    ],
                    0..70,
                ),
            ],
            tail in prop::collection::vec(prop_oneof![4 => b'0'..=b'9', 1 => any::<u8>()], 0..80),
            max_line in prop_oneof![3 => Just(usize::MAX), 1 => 0usize..70],
        ) {
            let names = cleansers().remove(0).plain_names();
            let pass = Passthrough { names: &names };
            let mut input = line;
            input.push(b'\n');
            input.extend(tail);
            let expected = pass
                .fields_bytewise(&input, max_line)
                .map(|f| (f.path_end, f.value_end, f.len));
            match crate::line_scan::fields(&input, max_line) {
                Some(told) => prop_assert_eq!(told, expected),
                None => prop_assert!(input.len() < 64 || !input[..64].contains(&b'\n')),
            }
        }

        /// A line the passthrough accepts is one that the parsing way would write unchanged:
        /// spelled canonically, its name kept by cleansing, untagged, its time in range.
        #[test]
        fn an_accepted_line_is_its_own_output(line in near_canonical()) {
            for cleanser in cleansers() {
                let names = cleanser.plain_names();
                let pass = Passthrough { names: &names };
                let mut terminated = line.clone();
                terminated.push(b'\n');
                match pass.line_len(&terminated, usize::MAX) {
                    None => continue,
                    Some(len) => prop_assert_eq!(len, line.len()),
                }
                prop_assert!(graphite_plaintext::is_canonical(&line));
                let (sample, spelled) = graphite_plaintext::parse_line_spelled(&line).unwrap();
                prop_assert!(spelled);
                prop_assert!(!sample.path.contains(';'));
                let mut scratch = String::new();
                let cleansed = cleanser.cleanse(sample.path, &mut scratch).unwrap();
                prop_assert_eq!(cleansed, sample.path);
                let graphite_plaintext::Timestamp::Seconds(t) = sample.timestamp else {
                    panic!("a canonical line has a timestamp");
                };
                prop_assert!(crate::listener::graphite::to_nanos(t).is_some());
                let mut again = Vec::new();
                graphite_plaintext::encode_sample(sample.path, sample.value, t as i64, &mut again)
                    .unwrap();
                again.pop();
                prop_assert_eq!(again, line.clone());
            }
        }
    }

    fn template_sets() -> Vec<Arc<TemplateSet>> {
        use crate::translate::graphite::GraphiteTemplateConfig;
        let set = |templates: &[&str], tags: &[&str], separator: &str| {
            let config = GraphiteTemplateConfig {
                separator: separator.to_owned(),
                templates: templates.iter().map(|t| (*t).to_owned()).collect(),
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            };
            Arc::new(TemplateSet::new(&config).unwrap())
        };
        vec![
            set(&[], &[], ""),
            set(
                &["servers.* .dc.host.measurement.field*"],
                &["region=eu"],
                "",
            ),
            set(
                &[
                    "a.* .measurement.x.field",
                    "*.b.* measurement.measurement.host",
                    "region.measurement*",
                ],
                &[],
                "_",
            ),
        ]
    }

    /// What the parsing way writes for one line into an InfluxDB output: the name's point
    /// by the templates, the value as sent when line protocol spells it so.
    fn parsed_lp(tr: &mut Translator<'_>, line: &[u8]) -> Option<Vec<u8>> {
        let (sample, _) = graphite_plaintext::parse_line_spelled(line).ok()?;
        let graphite_plaintext::Timestamp::Seconds(t) = sample.timestamp else {
            return None;
        };
        let ns = crate::listener::graphite::to_nanos(t)?;
        let spelled =
            value_text(line).filter(|text| crate::translate::graphite::spelled_as_written(text));
        let mut out = Vec::new();
        tr.write_point_spelled(sample.path, &[], sample.value, spelled, ns, &mut out)
            .ok()?;
        Some(out)
    }

    proptest! {
        /// A line the translating way takes becomes the very line protocol the parsing way
        /// writes for it, whether its name's series text was made or found in the cache.
        #[test]
        fn a_translated_line_is_what_the_parsing_way_writes(
            lines in prop::collection::vec(near_canonical(), 1..24)
        ) {
            for cleanser in cleansers() {
                let names = cleanser.plain_names();
                for templates in template_sets() {
                    let lp = LpThrough { pass: Passthrough { names: &names }, templates: &templates };
                    let mut tr = templates.translator();
                    let mut cache = NameCache::with_limit(256);
                    // Twice: the second time names come from the cache.
                    for _ in 0..2 {
                        for line in &lines {
                            let mut terminated = line.clone();
                            terminated.push(b'\n');
                            let mut out = Vec::new();
                            let (used, count) =
                                lp.translate_run(&terminated, usize::MAX, &mut tr, &mut cache, &mut out);
                            if count == 0 {
                                prop_assert_eq!(used, 0);
                                prop_assert!(out.is_empty());
                                continue;
                            }
                            prop_assert_eq!((used, count), (terminated.len(), 1));
                            let expected = parsed_lp(&mut tr, line);
                            prop_assert_eq!(Some(out), expected);
                        }
                        // All at once, in groups: the run stops at the first line not taken.
                        let mut input = Vec::new();
                        let (mut expected, mut taken, mut taken_bytes) = (Vec::new(), 0, 0);
                        let mut stopped = false;
                        for line in &lines {
                            let mut terminated = line.clone();
                            terminated.push(b'\n');
                            input.extend_from_slice(&terminated);
                            if stopped {
                                continue;
                            }
                            let mut single = Vec::new();
                            let (_, count) = lp.translate_run(
                                &terminated, usize::MAX, &mut tr, &mut cache, &mut single,
                            );
                            if count == 1 {
                                expected.extend_from_slice(&single);
                                taken += 1;
                                taken_bytes += terminated.len();
                            } else {
                                stopped = true;
                            }
                        }
                        let mut fresh = NameCache::with_limit(128);
                        let mut out = Vec::new();
                        let got = lp.translate_run(&input, usize::MAX, &mut tr, &mut fresh, &mut out);
                        prop_assert_eq!(got, (taken_bytes, taken));
                        prop_assert_eq!(out, expected);
                    }
                }
            }
        }
    }

    #[test]
    fn runs_translate_until_a_line_the_parsing_way_must_see() {
        let [none, ..] = <[Cleanser; 3]>::try_from(cleansers()).unwrap();
        let names = none.plain_names();
        let templates = template_sets().remove(1);
        let lp = LpThrough {
            pass: Passthrough { names: &names },
            templates: &templates,
        };
        let mut tr = templates.translator();
        let mut out = Vec::new();
        let input = b"servers.ams.web1.cpu.user 1.5 1700000000\nservers.ams.web2.cpu 2 0\n\
                      other.x 0.000001 1700000000\nnext.y 1 1700000000\n";
        let (used, count) = lp.take_run(input, 100, &mut tr, &mut out);
        assert_eq!((used, count), (66, 2));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "cpu,dc=ams,host=web1,region=eu user=1.5 1700000000000000000\n\
             cpu,dc=ams,host=web2,region=eu value=2 0\n"
        );
        // A value line protocol spells otherwise stops the run.
        let mut out = Vec::new();
        assert_eq!(lp.take_run(&input[used..], 100, &mut tr, &mut out), (0, 0));
    }

    #[test]
    fn plain_lines_pass_and_the_others_do_not() {
        let [none, cleanse, encode] = <[Cleanser; 3]>::try_from(cleansers()).unwrap();
        let pass = |c: &Cleanser, line: &str| {
            let names = c.plain_names();
            let pass = Passthrough { names: &names };
            pass.line_len(format!("{line}\n").as_bytes(), usize::MAX) == Some(line.len())
        };
        for c in [&none, &cleanse, &encode] {
            assert!(pass(c, "servers.web1.cpu 12.5 1700000000"));
            assert!(!pass(c, "servers.web1.cpu;dc=a 12.5 1700000000"));
            assert!(!pass(c, "servers.web1.cpu 12.50 1700000000"));
            assert!(!pass(c, "servers.web1.cpu 12.5"));
            assert!(!pass(c, "servers.web1.cpu 1 9223372037"));
            assert!(pass(c, "servers.web1.cpu 1 9223372036"));
        }
        // `none` takes names as they came, empty segments too; the others tidy them.
        assert!(pass(&none, "servers..cpu 12.5 1700000000"));
        assert!(!pass(&cleanse, "servers..cpu 12.5 1700000000"));
        assert!(!pass(&encode, "servers..cpu 12.5 1700000000"));
        assert!(pass(&none, "servers.w%b.cpu 1 1700000000"));
        assert!(!pass(&cleanse, "servers.w%b.cpu 1 1700000000"));
        assert!(!pass(&encode, "servers.w%b.cpu 1 1700000000"));
        let long = format!("servers.{}.cpu 1 1700000000", "x".repeat(64));
        assert!(pass(&cleanse, &long));
        assert!(!pass(&encode, &long));
        let names = cleanse.plain_names();
        let p = Passthrough { names: &names };
        // Not terminated, or by `\r\n`: not taken here.
        assert_eq!(p.line_len(b"a.b 1 1700000000", 100), None);
        assert_eq!(p.line_len(b"a.b 1 1700000000\r\n", 100), None);
        // A run stops at the first line that is not taken, and at one over the limit.
        let input = b"a.b 1 1700000000\nc.d 2.5 1700000000\nbad line\ne.f 3 1700000000\n";
        assert_eq!(p.take_run(input, 100), (36, 2));
        assert_eq!(p.take_run(input, 16), (17, 1));
        assert_eq!(p.take_run(&input[36..], 100), (0, 0));
    }
}
