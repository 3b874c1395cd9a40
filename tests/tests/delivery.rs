//! When a write is answered and what survives: fluxgate's delivery promises, end to end
//! against a real InfluxDB 1.x (`influxd`) and the clients people point at it.
//!
//! - Drop-in answers (`ack = "delivered"`, the default): aioinflux's README example reads its
//!   point back through the gateway; the `influx` CLI prints the same `ERR: database not
//!   found`; influxdb-python and influxdb-client get the same status and message for a missing
//!   database and a field type conflict as influxd gives them.
//! - Read-your-writes with `ack = "queued"`: the README example's query waits for its write.
//! - A fresh setup where nobody ran `CREATE DATABASE`: Graphite points land in the output's
//!   `database` (`create_database`), nothing dropped.
//! - `buffer = "disk"`: what was acknowledged durably (`ack = "durable"`), or taken over TCP
//!   and fsynced, survives `kill -9` of the gateway while influxd is down, exactly once; a torn
//!   or corrupt tail of the log is cut at the next start, counted, and everything before it
//!   delivered; batches given up on are dead-lettered, listed and replayed with `fluxgate
//!   buffer list|replay`; the disk-buffer gauges show what the log holds.
//! - Partial writes are accounted for per point even when InfluxDB's message is long.
//!
//! Outages are placed on observed progress (answers, metrics, what is in the log files), never
//! on sleeps, and every wait is bounded.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::Duration;

use fluxgate_e2e::{
    eventually, form_urlencode, free_port, http_request, loopback, metric, require_binary,
    run_command, run_fluxgate, send_lines, Gateway, HttpResponse, InfluxDb, InfluxV2Mock, Python,
    Reply,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(25);
const PYTHON_TIMEOUT: Duration = Duration::from_secs(40);
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

/// The output's name, the `output` label of its metrics and its directory under `buffer/`.
const OUTPUT: &str = "influx";

// ---------------------------------------------------------------------------------------------
// helpers

/// A gateway config: an HTTP listener with `http_keys`, optionally a Graphite plaintext TCP
/// listener, `data_dir` in the gateway's temporary directory, and one InfluxDB v1 output named
/// [`OUTPUT`] writing Graphite points into `database`, with `output_keys` added.
fn config(
    http: SocketAddr,
    plaintext: Option<SocketAddr>,
    http_keys: &str,
    url: &str,
    database: &str,
    output_keys: &str,
) -> String {
    let plaintext = plaintext
        .map(|addr| format!("[listeners.plaintext]\ntcp = \"{addr}\"\n"))
        .unwrap_or_default();
    format!(
        r#"shutdown_timeout = "2s"

[gateway]
data_dir = "@DIR@/data"

{plaintext}
[listeners.http]
address = "{http}"
{http_keys}

[[outputs.influxdb]]
name = "{OUTPUT}"
url = "{url}"
api = "v1"
database = "{database}"
retry_initial = "50ms"
retry_max = "500ms"
{output_keys}
"#
    )
}

/// `POST <base>/write?db=<db>&precision=ns` with a line-protocol body.
fn write(base: &str, db: &str, body: &str) -> HttpResponse {
    let url = format!(
        "{base}/write?{}",
        form_urlencode(&[("db", db), ("precision", "ns")])
    );
    http_request(
        "POST",
        &url,
        &[("Content-Type", "text/plain; charset=utf-8")],
        body.as_bytes(),
    )
    .unwrap_or_else(|err| panic!("POST {url} failed: {err}"))
}

/// The sum of `count(<field>)` over every series of the measurements `from` matches (an
/// InfluxQL `FROM` clause), 0 when there are none.
fn count(influx: &InfluxDb, db: &str, field: &str, from: &str) -> u64 {
    let json = influx.query(db, &format!("SELECT count({field}) FROM {from}"));
    let mut total = 0;
    for result in json["results"].as_array().into_iter().flatten() {
        for series in result["series"].as_array().into_iter().flatten() {
            for row in series["values"].as_array().into_iter().flatten() {
                total += row[1].as_u64().unwrap_or(0);
            }
        }
    }
    total
}

/// Every value of integer field `field` in `measurement`.
fn integer_values(influx: &InfluxDb, db: &str, field: &str, measurement: &str) -> Vec<i64> {
    let json = influx.query(db, &format!("SELECT {field} FROM {measurement}"));
    let mut values = Vec::new();
    for series in json["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for row in series["values"].as_array().into_iter().flatten() {
            values.extend(row[1].as_i64());
        }
    }
    values
}

