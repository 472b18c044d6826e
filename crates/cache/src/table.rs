//! The cache's index: which entries exist, how big they are, which are in
//! use, and in what order they were used.
//!
//! A pure structure, in the spirit of Quickwit's split table: it touches no
//! file and holds no lock of its own. Whatever it decides to drop comes
//! back as [`Removal`]s for the caller to delete once it has released its
//! lock; until the caller reports [`CacheTable::removed`], the key stays
//! *removing*, and callers must not move a new download of that key into
//! place (see [`CacheTable::is_removing`]), so a late delete can never take
//! a fresh entry's files with it.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Files the caller must delete (outside its lock), then report with
/// [`CacheTable::removed`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a removal's files must be deleted and reported"]
pub(crate) struct Removal {
    /// The entry's object key: its data file and sidecar go.
    pub key: String,
}

/// A cached entry found by [`CacheTable::pin`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    /// The entry's id (see [`Entry::id`]).
    pub id: u64,
    /// Its size.
    pub size: u64,
    /// The SHA-256 of its data.
    pub sha256: String,
    /// Whether the data was hashed since the cache was opened.
    pub verified: bool,
}

/// One entry.
#[derive(Debug)]
struct Entry {
    /// Distinguishes this entry from a later one with the same key, so a
    /// stale guard cannot unpin the new one.
    id: u64,
    size: u64,
    sha256: String,
    pins: usize,
    last_used: u64,
    verified: bool,
}

/// The index of a cache directory.
#[derive(Debug, Default)]
pub(crate) struct CacheTable {
    entries: HashMap<String, Entry>,
    /// Entries by last use (oldest first): `Entry::last_used` → key.
    lru: BTreeMap<u64, String>,
    clock: u64,
    next_id: u64,
    stored_bytes: u64,
    /// Space promised to downloads in flight.
    reserved_bytes: u64,
    /// Keys whose files are being deleted.
    removing: HashSet<String>,
    added: HashMap<String, u64>,
    evicted: HashSet<String>,
}

impl CacheTable {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Pins the entry for `key` and marks it used, if it exists.
    pub fn pin(&mut self, key: &str) -> Option<Hit> {
        let now = self.tick();
        let entry = self.entries.get_mut(key)?;
        entry.pins += 1;
        self.lru.remove(&entry.last_used);
        entry.last_used = now;
        self.lru.insert(now, key.to_string());
        Some(Hit {
            id: entry.id,
            size: entry.size,
            sha256: entry.sha256.clone(),
            verified: entry.verified,
        })
    }

    /// Drops one pin of entry `id` of `key`; returns what no longer fits
    /// once it is unpinned.
    pub fn unpin(&mut self, key: &str, id: u64, max_bytes: u64) -> Vec<Removal> {
        let Some(entry) = self.entries.get_mut(key).filter(|e| e.id == id) else {
            return Vec::new();
        };
        entry.pins -= 1;
        if entry.pins == 0 {
            self.evict_to_fit(max_bytes)
        } else {
            Vec::new()
        }
    }

    /// Whether `key`'s files are being deleted: nothing new may be moved
    /// into place for it until [`CacheTable::removed`].
    pub fn is_removing(&self, key: &str) -> bool {
        self.removing.contains(key)
    }

    /// The caller deleted the files of a [`Removal`].
    pub fn removed(&mut self, key: &str) {
        self.removing.remove(key);
    }

    /// Promises `size` bytes to a download; returns what must go to make
    /// room.
    pub fn reserve(&mut self, size: u64, max_bytes: u64) -> Vec<Removal> {
        self.reserved_bytes += size;
        self.evict_to_fit(max_bytes)
    }

    /// Takes back a promise made by [`CacheTable::reserve`].
    pub fn release(&mut self, size: u64) {
        self.reserved_bytes -= size;
    }

