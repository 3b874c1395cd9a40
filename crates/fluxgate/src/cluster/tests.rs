//! Known placements. The carbon_ch vectors were produced once by running carbon 1.1.7's own
//! `carbon.routers.ConsistentHashingRouter` (Debian graphite-carbon, /usr/bin/python3) with
//! `REPLICATION_FACTOR`/`DIVERSE_REPLICAS` as stated and the destinations added through
//! `carbon.util.parseDestinations`, printing `getDestinations(name)`; the carbon-c-relay ones
//! by running Debian's carbon-c-relay 3.7.3 as `carbon-c-relay -t -f <config>` with the
//! cluster as stated. tests/tests/cluster_placement.rs repeats the comparison live, on
//! thousands of names.

use super::*;

const NAMES: [&str; 6] = [
    "foo.bar",
    "servers.web01.cpu.user",
    "servers.dc1.host0042.disk.sda.reads",
    "cpu.load;host=a;dc=x",
    "x",
    "carbon.agents.relay-a.metricsReceived",
];

fn cluster(kind: ClusterKind, destinations: &[&str], replication: usize, diverse: bool) -> Cluster {
    let destinations = destinations.iter().map(|d| d.parse().unwrap()).collect();
    Cluster::new(kind, destinations, replication, diverse).unwrap()
}

/// Placement as `Display` strings of the destinations.
fn placed(cluster: &Cluster, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    cluster.place(name, &mut out);
    out.iter()
        .map(|&i| cluster.destinations()[i].to_string())
        .collect()
}

/// Placement as `host:port`, the way carbon-c-relay's test mode prints it.
fn placed_addr(cluster: &Cluster, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    cluster.place(name, &mut out);
    out.iter()
        .map(|&i| cluster.destinations()[i].socket_addr())
        .collect()
}

/// Asserts the placement of each of `names`, compared as `Display` strings (carbon) or as
/// `host:port` (carbon-c-relay's test mode prints no instance).
fn check(cluster: &Cluster, names: &[&str], expected: &[&[&str]], relay: bool) {
    assert_eq!(names.len(), expected.len());
    for (name, want) in names.iter().zip(expected) {
        let got = if relay {
            placed_addr(cluster, name)
        } else {
            placed(cluster, name)
        };
        assert_eq!(got, *want, "{} placement of {name:?}", cluster.kind());
    }
}

#[test]
fn carbon_ch_three_hosts() {
    let c = cluster(
        ClusterKind::CarbonCh,
        &["10.0.0.1:2003", "10.0.0.2:2003", "10.0.0.3:2003"],
        1,
        true,
    );
    check(
        &c,
        &NAMES,
        &[
            &["10.0.0.3:2003"],
            &["10.0.0.2:2003"],
            &["10.0.0.3:2003"],
            &["10.0.0.3:2003"],
            &["10.0.0.2:2003"],
            &["10.0.0.3:2003"],
        ],
        false,
    );
}

const FOUR_INSTANCES: [&str; 4] = [
    "127.0.0.1:2104:a",
    "127.0.0.1:2204:b",
    "127.0.0.1:2304:c",
    "127.0.0.1:2404:d",
];

#[test]
fn carbon_ch_instances_replication_2() {
    let c = cluster(ClusterKind::CarbonCh, &FOUR_INSTANCES, 2, false);
    check(
        &c,
        &NAMES,
        &[
            &["127.0.0.1:2404:d", "127.0.0.1:2304:c"],
            &["127.0.0.1:2404:d", "127.0.0.1:2104:a"],
            &["127.0.0.1:2204:b", "127.0.0.1:2404:d"],
            &["127.0.0.1:2404:d", "127.0.0.1:2304:c"],
            &["127.0.0.1:2304:c", "127.0.0.1:2404:d"],
            &["127.0.0.1:2304:c", "127.0.0.1:2104:a"],
        ],
        false,
    );
}

