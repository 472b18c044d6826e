//! Where data is cached, and the deterministic hash that decides who owns
//! data cached nowhere.

use quarry_proto::DataRef;
use std::collections::{HashMap, HashSet};

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
    pub fn remove_worker(&mut self, worker: u32, keys: &HashSet<String>) {
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

/// Weighted rendezvous (highest-random-weight) score of one worker for one
/// object: `weight / -ln(u)` with `u` uniform in (0, 1) drawn from the
/// object and worker hashes. The highest score owns the object; a worker
/// with twice the slots owns about twice the objects.
pub(crate) fn rendezvous_score(object_hash: u64, worker_name_hash: u64, weight: u32) -> f64 {
    let h = mix64(object_hash ^ mix64(worker_name_hash));
    let unit = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
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
        let names: Vec<u64> = ["light", "heavy"].iter().map(|n| fnv1a(n)).collect();
        let mut owned_by_heavy = 0;
        for i in 0..10_000 {
            let object = fnv1a(&format!("s3://bucket/shard-{i}"));
            if rendezvous_score(object, names[1], 3) > rendezvous_score(object, names[0], 1) {
                owned_by_heavy += 1;
            }
        }
        // Weight 3 against 1 owns three quarters.
        assert!((7_000..8_000).contains(&owned_by_heavy), "{owned_by_heavy}");
    }
}
