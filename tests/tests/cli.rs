//! The one-shot subcommands of the `fluxgate` binary, run as a user runs them: `encode-name` /
//! `decode-name` (arguments and stdin, checked against Python's own encoders), `check` (the
//! repository's example config, and configs it must refuse), and `dry-run` (graphite and line
//! protocol input, JSON and text output). No server is started.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fluxgate_e2e::{fluxgate_command, run_fluxgate, workspace_root, Python};
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(30);
const PYTHON_TIMEOUT: Duration = Duration::from_secs(60);

/// `fluxgate <args>` with `stdin`: (exit code, stdout, stderr).
fn fluxgate(args: &[&str], stdin: &str) -> (i32, String, String) {
    let (status, stdout, stderr) = run_fluxgate(args, stdin, TIMEOUT);
    (code(status, args, &stderr), stdout, stderr)
}

fn code(status: ExitStatus, args: &[&str], stderr: &str) -> i32 {
    status
        .code()
        .unwrap_or_else(|| panic!("fluxgate {args:?} was killed by a signal: {status}\n{stderr}"))
}

/// A config file in a temporary directory (kept alive by the returned guard).
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("fluxgate.toml");
    fs::write(&path, text).expect("write config");
    (dir, path)
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

fn now_ns() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(now.as_nanos()).expect("time fits i64")
}

// ---------------------------------------------------------------------------------------------
// encode-name / decode-name

/// The error Python's `str.encode('idna')` raises for an empty label, which the CLI prints
/// after `error: ` (followed by where the label is).
const EMPTY_LABEL: &str = "error: label empty or too long";

#[test]
fn encode_name_arguments_print_one_result_per_line() {
    let (code, stdout, stderr) = fluxgate(&["encode-name", "café", "web 01", "a.b"], "");
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "xn--caf-dma\nweb%2001\na%2Eb\n", "")
    );
}

#[test]
fn encode_name_stdin_prints_one_result_per_line() {
    // CRLF input (a Windows file piped in) gives the same results as LF.
    let (code, stdout, stderr) = fluxgate(&["encode-name"], "café\r\nweb 01\na.b\n");
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "xn--caf-dma\nweb%2001\na%2Eb\n", "")
    );
}

/// An empty label is where the reference encoder raises: that name gets an `error:` line, the
/// others are still printed in order, and the exit status says something failed.
#[test]
fn encode_name_empty_label_is_an_error_line_and_exit_status_1() {
    for (stdin, args) in [
        ("", vec!["encode-name", "café", "a..b", "web 01"]),
        ("café\na..b\nweb 01\n", vec!["encode-name"]),
    ] {
        let (code, stdout, stderr) = fluxgate(&args, stdin);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{args:?} {stdin:?}: {stdout}");
        assert_eq!(lines[0], "xn--caf-dma", "{stdout}");
        assert!(
            lines[1].starts_with(EMPTY_LABEL),
            "{args:?}: expected `{EMPTY_LABEL}...`, got {:?}",
            lines[1]
        );
        assert_eq!(lines[2], "web%2001", "{stdout}");
        assert_eq!(code, 1, "{args:?} {stdin:?}: stderr {stderr}");
    }
    // A label at the start or a second empty one: same rule.
    let (code, stdout, _) = fluxgate(&["encode-name", ".a", "ok"], "");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with(EMPTY_LABEL), "{stdout}");
    assert_eq!((code, lines[1]), (1, "ok"));
}

#[test]
fn decode_name_inverts_encode_name_from_arguments_and_stdin() {
    let (code, stdout, stderr) = fluxgate(&["decode-name", "xn--caf-dma", "web%2001", "a%2Eb"], "");
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "café\nweb 01\na.b\n", "")
    );
    let (code, stdout, _) = fluxgate(&["decode-name"], "xn--caf-dma\nweb%2001\na%2Eb\n");
    assert_eq!((code, stdout.as_str()), (0, "café\nweb 01\na.b\n"));
    // Undecodable punycode is an error line; the next name is still decoded.
    let (code, stdout, _) = fluxgate(&["decode-name", "xn--zz", "a%2Eb"], "");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("error: "), "{stdout}");
    assert_eq!((code, lines[1]), (1, "a.b"));
}

