//! One processing step: the records or due timers of a call, applied to the
//! contacts they touch and gathered into the one state write the step
//! commits (contact states, timer index rows, outbox entries, offsets and
//! the partition clocks).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use super::{
    InputRecord, Outgoing, PartitionInfo, ProcessError, Processor, TimerKey, CLOCK_KEY, DELAYS_KEPT,
};
use crate::dedupe::digest;
use crate::event::{DecodeError, Event};
use crate::scoring::{ContactState, Effects, Engine, TierChange};
use crate::state::{Batch, OutboxEntry, StateStore, TimerRow};
use crate::time::EventTime;

/// Everything one step changes, committed at its end.
pub(super) struct Step<'p, S: StateStore> {
    pub(super) p: &'p mut Processor<S>,
    batch: Batch,
    contacts: HashMap<(u32, String), ContactState>,
    seen: HashSet<(u32, String, u64)>,
    out: Vec<Outgoing>,
    fx: Effects,
    /// `emitted_at` of the tier changes this step writes.
    emitted_at: String,
    wall: EventTime,
}

impl<'p, S: StateStore> Step<'p, S> {
    pub(super) fn new(p: &'p mut Processor<S>, wall: EventTime) -> Self {
        Step {
            p,
            batch: Batch::default(),
            contacts: HashMap::new(),
            seen: HashSet::new(),
            out: Vec::new(),
            fx: Effects::default(),
            emitted_at: wall.to_rfc3339(),
            wall,
        }
    }

    fn info(&mut self, partition: u32) -> Result<&mut PartitionInfo, ProcessError> {
        self.p
            .partitions
            .get_mut(&partition)
            .ok_or(ProcessError::NotAssigned(partition))
    }

    pub(super) fn record(
        &mut self,
        rec: InputRecord,
        event: Result<Event, DecodeError>,
        wall: EventTime,
    ) -> Result<(), ProcessError> {
        let partition = rec.partition;
        let event_clock = self.p.settings.event_clock;
        let info = self.info(partition)?;
        if info
            .next_offsets
            .get(&rec.topic)
            .is_some_and(|next| rec.offset < *next)
        {
            self.p.stats.redelivered += 1;
            return Ok(());
        }
        match info.next_offsets.get_mut(&rec.topic) {
            Some(next) => *next = rec.offset + 1,
            None => {
                info.next_offsets.insert(rec.topic.clone(), rec.offset + 1);
            }
        }
        let target = match (&event, event_clock) {
            (Ok(e), true) => e.occurred_at,
            (Err(_), true) => info.clock,
            (_, false) => wall,
        };
        let moved = target > info.clock;
        info.clock = info.clock.max(target);
        let now = info.clock;
        if moved {
            self.batch.put_offset(partition, CLOCK_KEY, now.millis());
            if event_clock {
                self.advance(partition, now)?;
            }
        }
        self.p.stats.consumed += 1;
        self.batch.put_offset(partition, &rec.topic, rec.offset + 1);
        let event = match event {
            Ok(event) => event,
            Err(e) => return self.dead_letter(&rec, &e),
        };
        let contact = event.contact.0.to_string();
        let d = digest(&event.id.0);
        let fresh = self.seen.insert((partition, contact.clone(), d));
        let remembered = self.p.store.seen(partition, &contact, d)?;
        if !fresh
            || remembered.is_some_and(|at| at.plus_millis(self.p.settings.dedupe_window_ms) > now)
        {
            self.p.stats.duplicates += 1;
            return Ok(());
        }
        self.batch.put_seen(partition, &contact, d, now);
        let state = load(
            &mut self.contacts,
            &*self.p.store,
            &self.p.engine,
            partition,
            &contact,
        )?;
        let before = next_dues(state);
        self.fx.clear();
        self.p
            .engine
            .apply_event(state, &event, &rec.topic, now, &mut self.fx);
        self.effects(partition, &contact, &before)
    }

