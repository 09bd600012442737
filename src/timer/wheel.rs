//! A hierarchical timing wheel in the manner of tokio's: six levels of 64
//! slots (1 ms … ~2.2 years per rotation), entries in a slab listed by
//! number in their slot, O(1) insert and cancel, poll cost proportional to
//! the timers due plus the slots visited. Timers further out than the top
//! level's range wait in an ordered overflow set and move in as time
//! approaches.

use std::collections::BTreeSet;
use std::hash::Hash;

use foldhash::HashMap;

use super::index::KeyIndex;
use crate::time::EventTime;

const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const LEVELS: usize = 6;
/// Timers whose tick differs from `elapsed` at or above this bit overflow.
const RANGE_BITS: u32 = SLOT_BITS * LEVELS as u32;
pub(super) const NIL: u32 = u32::MAX;
/// How many entries ahead an expiring slot's walk prefetches.
const EXPIRE_AHEAD: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    Slot {
        level: u8,
        slot: u8,
    },
    /// Due at or before `elapsed`: returned by the next poll.
    Ready,
    Overflow,
    Free,
}

#[derive(Debug, Clone)]
struct Entry<K> {
    key: Option<K>,
    tick: u64,
    /// Where in its slot's (or the ready) list it is.
    pos: u32,
    loc: Loc,
}

/// A timer wheel: at most one timer per key.
#[derive(Debug, Clone)]
pub struct TimerWheel<K, I = HashMap<K, u32>> {
    /// Every timer with a tick ≤ `elapsed` has been returned or is `Ready`.
    elapsed: u64,
    entries: Vec<Entry<K>>,
    free: Vec<u32>,
    index: I,
    /// The entries of each slot, by number. A slot's list is read in one
    /// pass when it expires (its entries' misses overlap, unlike a linked
    /// list's), and a cancel moves only the list's last entry.
    slots: [[Vec<u32>; SLOTS]; LEVELS],
    occupied: [u64; LEVELS],
    ready: Vec<u32>,
    overflow: BTreeSet<(u64, u32)>,
    /// No slot comes due before this tick (0: not known): a poll to an
    /// earlier tick, with nothing ready or overflowing, only moves the clock.
    quiet_until: u64,
}

/// Maps event time to an unsigned tick preserving order.
fn tick(t: EventTime) -> u64 {
    (t.millis() as u64) ^ (1 << 63)
}

fn time(tick: u64) -> EventTime {
    EventTime::from_millis((tick ^ (1 << 63)) as i64)
}

impl<K: Clone + Eq + Hash + Ord> Default for TimerWheel<K> {
    fn default() -> Self {
        TimerWheel::new(EventTime::MIN)
    }
}

impl<K: Clone + Eq + Hash + Ord> TimerWheel<K> {
    /// A wheel whose clock starts at `now`.
    pub fn new(now: EventTime) -> Self {
        TimerWheel::with_index(now, HashMap::default())
    }
}