/// Waits until `count(...)` reaches `expected` and returns it; panics, with what is there and
/// the logs, after [`WAIT`].
fn wait_for_count(
    influx: &InfluxDb,
    gateway: &Gateway,
    db: &str,
    field: &str,
    from: &str,
    expected: u64,
) {
    eventually(WAIT, || {
        let found = count(influx, db, field, from);
        if found == expected {
            Ok(())
        } else {
            Err(format!(
                "{db}: count({field}) FROM {from} is {found}, expected {expected}\n\
                 --- gateway ---\n{}\n--- influxd ---\n{}",
                gateway.log_tail(30),
                influx.log_tail(10)
            ))
        }
    });
}

/// Waits until `name{labels}` is at least `at_least` and returns it.
fn wait_metric_at_least(
    gateway: &Gateway,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
) -> f64 {
    eventually(WAIT, || {
        let value = metric(gateway, name, labels);
        if value >= at_least {
            Ok(value)
        } else {
            Err(format!(
                "{name}{labels:?} is {value}, expected at least {at_least}\n{}\n{}",
                gateway.metrics(),
                gateway.log_tail(30)
            ))
        }
    })
}

/// The JSON a Python snippet printed as its last line.
fn last_json_line(stdout: &str) -> Value {
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|err| panic!("not JSON ({err}): {stdout}"))
}

/// One record of a disk-buffer segment file, as the gateway framed it:
/// `[u32 LE length][u32 LE crc32][payload]`, the payload being
/// `[u8 kind][u32 LE points][u16 LE len][db][u16 LE len][rp][body]`.
#[derive(Debug, Clone)]
struct Record {
    /// Where the frame starts in the file.
    offset: usize,
    /// Payload length.
    len: usize,
    points: u64,
    /// The line protocol the record holds.
    body: String,
}

/// Size of a segment file's header (`FGB1` and the format version).
const SEGMENT_HEADER: usize = 8;
/// Length and checksum before each payload.
const FRAME_HEADER: usize = 8;

/// The segment files of an output's disk buffer, oldest first.
fn segment_files(data_dir: &Path) -> Vec<PathBuf> {
    let dir = data_dir.join("buffer").join(OUTPUT);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The complete records written out to a segment file so far (a torn tail is left out).
fn read_records(path: &Path) -> Vec<Record> {
    let bytes = fs::read(path).unwrap_or_default();
    let u32_at = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(raw)).ok()
    };
    let u16_at = |at: usize| -> Option<usize> {
        let raw: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
        Some(usize::from(u16::from_le_bytes(raw)))
    };
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER;
    while let Some(len) = u32_at(at) {
        let start = at + FRAME_HEADER;
        if len == 0 || start + len > bytes.len() {
            break;
        }
        let points = u32_at(start + 1).unwrap_or(0) as u64;
        let db_len = u16_at(start + 5).unwrap_or(0);
        let rp_len = u16_at(start + 7 + db_len).unwrap_or(0);
        let body_start = (start + 9 + db_len + rp_len).min(start + len);
        records.push(Record {
            offset: at,
            len,
            points,
            body: String::from_utf8_lossy(&bytes[body_start..start + len]).into_owned(),
        });
        at = start + len;
    }
    records
}

/// Points in the records written out to the output's disk buffer.
fn points_on_disk(data_dir: &Path) -> u64 {
    segment_files(data_dir)
        .iter()
        .flat_map(|path| read_records(path))
        .map(|record| record.points)
        .sum()
}

/// An influxd that was started (so that `db` could be created) and then stopped: an upstream
/// that is down, to be started again on the same port and data.
fn influx_down_with(db: &str) -> InfluxDb {
    let mut influx = InfluxDb::start();
    influx.create_database(db);
    influx.stop();
    influx
}

// ---------------------------------------------------------------------------------------------
// 1. aioinflux's README example: write a point, then at once query it

/// aioinflux's README example as published, with the port and database as arguments (so the
/// direct run and the run through the gateway use one influxd and do not see each other's
/// point), and the result printed as JSON.
const AIOINFLUX_README: &str = r#"
import asyncio, json, sys
from aioinflux import InfluxDBClient

point = dict(time='2009-11-10T23:00:00Z',
             measurement='cpu_load_short',
             tags={'host': 'server01',
                   'region': 'us-west'},
             fields={'value': 0.64})

db = sys.argv[2]
client = InfluxDBClient(host='127.0.0.1', port=int(sys.argv[1]), db=db)

async def main():
    await client.create_database(db=db),
    await client.write(point),
    resp = await client.query('SELECT value FROM cpu_load_short')
    print(json.dumps(resp))
    await client.close()

asyncio.get_event_loop().run_until_complete(main())
"#;