    /// Fires the timers of `partition` due at or before `now`, in time order,
    /// including those the firing itself sets within that range.
    pub(super) fn advance(&mut self, partition: u32, now: EventTime) -> Result<(), ProcessError> {
        if self.p.needs_refill(partition, now)? {
            // The index must hold this step's timers before it is read.
            self.flush()?;
            self.p.refill(partition, now)?;
        }
        let mut polled = Vec::new();
        let mut due = BinaryHeap::new();
        loop {
            // Newly due timers (set by a firing) join those polled before.
            self.info(partition)?.wheel.poll(now, &mut polled);
            due.extend(polled.drain(..).map(Reverse));
            let Some(Reverse((at, key))) = due.pop() else {
                return Ok(());
            };
            self.fire(at, key)?;
        }
    }

    fn dead_letter(&mut self, rec: &InputRecord, e: &DecodeError) -> Result<(), ProcessError> {
        *self
            .p
            .stats
            .rejected
            .entry((rec.topic.clone(), e.reason()))
            .or_default() += 1;
        let headers = vec![
            ("error.reason".to_string(), e.reason().as_bytes().to_vec()),
            ("error.detail".to_string(), e.to_string().into_bytes()),
            ("source.topic".to_string(), rec.topic.clone().into_bytes()),
            (
                "source.partition".to_string(),
                rec.partition.to_string().into_bytes(),
            ),
            (
                "source.offset".to_string(),
                rec.offset.to_string().into_bytes(),
            ),
        ];
        let mut entry = OutboxEntry {
            topic: self.p.settings.dead_letter_topic.clone(),
            key: rec.key.clone(),
            payload: rec.payload.clone().unwrap_or_default(),
            headers,
        };
        cut_to_fit(&mut entry, self.p.settings.max_message_bytes);
        self.push(rec.partition, entry)
    }

    /// Fires one timer.
    fn fire(&mut self, at: EventTime, key: TimerKey) -> Result<(), ProcessError> {
        let row = TimerRow {
            partition: key.partition,
            due: at,
            model: key.model,
            contact: key.contact.clone(),
        };
        self.batch.delete_timer(&row);
        self.p.stats.timers_fired += 1;
        if !self.p.settings.event_clock && self.p.timer_delays.len() < DELAYS_KEPT {
            self.p.timer_delays.push(self.wall.millis() - at.millis());
        }
        let state = load(
            &mut self.contacts,
            &*self.p.store,
            &self.p.engine,
            key.partition,
            &key.contact,
        )?;
        let mut before = next_dues(state);
        self.fx.clear();
        self.p
            .engine
            .fire(state, key.model as usize, at, &mut self.fx);
        // The fired row is gone already; don't delete it twice.
        if let Some(b) = before.get_mut(key.model as usize) {
            *b = None;
        }
        self.effects(key.partition, &key.contact, &before)
    }