/// `--name-encoding punycode` is what aiographite 0.2 on PyPI ships: plain punycode (a `-`
/// after an ASCII label), then the same percent-encoding.
#[test]
fn name_encoding_punycode_matches_aiographite_0_2() {
    let (code, stdout, stderr) = fluxgate(
        &[
            "encode-name",
            "--name-encoding",
            "punycode",
            "café",
            "abc",
            "a.b",
            "web 01",
        ],
        "",
    );
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "caf-dma\nabc-\na%2Eb-\nweb%2001-\n", "")
    );
    let (code, stdout, _) = fluxgate(
        &["decode-name", "--name-encoding", "punycode"],
        "caf-dma\nabc-\na%2Eb-\nweb%2001-\n",
    );
    assert_eq!((code, stdout.as_str()), (0, "café\nabc\na.b\nweb 01\n"));
}

/// Names that exercise nameprep (case folding, NFKC, `ß`), punycode, percent-encoding, the
/// dot rule, Unicode full stops, `/` and errors.
const NAMES: &[&str] = &[
    "café",
    "web 01",
    "a.b",
    "a..b",
    ".a",
    "a.",
    "Straße",
    "ﬁle",
    "ÄBC",
    "☃",
    "😀",
    "a/b",
    "100%",
    "a\u{3002}b",
    "xn--caf-dma",
    "MiXeD",
    "münchen.de",
    "ü-ü",
    "a b/c.d",
    "_",
    "-",
    "host:8080",
    "tab\there",
    "ααααααααααααααααααααααααααααααααααααααααααααααααααααααααααα",
];

/// Runs `code` (Python reading names from stdin, one per line) and returns its lines.
fn python_lines(code: &str, names: &str) -> Vec<String> {
    let (status, stdout, stderr) =
        Python::venv().run_with_input(code, &[], names.as_bytes(), PYTHON_TIMEOUT);
    assert!(status.success(), "python failed: {stderr}\n{stdout}");
    stdout.lines().map(str::to_owned).collect()
}

/// The names command against the reference, line for line: the same text where Python
/// succeeds, an `error: ` line where it raises.
fn assert_matches_python(args: &[&str], python: &str, names: &[String]) {
    let input: String = names.iter().map(|n| format!("{n}\n")).collect();
    let expected = python_lines(python, &input);
    let (code, stdout, stderr) = fluxgate(args, &input);
    let ours: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        ours.len(),
        names.len(),
        "{args:?}: one line per name expected\n{stdout}\n{stderr}"
    );
    let mut mismatches = String::new();
    for ((name, ours), theirs) in names.iter().zip(&ours).zip(&expected) {
        // Where Python raises, only the fact of the error is compared: the wording differs.
        let same = if theirs.starts_with("error: ") {
            ours.starts_with("error: ")
        } else {
            ours == theirs
        };
        if !same {
            mismatches.push_str(&format!("{name:?}: python {theirs:?}, fluxgate {ours:?}\n"));
        }
    }
    assert!(mismatches.is_empty(), "{args:?} differs:\n{mismatches}");
    let any_error = expected.iter().any(|line| line.starts_with("error: "));
    assert_eq!(code, i32::from(any_error), "{args:?}: exit status");
}

const PY_LOOP: &str = "import sys, urllib.parse\n\
sys.stdin.reconfigure(encoding='utf-8')\n\
sys.stdout.reconfigure(encoding='utf-8')\n\
for line in sys.stdin.read().split('\\n')[:-1]:\n    \
try:\n        print(f(line))\n    \
except Exception as e:\n        print('error: %s' % e)\n";