#[test]
fn carbon_ch_diverse_replicas_skip_the_same_host() {
    // All four instances share a host: with diverse replicas only one copy is possible.
    let c = cluster(ClusterKind::CarbonCh, &FOUR_INSTANCES, 2, true);
    assert_eq!(c.max_placements(), 1);
    check(
        &c,
        &NAMES,
        &[
            &["127.0.0.1:2404:d"],
            &["127.0.0.1:2404:d"],
            &["127.0.0.1:2204:b"],
            &["127.0.0.1:2404:d"],
            &["127.0.0.1:2304:c"],
            &["127.0.0.1:2304:c"],
        ],
        false,
    );
    let c = cluster(
        ClusterKind::CarbonCh,
        &[
            "10.0.0.1:2004:a",
            "10.0.0.1:2104:b",
            "10.0.0.2:2004:a",
            "10.0.0.2:2104:b",
            "10.0.0.3:2004",
        ],
        2,
        true,
    );
    check(
        &c,
        &NAMES,
        &[
            &["10.0.0.3:2004", "10.0.0.2:2004:a"],
            &["10.0.0.1:2104:b", "10.0.0.2:2104:b"],
            &["10.0.0.3:2004", "10.0.0.1:2104:b"],
            &["10.0.0.3:2004", "10.0.0.2:2104:b"],
            &["10.0.0.1:2004:a", "10.0.0.2:2004:a"],
            &["10.0.0.3:2004", "10.0.0.2:2104:b"],
        ],
        false,
    );
}

#[test]
fn carbon_ch_ipv6_replication_3() {
    let c = cluster(
        ClusterKind::CarbonCh,
        &[
            "[::1]:2003:a",
            "[::1]:2103:b",
            "[fd00::2]:2003",
            "127.0.0.1:2003",
        ],
        3,
        false,
    );
    check(
        &c,
        &NAMES,
        &[
            &["[::1]:2003:a", "[fd00::2]:2003", "[::1]:2103:b"],
            &["127.0.0.1:2003", "[::1]:2003:a", "[::1]:2103:b"],
            &["[fd00::2]:2003", "127.0.0.1:2003", "[::1]:2103:b"],
            &["[::1]:2003:a", "127.0.0.1:2003", "[fd00::2]:2003"],
            &["[::1]:2003:a", "127.0.0.1:2003", "[fd00::2]:2003"],
            &["[::1]:2003:a", "127.0.0.1:2003", "[fd00::2]:2003"],
        ],
        false,
    );
}

#[test]
fn carbon_ch_ring_matches_carbons_positions() {
    // ConsistentHashRing([('10.0.0.1', None), ('10.0.0.2', 'a')]).ring[:5] in carbon 1.1.7.
    let c = cluster(
        ClusterKind::CarbonCh,
        &["10.0.0.1:2003", "10.0.0.2:2003:a"],
        1,
        true,
    );
    let Placement::Carbon(ring) = &c.placement else {
        unreachable!()
    };
    let first: Vec<(u32, usize)> = ring.entries().take(5).collect();
    assert_eq!(
        first,
        vec![(824, 0), (884, 0), (1213, 0), (1448, 1), (1478, 0)]
    );
    assert_eq!(ring.entries().count(), 200);
}

#[test]
fn carbon_ch_moves_colliding_positions_and_compat_keeps_them() {
    // ('10.0.0.1', None):60 and ('10.0.0.3', None):65 both hash to 7798, as does the name
    // "collide.97131". carbon gives 7798 to the node added first and moves the other to
    // 7799; carbon-c-relay keeps both at 7798 and the run goes to the lower host.
    let dests = ["10.0.0.3:2003", "10.0.0.1:2003"];
    let carbon = cluster(ClusterKind::CarbonCh, &dests, 1, true);
    assert_eq!(placed(&carbon, "collide.97131"), ["10.0.0.3:2003"]);
    let compat = cluster(ClusterKind::CarbonChCompat, &dests, 1, true);
    assert_eq!(placed(&compat, "collide.97131"), ["10.0.0.1:2003"]);
    let Placement::Carbon(ring) = &carbon.placement else {
        unreachable!()
    };
    assert!(ring.entries().any(|e| e == (7798, 0)));
    assert!(ring.entries().any(|e| e == (7799, 1)));
    let Placement::Relay(_, ring) = &compat.placement else {
        unreachable!()
    };
    let run: Vec<(u16, usize)> = ring.entries().filter(|e| e.0 == 7798).collect();
    assert_eq!(run, vec![(7798, 1), (7798, 1)]);
    assert_eq!(ring.entries().count(), 200);
}

