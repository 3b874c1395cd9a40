//! carbon's `ConsistentHashRing` (graphite-project/carbon `lib/carbon/hashing.py`, 1.1.x) and
//! the `ConsistentHashingRouter.getDestinations` walk over it (`routers.py`).

use std::collections::HashSet;
use std::fmt::Write as _;

use super::hash::carbon_position;
use super::Destination;

/// Virtual nodes per destination, hard-wired in carbon.
pub(crate) const REPLICAS: u32 = 100;

/// A built carbon ring. Positions are unique (carbon moves a colliding replica up by one,
/// without wrapping, so a position can exceed `u16::MAX`) and sorted.
#[derive(Debug, Clone)]
pub(crate) struct CarbonRing {
    positions: Vec<u32>,
    /// The destination index of each ring entry.
    nodes: Vec<u32>,
    /// Per destination: the index of the first destination with the same host, so that
    /// "same server" is an integer comparison.
    servers: Vec<u32>,
    /// How many destinations a placement can reach: `replication`, capped by what exists.
    target: usize,
    diverse: bool,
}

impl CarbonRing {
    pub(crate) fn new(destinations: &[Destination], replication: usize, diverse: bool) -> Self {
        let mut taken: HashSet<u32> = HashSet::with_capacity(destinations.len() * 100);
        let mut ring: Vec<(u32, u32)> = Vec::with_capacity(destinations.len() * 100);
        let mut key = String::new();
        for (node, destination) in destinations.iter().enumerate() {
            for replica in 0..REPLICAS {
                key.clear();
                write_replica_key(&mut key, destination, replica);
                let mut position = u32::from(carbon_position(key.as_bytes()));
                while !taken.insert(position) {
                    position += 1;
                }
                ring.push((position, node as u32));
            }
        }
        ring.sort_unstable();
        let servers: Vec<u32> = destinations
            .iter()
            .map(|d| {
                destinations
                    .iter()
                    .position(|other| other.host() == d.host())
                    .unwrap_or_default() as u32
            })
            .collect();
        let distinct_servers = servers
            .iter()
            .enumerate()
            .filter(|&(i, &s)| s as usize == i)
            .count();
        let reachable = if diverse {
            distinct_servers
        } else {
            destinations.len()
        };
        CarbonRing {
            positions: ring.iter().map(|&(p, _)| p).collect(),
            nodes: ring.iter().map(|&(_, n)| n).collect(),
            servers,
            target: replication.min(reachable),
            diverse,
        }
    }

    /// carbon's `getDestinations(name)`. carbon special-cases a one-node ring and then walks
    /// it anyway, yielding its node twice when asked for two replicas without diversity;
    /// replication never exceeds the destination count here, so that cannot arise.
    pub(crate) fn place(&self, name: &str, out: &mut Vec<usize>) {
        if self.servers.len() == 1 {
            out.push(0);
            return;
        }
        let len = self.positions.len();
        let wanted = u32::from(carbon_position(name.as_bytes()));
        let mut index = self.positions.partition_point(|&p| p < wanted);
        if index == len {
            index = 0;
        }
        // carbon stops one entry short of a full turn (`index != last_index`).
        for _ in 0..len - 1 {
            let node = self.nodes[index] as usize;
            let server = self.servers[node];
            let used = if self.diverse {
                out.iter().any(|&o| self.servers[o] == server)
            } else {
                out.contains(&node)
            };
            if !used {
                out.push(node);
                if out.len() >= self.target {
                    return;
                }
            }
            index += 1;
            if index == len {
                index = 0;
            }
        }
    }

    /// How many destinations a placement yields.
    pub(crate) fn target(&self) -> usize {
        self.target
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u32, usize)> + '_ {
        self.positions
            .iter()
            .zip(&self.nodes)
            .map(|(&p, &n)| (p, n as usize))
    }
}

