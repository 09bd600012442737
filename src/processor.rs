//! The processing step of the live service: input records, or timers come
//! due, → scoring → ONE state write holding the contact states, the timer
//! index, the outbox entries and the consumed offsets → the entries to
//! publish. No Kafka and no clock inside: `now` is a parameter and the store
//! is any [`StateStore`], so everything here is testable without a broker.
//!
//! Timers: the persisted index (family `timers`) is the truth; the in-memory
//! wheel holds only the next `timer_horizon` and is refilled from the index,
//! so start-up cost and memory do not grow with far-future timers.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use thiserror::Error;

use crate::dedupe::digest;
use crate::event::{decode, DecodeError, TopicMap};
use crate::scoring::{ContactState, Effects, Engine, TierChange};
use crate::state::{Batch, OutboxEntry, StateStore, StoreError, TimerRow};
use crate::time::EventTime;
use crate::timer::TimerWheel;

/// One consumed Kafka record.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// What the processor needs from the configuration.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    pub topics: TopicMap,
    pub output_topic: String,
    pub dead_letter_topic: String,
    /// `Some(skew)` in wall-clock mode: events further ahead are dead-lettered.
    pub max_clock_skew_ms: Option<i64>,
    pub dedupe_window_ms: i64,
    /// How far ahead the in-memory wheel is filled from the timer index.
    pub timer_horizon_ms: i64,
}

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("partition {0} is not assigned")]
    NotAssigned(u32),
}

/// Counts since start (exported as metrics by the service).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    pub consumed: u64,
    pub rejected: BTreeMap<(String, &'static str), u64>,
    pub duplicates: u64,
    pub tier_changes: u64,
    pub timers_fired: u64,
}

/// A timer in the wheel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerKey {
    pub partition: u32,
    pub contact: String,
    pub model: u16,
}

/// An outbox entry ready to publish, with its place in the outbox.
pub type Outgoing = (u32, u64, OutboxEntry);

/// What taking a partition yields: (input topic, offset to resume from) for
/// each input topic, and the outbox entries still to publish.
pub type Assignment = (Vec<(String, Option<i64>)>, Vec<Outgoing>);

#[derive(Debug, Clone)]
struct PartitionInfo {
    next_seq: u64,
    loaded_until: EventTime,
    clock: EventTime,
}

pub struct Processor<S: StateStore> {
    engine: Engine,
    store: Arc<S>,
    settings: ProcessorSettings,
    wheel: TimerWheel<TimerKey>,
    partitions: BTreeMap<u32, PartitionInfo>,
    pub stats: ProcessStats,
}

/// Everything one step changes, committed at its end.
struct Step<'p, S: StateStore> {
    p: &'p mut Processor<S>,
    batch: Batch,
    contacts: HashMap<(u32, String), ContactState>,
    seen: HashSet<(u32, String, u64)>,
    out: Vec<Outgoing>,
    fx: Effects,
}

impl<S: StateStore> Processor<S> {
    pub fn new(engine: Engine, store: Arc<S>, settings: ProcessorSettings) -> Self {
        Processor {
            engine,
            store,
            settings,
            wheel: TimerWheel::default(),
            partitions: BTreeMap::new(),
            stats: ProcessStats::default(),
        }
    }

    /// Timers in the in-memory wheel.
    pub fn timers_loaded(&self) -> usize {
        self.wheel.len()
    }

    /// Takes a partition: loads its near timers (those that came due while
    /// nobody owned it fire at the next `fire_due`, with their original
    /// instant) and returns where to resume each input topic, plus the
    /// entries still in its outbox, to publish again.
    pub fn assign(&mut self, partition: u32, now: EventTime) -> Result<Assignment, ProcessError> {
        let pending: Vec<Outgoing> = self
            .store
            .outbox(partition, usize::MAX)?
            .into_iter()
            .map(|(seq, e)| (partition, seq, e))
            .collect();
        let next_seq = pending.last().map_or(0, |(_, seq, _)| seq + 1);
        self.partitions.insert(
            partition,
            PartitionInfo {
                next_seq,
                loaded_until: EventTime::MIN,
                clock: EventTime::MIN,
            },
        );
        self.refill(partition, now)?;
        let offsets = [
            crate::event::EventKind::PageVisit,
            crate::event::EventKind::Email,
            crate::event::EventKind::Form,
            crate::event::EventKind::Purchase,
        ]
        .iter()
        .map(|k| {
            let topic = self.settings.topics.topic_of(*k).to_string();
            let at = self.store.offset(partition, &topic)?;
            Ok((topic, at))
        })
        .collect::<Result<Vec<_>, ProcessError>>()?;
        Ok((offsets, pending))
    }

