//! The configuration file (`config.toml`).
//!
//! Key names are part of the public contract (DESIGN.md): keys may be added, never renamed.
//! Every struct denies unknown keys so a typo fails loudly at start-up instead of silently
//! running with a default, and every section has defaults so a config only states what differs.

use std::{fmt, path::Path, time::Duration};

use serde::Deserialize;

/// Errors found while loading or validating a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{section}: {message}")]
    Invalid { section: String, message: String },
    /// A value that is wrong, named by its section and key, and by its line in the file when
    /// the key is written there (a default that does not fit names the section's line).
    #[error("{section}: {key}{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    At {
        section: String,
        key: String,
        line: Option<usize>,
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(section: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            section: section.into(),
            message: message.into(),
        }
    }

    /// An error about `key` of `section` (`listeners.http`, `outputs.influxdb "name"`,
    /// `routes[2]`); [`Config::from_toml`] adds the line.
    fn at(section: impl Into<String>, key: &str, message: impl Into<String>) -> Self {
        Self::At {
            section: section.into(),
            key: key.to_owned(),
            line: None,
            message: message.into(),
        }
    }

    /// The error with the line of its key in `text`, when it has a key and the text has it.
    fn located(mut self, text: &str) -> Self {
        if let Self::At {
            section, key, line, ..
        } = &mut self
        {
            if line.is_none() {
                *line = locate(text, section, key);
            }
        }
        self
    }
}

/// The 1-based line of `key` in `section` of a TOML text, or of the section's header when the
/// key is not written there. `section` is a dotted table path, optionally followed by
/// ` "name"` (the element of an array of tables with that `name`) or ending in `[i]` (the
/// i-th element).
fn locate(text: &str, section: &str, key: &str) -> Option<usize> {
    use toml_edit::{Item, TableLike};
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let (path, name) = match section.split_once(' ') {
        Some((p, n)) => (p, Some(n.trim_matches('"'))),
        None => (section, None),
    };
    let (path, index) = match path.strip_suffix(']').and_then(|p| p.rsplit_once('[')) {
        Some((p, i)) => (p, i.parse::<usize>().ok()),
        None => (path, None),
    };
    let mut item: &Item = doc.as_item();
    for part in path.split('.') {
        item = item.get(part)?;
    }
    let table: &dyn TableLike = match item {
        Item::ArrayOfTables(array) => match (index, name) {
            (Some(i), _) => array.get(i)?,
            (None, Some(name)) => array
                .iter()
                .find(|t| t.get("name").and_then(Item::as_str) == Some(name))?,
            (None, None) => return None,
        },
        other => other.as_table_like()?,
    };
    let line = |at: usize| {
        text.as_bytes()[..at.min(text.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    };
    match table.get_key_value(key) {
        Some((k, _)) => k.span().map(|s| line(s.start)),
        None => item_span(item, index, name).map(line),
    }
}

/// Where a table (or the selected element of an array of tables) starts.
fn item_span(item: &toml_edit::Item, index: Option<usize>, name: Option<&str>) -> Option<usize> {
    use toml_edit::Item;
    match item {
        Item::Table(t) => t.span().map(|s| s.start),
        Item::ArrayOfTables(a) => {
            let t = match (index, name) {
                (Some(i), _) => a.get(i)?,
                (None, Some(n)) => a
                    .iter()
                    .find(|t| t.get("name").and_then(Item::as_str) == Some(n))?,
                _ => return None,
            };
            t.span().map(|s| s.start)
        }
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listeners: Listeners,
    pub graphite: GraphiteConfig,
    pub outputs: Outputs,
    /// Routing rules, top to bottom (carbon-c-relay's `match`). None: every output gets
    /// every point.
    pub routes: Vec<crate::route::RouteConfig>,
    /// Rewrite rules applied to Graphite names before routing (carbon-c-relay's `rewrite`).
    pub rewrite: Vec<crate::route::RewriteConfig>,
    pub log: LogConfig,
    pub gateway: GatewaySection,
    /// Sources fetched on a schedule (`[[inputs.http_poll]]`).
    pub inputs: crate::input::InputsConfig,
    /// How long SIGTERM waits for queued points to be delivered before giving up on them
    /// (each one still queued then is counted as dropped with reason `shutdown`).
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// fluxgate's own figures: as Graphite metrics in its pipeline, and `/metrics` on an
    /// address of its own.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// carbon-aggregator's rules (`[aggregation]`).
    pub aggregation: crate::aggregate::AggregationConfig,
    /// carbon-c-relay's `aggregate` statements (`[[aggregate]]`), tried in order before the
    /// routes.
    pub aggregate: Vec<crate::aggregate::AggregateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listeners: Listeners::default(),
            graphite: GraphiteConfig::default(),
            outputs: Outputs::default(),
            routes: Vec::new(),
            rewrite: Vec::new(),
            log: LogConfig::default(),
            gateway: GatewaySection::default(),
            inputs: crate::input::InputsConfig::default(),
            shutdown_timeout: Duration::from_secs(10),
            telemetry: crate::telemetry::TelemetryConfig::default(),
            aggregation: Default::default(),
            aggregate: Vec::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
            rate_limit: Duration::from_secs(10),
        }
    }
}

/// Process-wide settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// Where outputs with `buffer = "disk"` keep their logs (`buffer/<output>`) and
    /// dead-letter logs (`dead-letter/<output>`).
    pub data_dir: std::path::PathBuf,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            data_dir: "/var/lib/fluxgate".into(),
        }
    }
}

/// Where an output queues what it has not delivered yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferKind {
    /// In memory, bounded by `queue_points` / `queue_bytes`: lost with the process.
    Memory,
    /// In a log under `data_dir`, bounded by `max_buffer_bytes`: kept across restarts and
    /// crashes until delivered.
    Disk,
}

/// The disk-buffer keys every output kind has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BufferSettings {
    pub kind: BufferKind,
    pub max_bytes: u64,
    pub replay_rate: u64,
    pub sync_interval: Duration,
    pub overflow: Overflow,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `fluxgate=debug,warn`, ... `RUST_LOG` and the
    /// `--log-level` flag override it.
    pub level: String,
    pub format: LogFormat,
    /// Repeated warnings (rejected lines, failed sends) of one kind are logged at most once per
    /// this interval, with a count of what was suppressed: a flood of bad input must not turn
    /// into a flood of log lines.
    #[serde(with = "humantime_serde")]
    pub rate_limit: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    pub plaintext: PlaintextListener,
    pub pickle: PickleListener,
    pub http: HttpListener,
    pub statsd: StatsdListener,
    /// `[listeners.nats]`: a deliverer's durable JetStream consumer.
    pub nats: crate::listener::nats::NatsListenerConfig,
    pub line_udp: crate::listener::line_udp::LineUdpListener,
}

/// `[listeners.statsd]`: StatsD over UDP, aggregated per flush interval into Graphite samples
/// named as Etsy statsd's graphite backend names them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsdListener {
    /// UDP address; absent = no StatsD over UDP.
    pub udp: Option<String>,
    /// TCP address (newline-delimited lines); absent = no StatsD over TCP. Both transports
    /// feed one aggregation state.
    pub tcp: Option<String>,
    /// SO_RCVBUF asked for on the UDP socket (the kernel caps it at net.core.rmem_max);
    /// 0 keeps the system default. `recv_buffer_bytes` is the same key.
    #[serde(alias = "recv_buffer_bytes")]
    pub udp_receive_buffer: usize,
    /// Longest TCP line; a longer one is skipped up to its newline and counted.
    pub max_line_bytes: usize,
    /// Concurrent TCP connections; further ones are closed at once and counted.
    pub max_connections: usize,
    /// What all TCP connections together may hold in partial lines.
    pub max_buffered_bytes: usize,
    /// A TCP connection that sends nothing for this long is closed; 0 turns it off.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest datagram read; the rest of a longer one is lost.
    pub max_datagram_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    pub percent_threshold: Vec<f64>,
    pub legacy_namespace: bool,
    pub global_prefix: String,
    pub prefix_counter: String,
    pub prefix_timer: String,
    pub prefix_gauge: String,
    pub prefix_set: String,
    pub global_suffix: String,
    /// Sets the default of the four `delete_*` below.
    pub delete_idle_stats: bool,
    pub delete_counters: Option<bool>,
    pub delete_timers: Option<bool>,
    pub delete_gauges: Option<bool>,
    pub delete_sets: Option<bool>,
    /// Distinct series held; a new one past it is refused (`max_series`).
    pub max_series: usize,
    /// Values kept per timer per interval; further ones are counted, not kept.
    pub max_samples: usize,
}