/// `"%s:%d" % ((server, instance), replica)` as Python 3 formats it.
pub(crate) fn write_replica_key(out: &mut String, destination: &Destination, replica: u32) {
    out.push('(');
    write_python_repr(out, destination.host());
    out.push_str(", ");
    match destination.instance() {
        Some(instance) => write_python_repr(out, instance),
        None => out.push_str("None"),
    }
    // Writing into a String cannot fail.
    let _ = write!(out, "):{replica}");
}

/// Python 3's `repr(str)`: single quotes unless the text has a single quote and no double
/// quote, backslash escapes for the quote, backslash, `\t`, `\n`, `\r`, `\xNN`/`\uNNNN`/
/// `\UNNNNNNNN` for what `str.isprintable()` rejects.
pub(crate) fn write_python_repr(out: &mut String, text: &str) {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_python_printable(c) => out.push(c),
            c => {
                let code = u32::from(c);
                let _ = if code <= 0xff {
                    write!(out, "\\x{code:02x}")
                } else if code <= 0xffff {
                    write!(out, "\\u{code:04x}")
                } else {
                    write!(out, "\\U{code:08x}")
                };
            }
        }
    }
    out.push(quote);
}

/// `str.isprintable()` for one character: false for the Unicode categories Cc, Cf, Cs, Co,
/// Cn, Zl, Zp and Zs other than the ASCII space.
///
/// Exact for ASCII and for every assigned non-printable character; code points unassigned in
/// Python's Unicode database (category Cn, other than the noncharacters) count as printable
/// here, which can only matter for a host or instance name made of unassigned characters.
fn is_python_printable(c: char) -> bool {
    let code = u32::from(c);
    if code < 0x7f {
        return code >= 0x20;
    }
    !matches!(code,
        // Cc
        0x7f..=0x9f
        // Zs, Zl, Zp
        | 0xa0 | 0x1680 | 0x2000..=0x200a | 0x2028 | 0x2029 | 0x202f | 0x205f | 0x3000
        // Cf
        | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890..=0x891 | 0x8e2 | 0x180e
        | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff
        | 0xfff9..=0xfffb | 0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3
        | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f
        // Co
        | 0xe000..=0xf8ff | 0xf0000..=0xffffd | 0x100000..=0x10fffd
        // Cn noncharacters
        | 0xfdd0..=0xfdef)
        && (code & 0xfffe) != 0xfffe
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(text: &str) -> String {
        let mut out = String::new();
        write_python_repr(&mut out, text);
        out
    }

    #[test]
    fn python_repr_quoting() {
        // Expected values printed by /usr/bin/python3 (3.11): repr(...) of each input.
        assert_eq!(repr("10.0.0.1"), "'10.0.0.1'");
        assert_eq!(repr(""), "''");
        assert_eq!(repr("it's"), "\"it's\"");
        assert_eq!(repr("a\"b"), "'a\"b'");
        assert_eq!(repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(repr("\\"), "'\\\\'");
        assert_eq!(repr("a\tb\nc\rd\x01\x7f"), "'a\\tb\\nc\\rd\\x01\\x7f'");
        assert_eq!(
            repr("é\u{a0}\u{85}\u{200b}\u{e000}\u{fdd0}x"),
            "'é\\xa0\\x85\\u200b\\ue000\\ufdd0x'"
        );
        assert_eq!(repr("\u{1f600}\u{10fffe}"), "'\u{1f600}\\U0010fffe'");
    }

    #[test]
    fn replica_keys_are_python_tuple_reprs() {
        let key = |d: &str, i| {
            let mut out = String::new();
            write_replica_key(&mut out, &d.parse().unwrap(), i);
            out
        };
        assert_eq!(key("10.0.0.1:2003", 0), "('10.0.0.1', None):0");
        assert_eq!(key("10.0.0.1:2003:a", 99), "('10.0.0.1', 'a'):99");
        assert_eq!(key("[::1]:2003:b", 7), "('::1', 'b'):7");
        assert_eq!(key("h:2003:it's", 1), "('h', \"it's\"):1");
    }
}
