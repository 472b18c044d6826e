//! The cache's index: which objects have which blocks, which blocks are in
//! use, in what order they were used, and what is being fetched or removed.
//!
//! A pure structure, in the spirit of Quickwit's split table: it touches no
//! file, holds no lock and knows no clock. Whatever it decides to drop
//! comes back as [`Removal`]s for the caller to carry out once it has
//! released its lock. Until the caller reports a removal done
//! ([`CacheTable::block_removed`], [`CacheTable::entry_removed`]), the block
//! stays *punching* (or the entry *deleting*), and no reader may pin it or
//! write into it ([`Acquire::Busy`]), so a late delete can never take fresh
//! data with it.
//!
//! Objects are cached in fixed blocks ([`Geometry`]) of one sparse data
//! file each. A reader asks for a byte range; the table pins every block
//! the range touches and says, block by block, what the reader must do
//! ([`Need`]): use it, wait for the fetch under way, fetch it itself, or,
//! for a block it reads only a small part of, fetch just that part (a
//! fragment: the few bytes of a line that runs into the next chunk) without
//! caching the block.

use quarry_proto::{ByteRange, CacheEntry};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::time::SystemTime;

/// Identifies an entry (one object version) for as long as it is indexed.
pub(crate) type EntryId = u64;
/// Identifies one fetch of one block.
pub(crate) type OpId = u64;

/// How an object is cut into blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// The object's size.
    pub size: u64,
    /// Bytes per block (the last block may be shorter).
    pub block_size: u64,
}

impl Geometry {
    /// How many blocks the object has.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(self.block_size.max(1))
    }

    /// The bytes of block `index`.
    pub fn block_range(&self, index: u64) -> Range<u64> {
        let start = index * self.block_size;
        start..(start + self.block_size).min(self.size)
    }

    /// The blocks that `range` touches.
    pub fn blocks_of(&self, range: &Range<u64>) -> Range<u64> {
        if range.is_empty() {
            return 0..0;
        }
        let block = self.block_size.max(1);
        range.start / block..range.end.div_ceil(block).min(self.blocks())
    }
}

/// Something the caller must remove from disk (outside its lock), then
/// report.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a removal must be carried out and reported"]
pub(crate) enum Removal {
    /// Delete the block's sidecar and punch its bytes out of the data file;
    /// then [`CacheTable::block_removed`].
    Block {
        /// The entry.
        entry: EntryId,
        /// Its object key (names its files).
        key: String,
        /// The block.
        index: u64,
        /// Its bytes in the data file.
        range: Range<u64>,
    },
    /// Delete the entry's files; then [`CacheTable::entry_removed`].
    Entry {
        /// The entry.
        entry: EntryId,
        /// Its object key (names its files).
        key: String,
    },
}

/// What a reader must do about one block it pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// The block is cached; hash it first when `verify` (it was not
    /// verified since the cache opened, its file was modified, or every
    /// hit is verified).
    Cached {
        /// The block.
        index: u64,
        /// Whether to check its checksum before use.
        verify: bool,
    },
    /// Another reader is fetching it: wait for fetch `op`.
    Join {
        /// The block.
        index: u64,
        /// The fetch.
        op: OpId,
    },
    /// Fetch it, then report with [`CacheTable::fetched`] or
    /// [`CacheTable::fetch_failed`].
    Lead {
        /// The block.
        index: u64,
        /// The fetch.
        op: OpId,
    },
    /// Fetch only `range` of it, uncached: the reader needs less than half
    /// of the block.
    Fragment {
        /// The block.
        index: u64,
        /// The bytes to fetch.
        range: Range<u64>,
    },
}

/// Why an entry's present blocks were no longer trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FileDamage {
    /// The data file is gone or has the wrong size: its blocks were dropped.
    Size {
        /// Bytes expected.
        expected: u64,
        /// Bytes found (`None`: no file).
        actual: Option<u64>,
    },
    /// The data file was modified by someone else: every block is hashed
    /// before its next use.
    Modified,
}

/// The answer to [`CacheTable::acquire`].
#[derive(Debug)]
pub(crate) enum Acquire {
    /// The range's blocks (and the entry) are pinned.
    Pinned(Pinned),
    /// The entry, or a block of the range, is being removed: wait for a
    /// removal to finish and ask again.
    Busy,
}

