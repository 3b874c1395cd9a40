//! Graphite cluster placement: which destinations a metric name goes to.
//!
//! An existing carbon cluster's data lives where carbon-relay or carbon-c-relay put it; a
//! replacement relay that hashes even one name differently splits that series' history over
//! two caches. So each [`ClusterKind`] reproduces its reference byte for byte, quirks
//! included, and the tests compare against the reference implementations themselves (carbon's
//! Python `ConsistentHashingRouter`, carbon-c-relay's `-t` mode):
//!
//! | kind               | reference                       | placement                                  |
//! |--------------------|---------------------------------|--------------------------------------------|
//! | `forward`          | carbon-c-relay `forward`        | every destination                          |
//! | `any_of`           | carbon-c-relay `any_of`         | one, by FNV-1a of the name modulo the count |
//! | `failover`         | carbon-c-relay `failover`       | the first (healthy) one                    |
//! | `carbon_ch`        | carbon 1.1 `consistent-hashing` | MD5 ring, collisions moved (see below)     |
//! | `carbon_ch_compat` | carbon-c-relay `carbon_ch`      | the same ring with collisions kept         |
//! | `fnv1a_ch`         | carbon-c-relay `fnv1a_ch`       | FNV-1a ring                                |
//! | `jump_fnv1a_ch`    | carbon-c-relay `jump_fnv1a_ch`  | jump hash over the members                 |
//!
//! **`carbon_ch`** is carbon's ring (`lib/carbon/hashing.py`): each destination is the node
//! `(host, instance)` (the port does not count, so two caches on one host need instances),
//! with 100 replicas whose keys are Python's `"%s:%d" % ((host, instance), i)`, e.g.
//! `('10.0.0.1', 'a'):0` or `('10.0.0.1', None):0`, Python string quoting and escaping
//! included. A replica's position is the first two bytes of the key's MD5, big-endian; in
//! carbon 1.x a position already taken moves up by one until free (past 65535 if need be).
//! A name is hashed the same way; its destinations are the distinct nodes met walking the ring
//! from the first position >= the hash, and with `diverse_replicas` (carbon's
//! `DIVERSE_REPLICAS`, on by default) a node whose host already has a copy is skipped, so
//! replication 2 over four instances of one host places each metric once.
//!
//! **`carbon_ch_compat`** is carbon-c-relay's `carbon_ch`: the same keys (formatted without
//! Python's escaping), but colliding positions are kept, and a run of equal positions belongs
//! to the member that sorts first (by host, then instance, none last). With replication 1
//! that moves about one name in 50,000; the second and third copies differ for 0.5 to 2% of
//! names, so pick the kind your cluster was filled by. carbon-c-relay has no diverse-replica
//! rule; `diverse_replicas` is ignored here, as by `fnv1a_ch` and `jump_fnv1a_ch`.
//!
//! **`fnv1a_ch`** keys replicas `"<i>-<host>:<port>"`, or `"<i>-<instance>"` when an instance
//! is set (the instance then fully replaces the address), with 32-bit FNV-1a folded to 16 bits.
//! **`jump_fnv1a_ch`** orders the members by instance (as numbers when both are numbers),
//! members without instance last in configuration order, and jump-hashes the name's 64-bit
//! FNV-1a over them; each further replica takes the chosen member out and jumps again.
//! carbon-c-relay hashes C `char`s, signed on x86-64, so for bytes >= 0x80 these FNV-1a values
//! are not textbook FNV-1a; they are what Debian's carbon-c-relay computes.
//!
//! Tagged names (`name;k=v`) are hashed as given, as carbon 1.1 does by default. carbon with
//! `TAG_RELAY_NORMALIZED = True` normalizes the name (`graphite_plaintext::normalize_into`)
//! before hashing *and* forwards the normalized name; do both in that case. carbon-c-relay
//! never reorders tags.
//!
//! **Health.** [`Cluster::place`] ignores it. [`Cluster::place_healthy`] applies it only where
//! the reference does: `failover` takes the first healthy destination, `any_of` the hashed
//! one or else the next healthy one after it (carbon-c-relay instead spills a failed member's
//! queue over the others; a fixed successor keeps each series on one cache). With no healthy
//! destination both still answer their first choice, whose queue holds the data. A hashing
//! cluster never moves a metric to another destination because one is down: its queue keeps
//! the data until the destination is back (carbon and carbon-c-relay, without `dynamic`, do
//! the same), because writing it elsewhere would scatter the series.

