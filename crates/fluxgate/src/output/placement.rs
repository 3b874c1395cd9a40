//! A bounded cache of where metric names were placed in a hashing cluster.
//!
//! `carbon_ch` and the other hashing clusters place a name by hashing it (MD5 for carbon's
//! ring), which costs more than everything else the relay does with a line. A name's place
//! in a hashing cluster depends on the name alone (health is not considered: a down member
//! keeps its points queued), and the same names come back every interval, so the answer is
//! kept. The cache is bounded in bytes: two generations of at most [`GENERATION_BYTES`]
//! each; when the current one is full it becomes the old one and the old one is dropped, and
//! a name found in the old generation moves to the current one. Names sent every interval
//! therefore stay, and a flood of one-off names costs at most two generations of memory.

// Names come from senders: a seeded hash, and a fast one (a lookup per line).
use foldhash::HashMap;

/// Bytes one generation may hold, counting each name and a fixed overhead per entry.
pub(crate) const GENERATION_BYTES: usize = 8 << 20;

/// What an entry costs besides its name: the key's box, the value and the table's slot.
const ENTRY_OVERHEAD: usize = 64;

/// Most destinations one name is cached with (replication factor): held in the entry itself,
/// so a lookup follows no further pointer.
const MAX_PLACES: usize = 4;

/// Destinations of one name, first replica first.
#[derive(Debug, Clone, Copy)]
struct Places {
    len: u8,
    at: [u16; MAX_PLACES],
}

impl Places {
    /// `None` for more than [`MAX_PLACES`] or an index beyond `u16`: not cached.
    fn new(places: &[usize]) -> Option<Self> {
        if places.len() > MAX_PLACES {
            return None;
        }
        let mut at = [0u16; MAX_PLACES];
        for (slot, &i) in at.iter_mut().zip(places) {
            *slot = u16::try_from(i).ok()?;
        }
        Some(Self {
            len: places.len() as u8,
            at,
        })
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.at[..usize::from(self.len)]
            .iter()
            .map(|&i| usize::from(i))
    }
}

#[derive(Debug, Default)]
pub(crate) struct PlacementCache {
    current: HashMap<Box<[u8]>, Places>,
    old: HashMap<Box<[u8]>, Places>,
    current_bytes: usize,
    limit: usize,
}

impl PlacementCache {
    pub(crate) fn new() -> Self {
        Self::with_limit(GENERATION_BYTES)
    }

    pub(crate) fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// The places of `name` into `out` (replacing its contents), computing them with
    /// `place` when the name was not seen before. Names are bytes: a name found needs no
    /// UTF-8 check; `place` gets it as text, and a name that is not UTF-8 is placed nowhere.
    pub(crate) fn place(
        &mut self,
        name: &[u8],
        out: &mut Vec<usize>,
        place: impl FnOnce(&str, &mut Vec<usize>),
    ) {
        out.clear();
        if let Some(found) = self.current.get(name) {
            out.extend(found.iter());
            return;
        }
        let places = match self.old.remove_entry(name) {
            Some((key, places)) => {
                out.extend(places.iter());
                self.insert(key, places);
                return;
            }
            None => {
                let Ok(text) = std::str::from_utf8(name) else {
                    return;
                };
                place(text, out);
                let Some(places) = Places::new(out) else {
                    return;
                };
                places
            }
        };
        self.insert(name.into(), places);
    }

    fn insert(&mut self, key: Box<[u8]>, places: Places) {
        let cost = key.len() + ENTRY_OVERHEAD;
        if self.current_bytes + cost > self.limit {
            self.old = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
        self.current_bytes += cost;
        self.current.insert(key, places);
    }

    /// Names held, both generations.
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.current.len() + self.old.len()
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
        let limit = 10 * (ENTRY_OVERHEAD + 8);
        let mut cache = PlacementCache::with_limit(limit);
        let mut out = Vec::new();
        for i in 0..1000 {
            cache.place(format!("name{i:04}").as_bytes(), &mut out, by_len);
            assert!(cache.entries() <= 20, "{}", cache.entries());
        }
    }

    #[test]
    fn a_name_seen_again_moves_to_the_current_generation() {
        let limit = 4 * (ENTRY_OVERHEAD + 3);
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
}
