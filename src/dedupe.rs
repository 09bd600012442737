//! Duplicate `event_id`s per contact within the dedupe window (SPEC §2).
//!
//! The in-memory form used by `replay`: each contact keeps the 64-bit digests
//! of its recent event ids, in clock order, forgotten once older than the
//! window. Kept with the contact because its state is touched anyway, so a
//! check costs no extra cache miss; a contact with many ids in the window
//! gets a hash index beside the list.

use foldhash::HashSet;
use smallvec::SmallVec;

use crate::time::EventTime;

/// Ids in the window above which a contact gets a hash index.
const INDEX_ABOVE: usize = 64;

/// A stable 64-bit digest of an event id.
pub fn digest(event_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(event_id.as_bytes())
}

/// One contact's recently seen event ids: inline up to four (no allocation,
/// and no cache miss beyond the contact's own).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RecentIds {
    /// `(seen at, digest)` in clock order; those before `head` are forgotten.
    order: SmallVec<[(EventTime, u64); 4]>,
    head: usize,
    index: Option<Box<HashSet<u64>>>,
}

impl RecentIds {
    /// Records `event_id` seen at clock `now`; returns true if it was already
    /// seen within `window_ms`.
    pub fn seen_before(&mut self, event_id: &str, now: EventTime, window_ms: i64) -> bool {
        let horizon = now.plus_millis(-window_ms);
        while let Some(&(at, d)) = self.order.get(self.head) {
            if at >= horizon {
                break;
            }
            self.head += 1;
            if let Some(index) = &mut self.index {
                index.remove(&d);
            }
        }
        // Forgotten ids are dropped in bulk: O(1) amortized per id.
        if self.head > 0 && self.head * 2 >= self.order.len() {
            self.order.drain(..self.head);
            self.head = 0;
        }
        if self.len() <= INDEX_ABOVE / 2 {
            self.index = None;
        }
        let d = digest(event_id);
        let seen = match &self.index {
            Some(index) => index.contains(&d),
            None => self.order[self.head..].iter().any(|(_, x)| *x == d),
        };
        if seen {
            return true;
        }
        self.order.push((now, d));
        let live = self.len();
        match &mut self.index {
            Some(index) => {
                index.insert(d);
            }
            None if live > INDEX_ABOVE => {
                self.index = Some(Box::new(
                    self.order[self.head..].iter().map(|(_, x)| *x).collect(),
                ));
            }
            None => {}
        }
        false
    }

    pub fn len(&self) -> usize {
        self.order.len() - self.head
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    proptest::proptest! {
        /// Against the plain definition: an id is a duplicate when the same
        /// id was recorded (not seen as a duplicate) within the window.
        #[test]
        fn agrees_with_a_list_of_every_recorded_id(
            steps in proptest::collection::vec((0u16..300, 0u8..8, 0i64..3 * DAY), 1..800),
        ) {
            let mut r = RecentIds::default();
            let mut recorded: Vec<(i64, String)> = Vec::new();
            let mut now = 0;
            for (id, slow, advance) in steps {
                // Mostly short steps, so that the index (many live ids) is used too.
                now += if slow == 0 { advance } else { advance / 200 };
                let id = format!("e{id}");
                let expected = recorded
                    .iter()
                    .any(|(at, x)| *x == id && *at >= now - WINDOW);
                let got = r.seen_before(&id, EventTime::from_millis(now), WINDOW);
                proptest::prop_assert_eq!(got, expected, "{} at {}", id, now);
                if !got {
                    recorded.push((now, id));
                }
            }
        }
    }
}
