//! Where data is cached, and the deterministic hash that decides who owns
//! data cached nowhere.

use quarry_proto::{ByteRange, CacheEntry, DataRef};
use std::collections::{HashMap, HashSet};

/// Which workers cache which bytes of which object versions, keyed by
/// [`DataRef::object_key`]. Workers cache objects in blocks and report the
/// cached byte ranges (block-aligned runs); built from each worker's
/// inventory at join and its later cache deltas.
#[derive(Debug, Default)]
pub(crate) struct LocalityIndex {
    holders: HashMap<String, Vec<(u32, Vec<ByteRange>)>>,
}

impl LocalityIndex {
    /// Records that `worker` caches the entry's ranges; returns whether the
    /// worker held nothing of that object before.
    pub fn add(&mut self, worker: u32, entry: &CacheEntry) -> bool {
        let holders = match self.holders.get_mut(&entry.object_key) {
            Some(holders) => holders,
            None => self.holders.entry(entry.object_key.clone()).or_default(),
        };
        match holders.iter_mut().find(|(w, _)| *w == worker) {
            Some((_, ranges)) => {
                for range in &entry.ranges {
                    add_range(ranges, *range);
                }
                false
            }
            None => {
                let mut ranges = Vec::new();
                for range in &entry.ranges {
                    add_range(&mut ranges, *range);
                }
                holders.push((worker, ranges));
                true
            }
        }
    }

    /// Records that `worker` no longer caches the entry's ranges; returns
    /// whether it now holds nothing of that object.
    pub fn remove(&mut self, worker: u32, entry: &CacheEntry) -> bool {
        let Some(holders) = self.holders.get_mut(&entry.object_key) else {
            return true;
        };
        let Some(at) = holders.iter().position(|(w, _)| *w == worker) else {
            return true;
        };
        for range in &entry.ranges {
            remove_range(&mut holders[at].1, *range);
        }
        let gone = holders[at].1.is_empty();
        if gone {
            holders.swap_remove(at);
            if holders.is_empty() {
                self.holders.remove(&entry.object_key);
            }
        }
        gone
    }

    /// Bytes of object `key` that `worker` caches.
    pub fn held_bytes(&self, worker: u32, key: &str) -> u64 {
        self.holders
            .get(key)
            .and_then(|holders| holders.iter().find(|(w, _)| *w == worker))
            .map_or(0, |(_, ranges)| ranges.iter().map(ByteRange::len).sum())
    }

    /// Forgets everything a departed worker cached.
    pub fn remove_worker(&mut self, worker: u32, keys: &HashSet<String>) {
        for key in keys {
            if let Some(holders) = self.holders.get_mut(key) {
                holders.retain(|(w, _)| *w != worker);
                if holders.is_empty() {
                    self.holders.remove(key);
                }
            }
        }
    }

    /// Input bytes each worker (accepted by `eligible`) already caches, in
    /// a deterministic order: for each input, the bytes of what it reads
    /// (its range, or the whole object) that lie in the worker's cached
    /// ranges, which is what the task would otherwise download.
    pub fn cached_bytes(
        &self,
        inputs: &[DataRef],
        eligible: impl Fn(u32) -> bool,
    ) -> Vec<(u32, u64)> {
        let mut bytes: Vec<(u32, u64)> = Vec::new();
        for input in inputs {
            let Some(holders) = self.holders.get(&input.object_key()) else {
                continue;
            };
            let wanted = input.range.unwrap_or(ByteRange {
                start: 0,
                end: input.size,
            });
            for (worker, ranges) in holders.iter().filter(|(w, _)| eligible(*w)) {
                let held = overlap(ranges, wanted);
                if held == 0 {
                    continue;
                }
                match bytes.iter_mut().find(|(w, _)| w == worker) {
                    Some((_, b)) => *b += held,
                    None => bytes.push((*worker, held)),
                }
            }
        }
        bytes
    }
}

/// Adds `range` to sorted, disjoint `ranges`, merging what touches it.
fn add_range(ranges: &mut Vec<ByteRange>, range: ByteRange) {
    if range.is_empty() {
        return;
    }
    let first = ranges.partition_point(|r| r.end < range.start);
    let last = ranges.partition_point(|r| r.start <= range.end);
    let merged = ranges[first..last].iter().fold(range, |acc, r| ByteRange {
        start: acc.start.min(r.start),
        end: acc.end.max(r.end),
    });
    ranges.splice(first..last, [merged]);
}

/// Removes `range` from sorted, disjoint `ranges`.
fn remove_range(ranges: &mut Vec<ByteRange>, range: ByteRange) {
    if range.is_empty() {
        return;
    }
    let mut kept = Vec::with_capacity(ranges.len() + 1);
    for r in ranges.drain(..) {
        if r.end <= range.start || r.start >= range.end {
            kept.push(r);
            continue;
        }
        if r.start < range.start {
            kept.push(ByteRange {
                start: r.start,
                end: range.start,
            });
        }
        if r.end > range.end {
            kept.push(ByteRange {
                start: range.end,
                end: r.end,
            });
        }
    }
    *ranges = kept;
}

/// Bytes of `wanted` inside sorted, disjoint `ranges`.
fn overlap(ranges: &[ByteRange], wanted: ByteRange) -> u64 {
    let first = ranges.partition_point(|r| r.end <= wanted.start);
    ranges[first..]
        .iter()
        .take_while(|r| r.start < wanted.end)
        .map(|r| r.end.min(wanted.end) - r.start.max(wanted.start))
        .sum()
}

