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
    translate::graphite::TemplateSet,
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
                "max_line_bytes={} max_connections={}",
                l.plaintext.max_line_bytes, l.plaintext.max_connections
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
                "max_frame_bytes={} max_connections={}",
                l.pickle.max_frame_bytes, l.pickle.max_connections
            ),
        ),
        (
            "http",
            &l.http.address,
            format!(
                "max_body_bytes={} max_connections={}",
                l.http.max_body_bytes, l.http.max_connections
            ),
        ),
    ] {
        if let Some(a) = addr {
            any = true;
            let _ = writeln!(s, "  {name:<14} {a}  ({extra})");
        }
    }
    if !any {
        s.push_str("  (none)\n");
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
    if config.outputs.influxdb.is_empty() && config.outputs.graphite.is_empty() {
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
            "  influxdb {:?} {} {} {dest} batch_size={} flush_interval={:?} max_in_flight={} queue_points={} overflow={:?} gzip={}",
            o.name, o.api, o.url, o.batch_size, o.flush_interval, o.max_in_flight, o.queue_points, o.overflow, o.gzip
        );
    }
    for o in &config.outputs.graphite {
        let _ = writeln!(
            s,
            "  graphite {:?} {:?} cluster={} replication={} destinations={:?} batch_size={} queue_points={} (per destination) overflow={:?} template={:?}",
            o.name, o.protocol, o.cluster, o.replication, o.destinations, o.batch_size, o.queue_points, o.overflow, o.template
        );
    }
    s.push_str("\nroutes: every output receives every point\n");
    s
}

/// Reads metrics from `input`, one per line, and writes what each becomes.
pub fn run(
    config: &Config,
    kind: Input,
    json_out: bool,
    input: impl BufRead,
    mut out: impl Write,
) -> std::io::Result<()> {
    let templates = TemplateSet::new(&config.graphite.template_config())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
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
        let (points, target, err) = match kind {
            Input::Graphite => graphite_line(&templates, line, now_ns),
            Input::Line => line_protocol_line(line, now_ns),
        };
        let destinations: Vec<(String, Destination)> = if points.is_empty() {
            Vec::new()
        } else {
            config
                .outputs
                .influxdb
                .iter()
                .map(|o| {
                    let d = match &target {
                        Target::Default if o.api == InfluxApi::V2 && !o.bucket.is_empty() => {
                            Destination::from_bucket(&o.bucket)
                        }
                        Target::Default => Destination::new(&o.database, &o.retention_policy),
                        Target::Explicit(d) => d.clone(),
                    };
                    (o.name.clone(), d)
                })
                .collect()
        };
        if json_out {
            let v = json!({
                "input": line,
                "points": points,
                "graphite": [],
                "destinations": destinations.iter().map(|(o, d)| json!({"output": o, "destination": d.to_string()})).collect::<Vec<_>>(),
                "error": err,
            });
            writeln!(out, "{v}")?;
        } else {
            writeln!(out, "{line}")?;
            if let Some(e) = err {
                writeln!(out, "  error: {e}")?;
            }
            for p in &points {
                writeln!(out, "  -> {p}")?;
            }
            for (o, d) in &destinations {
                writeln!(out, "  => output {o:?} destination {d}")?;
            }
        }
    }
    out.flush()
}

fn graphite_line(
    templates: &TemplateSet,
    line: &str,
    now_ns: i64,
) -> (Vec<String>, Target, Option<String>) {
    let sample = match graphite_plaintext::parse_line(line.as_bytes()) {
        Ok(s) => s,
        Err(e) => return (Vec::new(), Target::Default, Some(e.to_string())),
    };
    if sample.value.is_nan() {
        return (
            Vec::new(),
            Target::Default,
            Some("value is NaN: dropped".into()),
        );
    }
    let ts = sample.timestamp.or_now(now_ns as f64 / 1e9);
    let Some(ns) = crate::listener::graphite::to_nanos(ts) else {
        return (
            Vec::new(),
            Target::Default,
            Some("timestamp out of range".into()),
        );
    };
    let tagged;
    let (name, tags): (&str, Vec<(&str, &str)>) = if sample.path.contains(';') {
        tagged = match graphite_plaintext::TaggedPath::parse(sample.path) {
            Ok(t) => t,
            Err(e) => return (Vec::new(), Target::Default, Some(e.to_string())),
        };
        (
            tagged.name(),
            tagged.tags().map(|t| (t.key, t.value)).collect(),
        )
    } else {
        (sample.path, Vec::new())
    };
    let mut buf = Vec::new();
    match templates
        .translator()
        .write_point(name, &tags, sample.value, ns, &mut buf)
    {
        Ok(()) => (
            vec![String::from_utf8_lossy(buf.trim_ascii_end()).into_owned()],
            Target::Default,
            None,
        ),
        Err(e) => (Vec::new(), Target::Default, Some(e.to_string())),
    }
}

fn line_protocol_line(line: &str, now_ns: i64) -> (Vec<String>, Target, Option<String>) {
    let target = Target::Explicit(Destination::new("(request db)", ""));
    match line_protocol::parse_line(line.trim_start()) {
        Ok(p) => {
            let body = line.trim().to_string();
            let shown = if p.timestamp.is_none() {
                format!("{body} {now_ns}")
            } else {
                body
            };
            (vec![shown], target, None)
        }
        Err(e) => (Vec::new(), target, Some(e.to_string())),
    }
}
