//! Publishing the outbox: entries go to the idempotent producer in outbox
//! order and are reported back once the broker acknowledges them, so the
//! caller can delete them from the store. Nothing is dropped: an entry the
//! broker or the producer refuses is sent again, ahead of those still
//! waiting, after a pause; one too large to send (dead letters are cut to
//! fit, so only one whose key alone is over the limit) stays in the
//! store's outbox and is tried again on the next start.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use tracing::{error, warn};

use super::kafka::{Delivery, ProducerCtx};
use super::throttle::Throttle;
use crate::processor::Outgoing;
use crate::state::OutboxEntry;

/// Above this many entries waiting, the service stops fetching input.
pub const BACKLOG_LIMIT: usize = 50_000;

/// Counts since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SinkStats {
    pub published: u64,
    pub failures: u64,
}

pub struct Sink {
    producer: BaseProducer<ProducerCtx>,
    /// Waiting to be handed to the producer, in outbox order.
    backlog: VecDeque<Outgoing>,
    /// Ids in `backlog` or `in_flight`: an outbox re-read after a rebalance
    /// does not send them twice.
    known: HashSet<(u32, u64)>,
    /// Handed over, not yet acknowledged.
    in_flight: HashMap<(u32, u64), OutboxEntry>,
    acks: Vec<Delivery>,
    /// After a failed delivery, nothing is handed over before this: a
    /// refusal that lasts (a topic the service may not write to) is tried
    /// again at a steady pace, not in a spin.
    hold_until: Option<Instant>,
    quiet: Throttle,
    pub stats: SinkStats,
}

/// How long publishing pauses after a failed delivery.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// A refusal's kind for the log throttle: the topic and the error.
fn refusal(topic: &str, e: &dyn std::fmt::Display) -> String {
    format!("{topic}: {e}")
}

impl Sink {
    pub fn new(producer: BaseProducer<ProducerCtx>) -> Self {
        Sink {
            producer,
            backlog: VecDeque::new(),
            known: HashSet::new(),
            in_flight: HashMap::new(),
            acks: Vec::new(),
            hold_until: None,
            quiet: Throttle::default(),
            stats: SinkStats::default(),
        }
    }

    /// Entries not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.backlog.len() + self.in_flight.len()
    }

    pub fn backlogged(&self) -> bool {
        self.pending() >= BACKLOG_LIMIT
    }

    /// Queues entries for publication, in order (ones already queued are skipped).
    pub fn send(&mut self, out: Vec<Outgoing>) {
        for item in out {
            if self.known.insert((item.0, item.1)) {
                self.backlog.push_back(item);
            }
        }
        self.pump();
    }

    /// Hands waiting entries to the producer until its queue is full.
    fn pump(&mut self) {
        if self.hold_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.hold_until = None;
        while let Some((partition, seq, entry)) = self.backlog.pop_front() {
            let mut headers = OwnedHeaders::new_with_capacity(entry.headers.len());
            for (k, v) in &entry.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut record = BaseRecord::with_opaque_to(&entry.topic, Box::new((partition, seq)))
                .payload(&entry.payload)
                .headers(headers);
            if let Some(key) = &entry.key {
                record = record.key(key);
            }
            match self.producer.send(record) {
                Ok(()) => {
                    self.in_flight.insert((partition, seq), entry);
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    self.backlog.push_front((partition, seq, entry));
                    return;
                }
                Err((
                    e @ KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                    _,
                )) => {
                    // No retry can send it, and it must not hold up the rest:
                    // kept in the store's outbox, tried again on the next start.
                    self.known.remove(&(partition, seq));
                    self.stats.failures += 1;
                    if let Some(more) = self.quiet.admit(&refusal(&entry.topic, &e)) {
                        error!(partition, seq, topic = %entry.topic, "cannot publish: {e}{more}");
                    }
                }
                // Refused before it left (a topic known to be refused, say):
                // as a failed delivery.
                Err((e, _)) => {
                    self.failed(partition, seq, &entry.topic, &e);
                    self.backlog.push_front((partition, seq, entry));
                    return;
                }
            }
        }
    }

    /// A record the broker would not take: counted and said (throttled);
    /// publishing pauses for [`RETRY_AFTER`], then it goes again, ahead of
    /// what waits (the caller puts it back).
    fn failed(&mut self, partition: u32, seq: u64, topic: &str, e: &dyn std::fmt::Display) {
        self.stats.failures += 1;
        if let Some(more) = self.quiet.admit(&refusal(topic, e)) {
            warn!(
                partition,
                seq, topic, "publish failed, sending again: {e}{more}"
            );
        }
        self.hold_until = Some(Instant::now() + RETRY_AFTER);
    }

    /// Serves delivery reports for up to `timeout`; returns the (partition,
    /// seq) of entries the broker acknowledged.
    pub fn poll(&mut self, timeout: Duration) -> Vec<(u32, u64)> {
        self.producer.poll(timeout);
        self.producer.context().take_acks(&mut self.acks);
        let mut done = Vec::new();
        let mut failed = Vec::new();
        // Taken out for the loop (which needs `self`), put back for reuse.
        let mut acks = std::mem::take(&mut self.acks);
        for (id, outcome) in acks.drain(..) {
            let Some(entry) = self.in_flight.remove(&id) else {
                continue;
            };
            match outcome {
                Ok(()) => {
                    self.known.remove(&id);
                    self.stats.published += 1;
                    done.push(id);
                }
                Err(e) => {
                    self.failed(id.0, id.1, &entry.topic, &e);
                    failed.push((id.0, id.1, entry));
                }
            }
        }
        self.acks = acks;
        // Ahead of what waits, in outbox order: a contact's changes that
        // have not gone out yet keep their order.
        failed.sort_by_key(|(p, seq, _)| (*p, *seq));
        for item in failed.into_iter().rev() {
            self.backlog.push_front(item);
        }
        self.pump();
        done
    }

    /// Publishes everything pending, for at most `limit`; returns the
    /// acknowledged entries and whether nothing is left.
    pub fn drain(&mut self, limit: Duration) -> (Vec<(u32, u64)>, bool) {
        let deadline = Instant::now() + limit;
        let mut done = Vec::new();
        while self.pending() > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            done.extend(self.poll(left.min(Duration::from_millis(50))));
        }
        let _ = self.producer.flush(Duration::from_millis(100));
        done.extend(self.poll(Duration::ZERO));
        (done, self.pending() == 0)
    }
}