/// Runs the README example against influxd directly and through a gateway with `http_keys`,
/// and checks both read the point back. Returns the gateway for further checks.
fn aioinflux_readme_example(http_keys: &str) -> (Gateway, InfluxDb) {
    let influx = InfluxDb::start();
    let http = loopback(free_port());
    let gateway = Gateway::start(
        &config(http, None, http_keys, &influx.url(), "graphite", ""),
        http,
    );
    let python = Python::venv();
    let influx_port = influx.addr().port().to_string();
    let direct = last_json_line(&python.run_ok(
        AIOINFLUX_README,
        &[&influx_port, "testdb_direct"],
        PYTHON_TIMEOUT,
    ));
    let expected = json!({"results": [{"statement_id": 0, "series": [{
        "name": "cpu_load_short",
        "columns": ["time", "value"],
        "values": [[1_257_894_000_000_000_000_i64, 0.64]],
    }]}]});
    assert_eq!(direct, expected, "the example against influxd itself");
    let gateway_port = http.port().to_string();
    let through = last_json_line(&python.run_ok(
        AIOINFLUX_README,
        &[&gateway_port, "testdb"],
        PYTHON_TIMEOUT,
    ));
    assert_eq!(
        through,
        direct,
        "the example through the gateway ({http_keys:?}) should read its point back as it \
         does against influxd (fluxgate_query_waits_total: {})\n{}",
        metric(&gateway, "fluxgate_query_waits_total", &[]),
        gateway.log_tail(20)
    );
    (gateway, influx)
}

#[test]
fn aioinflux_readme_example_reads_its_write_back() {
    let (gateway, _influx) = aioinflux_readme_example("");
    assert_eq!(
        metric(&gateway, "fluxgate_dropped_total", &[]),
        0.0,
        "{}",
        gateway.metrics()
    );
}