impl Default for StatsdListener {
    fn default() -> Self {
        Self {
            udp: None,
            tcp: None,
            udp_receive_buffer: 8 << 20,
            max_line_bytes: 16384,
            max_connections: 10000,
            max_buffered_bytes: 64 << 20,
            idle_timeout: DEFAULT_TCP_IDLE,
            max_datagram_bytes: 65536,
            flush_interval: Duration::from_secs(10),
            percent_threshold: vec![90.0],
            legacy_namespace: true,
            global_prefix: "stats".into(),
            prefix_counter: "counters".into(),
            prefix_timer: "timers".into(),
            prefix_gauge: "gauges".into(),
            prefix_set: "sets".into(),
            global_suffix: String::new(),
            delete_idle_stats: false,
            delete_counters: None,
            delete_timers: None,
            delete_gauges: None,
            delete_sets: None,
            max_series: 100_000,
            max_samples: 10_000,
        }
    }
}

impl StatsdListener {
    /// The aggregation settings this section says.
    pub fn settings(&self) -> crate::statsd::Settings {
        let idle = self.delete_idle_stats;
        crate::statsd::Settings {
            flush_interval_ms: self.flush_interval.as_millis() as u64,
            percent_threshold: self.percent_threshold.clone(),
            legacy_namespace: self.legacy_namespace,
            global_prefix: self.global_prefix.clone(),
            prefix_counter: self.prefix_counter.clone(),
            prefix_timer: self.prefix_timer.clone(),
            prefix_gauge: self.prefix_gauge.clone(),
            prefix_set: self.prefix_set.clone(),
            global_suffix: self.global_suffix.clone(),
            delete_counters: self.delete_counters.unwrap_or(idle),
            delete_timers: self.delete_timers.unwrap_or(idle),
            delete_gauges: self.delete_gauges.unwrap_or(idle),
            delete_sets: self.delete_sets.unwrap_or(idle),
            max_series: self.max_series,
            max_samples: self.max_samples,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::invalid("listeners.statsd", m.to_string()));
        if self.flush_interval.as_millis() == 0 {
            return bad("flush_interval must be at least 1ms");
        }
        if self
            .percent_threshold
            .iter()
            .any(|p| !p.is_finite() || *p == 0.0 || p.abs() > 100.0)
        {
            return bad("every percent_threshold must be in [-100, 100] and not 0");
        }
        if self.max_series == 0 || self.max_datagram_bytes == 0 {
            return bad("max_series and max_datagram_bytes must be above 0");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaintextListener {
    /// TCP address; absent = no TCP plaintext listener.
    pub tcp: Option<String>,
    /// UDP address; absent = no UDP listener.
    pub udp: Option<String>,
    /// Longest accepted line; a longer one is discarded up to its newline, counted, and the
    /// connection stays open (carbon-c-relay's behaviour, kinder than carbon's disconnect).
    pub max_line_bytes: usize,
    /// Concurrent TCP connections; further ones are accepted and closed at once, and counted.
    pub max_connections: usize,
    /// Largest UDP datagram read; the rest of a longer one is lost by the kernel.
    pub max_datagram_bytes: usize,
    /// SO_RCVBUF asked for on the UDP socket, room for bursts; the kernel caps it at
    /// net.core.rmem_max (a warning says so). 0 keeps the system default.
    pub recv_buffer_bytes: usize,
    /// What all TCP connections together may hold in read buffers; past it a connection
    /// stops reading (its sender is pushed back) until there is room.
    pub max_buffered_bytes: usize,
    /// A TCP connection that sends nothing for this long is closed (carbon-c-relay closes
    /// idle connections too); 0 turns it off.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// TLS on the TCP listener (UDP stays plain): certificate chain and key, PEM files.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// PEM file of the CAs a client certificate must chain to: set, clients without a
    /// valid certificate are refused (mutual TLS).
    pub tls_client_ca: Option<String>,
}

impl Default for PlaintextListener {
    fn default() -> Self {
        Self {
            tcp: None,
            udp: None,
            max_line_bytes: 16384,
            max_connections: 10000,
            max_datagram_bytes: 65536,
            recv_buffer_bytes: crate::listener::udp::DEFAULT_RECV_BUFFER,
            max_buffered_bytes: 64 << 20,
            idle_timeout: DEFAULT_TCP_IDLE,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PickleListener {
    pub tcp: Option<String>,
    /// Largest frame; a longer declared length closes the connection before anything of that
    /// size is allocated (carbon's PICKLE_RECEIVER_MAX_LENGTH).
    pub max_frame_bytes: usize,
    /// Longest path of one item; a longer one is refused (`line_too_long`), as a plaintext
    /// line that long would be.
    pub max_line_bytes: usize,
    /// What all connections together may hold in partial frames; past it a connection stops
    /// reading until there is room.
    pub max_buffered_bytes: usize,
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed; 0 turns it off.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub tls_client_ca: Option<String>,
}

/// Graphite TCP listeners close connections idle this long by default.
const DEFAULT_TCP_IDLE: Duration = Duration::from_secs(300);

impl Default for PickleListener {
    fn default() -> Self {
        Self {
            tcp: None,
            max_frame_bytes: 1 << 20,
            max_line_bytes: 16384,
            max_buffered_bytes: 64 << 20,
            max_connections: 10000,
            idle_timeout: DEFAULT_TCP_IDLE,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpListener {
    /// `/write`, `/api/v2/write`, `/ping`, `/query`, `/health`, `/metrics`; `""` = disabled
    /// (absent: the default address).
    #[serde(deserialize_with = "empty_is_none")]
    pub address: Option<String>,
    /// Largest request body after gzip decompression (InfluxDB's default is 25 MB).
    pub max_body_bytes: usize,
    /// Longest line of line protocol; a longer one is refused like a line that does not parse.
    pub max_line_bytes: usize,
    /// What all requests together may hold in bodies being read and decoded; past it a
    /// request waits a little for room, then gets 503.
    pub max_buffered_bytes: usize,
    /// How long a write waits for queue space (and, with `ack = "delivered"`, for the
    /// upstream's answer) before answering 503 with Retry-After.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// When a write is answered: `delivered` (the upstream's own answer, sent at once),
    /// `durable` (on disk and fsynced) or `queued` (in memory).
    pub ack: AckMode,
    /// With a buffered `ack`, how long a `/query` naming a database waits for the writes
    /// acknowledged before it to be delivered (read-your-writes); 0 turns it off.
    #[serde(with = "humantime_serde")]
    pub query_wait: Duration,
    pub max_connections: usize,
    /// `"name:password"` pairs accepted on writes, queries and (see `metrics_auth`)
    /// `/metrics`: v1 `u`/`p`, Basic auth or `Authorization: Token name:password`.
    /// `FLUXGATE_HTTP_USERS` (comma-separated) replaces the list.
    pub users: Vec<Secret>,
    /// v2-style tokens (`Authorization: Token <t>`). `FLUXGATE_HTTP_TOKENS` replaces the list.
    pub tokens: Vec<Secret>,
    /// Whether `/metrics` needs credentials; unset: it does whenever `users` or `tokens` is set.
    pub metrics_auth: Option<bool>,
    /// What `/query` lets through to the upstream.
    pub query: QueryPolicy,
    /// How long a client may take to send a request's headers (slowloris defence).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed; 0 turns it off.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// HTTPS: certificate chain and private key (PEM files).
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// Clients must present a certificate signed by one of these CAs (mutual TLS).
    pub tls_client_ca: Option<String>,
}

impl HttpListener {
    /// Whether credentials are required at all.
    pub fn auth_enabled(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }

    /// Whether `/metrics` requires credentials.
    pub fn metrics_needs_auth(&self) -> bool {
        self.metrics_auth.unwrap_or(true) && self.auth_enabled()
    }
}

/// An address key where `""` turns the listener off.
fn empty_is_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()))
}

impl Default for HttpListener {
    fn default() -> Self {
        Self {
            address: Some("127.0.0.1:8086".into()),
            max_body_bytes: 26_214_400,
            max_line_bytes: 1 << 20,
            max_buffered_bytes: 64 << 20,
            write_timeout: Duration::from_secs(10),
            ack: AckMode::Delivered,
            query_wait: Duration::from_secs(5),
            max_connections: 1024,
            users: Vec::new(),
            tokens: Vec::new(),
            metrics_auth: None,
            query: QueryPolicy::ReadOnly,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

/// When an HTTP write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckMode {
    /// Sent at once to the first InfluxDB output it is routed to; the client gets that
    /// upstream's answer (204, partial write, database not found, ...). What InfluxDB's own
    /// clients expect, so it is the default.
    Delivered,
    /// 204 once the points are in the outputs' disk buffers and fsynced.
    Durable,
    /// 204 once the points are in the outputs' memory queues.
    Queued,
}

/// What the `/query` proxy passes to the upstream InfluxDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryPolicy {
    /// Every statement.
    Passthrough,
    /// Only `SELECT` (without `INTO`) and `SHOW` statements; the rest answers 403.
    ReadOnly,
    /// No `/query` at all (404).
    Off,
}

impl fmt::Display for QueryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Passthrough => "passthrough",
            Self::ReadOnly => "read_only",
            Self::Off => "off",
        })
    }
}

/// A secret from the config: compared and used, never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `url` with any password in its userinfo replaced by `***`, for printing.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string().trim_end_matches('/').to_owned()
                + if url.ends_with('/') { "/" } else { "" }
        }
        Ok(_) => url.to_owned(),
        // Unparsable: print only up to the userinfo, if there is one.
        Err(_) => match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
            _ => url.to_owned(),
        },
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphiteConfig {
    /// Joins captured name pieces (InfluxDB's `separator`).
    pub separator: String,
    /// InfluxDB 1.x graphite-service templates: `[filter] template [tags]`.
    pub templates: Vec<String>,
    /// Global `k=v` tags added where a template did not set the key.
    pub tags: Vec<String>,
    /// How names were encoded by senders (`idna` or `punycode`); used by `decode_names`.
    pub name_encoding: metric_name::Encoding,
    /// Decode each name segment (`%2E`, `xn--…`) back to Unicode before it becomes a
    /// measurement, tag or field name.
    pub decode_names: bool,
    /// Cleansing of Graphite names on arrival: `none` (as carbon-relay), `cleanse`
    /// (carbon-c-relay's: other characters become `_`), `encode` (the metric-name encoder
    /// per segment; already-encoded segments stay as they are).
    pub validation: crate::route::Validation,
    /// Characters besides `[A-Za-z0-9]` that `cleanse` keeps (carbon-c-relay's `-c`).
    pub allowed_chars: String,
}

impl Default for GraphiteConfig {
    fn default() -> Self {
        Self {
            separator: ".".into(),
            templates: Vec::new(),
            tags: Vec::new(),
            name_encoding: metric_name::Encoding::Idna,
            decode_names: false,
            validation: crate::route::Validation::None,
            allowed_chars: crate::route::DEFAULT_ALLOWED_CHARS.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Outputs {
    pub influxdb: Vec<InfluxOutputConfig>,
    pub graphite: Vec<GraphiteOutputConfig>,
    /// `[[outputs.nats]]`: JetStream, the stream between edges and deliverers.
    pub nats: Vec<crate::output::nats::NatsOutputConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphiteProtocol {
    /// `path value timestamp\n` (carbon's line receiver, port 2003).
    Plaintext,
    /// Length-prefixed pickle protocol 2, at most 500 points and 1 MiB per frame (port 2004).
    Pickle,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphiteOutputConfig {
    pub name: String,
    pub protocol: GraphiteProtocol,
    /// How metrics are spread over `destinations` (carbon / carbon-c-relay compatible).
    pub cluster: crate::cluster::ClusterKind,
    /// Copies of each metric on distinct destinations (hashing clusters).
    pub replication: usize,
    /// carbon's DIVERSE_REPLICAS: replicas go to distinct hosts, not just instances.
    pub diverse_replicas: bool,
    /// `host:port[:instance]`; the instance takes part in carbon_ch hashing.
    pub destinations: Vec<String>,
    /// Points per write (a pickle frame holds at most 500 of them).
    pub batch_size: usize,
    /// Points accepted for ONE destination and not yet written to it.
    pub queue_points: usize,
    /// The same bound in bytes of plaintext, per destination.
    pub queue_bytes: usize,
    pub overflow: Overflow,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// First reconnect delay; doubles per attempt up to `retry_max`, with ±50% jitter.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// `memory` or `disk` (a log under `[gateway] data_dir` that survives restarts).
    pub buffer: BufferKind,
    /// Largest size of the disk buffer; then the overflow policy applies.
    pub max_buffer_bytes: u64,
    /// Points per second replayed from the disk buffer after a restart (0: no limit).
    pub replay_rate: u64,
    /// How long the pipeline waits for room in a destination whose queue is full before
    /// what is routed to it is shed and counted (`destination_down` while it is not
    /// connected, `destination_stalled` while it is but does not drain), as carbon-c-relay
    /// drops for a full destination queue. The other destinations keep flowing.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// After a connection breaks, this many of the last points written on it are written
    /// again (carbon has no acknowledgements; it keeps one value per timestamp, so a repeat
    /// is harmless). 0 turns it off.
    pub replay_points: usize,
    /// InfluxDB points (HTTP writes) become Graphite paths by this template (Telegraf's
    /// graphite serializer vocabulary: `host`, `tags`, `measurement`, `field`, tag keys).
    pub template: String,
    /// `"filter template"` entries by measurement, first match wins.
    pub templates: Vec<String>,
    /// Constant leading segments of every path made from an InfluxDB point.
    pub prefix: String,
    /// Write InfluxDB tags as Graphite tags (`measurement.field;k=v`) instead of path segments.
    pub tag_support: bool,
    /// Joins prefix, measurement and field when `tag_support` is on.
    pub separator: String,
    /// Booleans as 1/0 (`"number"`) or left out (`"skip"`); strings are always left out.
    pub bool_mode: crate::translate::influx::BoolMode,
    /// The GraphiteEncoder variant that makes every segment safe: `"idna"` or `"punycode"`.
    pub name_encoding: metric_name::Encoding,
    /// Encode `/` inside a segment as `%2F` (carbon would read it as a directory).
    pub encode_slash: bool,
    /// `encode` (default: the metric-name encoder, lossless) or `telegraf` (characters
    /// replaced as Telegraf's graphite serializer does, so series keep their whisper files).
    pub sanitize: crate::translate::influx::Sanitize,
    /// With `sanitize = "telegraf"` and `tag_support`: `strict` or `compatible` (Telegraf's
    /// `graphite_tag_sanitize_mode`).
    pub tag_sanitize_mode: crate::translate::influx::TagSanitizeMode,
    /// With `sanitize = "telegraf"`: the characters that become `_` (Telegraf's
    /// `graphite_strict_sanitize_regex`; empty: its default).
    pub strict_sanitize_regex: String,
    /// Connect to the destinations over TLS.
    pub tls: bool,
    /// PEM file of the CAs to trust instead of the system's (with `tls`).
    pub tls_ca: Option<String>,
    /// The name the destinations' certificates are checked against; unset: each
    /// destination's host.
    pub tls_server_name: Option<String>,
}

impl GraphiteOutputConfig {
    pub fn buffer_settings(&self) -> BufferSettings {
        BufferSettings {
            kind: self.buffer,
            max_bytes: self.max_buffer_bytes,
            replay_rate: self.replay_rate,
            sync_interval: Duration::from_secs(1),
            overflow: self.overflow,
        }
    }

    pub fn to_graphite_config(&self) -> crate::translate::influx::InfluxToGraphiteConfig {
        crate::translate::influx::InfluxToGraphiteConfig {
            template: self.template.clone(),
            templates: self.templates.clone(),
            prefix: self.prefix.clone(),
            tag_support: self.tag_support,
            separator: self.separator.clone(),
            bool_mode: self.bool_mode,
            name_encoding: self.name_encoding,
            encode_slash: self.encode_slash,
            sanitize: self.sanitize,
            tag_sanitize_mode: self.tag_sanitize_mode,
            strict_sanitize_regex: self.strict_sanitize_regex.clone(),
        }
    }
}

impl Default for GraphiteOutputConfig {
    fn default() -> Self {
        let i2g = crate::translate::influx::InfluxToGraphiteConfig::default();
        Self {
            name: String::new(),
            protocol: GraphiteProtocol::Pickle,
            cluster: crate::cluster::ClusterKind::CarbonCh,
            replication: 1,
            diverse_replicas: true,
            destinations: Vec::new(),
            batch_size: 500,
            queue_points: 1_000_000,
            queue_bytes: 64 << 20,
            overflow: Overflow::Block,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(10),
            buffer: BufferKind::Memory,
            max_buffer_bytes: 1 << 30,
            replay_rate: 500_000,
            replay_points: 100_000,
            template: i2g.template,
            templates: i2g.templates,
            prefix: i2g.prefix,
            tag_support: i2g.tag_support,
            separator: i2g.separator,
            bool_mode: i2g.bool_mode,
            name_encoding: i2g.name_encoding,
            encode_slash: i2g.encode_slash,
            sanitize: i2g.sanitize,
            tag_sanitize_mode: i2g.tag_sanitize_mode,
            strict_sanitize_regex: i2g.strict_sanitize_regex,
            tls: false,
            tls_ca: None,
            tls_server_name: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InfluxApi {
    V1,
    V2,
}

/// What an output does when its queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Push back: TCP listeners stop reading, HTTP writes wait and then answer 503.
    Block,
    /// Drop what arrives (counted).
    DropNewest,
    /// Drop the oldest queued points to make room (counted).
    DropOldest,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxOutputConfig {
    pub name: String,
    pub url: String,
    pub api: InfluxApi,
    /// Database (v1) for Graphite-origin points; HTTP writes keep their own db/rp.
    pub database: String,
    pub retention_policy: String,
    pub username: String,
    pub password: String,
    /// v2 organisation (name) for every write.
    pub org: String,
    /// v2 bucket for Graphite-origin points; empty = `database[/retention_policy]`.
    pub bucket: String,
    pub token: String,
    /// Points per request.
    pub batch_size: usize,
    /// A partial batch is sent after this long.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// A lane with no request in flight sends its partial batch once the batch's first point
    /// has waited this long (or `flush_interval`, if shorter): at low rates a point waits for
    /// this, not for the timer. Set it to `flush_interval` to batch strictly by time.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    pub gzip: bool,
    /// Concurrent requests. Points are spread over this many lanes by series, so the order of
    /// writes to one series is kept while distinct series go in parallel.
    pub max_in_flight: usize,
    /// Points accepted but not yet delivered (queued, batching, in flight or being retried).
    pub queue_points: usize,
    /// The same bound in bytes of line protocol, so long names and wide points cannot make
    /// `queue_points` mean gigabytes. One destination may hold half of it.
    pub queue_bytes: usize,
    pub overflow: Overflow,
    /// One request's deadline.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// First retry delay; doubles per attempt up to `retry_max`, with ±50% jitter.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// How long one batch is retried before its points are dropped and counted
    /// (`retry_budget`), so a destination that never recovers cannot hold its share of the
    /// queue forever.
    #[serde(with = "humantime_serde")]
    pub max_retry_time: Duration,
    /// Points one destination (db/rp or bucket) may hold of `queue_points`; 0 means half.
    /// A destination that keeps failing fills only its share, so the others keep flowing.
    pub partition_queue_points: usize,
    /// `memory` or `disk` (a log under `[gateway] data_dir` that survives restarts).
    pub buffer: BufferKind,
    /// Largest size of the disk buffer; then the overflow policy applies.
    pub max_buffer_bytes: u64,
    /// Points per second replayed from the disk buffer after a restart (0: no limit).
    pub replay_rate: u64,
    /// Create `database` at start and when a write to it is answered "database not found"
    /// (v1), as Telegraf does; off when the credentials may not create databases.
    pub create_database: bool,
    /// With `overflow = "block"`: how long senders wait for room in a full destination
    /// before what goes to it is shed and counted (`destination_stalled`). 0 (the default)
    /// waits as long as it takes: the sender is pushed back, and `max_retry_time` bounds how
    /// long a destination can stay full.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// PEM file of the CAs to trust for an `https://` url instead of the system's.
    pub tls_ca: Option<String>,
}

impl InfluxOutputConfig {
    pub fn buffer_settings(&self) -> BufferSettings {
        BufferSettings {
            kind: self.buffer,
            max_bytes: self.max_buffer_bytes,
            replay_rate: self.replay_rate,
            sync_interval: self.flush_interval,
            overflow: self.overflow,
        }
    }

    /// The share of `queue_points` one destination may hold.
    pub fn partition_points(&self) -> usize {
        match self.partition_queue_points {
            0 => (self.queue_points / 2)
                .max(self.batch_size)
                .min(self.queue_points),
            n => n,
        }
    }
}

impl Default for InfluxOutputConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: "http://127.0.0.1:8087".into(),
            api: InfluxApi::V1,
            database: "graphite".into(),
            retention_policy: String::new(),
            username: String::new(),
            password: String::new(),
            org: String::new(),
            bucket: String::new(),
            token: String::new(),
            batch_size: 5000,
            flush_interval: Duration::from_secs(1),
            linger: Duration::from_millis(20),
            gzip: true,
            max_in_flight: 4,
            queue_points: 1_000_000,
            queue_bytes: 128 << 20,
            overflow: Overflow::Block,
            timeout: Duration::from_secs(10),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            max_retry_time: Duration::from_secs(3600),
            partition_queue_points: 0,
            buffer: BufferKind::Memory,
            max_buffer_bytes: 1 << 30,
            replay_rate: 500_000,
            create_database: true,
            stall_timeout: Duration::ZERO,
            tls_ca: None,
        }
    }
}

impl Config {
    /// Reads, parses, applies secrets from the environment and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let text =
            interpolate(text, |k| std::env::var(k).ok()).map_err(|message| ConfigError::Parse {
                path: origin.to_string(),
                message,
            })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        config.apply_env(|k| std::env::var(k).ok());
        config.validate().map_err(|e| e.located(&text))?;
        Ok(config)
    }

    /// Secrets may stay out of the file: `FLUXGATE_<OUTPUT NAME>_PASSWORD` and `_TOKEN`
    /// (name upper-cased, other characters as `_`) override the file's values, and
    /// `FLUXGATE_HTTP_USERS` / `FLUXGATE_HTTP_TOKENS` (comma-separated) replace the HTTP
    /// listener's `users` / `tokens`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        let list = |v: String| -> Vec<Secret> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Secret::new)
                .collect()
        };
        if let Some(v) = get("FLUXGATE_HTTP_USERS") {
            self.listeners.http.users = list(v);
        }
        if let Some(v) = get("FLUXGATE_HTTP_TOKENS") {
            self.listeners.http.tokens = list(v);
        }
        for out in &mut self.outputs.nats {
            let prefix = env_prefix(&out.name);
            for (key, field) in [
                ("PASSWORD", &mut out.password),
                ("TOKEN", &mut out.token),
                ("NKEY", &mut out.nkey),
            ] {
                if let Some(v) = get(&format!("{prefix}_{key}")) {
                    *field = v;
                }
            }
        }
        let n = &mut self.listeners.nats;
        for (key, field) in [
            ("FLUXGATE_NATS_PASSWORD", &mut n.password),
            ("FLUXGATE_NATS_TOKEN", &mut n.token),
            ("FLUXGATE_NATS_NKEY", &mut n.nkey),
        ] {
            if let Some(v) = get(key) {
                *field = v;
            }
        }
        for out in &mut self.outputs.influxdb {
            let prefix = env_prefix(&out.name);
            if let Some(v) = get(&format!("{prefix}_PASSWORD")) {
                out.password = v;
            }
            if let Some(v) = get(&format!("{prefix}_TOKEN")) {
                out.token = v;
            }
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.inputs.validate()?;
        if self.shutdown_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "shutdown_timeout",
                "must be greater than zero",
            ));
        }
        let p = &self.listeners.plaintext;
        if p.max_line_bytes < 16 {
            return Err(ConfigError::invalid(
                "listeners.plaintext",
                "max_line_bytes must be at least 16",
            ));
        }
        if p.max_connections == 0 || self.listeners.pickle.max_connections == 0 {
            return Err(ConfigError::invalid(
                "listeners",
                "max_connections must be at least 1",
            ));
        }
        if self.listeners.pickle.max_frame_bytes < 16 {
            return Err(ConfigError::invalid(
                "listeners.pickle",
                "max_frame_bytes must be at least 16",
            ));
        }
        let memory_outputs: Vec<&str> = self
            .outputs
            .influxdb
            .iter()
            .filter(|o| o.buffer == BufferKind::Memory)
            .map(|o| o.name.as_str())
            .chain(
                self.outputs
                    .graphite
                    .iter()
                    .filter(|o| o.buffer == BufferKind::Memory)
                    .map(|o| o.name.as_str()),
            )
            .chain(
                self.outputs
                    .nats
                    .iter()
                    .filter(|o| o.buffer == BufferKind::Memory)
                    .map(|o| o.name.as_str()),
            )
            .collect();
        if self.listeners.http.ack == AckMode::Durable && !memory_outputs.is_empty() {
            return Err(ConfigError::invalid(
                "listeners.http",
                format!(
                    "ack = \"durable\" needs buffer = \"disk\" on every output; not on {}",
                    memory_outputs.join(", ")
                ),
            ));
        }
        let h = &self.listeners.http;
        if h.max_body_bytes == 0 {
            return Err(ConfigError::invalid(
                "listeners.http",
                "max_body_bytes must be greater than zero",
            ));
        }
        if h.header_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "listeners.http",
                "header_timeout must be greater than zero",
            ));
        }
        if !h.idle_timeout.is_zero() && h.idle_timeout < h.write_timeout {
            // A write waiting for room moves no byte; it must not be cut as idle.
            return Err(ConfigError::at(
                "listeners.http",
                "idle_timeout",
                "idle_timeout must be at least write_timeout (or 0s: never)",
            ));
        }
        for (i, u) in h.users.iter().enumerate() {
            match u.expose().split_once(':') {
                Some((name, _)) if !name.is_empty() => {}
                // The entry is a secret: say which one, not what it holds.
                _ => {
                    return Err(ConfigError::at(
                        "listeners.http",
                        "users",
                        format!("users[{i}] must be \"name:password\""),
                    ))
                }
            }
        }
        if h.metrics_auth == Some(true) && !h.auth_enabled() {
            return Err(ConfigError::at(
                "listeners.http",
                "metrics_auth",
                "metrics_auth = true needs users or tokens to check credentials against",
            ));
        }
        if h.tokens.iter().any(|t| t.expose().is_empty()) {
            return Err(ConfigError::invalid(
                "listeners.http",
                "tokens must not be empty",
            ));
        }
        for (section, cert, key, ca) in [
            ("listeners.http", &h.tls_cert, &h.tls_key, &h.tls_client_ca),
            (
                "listeners.plaintext",
                &p.tls_cert,
                &p.tls_key,
                &p.tls_client_ca,
            ),
            (
                "listeners.pickle",
                &self.listeners.pickle.tls_cert,
                &self.listeners.pickle.tls_key,
                &self.listeners.pickle.tls_client_ca,
            ),
        ] {
            crate::tls::server_config(cert.as_deref(), key.as_deref(), ca.as_deref(), &[])
                .map_err(|e| ConfigError::at(section, "tls_cert", e))?;
        }
        self.listeners.statsd.validate()?;
        self.listeners.line_udp.validate()?;
        self.telemetry.validate()?;
        for (section, key, addr) in [
            ("listeners.plaintext", "tcp", &p.tcp),
            ("listeners.plaintext", "udp", &p.udp),
            ("listeners.statsd", "udp", &self.listeners.statsd.udp),
            ("listeners.statsd", "tcp", &self.listeners.statsd.tcp),
            ("listeners.line_udp", "udp", &self.listeners.line_udp.udp),
            ("telemetry", "address", &self.telemetry.address),
            ("listeners.pickle", "tcp", &self.listeners.pickle.tcp),
            ("listeners.http", "address", &self.listeners.http.address),
        ] {
            let Some(addr) = addr else { continue };
            addr.parse::<std::net::SocketAddr>()
                .map_err(|e| ConfigError::at(section, key, format!("bad address {addr:?}: {e}")))?;
        }
        // Two TCP listeners on one address: the second could never bind.
        let tcp = [
            ("listeners.plaintext.tcp", &p.tcp),
            ("listeners.pickle.tcp", &self.listeners.pickle.tcp),
            ("listeners.http.address", &self.listeners.http.address),
            ("listeners.statsd.tcp", &self.listeners.statsd.tcp),
            ("telemetry.address", &self.telemetry.address),
        ];
        for (i, (a, addr_a)) in tcp.iter().enumerate() {
            for (b, addr_b) in &tcp[i + 1..] {
                if let (Some(x), Some(y)) = (addr_a, addr_b) {
                    if x.parse::<std::net::SocketAddr>().ok() == y.parse().ok() {
                        return Err(ConfigError::invalid(
                            "listeners",
                            format!("{a} and {b} are both {x:?}: one TCP address, one listener"),
                        ));
                    }
                }
            }
        }
        let udp = [
            ("listeners.plaintext.udp", &p.udp),
            ("listeners.statsd.udp", &self.listeners.statsd.udp),
            ("listeners.line_udp.udp", &self.listeners.line_udp.udp),
        ];
        for (i, (a, addr_a)) in udp.iter().enumerate() {
            for (b, addr_b) in &udp[i + 1..] {
                if let (Some(x), Some(y)) = (addr_a, addr_b) {
                    if x.parse::<std::net::SocketAddr>().ok() == y.parse().ok() {
                        return Err(ConfigError::invalid(
                            "listeners",
                            format!("{a} and {b} are both {x:?}: one UDP address, one listener"),
                        ));
                    }
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for out in &self.outputs.influxdb {
            let section = format!("outputs.influxdb {:?}", out.name);
            if out.name.is_empty() {
                return Err(ConfigError::invalid(
                    "outputs.influxdb",
                    "every output needs a name",
                ));
            }
            if !names.insert(out.name.clone()) {
                return Err(ConfigError::invalid(section, "duplicate output name"));
            }
            // The url is quoted with any password in it replaced by `***`.
            let bad_url = |why: String| {
                ConfigError::at(
                    &section,
                    "url",
                    format!("bad url {:?}: {why}", redact_url(&out.url)),
                )
            };
            let url = reqwest::Url::parse(&out.url).map_err(|e| bad_url(e.to_string()))?;
            if url.scheme() != "http" && url.scheme() != "https" {
                return Err(bad_url("must be http:// or https://".into()));
            }
            if let Some(ca) = &out.tls_ca {
                crate::tls::load_certs(ca).map_err(|e| ConfigError::at(&section, "tls_ca", e))?;
            }
            for (key, zero) in [
                ("batch_size", out.batch_size == 0),
                ("max_in_flight", out.max_in_flight == 0),
                ("queue_points", out.queue_points == 0),
            ] {
                if zero {
                    return Err(ConfigError::at(
                        &section,
                        key,
                        "batch_size, max_in_flight and queue_points must be at least 1",
                    ));
                }
            }
            if out.queue_bytes < 1 << 16 {
                return Err(ConfigError::at(
                    &section,
                    "queue_bytes",
                    "queue_bytes must be at least 65536",
                ));
            }
            if out.queue_points < out.batch_size {
                return Err(ConfigError::at(
                    &section,
                    "queue_points",
                    "queue_points must be at least batch_size",
                ));
            }
            if out.partition_queue_points > out.queue_points {
                return Err(ConfigError::at(
                    &section,
                    "partition_queue_points",
                    "partition_queue_points cannot exceed queue_points",
                ));
            }
            if out.max_retry_time.is_zero() {
                return Err(ConfigError::at(
                    &section,
                    "max_retry_time",
                    "max_retry_time must be greater than zero",
                ));
            }
            for (key, zero) in [
                ("flush_interval", out.flush_interval.is_zero()),
                ("timeout", out.timeout.is_zero()),
            ] {
                if zero {
                    return Err(ConfigError::at(
                        &section,
                        key,
                        "flush_interval and timeout must be greater than zero",
                    ));
                }
            }
            if out.api == InfluxApi::V2 && out.org.is_empty() {
                return Err(ConfigError::at(&section, "api", "api = \"v2\" needs org"));
            }
        }
        for out in &self.outputs.graphite {
            let section = format!("outputs.graphite {:?}", out.name);
            if out.name.is_empty() {
                return Err(ConfigError::invalid(
                    "outputs.graphite",
                    "every output needs a name",
                ));
            }
            if !names.insert(out.name.clone()) {
                return Err(ConfigError::invalid(section, "duplicate output name"));
            }
            if out.destinations.is_empty() {
                return Err(ConfigError::at(
                    &section,
                    "destinations",
                    "needs at least one destination",
                ));
            }
            if out.batch_size == 0 || out.queue_points == 0 {
                return Err(ConfigError::invalid(
                    &section,
                    "batch_size and queue_points must be at least 1",
                ));
            }
            if out.queue_bytes < 1 << 16 {
                return Err(ConfigError::invalid(
                    &section,
                    "queue_bytes must be at least 65536",
                ));
            }
            let destinations = out
                .destinations
                .iter()
                .map(|d| {
                    d.parse::<crate::cluster::Destination>().map_err(|e| {
                        ConfigError::at(&section, "destinations", format!("destination {d:?}: {e}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            crate::cluster::Cluster::new(
                out.cluster,
                destinations,
                out.replication,
                out.diverse_replicas,
            )
            .map_err(|e| ConfigError::at(&section, "cluster", e.to_string()))?;
            crate::translate::influx::InfluxToGraphite::new(&out.to_graphite_config()).map_err(
                |e| {
                    use crate::translate::influx::{InfluxTemplateError as E, TemplateLocation};
                    let key = match &e {
                        E::EmptyElement { location, .. }
                        | E::Repeated { location, .. }
                        | E::InvalidFormat { location, .. }
                        | E::UnsupportedFilter { location, .. }
                        | E::DuplicateDefault { location, .. } => match location {
                            TemplateLocation::Default => "template",
                            TemplateLocation::Entry(_) => "templates",
                        },
                        E::Prefix { .. } => "prefix",
                        E::Separator { .. } => "separator",
                        E::StrictRegex(_) => "strict_sanitize_regex",
                    };
                    ConfigError::at(&section, key, e.to_string())
                },
            )?;
            if !out.tls && (out.tls_ca.is_some() || out.tls_server_name.is_some()) {
                return Err(ConfigError::invalid(
                    &section,
                    "tls_ca and tls_server_name need tls = true",
                ));
            }
            if out.tls {
                crate::tls::client_config(out.tls_ca.as_deref())
                    .map_err(|e| ConfigError::invalid(&section, format!("tls: {e}")))?;
                if let Some(n) = &out.tls_server_name {
                    rustls::pki_types::ServerName::try_from(n.as_str()).map_err(|e| {
                        ConfigError::invalid(&section, format!("tls_server_name {n:?}: {e}"))
                    })?;
                }
            }
        }
        for out in &self.outputs.nats {
            let section = format!("outputs.nats {:?}", out.name);
            if out.name.is_empty() {
                return Err(ConfigError::invalid(
                    "outputs.nats",
                    "every output needs a name",
                ));
            }
            if !names.insert(out.name.clone()) {
                return Err(ConfigError::invalid(section, "duplicate output name"));
            }
            out.validate()
                .map_err(|e| ConfigError::invalid(&section, e))?;
        }
        self.listeners
            .nats
            .validate()
            .map_err(|e| ConfigError::invalid("listeners.nats", e))?;
        self.graphite
            .templates()
            .map_err(|e| ConfigError::at("graphite", "templates", e.to_string()))?;
        for (i, r) in self.rewrite.iter().enumerate() {
            if r.replace.chars().any(char::is_whitespace) {
                return Err(ConfigError::at(
                    format!("rewrite[{i}]"),
                    "replace",
                    format!(
                        "replacement {:?} contains whitespace, which no Graphite name can hold",
                        r.replace
                    ),
                ));
            }
        }
        self.router().map_err(route_error)?;
        if !self.aggregation.rules.is_empty()
            || self.aggregation.carbon_rules.is_some()
            || !self.aggregate.is_empty()
        {
            self.aggregation(&crate::metrics::Metrics::new(), None)
                .map_err(|e| ConfigError::invalid("aggregation", e.to_string()))?;
        }
        Ok(())
    }

    /// The names of every output, in the order the pipeline holds them.
    pub fn output_names(&self) -> Vec<&str> {
        let influx = self.outputs.influxdb.iter().map(|o| o.name.as_str());
        influx
            .chain(self.outputs.graphite.iter().map(|o| o.name.as_str()))
            .chain(self.outputs.nats.iter().map(|o| o.name.as_str()))
            .collect()
    }

    /// The aggregators of `[aggregation]` and `[[aggregate]]` (`None` without rules), taking
    /// over the state of `previous`'s unchanged rules.
    pub fn aggregation(
        &self,
        metrics: &crate::metrics::Metrics,
        previous: Option<&crate::aggregate::Aggregation>,
    ) -> Result<Option<crate::aggregate::Aggregation>, crate::aggregate::AggregateError> {
        let outputs: Vec<String> = self.output_names().iter().map(|s| s.to_string()).collect();
        crate::aggregate::Aggregation::build(
            &self.aggregation,
            &self.aggregate,
            &outputs,
            metrics,
            previous,
        )
    }

    /// Cleansing, rewrites and routes compiled against the outputs.
    pub fn router(&self) -> Result<crate::route::Router, crate::route::RouteError> {
        let encoder =
            crate::translate::influx::SegmentEncoder::new(self.graphite.name_encoding, true);
        let cleanser = crate::route::Cleanser::new(
            self.graphite.validation,
            &self.graphite.allowed_chars,
            encoder,
        )?;
        crate::route::Router::new(&self.routes, &self.rewrite, cleanser, &self.output_names())
    }
}

impl GraphiteConfig {
    /// The compiled templates, with the name decoder when `decode_names` is on: what the
    /// gateway and `dry-run` both translate with.
    pub fn templates(
        &self,
    ) -> Result<crate::translate::graphite::TemplateSet, crate::translate::graphite::TemplateError>
    {
        let set = crate::translate::graphite::TemplateSet::new(&self.template_config())?;
        Ok(match (self.decode_names, self.name_encoding) {
            (false, _) => set,
            (true, metric_name::Encoding::Idna) => set.with_decoder(metric_name::decode),
            (true, metric_name::Encoding::Punycode) => set.with_decoder(decode_punycode),
        })
    }

    pub fn template_config(&self) -> crate::translate::graphite::GraphiteTemplateConfig {
        crate::translate::graphite::GraphiteTemplateConfig {
            separator: self.separator.clone(),
            templates: self.templates.clone(),
            tags: self.tags.clone(),
        }
    }
}

/// A routing error as the key it is about: `routes[i]` / `rewrite[i]` and the key.
fn route_error(e: crate::route::RouteError) -> ConfigError {
    use crate::route::RouteError as E;
    let (section, key) = match &e {
        E::MatchAndPrefix { rule } => (format!("routes[{rule}]"), "prefix"),
        E::NoMatch { rule } | E::Regex { rule, .. } => (format!("routes[{rule}]"), "match"),
        E::EmptyPattern { rule, key } => (format!("routes[{rule}]"), *key),
        E::UnknownOutput { rule, .. } | E::NoOutputs { rule } => {
            (format!("routes[{rule}]"), "outputs")
        }
        E::DropWithOutputs { rule } => (format!("routes[{rule}]"), "drop"),
        E::RewriteRegex { rule, .. } => (format!("rewrite[{rule}]"), "match"),
        E::Replacement { rule, .. } => (format!("rewrite[{rule}]"), "replace"),
        E::AllowedChars { .. } => ("graphite".to_owned(), "allowed_chars"),
        E::EncodeNeedsIdna => ("graphite".to_owned(), "validation"),
        _ => return ConfigError::invalid("routes", e.to_string()),
    };
    // The message without its own `routes[i]: ` prefix, which the section now says.
    let text = e.to_string();
    let message = text
        .strip_prefix(&format!("{section}: "))
        .map_or(text.clone(), str::to_owned);
    ConfigError::at(section, key, message)
}

/// `${VAR}` and `${VAR:-default}` in the config text are replaced by the environment's values
/// before it is parsed, as Telegraf does, so that endpoints, tokens and limits (numbers too:
/// `max_in_flight = ${CONCURRENCY:-4}`) can come from the environment. Comments are left
/// alone; `$${` stands for a literal `${`. An unset variable without a default is an error
/// naming it and its line.
pub fn interpolate(text: &str, get: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    // Inside a multi-line string ("""...""" or '''...'''), across lines.
    let mut multiline: Option<&str> = None;
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        let mut quote: Option<char> = None;
        while !rest.is_empty() {
            if let Some(delim) = multiline {
                match rest.find(delim) {
                    Some(at) => {
                        substitute(&rest[..at], &get, number + 1, &mut out)?;
                        out.push_str(delim);
                        rest = &rest[at + delim.len()..];
                        multiline = None;
                    }
                    None => {
                        substitute(rest, &get, number + 1, &mut out)?;
                        rest = "";
                    }
                }
                continue;
            }
            let mut chars = rest.char_indices();
            let mut cut = rest.len();
            let mut comment = false;
            while let Some((i, c)) = chars.next() {
                match (quote, c) {
                    (None, '#') => {
                        cut = i;
                        comment = true;
                        break;
                    }
                    (None, '"' | '\'') => {
                        let triple = if c == '"' { "\"\"\"" } else { "\'\'\'" };
                        if rest[i..].starts_with(triple) {
                            cut = i + 3;
                            multiline = Some(triple);
                            break;
                        }
                        quote = Some(c);
                    }
                    (Some('"'), '\\') => {
                        chars.next();
                    }
                    (Some(q), c) if c == q => quote = None,
                    _ => {}
                }
            }
            substitute(&rest[..cut], &get, number + 1, &mut out)?;
            if comment {
                out.push_str(&rest[cut..]);
                rest = "";
            } else {
                rest = &rest[cut..];
            }
        }
    }
    Ok(out)
}

fn substitute(
    mut text: &str,
    get: &impl Fn(&str) -> Option<String>,
    line: usize,
    out: &mut String,
) -> Result<(), String> {
    while let Some(at) = text.find('$') {
        out.push_str(&text[..at]);
        let after = &text[at..];
        if let Some(rest) = after.strip_prefix("$${") {
            out.push_str("${");
            text = rest;
        } else if let Some(rest) = after.strip_prefix("${") {
            let end = rest
                .find('}')
                .ok_or_else(|| format!("line {line}: unterminated ${{ in the config"))?;
            let (name, default) = match rest[..end].split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (&rest[..end], None),
            };
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!("line {line}: ${{{name}}} is not a variable name"));
            }
            match (get(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "line {line}: environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                    ))
                }
            }
            text = &rest[end + 1..];
        } else {
            out.push('$');
            text = &after[1..];
        }
    }
    out.push_str(text);
    Ok(())
}

fn decode_punycode(segment: &str) -> Result<std::borrow::Cow<'_, str>, metric_name::Error> {
    metric_name::decode_with(metric_name::Encoding::Punycode, segment)
}

fn env_prefix(name: &str) -> String {
    let mut s = String::from("FLUXGATE_");
    s.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    s
}

impl fmt::Display for InfluxApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_has_defaults() {
        let c = Config::from_toml("", "test").unwrap();
        assert_eq!(c.listeners.plaintext.max_line_bytes, 16384);
        assert_eq!(c.listeners.pickle.max_frame_bytes, 1048576);
        assert_eq!(c.listeners.http.address.as_deref(), Some("127.0.0.1:8086"));
        assert!(c.outputs.influxdb.is_empty());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = Config::from_toml("[listeners.plaintext]\ntcpp = \"127.0.0.1:1\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `tcpp`"), "{e}");
        let e = Config::from_toml("[[outputs.influxdb]]\nname=\"a\"\nbatchsize=1\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `batchsize`"), "{e}");
    }

    #[test]
    fn secrets_come_from_the_environment() {
        let mut c: Config =
            toml::from_str("[[outputs.influxdb]]\nname = \"main-influx\"\npassword = \"file\"\n")
                .unwrap();
        c.apply_env(|k| match k {
            "FLUXGATE_MAIN_INFLUX_PASSWORD" => Some("env".into()),
            "FLUXGATE_MAIN_INFLUX_TOKEN" => Some("tok".into()),
            _ => None,
        });
        assert_eq!(c.outputs.influxdb[0].password, "env");
        assert_eq!(c.outputs.influxdb[0].token, "tok");
    }

    #[test]
    fn invalid_values_are_reported_with_their_section() {
        let e = Config::from_toml("[[outputs.influxdb]]\nname=\"a\"\nbatch_size=0\n", "t")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "outputs.influxdb \"a\": batch_size (line 3): batch_size, max_in_flight and queue_points must be at least 1"
        );
        let e = Config::from_toml("[listeners.plaintext]\ntcp = \"nope\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("listeners.plaintext: tcp (line 2): bad address \"nope\""),
            "{e}"
        );
        let e = Config::from_toml("[[outputs.influxdb]]\nname=\"a\"\nname2=1\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `name2`"), "{e}");
    }

    #[test]
    fn a_rewrite_that_would_make_a_space_is_refused() {
        let e = Config::from_toml("[[rewrite]]\nmatch = 'a'\nreplace = 'a b'\n", "t")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "rewrite[0]: replace (line 3): replacement \"a b\" contains whitespace, which no Graphite name can hold"
        );
    }

    #[test]
    fn http_credentials_come_from_the_environment_too() {
        let mut c: Config =
            toml::from_str("[listeners.http]\nusers = [\"a:file\"]\ntokens = [\"t\"]\n").unwrap();
        c.apply_env(|k| match k {
            "FLUXGATE_HTTP_USERS" => Some("bob:pw1, carol:pw:2".into()),
            _ => None,
        });
        assert_eq!(
            c.listeners.http.users,
            vec![Secret::new("bob:pw1"), Secret::new("carol:pw:2")]
        );
        assert_eq!(c.listeners.http.tokens, vec![Secret::new("t")]);
        c.apply_env(|k| (k == "FLUXGATE_HTTP_TOKENS").then(|| "x,y".into()));
        assert_eq!(c.listeners.http.tokens.len(), 2);
        // Never printed.
        let debug = format!("{:?}", c.listeners.http);
        assert!(
            !debug.contains("pw1") && !debug.contains("\"x\""),
            "{debug}"
        );
    }

    #[test]
    fn security_defaults_are_the_safe_ones() {
        let h = Config::from_toml("", "t").unwrap().listeners.http;
        assert_eq!(h.query, QueryPolicy::ReadOnly);
        assert!(!h.auth_enabled() && !h.metrics_needs_auth());
        assert_eq!(h.header_timeout, Duration::from_secs(10));
        assert_eq!(h.idle_timeout, Duration::from_secs(60));
        let c = Config::from_toml("[listeners.http]\ntokens = [\"t\"]\n", "t").unwrap();
        assert!(c.listeners.http.metrics_needs_auth());
        let c = Config::from_toml(
            "[listeners.http]\ntokens = [\"t\"]\nmetrics_auth = false\n",
            "t",
        )
        .unwrap();
        assert!(!c.listeners.http.metrics_needs_auth());
        assert_eq!(
            Config::from_toml("", "t")
                .unwrap()
                .listeners
                .plaintext
                .idle_timeout,
            Duration::from_secs(300)
        );
    }

    #[test]
    fn bad_security_settings_are_refused_without_echoing_secrets() {
        let e = Config::from_toml("[listeners.http]\nusers = [\"nocolon-secret\"]\n", "t")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "listeners.http: users (line 2): users[0] must be \"name:password\""
        );
        let e = Config::from_toml("[listeners.http]\ntls_cert = \"/nonexistent.pem\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs both tls_cert and tls_key"), "{e}");
        let e = Config::from_toml("[listeners.http]\nquery = \"all\"\n", "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `all`"), "{e}");
        let e = Config::from_toml(
            "[[outputs.graphite]]\nname=\"c\"\ndestinations=[\"127.0.0.1:1\"]\ntls_ca=\"/x\"\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("need tls = true"), "{e}");
        let e = Config::from_toml("[listeners.http]\nidle_timeout = \"5s\"\n", "t")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "listeners.http: idle_timeout (line 2): idle_timeout must be at least write_timeout (or 0s: never)"
        );
        let e = Config::from_toml("[listeners.http]\nmetrics_auth = true\n", "t")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("metrics_auth = true needs users or tokens"),
            "{e}"
        );
        // https is accepted now.
        Config::from_toml(
            "[[outputs.influxdb]]\nname=\"a\"\nurl=\"https://127.0.0.1:1\"\n",
            "t",
        )
        .unwrap();
    }

    #[test]
    fn semantic_errors_name_the_key_and_its_line() {
        let e = |text: &str| Config::from_toml(text, "t").unwrap_err().to_string();
        assert_eq!(
            e("[[outputs.influxdb]]\nname = \"a\"\n\n[[outputs.influxdb]]\nname = \"b\"\n\
               url = \"http://admin:s3cret@[bad:8086\"\n"),
            "outputs.influxdb \"b\": url (line 6): bad url \"http://***@[bad:8086\": invalid IPv6 address"
        );
        assert_eq!(
            e("[[outputs.influxdb]]\nname = \"a\"\nurl = \"ftp://u:pw@h/\"\n"),
            "outputs.influxdb \"a\": url (line 3): bad url \"ftp://u:***@h/\": must be http:// or https://"
        );
        // A default that does not fit: the section's own line.
        assert_eq!(
            e("[listeners.http]\naddress = \"127.0.0.1:1\"\n\n[[outputs.influxdb]]\nname = \"a\"\n\
               api = \"v2\"\n"),
            "outputs.influxdb \"a\": api (line 6): api = \"v2\" needs org"
        );
        assert_eq!(
            e("[[outputs.graphite]]\nname = \"c\"\n"),
            "outputs.graphite \"c\": destinations (line 1): needs at least one destination"
        );
        let r = e("[[outputs.graphite]]\nname = \"c\"\ndestinations = [\"127.0.0.1:1\"]\n\
                   [[routes]]\nmatch = \"*\"\noutputs = [\"c\"]\n[[routes]]\nmatch = \"*\"\noutputs = [\"d\"]\n");
        assert!(
            r.starts_with("routes[1]: outputs (line 9): unknown output \"d\""),
            "{r}"
        );
        let t = e("[graphite]\ntemplates = [\"a.b measurement.field.field\"]\n");
        assert!(t.starts_with("graphite: templates (line 2): "), "{t}");
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("http://admin:PW@127.0.0.1:8086"),
            "http://admin:***@127.0.0.1:8086"
        );
        assert_eq!(
            redact_url("https://admin:p%40ss@host:1/influx/"),
            "https://admin:***@host:1/influx/"
        );
        assert_eq!(redact_url("http://127.0.0.1:8086"), "http://127.0.0.1:8086");
        assert_eq!(redact_url("http://u:x@[bad"), "http://***@[bad");
    }

    #[test]
    fn two_tcp_listeners_on_one_address_are_refused() {
        let e = Config::from_toml(
            "[listeners.plaintext]\ntcp = \"127.0.0.1:2003\"\n[listeners.http]\naddress = \"127.0.0.1:2003\"\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "listeners: listeners.plaintext.tcp and listeners.http.address are both \"127.0.0.1:2003\": one TCP address, one listener"
        );
        // TCP and UDP on one port are two sockets.
        Config::from_toml(
            "[listeners.plaintext]\ntcp = \"127.0.0.1:2003\"\nudp = \"127.0.0.1:2003\"\n",
            "t",
        )
        .unwrap();
    }

    #[test]
    fn environment_variables_fill_values_but_not_comments() {
        let env = |k: &str| match k {
            "URL" => Some("http://influx:8086".to_owned()),
            "CONC" => Some("8".to_owned()),
            _ => None,
        };
        let text = "url = \"${URL}\" # not ${IN_A_COMMENT}\nmax = ${CONC}\nn = ${MISSING:-3}\n\
                    s = 'lit ${CONC}'\nkeep = \"$${URL} and $5\"\n";
        assert_eq!(
            interpolate(text, env).unwrap(),
            "url = \"http://influx:8086\" # not ${IN_A_COMMENT}\nmax = 8\nn = 3\n\
             s = 'lit 8'\nkeep = \"${URL} and $5\"\n"
        );
        assert_eq!(
            interpolate("a = 1\nb = \"${NOPE}\"\n", env).unwrap_err(),
            "line 2: environment variable NOPE is not set (write ${NOPE:-default} for a default)"
        );
        assert_eq!(
            interpolate("x = \"${a b}\"", env).unwrap_err(),
            "line 1: ${a b} is not a variable name"
        );
        // A '#' inside a string is not a comment; multi-line strings are followed.
        assert_eq!(
            interpolate(
                "s = \"a#${CONC}\"\nm = \"\"\"\n${CONC}\n\"\"\" # ${X}\n",
                env
            )
            .unwrap(),
            "s = \"a#8\"\nm = \"\"\"\n8\n\"\"\" # ${X}\n"
        );
    }

    #[test]
    fn durations_are_human_readable() {
        let c = Config::from_toml(
            "[[outputs.influxdb]]\nname=\"a\"\nflush_interval=\"250ms\"\ntimeout=\"3s\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            c.outputs.influxdb[0].flush_interval,
            Duration::from_millis(250)
        );
        assert_eq!(c.outputs.influxdb[0].timeout, Duration::from_secs(3));
    }
}

