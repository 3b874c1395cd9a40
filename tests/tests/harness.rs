//! Proves the fixtures against the real servers and clients: if these fail, no end-to-end
//! result means anything.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use fluxgate_e2e::{
    carbon_c_relay_cluster, carbon_c_relay_placement, carbon_c_relay_test_mode,
    decode_pickle_frames, free_port, free_udp_port, http_get, http_post, http_request, loopback,
    pickle_frame, require_binary, run_python, send_tcp, system_python, tcp_is_listening, unix_now,
    wait_for_tcp, workspace_root, CarbonCRelay, CarbonCache, CarbonRelay, Gateway, GraphiteService,
    InfluxDb, Point, Python, RelayMethod, TcpCapture,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const PYTHON_TIMEOUT: Duration = Duration::from_secs(60);

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn fields(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn panic_message(result: std::thread::Result<()>) -> String {
    let panic = result.expect_err("expected a panic");
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// plumbing

#[test]
fn free_ports_are_distinct_and_bindable() {
    let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
    let udp = free_udp_port();
    std::net::UdpSocket::bind(loopback(udp)).unwrap();
    std::net::TcpListener::bind(loopback(udp)).unwrap();
    assert!(!wait_for_tcp(
        loopback(free_port()),
        Duration::from_millis(100)
    ));
}

#[test]
fn a_missing_server_fails_with_install_instructions() {
    let message = panic_message(std::panic::catch_unwind(|| {
        require_binary("fluxgate-no-such-server", "fluxgate-no-such-package");
    }));
    assert_eq!(
        message,
        "`fluxgate-no-such-server` not found: install it with \
         `apt-get install fluxgate-no-such-package` or run scripts/install-test-deps.sh"
    );
    assert_eq!(
        require_binary("influxd", "influxdb").file_name().unwrap(),
        "influxd"
    );
}

#[test]
fn tcp_capture_keeps_connections_apart() {
    let capture = TcpCapture::start();
    send_tcp(capture.addr(), b"a.b 1 2\nc.d 3");
    send_tcp(capture.addr(), b" 4\n");
    send_tcp(capture.addr(), b"e.f 5 6\n");
    let lines = capture.wait_for_lines(2, WAIT);
    assert_eq!(capture.connection_count(), 3);
    assert_eq!(
        capture.connections(),
        vec![
            b"a.b 1 2\nc.d 3".to_vec(),
            b" 4\n".to_vec(),
            b"e.f 5 6\n".to_vec()
        ]
    );
    // A line is only complete within its own connection.
    assert_eq!(lines, vec!["a.b 1 2", " 4", "e.f 5 6"]);
}

// ---------------------------------------------------------------------------------------------
// InfluxDB

#[test]
fn influxdb_write_query_stop_and_start_again_keeps_data() {
    let mut influx = InfluxDb::start();
    let ping = http_get(&format!("{}/ping", influx.url())).unwrap();
    assert_eq!(ping.status, 204);
    assert_eq!(ping.header("X-Influxdb-Version"), Some("1.6.7~rc0"));

    influx.create_database("e2e");
    // Plain HTTP, as any client would, not the fixture's helper.
    let response = http_post(
        &format!("{}/write?db=e2e&precision=s", influx.url()),
        "text/plain",
        b"cpu,host=a,dc=eu value=0.5,count=3i 1700000000\ncpu,host=b value=1 1700000001\n",
    )
    .unwrap();
    assert_eq!(response.status, 204, "{}", response.text());

    let expected = vec![
        Point {
            measurement: "cpu".into(),
            tags: tags(&[("dc", "eu"), ("host", "a")]),
            time: 1_700_000_000_000_000_000,
            fields: fields(&[("count", json!(3)), ("value", json!(0.5))]),
        },
        Point {
            measurement: "cpu".into(),
            tags: tags(&[("host", "b")]),
            time: 1_700_000_001_000_000_000,
            fields: fields(&[("value", json!(1))]),
        },
    ];
    assert_eq!(influx.points("e2e"), expected);
    assert_eq!(
        influx.field_types("e2e", "cpu"),
        [
            ("count".to_owned(), "integer".to_owned()),
            ("value".to_owned(), "float".to_owned())
        ]
        .into()
    );

    influx.stop();
    assert!(!influx.is_running());
    assert!(http_get(&format!("{}/ping", influx.url())).is_err());

    influx.start_again();
    assert_eq!(influx.points("e2e"), expected);
    influx.write("e2e", "mem free=7i 1700000002000000000");
    assert_eq!(influx.wait_for_points("e2e", 3, WAIT).len(), 3);
}

/// Facts about InfluxDB 1.6.7 that fluxgate's outputs and tests must live with.
#[test]
fn influxdb_1_6_behaviour_the_gateway_relies_on() {
    let influx = InfluxDb::start();
    influx.create_database("q");
    let write = |query: &str, body: &str| {
        http_request(
            "POST",
            &format!("{}/write?{query}", influx.url()),
            &[],
            body.as_bytes(),
        )
        .unwrap()
    };

    // Unsigned integers are not compiled into 1.x OSS.
    let response = write("db=q", "m v=1u 1");
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        json!({"error": "unable to parse 'm v=1u 1': invalid number"})
    );

    // Some bad lines: the good ones are written anyway, and the answer is still a 400.
    let response = write("db=q", "m v=1 1\nbad line\nm v=2 2");
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        json!({"error": "partial write: unable to parse 'bad line': invalid field format dropped=0"})
    );
    assert_eq!(influx.points("q").len(), 2);

    // A trailing \r breaks the timestamp.
    let response = write("db=q", "m v=3 3\r\n");
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        json!({"error": "unable to parse 'm v=3 3\r': bad timestamp"})
    );

    // Missing database, with the error text clients match on.
    let response = write("db=nope", "m v=1");
    assert_eq!(response.status, 404);
    assert_eq!(
        response.json(),
        json!({"error": "database not found: \"nope\""})
    );
    assert_eq!(
        response.header("X-Influxdb-Error"),
        Some("database not found: \"nope\"")
    );

    // `u` is microseconds; `us` is NOT understood by 1.6 and silently means nanoseconds.
    assert_eq!(
        write("db=q&precision=u", "us v=1 1700000000000000").status,
        204
    );
    assert_eq!(
        write("db=q&precision=us", "us v=2 1700000000000000").status,
        204
    );
    let times: Vec<i64> = influx
        .select("q", "SELECT * FROM us")
        .iter()
        .map(|p| p.time)
        .collect();
    assert_eq!(
        times,
        vec![1_700_000_000_000_000, 1_700_000_000_000_000_000]
    );

    // v2-style parameters on /write are not understood.
    let response = write("bucket=q&org=x", "m v=1");
    assert_eq!(response.status, 400);
    assert_eq!(response.json(), json!({"error": "database is required"}));
    // No v2 write API in 1.6 (it arrived in 1.8).
    let response = http_request(
        "POST",
        &format!("{}/api/v2/write?bucket=q&org=x", influx.url()),
        &[],
        b"m v=1",
    )
    .unwrap();
    assert_eq!(response.status, 404);
    assert_eq!(response.text(), "404 page not found\n");
}