#[test]
fn aioinflux_readme_example_reads_its_write_back_with_ack_queued() {
    let (gateway, _influx) = aioinflux_readme_example("ack = \"queued\"");
    let waited = metric(
        &gateway,
        "fluxgate_query_waits_total",
        &[("outcome", "delivered")],
    );
    assert!(
        waited >= 1.0,
        "the query should have waited for the write: fluxgate_query_waits_total\
         {{outcome=\"delivered\"}} is {waited}\n{}",
        gateway.metrics()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. the influx CLI

fn influx_cli(port: u16, database: &str, execute: &str) -> (ExitStatus, String, String) {
    let binary = require_binary("influx", "influxdb-client");
    let mut command = Command::new(binary);
    command.args([
        "-host",
        "127.0.0.1",
        "-port",
        &port.to_string(),
        "-database",
        database,
        "-execute",
        execute,
    ]);
    run_command(command, b"", CLI_TIMEOUT)
}

#[test]
fn influx_cli_gets_influxdbs_answers_through_the_gateway() {
    let influx = InfluxDb::start();
    influx.create_database("clidb");
    let http = loopback(free_port());
    let gateway = Gateway::start(&config(http, None, "", &influx.url(), "graphite", ""), http);
    let (influx_port, gateway_port) = (influx.addr().port(), http.port());

    let insert = "INSERT cpu,host=cli value=1 1700000000000000000";
    let inserted = influx_cli(gateway_port, "clidb", insert);
    assert!(
        inserted.0.success(),
        "{inserted:?}\n{}",
        gateway.log_tail(20)
    );
    assert_eq!((inserted.1.as_str(), inserted.2.as_str()), ("", ""));
    let select = "SELECT * FROM cpu";
    let through = influx_cli(gateway_port, "clidb", select);
    let direct = influx_cli(influx_port, "clidb", select);
    assert!(
        direct.0.success() && direct.1.contains("1700000000000000000 cli  1"),
        "the point should be in influxd: {direct:?}"
    );
    assert_eq!(
        (through.0.code(), &through.1, &through.2),
        (direct.0.code(), &direct.1, &direct.2),
        "`{select}` through the gateway, then directly"
    );

    let insert = "INSERT cpu value=1";
    let direct = influx_cli(influx_port, "nosuchdb", insert);
    // influx 1.6 prints `ERR: {"error":"database not found: \"nosuchdb\""}`.
    assert!(
        direct.1.starts_with("ERR: ") && direct.1.contains("database not found"),
        "influxd itself: {direct:?}"
    );
    let through = influx_cli(gateway_port, "nosuchdb", insert);
    assert_eq!(
        (through.0.code(), &through.1, &through.2),
        (direct.0.code(), &direct.1, &direct.2),
        "`influx -database nosuchdb -execute '{insert}'`: (exit code, stdout, stderr) through \
         the gateway, then directly\n{}",
        gateway.log_tail(20)
    );
}

// ---------------------------------------------------------------------------------------------
// 3. client libraries get influxd's errors

const INFLUXDB_PYTHON_ERRORS: &str = r#"
import json, sys
from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError

client = InfluxDBClient('127.0.0.1', int(sys.argv[1]), database='pyerr')
out = {}

def attempt(name, points, **kwargs):
    try:
        client.write_points(points, time_precision='n', **kwargs)
        out[name] = 'ok'
    except InfluxDBClientError as e:
        content = e.content.decode() if isinstance(e.content, bytes) else e.content
        out[name] = {'code': e.code, 'content': content, 'str': str(e)}

attempt('missing', [{'measurement': 'm', 'fields': {'value': 1.0}, 'time': 1700000000000000000}],
        database='nosuchdb')
client.create_database('pyerr')
attempt('first', [{'measurement': 'conflict', 'fields': {'value': 1}, 'time': 1700000000000000000}])
attempt('conflict', [{'measurement': 'conflict', 'fields': {'value': 1.5},
                      'time': 1700000001000000000}])
print(json.dumps(out, sort_keys=True))
"#;

#[test]
fn influxdb_python_gets_influxdbs_errors_through_the_gateway() {
    let influx = InfluxDb::start();
    let http = loopback(free_port());
    let gateway = Gateway::start(&config(http, None, "", &influx.url(), "graphite", ""), http);
    let python = Python::venv();
    let direct = last_json_line(&python.run_ok(
        INFLUXDB_PYTHON_ERRORS,
        &[&influx.addr().port().to_string()],
        PYTHON_TIMEOUT,
    ));
    assert_eq!(direct["missing"]["code"], json!(404), "{direct}");
    assert_eq!(direct["first"], json!("ok"), "{direct}");
    assert_eq!(direct["conflict"]["code"], json!(400), "{direct}");
    assert!(
        direct["conflict"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("field type conflict")),
        "{direct}"
    );
    let through = last_json_line(&python.run_ok(
        INFLUXDB_PYTHON_ERRORS,
        &[&http.port().to_string()],
        PYTHON_TIMEOUT,
    ));
    assert_eq!(
        through,
        direct,
        "influxdb-python's errors through the gateway, then directly\n{}",
        gateway.log_tail(20)
    );
}

const INFLUXDB_CLIENT_ERRORS: &str = r#"
import json, sys
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

out = {}
with InfluxDBClient(url=sys.argv[1], token='my-token', org='my-org', timeout=10_000) as client:
    write = client.write_api(write_options=SYNCHRONOUS)
    for name, bucket, record in (
            ('missing', 'nosuchdb/autogen', 'm value=1 1700000000000000000'),
            ('conflict', 'v2err/autogen', 'conflict value=1.5 1700000001000000000')):
        try:
            write.write(bucket=bucket, record=record)
            out[name] = 'ok'
        except ApiException as e:
            body = json.loads(e.body)
            out[name] = {'status': e.status, 'message': body.get('message', body.get('error'))}
print(json.dumps(out, sort_keys=True))
"#;

/// influxd 1.6 has no `/api/v2/write`, so influxdb-client's errors through the gateway are
/// compared with influxd's own answers (status and message text) to the same writes on
/// `/write`.
#[test]
fn influxdb_client_v2_gets_influxdbs_errors_through_the_gateway() {
    let influx = InfluxDb::start();
    influx.create_database("v2err");
    influx.write("v2err", "conflict value=1i 1700000000000000000");
    let http = loopback(free_port());
    let gateway = Gateway::start(&config(http, None, "", &influx.url(), "graphite", ""), http);

    let direct = |db: &str, line: &str| {
        let response = write(&influx.url(), db, line);
        json!({"status": response.status, "message": response.json()["error"]})
    };
    let expected = json!({
        "missing": direct("nosuchdb", "m value=1 1700000000000000000"),
        "conflict": direct("v2err", "conflict value=1.5 1700000001000000000"),
    });
    assert_eq!(expected["missing"]["status"], json!(404), "{expected}");
    assert_eq!(expected["conflict"]["status"], json!(400), "{expected}");

    let through = last_json_line(&Python::venv().run_ok(
        INFLUXDB_CLIENT_ERRORS,
        &[&gateway.url()],
        PYTHON_TIMEOUT,
    ));
    assert_eq!(
        through,
        expected,
        "influxdb-client's errors through the gateway, then influxd's answers to the same \
         writes\n{}",
        gateway.log_tail(20)
    );
}

// ---------------------------------------------------------------------------------------------
// 4. a fresh setup: nobody ran CREATE DATABASE

/// 34 collectd metrics of each of two hosts, as collectd's write_graphite names them.
fn collectd_lines(timestamp: u64) -> Vec<String> {
    let mut metrics = Vec::new();
    for cpu in 0..4 {
        for state in ["idle", "user", "system", "wait"] {
            metrics.push(format!("cpu-{cpu}.cpu-{state}"));
        }
    }
    for kind in ["used", "free", "cached", "buffered"] {
        metrics.push(format!("memory.memory-{kind}"));
    }
    for term in ["shortterm", "midterm", "longterm"] {
        metrics.push(format!("load.load.{term}"));
    }
    for kind in ["free", "used", "reserved"] {
        metrics.push(format!("df-root.df_complex-{kind}"));
    }
    for kind in ["if_octets", "if_packets", "if_errors"] {
        for direction in ["rx", "tx"] {
            metrics.push(format!("interface-eth0.{kind}.{direction}"));
        }
    }
    for direction in ["read", "write"] {
        metrics.push(format!("disk-sda.disk_octets.{direction}"));
    }
    let mut lines = Vec::new();
    for (h, host) in ["web01_example_com", "db01_example_com"].iter().enumerate() {
        for (i, name) in metrics.iter().enumerate() {
            lines.push(format!(
                "collectd.{host}.{name} {}.5 {timestamp}",
                h * 100 + i
            ));
        }
    }
    lines
}

#[test]
fn graphite_lands_in_a_database_nobody_created() {
    let influx = InfluxDb::start();
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let gateway = Gateway::start(
        &config(
            http,
            Some(plaintext),
            "",
            &influx.url(),
            "collectd",
            "flush_interval = \"100ms\"",
        ),
        http,
    );
    let lines = collectd_lines(1_700_000_000);
    assert_eq!(lines.len(), 68);
    send_lines(plaintext, &lines);
    wait_for_count(&influx, &gateway, "collectd", "value", "/^collectd\\./", 68);
    let stored: BTreeSet<String> = influx
        .points("collectd")
        .into_iter()
        .map(|p| p.measurement)
        .collect();
    let sent: BTreeSet<String> = lines
        .iter()
        .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(stored, sent);
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_received_total",
            &[("listener", "plaintext_tcp")]
        ),
        68.0
    );
    assert_eq!(
        metric(&gateway, "fluxgate_dropped_total", &[]),
        0.0,
        "{}",
        gateway.metrics()
    );
}