#[test]
fn encode_and_decode_name_match_pythons_idna_and_aiographite() {
    let names: Vec<String> = NAMES.iter().map(|n| (*n).to_owned()).collect();
    // DESIGN.md: `urllib.parse.quote(segment.encode('idna')).replace('.', '%2E')`.
    let idna = format!(
        "def f(s):\n    return urllib.parse.quote(s.encode('idna')).replace('.', '%2E')\n{PY_LOOP}"
    );
    assert_matches_python(&["encode-name"], &idna, &names);

    // Decoding what encoding produced (and a few things nobody encoded).
    let input: String = names.iter().map(|n| format!("{n}\n")).collect();
    let mut encoded: Vec<String> = python_lines(&idna, &input)
        .into_iter()
        .filter(|line| !line.starts_with("error: "))
        .collect();
    encoded.extend(["xn--zz", "%FF", "a%2", "XN--CAF-DMA"].map(str::to_owned));
    let idna_decode = format!(
        "def f(s):\n    return bytes(urllib.parse.unquote(s), 'utf-8').decode('idna')\n{PY_LOOP}"
    );
    assert_matches_python(&["decode-name"], &idna_decode, &encoded);

    // aiographite 0.2 (installed in the venv) is the punycode reference.
    let punycode = format!(
        "from aiographite.graphite_encoder import GraphiteEncoder\nf = GraphiteEncoder.encode\n{PY_LOOP}"
    );
    assert_matches_python(
        &["encode-name", "--name-encoding", "punycode"],
        &punycode,
        &names,
    );
    let encoded: Vec<String> = python_lines(&punycode, &input)
        .into_iter()
        .filter(|line| !line.starts_with("error: "))
        .collect();
    let punycode_decode = format!(
        "from aiographite.graphite_encoder import GraphiteEncoder\nf = GraphiteEncoder.decode\n{PY_LOOP}"
    );
    assert_matches_python(
        &["decode-name", "--name-encoding", "punycode"],
        &punycode_decode,
        &encoded,
    );
}

// ---------------------------------------------------------------------------------------------
// check

#[test]
fn check_accepts_the_repository_example_and_prints_what_it_builds() {
    let example = workspace_root().join("config.toml");
    let (code, stdout, stderr) = fluxgate(&["check", "--config", path_str(&example)], "");
    assert_eq!(code, 0, "stderr: {stderr}\nstdout: {stdout}");
    assert!(stdout.starts_with("configuration OK\n"), "{stdout}");
    let lines: Vec<&str> = stdout.lines().map(str::trim_end).collect();
    for expected in [
        "  plaintext tcp  127.0.0.1:2003  (max_line_bytes=16384 max_connections=10000 idle_timeout=300s)",
        "  plaintext udp  127.0.0.1:2003  (max_datagram_bytes=65536)",
        "  pickle tcp     127.0.0.1:2004  (max_frame_bytes=1048576 max_connections=10000 idle_timeout=300s)",
        "  http           127.0.0.1:8086  (max_body_bytes=26214400 max_connections=1024 header_timeout=10s \
         idle_timeout=60s auth=off (users: 0, tokens: 0) metrics_auth=false query=read_only ack=Delivered)",
        "  servers.* .dc.host.measurement.field*",
        "  measurement*",
    ] {
        assert!(
            lines.contains(&expected),
            "missing line {expected:?} in:\n{stdout}"
        );
    }
    let output = lines
        .iter()
        .find(|line| line.starts_with("  influxdb \"influx\""))
        .unwrap_or_else(|| panic!("no influxdb output line in:\n{stdout}"));
    for part in [
        "v1",
        "http://127.0.0.1:8087",
        "db=\"graphite\"",
        "batch_size=5000",
        "max_in_flight=4",
        "queue_points=1000000",
    ] {
        assert!(output.contains(part), "{part:?} missing from {output:?}");
    }
}