/// What the rendezvous hash of an input is computed from: the object
/// version, and for a byte range its start, so that the chunks of one
/// large object spread over the workers (and land on the same ones on
/// every pass).
pub(crate) fn rendezvous_name(input: &DataRef) -> String {
    match input.range {
        Some(range) => format!("{}@{}", input.object_key(), range.start),
        None => input.object_key(),
    }
}

/// 64-bit FNV-1a: a fixed hash, identical across processes and releases, so
/// that rendezvous owners survive scheduler restarts.
pub(crate) fn fnv1a(text: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    text.bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The splitmix64 finalizer: spreads the bits of a combined hash.
fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A worker's rendezvous key, from its name: computed once at join.
pub(crate) fn worker_key(name: &str) -> u64 {
    mix64(fnv1a(name))
}

/// One worker's rendezvous draw for one object: a 64-bit value from the
/// object hash and the worker's [`worker_key`]. Among workers of equal
/// weight the highest draw wins, so the logarithm in [`rendezvous_score`]
/// is only needed to compare workers of different weights.
pub(crate) fn rendezvous_draw(object_hash: u64, worker_key: u64) -> u64 {
    mix64(object_hash ^ worker_key)
}

/// Weighted rendezvous (highest-random-weight) score of a draw:
/// `weight / -ln(u)` with `u` the draw mapped into (0, 1). The highest
/// score owns the object; a worker with twice the slots owns about twice
/// the objects. Increases with the draw.
pub(crate) fn rendezvous_score(draw: u64, weight: u32) -> f64 {
    let unit = ((draw >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -unit.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_proto::{ByteRange, Pin};

    fn input(url: &str, size: u64, range: Option<ByteRange>) -> DataRef {
        DataRef {
            url: url.into(),
            pin: Pin::ETag("e".into()),
            size,
            range,
        }
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }

    fn range(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn cached_bytes_sums_read_lengths_per_holder() {
        let a = input("s3://b/a", 100, None);
        let b = input("s3://b/b", 1000, Some(range(0, 10)));
        let mut index = LocalityIndex::default();
        let whole_a = CacheEntry::whole(a.object_key(), 100);
        assert!(index.add(1, &whole_a));
        assert!(!index.add(1, &whole_a));
        let whole_b = CacheEntry::whole(b.object_key(), 1000);
        index.add(1, &whole_b);
        index.add(2, &whole_b);
        index.add(3, &whole_b);
        let bytes = index.cached_bytes(&[a.clone(), b.clone()], |w| w != 3);
        assert_eq!(bytes, vec![(1, 110), (2, 10)]);
        assert!(index.remove(1, &whole_a));
        assert_eq!(index.cached_bytes(&[a], |_| true), vec![]);
    }

    #[test]
    fn cached_bytes_count_only_the_blocks_a_chunk_reads() {
        let object = input("s3://b/big", 100, None);
        let key = object.object_key();
        let mut index = LocalityIndex::default();
        index.add(
            1,
            &CacheEntry {
                object_key: key.clone(),
                ranges: vec![range(0, 20), range(40, 60)],
            },
        );
        index.add(
            1,
            &CacheEntry {
                object_key: key.clone(),
                ranges: vec![range(20, 30)],
            },
        );
        index.add(
            2,
            &CacheEntry {
                object_key: key.clone(),
                ranges: vec![range(60, 100)],
            },
        );
        let chunk = |s, e| DataRef {
            range: Some(range(s, e)),
            ..object.clone()
        };
        assert_eq!(
            index.cached_bytes(&[chunk(10, 50)], |_| true),
            vec![(1, 30)]
        );
        assert_eq!(
            index.cached_bytes(&[chunk(50, 80)], |_| true),
            vec![(1, 10), (2, 20)]
        );
        assert_eq!(
            index.cached_bytes(std::slice::from_ref(&object), |_| true),
            vec![(1, 50), (2, 40)]
        );
        // Evicting the middle block splits the run.
        assert!(!index.remove(
            1,
            &CacheEntry {
                object_key: key.clone(),
                ranges: vec![range(20, 40)]
            }
        ));
        assert_eq!(
            index.cached_bytes(&[chunk(0, 60)], |w| w == 1),
            vec![(1, 40)]
        );
        assert!(index.remove(2, &CacheEntry::whole(key, 100)));
        assert_eq!(index.cached_bytes(&[chunk(60, 100)], |_| true), vec![]);
    }

    #[test]
    fn ranges_merge_and_split() {
        let mut ranges = Vec::new();
        add_range(&mut ranges, range(10, 20));
        add_range(&mut ranges, range(30, 40));
        add_range(&mut ranges, range(20, 30));
        assert_eq!(ranges, vec![range(10, 40)]);
        remove_range(&mut ranges, range(15, 25));
        assert_eq!(ranges, vec![range(10, 15), range(25, 40)]);
        assert_eq!(overlap(&ranges, range(0, 100)), 20);
        assert_eq!(overlap(&ranges, range(12, 30)), 8);
    }

    #[test]
    fn rendezvous_weight_scales_ownership() {
        let names: Vec<u64> = ["light", "heavy"].iter().map(|n| worker_key(n)).collect();
        let mut owned_by_heavy = 0;
        for i in 0..10_000 {
            let object = fnv1a(&format!("s3://bucket/shard-{i}"));
            let heavy = rendezvous_score(rendezvous_draw(object, names[1]), 3);
            let light = rendezvous_score(rendezvous_draw(object, names[0]), 1);
            if heavy > light {
                owned_by_heavy += 1;
            }
        }
        // Weight 3 against 1 owns three quarters.
        assert!((7_000..8_000).contains(&owned_by_heavy), "{owned_by_heavy}");
    }
}