impl<K: Clone + Ord, I: KeyIndex<K>> TimerWheel<K, I> {
    /// A wheel whose clock starts at `now`, finding keys with `index` (empty).
    pub fn with_index(now: EventTime, index: I) -> Self {
        TimerWheel {
            elapsed: tick(now),
            entries: Vec::new(),
            free: Vec::new(),
            index,
            slots: std::array::from_fn(|_| std::array::from_fn(|_| Vec::new())),
            occupied: [0; LEVELS],
            ready: Vec::new(),
            overflow: BTreeSet::new(),
            quiet_until: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The wheel's clock: every timer due at or before it has been polled.
    pub fn now(&self) -> EventTime {
        time(self.elapsed)
    }

    /// Hints the cache to fetch the timer entry of `key`, if it has one
    /// (what `insert` and `cancel` read first).
    pub fn prefetch_entry(&self, key: &K) {
        if let Some(i) = self.index.get(key) {
            crate::cache::prefetch(&self.entries[i as usize] as *const Entry<K>);
        }
    }

    /// When the timer of `key` is due, if it has one.
    pub fn due(&self, key: &K) -> Option<EventTime> {
        self.index
            .get(key)
            .map(|i| time(self.entries[i as usize].tick))
    }

    /// Sets the timer of `key` to `due`, replacing any earlier one. A timer due
    /// at or before the wheel's clock is returned by the next `poll`.
    pub fn insert(&mut self, key: K, due: EventTime) {
        self.cancel(&key);
        let free = Entry {
            key: None,
            tick: 0,
            pos: 0,
            loc: Loc::Free,
        };
        let idx = match self.index.fixed_entry(&key) {
            Some(i) => {
                if i as usize >= self.entries.len() {
                    self.entries.resize(i as usize + 1, free);
                }
                i
            }
            None => match self.free.pop() {
                Some(i) => i,
                None => {
                    self.entries.push(free);
                    (self.entries.len() - 1) as u32
                }
            },
        };
        let e = &mut self.entries[idx as usize];
        e.key = Some(key.clone());
        e.tick = tick(due);
        self.index.insert(key, idx);
        self.place(idx);
    }

    /// Removes the timer of `key`; returns when it was due.
    pub fn cancel(&mut self, key: &K) -> Option<EventTime> {
        let idx = self.index.remove(key)?;
        self.unlink(idx);
        let e = &mut self.entries[idx as usize];
        e.key = None;
        e.loc = Loc::Free;
        let due = time(e.tick);
        self.release(key, idx);
        Some(due)
    }

    /// Removes every timer whose key matches.
    pub fn cancel_where(&mut self, mut doomed: impl FnMut(&K) -> bool) {
        let mut keys = self.index.keys();
        keys.retain(|k| doomed(k));
        for k in keys {
            self.cancel(&k);
        }
    }

    /// Advances the clock to `now` and appends every timer due at or before it
    /// to `out`, ordered by (due, key). `now` earlier than the clock is a no-op
    /// apart from returning timers inserted as already due.
    pub fn poll(&mut self, now: EventTime, out: &mut Vec<(EventTime, K)>) {
        let now = tick(now);
        if now < self.quiet_until && self.ready.is_empty() && self.overflow.is_empty() {
            self.elapsed = self.elapsed.max(now);
            return;
        }
        let start = out.len();
        self.drain_ready(out);
        if now > self.elapsed {
            loop {
                self.migrate_overflow(now);
                match self.next_expiration() {
                    Some((level, slot, deadline)) if deadline <= now => {
                        self.elapsed = deadline;
                        self.expire_slot(level, slot, now, out);
                    }
                    _ => break,
                }
            }
            self.elapsed = now;
            self.migrate_overflow(now);
            self.drain_ready(out);
        }
        out[start..].sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        // The earliest slot stays the earliest, at the same tick, while the
        // clock moves towards it and nothing is placed.
        self.quiet_until = self.next_expiration().map_or(u64::MAX, |(_, _, at)| at);
    }

    /// A lower bound on the next due time (exact for timers within 64 ms).
    pub fn next_due(&self) -> Option<EventTime> {
        if !self.ready.is_empty() {
            return Some(time(self.elapsed));
        }
        if let Some((_, _, deadline)) = self.next_expiration() {
            return Some(time(deadline));
        }
        self.overflow.first().map(|(t, _)| time(*t))
    }

    fn level_for(&self, tick: u64) -> Option<usize> {
        let masked = (self.elapsed ^ tick) | (SLOTS as u64 - 1);
        let significant = 63 - masked.leading_zeros();
        (significant < RANGE_BITS).then_some((significant / SLOT_BITS) as usize)
    }

    fn place(&mut self, idx: u32) {
        self.quiet_until = 0;
        let tick = self.entries[idx as usize].tick;
        if tick <= self.elapsed {
            self.push_list(idx, Loc::Ready);
        } else if let Some(level) = self.level_for(tick) {
            let slot = ((tick >> (level as u32 * SLOT_BITS)) & (SLOTS as u64 - 1)) as usize;
            self.push_list(
                idx,
                Loc::Slot {
                    level: level as u8,
                    slot: slot as u8,
                },
            );
            self.occupied[level] |= 1 << slot;
        } else {
            self.entries[idx as usize].loc = Loc::Overflow;
            self.overflow.insert((tick, idx));
        }
    }

    fn list_mut(&mut self, loc: Loc) -> &mut Vec<u32> {
        match loc {
            Loc::Slot { level, slot } => &mut self.slots[level as usize][slot as usize],
            _ => &mut self.ready,
        }
    }

    fn push_list(&mut self, idx: u32, loc: Loc) {
        let list = self.list_mut(loc);
        let pos = list.len() as u32;
        list.push(idx);
        let e = &mut self.entries[idx as usize];
        e.pos = pos;
        e.loc = loc;
    }

    fn unlink(&mut self, idx: u32) {
        let e = &self.entries[idx as usize];
        let (pos, loc, tick) = (e.pos as usize, e.loc, e.tick);
        match loc {
            Loc::Overflow => {
                self.overflow.remove(&(tick, idx));
            }
            Loc::Free => {}
            Loc::Slot { .. } | Loc::Ready => {
                let list = self.list_mut(loc);
                list.swap_remove(pos);
                let (moved, empty) = (list.get(pos).copied(), list.is_empty());
                if let Some(moved) = moved {
                    self.entries[moved as usize].pos = pos as u32;
                }
                if let (Loc::Slot { level, slot }, true) = (loc, empty) {
                    self.occupied[level as usize] &= !(1 << slot);
                }
            }
        }
    }

    /// Moves overflow timers that now fit the wheel's range into it.
    fn migrate_overflow(&mut self, now: u64) {
        while let Some(&(tick, idx)) = self.overflow.first() {
            let wheel_empty = self.occupied.iter().all(|o| *o == 0);
            if wheel_empty && tick <= now && tick > self.elapsed {
                // Nothing in the wheel comes first: jump the clock to it.
                self.elapsed = tick - 1;
            }
            if self.level_for(tick).is_none() && tick > self.elapsed {
                break;
            }
            self.overflow.pop_first();
            self.place(idx);
        }
    }

    /// The earliest occupied slot: (level, slot, the slot's start tick).
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied == 0 {
                continue;
            }
            let shift = level as u32 * SLOT_BITS;
            let now_slot = (self.elapsed >> shift) as u32 & (SLOTS as u32 - 1);
            let rotated = occupied.rotate_right(now_slot);
            let slot = (rotated.trailing_zeros() + now_slot) as usize % SLOTS;
            let level_range = 1u64 << (shift + SLOT_BITS);
            let level_start = self.elapsed & !(level_range - 1);
            let mut deadline = level_start + ((slot as u64) << shift);
            if deadline <= self.elapsed && level > 0 && slot as u32 != now_slot {
                deadline += level_range;
            }
            return Some((level, slot, deadline.max(self.elapsed)));
        }
        None
    }