/// Pins taken by [`CacheTable::acquire`].
#[derive(Debug)]
pub(crate) struct Pinned {
    /// The entry.
    pub entry: EntryId,
    /// How its object is cut (set when the entry was created).
    pub geometry: Geometry,
    /// The pinned blocks; give them back with [`CacheTable::unpin`].
    pub blocks: Range<u64>,
    /// What to do about each block.
    pub needs: Vec<Need>,
    /// What no longer fits once the fetches are reserved.
    pub removals: Vec<Removal>,
    /// Why cached blocks were dropped or must be verified, if they were.
    pub damage: Option<FileDamage>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlockState {
    Absent,
    Fetching(OpId),
    Present,
    Punching,
}

#[derive(Debug)]
struct Block {
    state: BlockState,
    pins: u32,
    /// When it was last used (its key in the LRU), while present.
    last_used: u64,
    sha256: String,
    /// Whether its data was hashed since it was last trusted blindly.
    verified: bool,
}

#[derive(Debug)]
struct Entry {
    key: String,
    geometry: Geometry,
    /// Blocks that are not absent, or are pinned.
    blocks: BTreeMap<u64, Block>,
    /// Acquisitions holding the entry.
    pins: u64,
    deleting: bool,
    /// Writes into the data file under way.
    writes: u32,
    /// The data file's modification time after the last write, while no
    /// write is under way; `None` when unknown.
    expected_mtime: Option<SystemTime>,
}

impl Entry {
    fn is_idle(&self) -> bool {
        self.pins == 0 && self.blocks.is_empty() && self.writes == 0
    }
}

/// The index of a cache directory.
#[derive(Debug, Default)]
pub(crate) struct CacheTable {
    keys: HashMap<String, EntryId>,
    entries: HashMap<EntryId, Entry>,
    /// Present blocks by last use (oldest first).
    lru: BTreeMap<u64, (EntryId, u64)>,
    clock: u64,
    next_id: u64,
    stored_bytes: u64,
    /// Space promised to fetches under way.
    reserved_bytes: u64,
    added: HashMap<String, BTreeMap<u64, ByteRange>>,
    evicted: HashMap<String, BTreeMap<u64, ByteRange>>,
    /// Blocks evicted to make room, ever.
    evicted_blocks: u64,
    /// Bytes of blocks fetched into the cache, ever.
    fetched_bytes: u64,
}

fn byte_range(range: Range<u64>) -> ByteRange {
    ByteRange {
        start: range.start,
        end: range.end,
    }
}

/// Ranges of consecutive blocks, merged.
fn merged(blocks: &BTreeMap<u64, ByteRange>) -> Vec<ByteRange> {
    let mut ranges: Vec<ByteRange> = Vec::new();
    for range in blocks.values() {
        match ranges.last_mut() {
            Some(last) if last.end == range.start => last.end = range.end,
            _ => ranges.push(*range),
        }
    }
    ranges
}

impl CacheTable {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn next(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn entry_id(&mut self, key: &str, geometry: Geometry) -> EntryId {
        if let Some(&id) = self.keys.get(key) {
            return id;
        }
        let id = self.next();
        self.keys.insert(key.to_string(), id);
        self.entries.insert(
            id,
            Entry {
                key: key.to_string(),
                geometry,
                blocks: BTreeMap::new(),
                pins: 0,
                deleting: false,
                writes: 0,
                expected_mtime: None,
            },
        );
        id
    }

    /// Indexes blocks found on disk at open, unverified, oldest first in
    /// LRU order as given.
    pub fn restore(
        &mut self,
        key: &str,
        geometry: Geometry,
        blocks: Vec<(u64, String)>,
        modified: SystemTime,
    ) {
        let id = self.entry_id(key, geometry);
        for (index, sha256) in blocks {
            let now = self.tick();
            let len = geometry.block_range(index).end - geometry.block_range(index).start;
            let entry = self.entries.get_mut(&id).expect("just indexed");
            entry.blocks.insert(
                index,
                Block {
                    state: BlockState::Present,
                    pins: 0,
                    last_used: now,
                    sha256,
                    verified: false,
                },
            );
            self.lru.insert(now, (id, index));
            self.stored_bytes += len;
        }
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.expected_mtime = Some(modified);
        }
    }

