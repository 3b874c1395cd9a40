//! A bounded cache of where metric names were placed in a hashing cluster.
//!
//! `carbon_ch` and the other hashing clusters place a name by hashing it (MD5 for carbon's
//! ring), which costs more than everything else the relay does with a line. A name's place
//! in a hashing cluster depends on the name alone (health is not considered: a down member
//! keeps its points queued), and the same names come back every interval, so the answer is
//! kept, in a [`NameCache`] (two generations of at most [`GENERATION_BYTES`] each; names sent
//! every interval stay, a flood of one-off names costs at most two generations).

use crate::name_cache::{Found, NameCache};

/// Bytes one generation may hold.
pub(crate) const GENERATION_BYTES: usize = 8 << 20;

/// Most destinations one name is kept with (replication factor); more are placed each time.
const MAX_PLACES: usize = 16;

/// A name's destinations as the cache keeps them: each index as a little-endian `u16`,
/// first replica first. False (not kept) for more than [`MAX_PLACES`] or an index beyond
/// `u16`.
fn encode(places: &[usize], out: &mut Vec<u8>) -> bool {
    if places.len() > MAX_PLACES {
        return false;
    }
    for &i in places {
        let Ok(i) = u16::try_from(i) else {
            return false;
        };
        out.extend_from_slice(&i.to_le_bytes());
    }
    true
}

fn decode(bytes: &[u8], out: &mut Vec<usize>) {
    out.clear();
    out.extend(
        bytes
            .chunks_exact(2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))),
    );
}

#[derive(Debug)]
pub(crate) struct PlacementCache {
    names: NameCache,
}

impl PlacementCache {
    pub(crate) fn new() -> Self {
        Self::with_limit(GENERATION_BYTES)
    }

    pub(crate) fn with_limit(limit: usize) -> Self {
        Self {
            names: NameCache::with_limit(limit),
        }
    }

    /// The places of `name` into `out` (replacing its contents), computing them with
    /// `place` when the name was not seen before. Names are bytes: a name found needs no
    /// UTF-8 check; `place` gets it as text, and a name that is not UTF-8 is placed nowhere.
    #[cfg(test)]
    pub(crate) fn place(
        &mut self,
        name: &[u8],
        out: &mut Vec<usize>,
        place: impl FnOnce(&str, &mut Vec<usize>),
    ) {
        let hash = self.names.hash(name);
        self.place_hashed(hash, name, out, place);
    }

    /// The hash `name` is kept under ([`PlacementCache::find`], [`PlacementCache::place_hashed`]).
    #[inline]
    pub(crate) fn hash(&self, name: &[u8]) -> u64 {
        self.names.hash(name)
    }

    /// [`NameCache::find`]: for looking up several names before placing any.
    #[inline]
    pub(crate) fn find(&self, hash: u64, name: &[u8]) -> Option<Found> {
        self.names.find(hash, name)
    }

    /// [`NameCache::epoch`].
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.names.epoch()
    }

    /// The places of an entry [`PlacementCache::find`] found, into `out`.
    #[inline]
    pub(crate) fn found(&self, found: Found, out: &mut Vec<usize>) {
        decode(self.names.value(found), out);
    }

    /// [`PlacementCache::place`] with the name's [`PlacementCache::hash`].
    pub(crate) fn place_hashed(
        &mut self,
        hash: u64,
        name: &[u8],
        out: &mut Vec<usize>,
        place: impl FnOnce(&str, &mut Vec<usize>),
    ) {
        out.clear();
        let kept = self.names.get_hashed(hash, name, |bytes| {
            let Ok(text) = std::str::from_utf8(name) else {
                return false;
            };
            place(text, out);
            encode(out, bytes)
        });
        // Not kept: `out` holds what `place` answered (nothing for a name that is not UTF-8).
        if let Some(bytes) = kept {
            decode(bytes, out);
        }
    }

    /// Names held, both generations.
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_len(name: &str, out: &mut Vec<usize>) {
        out.push(name.len() % 4);
    }

    #[test]
    fn answers_what_place_answers_and_places_once() {
        let mut cache = PlacementCache::new();
        let mut out = Vec::new();
        let mut calls = 0;
        for _ in 0..3 {
            cache.place(b"abc", &mut out, |n, o| {
                calls += 1;
                by_len(n, o)
            });
            assert_eq!(out, [3]);
        }
        assert_eq!(calls, 1);
    }

    #[test]
    fn stays_within_two_generations() {
        // An entry costs its name, two bytes per place and twelve more.
        let limit = 10 * (8 + 2 + 12);
        let mut cache = PlacementCache::with_limit(limit);
        let mut out = Vec::new();
        for i in 0..1000 {
            cache.place(format!("name{i:04}").as_bytes(), &mut out, by_len);
            assert!(cache.entries() <= 20, "{}", cache.entries());
            assert_eq!(out, [8 % 4]);
        }
    }

    #[test]
    fn a_name_seen_again_moves_to_the_current_generation() {
        let limit = 4 * (3 + 2 + 12);
        let mut cache = PlacementCache::with_limit(limit);
        let mut out = Vec::new();
        let mut calls = 0;
        let mut place = |cache: &mut PlacementCache, name: &str| {
            cache.place(name.as_bytes(), &mut out, |n, o| {
                calls += 1;
                by_len(n, o)
            })
        };
        // `hot` is asked for between every new name: it must never be placed again.
        place(&mut cache, "hot");
        for i in 0..100 {
            place(&mut cache, &format!("n{i:02}"));
            place(&mut cache, "hot");
        }
        assert_eq!(calls, 101);
    }
    #[test]
    fn more_places_than_kept_are_answered_each_time() {
        let mut cache = PlacementCache::new();
        let mut out = Vec::new();
        let many = |_: &str, o: &mut Vec<usize>| o.extend(0..MAX_PLACES + 1);
        cache.place(b"wide", &mut out, many);
        assert_eq!(out, (0..MAX_PLACES + 1).collect::<Vec<_>>());
        assert_eq!(cache.entries(), 0);
        // Not UTF-8: placed nowhere.
        cache.place(b"\xff", &mut out, |_, o| o.push(1));
        assert!(out.is_empty());
    }
}
