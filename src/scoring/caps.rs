//! Sliding-window caps (`max_times`, `window_days`, `per_item`).
//!
//! A match scores if fewer than `max_times` scored matches (of the item, when
//! `per_item`) have `occurred_at` in `(t − window, t]` — or `≤ t` for a lifetime
//! cap. Memory stays bounded: a lifetime cap keeps only the `max_times`
//! earliest scored times (exact for any `t`), a windowed cap keeps the times
//! newer than `clock − window − grace`, so events up to `grace` late are exact.

use compact_str::CompactString;
use foldhash::HashMap;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::rules::Cap;
use crate::time::EventTime;

type ItemTimes = SmallVec<[EventTime; 2]>;

/// Scored match times of one capped rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CapLedger {
    /// Times of a cap that is not `per_item`, sorted ascending.
    times: ItemTimes,
    /// Times per item of a `per_item` cap, each sorted ascending. Short
    /// items and a couple of times live in the list itself: one allocation
    /// for the ledger's items rather than three per item.
    items: Items,
    /// Clock at the last sweep of stale items.
    swept_at: Option<EventTime>,
}

impl CapLedger {
    /// Whether a match at `t` may score; if so, records it.
    pub fn admit(
        &mut self,
        cap: &Cap,
        item: &str,
        t: EventTime,
        clock: EventTime,
        grace_ms: i64,
    ) -> bool {
        if !cap.per_item {
            return admit(&mut self.times, cap, t, clock, grace_ms);
        }
        if !admit(self.items.get_or_insert(item), cap, t, clock, grace_ms) {
            return false;
        }
        if let Some(w) = cap.window_ms {
            let horizon = clock.plus_millis(-w.saturating_add(grace_ms));
            self.sweep(w, clock, horizon);
        }
        true
    }

    /// Drops items with no time left inside the horizon, at most once per window.
    fn sweep(&mut self, window_ms: i64, clock: EventTime, horizon: EventTime) {
        if self.items.len() <= 1 {
            return;
        }
        if self
            .swept_at
            .is_some_and(|at| clock.millis() - at.millis() < window_ms)
        {
            return;
        }
        self.items
            .retain(|times| times.last().is_some_and(|last| *last > horizon));
        self.swept_at = Some(clock);
    }

    /// Where a lookup starts reading the ledger's scored times, for
    /// prefetching: the times of a cap that is not `per_item`, or the item
    /// list of one that is (searched in order).
    pub fn times_ptr(&self) -> *const u8 {
        match &self.items {
            Items::List(list) if !list.is_empty() => list.as_ptr().cast(),
            _ => self.times.as_ptr().cast(),
        }
    }

    /// Scored times currently remembered for an item (for inspection and tests).
    pub fn times(&self, item: &str) -> &[EventTime] {
        match self.items.get(item) {
            Some(times) => times.as_slice(),
            None if item.is_empty() => &self.times,
            None => &[],
        }
    }

    /// Each item of a `per_item` cap with its remembered scored times.
    pub fn items(&self) -> impl Iterator<Item = (&str, &[EventTime])> {
        self.items.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub fn item_count(&self) -> usize {
        self.items.len()
    }
}

/// Items a per-item ledger lists before it switches to a table.
const LIST_MAX: usize = 8;

/// The times of each item of a `per_item` cap: a list searched in order while
/// short (most contacts open a handful of emails in a window, and a table's
/// smallest allocation holds four entries and a control block), a table past
/// [`LIST_MAX`] items. Stored as a map of item to times either way. The
/// table, rare, is boxed: the list alone sets the size, so that a ledger
/// fits one cache line.
#[derive(Debug, Clone)]
enum Items {
    List(Vec<(CompactString, ItemTimes)>),
    Table(Box<HashMap<CompactString, ItemTimes>>),
}

impl Default for Items {
    fn default() -> Self {
        Items::List(Vec::new())
    }
}

impl Items {
    fn get(&self, item: &str) -> Option<&ItemTimes> {
        match self {
            Items::List(list) => list.iter().find(|(k, _)| k == item).map(|(_, v)| v),
            Items::Table(table) => table.get(item),
        }
    }