#[test]
fn influxdb_graphite_service_applies_templates() {
    let influx = InfluxDb::builder()
        .graphite(
            GraphiteService::new("graphite")
                .template("servers.* .host.resource.measurement*")
                .template("stats.* .measurement.field*")
                .tag("source=graphite"),
        )
        .start();
    // Nothing yet: the service creates its database with the first batch.
    assert_eq!(influx.databases(), Vec::<String>::new());
    influx.send_graphite_lines([
        "servers.localhost.cpu.loadavg.10 1 1700000000",
        "stats.web.requests.ok 7 1700000001",
        "other.thing 2.5 1700000002",
    ]);
    let points = influx.wait_for_points("graphite", 3, WAIT);
    assert_eq!(influx.databases(), vec!["graphite"]);
    assert_eq!(
        points,
        vec![
            Point {
                measurement: "loadavg.10".into(),
                tags: tags(&[
                    ("host", "localhost"),
                    ("resource", "cpu"),
                    ("source", "graphite")
                ]),
                time: 1_700_000_000_000_000_000,
                fields: fields(&[("value", json!(1))]),
            },
            Point {
                measurement: "other.thing".into(),
                tags: tags(&[("source", "graphite")]),
                time: 1_700_000_002_000_000_000,
                fields: fields(&[("value", json!(2.5))]),
            },
            Point {
                measurement: "web".into(),
                tags: tags(&[("source", "graphite")]),
                time: 1_700_000_001_000_000_000,
                fields: fields(&[("requests.ok", json!(7))]),
            },
        ]
    );
    assert_eq!(
        influx.field_types("graphite", "loadavg.10"),
        [("value".to_owned(), "float".to_owned())].into()
    );
}

