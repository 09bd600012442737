//! Where a timer wheel finds a key's entry: any map, or [`DenseIndex`],
//! which fixes each dense `(n, m)` key's entry and keeps one bit a key.

use std::hash::Hash;

use foldhash::HashMap;

use super::wheel::NIL;

/// Where the wheel finds the entry of a key.
pub trait KeyIndex<K> {
    fn get(&self, key: &K) -> Option<u32>;
    fn insert(&mut self, key: K, entry: u32);
    fn remove(&mut self, key: &K) -> Option<u32>;
    fn len(&self) -> usize;
    fn keys(&self) -> Vec<K>;

    /// The entry number `key` always has, if the index fixes one (then
    /// `insert` is always given it, and no entry is ever reused by another
    /// key): finding a key's entry then reads nothing but the entry.
    fn fixed_entry(&self, _key: &K) -> Option<u32> {
        None
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Clone + Eq + Hash> KeyIndex<K> for HashMap<K, u32> {
    fn get(&self, key: &K) -> Option<u32> {
        HashMap::get(self, key).copied()
    }

    fn insert(&mut self, key: K, entry: u32) {
        HashMap::insert(self, key, entry);
    }

    fn remove(&mut self, key: &K) -> Option<u32> {
        HashMap::remove(self, key)
    }

    fn len(&self) -> usize {
        HashMap::len(self)
    }

    fn keys(&self) -> Vec<K> {
        HashMap::keys(self).cloned().collect()
    }
}

/// An index for keys `(n, m)` with `m` below a fixed bound and `n` dense
/// from 0 (contact number, model): each key's entry is fixed at
/// `n * bound + m`, so the index keeps only one bit a key (whether its entry
/// is in use), small enough to stay in cache, and the entries of one `n`
/// sit side by side. The wheel then holds an entry for every key up to the
/// largest it has seen, in use or not: fit for keys that are all live, as
/// a replay's contacts are.
#[derive(Debug, Clone)]
pub struct DenseIndex {
    per_n: usize,
    used: Vec<u64>,
    len: usize,
}

impl DenseIndex {
    /// For keys whose second part is below `per_n`.
    pub fn new(per_n: usize) -> DenseIndex {
        DenseIndex {
            per_n: per_n.max(1),
            used: Vec::new(),
            len: 0,
        }
    }

    fn at(&self, key: &(u32, u16)) -> usize {
        debug_assert!((key.1 as usize) < self.per_n, "key {key:?} out of range");
        key.0 as usize * self.per_n + key.1 as usize
    }

    fn is_used(&self, at: usize) -> bool {
        self.used
            .get(at / 64)
            .is_some_and(|w| w >> (at % 64) & 1 == 1)
    }
}

impl KeyIndex<(u32, u16)> for DenseIndex {
    fn get(&self, key: &(u32, u16)) -> Option<u32> {
        let at = self.at(key);
        self.is_used(at).then_some(at as u32)
    }

    fn insert(&mut self, key: (u32, u16), entry: u32) {
        let at = self.at(&key);
        debug_assert_eq!(entry as usize, at, "entry not the one fixed for {key:?}");
        if at / 64 >= self.used.len() {
            let grown = (at / 64 + 1).max(self.used.len() * 2);
            self.used.resize(grown, 0);
        }
        if !self.is_used(at) {
            self.len += 1;
        }
        self.used[at / 64] |= 1 << (at % 64);
    }

    fn remove(&mut self, key: &(u32, u16)) -> Option<u32> {
        let at = self.at(key);
        if !self.is_used(at) {
            return None;
        }
        self.len -= 1;
        self.used[at / 64] &= !(1 << (at % 64));
        Some(at as u32)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn fixed_entry(&self, key: &(u32, u16)) -> Option<u32> {
        let at = u32::try_from(self.at(key)).ok().filter(|&at| at != NIL);
        Some(at.expect("timer keys fit 2^32 - 1 entries"))
    }

    fn keys(&self) -> Vec<(u32, u16)> {
        let per_n = self.per_n;
        (0..self.used.len() * 64)
            .filter(|&at| self.is_used(at))
            .map(|at| ((at / per_n) as u32, (at % per_n) as u16))
            .collect()
    }
}
