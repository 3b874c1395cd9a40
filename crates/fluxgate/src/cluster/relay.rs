//! carbon-c-relay's hashing clusters (grobian/carbon-c-relay `consistent-hash.c`, 3.x):
//! `carbon_ch` as it implements it (colliding positions kept), `fnv1a_ch` and `jump_fnv1a_ch`.

use std::cmp::Ordering;
use std::fmt::Write as _;

use super::hash::{carbon_position, fnv1a_64, fnv1a_position, jump_bucket, jump_rehash};
use super::Destination;

/// Virtual nodes per destination, as in carbon.
const REPLICAS: u32 = 100;

/// carbon-c-relay formats replica keys into `char buf[256]` with `snprintf`.
const KEY_BUFFER: usize = 255;

/// Which of carbon-c-relay's two ring hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RingHash {
    /// MD5 over carbon's tuple string, built with `'%s'` (no Python escaping).
    Carbon,
    /// FNV-1a over `"%d-%s:%u"` (replica, host, port), or `"%d-%s"` (replica, instance).
    Fnv1a,
}

/// A ring with carbon-c-relay's semantics: 100 positions per destination, duplicates kept,
/// sorted by position then by the member (`entrycmp_carbon` / `entrycmp_fnv1a`), and every
/// entry of a run of equal positions pointing to the run's first member (carbon-c-relay
/// overwrites them so that its binary search may land anywhere in the run).
#[derive(Debug, Clone)]
pub(crate) struct RelayRing {
    positions: Vec<u16>,
    nodes: Vec<u32>,
    /// `replication`, capped by how many destinations kept at least one position.
    target: usize,
}

impl RelayRing {
    pub(crate) fn new(hash: RingHash, destinations: &[Destination], replication: usize) -> Self {
        let mut ring: Vec<(u16, u32)> = Vec::with_capacity(destinations.len() * 100);
        let mut key = String::new();
        for (node, destination) in destinations.iter().enumerate() {
            for replica in 0..REPLICAS {
                key.clear();
                let position = match hash {
                    RingHash::Carbon => {
                        write_carbon_key(&mut key, destination, replica);
                        carbon_position(truncated(&key))
                    }
                    RingHash::Fnv1a => {
                        write_fnv1a_key(&mut key, destination, replica);
                        fnv1a_position(truncated(&key))
                    }
                };
                ring.push((position, node as u32));
            }
        }
        // A stable sort, as glibc's merge-sorting qsort is; the comparators are total orders
        // here, so any stable sort yields carbon-c-relay's order.
        ring.sort_by(|&(pa, a), &(pb, b)| {
            pa.cmp(&pb).then_with(|| {
                let (a, b) = (&destinations[a as usize], &destinations[b as usize]);
                match hash {
                    RingHash::Carbon => compare_carbon_members(a, b),
                    RingHash::Fnv1a => a
                        .host()
                        .as_bytes()
                        .cmp(b.host().as_bytes())
                        .then(a.port().cmp(&b.port())),
                }
            })
        });
        for i in 1..ring.len() {
            if ring[i].0 == ring[i - 1].0 {
                ring[i].1 = ring[i - 1].1;
            }
        }
        let mut present: Vec<bool> = vec![false; destinations.len()];
        for &(_, node) in &ring {
            present[node as usize] = true;
        }
        let reachable = present.iter().filter(|&&p| p).count();
        RelayRing {
            positions: ring.iter().map(|&(p, _)| p).collect(),
            nodes: ring.iter().map(|&(_, n)| n).collect(),
            target: replication.min(reachable),
        }
    }

    /// `ch_get_nodes`: from the first position >= the name's hash (wrapping), the first
    /// `replication` distinct destinations.
    pub(crate) fn place(&self, hash: RingHash, name: &str, out: &mut Vec<usize>) {
        let wanted = match hash {
            RingHash::Carbon => carbon_position(name.as_bytes()),
            RingHash::Fnv1a => fnv1a_position(name.as_bytes()),
        };
        let len = self.positions.len();
        let mut index = self.positions.partition_point(|&p| p < wanted);
        // carbon-c-relay walks until it has found them all; `target` counts only reachable
        // destinations, so one turn always suffices.
        for _ in 0..len {
            if index == len {
                index = 0;
            }
            let node = self.nodes[index] as usize;
            if !out.contains(&node) {
                out.push(node);
                if out.len() >= self.target {
                    return;
                }
            }
            index += 1;
        }
    }

