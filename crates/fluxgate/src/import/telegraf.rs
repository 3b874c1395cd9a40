//! A Telegraf configuration (TOML) into fluxgate's, for the part of Telegraf fluxgate
//! replaces: Graphite listeners feeding InfluxDB and Graphite outputs.
//!
//! | Telegraf | fluxgate |
//! |---|---|
//! | `[[inputs.socket_listener]]` / `[[inputs.tcp_listener]]` / `[[inputs.udp_listener]]` with `data_format = "graphite"` | `[listeners.plaintext] tcp` / `udp` |
//! | their `templates`, `separator` | `[graphite] templates`, `separator` (the same template language) |
//! | their `[inputs.X.tags]`, `[global_tags]`, the agent's `host` tag | `[graphite] tags` (added only where absent, as Telegraf does) |
//! | `[[inputs.influxdb_listener]]` / `[[inputs.influxdb_v2_listener]]` | `[listeners.http] address` |
//! | `[[outputs.influxdb]]` (`urls`, `database`, `retention_policy`, `username`, `password`, `skip_database_creation`, `content_encoding`, `timeout`) | `[[outputs.influxdb]]` |
//! | `[[outputs.influxdb_v2]]` (`urls`, `token`, `organization`, `bucket`) | `[[outputs.influxdb]] api = "v2"` |
//! | `[[outputs.graphite]]` (`servers`, `prefix`, `template`, `templates`, `graphite_tag_support`, `graphite_separator`, `graphite_tag_sanitize_mode`, `graphite_strict_sanitize_regex`) | `[[outputs.graphite]]` with `sanitize = "telegraf"`, so paths keep their whisper files |
//! | `metric_batch_size`, `metric_buffer_limit`, `flush_interval` (agent or output) | `batch_size`, `queue_points`, `flush_interval` |
//!
//! The file is read with `toml_edit`, which keeps every key's position, so each problem names
//! its line. Every other plugin, processor and aggregator, and every option that changes what
//! is sent (filters such as `namepass`, `name_override`, several `urls` written to in turn) is a
//! [`Problem`].

use std::path::Path;

use toml_edit::{ImDocument, Item, Table, Value};

use super::{quote_env as quote, read, Doc, ImportError, Imported, Problem};

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// One plugin table being read: hands out its keys with their lines and remembers which keys
/// were used, so the rest can be reported.
struct Plugin<'a> {
    file: &'a str,
    text: &'a str,
    /// `inputs.socket_listener`
    kind: String,
    table: &'a Table,
    line: usize,
    used: Vec<String>,
}

impl<'a> Plugin<'a> {
    fn new(file: &'a str, text: &'a str, kind: String, table: &'a Table) -> Self {
        let line = table.span().map_or(1, |s| line_of(text, s.start));
        Plugin {
            file,
            text,
            kind,
            table,
            line,
            used: Vec::new(),
        }
    }

    fn line_of_key(&self, key: &str) -> usize {
        self.table
            .key(key)
            .and_then(|k| k.span())
            .map_or(self.line, |s| line_of(self.text, s.start))
    }