#[test]
fn carbon_ch_single_destination() {
    let c = cluster(ClusterKind::CarbonCh, &["127.0.0.1:2104"], 1, false);
    assert_eq!(placed(&c, "foo.bar"), ["127.0.0.1:2104"]);
}

const RELAY_NAMES: [&str; 7] = [
    "foo.bar",
    "servers.web01.cpu.user",
    "servers.dc1.host0042.disk.sda.reads",
    "cpu.load;host=a;dc=x",
    "x",
    "métrique.é",
    "collide.97131",
];

#[test]
fn carbon_ch_compat_matches_carbon_c_relay() {
    let c = cluster(ClusterKind::CarbonChCompat, &FOUR_INSTANCES, 2, true);
    check(
        &c,
        &RELAY_NAMES,
        &[
            &["127.0.0.1:2404", "127.0.0.1:2304"],
            &["127.0.0.1:2404", "127.0.0.1:2104"],
            &["127.0.0.1:2204", "127.0.0.1:2404"],
            &["127.0.0.1:2404", "127.0.0.1:2304"],
            &["127.0.0.1:2304", "127.0.0.1:2404"],
            &["127.0.0.1:2204", "127.0.0.1:2404"],
            &["127.0.0.1:2104", "127.0.0.1:2204"],
        ],
        true,
    );
}

#[test]
fn fnv1a_ch_matches_carbon_c_relay() {
    let c = cluster(
        ClusterKind::Fnv1aCh,
        &[
            "127.0.0.1:2104",
            "127.0.0.1:2204",
            "127.0.0.1:2304",
            "127.0.0.1:2404",
        ],
        2,
        true,
    );
    check(
        &c,
        &RELAY_NAMES,
        &[
            &["127.0.0.1:2304", "127.0.0.1:2204"],
            &["127.0.0.1:2104", "127.0.0.1:2404"],
            &["127.0.0.1:2204", "127.0.0.1:2404"],
            &["127.0.0.1:2104", "127.0.0.1:2404"],
            &["127.0.0.1:2104", "127.0.0.1:2304"],
            &["127.0.0.1:2204", "127.0.0.1:2304"],
            &["127.0.0.1:2204", "127.0.0.1:2104"],
        ],
        true,
    );
    // With an instance the instance alone is the key.
    let c = cluster(
        ClusterKind::Fnv1aCh,
        &[
            "10.0.0.1:2003:4d79d13554fa1301476c1f9fe968b0ac",
            "10.0.0.2:2003=0cc175b9c0f1b6a831c399e269772661",
            "10.0.0.3:2003",
        ],
        1,
        true,
    );
    check(
        &c,
        &RELAY_NAMES[..6],
        &[
            &["10.0.0.2:2003"],
            &["10.0.0.3:2003"],
            &["10.0.0.1:2003"],
            &["10.0.0.2:2003"],
            &["10.0.0.3:2003"],
            &["10.0.0.2:2003"],
        ],
        true,
    );
}

#[test]
fn jump_fnv1a_ch_matches_carbon_c_relay() {
    let c = cluster(
        ClusterKind::JumpFnv1aCh,
        &[
            "10.0.0.1:2003:10",
            "10.0.0.2:2003:9",
            "10.0.0.3:2003",
            "10.0.0.4:2003:a",
            "10.0.0.5:2003",
        ],
        2,
        true,
    );
    let Placement::Jump(members) = &c.placement else {
        unreachable!()
    };
    assert_eq!(members.order().collect::<Vec<_>>(), vec![1, 0, 3, 2, 4]);
    check(
        &c,
        &RELAY_NAMES[..6],
        &[
            &["10.0.0.1:2003", "10.0.0.5:2003"],
            &["10.0.0.4:2003", "10.0.0.3:2003"],
            &["10.0.0.3:2003", "10.0.0.1:2003"],
            &["10.0.0.3:2003", "10.0.0.5:2003"],
            &["10.0.0.3:2003", "10.0.0.4:2003"],
            &["10.0.0.4:2003", "10.0.0.2:2003"],
        ],
        true,
    );
}

