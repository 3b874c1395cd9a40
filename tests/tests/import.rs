//! `fluxgate import` against the daemons whose configs it reads.
//!
//! - carbon-c-relay: a config with every cluster kind, replication, instances, regex matches,
//!   fall-through, `stop`, `blackhole`, a rewrite and an `include` is imported; for every name,
//!   `fluxgate dry-run` of the imported config must place it (cluster, destinations, final
//!   name) exactly where carbon-c-relay's own `-t` test mode does.
//! - carbon: a carbon.conf relay (consistent-hashing with replication and instances, and
//!   rules with a relay-rules.conf) is imported; carbon's own Python (Debian graphite-carbon)
//!   reads the same files with `carbon.conf.settings.readFrom` and routes every name with its
//!   router; fluxgate's destinations must be the same.
//! - Telegraf (not installable here): the template examples of Telegraf's own documentation
//!   (`docs/TEMPLATE_PATTERN.md`), each put in a Telegraf config with a Graphite socket
//!   listener, imported; `fluxgate dry-run` of the imported config must give the documented
//!   points.
//! - Unmappable statements are listed on stderr with file and line, the command exits 1, and
//!   0 with `--partial` (whose config `fluxgate check` accepts); a config the daemon itself
//!   would refuse exits 2.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fluxgate_e2e::{
    carbon_c_relay_test_mode, eventually, free_port, loopback, run_fluxgate, send_lines,
    system_python, CarbonCRelay, Gateway, TcpCapture,
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(60);

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).expect("write a file");
    path
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// `fluxgate import <args>`: (exit code, stdout, stderr).
fn import(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    let (status, stdout, stderr) = run_fluxgate(&all, "", TIMEOUT);
    let code = status
        .code()
        .unwrap_or_else(|| panic!("fluxgate import was killed: {status}\n{stderr}"));
    (code, stdout, stderr)
}

/// Imports and requires a faithful translation (exit 0, nothing listed); writes the config.
fn import_ok(dir: &Path, args: &[&str]) -> PathBuf {
    let (code, stdout, stderr) = import(args);
    assert!(
        code == 0 && stderr.is_empty(),
        "import {args:?} exited {code}:\n{stderr}\n{stdout}"
    );
    write(dir, "imported.toml", &stdout)
}

/// `fluxgate dry-run --json` over `names` (one Graphite line each).
fn dry_run(config: &Path, input: &str, lines: &[String]) -> Vec<Value> {
    let stdin: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (status, stdout, stderr) = run_fluxgate(
        &["dry-run", "--config", s(config), "--input", input, "--json"],
        &stdin,
        TIMEOUT,
    );
    assert!(status.success(), "dry-run failed: {stderr}\n{stdout}");
    let out: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(out.len(), lines.len(), "one answer per input line");
    out
}

/// `(output, host:port)` pairs of a dry-run answer, the instance left out as carbon-c-relay
/// prints destinations.
fn destinations(answer: &Value, keep_instance: bool) -> BTreeSet<(String, String)> {
    answer["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .map(|d| {
            let dest = d["destination"].as_str().expect("a destination");
            let dest = if keep_instance {
                dest.to_owned()
            } else {
                dest.splitn(3, ':').take(2).collect::<Vec<_>>().join(":")
            };
            (d["output"].as_str().expect("an output").to_owned(), dest)
        })
        .collect()
}