#[test]
fn check_refuses_unknown_keys_with_exit_status_2() {
    for (config, key) in [
        ("[listeners.plaintext]\ntcpp = \"127.0.0.1:2003\"\n", "tcpp"),
        (
            "[[outputs.influxdb]]\nname = \"influx\"\nbatchsize = 10\n",
            "batchsize",
        ),
        ("flush_interval = \"1s\"\n", "flush_interval"),
        ("[graphite]\ntemplate = [\"measurement*\"]\n", "template"),
    ] {
        let (_dir, path) = config_file(config);
        let (code, stdout, stderr) = fluxgate(&["check", "--config", path_str(&path)], "");
        assert_eq!(code, 2, "{config:?}: stdout {stdout}\nstderr {stderr}");
        assert!(
            stderr.contains(&format!("unknown field `{key}`")),
            "{config:?}: stderr {stderr}"
        );
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(!stdout.contains("configuration OK"), "{stdout}");
    }
}

#[test]
fn check_refuses_invalid_values_and_missing_files_with_exit_status_2() {
    for (config, message) in [
        (
            "[[outputs.influxdb]]\nname = \"a\"\nbatch_size = 10\nqueue_points = 5\n",
            "queue_points must be at least batch_size",
        ),
        (
            "[listeners.plaintext]\ntcp = \"nope\"\n",
            "bad address \"nope\"",
        ),
        (
            "[[outputs.influxdb]]\nname = \"a\"\napi = \"v2\"\n",
            "api = \"v2\" needs org",
        ),
        (
            "[[outputs.influxdb]]\nname = \"a\"\nflush_interval = \"soon\"\n",
            "flush_interval",
        ),
    ] {
        let (_dir, path) = config_file(config);
        let (code, _, stderr) = fluxgate(&["check", "--config", path_str(&path)], "");
        assert_eq!(code, 2, "{config:?}: {stderr}");
        assert!(stderr.contains(message), "{config:?}: stderr {stderr}");
    }
    let (code, _, stderr) = fluxgate(&["check", "--config", "/nonexistent/fluxgate.toml"], "");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot read /nonexistent/fluxgate.toml"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// dry-run

/// Two outputs (a v1 database and a v2 bucket with a retention policy), a template with a
/// filter and a global tag.
const DRY_RUN_CONFIG: &str = r#"
[graphite]
templates = ["servers.* .dc.host.measurement.field*", "measurement*"]
tags = ["source=graphite"]

[[outputs.influxdb]]
name = "influx"
url = "http://127.0.0.1:1"
database = "graphite"

[[outputs.influxdb]]
name = "cloud"
url = "http://127.0.0.1:2"
api = "v2"
org = "acme"
bucket = "metrics/raw"
"#;

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("not one JSON object per line ({err}): {line:?}"))
        })
        .collect()
}

fn both_destinations(influx: &str, cloud: &str) -> Value {
    json!([
        {"output": "influx", "destination": influx},
        {"output": "cloud", "destination": cloud},
    ])
}