// ---------------------------------------------------------------------------------------------
// 5.-8. the disk buffer

const DISK: &str = "buffer = \"disk\"\nflush_interval = \"200ms\"";

#[test]
fn kill_9_keeps_every_durably_acknowledged_write() {
    const REQUESTS: u64 = 8;
    const PER_REQUEST: u64 = 5_000;
    let mut influx = influx_down_with("durable");
    let http = loopback(free_port());
    let mut gateway = Gateway::start(
        &config(
            http,
            None,
            "ack = \"durable\"",
            &influx.url(),
            "durable",
            DISK,
        ),
        http,
    );
    let base = 1_700_000_000_000_000_000_i64;
    for request in 0..REQUESTS {
        let mut body = String::new();
        for k in 0..PER_REQUEST {
            let i = request * PER_REQUEST + k;
            let _ = writeln!(
                body,
                "kill9,lane=l{} i={i}i {}",
                i % 7,
                base + i64::try_from(i).unwrap() * 1_000
            );
        }
        let response = write(&gateway.url(), "durable", &body);
        assert_eq!(
            response.status,
            204,
            "write {request}: {}\n{}",
            response.text(),
            gateway.log_tail(20)
        );
    }
    let total = REQUESTS * PER_REQUEST;
    gateway.kill();

    gateway.start_again();
    influx.start_again();
    wait_for_count(&influx, &gateway, "durable", "i", "kill9", total);
    // Nothing else arrived, and every value is the one written at its time.
    assert_eq!(count(&influx, "durable", "i", "/.*/"), total);
    let json = influx.query("durable", "SELECT sum(i) FROM kill9");
    assert_eq!(
        json["results"][0]["series"][0]["values"][0][1],
        json!(total * (total - 1) / 2)
    );
}