    /// How many destinations a placement yields.
    pub(crate) fn target(&self) -> usize {
        self.target
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u16, usize)> + '_ {
        self.positions
            .iter()
            .zip(&self.nodes)
            .map(|(&p, &n)| (p, n as usize))
    }
}

fn truncated(key: &str) -> &[u8] {
    let bytes = key.as_bytes();
    &bytes[..bytes.len().min(KEY_BUFFER)]
}

/// `snprintf(buf, sizeof(buf), "('%s', %s%s%s):%d", ip, ...)`: carbon's tuple string for plain
/// names, but without Python's escaping.
fn write_carbon_key(out: &mut String, destination: &Destination, replica: u32) {
    let _ = match destination.instance() {
        Some(instance) => write!(out, "('{}', '{instance}'):{replica}", destination.host()),
        None => write!(out, "('{}', None):{replica}", destination.host()),
    };
}

fn write_fnv1a_key(out: &mut String, destination: &Destination, replica: u32) {
    let _ = match destination.instance() {
        Some(instance) => write!(out, "{replica}-{instance}"),
        None => write!(
            out,
            "{replica}-{}:{}",
            destination.host(),
            destination.port()
        ),
    };
}

/// `entrycmp_carbon` past the position: host, then instance with "no instance" last.
fn compare_carbon_members(a: &Destination, b: &Destination) -> Ordering {
    a.host()
        .as_bytes()
        .cmp(b.host().as_bytes())
        .then_with(|| match (a.instance(), b.instance()) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => a.as_bytes().cmp(b.as_bytes()),
        })
}

/// `jump_fnv1a_ch`: no ring, just the members in jump order.
#[derive(Debug, Clone)]
pub(crate) struct JumpMembers {
    /// Destination indices in the order the jump hash numbers its buckets.
    order: Vec<u32>,
    replication: usize,
}

/// Bucket swaps tracked on the stack per placement; more replicas than this allocate.
const INLINE_SWAPS: usize = 16;

impl JumpMembers {
    pub(crate) fn new(destinations: &[Destination], replication: usize) -> Self {
        let mut order: Vec<u32> = (0..destinations.len() as u32).collect();
        glibc_msort(&mut order, |&a, &b| {
            compare_jump_members(
                (a, destinations[a as usize].instance()),
                (b, destinations[b as usize].instance()),
            )
        });
        JumpMembers {
            order,
            replication: replication.min(destinations.len()),
        }
    }