#[test]
fn influxdb_with_authentication() {
    let influx = InfluxDb::builder().admin("admin", "s3cret").start();
    influx.create_database("auth");
    influx.write("auth", "m v=1 1");
    assert_eq!(influx.points("auth").len(), 1);
    let anonymous = http_post(
        &format!("{}/write?db=auth", influx.url()),
        "text/plain",
        b"m v=2 2",
    )
    .unwrap();
    assert_eq!(anonymous.status, 401);
    let with_params = http_post(
        &format!("{}/write?db=auth&u=admin&p=s3cret", influx.url()),
        "text/plain",
        b"m v=2 2",
    )
    .unwrap();
    assert_eq!(with_params.status, 204);
}

// ---------------------------------------------------------------------------------------------
// carbon

#[test]
fn carbon_cache_stores_plaintext_and_pickle() {
    let cache = CarbonCache::start();
    let now = unix_now();
    cache.send_lines([
        format!("e2e.plain.metric 1.5 {}", now - 3),
        format!("e2e.plain.metric 2.5 {}", now - 2),
    ]);
    // A hand-built pickle frame, raw on the socket.
    send_tcp(
        cache.pickle_addr(),
        &pickle_frame(&[("e2e.pickled.metric", now - 2, -4.25)]),
    );

    assert_eq!(
        cache.wait_for_points("e2e.plain.metric", 2, WAIT),
        vec![(now - 3, 1.5), (now - 2, 2.5)]
    );
    assert_eq!(
        cache.wait_for_points("e2e.pickled.metric", 1, WAIT),
        vec![(now - 2, -4.25)]
    );
    // (from, until] with one slot per second.
    assert_eq!(
        cache.fetch("e2e.plain.metric", now - 5, now - 1),
        vec![
            (now - 4, None),
            (now - 3, Some(1.5)),
            (now - 2, Some(2.5)),
            (now - 1, None)
        ]
    );
    assert_eq!(cache.fetch("e2e.never.sent", now - 5, now), vec![]);
    assert!(cache
        .whisper_path("e2e.plain.metric")
        .ends_with("storage/whisper/e2e/plain/metric.wsp"));
    assert_eq!(
        cache.metrics(),
        vec!["e2e.pickled.metric", "e2e.plain.metric"]
    );
}

#[test]
fn carbon_cache_tagged_series_and_restart() {
    let mut cache = CarbonCache::start();
    let now = unix_now();
    cache.send_lines([format!("e2e.tagged;dc=eu;a=b 7 {}", now - 1)]);
    // carbon normalizes the tag order; either spelling finds the same file.
    assert_eq!(
        cache.wait_for_points("e2e.tagged;a=b;dc=eu", 1, WAIT),
        vec![(now - 1, 7.0)]
    );
    assert_eq!(
        cache.whisper_path("e2e.tagged;dc=eu;a=b"),
        cache.whisper_path("e2e.tagged;a=b;dc=eu")
    );
    let line_addr = cache.line_addr();
    cache.stop();
    assert!(!tcp_is_listening(line_addr));
    cache.start_again();
    assert_eq!(cache.points("e2e.tagged;a=b;dc=eu"), vec![(now - 1, 7.0)]);
}

#[test]
fn two_carbon_caches_run_side_by_side() {
    let (first, second) = std::thread::scope(|scope| {
        let first = scope.spawn(CarbonCache::start);
        let second = scope.spawn(CarbonCache::start);
        (first.join().unwrap(), second.join().unwrap())
    });
    assert_ne!(first.line_addr(), second.line_addr());
    let now = unix_now();
    first.send_lines([format!("e2e.first 1 {}", now - 1)]);
    second.send_lines([format!("e2e.second 2 {}", now - 1)]);
    assert_eq!(
        first.wait_for_points("e2e.first", 1, WAIT),
        vec![(now - 1, 1.0)]
    );
    assert_eq!(
        second.wait_for_points("e2e.second", 1, WAIT),
        vec![(now - 1, 2.0)]
    );
    assert_eq!(first.metrics(), vec!["e2e.first"]);
    assert_eq!(second.metrics(), vec!["e2e.second"]);
}