mod carbon;
mod hash;
mod relay;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use self::carbon::CarbonRing;
use self::relay::{JumpMembers, RelayRing, RingHash};

/// A carbon receiver: `host:port[:instance]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    host: String,
    port: u16,
    instance: Option<String>,
}

impl Destination {
    /// A destination from its parts, validated as [`FromStr`] does.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        instance: Option<String>,
    ) -> Result<Self, ClusterError> {
        let destination = Destination {
            host: host.into(),
            port,
            instance,
        };
        let problem = if let Err(reason) = check_host(&destination.host) {
            Some(reason)
        } else if port == 0 {
            Some("port 0 is not a valid port".to_owned())
        } else if let Some(Err(reason)) = destination.instance.as_deref().map(check_instance) {
            Some(reason)
        } else {
            None
        };
        match problem {
            Some(reason) => Err(ClusterError::Destination {
                input: destination.to_string(),
                reason,
            }),
            None => Ok(destination),
        }
    }

    /// The host name or address, IPv6 without brackets (as carbon keys it).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The instance, which takes part in `carbon_ch` and `fnv1a_ch` hashing and orders
    /// `jump_fnv1a_ch` members.
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// `host:port` to connect to, IPv6 in brackets.
    pub fn socket_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses carbon's `DESTINATIONS` syntax, `host:port[:instance]` with IPv6 hosts in brackets
/// (`[::1]:2004:a`), and carbon-c-relay's `host:port=instance` spelling of the same thing.
/// The port is required: carbon has no default, and 2003 versus 2004 decides the protocol.
impl FromStr for Destination {
    type Err = ClusterError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| ClusterError::Destination {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let text = input.trim();
        let (host, rest) = if let Some(bracketed) = text.strip_prefix('[') {
            let (host, rest) = bracketed
                .split_once(']')
                .ok_or_else(|| fail("missing ']' after the IPv6 address"))?;
            let rest = rest
                .strip_prefix(':')
                .ok_or_else(|| fail("expected ':' and a port after ']'"))?;
            if host.is_empty() {
                return Err(fail("empty host"));
            }
            (host, rest)
        } else {
            let (host, rest) = text
                .split_once(':')
                .ok_or_else(|| fail("missing port (expected host:port[:instance])"))?;
            if host.is_empty() {
                return Err(fail("empty host"));
            }
            (host, rest)
        };
        let (port, instance) = match rest.find([':', '=']) {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        if port.is_empty() {
            return Err(fail("missing port (expected host:port[:instance])"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0 && port.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| fail(&format!("invalid port {port:?} (expected 1 to 65535)")))?;
        check_host(host).map_err(|reason| fail(&reason))?;
        if let Some(instance) = instance {
            check_instance(instance).map_err(|reason| fail(&reason))?;
        }
        Ok(Destination {
            host: host.to_owned(),
            port,
            instance: instance.map(str::to_owned),
        })
    }
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host".to_owned());
    }
    if let Some(c) = host
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || matches!(c, '[' | ']' | '/'))
    {
        return Err(format!("host {host:?} contains {c:?}"));
    }
    Ok(())
}

fn check_instance(instance: &str) -> Result<(), String> {
    if instance.is_empty() {
        return Err("empty instance after the port".to_owned());
    }
    if let Some(c) = instance
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("instance {instance:?} contains {c:?}"));
    }
    Ok(())
}

/// `host:port[:instance]`, IPv6 in brackets: what [`FromStr`] reads back.
impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        if let Some(instance) = &self.instance {
            write!(f, ":{instance}")?;
        }
        Ok(())
    }
}

