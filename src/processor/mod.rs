//! The processing step of the live service: input records, or timers come
//! due, → scoring → ONE state write holding the contact states, the timer
//! index, the outbox entries and the consumed offsets → the entries to
//! publish. No Kafka and no clock inside: `now` is a parameter and the store
//! is any [`StateStore`], so everything here is testable without a broker.
//!
//! Timers: the persisted index (family `timers`) is the truth; the in-memory
//! wheel holds only the next `timer_horizon` and is refilled from the index,
//! so start-up cost and memory do not grow with far-future timers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use thiserror::Error;

mod step;
use step::Step;

use crate::event::{decode, DecodeError, Event, EventKind, TopicMap};
use crate::scoring::Engine;
use crate::state::{Batch, OutboxEntry, StateStore, StoreError};
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

/// A record with its decoded event, or the reason it cannot be scored.
pub type Decoded = (InputRecord, Result<Event, DecodeError>);

/// What the processor needs from the configuration.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    pub topics: TopicMap,
    pub output_topic: String,
    pub dead_letter_topic: String,
    /// The producer's `message.max.bytes`: a dead letter's value is cut to
    /// fit in it (an input record may be larger than the producer may send).
    pub max_message_bytes: usize,
    /// `Some(skew)` in wall-clock mode: events further ahead are dead-lettered.
    pub max_clock_skew_ms: Option<i64>,
    pub dedupe_window_ms: i64,
    /// How far ahead the in-memory wheel is filled from the timer index.
    pub timer_horizon_ms: i64,
    /// `clock = "event"`: each partition's clock is the largest `occurred_at`
    /// it has seen, and its due timers fire before each event (as in replay).
    pub event_clock: bool,
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
    /// Records at offsets already applied (redelivered by the broker).
    pub redelivered: u64,
    pub tier_changes: u64,
    /// Tier changes by (model, from tier, to tier, cause).
    pub changes: BTreeMap<ChangeKey, u64>,
    pub timers_fired: u64,
}