#[test]
fn kill_9_keeps_fsynced_graphite_lines() {
    const N: u64 = 20_000;
    let flush_interval = Duration::from_millis(200);
    let mut influx = influx_down_with("graphite");
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let mut gateway = Gateway::start(
        &config(http, Some(plaintext), "", &influx.url(), "graphite", DISK),
        http,
    );
    let lines: Vec<String> = (0..N)
        .map(|i| format!("disk.tcp.s{} {i} {}", i % 50, 1_700_000_000 + i / 50))
        .collect();
    send_lines(plaintext, &lines);
    eventually(WAIT, || {
        let received = metric(
            &gateway,
            "fluxgate_received_total",
            &[("listener", "plaintext_tcp")],
        );
        let on_disk = points_on_disk(&gateway.dir().join("data"));
        if received == N as f64 && on_disk == N {
            Ok(())
        } else {
            Err(format!(
                "received {received}, {on_disk} points written out to the disk buffer, of {N}\n{}",
                gateway.log_tail(20)
            ))
        }
    });
    // Written out to the segment files; the syncer fsyncs every flush_interval.
    thread::sleep(flush_interval * 2);
    gateway.kill();

    gateway.start_again();
    influx.start_again();
    wait_for_count(
        &influx,
        &gateway,
        "graphite",
        "value",
        "/^disk\\.tcp\\./",
        N,
    );
    assert_eq!(count(&influx, "graphite", "value", "/.*/"), N);
}

/// Writes `writes` requests of 100 points (`corrupt i=<n>i`, n unique) with `ack = "durable"`
/// while influxd is down, kills the gateway, lets `damage` spoil the last record of the last
/// segment file, and restarts: the gateway must come up, count the repair and deliver every
/// point of every other record.
fn damaged_tail_is_cut(damage: impl FnOnce(&Path, &Record)) {
    const WRITES: i64 = 10;
    const PER_WRITE: i64 = 100;
    let mut influx = influx_down_with("corrupt");
    let http = loopback(free_port());
    let mut gateway = Gateway::start(
        &config(
            http,
            None,
            "ack = \"durable\"",
            &influx.url(),
            "corrupt",
            DISK,
        ),
        http,
    );
    let base = 1_700_000_000_000_000_000_i64;
    for w in 0..WRITES {
        let mut body = String::new();
        for k in 0..PER_WRITE {
            let n = w * PER_WRITE + k;
            let _ = writeln!(body, "corrupt,write=w{w} i={n}i {}", base + n * 1_000);
        }
        let response = write(&gateway.url(), "corrupt", &body);
        assert_eq!(response.status, 204, "{}", response.text());
    }
    gateway.kill();

    let data_dir = gateway.dir().join("data");
    let files = segment_files(&data_dir);
    let last_file = files.last().expect("the disk buffer has a segment file");
    let mut kept: Vec<i64> = Vec::new();
    let mut all_records = Vec::new();
    for file in &files {
        all_records.extend(read_records(file).into_iter().map(|r| (file.clone(), r)));
    }
    let total: u64 = all_records.iter().map(|(_, r)| r.points).sum();
    assert_eq!(total, (WRITES * PER_WRITE) as u64, "what the log held");
    let (_, last) = all_records.pop().expect("a record");
    for (_, record) in &all_records {
        kept.extend(record.body.lines().filter_map(|line| {
            let value = line.split(" i=").nth(1)?.split('i').next()?;
            value.parse::<i64>().ok()
        }));
    }
    assert_eq!(kept.len() as u64, total - last.points);
    damage(last_file, &last);

    gateway.start_again();
    let repaired = wait_metric_at_least(
        &gateway,
        "fluxgate_buffer_repaired_total",
        &[("output", OUTPUT)],
        1.0,
    );
    assert!(repaired >= 1.0);
    influx.start_again();
    wait_for_count(
        &influx,
        &gateway,
        "corrupt",
        "i",
        "corrupt",
        kept.len() as u64,
    );
    let mut stored = integer_values(&influx, "corrupt", "i", "corrupt");
    stored.sort_unstable();
    kept.sort_unstable();
    assert_eq!(
        stored, kept,
        "every point of the records before the damaged one, only those"
    );
    assert!(gateway.is_running(), "{}", gateway.log_tail(30));
}

#[test]
fn a_torn_buffer_tail_is_cut_and_the_rest_delivered() {
    damaged_tail_is_cut(|file, last| {
        let cut = last.offset + FRAME_HEADER + last.len / 2;
        let handle = fs::OpenOptions::new()
            .write(true)
            .open(file)
            .expect("open the segment file");
        handle
            .set_len(cut as u64)
            .expect("truncate the segment file");
    });
}

#[test]
fn a_corrupt_last_record_is_cut_and_the_rest_delivered() {
    damaged_tail_is_cut(|file, last| {
        let mut bytes = fs::read(file).expect("read the segment file");
        let at = last.offset + FRAME_HEADER + last.len / 2;
        bytes[at] ^= 0xff;
        fs::write(file, bytes).expect("write the segment file");
    });
}