/// Deterministic metric names of many shapes, all of them unchanged by carbon-c-relay's
/// cleansing (its `-t` mode does not cleanse, the running relay does).
fn names(count: usize) -> Vec<String> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let roots = ["sys", "servers", "junk", "old", "apps", "stats", "collectd"];
    (0..count)
        .map(|i| {
            let r = next();
            let root = roots[i % roots.len()];
            let (a, b, c) = (r % 13, (r >> 8) % 997, (r >> 24) % 5);
            match c {
                0 => format!("{root}.dc{a}.host{b}.cpu.user"),
                1 => format!("{root}.Web-{b}.Latency_p99"),
                2 => format!("{root}.{b}"),
                3 => format!("{root}.app{a}.requests.{b}.count"),
                _ => format!("{root}x.{a}.{b}"),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// carbon-c-relay

/// What carbon-c-relay's `-t` mode says of ONE metric: the `(cluster, host:port)` pairs it
/// sends to and the name it sends (after rewrites).
fn relay_placement(config: &str, name: &str) -> (BTreeSet<(String, String)>, String) {
    let out = carbon_c_relay_test_mode(config, &format!("{name} 1 1700000000\n"));
    // The configuration echo ends with its last `;` line; the metric's trace follows.
    let lines: Vec<&str> = out.lines().collect();
    let start = lines
        .iter()
        .rposition(|l| l.trim() == ";")
        .map_or(0, |i| i + 1);
    let mut placed = BTreeSet::new();
    let mut cluster = String::new();
    let mut final_name = name.to_owned();
    for line in &lines[start..] {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent == 4 {
            if let Some((_, new)) = text
                .strip_prefix("into(")
                .and_then(|t| t.split_once(") -> "))
            {
                final_name = new.to_owned();
            } else if let Some(open) = text.find('(') {
                if text.ends_with(')') && !text.contains(' ') {
                    cluster = text[open + 1..text.len() - 1].to_owned();
                }
            }
        } else if indent == 8 && !text.is_empty() {
            placed.insert((cluster.clone(), text.to_owned()));
        }
    }
    (placed, final_name)
}

#[test]
fn carbon_c_relay_config_places_every_name_where_carbon_c_relay_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let included = write(
        dir.path(),
        "clusters.conf",
        "# included in place\n\
         cluster jump\n    jump_fnv1a_ch replication 2\n        127.0.0.1:2301=1\n        \
         127.0.0.1:2302=2\n        127.0.0.1:2303=3\n    ;\n",
    );
    let config = format!(
        "cluster ring\n    carbon_ch replication 2\n        127.0.0.1:2104=a\n        \
         127.0.0.1:2204=b\n        127.0.0.2:2304=c\n        127.0.0.3:2404\n    ;\n\
         cluster fnv fnv1a_ch replication 1 127.0.0.1:2501 127.0.0.1:2502=beef 127.0.0.1:2503 ;\n\
         cluster any any_of 127.0.0.1:2601 127.0.0.1:2602 127.0.0.1:2603 ;\n\
         cluster fail failover 127.0.0.1:2701 127.0.0.1:2702 ;\n\
         cluster copy forward 127.0.0.1:2801 127.0.0.4 ;\n\
         include {} ;\n\
         rewrite ^old\\.([^.]+)\\.(.*) into new.\\_1.\\2 ;\n\
         match ^junk\\. send to blackhole ;\n\
         match ^sys\\. ^servers\\.dc[0-3]\\. send to ring copy stop ;\n\
         match ^servers\\. send to fnv ;\n\
         match [Ll]atency send to any ;\n\
         match ^stats\\.app[0-9]+\\.requests send to jump stop ;\n\
         match ^new\\. send to fail ;\n\
         match ^collectd\\. send to fnv stop ;\n\
         match * send to ring ;\n",
        included.display()
    );
    let relay_conf = write(dir.path(), "relay.conf", &config);
    let imported = import_ok(dir.path(), &["carbon-c-relay", s(&relay_conf)]);
    let names = names(140);
    let lines: Vec<String> = names.iter().map(|n| format!("{n} 1 1700000000")).collect();
    let answers = dry_run(&imported, "graphite", &lines);
    let mut differences = Vec::new();
    for (name, answer) in names.iter().zip(&answers) {
        let (reference, reference_name) = relay_placement(&config, name);
        let ours = destinations(answer, false);
        let our_name = answer["graphite"]
            .as_array()
            .and_then(|g| g.first())
            .and_then(Value::as_str)
            .and_then(|l| l.split(' ').next())
            .unwrap_or("")
            .to_owned();
        if reference != ours || (!reference.is_empty() && reference_name != our_name) {
            differences.push(format!(
                "{name}: carbon-c-relay {reference:?} as {reference_name}, fluxgate {ours:?} as {our_name}"
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} names placed differently:\n{}",
        differences.len(),
        names.len(),
        differences.join("\n")
    );
    // The sample reaches every rule: blackholed, rewritten, fallen through, stopped.
    let placed: BTreeSet<String> = answers
        .iter()
        .flat_map(|a| destinations(a, false))
        .map(|(o, _)| o)
        .collect();
    assert_eq!(
        placed,
        ["any", "copy", "fail", "fnv", "jump", "ring"]
            .map(String::from)
            .into()
    );
    assert!(answers.iter().any(|a| destinations(a, false).is_empty()));
}

/// A carbon-c-relay config over the given eight members (each with an instance, so that
/// placement does not depend on their ports).
fn live_relay_config(members: &[TcpCapture]) -> String {
    let m: Vec<String> = members.iter().map(|c| c.addr().to_string()).collect();
    format!(
        "cluster ring carbon_ch replication 2 {}=a {}=b {}=c ;\n\
         cluster fnv fnv1a_ch {}=one {}=two ;\n\
         cluster any any_of {}=x {}=y ;\n\
         cluster copy forward {} ;\n\
         rewrite ^old\\.(.*) into new.\\_1 ;\n\
         match ^junk send to blackhole ;\n\
         match ^sys\\. send to ring copy stop ;\n\
         match [Ll]atency send to any ;\n\
         match ^servers\\. ^new\\. send to fnv ;\n\
         match * send to ring ;\n",
        m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]
    )
}

/// The same input into a running carbon-c-relay and into fluxgate running the imported
/// config: every member receives exactly the same lines from both, names cleansed as
/// carbon-c-relay cleanses them.
#[test]
fn carbon_c_relay_config_imported_and_run_delivers_what_carbon_c_relay_delivers() {
    let reference: Vec<TcpCapture> = (0..8).map(|_| TcpCapture::start()).collect();
    let ours: Vec<TcpCapture> = (0..8).map(|_| TcpCapture::start()).collect();
    let relay = CarbonCRelay::builder()
        .routes(&live_relay_config(&reference))
        .start();

    let dir = tempfile::tempdir().expect("temp dir");
    let plaintext = loopback(free_port());
    let http = loopback(free_port());
    let conf = write(
        dir.path(),
        "relay.conf",
        &format!(
            "listen type linemode {plaintext} proto tcp ;\n{}",
            live_relay_config(&ours)
        ),
    );
    let imported = import_ok(dir.path(), &["carbon-c-relay", s(&conf)]);
    let mut config = fs::read_to_string(&imported).expect("read");
    // The relay under test runs with -s (no statistics of its own): so does the gateway.
    assert!(
        config.contains("graphite_prefix = \"carbon.relays.<host>\""),
        "{config}"
    );
    config = config.replace("graphite_prefix = ", "# graphite_prefix = ");
    config.push_str(&format!("\n[listeners.http]\naddress = \"{http}\"\n"));
    let gateway = Gateway::start(&config, http);

    let mut lines: Vec<String> = names(300)
        .into_iter()
        .enumerate()
        .map(|(i, n)| format!("{n} {i} 1700000000"))
        .collect();
    // Names carbon-c-relay cleanses: repeated and trailing dots, characters outside its set.
    lines.extend(
        [
            "sys..web01.cpu. 900 1700000000",
            "servers.dc1.wéb.cpu 901 1700000000",
            "apps.api@v2.latency 902 1700000000",
            "old.MIXED.Case..name 903 1700000000",
            "junk.thing 904 1700000000",
        ]
        .map(String::from),
    );
    let answers = dry_run(&imported, "graphite", &lines);
    let expected: usize = answers
        .iter()
        .map(|a| a["destinations"].as_array().map_or(0, Vec::len))
        .sum();
    send_lines(relay.addr(), &lines);
    send_lines(plaintext, &lines);
    let total = |set: &[TcpCapture]| set.iter().map(|c| c.lines().len()).sum::<usize>();
    eventually(Duration::from_secs(30), || {
        let (r, o) = (total(&reference), total(&ours));
        if r == expected && o == expected {
            Ok(())
        } else {
            Err(format!(
                "carbon-c-relay delivered {r}, fluxgate {o}, dry-run expects {expected}\n{}",
                gateway.log_tail(10)
            ))
        }
    });
    for (i, (r, o)) in reference.iter().zip(&ours).enumerate() {
        let mut r = r.lines();
        let mut o = o.lines();
        r.sort();
        o.sort();
        assert_eq!(r, o, "member {i} received different lines");
    }
    assert!(
        ours.iter().all(|c| !c.lines().is_empty()),
        "every member is reached"
    );
}

#[test]
fn carbon_c_relay_aggregate_is_written_with_the_aggregation_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = write(
        dir.path(),
        "relay.conf",
        "cluster out forward 127.0.0.1:2003 ;\n\
         aggregate ^sys\\.([^.]+)\\.cpu\\.user ^sys\\.([^.]+)\\.cpu\\.sys\n  every 10 seconds\n  \
         expire after 35 seconds\n  timestamp at start of bucket\n  \
         compute sum write to agg.\\1.cpu.sum\n  compute percentile95 write to agg.\\1.cpu.p95\n  \
         send to out\n  stop ;\n\
         match * send to out ;\n",
    );
    let (code, stdout, stderr) = import(&["carbon-c-relay", s(&conf)]);
    assert_eq!(code, 0, "{stderr}");
    let doc: toml::Value = toml::from_str(&stdout).expect("TOML");
    let agg = &doc["aggregate"][0];
    assert_eq!(agg["every"].as_str(), Some("10s"));
    assert_eq!(agg["expire"].as_str(), Some("35s"));
    assert_eq!(agg["timestamp"].as_str(), Some("start"));
    assert_eq!(agg["match"].as_array().map(Vec::len), Some(2));
    assert_eq!(agg["compute"][1]["fn"].as_str(), Some("percentile95"));
    assert_eq!(
        agg["compute"][0]["write_to"].as_str(),
        Some("agg.\\1.cpu.sum")
    );
    assert_eq!(agg["send_to"][0].as_str(), Some("out"));
    assert_eq!(agg["stop"].as_bool(), Some(true));
    // And the gateway reads them.
    let config = write(dir.path(), "imported.toml", &stdout);
    let (status, out, err) = run_fluxgate(&["check", "--config", s(&config)], "", TIMEOUT);
    assert!(
        status.success(),
        "check refused the imported aggregate: {err}\n{out}"
    );
}

#[test]
fn carbon_aggregator_conf_becomes_aggregation_settings_the_gateway_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = write(
        dir.path(),
        "carbon.conf",
        "[aggregator]\nLINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = 2023\n\
         PICKLE_RECEIVER_PORT = 0\nDESTINATIONS = 127.0.0.1:2004:a, 127.0.0.1:2104:b\n\
         FORWARD_ALL = False\nMAX_AGGREGATION_INTERVALS = 3\n",
    );
    let rules = write(
        dir.path(),
        "aggregation-rules.conf",
        "# totals\n<env>.applications.<app>.all.requests (60) = sum <env>.applications.<app>.*.requests\n\
         <env>.applications.<app>.all.latency (60) = p95 <env>.applications.<app>.*.latency\n",
    );
    let imported = import_ok(dir.path(), &["carbon", s(&conf), s(&rules), s(&rules)]);
    let text = fs::read_to_string(&imported).expect("read");
    let doc: toml::Value = toml::from_str(&text).expect("TOML");
    assert_eq!(
        doc["aggregation"]["carbon_rules"].as_str(),
        Some(s(&rules)),
        "{text}"
    );
    assert_eq!(doc["aggregation"]["forward_inputs"].as_bool(), Some(false));
    assert_eq!(doc["aggregation"]["max_intervals"].as_integer(), Some(3));
    assert_eq!(
        doc["listeners"]["plaintext"]["tcp"].as_str(),
        Some("127.0.0.1:2023")
    );
    assert!(
        doc["listeners"]["pickle"].get("tcp").is_none(),
        "port 0: no pickle receiver"
    );
    let (status, out, err) = run_fluxgate(&["check", "--config", s(&imported)], "", TIMEOUT);
    assert!(status.success(), "check refused it: {err}\n{out}");
}

// ---------------------------------------------------------------------------------------------
// carbon

/// carbon's own reading of carbon.conf and its router: for each name on stdin (a JSON list),
/// the sorted `host:port[:instance]` destinations.
const CARBON_ROUTE: &str = r#"
import json, sys
from carbon.conf import settings
from carbon.routers import DatapointRouter
from carbon.util import parseDestinations
import carbon.routers

conf, program, rules = sys.argv[1], sys.argv[2], sys.argv[3]
settings.readFrom(conf, program)
settings['relay-rules'] = rules
router = DatapointRouter.plugins[settings.RELAY_METHOD](settings)
for d in parseDestinations(settings.DESTINATIONS):
    router.addDestination(d)

def show(d):
    server, port, instance = d
    return '%s:%d' % (server, port) + ('' if instance is None else ':%s' % instance)

names = json.load(sys.stdin)
json.dump([sorted(set(show(d) for d in router.getDestinations(n))) for n in names], sys.stdout)
"#;

fn carbon_placement(conf: &Path, program: &str, rules: &str, names: &[String]) -> Vec<Vec<String>> {
    let python = system_python();
    let input = serde_json::to_vec(names).expect("JSON");
    let (status, stdout, stderr) =
        python.run_with_input(CARBON_ROUTE, &[s(conf), program, rules], &input, TIMEOUT);
    assert!(status.success(), "carbon's router failed: {stderr}");
    serde_json::from_str(&stdout).expect("carbon's answer is JSON")
}

fn compare_with_carbon(imported: &Path, conf: &Path, rules: &str, names: &[String]) {
    let reference = carbon_placement(conf, "relay", rules, names);
    let lines: Vec<String> = names.iter().map(|n| format!("{n} 1 1700000000")).collect();
    let answers = dry_run(imported, "graphite", &lines);
    let mut differences = Vec::new();
    for ((name, want), answer) in names.iter().zip(&reference).zip(&answers) {
        let ours: Vec<String> = destinations(answer, true)
            .into_iter()
            .map(|(_, d)| d)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if &ours != want {
            differences.push(format!("{name}: carbon {want:?}, fluxgate {ours:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} names placed differently:\n{}",
        differences.len(),
        names.len(),
        differences.join("\n")
    );
}

#[test]
fn carbon_conf_consistent_hashing_places_where_carbons_router_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = write(
        dir.path(),
        "carbon.conf",
        "[cache]\nSTORAGE_DIR = /var/lib/graphite/\nLINE_RECEIVER_PORT = 2003\n\n\
         [relay]\nLINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = 2013\n\
         PICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = 2014\n\
         # the ring\nRELAY_METHOD = consistent-hashing\nREPLICATION_FACTOR = 2\n\
         DIVERSE_REPLICAS = True\n\
         DESTINATIONS = 127.0.0.1:2104:a, 127.0.0.1:2204:b,\n  127.0.0.2:2304:c, 127.0.0.3:2404\n\
         MAX_QUEUE_SIZE = 10000\nUSE_FLOW_CONTROL = True\n",
    );
    let imported = import_ok(dir.path(), &["carbon", s(&conf)]);
    let text = fs::read_to_string(&imported).expect("read");
    assert!(text.contains("tcp = \"127.0.0.1:2013\""), "{text}");
    compare_with_carbon(&imported, &conf, "/nonexistent", &names(400));
}

#[test]
fn carbon_conf_relay_rules_place_where_carbons_router_does() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = write(
        dir.path(),
        "carbon.conf",
        "[relay]\nRELAY_METHOD = rules\nDESTINATION_PROTOCOL = line\n\
         DESTINATIONS = 127.0.0.1:2004, 127.0.0.2:2004, 127.0.0.3:2004:x\n",
    );
    let rules = write(
        dir.path(),
        "relay-rules.conf",
        "[junk]\npattern = ^junk\\.\ndestinations = 127.0.0.9:2004\n\n\
         [web]\npattern = WEB-[0-9]+\ndestinations = 127.0.0.1:2004, 127.0.0.2:2004\ncontinue = true\n\n\
         [sys]\npattern = ^sys\\.dc[0-5]\\.\ndestinations = 127.0.0.3:2004:x\n\n\
         [default]\ndefault = true\ndestinations = 127.0.0.2:2004\n",
    );
    let imported = import_ok(dir.path(), &["carbon", s(&conf), s(&rules)]);
    compare_with_carbon(&imported, &conf, s(&rules), &names(200));
}

// ---------------------------------------------------------------------------------------------
// Telegraf

/// A line-protocol point without its timestamp, tags sorted: what a documented example says.
fn normalize(point: &str) -> String {
    let mut parts = point.splitn(3, ' ');
    let series = parts.next().unwrap_or("");
    let fields = parts.next().unwrap_or("");
    let mut tags: Vec<&str> = series.split(',').collect();
    let measurement = tags.remove(0);
    tags.sort_unstable();
    let mut fields: Vec<&str> = fields.split(',').collect();
    fields.sort_unstable();
    let mut out = measurement.to_owned();
    for t in tags {
        out.push(',');
        out.push_str(t);
    }
    format!("{out} {}", fields.join(","))
}

/// The examples of Telegraf's docs/TEMPLATE_PATTERN.md: (separator, templates, input, the
/// point it documents). The document prints `cpu_load`-style measurements for its filter and
/// tag examples without naming a separator; they are read with `separator = "_"`, the only
/// one that gives those names.
const TELEGRAF_EXAMPLES: &[(&str, &[&str], &str, &str)] = &[
    (
        ".",
        &["region.region.measurement*"],
        "us.west.cpu.load 100",
        "cpu.load,region=us.west value=100",
    ),
    (
        "_",
        &["measurement.measurement.region.field*"],
        "cpu.usage.eu-east.idle.percentage 100",
        "cpu_usage,region=eu-east idle_percentage=100",
    ),
    (
        "_",
        &[
            "cpu.* measurement.measurement.region",
            "mem.* measurement.measurement.host",
        ],
        "cpu.load.eu-east 100",
        "cpu_load,region=eu-east value=100",
    ),
    (
        "_",
        &[
            "cpu.* measurement.measurement.region",
            "mem.* measurement.measurement.host",
        ],
        "mem.cached.localhost 256",
        "mem_cached,host=localhost value=256",
    ),
    (
        "_",
        &["measurement.measurement.field.region datacenter=1a"],
        "cpu.usage.idle.eu-east 100",
        "cpu_usage,region=eu-east,datacenter=1a idle=100",
    ),
];

#[test]
fn telegraf_graphite_templates_give_the_documented_points() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (i, (separator, templates, input, expected)) in TELEGRAF_EXAMPLES.iter().enumerate() {
        let templates: Vec<String> = templates.iter().map(|t| format!("{t:?}")).collect();
        let conf = write(
            dir.path(),
            &format!("telegraf{i}.conf"),
            &format!(
                "[agent]\n  interval = \"10s\"\n  omit_hostname = true\n\n\
                 [[inputs.socket_listener]]\n  service_address = \"tcp://127.0.0.1:2003\"\n  \
                 data_format = \"graphite\"\n  separator = \"{separator}\"\n  \
                 templates = [{}]\n\n\
                 [[outputs.influxdb]]\n  urls = [\"http://127.0.0.1:8086\"]\n  database = \"telegraf\"\n",
                templates.join(", ")
            ),
        );
        let imported = import_ok(dir.path(), &["telegraf", s(&conf)]);
        let answer = &dry_run(&imported, "graphite", &[(*input).to_owned()])[0];
        let points: Vec<String> = answer["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| normalize(p.as_str().expect("a line")))
            .collect();
        assert_eq!(points, [normalize(expected)], "{input} with {templates:?}");
        let dest = destinations(answer, true);
        assert_eq!(
            dest.into_iter().map(|(o, _)| o).collect::<Vec<_>>(),
            ["influxdb"],
            "graphite points go to the InfluxDB output"
        );
    }
}

/// Telegraf's template language lets `field` repeat (joined with the separator); fluxgate's
/// is InfluxDB 1.x's, which refuses that. The documented example is listed, not imported.
#[test]
fn telegraf_template_with_two_field_elements_is_listed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = write(
        dir.path(),
        "telegraf.conf",
        "[agent]\n  omit_hostname = true\n[[inputs.socket_listener]]\n  \
         service_address = \"tcp://:2003\"\n  data_format = \"graphite\"\n  separator = \"_\"\n  \
         templates = [\n    \"measurement.measurement.field.field.region\",\n    \"measurement*\",\n  ]\n",
    );
    let (code, stdout, stderr) = import(&["telegraf", s(&conf)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "{}:7: `[inputs.socket_listener] templates: \"measurement.measurement.field.field.region\"` \
             not imported: 'field' can only be used once in each template",
            s(&conf)
        )),
        "{stderr}"
    );
    let doc: toml::Value = toml::from_str(&stdout).expect("TOML");
    assert_eq!(
        doc["graphite"]["templates"].as_array().map(Vec::len),
        Some(1),
        "the other template stays"
    );
}

