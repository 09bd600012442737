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
                        // Room for a second item: most lists that get one
                        // get two, and growing into it is a `realloc`.
                        list.reserve_exact(2);
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
mod tests;