#[cfg(test)]
mod example_config {
    use super::*;

    /// The shipped example must always load: it is what operators copy.
    #[test]
    fn repository_config_toml_is_valid() {
        let text = include_str!("../../../config.toml");
        let c = Config::from_toml(text, "config.toml").unwrap();
        assert_eq!(c.listeners.plaintext.tcp.as_deref(), Some("127.0.0.1:2003"));
        assert_eq!(c.listeners.pickle.tcp.as_deref(), Some("127.0.0.1:2004"));
        assert_eq!(c.outputs.influxdb.len(), 1);
        assert_eq!(c.outputs.influxdb[0].name, "influx");
    }
}

#[cfg(test)]
mod statsd_config {
    use super::*;

    #[test]
    fn defaults_and_delete_idle_stats() {
        let c = Config::from_toml("", "t").unwrap();
        let s = &c.listeners.statsd;
        assert_eq!(s.udp, None);
        assert_eq!(s.flush_interval, Duration::from_secs(10));
        assert_eq!(s.settings(), crate::statsd::Settings::default());
        let c = Config::from_toml(
            "[listeners.statsd]\nudp = \"127.0.0.1:8125\"\ndelete_idle_stats = true\ndelete_gauges = false\n",
            "t",
        )
        .unwrap();
        let st = c.listeners.statsd.settings();
        assert!(st.delete_counters && st.delete_timers && st.delete_sets && !st.delete_gauges);
    }

    #[test]
    fn bad_values_are_refused() {
        for body in [
            "percent_threshold = [0]",
            "percent_threshold = [101]",
            "flush_interval = \"0s\"",
            "max_series = 0",
            "udp = \"nowhere\"",
            "no_such_key = 1",
        ] {
            let text = format!("[listeners.statsd]\n{body}\n");
            assert!(Config::from_toml(&text, "t").is_err(), "{body}");
        }
    }
}
