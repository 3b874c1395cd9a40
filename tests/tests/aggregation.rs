//! Aggregation against the daemons it replaces: the same rules and the same input into the
//! real carbon-aggregator (Debian graphite-carbon) and the real carbon-c-relay `aggregate`,
//! and into fluxgate; the datapoints each sends on are compared exactly.

use std::{collections::BTreeMap, time::Duration};

use fluxgate_e2e::{
    eventually, free_port, loopback, metric, send_lines, unix_now, wait_metric, CarbonAggregator,
    CarbonCRelay, Gateway, TcpCapture,
};

const WAIT: Duration = Duration::from_secs(60);

/// (name, timestamp) → the last value sent for it: what a carbon-cache behind either would
/// hold.
type Last = BTreeMap<(String, i64), f64>;

fn last_pickled(capture: &TcpCapture) -> Last {
    let mut last = Last::new();
    for conn in capture.connections() {
        for frame in fluxgate_e2e::decode_pickle_frames(&conn) {
            for (name, ts, value) in frame {
                last.insert((name, ts as i64), value);
            }
        }
    }
    last
}

fn plaintext_points(capture: &TcpCapture) -> Vec<(String, i64, f64)> {
    let mut points: Vec<(String, i64, f64)> = capture
        .lines()
        .iter()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 3, "not a plaintext line: {line:?}");
            (
                f[0].to_owned(),
                f[2].parse().expect("timestamp"),
                f[1].parse().expect("value"),
            )
        })
        .collect();
    points.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    points
}

fn gateway(extra: &str, sink: &TcpCapture, protocol: &str) -> (Gateway, std::net::SocketAddr) {
    let (http, plaintext) = (loopback(free_port()), loopback(free_port()));
    let config = format!(
        "shutdown_timeout = \"2s\"\n\
         [listeners.plaintext]\ntcp = \"{plaintext}\"\n\
         [listeners.http]\naddress = \"{http}\"\n\
         [[outputs.graphite]]\nname = \"sink\"\nprotocol = \"{protocol}\"\n\
         destinations = [\"{}\"]\nretry_initial = \"50ms\"\nretry_max = \"500ms\"\n\n{extra}",
        sink.addr()
    );
    (Gateway::start(&config, http), plaintext)
}

const CARBON_RULES: &str = "\
# every method, one-segment and several-segment fields, a literal `*` part
agg.<app>.sum (2) = sum app.<app>.*.requests
agg.<app>.avg (2) = avg app.<app>.*.requests
agg.<app>.min (2) = min app.<app>.*.requests
agg.<app>.max (2) = max app.<app>.*.requests
agg.<app>.count (2) = count app.<app>.*.requests
agg.<app>.p50 (2) = p50 app.<app>.*.requests
agg.<app>.p75 (2) = p75 app.<app>.*.requests
agg.<app>.p80 (2) = p80 app.<app>.*.requests
agg.<app>.p90 (2) = p90 app.<app>.*.requests
agg.<app>.p95 (2) = p95 app.<app>.*.requests
agg.<app>.p99 (2) = p99 app.<app>.*.requests
agg.<app>.p999 (2) = p999 app.<app>.*.requests

deep.all.<rest> (3) = sum deep.<<rest>>.x*
";

/// Datapoints for both phases: `(host, offset from now, value)` for `app.web.<host>.requests`.
fn lines(now: i64, points: &[(&str, i64, f64)]) -> Vec<String> {
    points
        .iter()
        .map(|(name, offset, value)| format!("{name} {value} {}", now + offset))
        .collect()
}