/// `fluxgate buffer <args> --config <cfg>`: stdout, requiring success.
fn buffer_command(gateway: &Gateway, args: &[&str]) -> String {
    let config = gateway.config_path().display().to_string();
    let mut all = vec!["buffer"];
    all.extend_from_slice(args);
    all.extend(["--config", &config]);
    let (status, stdout, stderr) = run_fluxgate(&all, "", CLI_TIMEOUT);
    assert!(
        status.success(),
        "fluxgate {all:?}: {status}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    stdout
}

/// The record count `fluxgate buffer list` shows for `what` (`buffer`, `dead-letter`).
fn listed_records(listing: &str, what: &str) -> u64 {
    listing
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.first() == Some(&OUTPUT) && fields.get(1) == Some(&what) {
                fields.get(2)?.strip_suffix(" records")?.parse().ok()
            } else {
                None
            }
        })
        .unwrap_or_else(|| panic!("no {OUTPUT} {what} line in `fluxgate buffer list`:\n{listing}"))
}

#[test]
fn dead_letters_are_listed_replayed_and_delivered() {
    const POINTS: u64 = 50;
    let failing = InfluxV2Mock::start(|_, _| Reply::error(503, "unavailable", "overloaded"));
    let http = loopback(free_port());
    let output_keys = format!("{DISK}\nmax_retry_time = \"1s\"");
    let mut gateway = Gateway::start(
        &config(
            http,
            None,
            "ack = \"queued\"",
            &failing.url(),
            "dead",
            &output_keys,
        ),
        http,
    );
    let mut body = String::new();
    for i in 0..POINTS {
        let _ = writeln!(body, "dead,host=h{} i={i}i {}", i % 3, 1_700_000_000 + i);
    }
    let url = format!(
        "{}/write?{}",
        gateway.url(),
        form_urlencode(&[("db", "dead"), ("precision", "s")])
    );
    let response = http_request("POST", &url, &[], body.as_bytes()).expect("write");
    assert_eq!(response.status, 204, "{}", response.text());
    wait_metric_at_least(
        &gateway,
        "fluxgate_dropped_total",
        &[("output", OUTPUT), ("reason", "dead_letter")],
        POINTS as f64,
    );
    assert_eq!(
        metric(
            &gateway,
            "fluxgate_dropped_total",
            &[("output", OUTPUT), ("reason", "dead_letter")]
        ),
        POINTS as f64
    );
    gateway.sigterm();
    gateway.wait_exit(Duration::from_secs(15));

    let listing = buffer_command(&gateway, &["list"]);
    let dead = listed_records(&listing, "dead-letter");
    assert!(dead >= 1, "{listing}");
    let replayed = buffer_command(&gateway, &["replay", OUTPUT]);
    assert_eq!(
        replayed.trim_end(),
        format!("{OUTPUT}: {dead} dead-letter records moved back into the buffer")
    );
    let after_replay = buffer_command(&gateway, &["list"]);
    assert!(
        listed_records(&after_replay, "buffer") >= dead,
        "{after_replay}"
    );

    let influx = InfluxDb::start();
    influx.create_database("dead");
    gateway.write_config(&config(
        http,
        None,
        "ack = \"queued\"",
        &influx.url(),
        "dead",
        &output_keys,
    ));
    gateway.start_again();
    wait_for_count(&influx, &gateway, "dead", "i", "dead", POINTS);
    let mut values = integer_values(&influx, "dead", "i", "dead");
    values.sort_unstable();
    assert_eq!(values, (0..POINTS as i64).collect::<Vec<_>>());
    // Replayed dead letters are no longer waiting in the dead-letter buffer.
    assert_eq!(
        listed_records(&after_replay, "dead-letter"),
        0,
        "`fluxgate buffer list` after `fluxgate buffer replay {OUTPUT}`:\n{after_replay}"
    );
}

#[test]
fn disk_buffer_gauges_show_what_the_log_holds() {
    let mut influx = influx_down_with("gauges");
    let http = loopback(free_port());
    let gateway = Gateway::start(
        &config(
            http,
            None,
            "ack = \"durable\"",
            &influx.url(),
            "gauges",
            DISK,
        ),
        http,
    );
    for w in 0..5 {
        let response = write(&gateway.url(), "gauges", &format!("g value={w} {w}\n"));
        assert_eq!(response.status, 204, "{}", response.text());
    }
    let on_disk = points_on_disk(&gateway.dir().join("data"));
    assert_eq!(on_disk, 5);
    let labels = [("output", OUTPUT)];
    let records = metric(&gateway, "fluxgate_buffer_records", &labels);
    let bytes = metric(&gateway, "fluxgate_buffer_bytes", &labels);
    assert!(
        records >= 1.0 && bytes > 0.0,
        "while influxd is down the log holds 5 undelivered records: fluxgate_buffer_records \
         is {records}, fluxgate_buffer_bytes is {bytes}\n{}",
        gateway.metrics()
    );
    influx.start_again();
    wait_for_count(&influx, &gateway, "gauges", "value", "g", 5);
    eventually(WAIT, || {
        let records = metric(&gateway, "fluxgate_buffer_records", &labels);
        if records == 0.0 {
            Ok(())
        } else {
            Err(format!(
                "fluxgate_buffer_records is {records} after delivery"
            ))
        }
    });
}

