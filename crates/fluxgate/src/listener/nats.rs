//! `[listeners.nats]`: reads batches from a JetStream stream through a durable pull consumer
//! and hands them to the pipeline like any other batch (a deliverer).
//!
//! Deliverers that name the same `consumer` share its messages: each message goes to one of
//! them. A message is acknowledged to JetStream only once every output that took its points
//! has delivered them (or, with `buffer = "disk"`, has them fsynced in its log): the message
//! travels as a [`Ticket`] with its points through the outputs' queues, and the last piece
//! delivered lets the acknowledgement go. A deliverer killed with -9 acknowledged nothing it
//! had not delivered, so JetStream redelivers the rest (after `ack_wait`) to the others or to
//! its successor. Messages held longer (a slow upstream) get "in progress" signals so they
//! are not redelivered meanwhile. Points given up on by an output (counted there) are not
//! held back. Redelivery repeats points: InfluxDB keeps one value per series and time, and
//! carbon one per timestamp, so a repeat changes nothing.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::Duration,
};

use async_nats::jetstream::{
    self,
    consumer::{pull, AckPolicy},
    message::Acker,
};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::{error, info};

use super::ListenerCtx;
use crate::{
    nats::{Connect, Format},
    output::Target,
    pipeline::Batch,
    queue::Ticket,
    warn_limited,
};

/// `[listeners.nats]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsListenerConfig {
    /// `nats://host:port`; none: no NATS listener.
    pub servers: Vec<String>,
    pub stream: String,
    /// The durable pull consumer; created when missing. Deliverers naming the same one share
    /// the work.
    pub consumer: String,
    /// Only subjects matching this (`fluxgate.lp.>`); empty: the whole stream.
    pub filter_subject: String,
    /// Unacknowledged messages JetStream redelivers after this long.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
    /// Messages delivered and not yet acknowledged, for all deliverers of the consumer.
    pub max_ack_pending: i64,
    /// Messages asked for per pull.
    pub batch: usize,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    pub username: String,
    /// Also from `FLUXGATE_NATS_PASSWORD`.
    pub password: String,
    /// Also from `FLUXGATE_NATS_TOKEN`.
    pub token: String,
    /// Also from `FLUXGATE_NATS_NKEY`.
    pub nkey: String,
    pub credentials_file: Option<String>,
    pub tls: bool,
    pub tls_ca: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
}

impl Default for NatsListenerConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            stream: "fluxgate".into(),
            consumer: "fluxgate".into(),
            filter_subject: String::new(),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            batch: 64,
            connect_timeout: Duration::from_secs(5),
            username: String::new(),
            password: String::new(),
            token: String::new(),
            nkey: String::new(),
            credentials_file: None,
            tls: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl NatsListenerConfig {
    pub fn enabled(&self) -> bool {
        !self.servers.is_empty()
    }

    pub fn connect(&self) -> Connect {
        Connect {
            name: format!("fluxgate deliverer {}", self.consumer),
            servers: self.servers.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            nkey: self.nkey.clone(),
            credentials_file: self.credentials_file.clone(),
            tls: self.tls,
            tls_ca: self.tls_ca.clone(),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            connect_timeout: self.connect_timeout,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        self.connect().validate()?;
        for (what, v) in [("stream", &self.stream), ("consumer", &self.consumer)] {
            if v.is_empty() || v.contains(['.', ' ', '*', '>', '\t']) {
                return Err(format!(
                    "{what} must be a name without '.', '*', '>' or spaces"
                ));
            }
        }
        if self.batch == 0 || self.max_ack_pending < 1 {
            return Err("batch and max_ack_pending must be at least 1".into());
        }
        if self.ack_wait < Duration::from_secs(1) {
            return Err("ack_wait must be at least 1s".into());
        }
        Ok(())
    }
}

/// Messages delivered to this deliverer and not acknowledged yet, and where their
/// acknowledgements go once their points are delivered.
struct Acks {
    pending: Mutex<HashMap<u64, Arc<Acker>>>,
    next: AtomicU64,
    send: mpsc::UnboundedSender<Arc<Acker>>,
    /// Set when the gateway gave up on undelivered points (shutdown deadline): nothing more
    /// is acknowledged, so JetStream redelivers it.
    hold: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Acks {
    /// A ticket whose last drop acknowledges `acker`.
    fn ticket(self: &Arc<Self>, acker: Acker) -> Arc<Ticket> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending).insert(id, Arc::new(acker));
        let me = self.clone();
        Arc::new(Ticket::on_done(move || {
            let acker = lock(&me.pending).remove(&id);
            if let Some(a) = acker {
                if !me.hold.load(Ordering::SeqCst) {
                    let _ = me.send.send(a);
                }
            }
        }))
    }
}

