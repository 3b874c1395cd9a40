//! fluxgate's cluster placement against the references themselves, name by name: carbon's own
//! `carbon.routers.ConsistentHashingRouter` (Debian graphite-carbon, run by /usr/bin/python3)
//! for `carbon_ch`, and carbon-c-relay's `-t` test mode for `carbon_ch_compat` (its
//! `carbon_ch`), `fnv1a_ch`, `jump_fnv1a_ch` and `any_of`. Any difference is a metric that
//! would land on another carbon-cache than it does today.

use std::time::Duration;

use fluxgate::cluster::{Cluster, ClusterKind, Destination};
use fluxgate_e2e::{carbon_c_relay_cluster, carbon_c_relay_placement, system_python};
use serde_json::json;

const CARBON_NAMES: usize = 5_000;
const RELAY_NAMES: usize = 1_000;

/// Metric names as relays see them: plain paths of several shapes, tagged series (tags out
/// of order, duplicated, a `~` name), non-ASCII, characters that need quoting somewhere, very
/// short and very long names. Deterministic (xorshift64*), whitespace-free.
fn names(count: usize) -> Vec<String> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    const METRICS: [&str; 6] = ["user", "system", "idle", "iowait", "steal", "nice"];
    (0..count)
        .map(|i| {
            let r = next();
            let (a, b, c) = (r % 7, (r >> 8) % 5000, (r >> 24) % 97);
            match i % 10 {
                0 | 1 => format!("servers.dc{a}.host{b:04}.cpu.{}", METRICS[(c % 6) as usize]),
                2 => format!("stats.counters.app{c}.requests.{}xx.count", 2 + a % 4),
                3 => {
                    let mut tags = [
                        format!("host=web{b}"),
                        format!("dc=dc{a}"),
                        format!("env={}", ["prod", "stage", "dev"][(c % 3) as usize]),
                    ];
                    tags.rotate_left((r % 3) as usize);
                    format!("cpu.load;{}", tags.join(";"))
                }
                4 => format!("~disk.used;path=/var/{c};host=h{b};host=h{a};name=ignored"),
                5 => format!("métrique.région-{a}.é{b}.日本"),
                6 => [
                    format!("a..b{b}"),
                    format!("trailing.{b}."),
                    format!("apps.my-app_{c}:latency#p99"),
                    format!("quote's.\"{b}\""),
                    format!("back\\slash.{b}"),
                    format!("{b}"),
                    format!("x{c}"),
                ][(r % 7) as usize]
                    .clone(),
                7 => format!(
                    "collectd.{}.host{b}.interface-eth{a}.if_octets.rx",
                    "very-long-segment-".repeat(1 + (c % 12) as usize)
                ),
                _ => format!("carbon.agents.relay-{a}.{b}.metricsReceived"),
            }
        })
        .collect()
}

fn cluster(kind: ClusterKind, destinations: &[&str], replication: usize, diverse: bool) -> Cluster {
    let destinations = destinations
        .iter()
        .map(|d| d.parse::<Destination>().expect("a valid destination"))
        .collect();
    Cluster::new(kind, destinations, replication, diverse).expect("a valid cluster")
}

/// Collects up to 10 differences and fails with all of them and how many there were.
struct Differences {
    shown: Vec<String>,
    count: usize,
}

impl Differences {
    fn new() -> Self {
        Differences {
            shown: Vec::new(),
            count: 0,
        }
    }

    fn compare(&mut self, what: &str, name: &str, reference: &[String], ours: &[String]) {
        if reference != ours {
            self.count += 1;
            if self.shown.len() < 10 {
                self.shown.push(format!(
                    "{what}: {name:?}: reference {reference:?}, fluxgate {ours:?}"
                ));
            }
        }
    }