    /// Gives a partition up: its timers leave the wheel (its state stays on disk).
    pub fn revoke(&mut self, partition: u32) {
        self.partitions.remove(&partition);
        self.wheel.cancel_where(|k| k.partition == partition);
    }

    fn refill(&mut self, partition: u32, now: EventTime) -> Result<(), ProcessError> {
        let until = now.plus_millis(self.settings.timer_horizon_ms);
        let info = self
            .partitions
            .get_mut(&partition)
            .ok_or(ProcessError::NotAssigned(partition))?;
        if info.loaded_until >= now.plus_millis(self.settings.timer_horizon_ms / 2) {
            return Ok(());
        }
        info.loaded_until = until;
        for row in self.store.timers_before(partition, until, usize::MAX)? {
            self.wheel.insert(
                TimerKey {
                    partition,
                    contact: row.contact,
                    model: row.model,
                },
                row.due,
            );
        }
        Ok(())
    }

    /// Applies a batch of consumed records at wall-clock `now`.
    pub fn process(
        &mut self,
        records: &[InputRecord],
        now: EventTime,
    ) -> Result<Vec<Outgoing>, ProcessError> {
        let mut step = Step::new(self);
        for rec in records {
            step.record(rec, now)?;
        }
        step.commit()
    }

    /// Fires every timer due at or before `now`, in time order.
    pub fn fire_due(&mut self, now: EventTime) -> Result<Vec<Outgoing>, ProcessError> {
        let partitions: Vec<u32> = self.partitions.keys().copied().collect();
        for partition in partitions {
            self.refill(partition, now)?;
        }
        let mut polled = Vec::new();
        self.wheel.poll(now, &mut polled);
        let mut step = Step::new(self);
        let mut due: BinaryHeap<Reverse<(EventTime, TimerKey)>> =
            polled.into_iter().map(Reverse).collect();
        while let Some(Reverse((at, key))) = due.pop() {
            for (next, key) in step.fire(at, key, now)? {
                due.push(Reverse((next, key)));
            }
        }
        step.commit()
    }

    /// Deletes published entries from the outbox.
    pub fn published(&self, done: &[(u32, u64)]) -> Result<(), ProcessError> {
        let mut batch = Batch::default();
        for (partition, seq) in done {
            batch.delete_outbox(*partition, *seq);
        }
        Ok(self.store.commit(batch)?)
    }
}

impl<'p, S: StateStore> Step<'p, S> {
    fn new(p: &'p mut Processor<S>) -> Self {
        Step {
            p,
            batch: Batch::default(),
            contacts: HashMap::new(),
            seen: HashSet::new(),
            out: Vec::new(),
            fx: Effects::default(),
        }
    }

    fn record(&mut self, rec: &InputRecord, wall: EventTime) -> Result<(), ProcessError> {
        let partition = rec.partition;
        let info = self
            .p
            .partitions
            .get_mut(&partition)
            .ok_or(ProcessError::NotAssigned(partition))?;
        info.clock = info.clock.max(wall);
        let now = info.clock;
        self.p.stats.consumed += 1;
        self.batch.put_offset(partition, &rec.topic, rec.offset + 1);
        let event = match self.decode(rec, now) {
            Ok(event) => event,
            Err(e) => return self.dead_letter(rec, &e),
        };
        let contact = event.contact.0.clone();
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
        self.effects(partition, &contact, &before, now)
    }

    fn decode(
        &self,
        rec: &InputRecord,
        now: EventTime,
    ) -> Result<crate::event::Event, DecodeError> {
        let kind = self
            .p
            .settings
            .topics
            .kind_of(&rec.topic)
            .ok_or_else(|| DecodeError::UnknownTopic(rec.topic.clone()))?;
        let payload = rec.payload.as_deref().unwrap_or_default();
        let event = decode(kind, rec.key.as_deref(), payload)?;
        if let Some(skew) = self.p.settings.max_clock_skew_ms {
            if event.occurred_at > now.plus_millis(skew) {
                return Err(DecodeError::FutureTimestamp {
                    occurred_at: event.occurred_at.to_rfc3339(),
                    clock: now.to_rfc3339(),
                    skew_ms: skew,
                });
            }
        }
        Ok(event)
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
        let entry = OutboxEntry {
            topic: self.p.settings.dead_letter_topic.clone(),
            key: rec.key.clone(),
            payload: rec.payload.clone().unwrap_or_default(),
            headers,
        };
        self.push(rec.partition, entry)
    }