#[test]
fn jump_fnv1a_ch_replicas_are_distinct_beyond_the_inline_swaps() {
    let destinations: Vec<String> = (0..40).map(|i| format!("10.0.1.{i}:2003:{i}")).collect();
    let refs: Vec<&str> = destinations.iter().map(String::as_str).collect();
    let c = cluster(ClusterKind::JumpFnv1aCh, &refs, 30, true);
    for name in NAMES {
        let mut out = Vec::new();
        c.place(name, &mut out);
        assert_eq!(out.len(), 30);
        let mut sorted = out.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 30, "{name}: {out:?}");
    }
}

#[test]
fn any_of_matches_carbon_c_relay_and_fails_over() {
    let c = cluster(
        ClusterKind::AnyOf,
        &["10.0.0.1:2003", "10.0.0.2:2003", "10.0.0.3:2003"],
        1,
        true,
    );
    check(
        &c,
        &RELAY_NAMES[..6],
        &[
            &["10.0.0.3:2003"],
            &["10.0.0.2:2003"],
            &["10.0.0.1:2003"],
            &["10.0.0.3:2003"],
            &["10.0.0.1:2003"],
            &["10.0.0.3:2003"],
        ],
        true,
    );
    let mut out = Vec::new();
    // foo.bar hashes to the third destination; with it down the next one (wrapping) is used.
    c.place_healthy("foo.bar", &|i| i != 2, &mut out);
    assert_eq!(out, [0]);
    c.place_healthy("foo.bar", &|i| i == 1, &mut out);
    assert_eq!(out, [1]);
    c.place_healthy("foo.bar", &|_| false, &mut out);
    assert_eq!(out, [2]);
}

#[test]
fn failover_forward_and_hashing_health() {
    let dests = ["a:1", "b:2", "c:3"];
    let failover = cluster(ClusterKind::Failover, &dests, 1, true);
    let mut out = vec![7];
    failover.place("x", &mut out);
    assert_eq!(out, [0]);
    failover.place_healthy("x", &|i| i == 2, &mut out);
    assert_eq!(out, [2]);
    failover.place_healthy("x", &|_| false, &mut out);
    assert_eq!(out, [0]);

    let forward = cluster(ClusterKind::Forward, &dests, 1, true);
    assert!(forward.sends_everything());
    forward.place_healthy("x", &|_| false, &mut out);
    assert_eq!(out, [0, 1, 2]);

    for kind in [
        ClusterKind::CarbonCh,
        ClusterKind::CarbonChCompat,
        ClusterKind::Fnv1aCh,
        ClusterKind::JumpFnv1aCh,
    ] {
        let c = cluster(kind, &dests, 2, true);
        for name in NAMES {
            let mut healthy = Vec::new();
            c.place_healthy(name, &|_| false, &mut healthy);
            c.place(name, &mut out);
            assert_eq!(healthy, out, "{kind} ignores health");
            assert_eq!(out.len(), 2);
        }
    }
}

#[test]
fn destinations_parse_and_print() {
    let d: Destination = "10.0.0.1:2004:a".parse().unwrap();
    assert_eq!(
        (d.host(), d.port(), d.instance()),
        ("10.0.0.1", 2004, Some("a"))
    );
    assert_eq!(d.to_string(), "10.0.0.1:2004:a");
    assert_eq!(d.socket_addr(), "10.0.0.1:2004");

    let d: Destination = " [::1]:2003:a ".parse().unwrap();
    assert_eq!((d.host(), d.port(), d.instance()), ("::1", 2003, Some("a")));
    assert_eq!(d.to_string(), "[::1]:2003:a");
    assert_eq!(d.socket_addr(), "[::1]:2003");

    let d: Destination = "[fd00::2]:2003".parse().unwrap();
    assert_eq!((d.host(), d.instance()), ("fd00::2", None));
    assert_eq!(d.to_string(), "[fd00::2]:2003");

    // carbon-c-relay's spelling, and an instance containing ':' (carbon keeps the rest).
    let d: Destination = "cache-1.example:2104=b".parse().unwrap();
    assert_eq!(d.to_string(), "cache-1.example:2104:b");
    let d: Destination = "h:1:x:y".parse().unwrap();
    assert_eq!(d.instance(), Some("x:y"));

    for d in ["h:1", "h:1:a", "[::1]:65535:z", "[fe80::1%eth0]:2003"] {
        assert_eq!(d.parse::<Destination>().unwrap().to_string(), d);
    }
    assert_eq!(
        Destination::new("::1", 2003, Some("a".to_owned()))
            .unwrap()
            .to_string(),
        "[::1]:2003:a"
    );
}