#[test]
fn carbon_rules_give_what_carbon_aggregator_gives() {
    let (carbon_sink, fluxgate_sink) = (TcpCapture::start(), TcpCapture::start());
    let rules_dir = tempfile::tempdir().expect("temp dir");
    let rules_path = rules_dir.path().join("aggregation-rules.conf");
    std::fs::write(&rules_path, CARBON_RULES).expect("write rules");
    let carbon = CarbonAggregator::builder()
        .rules(CARBON_RULES)
        .destination(&carbon_sink.addr().to_string())
        .setting("MAX_AGGREGATION_INTERVALS", "60")
        .start();
    let (fluxgate, plaintext) = gateway(
        &format!(
            "[aggregation]\ncarbon_rules = \"{}\"\nmax_intervals = 60\n",
            rules_path.display()
        ),
        &fluxgate_sink,
        "pickle",
    );
    // Present (this bucket and the one before), and past: older than max_intervals, so
    // emitted once and forgotten. (60 intervals of 2 s: the present buckets are still held
    // in phase 2 however long phase 1 takes to settle; -600 s is still far older.)
    let now = unix_now();
    let phase1 = lines(
        now,
        &[
            ("app.web.h1.requests", 0, 1.5),
            ("app.web.h2.requests", 0, 2.25),
            ("app.web.h3.requests", 0, -7.0),
            ("app.web.h1.requests", -2, 10.0),
            ("app.web.h2.requests", -2, 0.1),
            ("app.db.h1.requests", -1, 3.0),
            ("app.web.h1.requests", -600, 4.0),
            ("app.web.h2.requests", -600, 6.0),
            ("deep.a.b.c.x1", 0, 1.0),
            ("deep.a.b.c.x22", -1, 2.0),
            ("deep.a.b.c.y", 0, 100.0),
            ("unmatched.metric", 0, 42.0),
        ],
    );
    send_lines(carbon.line_addr(), &phase1);
    send_lines(plaintext, &phase1);
    let settle = |what: &str, ready: &dyn Fn(&Last) -> bool| {
        eventually(WAIT, || {
            let (c, f) = (last_pickled(&carbon_sink), last_pickled(&fluxgate_sink));
            if ready(&c) && ready(&f) && c == f {
                Ok(c)
            } else {
                Err(format!(
                    "{what}: carbon-aggregator sent {c:#?}\nfluxgate sent {f:#?}\n{}",
                    carbon.log_tail(20)
                ))
            }
        })
    };
    let web = |ts: i64| ("agg.web.sum".to_owned(), ts - ts.rem_euclid(2));
    let first = settle("phase 1", &|m| {
        m.get(&web(now)) == Some(&-3.25) && m.contains_key(&web(now - 600))
    });
    // 12 inputs forwarded, 12 methods x 3 web buckets + 12 x 1 db bucket, deep: 1 or 2 buckets.
    assert!(first.len() >= 12 + 12 * 4, "{first:#?}");
    // Late data: into a bucket still held (all of it goes out again), and into the forgotten
    // one (which starts over with only the new values).
    let phase2 = lines(
        now,
        &[
            ("app.web.h4.requests", 0, 100.0),
            ("app.web.h1.requests", -600, 1000.0),
        ],
    );
    send_lines(carbon.line_addr(), &phase2);
    send_lines(plaintext, &phase2);
    let second = settle("phase 2", &|m| {
        m.get(&web(now)) == Some(&96.75) && m.get(&web(now - 600)) == Some(&1000.0)
    });
    assert_eq!(
        second.get(&("agg.web.count".to_owned(), web(now).1)),
        Some(&4.0)
    );
    assert!(
        metric(
            &fluxgate,
            "fluxgate_aggregate_emitted_total",
            &[("aggregator", "carbon")]
        ) > 0.0
    );
}