    /// Fires one timer; returns timers it set that are already due.
    fn fire(
        &mut self,
        at: EventTime,
        key: TimerKey,
        now: EventTime,
    ) -> Result<Vec<(EventTime, TimerKey)>, ProcessError> {
        let row = TimerRow {
            partition: key.partition,
            due: at,
            model: key.model,
            contact: key.contact.clone(),
        };
        self.batch.delete_timer(&row);
        self.p.stats.timers_fired += 1;
        let state = load(
            &mut self.contacts,
            &*self.p.store,
            &self.p.engine,
            key.partition,
            &key.contact,
        )?;
        let before = next_dues(state);
        self.fx.clear();
        self.p
            .engine
            .fire(state, key.model as usize, at, &mut self.fx);
        // The fired row is gone already; don't delete it twice.
        let mut before = before;
        if let Some(b) = before.get_mut(key.model as usize) {
            *b = None;
        }
        let due_now = self
            .fx
            .timers
            .iter()
            .filter_map(|t| t.due.filter(|d| *d <= now).map(|d| (d, t.model)))
            .collect::<Vec<_>>();
        self.effects(key.partition, &key.contact, &before, now)?;
        Ok(due_now
            .into_iter()
            .map(|(d, m)| {
                (
                    d,
                    TimerKey {
                        partition: key.partition,
                        contact: key.contact.clone(),
                        model: m as u16,
                    },
                )
            })
            .collect())
    }

    /// Turns the engine's effects into outbox entries, index rows and wheel updates.
    fn effects(
        &mut self,
        partition: u32,
        contact: &str,
        before: &[Option<EventTime>],
        now: EventTime,
    ) -> Result<(), ProcessError> {
        let changes: Vec<TierChange> = std::mem::take(&mut self.fx.changes);
        for change in &changes {
            self.p.stats.tier_changes += 1;
            let payload =
                serde_json::to_vec(&self.p.engine.output(contact, change)).unwrap_or_default();
            let entry = OutboxEntry {
                topic: self.p.settings.output_topic.clone(),
                key: Some(contact.as_bytes().to_vec()),
                payload,
                headers: Vec::new(),
            };
            self.push(partition, entry)?;
        }
        let loaded_until = self
            .p
            .partitions
            .get(&partition)
            .map_or(EventTime::MIN, |i| i.loaded_until);
        for t in std::mem::take(&mut self.fx.timers) {
            let model = t.model as u16;
            if let Some(old) = before.get(t.model).copied().flatten() {
                self.batch.delete_timer(&TimerRow {
                    partition,
                    due: old,
                    model,
                    contact: contact.to_string(),
                });
            }
            let key = TimerKey {
                partition,
                contact: contact.to_string(),
                model,
            };
            match t.due {
                Some(due) => {
                    self.batch.put_timer(&TimerRow {
                        partition,
                        due,
                        model,
                        contact: contact.to_string(),
                    });
                    if due < loaded_until && due > now {
                        self.p.wheel.insert(key, due);
                    } else {
                        self.p.wheel.cancel(&key);
                    }
                }
                None => {
                    self.p.wheel.cancel(&key);
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, partition: u32, entry: OutboxEntry) -> Result<(), ProcessError> {
        let info = self
            .p
            .partitions
            .get_mut(&partition)
            .ok_or(ProcessError::NotAssigned(partition))?;
        let seq = info.next_seq;
        info.next_seq += 1;
        self.batch.put_outbox(partition, seq, &entry);
        self.out.push((partition, seq, entry));
        Ok(())
    }

    fn commit(mut self) -> Result<Vec<Outgoing>, ProcessError> {
        for ((partition, contact), state) in &self.contacts {
            self.batch.put_contact(*partition, contact, state);
        }
        if !self.batch.is_empty() {
            self.p.store.commit(std::mem::take(&mut self.batch))?;
        }
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