/// A tier change's model, from tier, to tier (indexes) and cause name.
pub type ChangeKey = (u16, u16, u16, &'static str);

/// How many firing delays are kept between two `take_timer_delays` calls.
const DELAYS_KEPT: usize = 4096;

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

/// The offsets-family entry that holds a partition's clock (no topic name
/// can contain NUL).
const CLOCK_KEY: &str = "\0clock";

struct PartitionInfo {
    wheel: TimerWheel<TimerKey>,
    next_seq: u64,
    loaded_until: EventTime,
    clock: EventTime,
    /// Next offset to apply per input topic: earlier ones are redeliveries.
    next_offsets: HashMap<String, i64>,
}

pub struct Processor<S: StateStore> {
    engine: Engine,
    store: Arc<S>,
    settings: ProcessorSettings,
    partitions: BTreeMap<u32, PartitionInfo>,
    pub stats: ProcessStats,
    /// Wall-clock mode: how late (ms) timers fired since the last take.
    timer_delays: Vec<i64>,
}

impl<S: StateStore> Processor<S> {
    pub fn new(engine: Engine, store: Arc<S>, settings: ProcessorSettings) -> Self {
        Processor {
            engine,
            store,
            settings,
            partitions: BTreeMap::new(),
            stats: ProcessStats::default(),
            timer_delays: Vec::new(),
        }
    }

    /// How late (ms after their due instant) timers fired since the last
    /// call, in wall-clock mode (at most the last few thousand).
    pub fn take_timer_delays(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.timer_delays)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Timers in the in-memory wheels.
    pub fn timers_loaded(&self) -> usize {
        self.partitions.values().map(|i| i.wheel.len()).sum()
    }

    /// Partitions taken, in order.
    pub fn assigned(&self) -> Vec<u32> {
        self.partitions.keys().copied().collect()
    }

    /// The clock of a partition (wall time, or its event time in event-clock mode).
    pub fn clock(&self, partition: u32) -> Option<EventTime> {
        self.partitions.get(&partition).map(|i| i.clock)
    }

    /// The lowest clock over the partitions held (none: `None`).
    pub fn min_clock(&self) -> Option<EventTime> {
        self.partitions.values().map(|i| i.clock).min()
    }

    /// The earliest instant a timer of some partition may be due (a lower bound).
    pub fn next_due(&self) -> Option<EventTime> {
        self.partitions
            .values()
            .filter_map(|i| i.wheel.next_due())
            .min()
    }

    /// Takes a partition: loads its clock and near timers (those that came
    /// due while nobody owned it fire at the next `fire_due`, with their
    /// original instant) and returns where to resume each input topic, plus
    /// the entries still in its outbox, to publish again.
    pub fn assign(&mut self, partition: u32, now: EventTime) -> Result<Assignment, ProcessError> {
        let pending: Vec<Outgoing> = self
            .store
            .outbox(partition, usize::MAX)?
            .into_iter()
            .map(|(seq, e)| (partition, seq, e))
            .collect();
        let next_seq = pending.last().map_or(0, |(_, seq, _)| seq + 1);
        let offsets = EventKind::ALL
            .iter()
            .map(|k| {
                let topic = self.settings.topics.topic_of(*k).to_string();
                let at = self.store.offset(partition, &topic)?;
                Ok((topic, at))
            })
            .collect::<Result<Vec<_>, ProcessError>>()?;
        let saved_clock = stored_clock(&*self.store, partition)?;
        let clock = if self.settings.event_clock {
            saved_clock
        } else {
            saved_clock.max(now)
        };
        self.partitions.insert(
            partition,
            PartitionInfo {
                wheel: TimerWheel::default(),
                next_seq,
                loaded_until: EventTime::MIN,
                clock,
                next_offsets: offsets
                    .iter()
                    .filter_map(|(t, o)| o.map(|o| (t.clone(), o)))
                    .collect(),
            },
        );
        if clock > EventTime::MIN {
            self.refill(partition, clock)?;
        }
        Ok((offsets, pending))
    }

    /// Gives a partition up: its timers leave memory (its state stays on disk).
    pub fn revoke(&mut self, partition: u32) {
        self.partitions.remove(&partition);
    }

    /// Whether the wheel of `partition` holds less than half a horizon ahead of `now`.
    fn needs_refill(&self, partition: u32, now: EventTime) -> Result<bool, ProcessError> {
        let info = self
            .partitions
            .get(&partition)
            .ok_or(ProcessError::NotAssigned(partition))?;
        Ok(info.loaded_until < now.plus_millis(self.settings.timer_horizon_ms / 2))
    }

    /// Loads the timers due in `[loaded until, now + horizon)` from the index.
    fn refill(&mut self, partition: u32, now: EventTime) -> Result<(), ProcessError> {
        let horizon = self.settings.timer_horizon_ms;
        let info = self
            .partitions
            .get_mut(&partition)
            .ok_or(ProcessError::NotAssigned(partition))?;
        let from = info.loaded_until;
        let until = now.plus_millis(horizon);
        info.loaded_until = until;
        for row in self
            .store
            .timers_between(partition, from, until, usize::MAX)?
        {
            let key = TimerKey {
                partition,
                contact: row.contact,
                model: row.model,
            };
            info.wheel.insert(key, row.due);
        }
        Ok(())
    }

    /// Decodes a record; in wall-clock mode an event further than the allowed
    /// skew ahead of `now` is refused.
    pub fn decode(&self, rec: &InputRecord, now: EventTime) -> Result<Event, DecodeError> {
        let kind = self
            .settings
            .topics
            .kind_of(&rec.topic)
            .ok_or_else(|| DecodeError::UnknownTopic(rec.topic.clone()))?;
        let payload = rec.payload.as_deref().unwrap_or_default();
        let event = decode(kind, rec.key.as_deref(), payload)?;
        if let (Some(skew), false) = (self.settings.max_clock_skew_ms, self.settings.event_clock) {
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

    /// Applies a batch of consumed records at wall-clock `now`.
    pub fn process(
        &mut self,
        records: &[InputRecord],
        now: EventTime,
    ) -> Result<Vec<Outgoing>, ProcessError> {
        let decoded: Vec<Decoded> = records
            .iter()
            .map(|r| (r.clone(), self.decode(r, now)))
            .collect();
        self.process_decoded(decoded, now)
    }

    /// Applies records already decoded, in order, in one state write.
    pub fn process_decoded(
        &mut self,
        records: Vec<Decoded>,
        now: EventTime,
    ) -> Result<Vec<Outgoing>, ProcessError> {
        let mut step = Step::new(self, now);
        for (rec, event) in records {
            step.record(rec, event, now)?;
        }
        step.commit()
    }

    /// Wall-clock mode: fires every timer due at or before `now`, in time
    /// order. (With the event clock, timers fire as events advance the clock.)
    pub fn fire_due(&mut self, now: EventTime) -> Result<Vec<Outgoing>, ProcessError> {
        let mut step = Step::new(self, now);
        if !step.p.settings.event_clock {
            for partition in step.p.assigned() {
                let info = step.p.partitions.get_mut(&partition).expect("assigned");
                info.clock = info.clock.max(now);
                step.advance(partition, now)?;
            }
        }
        step.commit()
    }

    /// Deletes published entries from the outbox.
    pub fn published(&self, done: &[(u32, u64)]) -> Result<(), ProcessError> {
        if done.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        for (partition, seq) in done {
            batch.delete_outbox(*partition, *seq);
        }
        Ok(self.store.commit(batch)?)
    }
}

/// The clock a partition's state was last written at (`MIN` if never).
pub fn stored_clock<S: StateStore>(store: &S, partition: u32) -> Result<EventTime, StoreError> {
    Ok(store
        .offset(partition, CLOCK_KEY)?
        .map_or(EventTime::MIN, EventTime::from_millis))
}
