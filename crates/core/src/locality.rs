//! Where data is cached, and the deterministic hash that decides who owns
//! data cached nowhere.

use quarry_proto::DataRef;
use std::collections::HashMap;

/// Which workers cache which object versions, keyed by
/// [`DataRef::object_key`]. Built from each worker's inventory at join and
/// its later cache deltas.
#[derive(Debug, Default)]
pub(crate) struct LocalityIndex {
    holders: HashMap<String, Vec<u32>>,
}

impl LocalityIndex {
    /// Records that `worker` caches `key`; returns whether that is new.
    pub fn add(&mut self, worker: u32, key: &str) -> bool {
        let holders = match self.holders.get_mut(key) {
            Some(holders) => holders,
            None => self.holders.entry(key.to_owned()).or_default(),
        };
        if holders.contains(&worker) {
            return false;
        }
        holders.push(worker);
        true
    }

    /// Records that `worker` no longer caches `key`.
    pub fn remove(&mut self, worker: u32, key: &str) {
        if let Some(holders) = self.holders.get_mut(key) {
            holders.retain(|&w| w != worker);
            if holders.is_empty() {
                self.holders.remove(key);
            }
        }
    }

    /// Forgets everything a departed worker cached.
    pub fn remove_worker<'k>(&mut self, worker: u32, keys: impl IntoIterator<Item = &'k String>) {
        for key in keys {
            self.remove(worker, key);
        }
    }

    /// Input bytes each worker (accepted by `eligible`) already caches, in
    /// a deterministic order. Byte counts use [`DataRef::read_len`]: what the
    /// task would otherwise download.
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
            for &worker in holders.iter().filter(|&&w| eligible(w)) {
                match bytes.iter_mut().find(|(w, _)| *w == worker) {
                    Some((_, b)) => *b += input.read_len(),
                    None => bytes.push((worker, input.read_len())),
                }
            }
        }
        bytes
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

    #[test]
    fn cached_bytes_sums_read_lengths_per_holder() {
        let a = input("s3://b/a", 100, None);
        let b = input("s3://b/b", 1000, Some(ByteRange { start: 0, end: 10 }));
        let mut index = LocalityIndex::default();
        assert!(index.add(1, &a.object_key()));
        assert!(!index.add(1, &a.object_key()));
        index.add(1, &b.object_key());
        index.add(2, &b.object_key());
        index.add(3, &b.object_key());
        let bytes = index.cached_bytes(&[a.clone(), b.clone()], |w| w != 3);
        assert_eq!(bytes, vec![(1, 110), (2, 10)]);
        index.remove(1, &a.object_key());
        assert_eq!(index.cached_bytes(&[a], |_| true), vec![]);
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