#[test]
fn aggregate_gives_what_carbon_c_relay_gives() {
    let (relay_sink, fluxgate_sink) = (TcpCapture::start(), TcpCapture::start());
    let computes = [
        ("sum", "sum"),
        ("count", "count"),
        ("max", "max"),
        ("min", "min"),
        ("average", "avg"),
        ("median", "median"),
        ("percentile90", "p90"),
        ("variance", "var"),
        ("stddev", "sd"),
    ];
    let relay_computes: String = computes
        .iter()
        .map(|(f, n)| format!("    compute {f} write to agg.\\1.{n}\n"))
        .collect();
    let relay = CarbonCRelay::builder()
        .routes(&format!(
            "cluster sink forward {};\n\
             aggregate ^app\\.([^.]+)\\.[^.]+\\.requests$\n    every 1 seconds\n    \
             expire after 10 seconds\n    timestamp at start of bucket\n{relay_computes}    \
             send to sink\n    stop\n    ;\n\
             aggregate ^other\\.(.*)$\n    every 2 seconds\n    expire after 10 seconds\n    \
             compute sum write to total.\\1\n    send to sink\n    stop\n    ;\n",
            relay_sink.addr()
        ))
        .start();
    let toml_computes: String = computes
        .iter()
        .map(|(f, n)| format!("{{ fn = \"{f}\", write_to = \"agg.\\\\1.{n}\" }}, "))
        .collect();
    let (fluxgate, plaintext) = gateway(
        &format!(
            "[[aggregate]]\nname = \"apps\"\nmatch = \"^app\\\\.([^.]+)\\\\.[^.]+\\\\.requests$\"\n\
             every = 1\nexpire = 10\ntimestamp = \"start\"\ncompute = [{toml_computes}]\n\
             send_to = [\"sink\"]\nstop = true\n\n\
             [[aggregate]]\nname = \"other\"\nmatch = [\"^other\\\\.(.*)$\"]\nevery = \"2s\"\n\
             expire = \"10s\"\ncompute = [{{ fn = \"sum\", write_to = \"total.\\\\1\" }}]\n\
             send_to = \"sink\"\nstop = true\n"
        ),
        &fluxgate_sink,
        "plaintext",
    );
    let now = unix_now();
    let input = lines(
        now,
        &[
            ("app.web.h1.requests", 0, 1.5),
            ("app.web.h2.requests", 0, 0.25),
            ("app.web.h3.requests", 0, 0.75),
            ("app.web.h4.requests", 0, 4.0),
            ("app.web.h5.requests", 0, 3.125),
            ("app.web.h1.requests", -1, 10.0),
            ("app.web.h2.requests", -1, 1.0 / 3.0),
            ("app.db.h1.requests", -1, 2.0),
            // Far behind the buckets kept, and far ahead of them: dropped by both.
            ("app.web.h1.requests", -60, 99.0),
            ("app.web.h1.requests", 60, 99.0),
            ("other.x", 0, 5.0),
            ("other.x", 0, 6.0),
        ],
    );
    send_lines(relay.addr(), &input);
    send_lines(plaintext, &input);
    // web: two buckets, db: one, nine computes each; other.x: one bucket.
    let expected = 9 * 3 + 1;
    relay_sink.wait_for_lines(expected, WAIT);
    fluxgate_sink.wait_for_lines(expected, WAIT);
    // Nothing more comes: every bucket is produced once.
    std::thread::sleep(Duration::from_secs(2));
    let (from_relay, from_fluxgate) = (
        plaintext_points(&relay_sink),
        plaintext_points(&fluxgate_sink),
    );
    assert_eq!(from_fluxgate, from_relay, "{}", relay.log_tail(20));
    assert_eq!(from_relay.len(), expected);
    for reason in ["late", "too_early"] {
        wait_metric(
            &fluxgate,
            "fluxgate_aggregate_dropped_total",
            &[("aggregator", "apps"), ("reason", reason)],
            computes.len() as f64,
        );
    }
}