    fn assert_none(self, compared: usize) {
        assert!(
            self.count == 0,
            "{} of {compared} placements differ:\n{}",
            self.count,
            self.shown.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// carbon

/// Reads `{"configs": [{"destinations", "replication", "diverse"}], "names": [...]}` and
/// prints, per config and name, carbon's `getDestinations` as `host:port[:instance]` strings
/// (IPv6 in brackets, as fluxgate prints destinations).
const CARBON_ROUTER: &str = r#"
import json, sys
from types import SimpleNamespace
from carbon.routers import ConsistentHashingRouter
from carbon.util import parseDestinations

def show(destination):
    server, port, instance = destination
    host = '[%s]' % server if ':' in server else server
    return '%s:%d' % (host, port) + ('' if instance is None else ':%s' % instance)

request = json.load(sys.stdin)
placements = []
for config in request['configs']:
    router = ConsistentHashingRouter(SimpleNamespace(
        REPLICATION_FACTOR=config['replication'],
        DIVERSE_REPLICAS=config['diverse'],
        ROUTER_HASH_TYPE=None))
    for destination in parseDestinations(config['destinations']):
        router.addDestination(destination)
    placements.append([[show(d) for d in router.getDestinations(name)]
                       for name in request['names']])
json.dump(placements, sys.stdout)
"#;

const CARBON_SETS: [(&str, &[&str]); 5] = [
    (
        "3 hosts",
        &["10.0.0.1:2003", "10.0.0.2:2003", "10.0.0.3:2003"],
    ),
    (
        "4 instances on one host",
        &[
            "127.0.0.1:2104:a",
            "127.0.0.1:2204:b",
            "127.0.0.1:2304:c",
            "127.0.0.1:2404:d",
        ],
    ),
    (
        "5 hosts with instances",
        &[
            "10.1.0.1:2004:a",
            "10.1.0.2:2004:b",
            "cache-3.example.com:2004:c",
            "[fd00::4]:2004:d",
            "10.1.0.5:2004:e",
        ],
    ),
    (
        "2 hosts with 2 instances and 1 without",
        &[
            "10.0.0.1:2004:a",
            "10.0.0.1:2104:b",
            "10.0.0.2:2004:a",
            "10.0.0.2:2104:b",
            "10.0.0.3:2004",
        ],
    ),
    (
        "instances Python quotes and escapes",
        &[
            "10.0.0.1:2003:it's",
            "10.0.0.2:2003:a\"b",
            "10.0.0.3:2003:c\\d",
            "[::1]:2003:é",
        ],
    ),
];

#[test]
fn carbon_ch_matches_carbons_consistent_hashing_router() {
    let names = names(CARBON_NAMES);
    let mut configs = Vec::new();
    for (label, destinations) in CARBON_SETS {
        for replication in 1..=3 {
            for diverse in [true, false] {
                configs.push((label, destinations, replication, diverse));
            }
        }
    }
    let request = json!({
        "configs": configs.iter().map(|(_, destinations, replication, diverse)| json!({
            "destinations": destinations,
            "replication": replication,
            "diverse": diverse,
        })).collect::<Vec<_>>(),
        "names": names,
    });
    let python = system_python();
    let (status, stdout, stderr) = python.run_with_input(
        CARBON_ROUTER,
        &[],
        request.to_string().as_bytes(),
        Duration::from_secs(120),
    );
    assert!(
        status.success(),
        "carbon's router failed ({status}):\n{stderr}"
    );
    let reference: Vec<Vec<Vec<String>>> =
        serde_json::from_str(&stdout).expect("carbon's placements as JSON");
    assert_eq!(reference.len(), configs.len());

    let mut differences = Differences::new();
    let mut out = Vec::new();
    for ((label, destinations, replication, diverse), reference) in configs.iter().zip(&reference) {
        let cluster = cluster(ClusterKind::CarbonCh, destinations, *replication, *diverse);
        let what = format!("{label}, replication {replication}, diverse {diverse}");
        for (name, reference) in names.iter().zip(reference) {
            cluster.place(name, &mut out);
            let ours: Vec<String> = out
                .iter()
                .map(|&i| cluster.destinations()[i].to_string())
                .collect();
            differences.compare(&what, name, reference, &ours);
        }
    }
    differences.assert_none(configs.len() * names.len());
}

/// carbon 1.1.7 does not normalize tagged names before hashing unless TAG_RELAY_NORMALIZED
/// is set, so one series with its tags in two orders may go to two caches; fluxgate hashes the
/// name it is given, like carbon.
#[test]
fn carbon_ch_hashes_tagged_names_as_given() {
    let python = system_python();
    let code = r#"
import sys
from types import SimpleNamespace
from carbon.routers import ConsistentHashingRouter
r = ConsistentHashingRouter(SimpleNamespace(REPLICATION_FACTOR=1, DIVERSE_REPLICAS=True,
                                            ROUTER_HASH_TYPE=None))
for i in range(1, 4):
    r.addDestination(('10.0.0.%d' % i, 2003, None))
for name in sys.argv[1:]:
    print('%s:%d' % list(r.getDestinations(name))[0][:2])
"#;
    let tagged = ["cpu.load;host=web02;dc=x", "cpu.load;dc=x;host=web02"];
    let stdout = python.run_ok(code, &tagged, Duration::from_secs(60));
    let reference: Vec<&str> = stdout.lines().collect();
    let cluster = cluster(
        ClusterKind::CarbonCh,
        &["10.0.0.1:2003", "10.0.0.2:2003", "10.0.0.3:2003"],
        1,
        true,
    );
    let mut out = Vec::new();
    let ours: Vec<String> = tagged
        .iter()
        .map(|name| {
            cluster.place(name, &mut out);
            cluster.destinations()[out[0]].to_string()
        })
        .collect();
    assert_eq!(ours, reference);
    assert_ne!(
        reference[0], reference[1],
        "pick names whose tag orders land apart"
    );
}

// ---------------------------------------------------------------------------------------------
// carbon-c-relay

const RELAY_SETS: [(&str, &[&str]); 5] = [
    (
        "3 hosts",
        &["10.0.0.1:2003", "10.0.0.2:2003", "10.0.0.3:2003"],
    ),
    (
        "4 instances on one host",
        &[
            "127.0.0.1:2104:a",
            "127.0.0.1:2204:b",
            "127.0.0.1:2304:c",
            "127.0.0.1:2404:d",
        ],
    ),
    (
        "5 hosts with instances",
        &[
            "10.1.0.1:2004:a",
            "10.1.0.2:2004:b",
            "10.1.0.3:2004:c",
            "10.1.0.4:2004:d",
            "10.1.0.5:2004:e",
        ],
    ),
    (
        "IPv6 and IPv4",
        &[
            "[::1]:2003:a",
            "[::1]:2103:b",
            "[fd00::2]:2003",
            "127.0.0.1:2003",
        ],
    ),
    (
        // Numeric, mixed and missing instances: carbon-c-relay's jump ordering compares
        // numbers as numbers and the rest bytewise, which is not even transitive here.
        "instances 2, 10, 1a, none, b, none",
        &[
            "10.2.0.1:2003:2",
            "10.2.0.2:2003:10",
            "10.2.0.3:2003:1a",
            "10.2.0.4:2003",
            "10.2.0.5:2003:b",
            "10.2.0.6:2003",
        ],
    ),
];

/// Runs every relay set and replication through carbon-c-relay's test mode as a `kind`
/// cluster (its name in carbon-c-relay is `relay_kind`) and compares each placement.
fn compare_with_carbon_c_relay(kind: ClusterKind, relay_kind: &str) {
    let names = names(RELAY_NAMES);
    let lines: String = names
        .iter()
        .map(|n| format!("{n} 1 1700000000\n"))
        .collect();
    let replications: &[usize] = if kind.is_hashing() { &[1, 2, 3] } else { &[1] };
    let mut differences = Differences::new();
    let mut compared = 0;
    let mut out = Vec::new();
    for (label, destinations) in RELAY_SETS {
        let parsed: Vec<Destination> = destinations.iter().map(|d| d.parse().unwrap()).collect();
        // carbon-c-relay spells the instance `host:port=instance`.
        let members: Vec<String> = parsed
            .iter()
            .map(|d| match d.instance() {
                Some(instance) => format!("{}={instance}", d.socket_addr()),
                None => d.socket_addr(),
            })
            .collect();
        let members: Vec<&str> = members.iter().map(String::as_str).collect();
        for &replication in replications {
            let config = format!(
                "{}\nmatch *\n    send to c\n    stop\n    ;\n",
                carbon_c_relay_cluster("c", relay_kind, replication as u32, &members)
            );
            let reference = carbon_c_relay_placement(&config, &lines);
            assert_eq!(
                reference.len(),
                names.len(),
                "carbon-c-relay placed {} of {} names with:\n{config}",
                reference.len(),
                names.len()
            );
            let cluster = cluster(kind, destinations, replication, true);
            let what = format!("{label}, replication {replication}");
            for (name, (echoed, reference)) in names.iter().zip(&reference) {
                assert_eq!(echoed, name, "carbon-c-relay's test mode altered the name");
                cluster.place(name, &mut out);
                let ours: Vec<String> = out
                    .iter()
                    .map(|&i| cluster.destinations()[i].socket_addr())
                    .collect();
                differences.compare(&what, name, reference, &ours);
                compared += 1;
            }
        }
    }
    differences.assert_none(compared);
}

#[test]
fn carbon_ch_compat_matches_carbon_c_relay_carbon_ch() {
    compare_with_carbon_c_relay(ClusterKind::CarbonChCompat, "carbon_ch");
}

#[test]
fn fnv1a_ch_matches_carbon_c_relay() {
    compare_with_carbon_c_relay(ClusterKind::Fnv1aCh, "fnv1a_ch");
}

#[test]
fn jump_fnv1a_ch_matches_carbon_c_relay() {
    compare_with_carbon_c_relay(ClusterKind::JumpFnv1aCh, "jump_fnv1a_ch");
}

#[test]
fn any_of_matches_carbon_c_relay() {
    compare_with_carbon_c_relay(ClusterKind::AnyOf, "any_of");
}

#[test]
fn failover_and_forward_match_carbon_c_relay() {
    compare_with_carbon_c_relay(ClusterKind::Failover, "failover");
    compare_with_carbon_c_relay(ClusterKind::Forward, "forward");
}