    fn item(&mut self, key: &str) -> Option<&'a Item> {
        let item = self.table.get(key)?;
        self.used.push(key.to_owned());
        Some(item)
    }

    fn wrong(&self, key: &str, what: &str) -> ImportError {
        ImportError::syntax(
            self.file,
            self.line_of_key(key),
            format!("[{}] {key}: expected {what}", self.kind),
        )
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, ImportError> {
        match self.item(key) {
            None => Ok(None),
            Some(i) => i
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| self.wrong(key, "a string")),
        }
    }

    fn strings(&mut self, key: &str) -> Result<Option<Vec<String>>, ImportError> {
        match self.item(key) {
            None => Ok(None),
            Some(i) => {
                let array = i
                    .as_array()
                    .ok_or_else(|| self.wrong(key, "an array of strings"))?;
                array
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .map(Some)
                    .ok_or_else(|| self.wrong(key, "an array of strings"))
            }
        }
    }

    fn boolean(&mut self, key: &str) -> Result<Option<bool>, ImportError> {
        match self.item(key) {
            None => Ok(None),
            Some(i) => i
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "true or false")),
        }
    }

    fn integer(&mut self, key: &str) -> Result<Option<i64>, ImportError> {
        match self.item(key) {
            None => Ok(None),
            Some(i) => i
                .as_integer()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "an integer")),
        }
    }

    /// A Telegraf duration (`"10s"`, or a number of seconds) in fluxgate's form.
    fn duration(&mut self, key: &str) -> Result<Option<String>, ImportError> {
        match self.item(key) {
            None => Ok(None),
            Some(Item::Value(Value::Integer(n))) => Ok(Some(format!("{}s", n.value()))),
            Some(Item::Value(Value::String(s))) => {
                let s = s.value().to_owned();
                humantime_serde::re::humantime::parse_duration(&s)
                    .map_err(|_| self.wrong(key, "a duration such as \"10s\""))?;
                Ok(Some(s))
            }
            Some(_) => Err(self.wrong(key, "a duration such as \"10s\"")),
        }
    }

    /// `k = "v"` pairs of a sub-table such as `[inputs.x.tags]`.
    fn tags(&mut self, key: &str) -> Result<Vec<(String, String)>, ImportError> {
        let Some(item) = self.item(key) else {
            return Ok(Vec::new());
        };
        let pairs: Option<Vec<(String, String)>> = match item {
            Item::Table(t) => t
                .iter()
                .map(|(k, v)| v.as_str().map(|v| (k.to_owned(), v.to_owned())))
                .collect(),
            Item::Value(Value::InlineTable(t)) => t
                .iter()
                .map(|(k, v)| v.as_str().map(|v| (k.to_owned(), v.to_owned())))
                .collect(),
            _ => None,
        };
        pairs.ok_or_else(|| self.wrong(key, "a table of strings"))
    }

    fn problem(&self, key: Option<&str>, reason: impl Into<String>) -> Problem {
        let (line, statement) = match key {
            Some(k) => (
                self.line_of_key(k),
                format!("[{}] {k} = {}", self.kind, self.value_text(k)),
            ),
            None => (self.line, format!("[[{}]]", self.kind)),
        };
        Problem {
            file: self.file.to_owned(),
            line,
            statement: super::shorten(&statement),
            reason: reason.into(),
        }
    }

    fn value_text(&self, key: &str) -> String {
        match self.table.get(key) {
            Some(Item::Value(v)) => v.to_string_lossy(),
            Some(Item::Table(_)) => "{...}".into(),
            _ => "...".into(),
        }
    }

    /// Problems for every key not used, unless `harmless` names it.
    fn rest(&self, harmless: &[&str], problems: &mut Vec<Problem>) {
        for (key, _) in self.table.iter() {
            if self.used.iter().any(|u| u == key) || harmless.contains(&key) {
                continue;
            }
            let reason = match key {
                "namepass" | "namedrop" | "fieldpass" | "fielddrop" | "fieldinclude"
                | "fieldexclude" | "tagpass" | "tagdrop" | "taginclude" | "tagexclude"
                | "metricpass" => "fluxgate has no metric filters of this kind",
                "name_override" | "name_prefix" | "name_suffix" => {
                    "fluxgate does not rename measurements"
                }
                _ => "fluxgate has no equivalent of this option",
            };
            problems.push(self.problem(Some(key), reason));
        }
    }
}

trait Lossy {
    fn to_string_lossy(&self) -> String;
}