    /// Empties a slot whose time has come during a poll up to `until`: its
    /// timers due by `until` fire at once (the poll sorts what it returns),
    /// rather than moving down a level at a time until their own slot comes;
    /// the others move to the level where they now belong.
    fn expire_slot(
        &mut self,
        level: usize,
        slot: usize,
        until: u64,
        out: &mut Vec<(EventTime, K)>,
    ) {
        let list = std::mem::take(&mut self.slots[level][slot]);
        self.occupied[level] &= !(1 << slot);
        for k in 0..list.len() {
            if let Some(&ahead) = list.get(k + EXPIRE_AHEAD) {
                crate::cache::prefetch(&self.entries[ahead as usize] as *const Entry<K>);
            }
            let idx = list[k];
            if self.entries[idx as usize].tick <= until {
                self.fire(idx, out);
            } else {
                self.place(idx);
            }
        }
        let (level, slot) = (level as u8, slot as u8);
        self.give_back(Loc::Slot { level, slot }, list);
    }

    /// Returns a worked-through list's room to `loc`, unless `loc` got a
    /// list of its own meanwhile.
    fn give_back(&mut self, loc: Loc, mut list: Vec<u32>) {
        list.clear();
        let home = self.list_mut(loc);
        if home.is_empty() {
            *home = list;
        }
    }

    fn drain_ready(&mut self, out: &mut Vec<(EventTime, K)>) {
        let list = std::mem::take(&mut self.ready);
        for &idx in &list {
            self.fire(idx, out);
        }
        self.give_back(Loc::Ready, list);
    }

    fn fire(&mut self, idx: u32, out: &mut Vec<(EventTime, K)>) {
        let e = &mut self.entries[idx as usize];
        let key = e.key.take().expect("a listed entry has a key");
        e.loc = Loc::Free;
        out.push((time(e.tick), key.clone()));
        self.index.remove(&key);
        self.release(&key, idx);
    }

    /// Keeps entry `idx`, just freed by `key`, for reuse by any key (unless
    /// the index fixes it for `key`).
    fn release(&mut self, key: &K, idx: u32) {
        if self.index.fixed_entry(key).is_none() {
            self.free.push(idx);
        }
    }
}

#[cfg(test)]
mod tests;