#[test]
fn telegraf_host_and_global_tags_are_added_where_absent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = write(
        dir.path(),
        "telegraf.conf",
        "[global_tags]\n  dc = \"eu-1\"\n\n[agent]\n  hostname = \"relay7\"\n\n\
         [[inputs.socket_listener]]\n  service_address = \"udp://:2003\"\n  data_format = \"graphite\"\n  \
         templates = [\"servers.* .host.measurement*\"]\n  [inputs.socket_listener.tags]\n    src = \"graphite\"\n\n\
         [[outputs.influxdb_v2]]\n  urls = [\"http://127.0.0.1:8086\"]\n  organization = \"o\"\n  bucket = \"b\"\n  token = \"t\"\n",
    );
    let imported = import_ok(dir.path(), &["telegraf", s(&conf)]);
    let answers = dry_run(
        &imported,
        "graphite",
        &[
            "servers.web01.cpu.load 1".to_owned(),
            "other.metric 2".to_owned(),
        ],
    );
    let point = |i: usize| normalize(answers[i]["points"][0].as_str().expect("a point"));
    // The template's host wins over the agent's; the rest are added.
    assert_eq!(point(0), "cpu.load,dc=eu-1,host=web01,src=graphite value=1");
    assert_eq!(
        point(1),
        "other.metric,dc=eu-1,host=relay7,src=graphite value=2"
    );
}