    fn get_or_insert(&mut self, item: &str) -> &mut ItemTimes {
        let found = match self {
            Items::List(list) => list.iter().position(|(k, _)| k == item),
            Items::Table(_) => None,
        };
        if let Items::List(list) = self {
            if found.is_none() && list.len() >= LIST_MAX {
                *self = Items::Table(Box::new(std::mem::take(list).into_iter().collect()));
            }
        }
        match self {
            Items::List(list) => {
                let at = found.unwrap_or_else(|| {
                    if list.capacity() == 0 {
                        list.reserve_exact(1);
                    }
                    list.push((item.into(), ItemTimes::new()));
                    list.len() - 1
                });
                &mut list[at].1
            }
            Items::Table(table) => table.entry(item.into()).or_default(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Items::List(list) => list.len(),
            Items::Table(table) => table.len(),
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&ItemTimes) -> bool) {
        match self {
            Items::List(list) => list.retain(|(_, v)| keep(v)),
            Items::Table(table) => table.retain(|_, v| keep(v)),
        }
    }

    /// Without a boxed iterator: ledgers are serialized on every state write.
    fn iter(&self) -> impl Iterator<Item = (&CompactString, &ItemTimes)> {
        let (list, table) = match self {
            Items::List(list) => (Some(list), None),
            Items::Table(table) => (None, Some(table)),
        };
        let listed = list.into_iter().flatten().map(|(k, v)| (k, v));
        listed.chain(table.into_iter().flat_map(|t| t.iter()))
    }
}

/// The same items with the same times, in whatever order.
impl PartialEq for Items {
    fn eq(&self, other: &Items) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Serialize for Items {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The length up front: postcard needs it.
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Read straight into a list (a table past [`LIST_MAX`] items): the service
/// reads a contact's state for every batch it appears in.
impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Items, D::Error> {
        struct ItemsVisitor;

        impl<'de> Visitor<'de> for ItemsVisitor {
            type Value = Items;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of item to scored times")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Items, A::Error> {
                let mut items = Items::default();
                while let Some((item, times)) = map.next_entry::<CompactString, ItemTimes>()? {
                    *items.get_or_insert(&item) = times;
                }
                Ok(items)
            }
        }

        d.deserialize_map(ItemsVisitor)
    }
}

/// Whether a match at `t` may score against `times` (sorted ascending);
/// if so, records it and forgets what the cap no longer needs.
fn admit(times: &mut ItemTimes, cap: &Cap, t: EventTime, clock: EventTime, grace_ms: i64) -> bool {
    let scored = match cap.window_ms {
        Some(w) => {
            let from = t.plus_millis(-w);
            times.iter().filter(|s| **s > from && **s <= t).count()
        }
        None => times.iter().filter(|s| **s <= t).count(),
    };
    if scored >= cap.max_times as usize {
        return false;
    }
    let at = times.partition_point(|s| *s <= t);
    times.insert(at, t);
    match cap.window_ms {
        None => times.truncate(cap.max_times as usize),
        Some(w) => {
            let horizon = clock.plus_millis(-w.saturating_add(grace_ms));
            let stale = times.partition_point(|s| *s <= horizon);
            times.drain(..stale);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn t(days: i64) -> EventTime {
        EventTime::from_millis(days * DAY)
    }

    #[test]
    fn a_ledger_fits_one_cache_line() {
        assert!(std::mem::size_of::<CapLedger>() <= 64);
    }

    #[test]
    fn the_prefetched_address_is_where_a_lookup_reads() {
        let plain = Cap {
            max_times: 5,
            window_ms: None,
            per_item: false,
        };
        let mut l = CapLedger::default();
        for d in 0..3 {
            assert!(l.admit(&plain, "", t(d), t(d), 0));
        }
        assert_eq!(l.times_ptr(), l.times.as_ptr().cast());

        let per_item = Cap {
            per_item: true,
            ..plain
        };
        let mut l = CapLedger::default();
        assert!(l.admit(&per_item, "email-1", t(0), t(0), 0));
        let Items::List(list) = &l.items else {
            panic!("one item is a list")
        };
        assert_eq!(l.times_ptr(), list.as_ptr().cast());
    }

    #[test]
    fn window_cap_slides() {
        let cap = Cap {
            max_times: 2,
            window_ms: Some(7 * DAY),
            per_item: false,
        };
        let mut l = CapLedger::default();
        assert!(l.admit(&cap, "a", t(100), t(100), 0));
        assert!(l.admit(&cap, "b", t(101), t(101), 0));
        assert!(!l.admit(&cap, "c", t(103), t(103), 0));
        assert!(
            !l.admit(&cap, "c", t(106), t(106), 0),
            "day 100 is still inside (99, 106]"
        );
        assert!(
            l.admit(&cap, "c", t(107), t(107), 0),
            "day 100 left the window (100, 107]"
        );
        assert!(
            !l.admit(&cap, "d", t(107), t(107), 0),
            "101 and 107 fill the window"
        );
    }

    #[test]
    fn per_item_caps_count_each_item() {
        let cap = Cap {
            max_times: 1,
            window_ms: Some(DAY),
            per_item: true,
        };
        let mut l = CapLedger::default();
        assert!(l.admit(&cap, "em-1", t(10), t(10), 0));
        assert!(l.admit(&cap, "em-2", t(10), t(10), 0));
        assert!(!l.admit(&cap, "em-1", t(10), t(10), 0));
    }

    #[test]
    fn late_events_count_only_matches_before_them() {
        let cap = Cap {
            max_times: 1,
            window_ms: None,
            per_item: false,
        };
        let mut l = CapLedger::default();
        assert!(l.admit(&cap, "", t(10), t(10), 0));
        assert!(
            l.admit(&cap, "", t(5), t(10), 0),
            "nothing scored at or before day 5"
        );
        assert!(!l.admit(&cap, "", t(7), t(10), 0));
        assert_eq!(
            l.times(""),
            &[t(5)],
            "a lifetime cap keeps the earliest max_times"
        );
    }

    /// The shape ledgers have always been stored in: a map of item to times.
    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct StoredLedger {
        times: Vec<EventTime>,
        items: std::collections::HashMap<String, Vec<EventTime>>,
        swept_at: Option<EventTime>,
    }

    #[test]
    fn per_item_times_are_stored_as_a_map() {
        let cap = Cap {
            max_times: 2,
            window_ms: Some(30 * DAY),
            per_item: true,
        };
        let mut l = CapLedger::default();
        for (item, day) in [("em-2", 3), ("em-10", 1), ("em-2", 1), ("em-1", 2)] {
            assert!(l.admit(&cap, item, t(day), t(3), 0));
        }
        let stored: StoredLedger = postcard::from_bytes(&postcard::to_stdvec(&l).unwrap()).unwrap();
        let want = [
            ("em-1", vec![t(2)]),
            ("em-10", vec![t(1)]),
            ("em-2", vec![t(1), t(3)]),
        ];
        assert_eq!(
            stored.items,
            want.iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        );
        // And a ledger stored that way reads back as the same ledger.
        let read: CapLedger = postcard::from_bytes(&postcard::to_stdvec(&stored).unwrap()).unwrap();
        assert_eq!(read, l);
        assert_eq!(read.times("em-2"), &[t(1), t(3)]);
        // Past eight items the ledger keeps a table; stored the same way.
        for i in 0..20 {
            assert!(l.admit(&cap, &format!("more-{i}"), t(3), t(3), 0));
        }
        assert!(matches!(l.items, Items::Table(_)));
        let stored: StoredLedger = postcard::from_bytes(&postcard::to_stdvec(&l).unwrap()).unwrap();
        assert_eq!(stored.items.len(), 23);
        assert_eq!(stored.items["em-2"], vec![t(1), t(3)]);
        let read: CapLedger = postcard::from_bytes(&postcard::to_stdvec(&stored).unwrap()).unwrap();
        assert_eq!(read, l);
        assert!(
            !l.clone().admit(&cap, "em-2", t(3), t(3), 0),
            "em-2 is full"
        );
    }

    proptest::proptest! {
        /// Against the plain definition, over every scored match kept: for
        /// events at most `grace` behind the clock, a match scores when fewer
        /// than `max_times` scored matches of its item lie in `(t − window, t]`
        /// (`≤ t` for a lifetime cap).
        #[test]
        fn agrees_with_a_list_of_every_scored_match(
            max_times in 1u32..4,
            window_days in proptest::option::of(1i64..4),
            per_item in proptest::bool::ANY,
            // Up to 12 items: past the list's 8, so that lists become tables.
            steps in proptest::collection::vec((0u8..12, 0i64..DAY / 4, 0i64..2 * DAY), 1..300),
        ) {
            let cap = Cap { max_times, window_ms: window_days.map(|d| d * DAY), per_item };
            let grace = 2 * DAY;
            let mut l = CapLedger::default();
            let mut scored: Vec<(String, i64)> = Vec::new();
            let mut clock = 10 * DAY;
            for (item, advance, late) in steps {
                clock += advance;
                let t = clock - late;
                let item = format!("em-{item}");
                let key = if per_item { item.clone() } else { String::new() };
                let count = scored
                    .iter()
                    .filter(|(k, s)| *k == key && *s <= t && cap.window_ms.is_none_or(|w| *s > t - w))
                    .count();
                let expected = count < max_times as usize;
                let got = l.admit(&cap, &item, EventTime::from_millis(t), EventTime::from_millis(clock), grace);
                proptest::prop_assert_eq!(got, expected, "{} at {} (clock {})", item, t, clock);
                if got {
                    scored.push((key, t));
                }
            }
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let cap = Cap {
            max_times: 3,
            window_ms: Some(DAY),
            per_item: true,
        };
        let mut l = CapLedger::default();
        for i in 0..10_000 {
            let now = EventTime::from_millis(i * DAY / 10);
            l.admit(&cap, &format!("item-{i}"), now, now, DAY);
        }
        assert!(
            l.item_count() < 40,
            "stale items must be swept, got {}",
            l.item_count()
        );
    }
}
