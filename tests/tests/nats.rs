//! Scaling out through NATS JetStream, end to end with real servers: `nats-server -js` (one,
//! or a cluster of three with routes for replicated streams), influxd and carbon-cache.
//!
//! - Two edge fluxgates take Graphite plaintext and HTTP writes and publish them to one
//!   stream (`[[outputs.nats]]`); two deliverer fluxgates in one consumer group
//!   (`[listeners.nats]`) deliver into InfluxDB and carbon: every point arrives once in
//!   InfluxDB, every datapoint lands in whisper, and nothing is left unacknowledged.
//! - On a 3-node cluster with 3 replicas: a deliverer killed with -9 in the middle of the
//!   stream, and one of the three nats-servers killed with -9: nothing is lost, the
//!   successor and the other deliverer take over what the dead one had not acknowledged.
//! - A stream at its `max_bytes`: an edge with `overflow = "drop_newest"` drops and counts
//!   (`stream_full`); one with `overflow = "block"` holds its points (retries counted) and
//!   publishes them once a deliverer made room.
//! - `check` and `dry-run` show the NATS output and each point's subject.
//!
//! Every wait is on an observed event (points stored, metrics), bounded in time.

use std::net::SocketAddr;
use std::time::Duration;

use fluxgate_e2e::{
    eventually, free_port, http_post, loopback, metric, run_fluxgate, send_lines, unix_now,
    wait_metric, CarbonCache, Gateway, InfluxDb, NatsCluster, NatsServer,
};

const WAIT: Duration = Duration::from_secs(60);

