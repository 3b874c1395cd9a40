//! `fluxgate check` and `fluxgate dry-run`: what a config builds and what each input metric
//! becomes, computed by the same translation code the gateway runs, sending nothing.

use std::{
    fmt::Write as _,
    io::{BufRead, Write},
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::json;

use crate::{
    config::{Config, InfluxApi},
    output::influxdb::{Destination, Target},
    route::{NameScratch, Origin, OutputSet, Router},
    translate::{graphite::TemplateSet, influx::InfluxToGraphite},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Graphite,
    Line,
}

/// A human-readable account of the listeners, translation and outputs a config builds.
pub fn describe(config: &Config) -> String {
    let mut s = String::from("configuration OK\n\nlisteners:\n");
    let l = &config.listeners;
    let mut any = false;
    for (name, addr, extra) in [
        (
            "plaintext tcp",
            &l.plaintext.tcp,
            format!(
                "max_line_bytes={} max_connections={} idle_timeout={:?}{}",
                l.plaintext.max_line_bytes,
                l.plaintext.max_connections,
                l.plaintext.idle_timeout,
                tls_note(&l.plaintext.tls_cert, &l.plaintext.tls_client_ca)
            ),
        ),
        (
            "plaintext udp",
            &l.plaintext.udp,
            format!("max_datagram_bytes={}", l.plaintext.max_datagram_bytes),
        ),
        (
            "pickle tcp",
            &l.pickle.tcp,
            format!(
                "max_frame_bytes={} max_connections={} idle_timeout={:?}{}",
                l.pickle.max_frame_bytes,
                l.pickle.max_connections,
                l.pickle.idle_timeout,
                tls_note(&l.pickle.tls_cert, &l.pickle.tls_client_ca)
            ),
        ),
        (
            "http",
            &l.http.address,
            format!(
                "max_body_bytes={} max_connections={} header_timeout={:?} idle_timeout={:?} \
                 auth={} (users: {}, tokens: {}) metrics_auth={} query={} ack={:?}{}",
                l.http.max_body_bytes,
                l.http.max_connections,
                l.http.header_timeout,
                l.http.idle_timeout,
                if l.http.auth_enabled() { "on" } else { "off" },
                l.http.users.len(),
                l.http.tokens.len(),
                l.http.metrics_needs_auth(),
                l.http.query,
                l.http.ack,
                tls_note(&l.http.tls_cert, &l.http.tls_client_ca)
            ),
        ),
        (
            "statsd udp",
            &l.statsd.udp,
            format!(
                "flush_interval={:?} recv_buffer_bytes={}",
                l.statsd.flush_interval, l.statsd.udp_receive_buffer
            ),
        ),
        (
            "statsd tcp",
            &l.statsd.tcp,
            format!(
                "flush_interval={:?} max_line_bytes={} max_connections={} idle_timeout={:?}",
                l.statsd.flush_interval,
                l.statsd.max_line_bytes,
                l.statsd.max_connections,
                l.statsd.idle_timeout
            ),
        ),
        (
            "line udp",
            &l.line_udp.udp,
            format!(
                "db={:?} rp={:?} precision={} batch_size={}",
                l.line_udp.database,
                l.line_udp.retention_policy,
                l.line_udp.precision,
                l.line_udp.batch_size
            ),
        ),
        (
            "telemetry",
            &config.telemetry.address,
            format!("/metrics metrics_auth={}", l.http.metrics_needs_auth()),
        ),
    ] {
        if let Some(a) = addr {
            any = true;
            let _ = writeln!(s, "  {name:<14} {a}  ({extra})");
        }
    }
    let n = &l.nats;
    if n.enabled() {
        any = true;
        let servers: Vec<String> = n
            .servers
            .iter()
            .map(|s| crate::config::redact_url(s))
            .collect();
        let _ = writeln!(
            s,
            "  {:<14} {}  (stream={:?} consumer={:?} filter_subject={:?} ack_wait={:?} max_ack_pending={} batch={}{})",
            "nats",
            servers.join(","),
            n.stream,
            n.consumer,
            n.filter_subject,
            n.ack_wait,
            n.max_ack_pending,
            n.batch,
            if n.tls { " tls" } else { "" }
        );
    }
    if !any {
        s.push_str("  (none)\n");
    }
    if !config.inputs.is_empty() {
        s.push_str("\ninputs:\n");
    }
    for p in &config.inputs.http_poll {
        let _ = writeln!(
            s,
            "  http_poll {:?} {}  (interval={:?} timeout={:?} measurement={:?} sensors={})",
            p.name,
            crate::config::redact_url(&p.url),
            p.interval,
            p.timeout(),
            p.measurement,
            p.sensors.len()
        );
    }
    if let Some(prefix) = &config.telemetry.graphite_prefix {
        let _ = writeln!(
            s,
            "\ntelemetry: {}.* every {:?}{}",
            crate::telemetry::expand_prefix(prefix, &crate::telemetry::hostname()),
            config.telemetry.interval,
            if config.telemetry.reset_counters {
                " (counters reset each interval)"
            } else {
                ""
            }
        );
    }
    let g = &config.graphite;
    let _ = writeln!(
        s,
        "\ngraphite -> influxdb: separator {:?}, {} template(s), global tags {:?}",
        g.separator,
        g.templates.len(),
        g.tags
    );
    for t in &g.templates {
        let _ = writeln!(s, "  {t}");
    }
    s.push_str("\noutputs:\n");
    if config.output_names().is_empty() {
        s.push_str("  (none: accepted points go nowhere)\n");
    }
    for o in &config.outputs.influxdb {
        let dest = match o.api {
            InfluxApi::V1 => format!("db={:?} rp={:?}", o.database, o.retention_policy),
            InfluxApi::V2 => format!(
                "org={:?} bucket={:?}",
                o.org,
                if o.bucket.is_empty() {
                    &o.database
                } else {
                    &o.bucket
                }
            ),
        };
        let _ = writeln!(
            s,
            "  influxdb {:?} {} {} {dest} batch_size={} flush_interval={:?} linger={:?} max_in_flight={} queue_points={} overflow={:?} gzip={} buffer={:?} max_retry_time={:?}{}",
            o.name, o.api, crate::config::redact_url(&o.url), o.batch_size, o.flush_interval, o.linger, o.max_in_flight, o.queue_points, o.overflow, o.gzip, o.buffer, o.max_retry_time,
            o.tls_ca.as_deref().map(|ca| format!(" tls_ca={ca}")).unwrap_or_default()
        );
    }
    for o in &config.outputs.graphite {
        let tls = if o.tls {
            format!(
                " tls (ca: {}, server name: {})",
                o.tls_ca.as_deref().unwrap_or("system"),
                o.tls_server_name
                    .as_deref()
                    .unwrap_or("each destination's host")
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  graphite {:?} {:?} cluster={} replication={} destinations={:?} batch_size={} queue_points={} (per destination) overflow={:?} stall_timeout={:?} buffer={:?} template={:?}{tls}",
            o.name, o.protocol, o.cluster, o.replication, o.destinations, o.batch_size, o.queue_points, o.overflow, o.stall_timeout, o.buffer, o.template
        );
    }
    for o in &config.outputs.nats {
        let servers: Vec<String> = o
            .servers
            .iter()
            .map(|s| crate::config::redact_url(s))
            .collect();
        let _ = writeln!(
            s,
            "  nats {:?} {} stream={:?} (created if missing: subjects={:?} replicas={} max_bytes={}) subject={:?} partitions={} format={} batch_size={} max_message_bytes={} max_in_flight={} queue_points={} overflow={:?} max_retry_time={:?}{}",
            o.name,
            servers.join(","),
            o.stream,
            o.stream_subjects(),
            o.replicas,
            o.max_bytes,
            o.subject,
            o.partitions,
            o.format.as_str(),
            o.batch_size,
            o.max_message_bytes,
            o.max_in_flight,
            o.queue_points,
            o.overflow,
            o.max_retry_time,
            if o.tls { " tls" } else { "" }
        );
    }
    if config.routes.is_empty() {
        s.push_str("\nroutes: none, every output receives every point\n");
    } else {
        s.push_str("\nroutes (top to bottom):\n");
        for (i, r) in config.routes.iter().enumerate() {
            let what = match (&r.pattern, &r.prefix) {
                (Some(p), _) => format!("match {:?}", p.as_slice()),
                (None, Some(p)) => format!("prefix {:?}", p.as_slice()),
                (None, None) => "match nothing".to_string(),
            };
            let to = if r.drop {
                "drop".to_string()
            } else {
                r.outputs.join(", ")
            };
            let _ = writeln!(
                s,
                "  routes[{i}] {what} on {:?} -> {to}{}",
                r.on,
                if r.stop { " (stop)" } else { "" }
            );
        }
    }
    for (i, r) in config.rewrite.iter().enumerate() {
        let _ = writeln!(s, "  rewrite[{i}] {:?} -> {:?}", r.pattern, r.replace);
    }
    describe_aggregation(config, &mut s);
    s
}

/// The aggregation rules `check` lists, in the order inputs meet them.
fn describe_aggregation(config: &Config, s: &mut String) {
    let a = &config.aggregation;
    let inline = a.rules.len();
    if a.carbon_rules.is_some() || inline > 0 {
        let file = a
            .carbon_rules
            .as_ref()
            .map_or(String::new(), |p| format!("{} and ", p.display()));
        let _ = writeln!(
            s,
            "\naggregation (carbon-aggregator): rules from {file}{inline} inline, max_intervals={} forward_inputs={}",
            a.max_intervals, a.forward_inputs
        );
    }
    for (i, g) in config.aggregate.iter().enumerate() {
        let computes: Vec<String> = g
            .compute
            .iter()
            .map(|c| format!("{} -> {:?}", c.function, c.write_to))
            .collect();
        let to = g
            .send_to
            .as_ref()
            .map_or("routes".to_owned(), |o| o.as_slice().join(", "));
        let _ = writeln!(
            s,
            "  aggregate[{i}] match {:?} every {}s expire {}s timestamp {:?}: {} -> {to}{}",
            g.pattern.as_slice(),
            g.every.0,
            g.expire.0,
            g.timestamp,
            computes.join(", "),
            if g.stop { " (stop)" } else { "" }
        );
    }
}

/// ` tls (cert ..., client certificates required)` when a listener has TLS.
fn tls_note(cert: &Option<String>, client_ca: &Option<String>) -> String {
    match (cert, client_ca) {
        (None, _) => String::new(),
        (Some(c), None) => format!(" tls (cert {c})"),
        (Some(c), Some(ca)) => format!(" tls (cert {c}, client certificates from {ca} required)"),
    }
}

/// An output as `dry-run` sees it: enough to translate and place, nothing started.
enum DryOutput {
    Influx(crate::config::InfluxOutputConfig),
    Graphite {
        name: String,
        cluster: crate::cluster::Cluster,
        to_graphite: InfluxToGraphite,
    },
    Nats {
        name: String,
        format: crate::nats::Format,
        subjects: crate::output::nats::Subjects,
        to_graphite: InfluxToGraphite,
    },
}

/// What one input line becomes.
#[derive(Default)]
struct Outcome {
    name: Option<String>,
    route: Option<String>,
    points: Vec<String>,
    graphite: Vec<String>,
    destinations: Vec<(String, String)>,
    error: Option<String>,
}

/// Reads metrics from `input`, one per line, and writes what each becomes: the name after
/// cleansing and rewrites, the route taken, the line protocol and Graphite lines produced,
/// and the output and destination each goes to (carbon-c-relay's `-t`, for fluxgate).
pub fn run(
    config: &Config,
    kind: Input,
    json_out: bool,
    input: impl BufRead,
    mut out: impl Write,
) -> std::io::Result<()> {
    let other = |e: String| std::io::Error::other(e);
    let templates = config
        .graphite
        .templates()
        .map_err(|e| other(e.to_string()))?;
    let router = config.router().map_err(|e| other(e.to_string()))?;
    let mut outputs: Vec<DryOutput> = config
        .outputs
        .influxdb
        .iter()
        .cloned()
        .map(DryOutput::Influx)
        .collect();
    for g in &config.outputs.graphite {
        let destinations = g
            .destinations
            .iter()
            .map(|d| {
                d.parse::<crate::cluster::Destination>()
                    .map_err(|e| other(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        outputs.push(DryOutput::Graphite {
            name: g.name.clone(),
            cluster: crate::cluster::Cluster::new(
                g.cluster,
                destinations,
                g.replication,
                g.diverse_replicas,
            )
            .map_err(|e| other(e.to_string()))?,
            to_graphite: InfluxToGraphite::new(&g.to_graphite_config())
                .map_err(|e| other(e.to_string()))?,
        });
    }
    for n in &config.outputs.nats {
        outputs.push(DryOutput::Nats {
            name: n.name.clone(),
            format: n.format,
            subjects: crate::output::nats::Subjects::new(&n.subject, n.partitions)
                .map_err(other)?,
            to_graphite: InfluxToGraphite::new(&n.to_graphite_config())
                .map_err(|e| other(e.to_string()))?,
        });
    }
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    for line in input.lines() {
        let line = line?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if line.trim().is_empty() {
            continue;
        }
        let o = match kind {
            Input::Graphite => graphite_line(&templates, &router, &outputs, line, now_ns),
            Input::Line => line_protocol_line(&router, &outputs, line, now_ns),
        };
        if json_out {
            let v = json!({
                "input": line,
                "name": o.name,
                "route": o.route,
                "points": o.points,
                "graphite": o.graphite,
                "destinations": o.destinations.iter().map(|(o, d)| json!({"output": o, "destination": d})).collect::<Vec<_>>(),
                "error": o.error,
            });
            writeln!(out, "{v}")?;
        } else {
            writeln!(out, "{line}")?;
            if let Some(e) = &o.error {
                writeln!(out, "  error: {e}")?;
            }
            if let Some(n) = o
                .name
                .as_deref()
                .filter(|n| *n != line.split_whitespace().next().unwrap_or(""))
            {
                writeln!(out, "  name: {n}")?;
            }
            if let Some(r) = &o.route {
                for l in r.lines() {
                    writeln!(out, "  route: {l}")?;
                }
            }
            for p in o.points.iter().chain(&o.graphite) {
                writeln!(out, "  -> {p}")?;
            }
            for (o, d) in &o.destinations {
                writeln!(out, "  => output {o:?} destination {d}")?;
            }
        }
    }
    out.flush()
}

fn graphite_line(
    templates: &TemplateSet,
    router: &Router,
    outputs: &[DryOutput],
    line: &str,
    now_ns: i64,
) -> Outcome {
    let mut o = Outcome::default();
    let sample = match graphite_plaintext::parse_line(line.as_bytes()) {
        Ok(s) => s,
        Err(e) => {
            o.error = Some(e.to_string());
            return o;
        }
    };
    if sample.value.is_nan() {
        o.error = Some("value is NaN: dropped".into());
        return o;
    }
    let Some(ns) =
        crate::listener::graphite::to_nanos(sample.timestamp.or_now(now_ns as f64 / 1e9))
    else {
        o.error = Some("timestamp out of range".into());
        return o;
    };
    if sample.path.contains(';') {
        if let Err(e) = graphite_plaintext::TaggedPath::parse(sample.path) {
            o.error = Some(e.to_string());
            return o;
        }
    }
    let mut scratch = NameScratch::default();
    let path = match router.normalize(sample.path, &mut scratch) {
        Ok(p) => p,
        Err(e) => {
            o.error = Some(e.to_string());
            return o;
        }
    };
    o.name = Some(path.to_string());
    let description = router.describe(path, Origin::Graphite);
    o.route = Some(description.to_string());
    let tagged;
    let (name, tags): (&str, Vec<(&str, &str)>) = if path.contains(';') {
        tagged = graphite_plaintext::TaggedPath::parse(path).expect("checked above");
        (
            tagged.name(),
            tagged.tags().map(|t| (t.key, t.value)).collect(),
        )
    } else {
        (path, Vec::new())
    };
    let mut set = OutputSet::default();
    router.route(path, Origin::Graphite, &mut set);
    let mut placed = Vec::new();
    for i in set.iter() {
        match &outputs[i] {
            DryOutput::Influx(c) => {
                if o.points.is_empty() {
                    let mut buf = Vec::new();
                    match templates.translator().write_point(
                        name,
                        &tags,
                        sample.value,
                        ns,
                        &mut buf,
                    ) {
                        Ok(()) => o
                            .points
                            .push(String::from_utf8_lossy(buf.trim_ascii_end()).into_owned()),
                        Err(e) => {
                            o.error = Some(e.to_string());
                            continue;
                        }
                    }
                }
                o.destinations
                    .push((c.name.clone(), influx_destination(c, &Target::Default)));
            }
            DryOutput::Graphite {
                name: out_name,
                cluster,
                ..
            } => {
                if o.graphite.is_empty() {
                    let mut buf = Vec::new();
                    let seconds = ns.div_euclid(1_000_000_000);
                    if graphite_plaintext::encode_sample(path, sample.value, seconds, &mut buf)
                        .is_ok()
                    {
                        o.graphite
                            .push(String::from_utf8_lossy(buf.trim_ascii_end()).into_owned());
                    }
                }
                cluster.place(path, &mut placed);
                for &d in &placed {
                    o.destinations
                        .push((out_name.clone(), cluster.destinations()[d].to_string()));
                }
            }
            DryOutput::Nats {
                name: out_name,
                format,
                subjects,
                ..
            } => {
                let mut buf = Vec::new();
                let made = match format {
                    crate::nats::Format::Graphite => graphite_plaintext::encode_sample(
                        path,
                        sample.value,
                        ns.div_euclid(1_000_000_000),
                        &mut buf,
                    )
                    .is_ok(),
                    crate::nats::Format::LineProtocol => templates
                        .translator()
                        .write_point(name, &tags, sample.value, ns, &mut buf)
                        .is_ok(),
                };
                if made {
                    o.destinations.push((
                        out_name.clone(),
                        nats_subject(*format, subjects, &Target::Default, &buf),
                    ));
                }
            }
        }
    }
    o
}

/// `subject NAME` of the first line of `body`, as the NATS output computes it.
fn nats_subject(
    format: crate::nats::Format,
    subjects: &crate::output::nats::Subjects,
    target: &Target,
    body: &[u8],
) -> String {
    let line = body.split(|&b| b == b'\n').next().unwrap_or_default();
    let (m, series) = crate::output::nats::line_key(format, line);
    format!("subject {}", subjects.subject(target, &m, series))
}

fn line_protocol_line(router: &Router, outputs: &[DryOutput], line: &str, now_ns: i64) -> Outcome {
    let mut o = Outcome::default();
    let point = match line_protocol::parse_line(line.trim_start()) {
        Ok(p) => p,
        Err(e) => {
            o.error = Some(e.to_string());
            return o;
        }
    };
    let ns = match point.timestamp_nanos(line_protocol::Precision::Nanoseconds) {
        Ok(t) => t.unwrap_or(now_ns),
        Err(e) => {
            o.error = Some(e.to_string());
            return o;
        }
    };
    let measurement = point.measurement.as_str();
    o.route = Some(router.describe(&measurement, Origin::Line).to_string());
    let mut set = OutputSet::default();
    router.route(&measurement, Origin::Line, &mut set);
    let mut placed = Vec::new();
    for i in set.iter() {
        match &outputs[i] {
            DryOutput::Influx(c) => {
                if o.points.is_empty() {
                    let body = line.trim();
                    o.points.push(if point.timestamp.is_none() {
                        format!("{body} {ns}")
                    } else {
                        body.to_string()
                    });
                }
                o.destinations
                    .push((c.name.clone(), "(the db or bucket of the request)".into()));
            }
            DryOutput::Graphite {
                name,
                cluster,
                to_graphite,
            } => {
                let mut buf = Vec::new();
                let written = to_graphite.write_point(&point, ns, &mut buf);
                if let Some(e) = written.error {
                    o.error = Some(e.to_string());
                }
                for l in String::from_utf8_lossy(&buf).lines() {
                    o.graphite.push(l.to_string());
                    let path = l.split(' ').next().unwrap_or("");
                    cluster.place(path, &mut placed);
                    for &d in &placed {
                        o.destinations
                            .push((name.clone(), cluster.destinations()[d].to_string()));
                    }
                }
            }
            DryOutput::Nats {
                name,
                format,
                subjects,
                to_graphite,
            } => {
                // An HTTP write's db and rp are the request's: shown as {db} = "(db)".
                let target = Target::Explicit(Destination::new("(db)", "(rp)"));
                match format {
                    crate::nats::Format::LineProtocol => {
                        let body = format!("{} {ns}", line.trim());
                        o.destinations.push((
                            name.clone(),
                            nats_subject(*format, subjects, &target, body.as_bytes()),
                        ));
                    }
                    crate::nats::Format::Graphite => {
                        let mut buf = Vec::new();
                        let _ = to_graphite.write_point(&point, ns, &mut buf);
                        for l in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                            o.destinations
                                .push((name.clone(), nats_subject(*format, subjects, &target, l)));
                        }
                    }
                }
            }
        }
    }
    o
}

fn influx_destination(c: &crate::config::InfluxOutputConfig, target: &Target) -> String {
    match target {
        Target::Default if c.api == InfluxApi::V2 && !c.bucket.is_empty() => {
            Destination::from_bucket(&c.bucket).to_string()
        }
        Target::Default => Destination::new(&c.database, &c.retention_policy).to_string(),
        Target::Explicit(d) => d.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dry(config: &str, input: &str) -> Vec<serde_json::Value> {
        let config = Config::from_toml(config, "test").unwrap();
        let mut out = Vec::new();
        run(&config, Input::Graphite, true, input.as_bytes(), &mut out).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    const INFLUX: &str = "[[outputs.influxdb]]\nname = \"influx\"\n";

    #[test]
    fn decode_names_turns_encoded_segments_back_into_unicode() {
        let config = format!(
            "[graphite]\ndecode_names = true\ntemplates = [\"host.measurement*\"]\n{INFLUX}"
        );
        let v = dry(&config, "web%2001.xn--caf-dma.cpu 1 1700000000\n");
        assert_eq!(
            v[0]["points"],
            serde_json::json!(["café.cpu,host=web\\ 01 value=1 1700000000000000000"])
        );
    }

    #[test]
    fn without_decode_names_encoded_segments_stay_as_sent() {
        let config = format!("[graphite]\ntemplates = [\"host.measurement*\"]\n{INFLUX}");
        let v = dry(&config, "web%2001.xn--caf-dma.cpu 1 1700000000\n");
        assert_eq!(
            v[0]["points"],
            serde_json::json!(["xn--caf-dma.cpu,host=web%2001 value=1 1700000000000000000"])
        );
    }
}