// ---------------------------------------------------------------------------------------------
// unmappable statements and exit status

#[test]
fn unmappable_statements_are_listed_with_lines_and_fail_unless_partial() {
    let dir = tempfile::tempdir().expect("temp dir");
    let relay = write(
        dir.path(),
        "relay.conf",
        "cluster ok forward 127.0.0.1:2003 ;\n\
         cluster files file /var/tmp/metrics ;\n\
         cluster zipped forward 127.0.0.1:2004 transport gzip ;\n\
         match ^a validate ^[0-9.]+ else drop send to ok ;\n\
         match ^b send to files ;\n\
         match * send to ok ;\n\
         rewrite ^x into y ;\n\
         statistics submit every 10 seconds prefix with relays.\\1 ;\n",
    );
    let carbon = write(
        dir.path(),
        "carbon.conf",
        "[relay]\nRELAY_METHOD = consistent-hashing\nDESTINATIONS = 127.0.0.1:2004\n\
         DYNAMIC_ROUTER = True\nROUTER_HASH_TYPE = mmh3\n",
    );
    let telegraf = write(
        dir.path(),
        "telegraf.conf",
        "[[inputs.cpu]]\n\n[[inputs.socket_listener]]\n  service_address = \"tcp://:2003\"\n  \
         data_format = \"graphite\"\n  name_prefix = \"g_\"\n\n[[outputs.file]]\n  files = [\"stdout\"]\n",
    );
    for (args, file, lines) in [
        (
            vec!["carbon-c-relay", s(&relay)],
            s(&relay),
            vec![2, 3, 4, 5, 7, 8],
        ),
        (vec!["carbon", s(&carbon)], s(&carbon), vec![4, 5]),
        (vec!["telegraf", s(&telegraf)], s(&telegraf), vec![1, 6, 8]),
    ] {
        let (code, stdout, stderr) = import(&args);
        assert_eq!(code, 1, "{args:?} must fail:\n{stderr}");
        let listed: Vec<usize> = stderr
            .lines()
            .filter_map(|l| l.strip_prefix(file)?.strip_prefix(':'))
            .filter_map(|l| l.split(':').next()?.parse().ok())
            .collect();
        assert_eq!(listed, lines, "{args:?}:\n{stderr}");
        assert!(
            stderr.lines().all(|l| l.contains("not imported")),
            "every line says what and why:\n{stderr}"
        );
        assert!(
            stdout.contains("NOT IMPORTED"),
            "the config says so too:\n{stdout}"
        );

        let mut partial = vec!["--partial"];
        partial.extend_from_slice(&args);
        let (code, stdout, stderr2) = import(&partial);
        assert_eq!(code, 0, "{partial:?}:\n{stderr2}");
        assert_eq!(
            stderr2,
            stderr
                .lines()
                .take(lines.len())
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        );
        let config = write(dir.path(), "partial.toml", &stdout);
        let (status, out, err) = run_fluxgate(&["check", "--config", s(&config)], "", TIMEOUT);
        assert!(
            status.success(),
            "{partial:?}: check refused the config: {err}\n{out}\n{stdout}"
        );
    }
}

#[test]
fn a_config_the_daemon_would_refuse_exits_2_with_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let relay = write(
        dir.path(),
        "relay.conf",
        "cluster a forward 127.0.0.1:2003 ;\nmatch *\n  send to nowhere ;\n",
    );
    let (code, stdout, stderr) = import(&["carbon-c-relay", s(&relay)]);
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert_eq!(
        stderr,
        format!("error: {}:2: unknown cluster `nowhere`\n", s(&relay))
    );
    let rules = write(dir.path(), "agg.conf", "out.total (60) = median in.*\n");
    let carbon = write(
        dir.path(),
        "carbon.conf",
        "[aggregator]\nDESTINATIONS = 127.0.0.1:2004\n",
    );
    let (code, _, stderr) = import(&["carbon", s(&carbon), s(&rules), s(&rules)]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("agg.conf:1: unknown aggregation method \"median\""),
        "{stderr}"
    );
    let telegraf = write(dir.path(), "telegraf.conf", "[agent]\n  interval = \n");
    let (code, _, stderr) = import(&["telegraf", s(&telegraf)]);
    assert_eq!(code, 2);
    assert!(
        stderr.starts_with(&format!("error: {}:2:", s(&telegraf))),
        "{stderr}"
    );
}