#[test]
fn carbon_relay_forwards_pickle_protocol_2() {
    let destination = TcpCapture::start();
    let relay = CarbonRelay::builder()
        .method(RelayMethod::ConsistentHashing)
        .destination(&format!("127.0.0.1:{}:a", destination.addr().port()))
        .start();
    let now = unix_now();
    relay.send_lines([
        format!("e2e.relayed.one 1 {now}"),
        format!("e2e.relayed.two 2.5 {now}"),
    ]);
    relay.send_pickle(&[("e2e.relayed.three", now, 3.0)]);
    let frames = destination.wait_for_pickle_points(3, WAIT);
    let mut points: Vec<(String, f64, f64)> = frames.into_iter().flatten().collect();
    points.sort_by(|a, b| a.0.cmp(&b.0));
    #[allow(clippy::cast_precision_loss)]
    let t = now as f64;
    assert_eq!(
        points,
        vec![
            ("e2e.relayed.one".to_owned(), t, 1.0),
            ("e2e.relayed.three".to_owned(), t, 3.0),
            ("e2e.relayed.two".to_owned(), t, 2.5),
        ]
    );
    // Pickle protocol 2 with a length prefix.
    let bytes = destination.bytes();
    assert_eq!(&bytes[4..6], b"\x80\x02");
    assert!(!decode_pickle_frames(&bytes).is_empty());
}

#[test]
fn carbon_c_relay_forwards_plaintext() {
    let destination = TcpCapture::start();
    let relay = CarbonCRelay::builder()
        .hash("forward")
        .destination(&destination.addr().to_string())
        .start();
    relay.send_lines(["e2e.c.relay  1   1700000000", "e2e.c$relay 2 1700000000"]);
    // carbon-c-relay normalizes whitespace and replaces characters outside [A-Za-z0-9-_:#].
    assert_eq!(
        destination.wait_for_lines(2, WAIT),
        vec!["e2e.c.relay 1 1700000000", "e2e.c_relay 2 1700000000"]
    );
    assert!(
        relay.config().contains("    forward\n"),
        "{}",
        relay.config()
    );
}

#[test]
fn carbon_c_relay_test_mode_matches_carbons_consistent_hashing() {
    let members = ["127.0.0.1:2104=a", "127.0.0.1:2204=b", "127.0.0.1:2304=c"];
    let config = format!(
        "{}match *\n    send to dest\n    stop\n    ;\n",
        carbon_c_relay_cluster("dest", "carbon_ch", 1, &members)
    );
    let metrics: Vec<String> = (1..=12)
        .map(|i| format!("servers.host{i}.cpu.user"))
        .collect();
    let input: String = metrics
        .iter()
        .map(|m| format!("{m} 1 1700000000\n"))
        .collect();

    let output = carbon_c_relay_test_mode(&config, &input);
    assert!(output.contains("carbon_ch(dest)"), "{output}");
    let placement = carbon_c_relay_placement(&config, &input);
    assert_eq!(
        placement.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(),
        metrics
    );

    // The reference: carbon's own router, run by Debian's Python.
    let code = "import sys\n\
        from carbon.routers import ConsistentHashingRouter\n\
        from carbon.conf import settings\n\
        router = ConsistentHashingRouter(settings)\n\
        for port, instance in ((2104, 'a'), (2204, 'b'), (2304, 'c')):\n\
        \x20   router.addDestination(('127.0.0.1', port, instance))\n\
        for metric in sys.argv[1:]:\n\
        \x20   print(' '.join('%s:%d' % d[:2] for d in router.getDestinations(metric)))";
    let args: Vec<&str> = metrics.iter().map(String::as_str).collect();
    let reference = system_python().run_ok(code, &args, PYTHON_TIMEOUT);
    let expected: Vec<(String, Vec<String>)> = metrics
        .iter()
        .cloned()
        .zip(reference.lines().map(|l| vec![l.to_owned()]))
        .collect();
    assert_eq!(placement, expected);
}

// ---------------------------------------------------------------------------------------------
// Python clients

/// Pinned `name==version` lines of scripts/requirements-test.txt.
fn pinned(name: &str) -> String {
    let path = workspace_root().join("scripts/requirements-test.txt");
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter_map(|line| line.split('#').next())
        .filter_map(|line| line.trim().split_once("=="))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| panic!("{name} is not pinned in {}", path.display()))
}