    /// Pins the blocks `range` of object `key` touches (creating its entry
    /// with `geometry` if needed) and says what to do about each.
    ///
    /// `file` is what the data file looks like now (its size and
    /// modification time, `None` if it is missing); `verify_all` asks for
    /// every cached block to be hashed before use.
    pub fn acquire(
        &mut self,
        key: &str,
        geometry: Geometry,
        range: Range<u64>,
        file: Option<(u64, SystemTime)>,
        verify_all: bool,
        max_bytes: u64,
    ) -> Acquire {
        if let Some(&id) = self.keys.get(key) {
            let entry = &self.entries[&id];
            let geometry = entry.geometry;
            if entry.deleting
                || geometry.blocks_of(&range).any(|i| {
                    entry
                        .blocks
                        .get(&i)
                        .is_some_and(|b| b.state == BlockState::Punching)
                })
            {
                return Acquire::Busy;
            }
        }
        let id = self.entry_id(key, geometry);
        let geometry = self.entries[&id].geometry;
        let damage = self.check_file(id, file);
        let blocks = geometry.blocks_of(&range);
        let mut needs = Vec::with_capacity(blocks.clone().count());
        let mut reserved = false;
        self.entries.get_mut(&id).expect("indexed").pins += 1;
        for index in blocks.clone() {
            let now = self.tick();
            let block_range = geometry.block_range(index);
            let covered = range.start.max(block_range.start)..range.end.min(block_range.end);
            let block_len = block_range.end - block_range.start;
            let entry = self.entries.get_mut(&id).expect("indexed");
            let block = entry.blocks.entry(index).or_insert(Block {
                state: BlockState::Absent,
                pins: 0,
                last_used: 0,
                sha256: String::new(),
                verified: false,
            });
            block.pins += 1;
            let need = match block.state {
                BlockState::Present => {
                    self.lru.remove(&block.last_used);
                    block.last_used = now;
                    self.lru.insert(now, (id, index));
                    Need::Cached {
                        index,
                        verify: verify_all || !block.verified,
                    }
                }
                BlockState::Fetching(op) => Need::Join { index, op },
                BlockState::Absent if (covered.end - covered.start) * 2 < block_len => {
                    Need::Fragment {
                        index,
                        range: covered,
                    }
                }
                BlockState::Absent => {
                    let op = self.next_id + 1;
                    self.next_id = op;
                    block.state = BlockState::Fetching(op);
                    self.reserved_bytes += block_len;
                    reserved = true;
                    Need::Lead { index, op }
                }
                BlockState::Punching => unreachable!("checked above"),
            };
            needs.push(need);
        }
        let removals = if reserved {
            self.evict_to_fit(max_bytes)
        } else {
            Vec::new()
        };
        Acquire::Pinned(Pinned {
            entry: id,
            geometry,
            blocks,
            needs,
            removals,
            damage,
        })
    }

    /// Compares the data file with what the entry expects: a missing file
    /// or a wrong size drops every cached block; a modification time that
    /// changed while no write of ours was under way makes every block
    /// unverified.
    fn check_file(&mut self, id: EntryId, file: Option<(u64, SystemTime)>) -> Option<FileDamage> {
        let entry = self.entries.get_mut(&id)?;
        let has_present = entry
            .blocks
            .values()
            .any(|b| b.state == BlockState::Present);
        if !has_present {
            return None;
        }
        let size = entry.geometry.size;
        match file {
            Some((len, _)) if len != size => {}
            None => {}
            Some((_, modified)) => {
                if entry.writes == 0 && entry.expected_mtime.is_some_and(|e| e != modified) {
                    entry.expected_mtime = Some(modified);
                    for block in entry.blocks.values_mut() {
                        block.verified = false;
                    }
                    return Some(FileDamage::Modified);
                }
                return None;
            }
        }
        let present: Vec<u64> = entry
            .blocks
            .iter()
            .filter(|(_, b)| b.state == BlockState::Present)
            .map(|(&i, _)| i)
            .collect();
        for index in present {
            self.drop_present(id, index);
        }
        Some(FileDamage::Size {
            expected: size,
            actual: file.map(|(len, _)| len),
        })
    }

