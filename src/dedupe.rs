//! Duplicate `event_id`s per contact within the dedupe window (SPEC §2).
//!
//! The in-memory form used by `replay`: a 128-bit digest of (contact, event
//! id) per event, forgotten once older than the window on the processing
//! clock, so memory is bounded by the events of one window.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use crate::time::EventTime;

/// Remembers recently seen (contact, event id) pairs.
#[derive(Debug, Default)]
pub struct MemDedupe {
    window_ms: i64,
    seen: HashMap<u128, EventTime>,
    order: VecDeque<(EventTime, u128)>,
}

fn digest(contact: &str, event_id: &str) -> u128 {
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        salt.hash(&mut h);
        contact.hash(&mut h);
        event_id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

impl MemDedupe {
    pub fn new(window_ms: i64) -> Self {
        MemDedupe {
            window_ms,
            ..Default::default()
        }
    }

    /// Records the pair at clock `now`; returns true if it was already seen
    /// within the window.
    pub fn seen_before(&mut self, contact: &str, event_id: &str, now: EventTime) -> bool {
        let horizon = now.plus_millis(-self.window_ms);
        while let Some(&(at, key)) = self.order.front() {
            if at >= horizon {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&key) == Some(&at) {
                self.seen.remove(&key);
            }
        }
        let key = digest(contact, event_id);
        if self.seen.contains_key(&key) {
            return true;
        }
        self.seen.insert(key, now);
        self.order.push_back((now, key));
        false
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn duplicates_within_the_window_are_caught_per_contact() {
        let mut d = MemDedupe::new(30 * DAY);
        let t = EventTime::from_millis(0);
        assert!(!d.seen_before("c1", "e1", t));
        assert!(d.seen_before("c1", "e1", t.plus_millis(29 * DAY)));
        assert!(
            !d.seen_before("c2", "e1", t),
            "another contact's id is not a duplicate"
        );
    }

    #[test]
    fn ids_are_forgotten_after_the_window() {
        let mut d = MemDedupe::new(30 * DAY);
        let t = EventTime::from_millis(0);
        assert!(!d.seen_before("c1", "e1", t));
        assert!(!d.seen_before("c1", "e2", t.plus_millis(31 * DAY)));
        assert_eq!(d.len(), 1, "e1 must have been forgotten");
        assert!(!d.seen_before("c1", "e1", t.plus_millis(31 * DAY)));
    }
}