#[test]
fn python_clients_import_at_the_pinned_versions() {
    let code = "from importlib.metadata import version\n\
        import aioinflux, influxdb, influxdb_client, aiographite\n\
        for name in ('aioinflux', 'influxdb', 'influxdb-client', 'aiographite'):\n\
        \x20   print(name, version(name))";
    let (status, stdout, stderr) = run_python(code, &[], PYTHON_TIMEOUT);
    assert!(status.success(), "{stderr}");
    let expected: String = ["aioinflux", "influxdb", "influxdb-client", "aiographite"]
        .iter()
        .map(|name| format!("{name} {}\n", pinned(name)))
        .collect();
    assert_eq!(stdout, expected);
    assert_eq!(system_python().path(), Path::new("/usr/bin/python3"));
}

#[test]
fn influxdb_python_client_writes_and_queries() {
    let influx = InfluxDb::start();
    let code = r#"
import json, sys
from influxdb import InfluxDBClient
client = InfluxDBClient(host='127.0.0.1', port=int(sys.argv[1]), database='py')
print(client.ping())
client.create_database('py')
assert client.write_points([
    {"measurement": "cpu", "tags": {"host": "a"}, "time": 1700000000000000000,
     "fields": {"value": 0.5, "n": 3}},
])
print(json.dumps(list(client.query('SELECT * FROM cpu', epoch='s').get_points())))
"#;
    let port = influx.addr().port().to_string();
    let stdout = Python::venv().run_ok(code, &[&port], PYTHON_TIMEOUT);
    assert_eq!(
        stdout,
        "1.6.7~rc0\n[{\"time\": 1700000000, \"host\": \"a\", \"n\": 3, \"value\": 0.5}]\n"
    );
    assert_eq!(
        influx.points("py"),
        vec![Point {
            measurement: "cpu".into(),
            tags: tags(&[("host", "a")]),
            time: 1_700_000_000_000_000_000,
            fields: fields(&[("n", json!(3)), ("value", json!(0.5))]),
        }]
    );
    assert_eq!(
        influx.field_types("py", "cpu"),
        [
            ("n".to_owned(), "integer".to_owned()),
            ("value".to_owned(), "float".to_owned())
        ]
        .into()
    );
}

#[test]
fn aioinflux_writes_and_queries() {
    let influx = InfluxDb::start();
    let code = r#"
import asyncio, json, sys
from aioinflux import InfluxDBClient
async def main():
    async with InfluxDBClient(host='127.0.0.1', port=int(sys.argv[1]), db='aio') as client:
        headers = await client.ping()
        print(headers['X-Influxdb-Version'])
        await client.create_database(db='aio')
        await client.write('cpu,host=b value=1.5,up=true 1700000000000000000')
        await client.write({'measurement': 'mem', 'tags': {'host': 'c'},
                            'fields': {'free': 7}, 'time': 1700000001000000000})
        result = await client.query('SELECT * FROM cpu', epoch='s')
        print(json.dumps(result['results'][0]['series'][0]['values']))
asyncio.run(main())
"#;
    let port = influx.addr().port().to_string();
    let stdout = Python::venv().run_ok(code, &[&port], PYTHON_TIMEOUT);
    assert_eq!(stdout, "1.6.7~rc0\n[[1700000000, \"b\", true, 1.5]]\n");
    assert_eq!(influx.points("aio").len(), 2);
    assert_eq!(
        influx.field_types("aio", "mem"),
        [("free".to_owned(), "integer".to_owned())].into()
    );
}

#[test]
fn influxdb_client_v2_is_constructed_and_meets_1_6s_missing_v2_api() {
    let influx = InfluxDb::start();
    influx.create_database("v2");
    let code = r#"
import sys
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
with InfluxDBClient(url=sys.argv[1], token='user:password', org='-', timeout=10_000) as client:
    print('ping', client.ping())
    write_api = client.write_api(write_options=SYNCHRONOUS)
    try:
        write_api.write(bucket='v2/autogen', record='cpu value=1 1700000000000000000')
        print('written')
    except ApiException as err:
        print('status', err.status)
"#;
    let stdout = Python::venv().run_ok(code, &[&influx.url()], PYTHON_TIMEOUT);
    assert_eq!(stdout, "ping True\nstatus 404\n");
}

