//! Content-addressed LRU cache for data derived from reference audio.
//!
//! In: the sha256 of the reference file's bytes ([`ContentHash`], from [`content_hash`]) and any
//! value `V` (prepared arrays, prompt codes, `ge`, ...). Out: the value when present.
//! Keys are content hashes, so the same audio uploaded twice or under another name hits the cache,
//! and an edited file under the same name misses. Not thread-safe by itself: wrap it in a `Mutex`
//! to share it.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};

/// sha256 of a file's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// sha256 of `bytes`.
pub fn content_hash(bytes: &[u8]) -> ContentHash {
    ContentHash(Sha256::digest(bytes).into())
}

/// Least-recently-used map from [`ContentHash`] (or any `K`) to `V` with a fixed capacity.
///
/// `get` and `insert` both count as a use. Capacity 0 stores nothing. Eviction scans the entries
/// (O(capacity)); reference caches hold a handful of voices, so this is cheaper than a linked list.
#[derive(Debug)]
pub struct ReferenceCache<V, K = ContentHash> {
    capacity: usize,
    tick: u64,
    map: HashMap<K, (u64, V)>,
}

impl<V, K: std::hash::Hash + Eq + Clone> ReferenceCache<V, K> {
    pub fn new(capacity: usize) -> Self {
        ReferenceCache { capacity, tick: 0, map: HashMap::with_capacity(capacity.min(1024)) }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The value for `key`, marking it most recently used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        let t = self.next_tick();
        match self.map.get_mut(key) {
            Some(entry) => {
                entry.0 = t;
                Some(&entry.1)
            }
            None => None,
        }
    }

    /// Whether `key` is present (does not count as a use).
    pub fn contains(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Inserts or replaces `key`; evicts the least recently used entry when full.
    /// Returns the evicted `(key, value)` if any (a replaced value is returned with its key too).
    pub fn insert(&mut self, key: K, value: V) -> Option<(K, V)> {
        if self.capacity == 0 {
            return Some((key, value));
        }
        let t = self.next_tick();
        if let Some(entry) = self.map.get_mut(&key) {
            let old = std::mem::replace(entry, (t, value));
            return Some((key, old.1));
        }
        let mut evicted = None;
        if self.map.len() >= self.capacity {
            let oldest = self.map.iter().min_by_key(|(_, (tick, _))| *tick).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                evicted = self.map.remove(&k).map(|(_, v)| (k, v));
            }
        }
        self.map.insert(key, (t, value));
        evicted
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key).map(|(_, v)| v)
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256() {
        assert_eq!(
            content_hash(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn lru_evicts_least_recent() {
        let mut c: ReferenceCache<u32> = ReferenceCache::new(2);
        let (a, b, d) = (content_hash(b"a"), content_hash(b"b"), content_hash(b"d"));
        assert!(c.insert(a, 1).is_none());
        assert!(c.insert(b, 2).is_none());
        assert_eq!(c.get(&a), Some(&1)); // a is now newer than b
        let ev = c.insert(d, 3).unwrap();
        assert_eq!(ev, (b, 2));
        assert!(c.contains(&a) && c.contains(&d) && !c.contains(&b));
        assert_eq!(c.len(), 2);
        // Replacing keeps the size.
        assert_eq!(c.insert(a, 10), Some((a, 1)));
        assert_eq!(c.get(&a), Some(&10));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let mut c: ReferenceCache<u32> = ReferenceCache::new(0);
        assert!(c.insert(content_hash(b"x"), 1).is_some());
        assert!(c.is_empty());
    }
}