/// How a cluster spreads metrics over its destinations; the configuration names are the
/// carbon-c-relay cluster types, plus `carbon_ch_compat` for carbon-c-relay's own variant of
/// `carbon_ch` (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterKind {
    /// Every metric to every destination.
    Forward,
    /// Each metric to one destination, by hash, moving on when it is down.
    AnyOf,
    /// Every metric to the first destination that is up.
    Failover,
    /// carbon's (carbon-relay's) consistent hash ring.
    CarbonCh,
    /// carbon-c-relay's `carbon_ch`, which keeps colliding ring positions.
    CarbonChCompat,
    /// carbon-c-relay's FNV-1a ring.
    Fnv1aCh,
    /// carbon-c-relay's jump consistent hash.
    JumpFnv1aCh,
}

impl ClusterKind {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterKind::Forward => "forward",
            ClusterKind::AnyOf => "any_of",
            ClusterKind::Failover => "failover",
            ClusterKind::CarbonCh => "carbon_ch",
            ClusterKind::CarbonChCompat => "carbon_ch_compat",
            ClusterKind::Fnv1aCh => "fnv1a_ch",
            ClusterKind::JumpFnv1aCh => "jump_fnv1a_ch",
        }
    }

    /// Whether placement hashes names over the destinations with a replication factor.
    pub fn is_hashing(self) -> bool {
        matches!(
            self,
            ClusterKind::CarbonCh
                | ClusterKind::CarbonChCompat
                | ClusterKind::Fnv1aCh
                | ClusterKind::JumpFnv1aCh
        )
    }
}

impl fmt::Display for ClusterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a destination or cluster cannot be built. All are configuration errors: nothing can
/// run until the configuration changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid destination {input:?}: {reason}")]
    Destination { input: String, reason: String },
    #[error("a {kind} cluster needs at least one destination")]
    NoDestinations { kind: ClusterKind },
    #[error("replication must be at least 1 for a {kind} cluster")]
    ZeroReplication { kind: ClusterKind },
    #[error(
        "replication {replication} is larger than the number of destinations ({destinations})"
    )]
    ReplicationTooLarge {
        replication: usize,
        destinations: usize,
    },
    #[error("destination {duplicate} duplicates {first}: {why}")]
    DuplicateDestination {
        first: String,
        duplicate: String,
        why: &'static str,
    },
}

/// A cluster ready to place names: rings and member orders are computed once, here, so that
/// [`Cluster::place`] only hashes the name and reads them.
#[derive(Debug, Clone)]
pub struct Cluster {
    kind: ClusterKind,
    destinations: Vec<Destination>,
    replication: usize,
    diverse_replicas: bool,
    placement: Placement,
}

#[derive(Debug, Clone)]
enum Placement {
    Forward,
    AnyOf,
    Failover,
    Carbon(CarbonRing),
    Relay(RingHash, RelayRing),
    Jump(JumpMembers),
}

impl Cluster {
    /// Builds the cluster. `replication` counts only for the hashing kinds, as in
    /// carbon-c-relay, and must be between 1 and the number of destinations;
    /// `diverse_replicas` counts only for `carbon_ch`.
    ///
    /// Rejects a destination repeated with the same host and port, and for `carbon_ch` one
    /// repeating a host and instance (carbon refuses those: they are one ring node).
    pub fn new(
        kind: ClusterKind,
        destinations: Vec<Destination>,
        replication: usize,
        diverse_replicas: bool,
    ) -> Result<Self, ClusterError> {
        if destinations.is_empty() {
            return Err(ClusterError::NoDestinations { kind });
        }
        if kind.is_hashing() {
            if replication == 0 {
                return Err(ClusterError::ZeroReplication { kind });
            }
            if replication > destinations.len() {
                return Err(ClusterError::ReplicationTooLarge {
                    replication,
                    destinations: destinations.len(),
                });
            }
        }
        for (i, d) in destinations.iter().enumerate() {
            for earlier in &destinations[..i] {
                let why = if earlier.host == d.host && earlier.port == d.port {
                    "the same host and port"
                } else if kind == ClusterKind::CarbonCh
                    && earlier.host == d.host
                    && earlier.instance == d.instance
                {
                    "carbon_ch places by host and instance, not port; give them distinct instances"
                } else {
                    continue;
                };
                return Err(ClusterError::DuplicateDestination {
                    first: earlier.to_string(),
                    duplicate: d.to_string(),
                    why,
                });
            }
        }
        let placement = match kind {
            ClusterKind::Forward => Placement::Forward,
            ClusterKind::AnyOf => Placement::AnyOf,
            ClusterKind::Failover => Placement::Failover,
            ClusterKind::CarbonCh => Placement::Carbon(CarbonRing::new(
                &destinations,
                replication,
                diverse_replicas,
            )),
            ClusterKind::CarbonChCompat => Placement::Relay(
                RingHash::Carbon,
                RelayRing::new(RingHash::Carbon, &destinations, replication),
            ),
            ClusterKind::Fnv1aCh => Placement::Relay(
                RingHash::Fnv1a,
                RelayRing::new(RingHash::Fnv1a, &destinations, replication),
            ),
            ClusterKind::JumpFnv1aCh => {
                Placement::Jump(JumpMembers::new(&destinations, replication))
            }
        };
        Ok(Cluster {
            kind,
            destinations,
            replication,
            diverse_replicas,
            placement,
        })
    }