#[test]
fn aiographite_sends_plaintext_and_pickle_to_carbon_cache() {
    let cache = CarbonCache::start();
    let now = unix_now();
    let code = r#"
import asyncio, sys
from aiographite.aiographite import connect
from aiographite.protocol import PlaintextProtocol, PickleProtocol
async def main(line_port, pickle_port, now):
    conn = await connect('127.0.0.1', line_port, PlaintextProtocol())
    await conn.send('e2e.aiographite.plain', 42, now - 1)
    await conn.close()
    conn = await connect('127.0.0.1', pickle_port, PickleProtocol())
    await conn.send_multiple([('e2e.aiographite.pickle', 1.25, now - 1)])
    await conn.close()
asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
"#;
    let line = cache.line_addr().port().to_string();
    let pickle = cache.pickle_addr().port().to_string();
    Python::venv().run_ok(code, &[&line, &pickle, &now.to_string()], PYTHON_TIMEOUT);
    assert_eq!(
        cache.wait_for_points("e2e.aiographite.plain", 1, WAIT),
        vec![(now - 1, 42.0)]
    );
    assert_eq!(
        cache.wait_for_points("e2e.aiographite.pickle", 1, WAIT),
        vec![(now - 1, 1.25)]
    );
}

// ---------------------------------------------------------------------------------------------
// Gateway fixture, exercised with a stand-in for the fluxgate binary

/// A stand-in that behaves like `fluxgate run --config FILE` from the outside: serves
/// /health on the config's [listeners.http] address, logs on SIGHUP, exits 0 on SIGTERM.
const STAND_IN: &str = r#"#!/usr/bin/env python3
import http.server, re, signal, sys
assert sys.argv[1:3] == ['run', '--config'], sys.argv
config = open(sys.argv[3]).read()
host, port = re.search(r'address\s*=\s*"([^"]+):(\d+)"', config).groups()
print('config', config.strip(), flush=True)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == '/health' else 404)
        self.send_header('Content-Length', '0')
        self.end_headers()
    def log_message(self, *args):
        pass
def reload(*_):
    print('reloading', open(sys.argv[3]).read().strip(), flush=True)
def stop(*_):
    print('draining', file=sys.stderr, flush=True)
    sys.exit(0)
signal.signal(signal.SIGHUP, reload)
signal.signal(signal.SIGTERM, stop)
http.server.HTTPServer((host, int(port)), Health).serve_forever(poll_interval=0.05)
"#;

fn write_executable(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn gateway_fixture_drives_a_process_like_fluxgate() {
    let scripts = tempfile::tempdir().unwrap();
    let stand_in = scripts.path().join("fluxgate");
    write_executable(&stand_in, STAND_IN);

    let http = loopback(free_port());
    let config = format!("[listeners.http]\naddress = \"{http}\"\nspool = \"@DIR@/spool\"\n");
    let mut gateway = Gateway::builder(&config)
        .binary(&stand_in)
        .http_addr(http)
        .start();
    assert_eq!(gateway.get("/health").unwrap().status, 200);
    assert!(gateway
        .log()
        .contains(&format!("spool = \"{}/spool\"", gateway.dir().display())));

    gateway.write_config(&format!("[listeners.http]\naddress = \"{http}\"\n# v2\n"));
    gateway.sighup();
    let deadline = std::time::Instant::now() + WAIT;
    while !gateway.log().contains("reloading [listeners.http]") {
        assert!(std::time::Instant::now() < deadline, "{}", gateway.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gateway.is_running());

    gateway.sigterm();
    let status = gateway.wait_exit(WAIT);
    assert!(status.success(), "{status}");
    assert!(gateway.log().contains("draining"));
    assert!(!gateway.is_running());
}

#[test]
fn gateway_fixture_reports_an_early_exit_with_the_log() {
    let scripts = tempfile::tempdir().unwrap();
    let stand_in = scripts.path().join("fluxgate");
    write_executable(
        &stand_in,
        "#!/bin/sh\necho \"error: unknown key 'bogus' in $3\" >&2\nexit 2\n",
    );
    let http = loopback(free_port());
    let mut gateway = Gateway::builder("bogus = 1\n").binary(&stand_in).spawn();
    // Caught here rather than around the whole fixture, so the fixture is dropped normally
    // and removes its directory (a fixture dropped while panicking keeps it for inspection).
    let message = panic_message(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || gateway.wait_healthy(http, WAIT),
    )));
    assert!(
        message.starts_with("fluxgate exited (exit status: 2) while waiting for GET http://"),
        "{message}"
    );
    assert!(
        message.contains("error: unknown key 'bogus' in "),
        "{message}"
    );
    assert!(message.contains(&gateway.dir().join("fluxgate.toml").display().to_string()));
    drop(gateway);

    let mut gateway = Gateway::builder("bogus = 1\n").binary(&stand_in).spawn();
    assert_eq!(gateway.wait_exit(WAIT).code(), Some(2));
}
