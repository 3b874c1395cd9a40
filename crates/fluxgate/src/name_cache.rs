//! A bounded cache of what a metric name maps to, for answers that depend on the name
//! alone and are asked for again every interval: the line-protocol text the graphite
//! templates make of a name before its value (`measurement[,tags] field`), and the
//! destinations a hashing cluster places it on.
//!
//! Entries live back to back in one arena per generation (the name, then its value), so a
//! lookup touches the table's slot and one entry, and an entry costs its bytes plus a few
//! more. Callers that look up several names before using any ([`NameCache::find`]) have the
//! cache misses of those lookups overlap instead of add up. The cache is bounded in bytes:
//! two generations of at most a given size; when the current one is full it becomes the old
//! one and the old one is dropped, and an entry found in the old generation moves to the
//! current one. Names sent every interval therefore stay, and a flood of one-off names costs
//! at most two generations of memory.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// Bytes one generation holds by default (its arena, plus the table's slots).
pub const GENERATION_BYTES: usize = 4 << 20;

/// Bytes in front of each entry: the name's and the value text's lengths.
const HEADER: usize = 4;

/// What a slot of the table costs, counted against the generation's size.
const SLOT_BYTES: usize = 8;

#[derive(Default)]
struct Generation {
    /// Offsets of entries in `arena`.
    table: HashTable<u32>,
    /// `[name length u16][value length u16][name][value]`, entry after entry.
    arena: Vec<u8>,
}

impl Generation {
    fn bytes(&self) -> usize {
        self.arena.len() + self.table.len() * SLOT_BYTES
    }

    fn entry(arena: &[u8], at: u32) -> (&[u8], &[u8]) {
        let at = at as usize;
        let name_len = usize::from(u16::from_le_bytes([arena[at], arena[at + 1]]));
        let value_len = usize::from(u16::from_le_bytes([arena[at + 2], arena[at + 3]]));
        let name = &arena[at + HEADER..at + HEADER + name_len];
        let value = &arena[at + HEADER + name_len..at + HEADER + name_len + value_len];
        (name, value)
    }

    fn find(&self, hash: u64, name: &[u8]) -> Option<u32> {
        self.table
            .find(hash, |&at| Self::entry(&self.arena, at).0 == name)
            .copied()
    }

    fn insert(
        &mut self,
        hash: u64,
        name: &[u8],
        value: &[u8],
        hasher: &impl Fn(&[u8]) -> u64,
        limit: usize,
    ) {
        if self.arena.capacity() == 0 {
            // Once, the most the generation may hold: growing by doubling would copy it and
            // could touch twice the pages the bound allows. Untouched pages cost nothing.
            self.arena.reserve_exact(limit);
        }
        let at = self.arena.len() as u32;
        self.arena
            .extend_from_slice(&(name.len() as u16).to_le_bytes());
        self.arena
            .extend_from_slice(&(value.len() as u16).to_le_bytes());
        self.arena.extend_from_slice(name);
        self.arena.extend_from_slice(value);
        let arena = &self.arena;
        self.table
            .insert_unique(hash, at, |&at| hasher(Self::entry(arena, at).0));
    }
}

/// Name → bytes, bounded in bytes (see the module's doc).
pub struct NameCache {
    current: Generation,
    old: Generation,
    limit: usize,
    hasher: foldhash::fast::RandomState,
    scratch: Vec<u8>,
    epoch: u64,
}

/// An entry of the current generation ([`NameCache::find`]).
#[derive(Clone, Copy, Debug)]
pub struct Found(u32);

impl std::fmt::Debug for NameCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameCache")
            .field("current", &self.current.table.len())
            .field("old", &self.old.table.len())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Default for NameCache {
    fn default() -> Self {
        Self::with_limit(GENERATION_BYTES)
    }
}

impl NameCache {
    pub fn with_limit(limit: usize) -> Self {
        Self {
            current: Generation::default(),
            old: Generation::default(),
            // Offsets are u32.
            limit: limit.min(u32::MAX as usize / 2),
            hasher: foldhash::fast::RandomState::default(),
            scratch: Vec::new(),
            epoch: 0,
        }
    }

    /// Forgets every entry (what the answers depend on changed).
    pub fn clear(&mut self) {
        self.current = Generation::default();
        self.old = Generation::default();
        self.epoch += 1;
    }

