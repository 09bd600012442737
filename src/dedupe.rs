//! Duplicate `event_id`s per contact within the dedupe window (SPEC §2).
//!
//! The in-memory form used by `replay`: each contact keeps the 64-bit digests
//! of its recent event ids, in clock order, forgotten once older than the
//! window. Kept with the contact because its state is touched anyway, so a
//! check costs no extra cache miss; a contact with many ids in the window
//! gets a hash index beside the list.

use std::collections::VecDeque;

use foldhash::HashSet;

use crate::time::EventTime;

/// Ids in the window above which a contact gets a hash index.
const INDEX_ABOVE: usize = 64;

/// A stable 64-bit digest of an event id.
pub fn digest(event_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(event_id.as_bytes())
}

/// One contact's recently seen event ids.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RecentIds {
    order: VecDeque<(EventTime, u64)>,
    index: Option<HashSet<u64>>,
}

impl RecentIds {
    /// Records `event_id` seen at clock `now`; returns true if it was already
    /// seen within `window_ms`.
    pub fn seen_before(&mut self, event_id: &str, now: EventTime, window_ms: i64) -> bool {
        let horizon = now.plus_millis(-window_ms);
        while let Some(&(at, d)) = self.order.front() {
            if at >= horizon {
                break;
            }
            self.order.pop_front();
            if let Some(index) = &mut self.index {
                index.remove(&d);
            }
        }
        if self.order.len() <= INDEX_ABOVE / 2 {
            self.index = None;
        }
        let d = digest(event_id);
        let seen = match &self.index {
            Some(index) => index.contains(&d),
            None => self.order.iter().any(|(_, x)| *x == d),
        };
        if seen {
            return true;
        }
        self.order.push_back((now, d));
        match &mut self.index {
            Some(index) => {
                index.insert(d);
            }
            None if self.order.len() > INDEX_ABOVE => {
                self.index = Some(self.order.iter().map(|(_, x)| *x).collect());
            }
            None => {}
        }
        false
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Where the oldest id lives (for prefetching).
    pub fn front_ptr(&self) -> *const (EventTime, u64) {
        self.order.as_slices().0.as_ptr()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const WINDOW: i64 = 30 * DAY;

    #[test]
    fn duplicates_within_the_window_are_caught() {
        let mut r = RecentIds::default();
        let t = EventTime::from_millis(0);
        assert!(!r.seen_before("e1", t, WINDOW));
        assert!(r.seen_before("e1", t.plus_millis(29 * DAY), WINDOW));
        assert!(!r.seen_before("e2", t, WINDOW));
    }

    #[test]
    fn ids_are_forgotten_after_the_window() {
        let mut r = RecentIds::default();
        let t = EventTime::from_millis(0);
        assert!(!r.seen_before("e1", t, WINDOW));
        assert!(!r.seen_before("e2", t.plus_millis(31 * DAY), WINDOW));
        assert_eq!(r.len(), 1, "e1 must have been forgotten");
        assert!(!r.seen_before("e1", t.plus_millis(31 * DAY), WINDOW));
    }

    #[test]
    fn many_ids_use_the_index_and_stay_exact() {
        let mut r = RecentIds::default();
        for i in 0..1000 {
            let now = EventTime::from_millis(i * DAY / 10);
            assert!(!r.seen_before(&format!("e{i}"), now, WINDOW));
            assert!(
                r.seen_before(&format!("e{}", (i - 250).max(0)), now, WINDOW),
                "{i}"
            );
        }
        assert!(r.index.is_some());
        assert_eq!(r.len(), 301, "ids of the last 30 days");
        assert!(!r.seen_before("e0", EventTime::from_millis(1000 * DAY), WINDOW));
    }
}