    /// A present block stops counting as cached (its state is the caller's
    /// to set next).
    fn drop_present(&mut self, id: EntryId, index: u64) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let Some(block) = entry.blocks.get_mut(&index) else {
            return;
        };
        let range = entry.geometry.block_range(index);
        self.lru.remove(&block.last_used);
        block.state = BlockState::Absent;
        self.stored_bytes -= range.end - range.start;
        let key = entry.key.clone();
        if let Some(added) = self.added.get_mut(&key) {
            added.remove(&index);
        }
        self.evicted
            .entry(key)
            .or_default()
            .insert(index, byte_range(range));
    }

    /// A pinned block that was found damaged is fetched again by the
    /// caller: returns the fetch to lead.
    pub fn refetch(&mut self, id: EntryId, index: u64) -> Option<OpId> {
        let present = self
            .entries
            .get(&id)?
            .blocks
            .get(&index)
            .is_some_and(|b| b.state == BlockState::Present);
        if present {
            self.drop_present(id, index);
        }
        let op = self.next();
        let entry = self.entries.get_mut(&id)?;
        let block = entry.blocks.get_mut(&index)?;
        if block.state != BlockState::Absent {
            return None;
        }
        block.state = BlockState::Fetching(op);
        let range = entry.geometry.block_range(index);
        self.reserved_bytes += range.end - range.start;
        Some(op)
    }

    /// The checksum recorded for a block.
    pub fn block_sha(&self, id: EntryId, index: u64) -> Option<String> {
        let block = self.entries.get(&id)?.blocks.get(&index)?;
        Some(block.sha256.clone())
    }

    /// A cached block was hashed and found intact.
    pub fn verified(&mut self, id: EntryId, index: u64) {
        if let Some(block) = self
            .entries
            .get_mut(&id)
            .and_then(|e| e.blocks.get_mut(&index))
        {
            block.verified = true;
        }
    }

    /// Fetch `op` of block `index` is complete and its sidecar written;
    /// returns what no longer fits.
    pub fn fetched(
        &mut self,
        id: EntryId,
        index: u64,
        op: OpId,
        sha256: String,
        max_bytes: u64,
    ) -> Vec<Removal> {
        let now = self.tick();
        let Some(entry) = self.entries.get_mut(&id) else {
            return Vec::new();
        };
        let range = entry.geometry.block_range(index);
        let Some(block) = entry
            .blocks
            .get_mut(&index)
            .filter(|b| b.state == BlockState::Fetching(op))
        else {
            return Vec::new();
        };
        block.state = BlockState::Present;
        block.sha256 = sha256;
        block.verified = true;
        block.last_used = now;
        let len = range.end - range.start;
        self.lru.insert(now, (id, index));
        self.reserved_bytes -= len;
        self.stored_bytes += len;
        self.fetched_bytes += len;
        let key = entry.key.clone();
        if let Some(evicted) = self.evicted.get_mut(&key) {
            evicted.remove(&index);
        }
        self.added
            .entry(key)
            .or_default()
            .insert(index, byte_range(range));
        self.evict_to_fit(max_bytes)
    }

    /// Fetch `op` of block `index` failed: the block is absent again.
    pub fn fetch_failed(&mut self, id: EntryId, index: u64, op: OpId) -> Vec<Removal> {
        let Some(entry) = self.entries.get_mut(&id) else {
            return Vec::new();
        };
        let range = entry.geometry.block_range(index);
        if let Some(block) = entry
            .blocks
            .get_mut(&index)
            .filter(|b| b.state == BlockState::Fetching(op))
        {
            block.state = BlockState::Absent;
            self.reserved_bytes -= range.end - range.start;
        }
        self.tidy(id, index).into_iter().collect()
    }

    /// Drops an absent, unpinned block's slot; deletes the entry once
    /// nothing of it is left.
    fn tidy(&mut self, id: EntryId, index: u64) -> Option<Removal> {
        let entry = self.entries.get_mut(&id)?;
        if entry
            .blocks
            .get(&index)
            .is_some_and(|b| b.state == BlockState::Absent && b.pins == 0)
        {
            entry.blocks.remove(&index);
        }
        if entry.is_idle() && !entry.deleting {
            entry.deleting = true;
            return Some(Removal::Entry {
                entry: id,
                key: entry.key.clone(),
            });
        }
        None
    }

