//! The replay's contact index: contact number by the 64-bit digest of the
//! contact id, in one flat open-addressing table of 8-byte buckets.
//!
//! A bucket holds the digest's upper 32 bits (its tag) and the contact
//! number, so a lookup reads one cache line and nothing else, and a batch
//! can prefetch its buckets before it looks them up. A tag match is only a
//! candidate: the caller compares the ids once the contact's slot is in
//! cache, and on a mismatch asks [`ContactIndex::matching`] for every
//! contact with the same full digest.

use crate::event::EventKind;
use crate::scoring::UrlMatches;

/// What looking up a decoded line found, for prefetching and applying it.
#[derive(Debug, Clone, Copy)]
pub(super) struct LookedUp {
    /// The contact it may be for (see [`super::Replayer::candidate`]); `u32::MAX`
    /// for a line that was rejected.
    pub idx: u32,
    /// The digest of the contact id.
    pub digest: u64,
    pub kind: Option<EventKind>,
    pub urls: UrlMatches,
}

impl LookedUp {
    pub fn reject() -> LookedUp {
        LookedUp {
            idx: u32::MAX,
            digest: 0,
            kind: None,
            urls: UrlMatches::default(),
        }
    }
}

/// Largest share of buckets in use before the table doubles.
const MAX_LOAD_NUM: usize = 1;
const MAX_LOAD_DEN: usize = 2;
const MIN_BUCKETS: usize = 1024;

/// The digest of a contact id.
pub fn digest(contact_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(contact_id.as_bytes())
}

/// Contact numbers by digest; numbers are dense, given out in insertion order.
#[derive(Debug, Clone)]
pub struct ContactIndex {
    /// `tag << 32 | (number + 1)`; 0 is an empty bucket.
    buckets: Vec<u64>,
    /// Full digest of each contact, by number (for growing and for exact matches).
    digests: Vec<u64>,
}

impl Default for ContactIndex {
    fn default() -> Self {
        ContactIndex {
            buckets: vec![0; MIN_BUCKETS],
            digests: Vec::new(),
        }
    }
}

impl ContactIndex {
    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// Hints the cache to fetch the bucket where a lookup of `d` starts.
    #[inline]
    pub fn prefetch(&self, d: u64) {
        let p = &self.buckets[d as usize & self.mask()];
        crate::cache::prefetch(p as *const u64);
    }

    /// The first contact whose digest may be `d` (its upper half matches).
    #[inline]
    pub fn first(&self, d: u64) -> Option<u32> {
        let tag = d >> 32;
        let mask = self.mask();
        let mut i = d as usize & mask;
        loop {
            let b = self.buckets[i];
            if b == 0 {
                return None;
            }
            if b >> 32 == tag {
                return Some((b as u32) - 1);
            }
            i = (i + 1) & mask;
        }
    }

    /// Every contact whose digest is exactly `d`, in insertion order.
    pub fn matching(&self, d: u64) -> impl Iterator<Item = u32> + '_ {
        let tag = d >> 32;
        let mask = self.mask();
        let start = d as usize & mask;
        (0..self.buckets.len())
            .map(move |k| self.buckets[(start + k) & mask])
            .take_while(|&b| b != 0)
            .filter(move |&b| b >> 32 == tag)
            .map(|b| (b as u32) - 1)
            .filter(move |&n| self.digests[n as usize] == d)
    }

    /// Adds the next contact, with digest `d`; returns its number.
    pub fn push(&mut self, d: u64) -> u32 {
        let n = self.digests.len() as u32;
        assert!(n < u32::MAX, "more than 2^32 - 1 contacts");
        self.digests.push(d);
        if self.digests.len() * MAX_LOAD_DEN > self.buckets.len() * MAX_LOAD_NUM {
            self.grow();
        } else {
            self.place(d, n);
        }
        n
    }

    fn place(&mut self, d: u64, n: u32) {
        let mask = self.mask();
        let mut i = d as usize & mask;
        while self.buckets[i] != 0 {
            i = (i + 1) & mask;
        }
        self.buckets[i] = (d >> 32) << 32 | u64::from(n + 1);
    }

    /// Doubles the table and places every contact again, in number order
    /// (so that the first of equal digests stays first).
    fn grow(&mut self) {
        self.buckets = vec![0; self.buckets.len() * 2];
        for n in 0..self.digests.len() {
            self.place(self.digests[n], n as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn finds_what_was_pushed_across_growth() {
        let mut ix = ContactIndex::default();
        for n in 0..10_000u32 {
            assert_eq!(ix.push(digest(&format!("c-{n}"))), n);
        }
        for n in 0..10_000u32 {
            let d = digest(&format!("c-{n}"));
            assert_eq!(ix.first(d), Some(n));
            assert_eq!(ix.matching(d).collect::<Vec<_>>(), vec![n]);
        }
        assert_eq!(ix.first(digest("nobody")), None);
        assert_eq!(ix.digests.len(), 10_000);
    }

    #[test]
    fn equal_digests_are_all_kept_in_order() {
        let mut ix = ContactIndex::default();
        let a = ix.push(7);
        let b = ix.push(7);
        let other_same_tag = ix.push(8);
        assert_eq!(ix.first(7), Some(a), "first pushed comes first");
        assert_eq!(ix.matching(7).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(ix.matching(8).collect::<Vec<_>>(), vec![other_same_tag]);
    }

    proptest! {
        /// Digests drawn from a small space, so that positions, tags and
        /// whole digests collide often; checked against a map of lists.
        #[test]
        fn agrees_with_a_map(
            pushes in prop::collection::vec((0u64..4, 0u64..3000), 1..3000),
            probes in prop::collection::vec((0u64..4, 0u64..3000), 1..200),
        ) {
            let d = |(tag, pos): (u64, u64)| tag << 32 | pos;
            let mut ix = ContactIndex::default();
            let mut model: HashMap<u64, Vec<u32>> = HashMap::new();
            for p in pushes {
                let n = ix.push(d(p));
                model.entry(d(p)).or_default().push(n);
            }
            for p in probes {
                let want = model.get(&d(p)).cloned().unwrap_or_default();
                prop_assert_eq!(ix.matching(d(p)).collect::<Vec<_>>(), want.clone());
                match ix.first(d(p)) {
                    // A candidate has the same tag; when the digest itself
                    // was pushed, the candidate's tag is the digest's.
                    Some(n) => prop_assert_eq!(ix.digests[n as usize] >> 32, d(p) >> 32),
                    None => prop_assert!(want.is_empty()),
                }
            }
        }
    }
}