#[test]
fn dry_run_json_graphite_shows_points_destinations_and_errors() {
    let (_dir, path) = config_file(DRY_RUN_CONFIG);
    let input = "servers.dc1.web01.cpu.user 12.5 1700000000\n\
                 collectd.load;host=web01;dc=eu 0.5 1700000001\n\
                 \n\
                 one two three four\n\
                 foo.bar nan 1700000002\n\
                 foo.bar -1e3 1700000003.25\n";
    let (code, stdout, stderr) =
        fluxgate(&["dry-run", "--config", path_str(&path), "--json"], input);
    assert_eq!(code, 0, "stderr: {stderr}");
    let objects = json_lines(&stdout);
    // The blank line is not an input metric.
    assert_eq!(objects.len(), 5, "{stdout}");
    let none = json!([]);
    assert_eq!(
        objects[0],
        json!({
            "input": "servers.dc1.web01.cpu.user 12.5 1700000000",
            "name": "servers.dc1.web01.cpu.user",
            "route": "no routes: to every output (influx, cloud)",
            "points": ["cpu,dc=dc1,host=web01,source=graphite user=12.5 1700000000000000000"],
            "graphite": [],
            "destinations": both_destinations("graphite", "metrics/raw"),
            "error": null,
        })
    );
    assert_eq!(
        objects[1],
        json!({
            "input": "collectd.load;host=web01;dc=eu 0.5 1700000001",
            "name": "collectd.load;host=web01;dc=eu",
            "route": "no routes: to every output (influx, cloud)",
            "points": ["collectd.load,dc=eu,host=web01,source=graphite value=0.5 1700000001000000000"],
            "graphite": [],
            "destinations": both_destinations("graphite", "metrics/raw"),
            "error": null,
        })
    );
    assert_eq!(objects[2]["input"], "one two three four");
    assert_eq!(objects[2]["points"], none);
    assert_eq!(objects[2]["destinations"], none);
    let error = objects[2]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("expected 3 fields") && error.contains("found 4"),
        "{}",
        objects[2]
    );
    assert_eq!(objects[3]["input"], "foo.bar nan 1700000002");
    assert_eq!(objects[3]["points"], none);
    assert_eq!(objects[3]["destinations"], none);
    let error = objects[3]["error"].as_str().unwrap_or_default();
    assert!(error.contains("NaN"), "{}", objects[3]);
    assert_eq!(
        objects[4],
        json!({
            "input": "foo.bar -1e3 1700000003.25",
            "name": "foo.bar",
            "route": "no routes: to every output (influx, cloud)",
            "points": ["foo.bar,source=graphite value=-1000 1700000003250000000"],
            "graphite": [],
            "destinations": both_destinations("graphite", "metrics/raw"),
            "error": null,
        })
    );
}

/// carbon's `-1` timestamp means "now": the point gets the time of the run.
#[test]
fn dry_run_graphite_minus_one_is_now() {
    let (_dir, path) = config_file(DRY_RUN_CONFIG);
    let before = now_ns();
    let (code, stdout, stderr) = fluxgate(
        &["dry-run", "--config", path_str(&path), "--json"],
        "app.requests 3 -1\n",
    );
    let after = now_ns();
    assert_eq!(code, 0, "{stderr}");
    let objects = json_lines(&stdout);
    let point = objects[0]["points"][0].as_str().unwrap_or_default();
    let (head, time) = point
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("no timestamp in {point:?}"));
    assert_eq!(head, "app.requests,source=graphite value=3");
    let time: i64 = time.parse().expect("integer timestamp");
    assert!(
        (before..=after).contains(&time),
        "{time} not in {before}..{after}"
    );
}

