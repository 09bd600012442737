//! Duplicate `event_id`s per contact within the dedupe window (SPEC §2).
//!
//! The in-memory form used by `replay`: each contact keeps the 64-bit digests
//! of its recent event ids, in clock order, forgotten once older than the
//! window. Kept inline in the contact's slot for up to seven ids, so that a
//! check costs no cache miss beyond the contact's own; a contact with more
//! ids in the window moves them to the heap, with a hash index beside the
//! list once there are many.

use foldhash::HashSet;

use crate::time::EventTime;

/// Ids kept in the contact's slot.
const INLINE: usize = 7;
/// Ids in the window above which a spilled contact gets a hash index.
const INDEX_ABOVE: usize = 64;

/// A stable 64-bit digest of an event id.
pub fn digest(event_id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(event_id.as_bytes())
}

/// One contact's recently seen event ids.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentIds {
    /// `(seen at, digest)` in clock order, the first `len` used; unused
    /// while the ids are spilled.
    inline: [(EventTime, u64); INLINE],
    len: u8,
    spilled: Option<Box<Spilled>>,
}

/// The ids of a contact with more than [`INLINE`] of them in the window.
#[derive(Debug, Clone, PartialEq)]
struct Spilled {
    /// `(seen at, digest)` in clock order; those before `head` are forgotten.
    order: Vec<(EventTime, u64)>,
    head: usize,
    index: Option<HashSet<u64>>,
}

impl Default for RecentIds {
    fn default() -> Self {
        RecentIds {
            inline: [(EventTime::MIN, 0); INLINE],
            len: 0,
            spilled: None,
        }
    }
}

impl RecentIds {
    /// Records `event_id` seen at clock `now`; returns true if it was already
    /// seen within `window_ms`.
    pub fn seen_before(&mut self, event_id: &str, now: EventTime, window_ms: i64) -> bool {
        let horizon = now.plus_millis(-window_ms);
        let d = digest(event_id);
        if let Some(spilled) = &mut self.spilled {
            let seen = spilled.seen_before(d, now, horizon);
            if spilled.len() < INLINE {
                // Back inline: the heap part is only for busy stretches.
                let live = &spilled.order[spilled.head..];
                self.inline[..live.len()].copy_from_slice(live);
                self.len = live.len() as u8;
                self.spilled = None;
            }
            return seen;
        }
        let len = self.len as usize;
        let gone = self.inline[..len]
            .iter()
            .take_while(|(at, _)| *at <= horizon)
            .count();
        if gone > 0 {
            self.inline.copy_within(gone..len, 0);
        }
        let len = len - gone;
        self.len = len as u8;
        if self.inline[..len].iter().any(|(_, x)| *x == d) {
            return true;
        }
        if len < INLINE {
            self.inline[len] = (now, d);
            self.len += 1;
        } else {
            let mut order = Vec::with_capacity(2 * INLINE);
            order.extend_from_slice(&self.inline);
            order.push((now, d));
            self.spilled = Some(Box::new(Spilled {
                order,
                head: 0,
                index: None,
            }));
            self.len = 0;
        }
        false
    }

    pub fn len(&self) -> usize {
        match &self.spilled {
            Some(spilled) => spilled.len(),
            None => self.len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the ids live when not in the slot, for prefetching.
    pub fn heap(&self) -> Option<*const u8> {
        self.spilled
            .as_deref()
            .map(|s| s.order.as_ptr().wrapping_add(s.head).cast())
    }
}

impl Spilled {
    fn len(&self) -> usize {
        self.order.len() - self.head
    }

    fn seen_before(&mut self, d: u64, now: EventTime, horizon: EventTime) -> bool {
        while let Some(&(at, old)) = self.order.get(self.head) {
            if at > horizon {
                break;
            }
            self.head += 1;
            if let Some(index) = &mut self.index {
                index.remove(&old);
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
                self.index = Some(self.order[self.head..].iter().map(|(_, x)| *x).collect());
            }
            None => {}
        }
        false
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

    /// The window is `(now − window, now]`, as a cap's is and as the
    /// service's store has it: an id seen exactly a window ago is forgotten.
    #[test]
    fn the_window_leaves_out_its_start() {
        for spill in [0, 9] {
            let mut r = RecentIds::default();
            let t = EventTime::from_millis(0);
            for i in 0..spill {
                assert!(!r.seen_before(&format!("x{i}"), t, WINDOW));
            }
            assert!(!r.seen_before("e1", t, WINDOW));
            assert!(
                r.seen_before("e1", t.plus_millis(WINDOW - 1), WINDOW),
                "{spill}"
            );
            assert!(
                !r.seen_before("e1", t.plus_millis(WINDOW), WINDOW),
                "{spill}"
            );
            assert!(
                r.seen_before("e1", t.plus_millis(WINDOW), WINDOW),
                "seen again"
            );
        }
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
    fn ids_move_to_the_heap_and_back_without_losing_any() {
        let mut r = RecentIds::default();
        let t = EventTime::from_millis(0);
        for i in 0..10 {
            assert!(!r.seen_before(&format!("e{i}"), t.plus_millis(i * DAY), WINDOW));
        }
        assert!(r.spilled.is_some(), "ten ids do not fit inline");
        assert!(r.seen_before("e0", t.plus_millis(10 * DAY), WINDOW));
        // Day 36: e0..e6 are out of the window (e6 is exactly 30 days old),
        // e7..e9 remain.
        assert!(!r.seen_before("f", t.plus_millis(36 * DAY), WINDOW));
        assert!(r.spilled.is_none(), "back inline");
        assert_eq!(r.len(), 4);
        assert!(r.seen_before("e9", t.plus_millis(36 * DAY), WINDOW));
        assert!(!r.seen_before("e6", t.plus_millis(36 * DAY), WINDOW));
        assert!(r.seen_before("f", t.plus_millis(36 * DAY), WINDOW));
        assert!(!r.seen_before("e1", t.plus_millis(36 * DAY), WINDOW));
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
        assert!(r.spilled.as_ref().is_some_and(|s| s.index.is_some()));
        assert_eq!(r.len(), 300, "ids of the last 30 days");
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
                    .any(|(at, x)| *x == id && *at > now - WINDOW);
                let got = r.seen_before(&id, EventTime::from_millis(now), WINDOW);
                proptest::prop_assert_eq!(got, expected, "{} at {}", id, now);
                if !got {
                    recorded.push((now, id));
                }
            }
        }
    }
}