    pub fn kind(&self) -> ClusterKind {
        self.kind
    }

    /// The destinations, in configuration order: placement answers indices into this.
    pub fn destinations(&self) -> &[Destination] {
        &self.destinations
    }

    pub fn replication(&self) -> usize {
        self.replication
    }

    pub fn diverse_replicas(&self) -> bool {
        self.diverse_replicas
    }

    /// Whether every metric goes to every destination (`forward`), so a caller can skip
    /// placing names one by one.
    pub fn sends_everything(&self) -> bool {
        self.kind == ClusterKind::Forward
    }

    /// The most destinations one name can be placed on: all of them for `forward`, 1 for
    /// `any_of` and `failover`, else the replication, less when the cluster cannot honour it
    /// (`carbon_ch` with diverse replicas over fewer hosts, or a `carbon_ch_compat` /
    /// `fnv1a_ch` member that lost every ring position to collisions).
    pub fn max_placements(&self) -> usize {
        match &self.placement {
            Placement::Forward => self.destinations.len(),
            Placement::AnyOf | Placement::Failover => 1,
            Placement::Carbon(ring) => ring.target(),
            Placement::Relay(_, ring) => ring.target(),
            Placement::Jump(_) => self.replication,
        }
    }

    /// Replaces `out` with the indices of the destinations `name` goes to, first replica
    /// first, each at most once. Health is not considered (see [`Cluster::place_healthy`]).
    /// Allocation-free (unless `out` must grow, or for `jump_fnv1a_ch` with replication > 17).
    pub fn place(&self, name: &str, out: &mut Vec<usize>) {
        out.clear();
        match &self.placement {
            Placement::Forward => out.extend(0..self.destinations.len()),
            Placement::AnyOf => out.push(self.any_of_index(name)),
            Placement::Failover => out.push(0),
            Placement::Carbon(ring) => ring.place(name, out),
            Placement::Relay(hash, ring) => ring.place(*hash, name, out),
            Placement::Jump(members) => members.place(name, out),
        }
    }

    /// [`Cluster::place`], with `failover` taking the first destination for which `healthy`
    /// is true and `any_of` the hashed one or else the next healthy one after it (wrapping);
    /// with none healthy, their first choice. The other kinds ignore health (module docs).
    pub fn place_healthy(&self, name: &str, healthy: &dyn Fn(usize) -> bool, out: &mut Vec<usize>) {
        let n = self.destinations.len();
        let first = match &self.placement {
            Placement::AnyOf => self.any_of_index(name),
            Placement::Failover => 0,
            _ => return self.place(name, out),
        };
        out.clear();
        let chosen = (0..n)
            .map(|step| (first + step) % n)
            .find(|&i| healthy(i))
            .unwrap_or(first);
        out.push(chosen);
    }

    /// carbon-c-relay's `any_of`: 32-bit FNV-1a of the name modulo the member count.
    fn any_of_index(&self, name: &str) -> usize {
        hash::fnv1a_32(name.as_bytes()) as usize % self.destinations.len()
    }
}