#[test]
fn a_reload_keeps_the_buckets_of_unchanged_rules() {
    let sink = TcpCapture::start();
    // Both kinds hold the bucket for longer than the reload can take on a loaded machine
    // (carbon: 60 intervals of 2 s; `kept`: final 20 s after it began).
    let section = "[aggregation]\nmax_intervals = 60\nrules = [\"carbon.sum (2) = sum c.*\"]\n\n\
                   [[aggregate]]\nname = \"kept\"\nmatch = \"^r\\\\..*\"\nevery = 2\nexpire = 20\n\
                   compute = [{ fn = \"sum\", write_to = \"relay.sum\" }]\nsend_to = \"sink\"\n";
    let (mut fluxgate, plaintext) = gateway(section, &sink, "plaintext");
    let now = unix_now();
    send_lines(plaintext, [format!("c.a 1 {now}"), format!("r.a 1 {now}")]);
    wait_metric(
        &fluxgate,
        "fluxgate_aggregate_received_total",
        &[("aggregator", "kept")],
        1.0,
    );
    // (`write_to` replaces what the regex matched, so it matches the whole name.)
    // Another rule of each kind comes; the first ones stay as they were.
    let config = std::fs::read_to_string(fluxgate.config_path()).expect("config");
    let changed = config.replace(
        "rules = [\"carbon.sum (2) = sum c.*\"]",
        "rules = [\"carbon.sum (2) = sum c.*\", \"other.max (2) = max d.*\"]",
    )
        + "\n[[aggregate]]\nname = \"new\"\nmatch = \"^n\\\\.\"\nevery = 2\nexpire = 6\n\
         compute = [{ fn = \"max\", write_to = \"n.max\" }]\n";
    fluxgate.write_config(&changed);
    fluxgate.sighup();
    eventually(WAIT, || {
        if fluxgate.log().contains("configuration reloaded") {
            Ok(())
        } else {
            Err(format!("no reload yet:\n{}", fluxgate.log_tail(20)))
        }
    });
    send_lines(plaintext, [format!("c.b 2 {now}"), format!("r.b 2 {now}")]);
    let bucket = now - now.rem_euclid(2);
    eventually(WAIT, || {
        let lines = sink.lines();
        let has = |line: String| lines.contains(&line);
        if has(format!("carbon.sum 3 {bucket}")) && has(format!("relay.sum 3 {}", bucket + 2)) {
            Ok(())
        } else {
            Err(format!("sums over the reload not seen: {lines:#?}"))
        }
    });
}

#[test]
fn carbon_rewrite_rules_map_onto_pre_and_post_rewrites() {
    let (carbon_sink, fluxgate_sink) = (TcpCapture::start(), TcpCapture::start());
    let rules = "agg.<app>.sum (2) = sum app.<app>.*.requests\n";
    // [pre] before aggregation; [post] on the inputs that go on (not on aggregates), every
    // match replaced, Python's group syntax.
    let rewrite = "[pre]\n^raw\\.(\\w+)\\. = app.\\g<1>.\n\n[post]\ne = E\n";
    let carbon = CarbonAggregator::builder()
        .rules(rules)
        .rewrite_rules(rewrite)
        .destination(&carbon_sink.addr().to_string())
        .start();
    let (_fluxgate, plaintext) = gateway(
        "[[rewrite]]\nmatch = '^raw\\.(\\w+)\\.'\nreplace = 'app.\\g<1>.'\nreplace_all = true\n\n\
         [[rewrite]]\nmatch = 'e'\nreplace = 'E'\nstage = \"post\"\nreplace_all = true\n\n\
         [aggregation]\nrules = [\"agg.<app>.sum (2) = sum app.<app>.*.requests\"]\n",
        &fluxgate_sink,
        "pickle",
    );
    let now = unix_now();
    let input = lines(
        now,
        &[
            ("raw.web.h1.requests", 0, 1.0),
            ("raw.web.h2.requests", 0, 2.0),
            ("other.tree.leaves", 0, 5.0),
        ],
    );
    send_lines(carbon.line_addr(), &input);
    send_lines(plaintext, &input);
    let bucket = now - now.rem_euclid(2);
    let got = eventually(WAIT, || {
        let (c, f) = (last_pickled(&carbon_sink), last_pickled(&fluxgate_sink));
        let done =
            |m: &Last| m.get(&("agg.web.sum".to_owned(), bucket)) == Some(&3.0) && m.len() == 4;
        if done(&c) && done(&f) && c == f {
            Ok(c)
        } else {
            Err(format!(
                "carbon-aggregator sent {c:#?}\nfluxgate sent {f:#?}\n{}",
                carbon.log_tail(20)
            ))
        }
    });
    assert!(
        got.contains_key(&("app.wEb.h1.rEquEsts".to_owned(), now)),
        "{got:#?}"
    );
    assert!(
        got.contains_key(&("othEr.trEE.lEavEs".to_owned(), now)),
        "{got:#?}"
    );
}