#[test]
fn destination_errors() {
    let err = |s: &str| s.parse::<Destination>().unwrap_err().to_string();
    assert_eq!(
        err("10.0.0.1"),
        "invalid destination \"10.0.0.1\": missing port (expected host:port[:instance])"
    );
    assert_eq!(
        err("10.0.0.1:"),
        "invalid destination \"10.0.0.1:\": missing port (expected host:port[:instance])"
    );
    assert_eq!(err(":2003"), "invalid destination \":2003\": empty host");
    assert_eq!(
        err("h:0"),
        "invalid destination \"h:0\": invalid port \"0\" (expected 1 to 65535)"
    );
    assert_eq!(
        err("h:70000"),
        "invalid destination \"h:70000\": invalid port \"70000\" (expected 1 to 65535)"
    );
    assert_eq!(
        err("h:+80"),
        "invalid destination \"h:+80\": invalid port \"+80\" (expected 1 to 65535)"
    );
    assert_eq!(
        err("h:2003:"),
        "invalid destination \"h:2003:\": empty instance after the port"
    );
    assert_eq!(
        err("[::1:2003"),
        "invalid destination \"[::1:2003\": missing ']' after the IPv6 address"
    );
    assert_eq!(
        err("[::1]2003"),
        "invalid destination \"[::1]2003\": expected ':' and a port after ']'"
    );
    assert_eq!(
        err("h:2003:a b"),
        "invalid destination \"h:2003:a b\": instance \"a b\" contains ' '"
    );
    assert_eq!(
        err("ho st:2003"),
        "invalid destination \"ho st:2003\": host \"ho st\" contains ' '"
    );
    assert_eq!(
        Destination::new("h", 0, None).unwrap_err().to_string(),
        "invalid destination \"h:0\": port 0 is not a valid port"
    );
}

#[test]
fn cluster_errors() {
    let build = |kind, dests: &[&str], replication| {
        let dests = dests.iter().map(|d| d.parse().unwrap()).collect();
        Cluster::new(kind, dests, replication, true)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        build(ClusterKind::CarbonCh, &[], 1),
        "a carbon_ch cluster needs at least one destination"
    );
    assert_eq!(
        build(ClusterKind::Fnv1aCh, &["a:1"], 0),
        "replication must be at least 1 for a fnv1a_ch cluster"
    );
    assert_eq!(
        build(ClusterKind::JumpFnv1aCh, &["a:1", "b:1"], 3),
        "replication 3 is larger than the number of destinations (2)"
    );
    assert_eq!(
        build(ClusterKind::CarbonCh, &["a:2003:x", "a:2004:x"], 1),
        "destination a:2004:x duplicates a:2003:x: carbon_ch places by host and instance, \
         not port; give them distinct instances"
    );
    assert_eq!(
        build(ClusterKind::Forward, &["a:2003", "b:1", "a:2003:x"], 1),
        "destination a:2003:x duplicates a:2003: the same host and port"
    );
    // Replication is not a thing for the non-hashing kinds, as in carbon-c-relay.
    for kind in [
        ClusterKind::Forward,
        ClusterKind::AnyOf,
        ClusterKind::Failover,
    ] {
        let dests = vec!["a:1".parse().unwrap()];
        assert!(Cluster::new(kind, dests, 0, true).is_ok());
    }
    // carbon-c-relay accepts two members that hash alike; the second gets nothing.
    let c = cluster(
        ClusterKind::CarbonChCompat,
        &["127.0.0.1:2104", "127.0.0.1:2204"],
        2,
        true,
    );
    assert_eq!(c.max_placements(), 1);
    assert_eq!(placed(&c, "foo.bar"), ["127.0.0.1:2104"]);
}