#[test]
fn dry_run_json_line_protocol_input() {
    let (_dir, path) = config_file(DRY_RUN_CONFIG);
    let input = "cpu,host=a value=1,n=2i 1700000000000000000\nbad\nweather,city=x\\ y temp=1.5 1700000000000000001\n";
    let (code, stdout, stderr) = fluxgate(
        &[
            "dry-run",
            "--config",
            path_str(&path),
            "--input",
            "line",
            "--json",
        ],
        input,
    );
    assert_eq!(code, 0, "stderr: {stderr}");
    let objects = json_lines(&stdout);
    assert_eq!(objects.len(), 3, "{stdout}");
    assert_eq!(
        objects[0]["input"],
        "cpu,host=a value=1,n=2i 1700000000000000000"
    );
    assert_eq!(
        objects[0]["points"],
        json!(["cpu,host=a value=1,n=2i 1700000000000000000"])
    );
    assert_eq!(objects[0]["error"], Value::Null);
    // Line protocol keeps the database of the request it would arrive in.
    let outputs: Vec<&str> = objects[0]["destinations"]
        .as_array()
        .unwrap_or_else(|| panic!("destinations is not a list: {}", objects[0]))
        .iter()
        .map(|d| d["output"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(outputs, ["influx", "cloud"]);
    assert_eq!(
        objects[1],
        json!({
            "input": "bad",
            "name": null,
            "route": null,
            "points": [],
            "graphite": [],
            "destinations": [],
            "error": "unable to parse 'bad': missing fields",
        })
    );
    assert_eq!(
        objects[2]["points"],
        json!(["weather,city=x\\ y temp=1.5 1700000000000000001"])
    );
}

#[test]
fn dry_run_text_output_names_points_and_destinations() {
    let (_dir, path) = config_file(DRY_RUN_CONFIG);
    let (code, stdout, stderr) = fluxgate(
        &["dry-run", "--config", path_str(&path)],
        "servers.dc1.web01.cpu.user 12.5 1700000000\n",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("cpu,dc=dc1,host=web01,source=graphite user=12.5 1700000000000000000"),
        "{stdout}"
    );
    assert!(stdout.contains("\"influx\""), "{stdout}");
    assert!(stdout.contains("metrics/raw"), "{stdout}");
}

#[test]
fn dry_run_refuses_a_bad_config_with_exit_status_2() {
    let (_dir, path) = config_file("[graphite]\nseparatorr = \"_\"\n");
    let (code, stdout, stderr) = fluxgate(
        &["dry-run", "--config", path_str(&path), "--json"],
        "a.b 1 1700000000\n",
    );
    assert_eq!(code, 2, "{stdout}");
    assert!(stderr.contains("unknown field `separatorr`"), "{stderr}");
    assert_eq!(stdout, "");
}

#[test]
fn completions_and_the_manual_page_come_from_the_binary() {
    let (status, bash, stderr) =
        run_fluxgate(&["completions", "bash"], "", Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    assert!(bash.contains("_fluxgate()"), "{bash}");
    for sub in ["run", "check", "dry-run", "buffer", "completions", "man"] {
        assert!(bash.contains(sub), "no {sub:?} in the bash completions");
    }
    let (status, zsh, _) = run_fluxgate(&["completions", "zsh"], "", Duration::from_secs(30));
    assert!(
        status.success() && zsh.starts_with("#compdef fluxgate"),
        "{zsh}"
    );
    let (status, man, stderr) = run_fluxgate(&["man"], "", Duration::from_secs(30));
    assert!(status.success(), "{stderr}");
    assert!(man.contains(".TH fluxgate 1"), "{man}");
    assert!(man.contains("Graphite/InfluxDB protocol gateway"), "{man}");
}

#[test]
fn config_values_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fluxgate.toml");
    std::fs::write(
        &path,
        "[[outputs.influxdb]]\nname = \"influx\"\nurl = \"${FG_TEST_URL}\"\n\
         max_in_flight = ${FG_TEST_CONCURRENCY:-3}\n",
    )
    .expect("write config");
    let mut cmd = fluxgate_command();
    cmd.args(["check", "--config", path.to_str().expect("utf-8 path")])
        .env("FG_TEST_URL", "http://influx.example:8086")
        .env_remove("FG_TEST_CONCURRENCY");
    let out = cmd.output().expect("run fluxgate check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("http://influx.example:8086"), "{stdout}");
    assert!(stdout.contains("max_in_flight=3"), "{stdout}");
    // An unset variable without a default names itself.
    let out = fluxgate_command()
        .args(["check", "--config", path.to_str().expect("utf-8 path")])
        .env_remove("FG_TEST_URL")
        .output()
        .expect("run fluxgate check");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("environment variable FG_TEST_URL is not set"),
        "{stderr}"
    );
}

/// `dist/fluxgate.service` is a unit systemd accepts: `systemd-analyze verify` on it, with the
/// binary under test in place of /usr/bin/fluxgate.
#[test]
fn the_systemd_unit_verifies() {
    let analyze = fluxgate_e2e::require_binary("systemd-analyze", "systemd");
    let unit = fs::read_to_string(workspace_root().join("dist/fluxgate.service")).expect("unit");
    assert!(unit.contains("Type=notify"), "{unit}");
    assert!(
        unit.contains("ExecReload=/bin/kill -HUP $MAINPID"),
        "{unit}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fluxgate.service");
    let bin = fluxgate_e2e::fluxgate_bin();
    fs::write(
        &path,
        unit.replace("/usr/bin/fluxgate", bin.to_str().expect("utf-8 path")),
    )
    .expect("write unit");
    let out = std::process::Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Under systemd (`Type=notify`) the gateway says READY=1 once it listens, RELOADING=1 (with
/// MONOTONIC_USEC) then READY=1 around a SIGHUP, and STOPPING=1 at SIGTERM.
#[test]
fn the_gateway_tells_systemd_when_it_is_ready_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification within 20 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let http = fluxgate_e2e::loopback(fluxgate_e2e::free_port());
    let mut gateway =
        fluxgate_e2e::Gateway::builder(&format!("[listeners.http]\naddress = \"{http}\"\n"))
            .http_addr(http)
            .env("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8 path"))
            .start();
    assert_eq!(next(), "READY=1\n");
    gateway.sighup();
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert_eq!(next(), "READY=1\n");
    gateway.sigterm();
    assert_eq!(next(), "STOPPING=1\n");
    let status = gateway.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{status}");
}

// ---------------------------------------------------------------------------------------------
// check: errors that point at the key

/// A value that parses but cannot work is reported with its section, its key and its line,
/// so the operator goes straight to it; a bad url is quoted with its password hidden.
#[test]
fn check_names_the_section_key_and_line_of_a_bad_value() {
    for (config, expected) in [
        (
            "[listeners.http]\naddress = \"127.0.0.1:18086\"\n\n[listeners.plaintext]\n\
             tcp = \"127.0.0.1:2003\"\nudp = \"localhost\"\n",
            "error: listeners.plaintext: udp (line 6): bad address \"localhost\": invalid socket address syntax\n",
        ),
        (
            "[[outputs.influxdb]]\nname = \"main\"\n\n[[outputs.influxdb]]\nname = \"backup\"\n\
             url = \"http://writer:hunter2@influx.example:8086:99\"\n",
            "error: outputs.influxdb \"backup\": url (line 6): bad url \
             \"http://***@influx.example:8086:99\": invalid port number\n",
        ),
        (
            "[[outputs.influxdb]]\nname = \"a\"\nbatch_size = 10\nqueue_points = 5\n",
            "error: outputs.influxdb \"a\": queue_points (line 4): queue_points must be at least batch_size\n",
        ),
        (
            "[[outputs.graphite]]\nname = \"carbon\"\ndestinations = [\"127.0.0.1:2004\", \"nohost\"]\n",
            "error: outputs.graphite \"carbon\": destinations (line 3): destination \"nohost\": ",
        ),
        (
            "[[outputs.graphite]]\nname = \"carbon\"\ndestinations = [\"127.0.0.1:2004\"]\n\n\
             [[routes]]\nmatch = \"^a\"\noutputs = [\"carbon\"]\n\n[[routes]]\nmatch = \"^b\"\n\
             outputs = [\"carobn\"]\n",
            "error: routes[1]: outputs (line 11): unknown output \"carobn\"",
        ),
        (
            "[[rewrite]]\nmatch = '^a\\.(.*)'\nreplace = 'b.\\2'\n",
            "error: rewrite[0]: replace (line 3): replacement \"b.\\\\2\": refers to group 2",
        ),
    ] {
        let (_dir, path) = config_file(config);
        let (code, stdout, stderr) = fluxgate(&["check", "--config", path_str(&path)], "");
        assert_eq!(code, 2, "{config:?}: {stdout}");
        assert!(stderr.starts_with(expected), "{config:?}:\n{stderr}\nexpected:\n{expected}");
        assert!(!stderr.contains("hunter2"), "a password was printed: {stderr}");
    }
}