fn toml_list(urls: &[String]) -> String {
    let quoted: Vec<String> = urls.iter().map(|u| format!("{u:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// An edge: Graphite plaintext and HTTP writes in; Graphite points published as Graphite
/// (partitioned by path), HTTP writes as line protocol (by database), to `stream`.
fn edge_config(plaintext: SocketAddr, servers: &[String], stream: &str, extra: &str) -> String {
    let servers = toml_list(servers);
    format!(
        r#"shutdown_timeout = "5s"

[listeners.plaintext]
tcp = "{plaintext}"

[listeners.http]
address = "@HTTP@"

[[outputs.nats]]
name = "js_graphite"
servers = {servers}
stream = "{stream}"
subject = "fluxgate.graphite.{{partition}}"
partitions = 4
format = "graphite"
batch_size = 50
flush_interval = "50ms"
retry_initial = "50ms"
retry_max = "500ms"
timeout = "2s"
{extra}

[[outputs.nats]]
name = "js_lp"
servers = {servers}
stream = "{stream}"
subject = "fluxgate.lp.{{db}}"
format = "line_protocol"
batch_size = 50
flush_interval = "50ms"
retry_initial = "50ms"
retry_max = "500ms"
timeout = "2s"
{extra}

[[routes]]
match = "*"
on = "path"
outputs = ["js_graphite"]
stop = true

[[routes]]
match = "*"
on = "measurement"
outputs = ["js_lp"]
stop = true
"#
    )
}

/// A deliverer: consumer `deliver` of `stream`, into InfluxDB (Graphite points into
/// `graphite`, HTTP writes into their own database) and, when given, carbon-cache.
fn deliverer_config(
    servers: &[String],
    stream: &str,
    influx: &InfluxDb,
    carbon: Option<&CarbonCache>,
) -> String {
    let carbon = carbon
        .map(|c| {
            format!(
                "[[outputs.graphite]]\nname = \"carbon\"\nprotocol = \"plaintext\"\ncluster = \"forward\"\n\
                 destinations = [\"{}\"]\nretry_initial = \"50ms\"\nretry_max = \"500ms\"\n",
                c.line_addr()
            )
        })
        .unwrap_or_default();
    format!(
        r#"shutdown_timeout = "5s"

[listeners.http]
address = "@HTTP@"

[listeners.nats]
servers = {}
stream = "{stream}"
consumer = "deliver"
ack_wait = "3s"
batch = 8

[[outputs.influxdb]]
name = "influx"
url = "{}"
database = "graphite"
batch_size = 500
flush_interval = "50ms"
retry_initial = "50ms"
retry_max = "500ms"

{carbon}
"#,
        toml_list(servers),
        influx.url()
    )
}

fn start(config: &str) -> (Gateway, SocketAddr) {
    let http = loopback(free_port());
    let config = config.replace("@HTTP@", &http.to_string());
    (Gateway::start(&config, http), http)
}

fn graphite_lines(prefix: &str, from: usize, n: usize, ts: i64) -> Vec<String> {
    (from..from + n)
        .map(|i| format!("{prefix}.m{i} {i} {}", ts - (i % 600) as i64))
        .collect()
}

fn write_lp(gateway: &Gateway, db: &str, from: usize, n: usize, ts_ns: i64) {
    let body: String = (from..from + n)
        .map(|i| format!("cpu,host=h{i} value={i} {}\n", ts_ns + i as i64))
        .collect();
    let r = http_post(
        &format!("{}/write?db={db}", gateway.url()),
        "text/plain",
        body.as_bytes(),
    )
    .expect("write");
    assert_eq!(r.status, 204, "{}", r.text());
}

/// Waits until the stream holds nothing for the consumer: every message delivered and
/// acknowledged.
fn wait_all_acked(server: &NatsServer, stream: &str) {
    eventually(WAIT, || {
        let jsz = server.jsz();
        let streams = jsz["account_details"][0]["stream_detail"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let s = streams
            .iter()
            .find(|s| s["name"] == stream)
            .ok_or_else(|| format!("no stream {stream} in {jsz}"))?;
        let consumers = s["consumer_detail"].as_array().cloned().unwrap_or_default();
        let c = consumers
            .iter()
            .find(|c| c["name"] == "deliver")
            .ok_or_else(|| format!("no consumer in {s}"))?;
        let (pending, unacked) = (
            c["num_pending"].as_u64().unwrap_or(u64::MAX),
            c["num_ack_pending"].as_u64().unwrap_or(u64::MAX),
        );
        if pending == 0 && unacked == 0 {
            Ok(())
        } else {
            Err(format!(
                "consumer: {pending} pending, {unacked} unacknowledged"
            ))
        }
    });
}

#[test]
fn edges_publish_and_one_consumer_group_delivers_every_point_once() {
    let nats = NatsServer::start();
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    influx.create_database("telegraf");
    let carbon = CarbonCache::start();
    let servers = vec![nats.url()];
    let (p1, p2) = (loopback(free_port()), loopback(free_port()));
    let (edge1, _) = start(&edge_config(p1, &servers, "metrics", ""));
    let (edge2, _) = start(&edge_config(p2, &servers, "metrics", ""));
    let d1 = start(&deliverer_config(
        &servers,
        "metrics",
        &influx,
        Some(&carbon),
    ))
    .0;
    let d2 = start(&deliverer_config(
        &servers,
        "metrics",
        &influx,
        Some(&carbon),
    ))
    .0;

    let now = unix_now();
    let n = 300;
    // Graphite to both edges (distinct metrics), HTTP writes to both edges.
    send_lines(p1, graphite_lines("edge1", 0, n, now - 60));
    send_lines(p2, graphite_lines("edge2", 0, n, now - 60));
    let ts_ns = (now - 30) * 1_000_000_000;
    for k in 0..3 {
        write_lp(&edge1, "telegraf", k * 50, 50, ts_ns);
        write_lp(&edge2, "telegraf", 1000 + k * 50, 50, ts_ns);
    }

    influx.wait_exact_points("graphite", 2 * n, WAIT);
    influx.wait_exact_points("telegraf", 300, WAIT);
    // carbon: every Graphite datapoint, and every HTTP write as host.measurement (a `value` field is left out of the path).
    let stored = eventually(WAIT, || {
        let stored = carbon.stored();
        let graphite = stored.keys().filter(|k| k.starts_with("edge")).count();
        let lp = stored.keys().filter(|k| k.ends_with(".cpu")).count();
        if graphite == 2 * n && lp == 300 {
            Ok(stored)
        } else {
            Err(format!(
                "carbon holds {graphite} Graphite and {lp} HTTP-written metrics"
            ))
        }
    });
    for i in [0, 7, n - 1] {
        let key = format!("edge1.m{i}");
        assert_eq!(
            stored[&key],
            vec![(now - 60 - (i % 600) as i64, i as f64)],
            "{key}"
        );
    }
    wait_all_acked(&nats, "metrics");
    // Each message went to one deliverer of the group.
    let each: Vec<f64> = [&d1, &d2]
        .iter()
        .map(|d| metric(d, "fluxgate_received_total", &[("listener", "nats")]))
        .collect();
    eprintln!("points per deliverer: {each:?}");
    let received: f64 = each.iter().sum();
    assert_eq!(
        received,
        (2 * n + 300) as f64,
        "points read from the stream, over both deliverers"
    );
    for e in [&edge1, &edge2] {
        assert_eq!(metric(e, "fluxgate_dropped_total", &[]), 0.0);
    }
}

#[test]
fn a_deliverer_and_a_nats_server_killed_mid_stream_lose_nothing() {
    let mut cluster = NatsCluster::start();
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    let carbon = CarbonCache::start();
    let servers = cluster.urls();
    let plaintext = loopback(free_port());
    let (edge, _) = start(&edge_config(
        plaintext,
        &servers,
        "replicated",
        "replicas = 3",
    ));
    let deliverer = |_: usize| {
        start(&deliverer_config(
            &servers,
            "replicated",
            &influx,
            Some(&carbon),
        ))
        .0
    };
    let mut a = deliverer(0);
    let now = unix_now();
    let per_round = 400;
    send_lines(plaintext, graphite_lines("r", 0, per_round, now - 60));
    // A is in the middle of the stream: it has read messages.
    eventually(WAIT, || {
        let got = metric(
            &a,
            "fluxgate_nats_messages_total",
            &[("outcome", "received")],
        );
        if got > 0.0 {
            Ok(())
        } else {
            Err("A has read nothing yet".into())
        }
    });
    // B joins once A holds part of the stream (started together, either could take it all).
    let b = deliverer(1);
    send_lines(
        plaintext,
        graphite_lines("r", per_round, per_round, now - 60),
    );
    a.kill();
    let before = metric(&b, "fluxgate_received_total", &[("listener", "nats")]);
    send_lines(
        plaintext,
        graphite_lines("r", 2 * per_round, per_round, now - 60),
    );
    // B alone now: it takes the new messages and, after ack_wait, what A held.
    eventually(WAIT, || {
        let got = metric(&b, "fluxgate_received_total", &[("listener", "nats")]);
        if got >= before + per_round as f64 {
            Ok(())
        } else {
            Err(format!("B read {} points since A died", got - before))
        }
    });
    // One of the three servers dies; the stream keeps its quorum on the other two.
    cluster.servers[0].kill();
    send_lines(
        plaintext,
        graphite_lines("r", 3 * per_round, per_round, now - 60),
    );
    a.start_again();
    send_lines(
        plaintext,
        graphite_lines("r", 4 * per_round, per_round, now - 60),
    );
    let points = influx.wait_exact_points("graphite", 5 * per_round, WAIT);
    let mut names: Vec<&str> = points.iter().map(|p| p.measurement.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 5 * per_round);
    // Every datapoint lands in whisper too, with its value and time.
    let stored = eventually(WAIT, || {
        let stored = carbon.stored();
        let n = stored.keys().filter(|k| k.starts_with("r.")).count();
        if n == 5 * per_round {
            Ok(stored)
        } else {
            Err(format!("carbon holds {n} of {} metrics", 5 * per_round))
        }
    });
    for i in 0..5 * per_round {
        assert_eq!(
            stored[&format!("r.m{i}")],
            vec![(now - 60 - (i % 600) as i64, i as f64)]
        );
    }
    assert_eq!(metric(&edge, "fluxgate_dropped_total", &[]), 0.0);
    wait_all_acked(&cluster.servers[1], "replicated");
}

#[test]
fn a_full_stream_applies_the_edges_overflow_policy_and_counts_it() {
    let nats = NatsServer::start();
    let servers = vec![nats.url()];
    let limits = "max_bytes = 60000\nbatch_size = 100";
    let dropping = loopback(free_port());
    let (drop_edge, _) = start(
        &edge_config(
            dropping,
            &servers,
            "small",
            &format!("{limits}\noverflow = \"drop_newest\""),
        )
        .replace("batch_size = 50\n", ""),
    );
    let now = unix_now();
    let n = 3000;
    send_lines(dropping, graphite_lines("full", 0, n, now - 60));
    let labels = [("output", "js_graphite")];
    let dropped = eventually(WAIT, || {
        let sent = metric(&drop_edge, "fluxgate_sent_points_total", &labels);
        let dropped = metric(
            &drop_edge,
            "fluxgate_dropped_total",
            &[("output", "js_graphite"), ("reason", "stream_full")],
        );
        if sent + dropped == n as f64 && dropped > 0.0 {
            Ok(dropped)
        } else {
            Err(format!(
                "{sent} sent, {dropped} dropped as stream_full, of {n}"
            ))
        }
    });
    assert!(dropped < n as f64, "some fitted");
    assert!(
        metric(
            &drop_edge,
            "fluxgate_send_errors_total",
            &[("output", "js_graphite"), ("reason", "stream_full")]
        ) > 0.0
    );

    // Blocking: the points wait in the edge's queue, refused publishes are retried.
    let blocking = loopback(free_port());
    let (block_edge, _) =
        start(&edge_config(blocking, &servers, "small", limits).replace("batch_size = 50\n", ""));
    let m = 500;
    send_lines(blocking, graphite_lines("held", 0, m, now - 60));
    eventually(WAIT, || {
        let errors = metric(
            &block_edge,
            "fluxgate_send_errors_total",
            &[("output", "js_graphite"), ("reason", "stream_full")],
        );
        let queued = metric(&block_edge, "fluxgate_queue_points", &labels);
        let sent = metric(&block_edge, "fluxgate_sent_points_total", &labels);
        // What still fitted went; the rest waits in the queue.
        if errors > 0.0 && queued > 0.0 && queued + sent == m as f64 {
            Ok(())
        } else {
            Err(format!(
                "{errors} stream_full errors, {queued} queued, {sent} sent"
            ))
        }
    });
    assert_eq!(metric(&block_edge, "fluxgate_dropped_total", &[]), 0.0);
    // A deliverer drains the stream (a work queue): the held points go through.
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    let (deliverer, _) = start(&deliverer_config(&servers, "small", &influx, None));
    eventually(WAIT, || {
        let sent = metric(&block_edge, "fluxgate_sent_points_total", &labels);
        if sent == m as f64 {
            Ok(())
        } else {
            Err(format!("{sent} of {m} held points published"))
        }
    });
    let expected = n - dropped as usize + m;
    // nats-server up to at least 2.10.4 (Debian's is 2.9.10) can admit a publish at the max_bytes
    // limit of a discard-new stream, acknowledge it, and then prune the stream's oldest
    // message to get back under the limit (nats-io/nats-server#4771, #4775). The held
    // points, published once the deliverer made room, are exact; of the points published
    // into the nearly full stream, at most one pruned message (one batch) may be missing.
    let batch = 100;
    let points = eventually(WAIT, || {
        let points = influx.points("graphite");
        let held = points
            .iter()
            .filter(|p| p.measurement.starts_with("held."))
            .count();
        let full = points.len() - held;
        let sent_full = n - dropped as usize;
        // Sequences the stream assigned that its only consumer never got: what it pruned.
        let jsz = nats.jsz();
        let detail = &jsz["account_details"][0]["stream_detail"];
        let pruned = detail
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "small"))
            .map(|s| {
                let last = s["state"]["last_seq"].as_u64().unwrap_or(0);
                let delivered = s["consumer_detail"][0]["delivered"]["consumer_seq"]
                    .as_u64()
                    .unwrap_or(0);
                last.saturating_sub(delivered) as usize
            })
            .unwrap_or(0);
        if held == m && full == sent_full {
            return Ok(points);
        }
        if held == m && full < sent_full && pruned == 1 && full + batch >= sent_full {
            return Ok(points);
        }
        let counts = |g: &Gateway| {
            g.metrics()
                .lines()
                .filter(|l| {
                    !l.starts_with('#')
                        && (l.contains("nats")
                            || l.starts_with("fluxgate_sent")
                            || l.starts_with("fluxgate_dropped")
                            || l.starts_with("fluxgate_rejected")
                            || l.starts_with("fluxgate_received"))
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let jsz = nats.jsz();
        let stream = jsz["account_details"][0]["stream_detail"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == "small").cloned())
            .map(|s| format!("state {} consumers {}", s["state"], s["consumer_detail"]))
            .unwrap_or_default();
        Err(format!(
            "influxd holds {} of {expected} points ({} full.*, {} held.*; full.m0..m99 present: {})\nstream: {stream}\ndrop edge:\n{}\nblock edge:\n{}\ndeliverer:\n{}",
            points.len(),
            points.iter().filter(|p| p.measurement.starts_with("full.")).count(),
            points.iter().filter(|p| p.measurement.starts_with("held.")).count(),
            (0..100)
                .filter(|i| points.iter().any(|p| p.measurement == format!("full.m{i}")))
                .count(),
            counts(&drop_edge),
            counts(&block_edge),
            counts(&deliverer)
        ))
    });
    let held = points
        .iter()
        .filter(|p| p.measurement.starts_with("held."))
        .count();
    assert_eq!(held, m);
}

#[test]
fn check_and_dry_run_show_nats_outputs_and_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fluxgate.toml");
    std::fs::write(
        &path,
        edge_config(
            loopback(free_port()),
            &["nats://127.0.0.1:4222".into()],
            "metrics",
            "replicas = 3",
        )
        .replace("@HTTP@", &loopback(free_port()).to_string()),
    )
    .unwrap();
    let path = path.to_string_lossy().into_owned();
    let (status, out, err) =
        run_fluxgate(&["check", "--config", &path], "", Duration::from_secs(10));
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains("nats \"js_graphite\" nats://127.0.0.1:4222 stream=\"metrics\"")
            && out.contains("replicas=3")
            && out.contains("subject=\"fluxgate.graphite.{partition}\""),
        "{out}"
    );
    let (status, out, err) = run_fluxgate(
        &["dry-run", "--config", &path, "--json"],
        "servers.web01.cpu 1 1700000000\n",
        Duration::from_secs(10),
    );
    assert!(status.success(), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let d = &v["destinations"][0];
    assert_eq!(d["output"], "js_graphite");
    let subject = d["destination"].as_str().unwrap();
    assert!(
        subject.starts_with("subject fluxgate.graphite."),
        "{subject}"
    );
    let (status, out, err) = run_fluxgate(
        &["dry-run", "--config", &path, "--input", "line", "--json"],
        "cpu,host=a value=1 1700000000000000000\n",
        Duration::from_secs(10),
    );
    assert!(status.success(), "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["destinations"][0]["output"], "js_lp");
    assert_eq!(
        v["destinations"][0]["destination"],
        "subject fluxgate.lp.(db)"
    );
}

#[test]
fn credentials_come_from_the_environment_and_stay_out_of_logs() {
    let token = "s3cret-nats-token";
    let nats = NatsServer::start_with(&format!("authorization {{ token: \"{token}\" }}\n"));
    let influx = InfluxDb::start();
    influx.create_database("graphite");
    let servers = vec![nats.url()];
    let plaintext = loopback(free_port());
    let with_env = |config: String, key: &str| {
        let http = loopback(free_port());
        Gateway::builder(&config.replace("@HTTP@", &http.to_string()))
            .http_addr(http)
            .env(key, token)
            .start()
    };
    let edge = with_env(
        edge_config(plaintext, &servers, "auth", ""),
        "FLUXGATE_JS_GRAPHITE_TOKEN",
    );
    let deliverer = with_env(
        deliverer_config(&servers, "auth", &influx, None),
        "FLUXGATE_NATS_TOKEN",
    );
    let now = unix_now();
    send_lines(plaintext, graphite_lines("auth", 0, 100, now - 60));
    influx.wait_exact_points("graphite", 100, WAIT);
    for g in [&edge, &deliverer] {
        assert!(
            !g.log().contains(token),
            "the token is in a log:\n{}",
            g.log()
        );
    }
    // Without the token the server refuses the edge: nothing is published, nothing counted
    // as sent, and the points wait in the queue.
    let refused = loopback(free_port());
    let (stranger, _) = start(&edge_config(refused, &servers, "auth", ""));
    send_lines(refused, graphite_lines("stranger", 0, 10, now - 60));
    eventually(WAIT, || {
        let queued = metric(
            &stranger,
            "fluxgate_queue_points",
            &[("output", "js_graphite")],
        );
        if queued == 10.0 {
            Ok(())
        } else {
            Err(format!("{queued} points queued"))
        }
    });
    assert_eq!(metric(&stranger, "fluxgate_sent_points_total", &[]), 0.0);
}

#[test]
fn with_a_disk_buffer_a_deliverer_acknowledges_once_fsynced_and_survives_kill_9() {
    let nats = NatsServer::start();
    let mut influx = InfluxDb::start();
    influx.create_database("graphite");
    let servers = vec![nats.url()];
    let plaintext = loopback(free_port());
    let (_edge, _) = start(&edge_config(plaintext, &servers, "disk", ""));
    let config = deliverer_config(&servers, "disk", &influx, None)
        .replace(
            "[listeners.nats]",
            "[gateway]\ndata_dir = \"@DIR@/data\"\n\n[listeners.nats]",
        )
        .replace(
            "database = \"graphite\"\n",
            "database = \"graphite\"\nbuffer = \"disk\"\n",
        );
    influx.kill();
    let (mut deliverer, _) = start(&config);
    let now = unix_now();
    let n = 500;
    send_lines(plaintext, graphite_lines("disk", 0, n, now - 60));
    // InfluxDB is down, yet every message is acknowledged: its points are in the log.
    // All read first (the edge may still be publishing its last batch when the consumer is
    // momentarily drained), then all acknowledged.
    wait_metric(
        &deliverer,
        "fluxgate_received_total",
        &[("listener", "nats")],
        n as f64,
    );
    wait_all_acked(&nats, "disk");
    deliverer.kill();
    influx.start_again();
    deliverer.start_again();
    influx.wait_exact_points("graphite", n, WAIT);
}