/// How often the server says a pull is alive: a pull lost for twice this is made again.
const PULL_HEARTBEAT: Duration = Duration::from_secs(2);

/// Consumes until cancelled: connects (retrying), binds the durable consumer, pulls.
pub async fn run(cfg: NatsListenerConfig, ctx: Arc<ListenerCtx>, hold: Arc<AtomicBool>) {
    let client = match cfg.connect().connect().await {
        Ok(c) => c,
        Err(e) => {
            error!(listener = ctx.name, "cannot connect to NATS: {e}");
            return;
        }
    };
    let js = jetstream::new(client);
    let (send, mut recv) = mpsc::unbounded_channel::<Arc<Acker>>();
    let acks = Arc::new(Acks {
        pending: Mutex::new(HashMap::new()),
        next: AtomicU64::new(0),
        send,
        hold,
    });
    let outcome = ctx.metrics.nats_messages.clone();
    // Acknowledgements are sent by their own task: they go on after the listener stopped
    // pulling, while the outputs drain.
    {
        let outcome = outcome.clone();
        tokio::spawn(async move {
            while let Some(a) = recv.recv().await {
                match a.ack().await {
                    Ok(()) => outcome.with_label_values(&["acked"]).inc(),
                    Err(_) => outcome.with_label_values(&["ack_failed"]).inc(),
                }
            }
        });
    }
    // "In progress" for held messages, so a slow upstream does not cause redeliveries.
    {
        let weak: Weak<Acks> = Arc::downgrade(&acks);
        let every = (cfg.ack_wait / 3).max(Duration::from_millis(500));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(acks) = weak.upgrade() else { return };
                let held: Vec<Arc<Acker>> = lock(&acks.pending).values().cloned().collect();
                drop(acks);
                for a in held {
                    let _ = a.ack_with(jetstream::AckKind::Progress).await;
                }
            }
        });
    }
    let mut attempt = 0u32;
    while !ctx.cancel.is_cancelled() && !ctx.stop_accepting.is_cancelled() {
        match consume(&cfg, &ctx, &js, &acks, &outcome).await {
            Ok(()) => return,
            Err(e) => {
                warn_limited!(ctx.log_limit, listener = ctx.name, stream = %cfg.stream, consumer = %cfg.consumer, "cannot consume, retrying: {e}");
            }
        }
        let wait =
            crate::output::backoff(Duration::from_millis(200), Duration::from_secs(5), attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.stop_accepting.cancelled() => return,
        }
    }
}

