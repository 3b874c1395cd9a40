//! What listeners hand their points to: the outputs, the translation tables and the routes.
//! Swapped as a whole on reload, so a batch always sees one consistent config.
//!
//! A listener fills one [`Batch`] per socket read or HTTP request: one buffer per output, in
//! that output's own wire form (line protocol for InfluxDB outputs, canonical plaintext for
//! Graphite outputs). A point is translated once per form, not once per output, and a batch is
//! handed on once, never a point at a time.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;

use crate::{
    config::Config,
    metrics::Metrics,
    output::{
        graphite::GraphiteOutput,
        influxdb::{Chunk, InfluxOutput, Target},
    },
    queue::Push,
    route::{NameError, NameScratch, Origin, OutputSet, Router},
    translate::{
        graphite::{TemplateSet, TranslateError, Translator},
        influx::InfluxToGraphite,
    },
};

/// One configured output.
#[derive(Debug, Clone)]
pub enum Output {
    Influx(InfluxOutput),
    Graphite {
        output: GraphiteOutput,
        /// How line-protocol points become Graphite paths for this output.
        to_graphite: Arc<InfluxToGraphite>,
    },
}

impl Output {
    pub fn name(&self) -> &str {
        match self {
            Output::Influx(o) => o.name(),
            Output::Graphite { output, .. } => output.name(),
        }
    }

    pub fn close(&self) {
        match self {
            Output::Influx(o) => o.close(),
            Output::Graphite { output, .. } => output.close(),
        }
    }

    pub fn outstanding(&self) -> usize {
        match self {
            Output::Influx(o) => o.outstanding(),
            Output::Graphite { output, .. } => output.outstanding(),
        }
    }

    pub fn abandon(&self) {
        match self {
            Output::Influx(o) => o.abandon(),
            Output::Graphite { output, .. } => output.abandon(),
        }
    }

    /// Counts (and logs, rate-limited) points this output could not carry.
    pub fn drop_points(&self, n: usize, reason: &str, why: &str) {
        match self {
            Output::Influx(o) => o.drop_points(n, reason, why),
            Output::Graphite { output, .. } => output.drop_points(n, reason, why),
        }
    }
}

#[derive(Debug)]
pub struct Pipeline {
    /// In the order of [`Config::output_names`]: the router's indices.
    pub outputs: Vec<Output>,
    pub router: Router,
    pub templates: Arc<TemplateSet>,
    pub config: Arc<Config>,
    pub metrics: Metrics,
}

/// How a submitted batch fared across outputs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    /// Outputs that took their part.
    pub accepted: usize,
    /// Outputs that refused it because they were full (counted as dropped by them).
    pub dropped: usize,
    /// Outputs that were closing.
    pub closed: usize,
    /// Outputs whose wait for room ran out (HTTP writes only).
    pub timed_out: usize,
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
    /// The current point as line protocol and as plaintext, made once each and copied to
    /// every output that takes that form.
    lp: Vec<u8>,
    plain: Vec<u8>,
    names: NameScratch,
    routed: OutputSet,
    points: usize,
}

impl Batch {
    pub fn new(listener: &'static str) -> Self {
        Self {
            listener,
            bufs: Vec::new(),
            lp: Vec::new(),
            plain: Vec::new(),
            names: NameScratch::default(),
            routed: OutputSet::default(),
            points: 0,
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

    /// Points added since the last submit.
    pub fn len(&self) -> usize {
        self.points
    }

    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    fn prepare(&mut self, pipeline: &Pipeline) {
        if self.bufs.len() != pipeline.outputs.len() {
            self.bufs
                .resize_with(pipeline.outputs.len(), Default::default);
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
        self.prepare(pipeline);
        if value.is_nan() {
            return Err(Reject::Translate(TranslateError::NaN));
        }
        // Cleansing and rewrites first: routes, templates and hashing all see the final name.
        let mut names = std::mem::take(&mut self.names);
        let result = self.add_named(pipeline, tr, path, value, timestamp_ns, &mut names);
        self.names = names;
        result
    }

    fn add_named(
        &mut self,
        pipeline: &Pipeline,
        tr: &mut Translator<'_>,
        path: &str,
        value: f64,
        timestamp_ns: i64,
        names: &mut NameScratch,
    ) -> Result<(), Reject> {
        if path.contains(';') {
            // Tag syntax is judged on the name as sent: that is what the sender must fix.
            graphite_plaintext::TaggedPath::parse(path).map_err(Reject::Tags)?;
        }
        let path = pipeline
            .router
            .normalize(path, names)
            .map_err(Reject::Name)?;
        // Tagged series are checked whatever the outputs, so every sender sees one rule.
        let tagged;
        let (name, tags): (&str, Vec<(&str, &str)>) = if path.contains(';') {
            tagged = graphite_plaintext::TaggedPath::parse(path).map_err(Reject::Tags)?;
            (
                tagged.name(),
                tagged.tags().map(|t| (t.key, t.value)).collect(),
            )
        } else {
            (path, Vec::new())
        };
        if !self.route(pipeline, path, Origin::Graphite) {
            // Valid, and sent nowhere on purpose: received, and counted as unrouted.
            self.points += 1;
            return Ok(());
        }
        // Each form is made once, for the first output that needs it, into a reused buffer.
        let Batch {
            bufs,
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
            let made = match &pipeline.outputs[i] {
                Output::Influx(_) => lp_made
                    .get_or_insert_with(|| {
                        lp.clear();
                        tr.write_point(name, &tags, value, timestamp_ns, lp)
                    })
                    .is_ok()
                    .then_some(&*lp),
                Output::Graphite { .. } => plain_made
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
            let refused = match output {
                Output::Influx(_) => lp_err.as_ref().map(|e| (e.reason(), e.to_string())),
                Output::Graphite { .. } => plain_err.as_ref().map(|e| (e.reason(), e.to_string())),
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
            match &pipeline.outputs[i] {
                Output::Influx(_) => {
                    buf.extend_from_slice(line);
                    *n += 1;
                }
                Output::Graphite {
                    output,
                    to_graphite,
                } => {
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

    /// Hands every output its part, waiting for room as each output's overflow policy says
    /// (TCP listeners await this: it is what stops them reading while an output is full).
    /// `wait` bounds the wait (HTTP writes answer 503 rather than hold a client forever).
    pub async fn submit(
        &mut self,
        pipeline: &Pipeline,
        target: &Target,
        wait: Option<Duration>,
    ) -> Submitted {
        let mut s = Submitted::default();
        if self.points == 0 {
            return s;
        }
        self.points = 0;
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        for (i, o) in pipeline.outputs.iter().enumerate() {
            let Some((buf, n)) = self.bufs.get_mut(i) else {
                break;
            };
            if *n == 0 {
                buf.clear();
                continue;
            }
            let points = std::mem::take(n);
            let body = Bytes::from(std::mem::replace(buf, Vec::with_capacity(buf.capacity())));
            let push = async {
                match o {
                    Output::Influx(out) => {
                        out.push(Chunk {
                            target: target.clone(),
                            body,
                            points,
                        })
                        .await
                    }
                    Output::Graphite { output, .. } => output.push(body, points).await,
                }
            };
            let res = match deadline {
                Some(d) => match tokio::time::timeout_at(d, push).await {
                    Ok(r) => r,
                    Err(_) => {
                        s.timed_out += 1;
                        continue;
                    }
                },
                None => push.await,
            };
            match res {
                Push::Accepted | Push::DroppedOldest(_) => s.accepted += 1,
                Push::DroppedNewest(_) => s.dropped += 1,
                Push::Closed => s.closed += 1,
            }
        }
        s
    }
}