    /// Indexes a complete entry, pinned `pins` times; returns its id and
    /// what no longer fits.
    pub fn insert(
        &mut self,
        key: &str,
        size: u64,
        sha256: String,
        verified: bool,
        pins: usize,
        max_bytes: u64,
    ) -> (u64, Vec<Removal>) {
        let now = self.tick();
        self.next_id += 1;
        let id = self.next_id;
        self.entries.insert(
            key.to_string(),
            Entry {
                id,
                size,
                sha256,
                pins,
                last_used: now,
                verified,
            },
        );
        self.lru.insert(now, key.to_string());
        self.stored_bytes += size;
        self.evicted.remove(key);
        self.added.insert(key.to_string(), size);
        (id, self.evict_to_fit(max_bytes))
    }

    /// Records that entry `id` of `key` was hashed and found intact.
    pub fn mark_verified(&mut self, key: &str, id: u64) {
        if let Some(entry) = self.entries.get_mut(key).filter(|e| e.id == id) {
            entry.verified = true;
        }
    }

    /// Drops entry `id` of `key` (found damaged), pinned or not.
    pub fn discard(&mut self, key: &str, id: u64) -> Option<Removal> {
        if self.entries.get(key).is_some_and(|e| e.id == id) {
            self.remove(key)
        } else {
            None
        }
    }

    fn remove(&mut self, key: &str) -> Option<Removal> {
        let entry = self.entries.remove(key)?;
        self.lru.remove(&entry.last_used);
        self.stored_bytes -= entry.size;
        self.added.remove(key);
        self.evicted.insert(key.to_string());
        self.removing.insert(key.to_string());
        Some(Removal {
            key: key.to_string(),
        })
    }

    /// Evicts unpinned entries, least recently used first, until stored and
    /// reserved bytes fit in `max_bytes` or only pinned entries are left.
    pub fn evict_to_fit(&mut self, max_bytes: u64) -> Vec<Removal> {
        let mut removals = Vec::new();
        while self.stored_bytes + self.reserved_bytes > max_bytes {
            let victim = self
                .lru
                .values()
                .find(|key| self.entries.get(*key).is_some_and(|e| e.pins == 0))
                .cloned();
            let Some(key) = victim else {
                tracing::debug!(
                    stored = self.stored_bytes,
                    reserved = self.reserved_bytes,
                    max_bytes,
                    "shard cache over budget: every entry is in use"
                );
                break;
            };
            tracing::debug!(object_key = %key, "evicting from the shard cache");
            removals.extend(self.remove(&key));
        }
        removals
    }

    /// Whether `key` is indexed.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Every entry's key and size.
    pub fn inventory(&self) -> impl Iterator<Item = (&str, u64)> {
        self.entries.iter().map(|(k, e)| (k.as_str(), e.size))
    }

    /// Keys added (with their sizes) and evicted since the previous call;
    /// the two never share a key.
    pub fn take_delta(&mut self) -> (HashMap<String, u64>, HashSet<String>) {
        (
            std::mem::take(&mut self.added),
            std::mem::take(&mut self.evicted),
        )
    }

    /// Entries, stored bytes and pinned entries.
    pub fn usage(&self) -> (usize, u64, usize) {
        (
            self.entries.len(),
            self.stored_bytes,
            self.entries.values().filter(|e| e.pins > 0).count(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_returns_what_to_delete_and_keeps_the_key_removing() {
        let mut table = CacheTable::default();
        let (a, none) = table.insert("a", 60, "x".into(), true, 0, 100);
        assert!(none.is_empty());
        let (_, removals) = table.insert("b", 60, "y".into(), true, 1, 100);
        assert_eq!(removals, vec![Removal { key: "a".into() }]);
        assert!(table.is_removing("a"));
        assert!(!table.contains("a"));
        // A stale id changes nothing.
        assert!(table.unpin("a", a, 100).is_empty());
        table.removed("a");
        assert!(!table.is_removing("a"));
        assert_eq!(table.usage(), (1, 60, 1));
    }

    #[test]
    fn pinned_entries_stay_until_unpinned() {
        let mut table = CacheTable::default();
        let (a, _) = table.insert("a", 80, "x".into(), true, 1, 100);
        let (b, removals) = table.insert("b", 80, "y".into(), true, 1, 100);
        assert!(removals.is_empty(), "both pinned: over budget instead");
        assert_eq!(table.unpin("b", b, 100), vec![Removal { key: "b".into() }]);
        assert!(table.unpin("a", a, 100).is_empty());
    }
}