/// One binding of the consumer: `Ok` when stopped, `Err` to bind again.
async fn consume(
    cfg: &NatsListenerConfig,
    ctx: &Arc<ListenerCtx>,
    js: &jetstream::Context,
    acks: &Arc<Acks>,
    outcome: &prometheus::IntCounterVec,
) -> Result<(), String> {
    let stream = js
        .get_stream(&cfg.stream)
        .await
        .map_err(|e| format!("stream {}: {}", cfg.stream, crate::error_chain(&e)))?;
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            &cfg.consumer,
            pull::Config {
                durable_name: Some(cfg.consumer.clone()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: cfg.ack_wait,
                max_ack_pending: cfg.max_ack_pending,
                filter_subject: cfg.filter_subject.clone(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {}: {}", cfg.consumer, crate::error_chain(&e)))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(cfg.batch)
        .heartbeat(PULL_HEARTBEAT)
        .expires(PULL_HEARTBEAT * 5)
        .messages()
        .await
        .map_err(|e| crate::error_chain(&e))?;
    info!(listener = ctx.name, stream = %cfg.stream, consumer = %cfg.consumer, "consuming");
    loop {
        let next = tokio::select! {
            m = messages.next() => m,
            _ = ctx.stop_accepting.cancelled() => return Ok(()),
        };
        let message = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                use jetstream::consumer::pull::MessagesErrorKind as K;
                return Err(match e.kind() {
                    // A pull the server lost (a new consumer leader, a server that went
                    // away): pull again.
                    K::MissingHeartbeat => "missed heartbeats from JetStream".into(),
                    _ => crate::error_chain(&e),
                });
            }
            None => return Err("the message stream ended".into()),
        };
        outcome.with_label_values(&["received"]).inc();
        if message.info().is_ok_and(|i| i.delivered > 1) {
            outcome.with_label_values(&["redelivered"]).inc();
        }
        let (message, acker) = message.split();
        let (format, target) = match crate::nats::read_headers(message.headers.as_ref()) {
            Ok(h) => h,
            Err(e) => {
                // Not ours: counted, acknowledged (no deliverer could ever take it).
                outcome.with_label_values(&["bad"]).inc();
                ctx.reject("bad_message", 1);
                warn_limited!(ctx.log_limit, listener = ctx.name, subject = %message.subject, "message refused: {e}");
                let _ = acker.ack().await;
                continue;
            }
        };
        let ticket = acks.ticket(acker);
        deliver(ctx, format, &target, &message.payload, ticket).await;
    }
}

/// Translates a message's points into a batch and hands it on; `ticket` travels with them.
async fn deliver(
    ctx: &Arc<ListenerCtx>,
    format: Format,
    target: &Target,
    body: &[u8],
    ticket: Arc<Ticket>,
) {
    let pipeline = ctx.pipeline();
    let mut batch = Batch::new(ctx.name);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let mut rejected: HashMap<&'static str, u64> = HashMap::new();
    match format {
        Format::LineProtocol => {
            let text = match std::str::from_utf8(body) {
                Ok(t) => t,
                Err(_) => {
                    ctx.reject("invalid_utf8", 1);
                    return;
                }
            };
            let mut line = Vec::with_capacity(256);
            for parsed in line_protocol::parse_lines(text) {
                match parsed {
                    Ok(p) => {
                        line.clear();
                        match super::http::append_point(
                            &p,
                            line_protocol::Precision::Nanoseconds,
                            now,
                            &mut line,
                        ) {
                            Ok(ns) => batch.add_line_protocol(&pipeline, &p, &line, ns),
                            Err(_) => *rejected.entry("bad_line").or_default() += 1,
                        }
                    }
                    Err(_) => *rejected.entry("bad_line").or_default() += 1,
                }
            }
        }
        Format::Graphite => {
            let mut tr = pipeline.templates.translator();
            let now_s = now as f64 / 1e9;
            for raw in body.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                match graphite_plaintext::parse_line(raw) {
                    Ok(s) => {
                        let Some(ns) = super::graphite::to_nanos(s.timestamp.or_now(now_s)) else {
                            *rejected.entry("timestamp_out_of_range").or_default() += 1;
                            continue;
                        };
                        if let Err(e) = batch.add_graphite(&pipeline, &mut tr, s.path, s.value, ns)
                        {
                            *rejected.entry(e.reason()).or_default() += 1;
                        }
                    }
                    Err(e) => *rejected.entry(e.reason()).or_default() += 1,
                }
            }
        }
    }
    for (reason, n) in rejected {
        ctx.reject(reason, n);
        warn_limited!(
            ctx.log_limit,
            listener = ctx.name,
            reason,
            points = n,
            "rejected points in a message"
        );
    }
    ctx.received.inc_by(batch.len() as u64);
    batch.submit_tracked(ctx, &pipeline, target, ticket).await;
}