    /// Entries held, both generations.
    pub fn len(&self) -> usize {
        self.current.table.len() + self.old.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hash a name is kept under, for [`NameCache::find`] and [`NameCache::get_hashed`].
    #[inline]
    pub fn hash(&self, name: &[u8]) -> u64 {
        self.hasher.hash_one(name)
    }

    /// Where `name` is in the current generation, without moving or making anything: for a
    /// caller that looks up several names before it uses any, so that their memory is
    /// fetched at once instead of one after the other. Valid while [`NameCache::epoch`]
    /// stays the same.
    #[inline]
    pub fn find(&self, hash: u64, name: &[u8]) -> Option<Found> {
        self.current.find(hash, name).map(Found)
    }

    /// The value of an entry [`NameCache::find`] found.
    #[inline]
    pub fn value(&self, found: Found) -> &[u8] {
        Generation::entry(&self.current.arena, found.0).1
    }

    /// Changes whenever a generation is dropped or the cache cleared: what
    /// [`NameCache::find`] answered before is then to be looked up again.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The value of `name`, made by `make` (which appends it to the vector it is given and
    /// says whether it is to be kept) when the name was not seen before. `None` when `make`
    /// said no: nothing is kept, and the caller takes what `make` left (or the way that
    /// reports why there is nothing).
    #[inline]
    pub fn get(&mut self, name: &[u8], make: impl FnOnce(&mut Vec<u8>) -> bool) -> Option<&[u8]> {
        let hash = self.hasher.hash_one(name);
        self.get_hashed(hash, name, make)
    }

    /// [`NameCache::get`] with the name's [`NameCache::hash`].
    pub fn get_hashed(
        &mut self,
        hash: u64,
        name: &[u8],
        make: impl FnOnce(&mut Vec<u8>) -> bool,
    ) -> Option<&[u8]> {
        if let Some(at) = self.current.find(hash, name) {
            return Some(Generation::entry(&self.current.arena, at).1);
        }
        self.scratch.clear();
        match self.old.find(hash, name) {
            Some(at) => {
                let value = Generation::entry(&self.old.arena, at).1;
                self.scratch.extend_from_slice(value);
            }
            None => {
                if !make(&mut self.scratch) {
                    return None;
                }
            }
        }
        let value = std::mem::take(&mut self.scratch);
        let fits = name.len() <= usize::from(u16::MAX) && value.len() <= usize::from(u16::MAX);
        if !fits {
            self.scratch = value;
            return Some(&self.scratch);
        }
        let cost = HEADER + name.len() + value.len() + SLOT_BYTES;
        if self.current.bytes() + cost > self.limit {
            self.old = std::mem::take(&mut self.current);
            self.epoch += 1;
        }
        let hasher = self.hasher.clone();
        self.current.insert(
            hash,
            name,
            &value,
            &|n: &[u8]| hasher.hash_one(n),
            self.limit,
        );
        self.scratch = value;
        Some(&self.scratch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_upper(name: &[u8]) -> impl FnOnce(&mut Vec<u8>) -> bool + '_ {
        move |out: &mut Vec<u8>| {
            out.extend(name.iter().map(u8::to_ascii_uppercase));
            true
        }
    }

    #[test]
    fn a_name_is_made_once_and_found_after() {
        let mut cache = NameCache::default();
        let mut made = 0;
        for _ in 0..3 {
            let got = cache.get(b"a.b", |out| {
                made += 1;
                out.extend_from_slice(b"b,x=a value");
                true
            });
            assert_eq!(got, Some(&b"b,x=a value"[..]));
        }
        assert_eq!(made, 1);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_refused_name_is_not_kept() {
        let mut cache = NameCache::default();
        assert_eq!(cache.get(b"bad", |_| false), None);
        assert!(cache.is_empty());
        assert_eq!(cache.get(b"bad", make_upper(b"bad")), Some(&b"BAD"[..]));
    }

    #[test]
    fn memory_stays_within_two_generations_and_recent_names_stay() {
        let limit = 4096;
        let mut cache = NameCache::with_limit(limit);
        for i in 0..10_000u32 {
            let name = format!("servers.host{i}.cpu");
            let got = cache
                .get(name.as_bytes(), make_upper(name.as_bytes()))
                .unwrap();
            assert_eq!(got, name.to_ascii_uppercase().as_bytes());
            assert!(cache.current.bytes() <= limit && cache.old.bytes() <= limit);
        }
        // The last names are still there, and found without making them again.
        let name = b"servers.host9999.cpu";
        assert_eq!(
            cache.get(name, |_| panic!("made again")),
            Some(&b"SERVERS.HOST9999.CPU"[..])
        );
    }

    #[test]
    fn a_name_in_the_old_generation_moves_to_the_current_one() {
        let mut cache = NameCache::with_limit(80);
        cache.get(b"first", make_upper(b"first")).unwrap();
        // The third entry does not fit: `first` and `second...` are now the old generation.
        cache
            .get(b"second.name.long", make_upper(b"second.name.long"))
            .unwrap();
        cache
            .get(b"third.name.long.", make_upper(b"third.name.long."))
            .unwrap();
        assert!(cache
            .old
            .find(cache.hasher.hash_one(b"first"), b"first")
            .is_some());
        assert_eq!(
            cache.get(b"first", |_| panic!("made again")),
            Some(&b"FIRST"[..])
        );
        let hash = cache.hasher.hash_one(b"first");
        assert!(cache.current.find(hash, b"first").is_some());
    }

    #[test]
    fn a_name_too_long_for_an_entry_is_made_every_time() {
        let mut cache = NameCache::default();
        let name = vec![b'a'; 70_000];
        assert_eq!(
            cache.get(&name, make_upper(&name)).map(<[u8]>::len),
            Some(70_000)
        );
        assert!(cache.is_empty());
    }
}