    /// carbon-c-relay's `ch_get_nodes` for `JUMP_FNV1a`: jump-hash the 64-bit FNV-1a of the
    /// name over the members; for each further replica, take the chosen bucket out (the last
    /// member moves into its slot) and jump again with an xorshift64* of the key.
    pub(crate) fn place(&self, name: &str, out: &mut Vec<usize>) {
        let mut hash = fnv1a_64(name.as_bytes());
        let mut buckets = self.order.len();
        let mut inline = [(0u32, 0u32); INLINE_SWAPS];
        let mut inline_len = 0;
        let mut spilled: Vec<(u32, u32)> = Vec::new();
        let member = |slot: usize, inline: &[(u32, u32)], spilled: &[(u32, u32)]| -> u32 {
            spilled
                .iter()
                .rev()
                .chain(inline.iter().rev())
                .find(|&&(s, _)| s as usize == slot)
                .map_or(self.order[slot], |&(_, m)| m)
        };
        let mut remaining = self.replication;
        while buckets > 0 {
            let slot = jump_bucket(hash, buckets);
            let chosen = member(slot, &inline[..inline_len], &spilled);
            out.push(chosen as usize);
            remaining -= 1;
            if remaining == 0 {
                return;
            }
            hash = jump_rehash(hash);
            buckets -= 1;
            let last = member(buckets, &inline[..inline_len], &spilled);
            if inline_len < INLINE_SWAPS {
                inline[inline_len] = (slot as u32, last);
                inline_len += 1;
            } else {
                spilled.push((slot as u32, last));
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn order(&self) -> impl Iterator<Item = usize> + '_ {
        self.order.iter().map(|&i| i as usize)
    }
}

/// `entrycmp_jump_fnv1a`: members with an instance first, ordered by instance (as numbers when
/// both parse completely as C `strtol` numbers, else bytewise); members without an instance
/// after them, in configuration order.
///
/// Like the C, this is not a total order for a mix of numeric and other instances (`2` <
/// `10` numerically, `10` < `1a` < `2` bytewise); [`glibc_msort`] then reproduces the exact
/// order carbon-c-relay ends up with.
fn compare_jump_members(
    (a_index, a): (u32, Option<&str>),
    (b_index, b): (u32, Option<&str>),
) -> Ordering {
    match (a, b) {
        (None, None) => a_index.cmp(&b_index),
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => match (strtol_whole(a), strtol_whole(b)) {
            // `return (int)(val_l - val_r);` with C's wrapping and truncation.
            (Some(x), Some(y)) => (x.wrapping_sub(y) as i32).cmp(&0),
            _ => a.as_bytes().cmp(b.as_bytes()),
        },
    }
}

/// `strtol(s, &end, 10)` when `*end == '\0'` afterwards: optional leading whitespace and
/// sign, digits, nothing else (saturating like `strtol`). An empty string counts as 0, as it
/// does in C, where `end` then points at the terminating NUL.
fn strtol_whole(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .unwrap_or(bytes.len());
    let mut rest = &bytes[start..];
    let negative = match rest.first() {
        Some(b'-') => {
            rest = &rest[1..];
            true
        }
        Some(b'+') => {
            rest = &rest[1..];
            false
        }
        _ => false,
    };
    if rest.is_empty() {
        // No digits: `end` is the start of the string, which is NUL only for "".
        return bytes.is_empty().then_some(0);
    }
    if !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: i64 = 0;
    for &digit in rest {
        let digit = i64::from(digit - b'0');
        value = if negative {
            value.saturating_mul(10).saturating_sub(digit)
        } else {
            value.saturating_mul(10).saturating_add(digit)
        };
    }
    Some(value)
}

/// glibc's `qsort` (`msort_with_tmp`): a top-down merge sort that splits at `n / 2` and takes
/// from the left run while `cmp(left, right) <= 0`. Reproduced rather than any stable sort
/// because with a comparator that is not a total order, the result depends on exactly which
/// pairs get compared.
fn glibc_msort<T: Copy>(items: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    let mut scratch = Vec::with_capacity(items.len());
    msort(items, &mut scratch, &mut cmp);
}

fn msort<T: Copy>(items: &mut [T], scratch: &mut Vec<T>, cmp: &mut impl FnMut(&T, &T) -> Ordering) {
    let n = items.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    msort(&mut items[..n1], scratch, cmp);
    msort(&mut items[n1..], scratch, cmp);
    scratch.clear();
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(&items[i], &items[j]) != Ordering::Greater {
            scratch.push(items[i]);
            i += 1;
        } else {
            scratch.push(items[j]);
            j += 1;
        }
    }
    scratch.extend_from_slice(&items[i..n1]);
    // What is left of the right run is already in place.
    items[..scratch.len()].copy_from_slice(scratch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol_whole_follows_c() {
        assert_eq!(strtol_whole("10"), Some(10));
        assert_eq!(strtol_whole("-3"), Some(-3));
        assert_eq!(strtol_whole("+7"), Some(7));
        assert_eq!(strtol_whole(" 4"), Some(4));
        assert_eq!(strtol_whole(""), Some(0));
        assert_eq!(strtol_whole("-"), None);
        assert_eq!(strtol_whole("1a"), None);
        assert_eq!(strtol_whole("a"), None);
        assert_eq!(strtol_whole("99999999999999999999"), Some(i64::MAX));
        assert_eq!(strtol_whole("-99999999999999999999"), Some(i64::MIN));
    }

    #[test]
    fn msort_is_stable_and_sorts() {
        let mut items: Vec<(u8, usize)> = [3u8, 1, 2, 1, 3, 0, 2]
            .iter()
            .copied()
            .enumerate()
            .map(|(i, k)| (k, i))
            .collect();
        glibc_msort(&mut items, |a, b| a.0.cmp(&b.0));
        assert_eq!(
            items,
            vec![(0, 5), (1, 1), (1, 3), (2, 2), (2, 6), (3, 0), (3, 4)]
        );
    }

    #[test]
    fn jump_order_numeric_then_bytewise_then_config_order() {
        let destinations: Vec<Destination> =
            ["h:1", "h:2:10", "h:3:9", "h:4", "h:5:b", "h:6:a", "h:7:-1"]
                .iter()
                .map(|d| d.parse().unwrap())
                .collect();
        let jump = JumpMembers::new(&destinations, 1);
        let ports: Vec<u16> = jump.order().map(|i| destinations[i].port()).collect();
        assert_eq!(ports, vec![7, 3, 2, 6, 5, 1, 4]);
    }
}