#[test]
fn kinds_deserialize_by_their_configuration_names() {
    let kinds: Vec<ClusterKind> = serde_json::from_str(
        r#"["forward","any_of","failover","carbon_ch","carbon_ch_compat","fnv1a_ch","jump_fnv1a_ch"]"#,
    )
    .unwrap();
    assert_eq!(
        kinds,
        [
            ClusterKind::Forward,
            ClusterKind::AnyOf,
            ClusterKind::Failover,
            ClusterKind::CarbonCh,
            ClusterKind::CarbonChCompat,
            ClusterKind::Fnv1aCh,
            ClusterKind::JumpFnv1aCh,
        ]
    );
    for kind in kinds {
        assert_eq!(
            serde_json::to_string(&kind).unwrap(),
            format!("\"{}\"", kind.as_str())
        );
    }
    assert!(serde_json::from_str::<ClusterKind>("\"consistent-hashing\"").is_err());
}

#[test]
fn place_replaces_out_and_every_kind_yields_distinct_indices() {
    let dests = [
        "10.0.0.1:2004:a",
        "10.0.0.1:2104:b",
        "10.0.0.2:2004:a",
        "10.0.0.2:2104:b",
        "10.0.0.3:2004",
    ];
    for kind in [
        ClusterKind::CarbonCh,
        ClusterKind::CarbonChCompat,
        ClusterKind::Fnv1aCh,
        ClusterKind::JumpFnv1aCh,
    ] {
        for replication in 1..=5 {
            for diverse in [false, true] {
                let c = cluster(kind, &dests, replication, diverse);
                let mut out = vec![99, 98];
                for n in 0..500 {
                    let name = format!("servers.dc{}.host{n:04}.cpu.user", n % 3);
                    c.place(&name, &mut out);
                    assert_eq!(out.len(), c.max_placements(), "{kind} {replication} {name}");
                    let mut sorted = out.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    assert_eq!(sorted.len(), out.len());
                    assert!(out.iter().all(|&i| i < dests.len()));
                    if kind == ClusterKind::CarbonCh && diverse {
                        let hosts: std::collections::HashSet<&str> =
                            out.iter().map(|&i| c.destinations()[i].host()).collect();
                        assert_eq!(hosts.len(), out.len());
                    }
                }
            }
        }
    }
}

mod properties {
    use proptest::prelude::*;

    use super::super::*;

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9][a-z0-9.-]{0,30}",
            "[0-9a-f]{1,4}(:[0-9a-f]{0,4}){2,7}",
            "[^\\s\\[\\]/:]{1,12}",
        ]
        .prop_filter("valid host", |h| check_host(h).is_ok())
    }

    fn instance() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[^\\s]{1,10}".prop_filter("valid", |i| check_instance(i).is_ok()))
    }

    proptest! {
        #[test]
        fn destinations_print_what_they_parse(
            host in host(), port in 1u16.., instance in instance()
        ) {
            let destination = Destination::new(host, port, instance).unwrap();
            let text = destination.to_string();
            prop_assert_eq!(text.parse::<Destination>().unwrap(), destination);
        }

        #[test]
        fn parsing_anything_never_panics(text in "\\PC{0,40}") {
            if let Ok(destination) = text.parse::<Destination>() {
                prop_assert_eq!(destination.to_string().parse::<Destination>(), Ok(destination));
            }
        }

        #[test]
        fn placement_is_deterministic_and_in_range(
            name in "\\PC{0,60}", replication in 1usize..=4, diverse: bool, kind in 0usize..7
        ) {
            let kinds = [
                ClusterKind::Forward,
                ClusterKind::AnyOf,
                ClusterKind::Failover,
                ClusterKind::CarbonCh,
                ClusterKind::CarbonChCompat,
                ClusterKind::Fnv1aCh,
                ClusterKind::JumpFnv1aCh,
            ];
            let destinations = ["10.0.0.1:2003:a", "10.0.0.1:2103:b", "10.0.0.2:2003", "[::1]:2003:10"]
                .iter()
                .map(|d| d.parse().unwrap())
                .collect();
            let cluster = Cluster::new(kinds[kind], destinations, replication, diverse).unwrap();
            let (mut first, mut second) = (Vec::new(), Vec::new());
            cluster.place(&name, &mut first);
            cluster.place(&name, &mut second);
            prop_assert_eq!(&first, &second);
            prop_assert_eq!(first.len(), cluster.max_placements());
            prop_assert!(first.iter().all(|&i| i < 4));
        }
    }
}