impl Lossy for Value {
    fn to_string_lossy(&self) -> String {
        match self {
            Value::String(s) => quote(s.value()),
            Value::Integer(i) => i.value().to_string(),
            Value::Float(f) => f.value().to_string(),
            Value::Boolean(b) => b.value().to_string(),
            Value::Array(a) => format!(
                "[{}]",
                a.iter()
                    .map(|v| v.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => "...".into(),
        }
    }
}

/// `tcp://:2003`, `udp4://127.0.0.1:2003` (socket_listener) or `:2003` (tcp/udp_listener)
/// as `(proto, address)`.
fn service_address(address: &str, default_proto: &str) -> Result<(String, String), String> {
    let (scheme, rest) = match address.split_once("://") {
        Some((s, r)) => (s, r),
        None => (default_proto, address),
    };
    let proto = match scheme {
        "tcp" | "tcp4" | "tcp6" => "tcp",
        "udp" | "udp4" | "udp6" => "udp",
        other => return Err(format!("fluxgate has no {other}:// listener")),
    };
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} has no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{address:?}: invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = match host {
        "" if scheme.ends_with('6') => "::",
        "" => "0.0.0.0",
        h => h,
    };
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok((proto.to_owned(), address))
}

/// The Graphite input side: listeners, templates and tags from the first Graphite listener.
#[derive(Debug, Default)]
struct GraphiteInput {
    tcp: Option<(String, usize)>,
    udp: Option<(String, usize)>,
    templates: Option<Vec<String>>,
    separator: Option<String>,
    tags: Vec<(String, String)>,
    max_connections: Option<i64>,
    idle_timeout: Option<String>,
    tls: Option<(String, String, Option<String>)>,
    any: bool,
}

#[derive(Debug, Default)]
struct AgentDefaults {
    batch_size: Option<i64>,
    buffer_limit: Option<i64>,
    flush_interval: Option<String>,
    /// The `host` tag Telegraf adds to every metric (None: `omit_hostname = true`).
    host: Option<String>,
    global_tags: Vec<(String, String)>,
}

/// Imports a Telegraf configuration file.
pub fn import(path: &Path) -> Result<Imported, ImportError> {
    let file = path.display().to_string();
    let text = read(path)?;
    let doc = ImDocument::parse(text.as_str()).map_err(|e| {
        let line = e.span().map_or(1, |s| line_of(&text, s.start));
        ImportError::syntax(&file, line, e.message().trim().to_owned())
    })?;
    let root = doc.as_table();
    let mut problems = Vec::new();
    let mut agent = AgentDefaults::default();
    let table_line = |t: &Table| t.span().map_or(1, |s| line_of(&text, s.start));

    // [agent] and [global_tags] first: they are defaults for everything else.
    let mut hostname: Option<String> = None;
    let mut omit_hostname = false;
    if let Some(t) = root.get("agent").and_then(Item::as_table) {
        let mut p = Plugin::new(&file, &text, "agent".into(), t);
        hostname = p.string("hostname")?.filter(|h| !h.is_empty());
        omit_hostname = p.boolean("omit_hostname")?.unwrap_or(false);
        agent.batch_size = p.integer("metric_batch_size")?;
        agent.buffer_limit = p.integer("metric_buffer_limit")?;
        agent.flush_interval = p.duration("flush_interval")?;
        p.rest(
            &[
                "interval",
                "round_interval",
                "collection_jitter",
                "collection_offset",
                "flush_jitter",
                "precision",
                "debug",
                "quiet",
                "logtarget",
                "logfile",
                "logfile_rotation_interval",
                "logfile_rotation_max_size",
                "logfile_rotation_max_archives",
                "log_with_timezone",
                "logformat",
                "skip_processors_after_aggregators",
                "snmp_translator",
                "statefile",
                "always_include_local_tags",
                "always_include_global_tags",
            ],
            &mut problems,
        );
    }
    if !omit_hostname {
        agent.host = Some(hostname.clone().unwrap_or_else(system_hostname));
    }
    if let Some(t) = root.get("global_tags").and_then(Item::as_table) {
        for (k, v) in t.iter() {
            match v.as_str() {
                Some(v) => agent.global_tags.push((k.to_owned(), v.to_owned())),
                None => {
                    return Err(ImportError::syntax(
                        &file,
                        table_line(t),
                        format!("[global_tags] {k}: expected a string"),
                    ))
                }
            }
        }
    }

    let mut graphite = GraphiteInput::default();
    let mut http: Option<(String, usize)> = None;
    let mut http_doc = Doc::keeping_env();
    let mut outputs = Doc::keeping_env();
    let mut output_names: Vec<String> = Vec::new();
    let mut graphite_outputs: Vec<Problem> = Vec::new();
    let mut graphite_names: Vec<String> = Vec::new();

    for (top, item) in root.iter() {
        match top {
            "agent" | "global_tags" => {}
            "inputs" | "outputs" | "processors" | "aggregators" => {
                let Some(section) = item.as_table() else {
                    return Err(ImportError::syntax(
                        &file,
                        1,
                        format!("`{top}` must be a table"),
                    ));
                };
                for (kind, plugins) in section.iter() {
                    let instances: Vec<&Table> = match plugins {
                        Item::ArrayOfTables(a) => a.iter().collect(),
                        Item::Table(t) => vec![t],
                        _ => {
                            return Err(ImportError::syntax(
                                &file,
                                table_line(section),
                                format!("[{top}.{kind}] must be a table"),
                            ))
                        }
                    };
                    for t in instances {
                        let mut p = Plugin::new(&file, &text, format!("{top}.{kind}"), t);
                        match (top, kind) {
                            ("inputs", "socket_listener" | "tcp_listener" | "udp_listener") => {
                                graphite_listener(&mut p, kind, &mut graphite, &mut problems)?
                            }
                            ("inputs", "influxdb_listener" | "influxdb_v2_listener") => {
                                influx_listener(
                                    &mut p,
                                    &agent,
                                    &mut http,
                                    &mut http_doc,
                                    &mut problems,
                                )?
                            }
                            ("outputs", "influxdb" | "influxdb_v2" | "graphite") => {
                                let name = unique_name(&mut p, kind, &output_names)?;
                                output_names.push(name.clone());
                                outputs.blank();
                                outputs.comment(&format!("{file}:{}: [[{top}.{kind}]]", p.line));
                                let made = match kind {
                                    "influxdb" => {
                                        influx_output(&mut p, &name, &agent, &mut problems)?
                                    }
                                    "influxdb_v2" => {
                                        influx_v2_output(&mut p, &name, &agent, &mut problems)?
                                    }
                                    _ => {
                                        graphite_outputs.push(p.problem(
                                            None,
                                            "Telegraf also writes the Graphite input here, parsed by \
                                             the input's templates and written again by this \
                                             output's; fluxgate would forward the original path, so \
                                             the routes below keep Graphite input away from it (line \
                                             protocol still goes there)",
                                        ));
                                        graphite_names.push(name.clone());
                                        graphite_output(&mut p, &name, &agent, &mut problems)?
                                    }
                                };
                                outputs.out.push_str(&made);
                            }
                            _ => problems.push(p.problem(
                                None,
                                match top {
                                    "inputs" => "fluxgate has no such input",
                                    "outputs" => "fluxgate has no such output",
                                    _ => "fluxgate has no Telegraf processors or aggregators",
                                },
                            )),
                        }
                    }
                }
            }
            other => {
                let line = item.as_table().map_or(1, table_line);
                problems.push(Problem {
                    file: file.clone(),
                    line,
                    statement: format!("[{other}]"),
                    reason: "not a Telegraf section fluxgate knows".into(),
                });
            }
        }
    }
    if graphite.any {
        problems.extend(graphite_outputs);
    }
    problems.sort_by_key(|p| p.line);

    let mut d = Doc::keeping_env();
    d.comment(&format!(
        "fluxgate configuration imported from Telegraf's {file} (`fluxgate import telegraf`)."
    ));
    d.problems(&problems);
    d.blank();
    d.table("listeners.plaintext");
    if let Some((a, line)) = &graphite.tcp {
        d.string("tcp", a, Some(&format!("line {line}")));
    }
    if let Some((a, line)) = &graphite.udp {
        d.string("udp", a, Some(&format!("line {line}")));
    }
    if let Some(n) = graphite.max_connections {
        d.raw("max_connections", &n.to_string(), None);
    }
    if let Some(t) = &graphite.idle_timeout {
        d.string("idle_timeout", t, Some("read_timeout"));
    }
    if let Some((cert, key, ca)) = &graphite.tls {
        d.string("tls_cert", cert, None);
        d.string("tls_key", key, None);
        if let Some(ca) = ca {
            d.string("tls_client_ca", ca, Some("tls_allowed_cacerts"));
        }
    }
    d.blank();
    d.table("listeners.http");
    match &http {
        Some(_) => d.out.push_str(&http_doc.finish()),
        None => d.string(
            "address",
            "127.0.0.1:8086",
            Some("fluxgate's /metrics and /health; Telegraf had no InfluxDB listener here"),
        ),
    }
    if graphite.any {
        d.blank();
        d.comment(
            "The Graphite parser's templates (Telegraf's and InfluxDB's template language), and\n\
             the tags Telegraf adds where a metric does not have them: the input's own tags,\n\
             [global_tags], and the agent's host tag unless omit_hostname.",
        );
        d.table("graphite");
        if let Some(s) = &graphite.separator {
            d.string("separator", s, None);
        }
        if let Some(t) = &graphite.templates {
            d.raw("templates", &multiline(t), None);
        }
        let mut tags: Vec<String> = Vec::new();
        let mut keys: Vec<&str> = Vec::new();
        let host = agent.host.iter().map(|h| ("host".to_owned(), h.clone()));
        let all: Vec<(String, String)> = graphite
            .tags
            .iter()
            .cloned()
            .chain(agent.global_tags.iter().cloned())
            .chain(host)
            .collect();
        for (k, v) in &all {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
                tags.push(format!("{k}={v}"));
            }
        }
        if !tags.is_empty() {
            d.raw("tags", &d.list(&tags), None);
        }
    }
    d.blank();
    d.out.push_str(&outputs.finish());
    d.blank();
    if graphite.any && !graphite_names.is_empty() {
        let others: Vec<&String> = output_names
            .iter()
            .filter(|n| !graphite_names.contains(n))
            .collect();
        d.comment(
            "Graphite input goes to the InfluxDB outputs only; line protocol to every output.",
        );
        d.array_table("routes");
        d.string("on", "path", None);
        d.string("match", "*", None);
        if others.is_empty() {
            d.raw("drop", "true", None);
        } else {
            d.raw("outputs", &d.list(&others), None);
            d.raw("stop", "true", None);
        }
        d.blank();
        d.array_table("routes");
        d.string("match", "*", None);
        d.raw("outputs", &d.list(&output_names), None);
        d.blank();
    }
    Ok(Imported {
        config: d.finish(),
        problems,
    })
}