// ---------------------------------------------------------------------------------------------
// 9. partial writes with a long message

#[test]
fn a_long_partial_write_message_is_accounted_per_point() {
    let influx = InfluxDb::start();
    influx.create_database("pw");
    let measurement = format!("m{}", "x".repeat(300));
    let field = format!("f{}", "y".repeat(300));
    // The field is an integer from here on; a float for it is a type conflict. InfluxDB keeps
    // field types per shard, so this point sits in the shard the gateway's points go to
    // (otherwise whichever of the gateway's parallel requests came first would decide).
    influx.write(
        "pw",
        &format!("{measurement},src=direct {field}=0i 1699999999000000000"),
    );
    let http = loopback(free_port());
    let gateway = Gateway::start(
        &config(
            http,
            None,
            "ack = \"queued\"",
            &influx.url(),
            "graphite",
            "flush_interval = \"100ms\"",
        ),
        http,
    );
    let mut body = String::new();
    let base = 1_700_000_000_000_000_000_i64;
    for i in 0..100_i64 {
        let value = if i == 42 {
            "1.5".to_owned()
        } else {
            format!("{i}i")
        };
        let _ = writeln!(
            body,
            "{measurement},src=gw,n=n{i} {field}={value} {}",
            base + i
        );
    }
    let response = write(&gateway.url(), "pw", &body);
    assert_eq!(response.status, 204, "{}", response.text());

    // What influxd says about the conflict, for the record: longer than 512 characters.
    let answer = write(
        &influx.url(),
        "pw",
        &format!("{measurement},src=probe {field}=1.5 1699999999000000001"),
    );
    assert_eq!(answer.status, 400);
    assert!(answer.text().len() > 512, "{}", answer.text());

    let labels = [("output", OUTPUT)];
    eventually(WAIT, || {
        let sent = metric(&gateway, "fluxgate_sent_points_total", &labels);
        let dropped = metric(&gateway, "fluxgate_dropped_total", &labels);
        if sent + dropped >= 100.0 {
            Ok(())
        } else {
            Err(format!(
                "sent {sent} + dropped {dropped} of 100\n{}",
                gateway.log_tail(20)
            ))
        }
    });
    let stored = count(
        &influx,
        "pw",
        &format!("\"{field}\""),
        &format!("\"{measurement}\" WHERE src = 'gw'"),
    );
    assert_eq!(
        stored, 99,
        "influxd keeps the 99 points that do not conflict"
    );
    assert_eq!(
        (
            metric(&gateway, "fluxgate_sent_points_total", &labels),
            metric(
                &gateway,
                "fluxgate_dropped_total",
                &[("output", OUTPUT), ("reason", "partial_write")]
            ),
            metric(&gateway, "fluxgate_dropped_total", &labels),
        ),
        (99.0, 1.0, 1.0),
        "(sent, dropped as partial_write, dropped in all)\n{}\n{}",
        gateway.metrics(),
        gateway.log_tail(20)
    );
}

/// Once the upstream has answered, `/ping` reports the upstream's own version, as a client
/// pointed at InfluxDB directly would see it.
#[test]
fn ping_reports_the_upstreams_version_once_known() {
    let influx = InfluxDb::start();
    influx.create_database("pings");
    let direct = http_request("GET", &format!("{}/ping", influx.url()), &[], &[]).unwrap();
    let upstream = direct
        .header("X-Influxdb-Version")
        .expect("influxd reports its version")
        .to_owned();
    let http = loopback(free_port());
    let gateway = Gateway::start(
        &format!(
            "[listeners.http]\naddress = \"{http}\"\n\
             [[outputs.influxdb]]\nname = \"influx\"\nurl = \"{}\"\ndatabase = \"pings\"\n",
            influx.url()
        ),
        http,
    );
    let write = http_request(
        "POST",
        &format!("{}/write?db=pings", gateway.url()),
        &[],
        b"m v=1 1700000000000000000",
    )
    .unwrap();
    assert_eq!(write.status, 204, "{}", write.text());
    let ping = http_request("GET", &format!("{}/ping", gateway.url()), &[], &[]).unwrap();
    assert_eq!(ping.status, 204);
    assert_eq!(ping.header("X-Influxdb-Version"), Some(upstream.as_str()));
    let verbose = http_request(
        "GET",
        &format!("{}/ping?verbose=true", gateway.url()),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(verbose.json(), json!({ "version": upstream }));
}