    /// Turns the engine's effects into outbox entries, index rows and wheel updates.
    fn effects(
        &mut self,
        partition: u32,
        contact: &str,
        before: &[Option<EventTime>],
    ) -> Result<(), ProcessError> {
        let changes: Vec<TierChange> = std::mem::take(&mut self.fx.changes);
        for change in &changes {
            self.p.stats.tier_changes += 1;
            let key = (
                change.model as u16,
                change.from as u16,
                change.to as u16,
                change.cause.name(),
            );
            *self.p.stats.changes.entry(key).or_default() += 1;
            let mut payload = Vec::with_capacity(512);
            self.p
                .engine
                .published(contact, change)
                .write_json(&mut payload, Some(&self.emitted_at))
                .unwrap_or_default(); // writes into a Vec: cannot fail
            let entry = OutboxEntry {
                topic: self.p.settings.output_topic.clone(),
                key: Some(contact.as_bytes().to_vec()),
                payload,
                headers: Vec::new(),
            };
            self.push(partition, entry)?;
        }
        let timers = std::mem::take(&mut self.fx.timers);
        for t in timers {
            let model = t.model as u16;
            let row = |due| TimerRow {
                partition,
                due,
                model,
                contact: contact.to_string(),
            };
            if let Some(old) = before.get(t.model).copied().flatten() {
                self.batch.delete_timer(&row(old));
            }
            if let Some(due) = t.due {
                self.batch.put_timer(&row(due));
            }
            let key = TimerKey {
                partition,
                contact: contact.to_string(),
                model,
            };
            let info = self.info(partition)?;
            match t.due {
                // Later ones are loaded from the index when their time nears.
                Some(due) if due < info.loaded_until => info.wheel.insert(key, due),
                _ => {
                    info.wheel.cancel(&key);
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, partition: u32, entry: OutboxEntry) -> Result<(), ProcessError> {
        let info = self.info(partition)?;
        let seq = info.next_seq;
        info.next_seq += 1;
        self.batch.put_outbox(partition, seq, &entry);
        self.out.push((partition, seq, entry));
        Ok(())
    }

    /// Writes what the step changed so far (a consistent cut: the offsets
    /// written are those of the records whose effects are written).
    fn flush(&mut self) -> Result<(), ProcessError> {
        for ((partition, contact), state) in &self.contacts {
            self.batch.put_contact(*partition, contact, state);
        }
        if !self.batch.is_empty() {
            self.p.store.commit(std::mem::take(&mut self.batch))?;
        }
        Ok(())
    }

    pub(super) fn commit(mut self) -> Result<Vec<Outgoing>, ProcessError> {
        self.flush()?;
        Ok(self.out)
    }
}

/// A contact's state for this step: from the step's own changes, else the store, else new.
fn load<'c, S: StateStore>(
    contacts: &'c mut HashMap<(u32, String), ContactState>,
    store: &S,
    engine: &Engine,
    partition: u32,
    contact: &str,
) -> Result<&'c mut ContactState, ProcessError> {
    let key = (partition, contact.to_string());
    if !contacts.contains_key(&key) {
        let state = match store.contact(partition, contact)? {
            Some(s) => s,
            None => engine.new_contact(),
        };
        contacts.insert(key.clone(), state);
    }
    Ok(contacts.get_mut(&key).expect("inserted above"))
}

/// When each model's timer of a contact is due now (to find the index rows a change replaces).
fn next_dues(state: &ContactState) -> Vec<Option<EventTime>> {
    state
        .models
        .iter()
        .map(|m| m.next.as_ref().map(|p| p.at))
        .collect()
}

/// What a record costs on the wire besides its key, value and headers, with
/// room to spare (librdkafka counts at most ~40 bytes).
const RECORD_OVERHEAD: usize = 256;
/// The most a header costs besides its name and value (two varint lengths).
const HEADER_OVERHEAD: usize = 10;

/// Cuts a dead letter's value so that the record fits in `max_bytes` (the
/// producer's `message.max.bytes`): a record over it could never be sent.
/// A cut record keeps the value's first bytes and says the original size in
/// an `error.original_size` header; the `source.*` headers point at the
/// whole record.
fn cut_to_fit(entry: &mut OutboxEntry, max_bytes: usize) {
    const HEADER: &str = "error.original_size";
    let size = entry.payload.len();
    let headers = |entry: &OutboxEntry| -> usize {
        let named = entry.headers.iter().map(|(k, v)| k.len() + v.len());
        named.map(|n| n + HEADER_OVERHEAD).sum()
    };
    let fixed = RECORD_OVERHEAD + entry.key.as_ref().map_or(0, Vec::len);
    if fixed + headers(entry) + size <= max_bytes {
        return;
    }
    entry
        .headers
        .push((HEADER.to_string(), size.to_string().into_bytes()));
    let room = max_bytes.saturating_sub(fixed + headers(entry));
    entry.payload.truncate(room);
}
