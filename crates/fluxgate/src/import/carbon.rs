//! carbon's (graphite-project/carbon 1.1) `carbon.conf`, `relay-rules.conf` and
//! `aggregation-rules.conf` into fluxgate's config.
//!
//! `carbon.conf` is read as Python's `ConfigParser` reads it (`key = value` or `key: value`,
//! full-line `#` / `;` comments, indented continuation lines, a `[DEFAULT]` section inherited
//! by every other, `%(key)s` interpolation, duplicate sections and keys refused), then the
//! settings of ONE program are taken as carbon takes them: its defaults, overridden by its
//! section. The program is the aggregator when an aggregation-rules file is given (or the
//! file has only an `[aggregator]` section), else the relay. carbon-cache's `[cache]` stores
//! data, which fluxgate does not do, so it is named and left alone.
//!
//! | carbon | fluxgate |
//! |---|---|
//! | `LINE_RECEIVER_INTERFACE` / `_PORT` | `[listeners.plaintext] tcp` (port 0: none) |
//! | `ENABLE_UDP_LISTENER`, `UDP_RECEIVER_*` | `[listeners.plaintext] udp` |
//! | `PICKLE_RECEIVER_*`, `PICKLE_RECEIVER_MAX_LENGTH` | `[listeners.pickle] tcp`, `max_frame_bytes` |
//! | `MAX_RECEIVER_CONNECTIONS` | `max_connections` of both |
//! | `RELAY_METHOD = consistent-hashing`, `DESTINATIONS`, `REPLICATION_FACTOR`, `DIVERSE_REPLICAS` | one `[[outputs.graphite]]`, `cluster = "carbon_ch"` |
//! | `RELAY_METHOD = rules` + relay-rules.conf | one `forward` output per destination, a `[[routes]]` per rule (`(?i)` pattern, `stop` unless `continue`) |
//! | `DESTINATION_PROTOCOL = pickle / line` | `protocol = "pickle" / "plaintext"` |
//! | `DESTINATION_TRANSPORT = ssl`, `DESTINATION_SSL_CA` | `tls = true`, `tls_ca` |
//! | `MAX_DATAPOINTS_PER_MESSAGE` | `batch_size` (at most 500 per pickle frame) |
//! | aggregation-rules.conf, `FORWARD_ALL`, `MAX_AGGREGATION_INTERVALS` | `[aggregation] carbon_rules`, `forward_inputs`, `max_intervals` (issue 10's keys) |

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::{quote_all, read, Doc, ImportError, Imported, Problem};

/// One `key = value` of an ini file.
#[derive(Debug, Clone)]
struct Entry {
    /// Lower-cased, as ConfigParser's `optionxform` does.
    key: String,
    value: String,
    line: usize,
}

#[derive(Debug, Clone)]
struct Section {
    name: String,
    line: usize,
    entries: Vec<Entry>,
}

impl Section {
    fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// An ini file as Python 3's `ConfigParser` reads it.
#[derive(Debug, Clone, Default)]
struct Ini {
    defaults: Vec<Entry>,
    sections: Vec<Section>,
}

impl Ini {
    fn parse(text: &str, file: &str) -> Result<Ini, ImportError> {
        let mut ini = Ini::default();
        // (section index or None for DEFAULT, entry index, indent of the key)
        let mut current: Option<Option<usize>> = None;
        let mut last: Option<(usize, usize)> = None;
        for (i, raw) in text.lines().enumerate() {
            let number = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = line.trim();
            let indent = line.len() - line.trim_start().len();
            if trimmed.is_empty() {
                continue;
            }
            if trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            if let (Some((_, key_indent)), Some(section)) = (last, current) {
                if indent > key_indent {
                    let entries = match section {
                        None => &mut ini.defaults,
                        Some(s) => &mut ini.sections[s].entries,
                    };
                    if let Some(e) = entries.last_mut() {
                        if !e.value.is_empty() {
                            e.value.push('\n');
                        }
                        e.value.push_str(trimmed);
                    }
                    continue;
                }
            }
            if let Some(name) = trimmed
                .strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .filter(|n| !n.is_empty())
            {
                last = None;
                if name == "DEFAULT" {
                    current = Some(None);
                    continue;
                }
                if ini.sections.iter().any(|s| s.name == name) {
                    return Err(ImportError::syntax(
                        file,
                        number,
                        format!("section [{name}] appears twice"),
                    ));
                }
                ini.sections.push(Section {
                    name: name.to_owned(),
                    line: number,
                    entries: Vec::new(),
                });
                current = Some(Some(ini.sections.len() - 1));
                continue;
            }
            let Some(section) = current else {
                return Err(ImportError::syntax(
                    file,
                    number,
                    "a key before any [section] header",
                ));
            };
            let Some(at) = trimmed.find(['=', ':']) else {
                return Err(ImportError::syntax(
                    file,
                    number,
                    format!("expected `key = value`, found {trimmed:?}"),
                ));
            };
            let key = trimmed[..at].trim().to_lowercase();
            let value = trimmed[at + 1..].trim().to_owned();
            if key.is_empty() {
                return Err(ImportError::syntax(file, number, "empty key"));
            }
            let entries = match section {
                None => &mut ini.defaults,
                Some(s) => &mut ini.sections[s].entries,
            };
            if entries.iter().any(|e| e.key == key) {
                return Err(ImportError::syntax(
                    file,
                    number,
                    format!("key {key:?} appears twice in its section"),
                ));
            }
            entries.push(Entry {
                key,
                value,
                line: number,
            });
            last = Some((entries.len() - 1, indent));
        }
        Ok(ini)
    }

    fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// A section's entries with `[DEFAULT]`'s beneath them and `%(key)s` interpolated.
    fn resolved(&self, name: &str, file: &str) -> Result<Vec<Entry>, ImportError> {
        let Some(section) = self.section(name) else {
            return Ok(Vec::new());
        };
        let mut all: Vec<Entry> = section.entries.clone();
        for d in &self.defaults {
            if section.get(&d.key).is_none() {
                all.push(d.clone());
            }
        }
        let lookup: HashMap<String, String> = all
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        for e in &mut all {
            e.value = interpolate(&e.value, &lookup, 0)
                .map_err(|m| ImportError::syntax(file, e.line, format!("{}: {m}", e.key)))?;
        }
        Ok(all)
    }
}

/// ConfigParser's BasicInterpolation: `%(name)s` and `%%`.
fn interpolate(
    value: &str,
    lookup: &HashMap<String, String>,
    depth: usize,
) -> Result<String, String> {
    if !value.contains('%') {
        return Ok(value.to_owned());
    }
    if depth > 10 {
        return Err("interpolation nested too deep".into());
    }
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('%') {
            out.push('%');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            let end = r
                .find(")s")
                .ok_or_else(|| format!("bad interpolation syntax in {value:?}"))?;
            let name = r[..end].to_lowercase();
            let v = lookup
                .get(&name)
                .ok_or_else(|| format!("%({name})s refers to a key that is not set"))?;
            out.push_str(&interpolate(v, lookup, depth + 1)?);
            rest = &r[end + 2..];
        } else {
            return Err(format!("'%' must be followed by '%' or '(' in {value:?}"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// ConfigParser's `getboolean`.
fn boolean(value: &str) -> Option<bool> {
    match value.to_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Settings carbon's relay and aggregator read that fluxgate has no use for: where carbon
/// keeps its own files, its logging, its cache and tag-database tuning, flow-control
/// internals. Named in a comment, never a problem.
const NO_BEARING: &[&str] = &[
    "user",
    "pid_dir",
    "log_dir",
    "storage_dir",
    "local_data_dir",
    "whitelists_dir",
    "conf_dir",
    "database",
    "enable_logrotation",
    "log_updates",
    "log_creates",
    "log_cache_hits",
    "log_cache_queue_sorts",
    "log_listener_connections",
    "log_listener_conn_success",
    "log_aggregator_misses",
    "max_cache_size",
    "max_updates_per_second",
    "max_updates_per_second_on_shutdown",
    "max_creates_per_minute",
    "cache_query_interface",
    "cache_query_port",
    "cache_write_strategy",
    "write_back_frequency",
    "whisper_autoflush",
    "whisper_sparse_create",
    "whisper_fallocate_create",
    "whisper_lock_writes",
    "whisper_fadvise_random",
    "ceres_max_slice_gap",
    "ceres_node_caching_behavior",
    "ceres_slice_caching_behavior",
    "ceres_lock_writes",
    "use_flow_control",
    "max_queue_size",
    "queue_low_watermark_pct",
    "time_to_defer_sending",
    "tcp_keepalive",
    "tcp_keepidle",
    "tcp_keepintvl",
    "tcp_keepcnt",
    "min_reset_stat_flow",
    "min_reset_ratio",
    "min_reset_interval",
    "use_ratio_reset",
    "enable_manhole",
    "manhole_interface",
    "manhole_port",
    "manhole_user",
    "manhole_public_key",
    "manhole_host_key_dir",
    "graphite_url",
    "enable_tags",
    "tag_update_interval",
    "tag_batch_size",
    "tag_queue_size",
    "tag_hash_filenames",
    "use_insecure_unpickler",
    "cache_metric_names_max",
    "cache_metric_names_ttl",
    "min_timestamp_resolution",
    "min_timestamp_lag",
    "dynamic_router_max_retries",
    "relay_rules",
    "aggregation_rules",
    "rewrite_rules",
    "log_cache_performance",
    "cache_size_low_watermark",
    "max_receiver_connections_per_ip",
];

/// Imports carbon.conf (with relay-rules.conf / aggregation-rules.conf where they apply).
pub fn import(
    carbon_conf: &Path,
    relay_rules: Option<&Path>,
    aggregation_rules: Option<&Path>,
) -> Result<Imported, ImportError> {
    let file = carbon_conf.display().to_string();
    let ini = Ini::parse(&read(carbon_conf)?, &file)?;
    let program = if aggregation_rules.is_some() || ini.section("relay").is_none() {
        if ini.section("aggregator").is_some() {
            "aggregator"
        } else if ini.section("relay").is_some() {
            "relay"
        } else {
            return Err(ImportError::syntax(
                &file,
                1,
                "no [relay] or [aggregator] section: nothing a relay does to import",
            ));
        }
    } else {
        "relay"
    };
    let entries = ini.resolved(program, &file)?;
    let section_line = ini.section(program).map_or(1, |s| s.line);
    let conf_dir = carbon_conf
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."));

    let mut problems = Vec::new();
    let mut ignored: Vec<String> = Vec::new();
    let mut used: HashSet<&str> = HashSet::new();
    let get = |key: &str| entries.iter().find(|e| e.key == key);
    let problem = |e: &Entry, reason: String| Problem {
        file: file.clone(),
        line: e.line,
        statement: format!("{} = {}", e.key.to_uppercase(), e.value),
        reason,
    };
    let int = |key: &str, default: i64| -> Result<i64, ImportError> {
        match get(key) {
            None => Ok(default),
            Some(e) => e.value.parse().map_err(|_| {
                ImportError::syntax(
                    &file,
                    e.line,
                    format!("{}: not a number: {:?}", key.to_uppercase(), e.value),
                )
            }),
        }
    };
    let flag = |key: &str, default: bool| -> Result<bool, ImportError> {
        match get(key) {
            None => Ok(default),
            Some(e) => boolean(&e.value).ok_or_else(|| {
                ImportError::syntax(
                    &file,
                    e.line,
                    format!("{}: not a boolean: {:?}", key.to_uppercase(), e.value),
                )
            }),
        }
    };
    let text = |key: &str, default: &str| get(key).map_or(default.to_owned(), |e| e.value.clone());

    // Listeners.
    let mut listeners = Doc::default();
    let address = |iface: &str, port: i64| -> String {
        if iface.contains(':') {
            format!("[{iface}]:{port}")
        } else {
            format!("{iface}:{port}")
        }
    };
    for k in [
        "line_receiver_interface",
        "line_receiver_port",
        "enable_udp_listener",
        "udp_receiver_interface",
        "udp_receiver_port",
        "pickle_receiver_interface",
        "pickle_receiver_port",
        "pickle_receiver_max_length",
        "max_receiver_connections",
    ] {
        used.insert(k);
    }
    let line_port = int("line_receiver_port", 2003)?;
    let pickle_port = int("pickle_receiver_port", 2004)?;
    let udp_port = int("udp_receiver_port", 2003)?;
    let max_conn = get("max_receiver_connections")
        .map(|e| e.value.clone())
        .filter(|v| v != "inf");
    listeners.comment(&format!(
        "carbon-{program}'s receivers ({file} [{program}], carbon's defaults where a key is absent)."
    ));
    listeners.table("listeners.plaintext");
    if line_port > 0 {
        listeners.string(
            "tcp",
            &address(&text("line_receiver_interface", "0.0.0.0"), line_port),
            None,
        );
    }
    if flag("enable_udp_listener", false)? && udp_port > 0 {
        listeners.string(
            "udp",
            &address(&text("udp_receiver_interface", "0.0.0.0"), udp_port),
            None,
        );
    }
    if let Some(n) = &max_conn {
        listeners.raw("max_connections", n, Some("MAX_RECEIVER_CONNECTIONS"));
    }
    listeners.blank();
    listeners.table("listeners.pickle");
    if pickle_port > 0 {
        listeners.string(
            "tcp",
            &address(&text("pickle_receiver_interface", "0.0.0.0"), pickle_port),
            None,
        );
    }
    listeners.raw(
        "max_frame_bytes",
        &int("pickle_receiver_max_length", 1 << 20)?.to_string(),
        Some("PICKLE_RECEIVER_MAX_LENGTH"),
    );
    if let Some(n) = &max_conn {
        listeners.raw("max_connections", n, Some("MAX_RECEIVER_CONNECTIONS"));
    }

    // Where data goes.
    for k in [
        "relay_method",
        "destinations",
        "replication_factor",
        "diverse_replicas",
        "destination_protocol",
        "destination_transport",
        "destination_ssl_ca",
        "max_datapoints_per_message",
        "router_hash_type",
        "dynamic_router",
        "destination_pool_replicas",
        "tag_relay_normalized",
        "forward_all",
        "max_aggregation_intervals",
        "use_whitelist",
        "enable_amqp",
        "carbon_metric_prefix",
        "carbon_metric_interval",
    ] {
        used.insert(k);
    }
    let method = if program == "aggregator" {
        // carbon-aggregator always hashes (service.py sets it).
        "consistent-hashing".to_owned()
    } else {
        text("relay_method", "rules")
    };
    let destinations: Vec<String> = get("destinations")
        .map(|e| {
            e.value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<crate::cluster::Destination>()
                        .map_or_else(|_| s.to_owned(), |d| d.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let protocol = match text("destination_protocol", "pickle").as_str() {
        "pickle" => "pickle",
        "line" => "plaintext",
        other => {
            let e = get("destination_protocol").expect("a non-default value was read");
            return Ok(fail_early(
                &file,
                problem(e, format!("fluxgate speaks pickle and line, not {other:?}")),
            ));
        }
    };
    let tls = match text("destination_transport", "none").as_str() {
        "none" => false,
        "ssl" => true,
        other => {
            let e = get("destination_transport").expect("a non-default value was read");
            problems.push(problem(e, format!("fluxgate has no {other:?} transport")));
            false
        }
    };
    let tls_ca = get("destination_ssl_ca")
        .map(|e| e.value.clone())
        .filter(|v| v != "None");
    let batch = int("max_datapoints_per_message", 500)?;
    for (key, bad, reason) in [
        (
            "dynamic_router",
            true,
            "fluxgate never moves a series to another destination while one is down",
        ),
        (
            "destination_pool_replicas",
            true,
            "fluxgate has no pooled replicas",
        ),
        (
            "tag_relay_normalized",
            true,
            "fluxgate hashes and forwards tagged names as they came",
        ),
        (
            "use_whitelist",
            true,
            "fluxgate has no whitelist.conf / blacklist.conf filter",
        ),
        ("enable_amqp", true, "fluxgate has no AMQP input"),
    ] {
        if let Some(e) = get(key) {
            if boolean(&e.value) == Some(bad) {
                problems.push(problem(e, reason.to_owned()));
            }
        }
    }
    if let Some(e) = get("router_hash_type") {
        if !matches!(e.value.as_str(), "None" | "md5" | "") {
            problems.push(problem(
                e,
                "fluxgate's carbon_ch ring is carbon's MD5 ring only".into(),
            ));
        }
    }
    // carbon's own metrics (instrumentation.py): `<prefix>.relays.<host>-<instance>.*`
    // (`aggregator` for the aggregator), every CARBON_METRIC_INTERVAL seconds, into its own
    // pipeline. The instance is `a` unless carbon was started with --instance.
    let mut telemetry = Doc::default();
    let interval = int("carbon_metric_interval", 60)?;
    if interval > 0 {
        let kind = if program == "aggregator" {
            "aggregator"
        } else {
            "relays"
        };
        telemetry.comment(&format!(
            "carbon-{program}'s own metrics (CARBON_METRIC_PREFIX, CARBON_METRIC_INTERVAL), named\n\
             as fluxgate's telemetry names them (metricsReceived, cpuUsage, memUsage... as carbon);\n\
             `-a` is carbon's default instance: change it to the --instance carbon ran with."
        ));
        telemetry.table("telemetry");
        telemetry.string(
            "graphite_prefix",
            &format!("{}.{kind}.<host>-a", text("carbon_metric_prefix", "carbon")),
            None,
        );
        telemetry.string("interval", &format!("{interval}s"), None);
    }

    let mut outputs = Doc::default();
    let mut routes = Doc::default();
    let output_keys = |doc: &mut Doc| {
        doc.string("protocol", protocol, Some("DESTINATION_PROTOCOL"));
        if batch != 500 {
            let b = batch.clamp(1, 500);
            let note = if batch > 500 {
                "MAX_DATAPOINTS_PER_MESSAGE; a pickle frame holds at most 500"
            } else {
                "MAX_DATAPOINTS_PER_MESSAGE"
            };
            doc.raw("batch_size", &b.to_string(), Some(note));
        }
        if tls {
            doc.raw("tls", "true", Some("DESTINATION_TRANSPORT = ssl"));
            if let Some(ca) = &tls_ca {
                doc.string("tls_ca", ca, None);
            }
        }
    };
    let check_destination = |d: &str, line: usize| -> Result<String, ImportError> {
        d.parse::<crate::cluster::Destination>()
            .map(|d| d.to_string())
            .map_err(|e| ImportError::syntax(&file, line, e.to_string()))
    };
    let dest_line = get("destinations").map_or(section_line, |e| e.line);
    let mut sources = vec![file.clone()];
    match method.as_str() {
        "consistent-hashing" => {
            if destinations.is_empty() {
                return Err(ImportError::syntax(
                    &file,
                    dest_line,
                    "RELAY_METHOD = consistent-hashing needs DESTINATIONS",
                ));
            }
            for d in &destinations {
                check_destination(d, dest_line)?;
            }
            outputs.comment("RELAY_METHOD = consistent-hashing: carbon's ring over DESTINATIONS.");
            outputs.array_table("outputs.graphite");
            outputs.string("name", "carbon", None);
            output_keys(&mut outputs);
            outputs.string("cluster", "carbon_ch", None);
            outputs.raw(
                "replication",
                &int("replication_factor", 1)?.to_string(),
                Some("REPLICATION_FACTOR"),
            );
            outputs.raw(
                "diverse_replicas",
                &flag("diverse_replicas", true)?.to_string(),
                Some("DIVERSE_REPLICAS"),
            );
            outputs.raw("destinations", &quote_all(&destinations), None);
        }
        "rules" => {
            let path = relay_rules
                .map(Path::to_owned)
                .unwrap_or_else(|| conf_dir.join(text("relay_rules", "relay-rules.conf")));
            let rules_file = path.display().to_string();
            sources.push(rules_file.clone());
            let rules = Ini::parse(&read(&path)?, &rules_file)?;
            let mut seen: Vec<String> = Vec::new();
            let mut skipped: Vec<String> = Vec::new();
            let mut default_rule: Option<(usize, Vec<String>)> = None;
            let mut rule_docs = Doc::default();
            for section in &rules.sections {
                let entries = rules.resolved(&section.name, &rules_file)?;
                let find = |k: &str| entries.iter().find(|e| e.key == k);
                let Some(dests) = find("destinations") else {
                    return Err(ImportError::syntax(
                        &rules_file,
                        section.line,
                        format!(
                            "section [{}] does not define a 'destinations' list",
                            section.name
                        ),
                    ));
                };
                let mut list = Vec::new();
                for d in dests
                    .value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    let d = check_destination(d, dests.line)?;
                    // carbon's RelayRulesRouter yields only destinations it has a client
                    // for, the ones in DESTINATIONS.
                    if !destinations.contains(&d) {
                        skipped.push(format!(
                            "{rules_file}:{}: {d} is not in DESTINATIONS, so carbon sends nothing there",
                            dests.line
                        ));
                        continue;
                    }
                    if !seen.contains(&d) {
                        seen.push(d.clone());
                    }
                    if !list.contains(&d) {
                        list.push(d);
                    }
                }
                match (find("pattern"), find("default")) {
                    (Some(_), Some(_)) => {
                        return Err(ImportError::syntax(
                            &rules_file,
                            section.line,
                            format!(
                                "section [{}] has both 'pattern' and 'default'",
                                section.name
                            ),
                        ))
                    }
                    (Some(p), None) => {
                        let cont = match find("continue") {
                            None => false,
                            Some(e) => boolean(&e.value).ok_or_else(|| {
                                ImportError::syntax(&rules_file, e.line, "continue: not a boolean")
                            })?,
                        };
                        let pattern = format!("(?i){}", p.value);
                        rule_docs.blank();
                        rule_docs.comment(&format!(
                            "{rules_file}:{}: [{}]",
                            section.line, section.name
                        ));
                        if let Err(e) = regex::Regex::new(&pattern) {
                            let pr = Problem {
                                file: rules_file.clone(),
                                line: p.line,
                                statement: format!("pattern = {}", p.value),
                                reason: format!("not a regular expression fluxgate reads: {e}"),
                            };
                            rule_docs.not_imported(&pr);
                            problems.push(pr);
                            continue;
                        }
                        match (list.is_empty(), cont) {
                            (true, true) => continue,
                            (true, false) => {
                                rule_docs.array_table("routes");
                                rule_docs.string("match", &pattern, Some("re.search with re.I"));
                                rule_docs.raw("drop", "true", Some("no destination carbon has"));
                            }
                            (false, _) => {
                                rule_docs.array_table("routes");
                                rule_docs.string("match", &pattern, Some("re.search with re.I"));
                                rule_docs.raw("outputs", &quote_all(&list), None);
                                if !cont {
                                    rule_docs.raw("stop", "true", None);
                                }
                            }
                        }
                    }
                    (None, Some(d)) => {
                        let on = boolean(&d.value).ok_or_else(|| {
                            ImportError::syntax(&rules_file, d.line, "default: not a boolean")
                        })?;
                        if !on {
                            continue;
                        }
                        if default_rule.is_some() {
                            return Err(ImportError::syntax(
                                &rules_file,
                                section.line,
                                "only one default rule can be specified",
                            ));
                        }
                        default_rule = Some((section.line, list));
                    }
                    (None, None) => {}
                }
            }
            let Some((line, list)) = default_rule else {
                return Err(ImportError::syntax(
                    &rules_file,
                    1,
                    "no default rule defined (a section with 'default = true')",
                ));
            };
            rule_docs.blank();
            rule_docs.comment(&format!(
                "{rules_file}:{line}: the default rule, always last"
            ));
            rule_docs.array_table("routes");
            rule_docs.string("match", "*", None);
            if list.is_empty() {
                rule_docs.raw("drop", "true", Some("no destination carbon has"));
            } else {
                rule_docs.raw("outputs", &quote_all(&list), None);
                rule_docs.raw("stop", "true", None);
            }
            for note in &skipped {
                outputs.comment(note);
            }
            outputs.comment(
                "RELAY_METHOD = rules: one output per destination of relay-rules.conf,\n\
                 named after it.",
            );
            for d in &seen {
                outputs.blank();
                outputs.array_table("outputs.graphite");
                outputs.string("name", d, None);
                output_keys(&mut outputs);
                outputs.string("cluster", "forward", None);
                outputs.raw("destinations", &quote_all(std::slice::from_ref(d)), None);
            }
            routes.comment("relay-rules.conf, top to bottom; a rule without `continue` stops.");
            routes.out.push_str(&rule_docs.finish());
        }
        other => {
            let e = get("relay_method").expect("a non-default value was read");
            let reason = match other {
                "aggregated-consistent-hashing" | "fast-aggregated-hashing" => {
                    "fluxgate does not hash by the aggregate a metric feeds".to_owned()
                }
                "fast-hashing" => "fluxgate's carbon_ch ring is carbon's MD5 ring only".to_owned(),
                _ => format!("carbon knows no RELAY_METHOD {other:?}"),
            };
            problems.push(problem(e, reason));
        }
    }

    // Aggregation (carbon-aggregator).
    let mut aggregation = Doc::default();
    let mut rewrites = String::new();
    if program == "aggregator" {
        let path = aggregation_rules
            .map(Path::to_owned)
            .unwrap_or_else(|| conf_dir.join(text("aggregation_rules", "aggregation-rules.conf")));
        let rules_file = path.display().to_string();
        let count = check_aggregation_rules(&read(&path)?, &rules_file)?;
        sources.push(rules_file);
        let absolute = std::path::absolute(&path).unwrap_or(path);
        aggregation.comment(&format!(
            "carbon-aggregator: {count} rule(s) of {}, read as carbon reads them.",
            absolute.display()
        ));
        aggregation.table("aggregation");
        aggregation.string("carbon_rules", &absolute.display().to_string(), None);
        aggregation.raw(
            "forward_inputs",
            &flag("forward_all", true)?.to_string(),
            Some("FORWARD_ALL"),
        );
        aggregation.raw(
            "max_intervals",
            &int("max_aggregation_intervals", 5)?.to_string(),
            Some("MAX_AGGREGATION_INTERVALS"),
        );
        let rewrite = conf_dir.join(text("rewrite_rules", "rewrite-rules.conf"));
        if rewrite.is_file() {
            let rewrite_file = rewrite.display().to_string();
            sources.push(rewrite_file.clone());
            rewrites = rewrite_rules(&read(&rewrite)?, &rewrite_file, &mut problems);
        }
    }

    for e in &entries {
        if !used.contains(e.key.as_str()) {
            let why = if NO_BEARING.contains(&e.key.as_str()) {
                "no bearing on what a relay sends"
            } else {
                "not a setting carbon's relay reads"
            };
            ignored.push(format!(
                "{}:{}: {} ({why})",
                file,
                e.line,
                e.key.to_uppercase()
            ));
        }
    }
    let others: Vec<String> = ini
        .sections
        .iter()
        .filter(|s| s.name != program)
        .map(|s| format!("[{}] (line {})", s.name, s.line))
        .collect();

    let mut doc = Doc::default();
    doc.comment(&format!(
        "fluxgate configuration imported from carbon-{program}'s {}\n(`fluxgate import carbon`).",
        sources.join(", ")
    ));
    if !others.is_empty() {
        doc.comment(&format!(
            "Not carbon-{program}'s, so not imported: {} (carbon-cache stores data; fluxgate\n\
             relays it).",
            others.join(", ")
        ));
    }
    if !ignored.is_empty() {
        doc.comment("Left out, as they do not change where data goes:");
        for i in &ignored {
            doc.comment(&format!("  {i}"));
        }
    }
    doc.problems(&problems);
    doc.blank();
    doc.out.push_str(&listeners.finish());
    doc.blank();
    doc.out.push_str(&outputs.finish());
    doc.blank();
    if !routes.out.is_empty() {
        doc.out.push_str(&routes.finish());
        doc.blank();
    }
    if !aggregation.out.is_empty() {
        doc.out.push_str(&aggregation.finish());
        doc.blank();
    }
    if !rewrites.is_empty() {
        doc.out.push_str(&rewrites);
        doc.blank();
    }
    if !telemetry.out.is_empty() {
        doc.out.push_str(&telemetry.finish());
        doc.blank();
    }
    Ok(Imported {
        config: doc.finish(),
        problems,
    })
}

/// An import that stops at its first problem (a setting that makes the rest meaningless).
fn fail_early(file: &str, p: Problem) -> Imported {
    let mut doc = Doc::default();
    doc.comment(&format!("fluxgate configuration imported from {file}"));
    doc.problems(std::slice::from_ref(&p));
    Imported {
        config: doc.finish(),
        problems: vec![p],
    }
}

/// carbon-aggregator's rewrite-rules.conf (`carbon/rewrite.py`): `[pre]` and `[post]`
/// sections of `regex = replacement` lines, each applied with Python's `re.sub` (every match
/// replaced) in order; a rule outside those sections is never applied.
fn rewrite_rules(text: &str, file: &str, problems: &mut Vec<Problem>) -> String {
    let mut doc = Doc::default();
    let mut section: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = Some(line[1..line.len() - 1].to_lowercase());
            continue;
        }
        let problem = |reason: String| Problem {
            file: file.to_owned(),
            line: i + 1,
            statement: super::shorten(line),
            reason,
        };
        let Some((pattern, replacement)) = line.split_once('=') else {
            continue; // carbon logs and skips it
        };
        let (pattern, replacement) = (pattern.trim(), replacement.trim());
        let stage = match section.as_deref() {
            Some("pre") => "pre",
            Some("post") => "post",
            _ => continue, // carbon never applies it
        };
        let converted = regex::Regex::new(pattern)
            .map_err(|e| format!("not a regular expression fluxgate reads: {e}"))
            .and_then(|_| python_replacement(replacement));
        match converted {
            Ok(replace) => {
                doc.blank();
                doc.comment(&format!("{file}:{}: [{stage}] {line}", i + 1));
                doc.array_table("rewrite");
                doc.string("match", pattern, None);
                doc.string("replace", &replace, None);
                doc.string("stage", stage, None);
                doc.raw("replace_all", "true", Some("re.sub replaces every match"));
            }
            Err(reason) => {
                let p = problem(reason);
                doc.blank();
                doc.not_imported(&p);
                problems.push(p);
            }
        }
    }
    doc.finish()
}

/// A Python `re.sub` replacement in fluxgate's syntax: `\1` and `\g<1>` / `\g<name>` are
/// groups, `\\` a backslash, `$` literal.
fn python_replacement(replacement: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.next() {
                Some(d) if d.is_ascii_digit() => {
                    let mut n = d.to_string();
                    if let Some(e) = chars.peek().filter(|e| e.is_ascii_digit()) {
                        n.push(*e);
                        chars.next();
                    }
                    out.push_str(&format!("${{{n}}}"));
                }
                Some('g') if chars.peek() == Some(&'<') => {
                    chars.next();
                    let name: String = chars.by_ref().take_while(|&c| c != '>').collect();
                    out.push_str(&format!("${{{name}}}"));
                }
                Some('\\') => out.push_str("\\\\"),
                Some(other) => {
                    return Err(format!(
                        "the escape `\\{other}` in {replacement:?} has no equivalent"
                    ))
                }
                None => return Err(format!("{replacement:?} ends with a lone `\\`")),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The aggregation methods of carbon 1.1.7's `aggregator/rules.py`.
const AGGREGATION_METHODS: &[&str] = &[
    "sum", "avg", "min", "max", "p50", "p75", "p80", "p90", "p95", "p99", "p999", "count",
];

/// Checks each rule as carbon's `RuleManager.parse_definition` parses it
/// (`output (frequency) = method input`), returning how many there are; a line carbon would
/// refuse is an error with its line.
fn check_aggregation_rules(text: &str, file: &str) -> Result<usize, ImportError> {
    let mut count = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |m: &str| ImportError::syntax(file, i + 1, format!("{m}: {line:?}"));
        let (left, right) = line.split_once('=').ok_or_else(|| bad("no `=`"))?;
        let left: Vec<&str> = left.split_whitespace().collect();
        let right: Vec<&str> = right.split_whitespace().collect();
        let ([_, frequency], [method, _]) = (&left[..], &right[..]) else {
            return Err(bad("expected `output (frequency) = method input`"));
        };
        let frequency = frequency.trim_start_matches('(').trim_end_matches(')');
        if frequency.parse::<i64>().is_err() {
            return Err(bad("the frequency is not a whole number of seconds"));
        }
        if !AGGREGATION_METHODS.contains(method) {
            return Err(bad(&format!("unknown aggregation method {method:?}")));
        }
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn ini_is_read_as_configparser_reads_it() {
        let ini = Ini::parse(
            "# c\n[DEFAULT]\nbase = /srv\n[relay]\nA = %(base)s/x\n; c\nB: 1,\n  2\n",
            "f",
        )
        .unwrap();
        let e = ini.resolved("relay", "f").unwrap();
        let v: Vec<(&str, &str)> = e
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(v, [("a", "/srv/x"), ("b", "1,\n2"), ("base", "/srv")]);
        assert!(Ini::parse("[a]\nx=1\nx=2\n", "f").is_err());
        assert!(Ini::parse("x=1\n", "f").is_err());
    }

    #[test]
    fn consistent_hashing_relay() {
        let dir = tempfile::tempdir().unwrap();
        let conf = write(
            dir.path(),
            "carbon.conf",
            "[cache]\nLINE_RECEIVER_PORT = 2003\n[relay]\nLINE_RECEIVER_INTERFACE = 127.0.0.1\n\
             LINE_RECEIVER_PORT = 2013\nPICKLE_RECEIVER_PORT = 2014\nRELAY_METHOD = consistent-hashing\n\
             REPLICATION_FACTOR = 2\nDESTINATIONS = 127.0.0.1:2104:a, 127.0.0.1:2204:b\n\
             LOG_LISTENER_CONNECTIONS = True\nMAX_QUEUE_SIZE = 10000\n",
        );
        let out = import(&conf, None, None).unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let c = crate::Config::from_toml(&out.config, "imported").unwrap();
        assert_eq!(c.listeners.plaintext.tcp.as_deref(), Some("127.0.0.1:2013"));
        assert_eq!(c.listeners.pickle.tcp.as_deref(), Some("0.0.0.0:2014"));
        let o = &c.outputs.graphite[0];
        assert_eq!(o.cluster, crate::cluster::ClusterKind::CarbonCh);
        assert_eq!(o.replication, 2);
        assert_eq!(o.destinations, ["127.0.0.1:2104:a", "127.0.0.1:2204:b"]);
        assert!(out.config.contains("[cache] (line 1)"), "{}", out.config);
        assert_eq!(
            c.telemetry.graphite_prefix.as_deref(),
            Some("carbon.relays.<host>-a")
        );
    }

    #[test]
    fn rules_relay() {
        let dir = tempfile::tempdir().unwrap();
        let conf = write(
            dir.path(),
            "carbon.conf",
            "[relay]\nRELAY_METHOD = rules\nDESTINATION_PROTOCOL = line\nDESTINATIONS = 127.0.0.1:2003, 127.0.0.2:2003\n",
        );
        write(
            dir.path(),
            "relay-rules.conf",
            "[web]\npattern = ^servers\\.web\ndestinations = 127.0.0.1:2003, 127.0.0.2:2003\n\
             continue = true\n[default]\ndefault = true\ndestinations = 127.0.0.2:2003\n",
        );
        let out = import(&conf, None, None).unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let c = crate::Config::from_toml(&out.config, "imported").unwrap();
        assert_eq!(c.output_names(), ["127.0.0.1:2003", "127.0.0.2:2003"]);
        assert_eq!(c.routes.len(), 2);
        assert!(!c.routes[0].stop && c.routes[1].stop);
        assert_eq!(
            c.outputs.graphite[0].protocol,
            crate::config::GraphiteProtocol::Plaintext
        );
    }

    #[test]
    fn unmappable_settings_have_lines() {
        let dir = tempfile::tempdir().unwrap();
        let conf = write(
            dir.path(),
            "carbon.conf",
            "[relay]\nRELAY_METHOD = consistent-hashing\nDESTINATIONS = 127.0.0.1:2004\n\
             DYNAMIC_ROUTER = True\nROUTER_HASH_TYPE = mmh3\n",
        );
        let out = import(&conf, None, None).unwrap();
        let lines: Vec<usize> = out.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [4, 5]);
    }

    #[test]
    fn aggregator_rules_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let conf = write(
            dir.path(),
            "carbon.conf",
            "[aggregator]\nLINE_RECEIVER_PORT = 2023\nDESTINATIONS = 127.0.0.1:2004\nFORWARD_ALL = False\n",
        );
        let rules = write(
            dir.path(),
            "agg.conf",
            "# c\n<env>.total (60) = sum <env>.*.requests\n",
        );
        let out = import(&conf, None, Some(&rules)).unwrap();
        assert!(out.config.contains("carbon_rules = "), "{}", out.config);
        assert!(
            out.config.contains("forward_inputs = false"),
            "{}",
            out.config
        );
        std::fs::write(
            dir.path().join("rewrite-rules.conf"),
            "[pre]\n^collectd\\.(\\w+)\\. = servers.\\1.\n[post]\n_sum$ = .sum$\n[other]\nx = y\n",
        )
        .unwrap();
        let out = import(&conf, None, Some(&rules)).unwrap();
        assert!(out.problems.is_empty(), "{:?}", out.problems);
        let c = crate::Config::from_toml(&out.config, "imported").unwrap();
        assert_eq!(c.rewrite.len(), 2, "{}", out.config);
        assert_eq!(c.rewrite[0].replace, "servers.${1}.");
        assert_eq!(c.rewrite[1].replace, ".sum$$");
        assert!(c.rewrite[1].replace_all);
        let bad = write(dir.path(), "bad.conf", "a (60) = median b\n");
        let e = import(&conf, None, Some(&bad)).unwrap_err().to_string();
        assert!(
            e.contains("bad.conf:1: unknown aggregation method \"median\""),
            "{e}"
        );
    }
}