/// A string array one item per line, for templates.
fn multiline(items: &[String]) -> String {
    if items.len() <= 1 {
        return super::quote_all_env(items);
    }
    let mut s = String::from("[\n");
    for i in items {
        s.push_str("  ");
        s.push_str(&quote(i));
        s.push_str(",\n");
    }
    s.push(']');
    s
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

fn graphite_listener(
    p: &mut Plugin<'_>,
    kind: &str,
    g: &mut GraphiteInput,
    problems: &mut Vec<Problem>,
) -> Result<(), ImportError> {
    let format = p.string("data_format")?.unwrap_or_else(|| "influx".into());
    if format != "graphite" {
        problems.push(p.problem(
            Some("data_format"),
            format!("fluxgate has no raw-socket listener for data_format {format:?}"),
        ));
        p.rest(&[], &mut Vec::new());
        return Ok(());
    }
    let default_proto = if kind == "udp_listener" { "udp" } else { "tcp" };
    let Some(address) = p.string("service_address")? else {
        return Err(p.wrong("service_address", "an address such as \"tcp://:2003\""));
    };
    let line = p.line_of_key("service_address");
    let (proto, address) = match service_address(&address, default_proto) {
        Ok(x) => x,
        Err(reason) => {
            problems.push(p.problem(Some("service_address"), reason));
            return Ok(());
        }
    };
    let separator = p.string("separator")?;
    let templates = p
        .strings("templates")?
        .map(|t| usable_templates(p, t, separator.as_deref(), problems));
    let tags = p.tags("tags")?;
    if g.any && (templates != g.templates || separator != g.separator || tags != g.tags) {
        problems.push(p.problem(
            None,
            "fluxgate translates every Graphite listener's input with one set of templates, \
             separator and tags; this listener's differ from the first one's",
        ));
        return Ok(());
    }
    let slot = if proto == "tcp" {
        &mut g.tcp
    } else {
        &mut g.udp
    };
    if let Some((first, at)) = slot {
        problems.push(p.problem(
            Some("service_address"),
            format!("fluxgate has one plaintext {proto} listener, already {first} (line {at})"),
        ));
        return Ok(());
    }
    *slot = Some((address, line));
    g.any = true;
    g.templates = templates;
    g.separator = separator;
    g.tags = tags;
    if let Some(n) = p.integer("max_connections")? {
        if n > 0 && proto == "tcp" {
            g.max_connections = Some(n);
        }
    }
    if let Some(t) = p.duration("read_timeout")? {
        if proto == "tcp" && t != "0s" {
            g.idle_timeout = Some(t);
        }
    }
    let cert = p.string("tls_cert")?;
    let key = p.string("tls_key")?;
    let ca = p.strings("tls_allowed_cacerts")?;
    match (cert, key) {
        (Some(c), Some(k)) if proto == "tcp" => {
            let ca = ca.and_then(|v| v.into_iter().next());
            g.tls = Some((c, k, ca));
        }
        (None, None) => {}
        _ => problems.push(p.problem(Some("tls_cert"), "TLS needs tls_cert and tls_key on TCP")),
    }
    if let Some(enc) = p.string("content_encoding")? {
        if enc != "identity" {
            problems.push(p.problem(
                Some("content_encoding"),
                "fluxgate's Graphite listeners read uncompressed streams",
            ));
        }
    }
    p.rest(
        &[
            "alias",
            "log_level",
            "keep_alive_period",
            "read_buffer_size",
            "socket_mode",
            "max_decompression_size",
            "max_line_size",
        ],
        problems,
    );
    Ok(())
}

/// The templates fluxgate reads the same way. fluxgate's template language is InfluxDB 1.x's,
/// which Telegraf's extends (several `field` elements joined with the separator); a template
/// fluxgate refuses is a problem, and left out.
fn usable_templates(
    p: &Plugin<'_>,
    templates: Vec<String>,
    separator: Option<&str>,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    use crate::translate::graphite::{GraphiteTemplateConfig, TemplateSet};
    let check = |templates: Vec<String>| {
        TemplateSet::new(&GraphiteTemplateConfig {
            separator: separator.unwrap_or(".").to_owned(),
            templates,
            tags: Vec::new(),
        })
    };
    let mut usable = Vec::new();
    for t in templates {
        match check(vec![t.clone()]) {
            Ok(_) => usable.push(t),
            Err(e) => {
                let reason = e.to_string();
                let reason = reason
                    .split_once(": ")
                    .map_or(reason.as_str(), |(_, r)| r)
                    .to_owned();
                let mut pr = p.problem(Some("templates"), reason);
                pr.statement = format!("[{}] templates: {t:?}", p.kind);
                problems.push(pr);
            }
        }
    }
    if let Err(e) = check(usable.clone()) {
        problems.push(p.problem(Some("templates"), e.to_string()));
        return Vec::new();
    }
    usable
}

fn influx_listener(
    p: &mut Plugin<'_>,
    agent: &AgentDefaults,
    http: &mut Option<(String, usize)>,
    doc: &mut Doc,
    problems: &mut Vec<Problem>,
) -> Result<(), ImportError> {
    let address = p
        .string("service_address")?
        .unwrap_or_else(|| ":8186".into());
    let line = p.line_of_key("service_address");
    let (_, address) = match service_address(&address, "tcp") {
        Ok(x) => x,
        Err(reason) => {
            problems.push(p.problem(Some("service_address"), reason));
            return Ok(());
        }
    };
    if let Some((first, at)) = http {
        problems.push(p.problem(
            None,
            format!("fluxgate has one HTTP listener, already {first} (line {at})"),
        ));
        return Ok(());
    }
    *http = Some((address.clone(), line));
    doc.string("address", &address, Some(&format!("line {line}")));
    problems.push(p.problem(
        None,
        "fluxgate writes each HTTP write into the database or bucket it names; Telegraf writes \
         it into its outputs' database",
    ));
    if agent.host.is_some() || !agent.global_tags.is_empty() || !p.tags("tags")?.is_empty() {
        problems.push(p.problem(
            None,
            "Telegraf adds its host, global and plugin tags to these points; fluxgate passes \
             line protocol on as it came",
        ));
    }
    let user = p.string("basic_username")?;
    let password = p.string("basic_password")?;
    if let (Some(u), Some(pw)) = (&user, &password) {
        doc.raw("users", &doc.list(&[format!("{u}:{pw}")]), None);
    }
    if let Some(token) = p.string("token")? {
        doc.raw("tokens", &doc.list(&[token]), None);
    }
    if let Some(n) = p.integer("max_body_size")? {
        if n > 0 {
            doc.raw("max_body_bytes", &n.to_string(), None);
        }
    }
    let cert = p.string("tls_cert")?;
    let key = p.string("tls_key")?;
    if let (Some(c), Some(k)) = (cert, key) {
        doc.string("tls_cert", &c, None);
        doc.string("tls_key", &k, None);
    }
    if let Some(ca) = p
        .strings("tls_allowed_cacerts")?
        .and_then(|v| v.into_iter().next())
    {
        doc.string("tls_client_ca", &ca, None);
    }
    p.rest(
        &[
            "alias",
            "log_level",
            "read_timeout",
            "write_timeout",
            "max_line_size",
            "parser_type",
        ],
        problems,
    );
    Ok(())
}

/// `alias`, else the kind, numbered from the second on.
fn unique_name(p: &mut Plugin<'_>, kind: &str, taken: &[String]) -> Result<String, ImportError> {
    let base = p.string("alias")?.unwrap_or_else(|| kind.to_owned());
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    Ok(name)
}

fn batching(
    p: &mut Plugin<'_>,
    doc: &mut Doc,
    agent: &AgentDefaults,
    influx: bool,
) -> Result<(), ImportError> {
    let batch = p.integer("metric_batch_size")?.or(agent.batch_size);
    let buffer = p.integer("metric_buffer_limit")?.or(agent.buffer_limit);
    let flush = p
        .duration("flush_interval")?
        .or_else(|| agent.flush_interval.clone());
    // Telegraf's defaults: 1000 per batch, 10000 buffered, flushed every 10 s.
    let batch = batch.unwrap_or(1000).max(1);
    let buffer = buffer.unwrap_or(10000).max(batch);
    if influx {
        doc.raw("batch_size", &batch.to_string(), Some("metric_batch_size"));
        doc.string(
            "flush_interval",
            &flush.unwrap_or_else(|| "10s".into()),
            Some("flush_interval"),
        );
    } else {
        doc.raw(
            "batch_size",
            &batch.min(500).to_string(),
            Some("metric_batch_size"),
        );
    }
    doc.raw(
        "queue_points",
        &buffer.to_string(),
        Some("metric_buffer_limit"),
    );
    Ok(())
}

fn first_url(p: &mut Plugin<'_>, problems: &mut Vec<Problem>) -> Result<String, ImportError> {
    let mut urls = p.strings("urls")?.unwrap_or_default();
    if let Some(u) = p.string("url")? {
        urls.insert(0, u);
    }
    if urls.is_empty() {
        urls.push("http://localhost:8086".into());
    }
    if urls.len() > 1 {
        problems.push(p.problem(
            Some("urls"),
            "Telegraf writes each batch to one of several urls; a fluxgate output has one url \
             (the first is used)",
        ));
    }
    let url = urls.remove(0);
    if url.starts_with("udp") {
        problems.push(p.problem(Some("urls"), "fluxgate writes to InfluxDB over HTTP only"));
    }
    Ok(url)
}

fn common_influx(
    p: &mut Plugin<'_>,
    doc: &mut Doc,
    problems: &mut Vec<Problem>,
) -> Result<(), ImportError> {
    if let Some(t) = p.duration("timeout")? {
        doc.string("timeout", &t, None);
    } else {
        doc.string("timeout", "5s", Some("Telegraf's default"));
    }
    let gzip = p
        .string("content_encoding")?
        .unwrap_or_else(|| "gzip".into())
        == "gzip";
    doc.raw("gzip", &gzip.to_string(), Some("content_encoding"));
    if let Some(ca) = p.string("tls_ca")? {
        doc.string("tls_ca", &ca, None);
    }
    if p.boolean("insecure_skip_verify")? == Some(true) {
        problems.push(p.problem(
            Some("insecure_skip_verify"),
            "fluxgate always verifies certificates (give the CA in tls_ca)",
        ));
    }
    Ok(())
}

fn influx_output(
    p: &mut Plugin<'_>,
    name: &str,
    agent: &AgentDefaults,
    problems: &mut Vec<Problem>,
) -> Result<String, ImportError> {
    let mut doc = Doc::keeping_env();
    doc.array_table("outputs.influxdb");
    doc.string("name", name, None);
    let url = first_url(p, problems)?;
    doc.string("url", &crate::config::redact_url(&url), None);
    if url != crate::config::redact_url(&url) {
        doc.comment("The url's password is in the environment: FLUXGATE_<NAME>_PASSWORD.");
    }
    doc.string("api", "v1", None);
    doc.string(
        "database",
        &p.string("database")?.unwrap_or_else(|| "telegraf".into()),
        None,
    );
    if let Some(rp) = p.string("retention_policy")? {
        doc.string("retention_policy", &rp, None);
    }
    if let Some(u) = p.string("username")? {
        doc.string("username", &u, None);
    }
    if let Some(pw) = p.string("password")? {
        doc.string("password", &pw, Some("or FLUXGATE_<NAME>_PASSWORD"));
    }
    let skip = p.boolean("skip_database_creation")?.unwrap_or(false);
    doc.raw(
        "create_database",
        &(!skip).to_string(),
        Some("skip_database_creation"),
    );
    common_influx(p, &mut doc, problems)?;
    batching(p, &mut doc, agent, true)?;
    p.rest(
        &[
            "alias",
            "log_level",
            "user_agent",
            "write_consistency",
            "influx_uint_support",
            "flush_jitter",
        ],
        problems,
    );
    Ok(doc.finish())
}

fn influx_v2_output(
    p: &mut Plugin<'_>,
    name: &str,
    agent: &AgentDefaults,
    problems: &mut Vec<Problem>,
) -> Result<String, ImportError> {
    let mut doc = Doc::keeping_env();
    doc.array_table("outputs.influxdb");
    doc.string("name", name, None);
    let url = first_url(p, problems)?;
    doc.string("url", &url, None);
    doc.string("api", "v2", None);
    let org = p.string("organization")?.unwrap_or_default();
    if org.is_empty() {
        problems.push(p.problem(None, "no organization: fluxgate's v2 output needs org"));
    }
    doc.string("org", &org, None);
    if let Some(b) = p.string("bucket")? {
        doc.string("bucket", &b, None);
    }
    if let Some(t) = p.string("token")? {
        doc.string("token", &t, Some("or FLUXGATE_<NAME>_TOKEN"));
    }
    common_influx(p, &mut doc, problems)?;
    batching(p, &mut doc, agent, true)?;
    p.rest(
        &[
            "alias",
            "log_level",
            "user_agent",
            "flush_jitter",
            "influx_uint_support",
        ],
        problems,
    );
    Ok(doc.finish())
}

fn graphite_output(
    p: &mut Plugin<'_>,
    name: &str,
    agent: &AgentDefaults,
    problems: &mut Vec<Problem>,
) -> Result<String, ImportError> {
    let mut doc = Doc::keeping_env();
    doc.array_table("outputs.graphite");
    doc.string("name", name, None);
    doc.string("protocol", "plaintext", None);
    let servers = p
        .strings("servers")?
        .unwrap_or_else(|| vec!["localhost:2003".into()]);
    let mut destinations = Vec::new();
    for s in &servers {
        match s.parse::<crate::cluster::Destination>() {
            Ok(_) => destinations.push(s.clone()),
            Err(e) => problems.push(p.problem(Some("servers"), e.to_string())),
        }
    }
    let note = (destinations.len() > 1).then_some(
        "Telegraf writes each batch to a random server that is up; any_of writes each series \
         to one server by hash, the next one while it is down",
    );
    doc.string(
        "cluster",
        if destinations.len() > 1 {
            "any_of"
        } else {
            "forward"
        },
        note,
    );
    doc.raw("destinations", &doc.list(&destinations), None);
    doc.string(
        "sanitize",
        "telegraf",
        Some("characters replaced as Telegraf's serializer does"),
    );
    if let Some(prefix) = p.string("prefix")? {
        doc.string("prefix", &prefix, None);
    }
    doc.string(
        "template",
        &p.string("template")?
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| crate::translate::influx::DEFAULT_TEMPLATE.into()),
        None,
    );
    if let Some(t) = p.strings("templates")? {
        doc.raw("templates", &multiline(&t), None);
    }
    if p.boolean("graphite_tag_support")? == Some(true) {
        doc.raw("tag_support", "true", Some("graphite_tag_support"));
    }
    if let Some(s) = p.string("graphite_separator")?.filter(|s| !s.is_empty()) {
        doc.string("separator", &s, Some("graphite_separator"));
    }
    if let Some(m) = p.string("graphite_tag_sanitize_mode")? {
        match m.as_str() {
            "strict" | "compatible" => doc.string("tag_sanitize_mode", &m, None),
            _ => problems.push(p.problem(
                Some("graphite_tag_sanitize_mode"),
                "Telegraf knows only strict and compatible",
            )),
        }
    }
    if let Some(r) = p
        .string("graphite_strict_sanitize_regex")?
        .filter(|r| !r.is_empty())
    {
        doc.string(
            "strict_sanitize_regex",
            &r,
            Some("graphite_strict_sanitize_regex"),
        );
    }
    if let Some(t) = p.duration("timeout")? {
        doc.string("connect_timeout", &t, Some("timeout"));
        doc.string("write_timeout", &t, Some("timeout"));
    }
    let tls = p.boolean("tls_enable")?.unwrap_or(false)
        || p.table.contains_key("tls_ca")
        || p.table.contains_key("tls_cert");
    if tls {
        doc.raw("tls", "true", None);
        if let Some(ca) = p.string("tls_ca")? {
            doc.string("tls_ca", &ca, None);
        }
        if p.string("tls_cert")?.is_some() {
            problems.push(p.problem(
                Some("tls_cert"),
                "fluxgate presents no client certificate to carbon",
            ));
        }
        let _ = p.string("tls_key")?;
        if p.boolean("insecure_skip_verify")? == Some(true) {
            problems.push(p.problem(
                Some("insecure_skip_verify"),
                "fluxgate always verifies certificates (give the CA in tls_ca)",
            ));
        }
    }
    batching(p, &mut doc, agent, false)?;
    p.rest(
        &["alias", "log_level", "flush_jitter", "local_address"],
        problems,
    );
    Ok(doc.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import_text(text: &str) -> Imported {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("telegraf.conf");
        std::fs::write(&path, text).unwrap();
        import(&path).unwrap()
    }

    #[test]
    fn addresses() {
        assert_eq!(
            service_address("tcp://:2003", "tcp").unwrap(),
            ("tcp".into(), "0.0.0.0:2003".into())
        );
        assert_eq!(
            service_address("udp4://127.0.0.1:2003", "tcp").unwrap(),
            ("udp".into(), "127.0.0.1:2003".into())
        );
        assert_eq!(
            service_address(":8094", "tcp").unwrap(),
            ("tcp".into(), "0.0.0.0:8094".into())
        );
        assert!(service_address("unix:///tmp/s", "tcp").is_err());
    }

    #[test]
    fn a_graphite_to_influx_pipeline() {
        let out = import_text(
            "[agent]\n  omit_hostname = true\n  flush_interval = \"5s\"\n\
             [global_tags]\n  dc = \"eu\"\n\
             [[inputs.socket_listener]]\n  service_address = \"tcp://127.0.0.1:2003\"\n\
               data_format = \"graphite\"\n  separator = \"_\"\n\
               templates = [\"cpu.* measurement.measurement.region\", \"measurement*\"]\n\
               [inputs.socket_listener.tags]\n    src = \"g\"\n\
             [[outputs.influxdb]]\n  urls = [\"http://127.0.0.1:8086\"]\n  database = \"metrics\"\n",
        );
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let c = crate::Config::from_toml(&out.config, "imported").unwrap();
        assert_eq!(c.listeners.plaintext.tcp.as_deref(), Some("127.0.0.1:2003"));
        assert_eq!(c.graphite.separator, "_");
        assert_eq!(c.graphite.templates.len(), 2);
        assert_eq!(c.graphite.tags, ["src=g", "dc=eu"]);
        let o = &c.outputs.influxdb[0];
        assert_eq!((o.database.as_str(), o.batch_size), ("metrics", 1000));
        assert_eq!(o.flush_interval, std::time::Duration::from_secs(5));
    }

    #[test]
    fn unmappable_plugins_and_options_have_lines() {
        let out = import_text(
            "[[inputs.cpu]]\n\n[[inputs.socket_listener]]\nservice_address = \"tcp://:2003\"\n\
             data_format = \"graphite\"\nname_prefix = \"x_\"\n\
             [[outputs.influxdb]]\nurls = [\"http://a:8086\", \"http://b:8086\"]\nnamepass = [\"cpu\"]\n\
             [[processors.rename]]\n",
        );
        let lines: Vec<usize> = out.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [1, 6, 8, 9, 10], "{:#?}", out.problems);
    }

    #[test]
    fn syntax_errors_have_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.conf");
        std::fs::write(&path, "[agent]\nx = \n").unwrap();
        let e = import(&path).unwrap_err().to_string();
        assert!(e.contains("t.conf:2:"), "{e}");
    }
}