    /// Gives back what [`CacheTable::acquire`] pinned; returns what no
    /// longer fits (or is no longer used at all).
    pub fn unpin(&mut self, id: EntryId, blocks: Range<u64>, max_bytes: u64) -> Vec<Removal> {
        let mut removals = Vec::new();
        let Some(entry) = self.entries.get_mut(&id) else {
            return removals;
        };
        entry.pins -= 1;
        for index in blocks.clone() {
            if let Some(block) = entry.blocks.get_mut(&index) {
                block.pins -= 1;
            }
        }
        for index in blocks {
            removals.extend(self.tidy(id, index));
        }
        // An acquisition without blocks (an empty read) pinned the entry
        // alone.
        removals.extend(self.tidy(id, u64::MAX));
        removals.extend(self.evict_to_fit(max_bytes));
        removals
    }

    /// A write into the entry's data file begins.
    pub fn begin_write(&mut self, id: EntryId) {
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.writes += 1;
            entry.expected_mtime = None;
        }
    }

    /// A write into the entry's data file ended; `modified` is the file's
    /// modification time right after it (`None` if unknown). Returns what
    /// is no longer used.
    pub fn end_write(&mut self, id: EntryId, modified: Option<SystemTime>) -> Vec<Removal> {
        let Some(entry) = self.entries.get_mut(&id) else {
            return Vec::new();
        };
        entry.writes -= 1;
        if entry.writes == 0 {
            entry.expected_mtime = modified;
        }
        self.tidy(id, u64::MAX).into_iter().collect()
    }

    /// Evicts unpinned present blocks, least recently used first, until
    /// stored and reserved bytes fit in `max_bytes` or only pinned blocks
    /// are left.
    pub fn evict_to_fit(&mut self, max_bytes: u64) -> Vec<Removal> {
        let mut removals = Vec::new();
        while self.stored_bytes + self.reserved_bytes > max_bytes {
            let victim = self.lru.values().copied().find(|(id, index)| {
                self.entries[id]
                    .blocks
                    .get(index)
                    .is_some_and(|b| b.pins == 0)
            });
            let Some((id, index)) = victim else {
                tracing::debug!(
                    stored = self.stored_bytes,
                    reserved = self.reserved_bytes,
                    max_bytes,
                    "shard cache over budget: every block is in use"
                );
                break;
            };
            self.drop_present(id, index);
            self.evicted_blocks += 1;
            let entry = self.entries.get_mut(&id).expect("indexed");
            if let Some(block) = entry.blocks.get_mut(&index) {
                block.state = BlockState::Punching;
            }
            tracing::debug!(object_key = %entry.key, block = index, "evicting from the shard cache");
            removals.push(Removal::Block {
                entry: id,
                key: entry.key.clone(),
                index,
                range: entry.geometry.block_range(index),
            });
        }
        removals
    }

    /// The caller removed a block's sidecar and bytes.
    pub fn block_removed(&mut self, id: EntryId, index: u64) -> Vec<Removal> {
        if let Some(block) = self
            .entries
            .get_mut(&id)
            .and_then(|e| e.blocks.get_mut(&index))
            .filter(|b| b.state == BlockState::Punching)
        {
            block.state = BlockState::Absent;
        }
        self.tidy(id, index).into_iter().collect()
    }

    /// The caller deleted an entry's files.
    pub fn entry_removed(&mut self, id: EntryId) {
        if let Some(entry) = self.entries.remove(&id) {
            self.keys.remove(&entry.key);
        }
    }

    /// Whether any block of `key` is cached.
    pub fn contains(&self, key: &str) -> bool {
        self.keys.get(key).is_some_and(|id| {
            self.entries[id]
                .blocks
                .values()
                .any(|b| b.state == BlockState::Present)
        })
    }

    /// Every object with cached blocks, and the byte ranges they hold.
    pub fn inventory(&self) -> Vec<CacheEntry> {
        self.entries
            .values()
            .filter_map(|entry| {
                let present: BTreeMap<u64, ByteRange> = entry
                    .blocks
                    .iter()
                    .filter(|(_, b)| b.state == BlockState::Present)
                    .map(|(&i, _)| (i, byte_range(entry.geometry.block_range(i))))
                    .collect();
                (!present.is_empty()).then(|| CacheEntry {
                    object_key: entry.key.clone(),
                    ranges: merged(&present),
                })
            })
            .collect()
    }

    /// Blocks added and evicted since the previous call, as byte ranges per
    /// object. A block is in at most one of the two: added then evicted
    /// shows as evicted, evicted then added as added.
    pub fn take_delta(&mut self) -> (Vec<CacheEntry>, Vec<CacheEntry>) {
        let entries = |map: HashMap<String, BTreeMap<u64, ByteRange>>| {
            map.into_iter()
                .filter(|(_, blocks)| !blocks.is_empty())
                .map(|(object_key, blocks)| CacheEntry {
                    object_key,
                    ranges: merged(&blocks),
                })
                .collect()
        };
        (
            entries(std::mem::take(&mut self.added)),
            entries(std::mem::take(&mut self.evicted)),
        )
    }

    /// Objects with cached blocks, cached bytes, and objects in use.
    /// Blocks evicted to make room and bytes of blocks fetched, since the
    /// table was made.
    pub fn counters(&self) -> (u64, u64) {
        (self.evicted_blocks, self.fetched_bytes)
    }

    pub fn usage(&self) -> (usize, u64, usize) {
        let cached = self
            .entries
            .values()
            .filter(|e| e.blocks.values().any(|b| b.state == BlockState::Present))
            .count();
        let pinned = self.entries.values().filter(|e| e.pins > 0).count();
        (cached, self.stored_bytes, pinned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn geometry(size: u64) -> Geometry {
        Geometry {
            size,
            block_size: 8 * MB,
        }
    }

    fn pinned(acquire: Acquire) -> Pinned {
        match acquire {
            Acquire::Pinned(pinned) => pinned,
            Acquire::Busy => panic!("busy"),
        }
    }

    fn leads(p: &Pinned) -> Vec<(u64, OpId)> {
        p.needs
            .iter()
            .filter_map(|n| match n {
                Need::Lead { index, op } => Some((*index, *op)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn geometry_cuts_blocks() {
        let g = geometry(20 * MB);
        assert_eq!(g.blocks(), 3);
        assert_eq!(g.block_range(2), 16 * MB..20 * MB);
        assert_eq!(g.blocks_of(&(0..20 * MB)), 0..3);
        assert_eq!(g.blocks_of(&(8 * MB..8 * MB + 1)), 1..2);
        assert_eq!(g.blocks_of(&(5..5)), 0..0);
    }

    #[test]
    fn a_chunk_leads_its_blocks_and_fetches_a_small_tail_as_a_fragment() {
        let mut table = CacheTable::default();
        // A line-aligned chunk: starts just past block 1's start, ends a few
        // bytes into block 3.
        let chunk = 8 * MB + 10..24 * MB + 100;
        let p = pinned(table.acquire("k", geometry(64 * MB), chunk, None, false, u64::MAX));
        assert_eq!(p.blocks, 1..4);
        assert_eq!(leads(&p).iter().map(|l| l.0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(
            p.needs[2],
            Need::Fragment {
                index: 3,
                range: 24 * MB..24 * MB + 100
            }
        );
        // A second reader of the same blocks joins the fetches.
        let q = pinned(table.acquire(
            "k",
            geometry(64 * MB),
            8 * MB..16 * MB,
            None,
            false,
            u64::MAX,
        ));
        assert!(matches!(q.needs[0], Need::Join { index: 1, .. }));
        for (index, op) in leads(&p) {
            assert!(table
                .fetched(p.entry, index, op, "h".into(), u64::MAX)
                .is_empty());
        }
        let (added, evicted) = table.take_delta();
        assert_eq!(added.len(), 1);
        assert_eq!(
            added[0].ranges,
            [ByteRange {
                start: 8 * MB,
                end: 24 * MB
            }]
        );
        assert!(evicted.is_empty());
        assert_eq!(table.usage(), (1, 16 * MB, 1));
        assert!(table.unpin(q.entry, q.blocks, u64::MAX).is_empty());
        assert!(table.unpin(p.entry, p.blocks, u64::MAX).is_empty());
        let file = Some((64 * MB, SystemTime::UNIX_EPOCH));
        let r = pinned(table.acquire(
            "k",
            geometry(64 * MB),
            8 * MB..16 * MB,
            file,
            false,
            u64::MAX,
        ));
        assert_eq!(
            r.needs,
            [Need::Cached {
                index: 1,
                verify: false
            }]
        );
    }

    #[test]
    fn eviction_punches_the_least_recently_used_unpinned_blocks() {
        let mut table = CacheTable::default();
        let g = geometry(32 * MB);
        let p = pinned(table.acquire("k", g, 0..32 * MB, None, false, 16 * MB));
        // Four blocks reserved in a 16 MiB cache: nothing to evict yet.
        assert!(p.removals.is_empty());
        let mut removals = Vec::new();
        for (index, op) in leads(&p) {
            removals.extend(table.fetched(p.entry, index, op, "h".into(), 16 * MB));
        }
        assert!(removals.is_empty(), "all pinned: over budget instead");
        removals = table.unpin(p.entry, p.blocks, 16 * MB);
        let punched: Vec<u64> = removals
            .iter()
            .map(|r| match r {
                Removal::Block { index, .. } => *index,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(punched, [0, 1]);
        // A reader of a punching block must wait.
        assert!(matches!(
            table.acquire("k", g, 0..1, None, false, 16 * MB),
            Acquire::Busy
        ));
        for index in punched {
            assert!(table.block_removed(p.entry, index).is_empty());
        }
        let (_, evicted) = table.take_delta();
        assert_eq!(
            evicted[0].ranges,
            [ByteRange {
                start: 0,
                end: 16 * MB
            }]
        );
        assert_eq!(table.usage(), (1, 16 * MB, 0));
    }

    #[test]
    fn an_entry_with_nothing_left_is_deleted_and_busy_until_then() {
        let mut table = CacheTable::default();
        let g = geometry(MB);
        let p = pinned(table.acquire("k", g, 0..MB, None, false, u64::MAX));
        let (index, op) = leads(&p)[0];
        assert!(
            table.fetch_failed(p.entry, index, op).is_empty(),
            "still pinned"
        );
        let removals = table.unpin(p.entry, p.blocks, u64::MAX);
        assert_eq!(
            removals,
            [Removal::Entry {
                entry: p.entry,
                key: "k".into()
            }]
        );
        assert!(matches!(
            table.acquire("k", g, 0..MB, None, false, u64::MAX),
            Acquire::Busy
        ));
        table.entry_removed(p.entry);
        let q = pinned(table.acquire("k", g, 0..MB, None, false, u64::MAX));
        assert_ne!(q.entry, p.entry);
    }

    #[test]
    fn a_modified_file_makes_blocks_unverified_and_a_wrong_size_drops_them() {
        let mut table = CacheTable::default();
        let g = geometry(16 * MB);
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10);
        let t1 = t0 + std::time::Duration::from_secs(1);
        let p = pinned(table.acquire("k", g, 0..16 * MB, None, false, u64::MAX));
        table.begin_write(p.entry);
        for (index, op) in leads(&p) {
            let _ = table.fetched(p.entry, index, op, "h".into(), u64::MAX);
        }
        assert!(table.end_write(p.entry, Some(t0)).is_empty());
        let _ = table.unpin(p.entry, p.blocks, u64::MAX);

        let same = pinned(table.acquire("k", g, 0..8 * MB, Some((16 * MB, t0)), false, u64::MAX));
        assert_eq!(same.damage, None);
        assert_eq!(
            same.needs,
            [Need::Cached {
                index: 0,
                verify: false
            }]
        );
        let _ = table.unpin(same.entry, same.blocks, u64::MAX);

        let touched =
            pinned(table.acquire("k", g, 0..8 * MB, Some((16 * MB, t1)), false, u64::MAX));
        assert_eq!(touched.damage, Some(FileDamage::Modified));
        assert_eq!(
            touched.needs,
            [Need::Cached {
                index: 0,
                verify: true
            }]
        );
        let op = table.refetch(touched.entry, 0).unwrap();
        let _ = table.fetched(touched.entry, 0, op, "h2".into(), u64::MAX);
        let _ = table.unpin(touched.entry, touched.blocks, u64::MAX);

        let cut = pinned(table.acquire("k", g, 8 * MB..16 * MB, Some((MB, t1)), false, u64::MAX));
        assert!(matches!(cut.damage, Some(FileDamage::Size { .. })));
        assert!(matches!(cut.needs[0], Need::Lead { index: 1, .. }));
        assert_eq!(table.usage().1, 0);
    }
}
