//! `StateStore`: the capability the service needs from durable state — read
//! a contact, the due timers, the outbox and the consumed offsets, and commit
//! everything one input batch produced in ONE atomic write. Implementations
//! supply four primitives over column families; the domain operations are
//! written once on top of them, so both stores behave alike by construction
//! and one contract test covers both.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::codec::{decode_contact, encode_contact, CodecError};
use super::keys;
use crate::rules::Layout;
use crate::scoring::ContactState;
use crate::time::EventTime;

/// The column families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    Contacts,
    Timers,
    Outbox,
    Offsets,
    Dedupe,
    /// About the store as a whole (the rules layout its state was written with).
    Meta,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::Contacts,
        Family::Timers,
        Family::Outbox,
        Family::Offsets,
        Family::Dedupe,
        Family::Meta,
    ];

    /// Whether its keys start with a partition (all but `Meta`'s do).
    pub fn partitioned(self) -> bool {
        self != Family::Meta
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Contacts => "contacts",
            Family::Timers => "timers",
            Family::Outbox => "outbox",
            Family::Offsets => "offsets",
            Family::Dedupe => "dedupe",
            Family::Meta => "meta",
        }
    }
}

/// Why state could not be read or written.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Backend(String),
    /// Another process (or handle) holds the directory's lock.
    #[error("the state directory is in use by another process, a running service perhaps; one at a time may open it ({0})")]
    InUse(String),
    #[error("corrupt {family} record: {detail}")]
    Corrupt {
        family: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// A message waiting to be published: a tier change, or a dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Destination topic.
    pub topic: String,
    /// Message key (the contact id for tier changes; the original key for dead letters).
    pub key: Option<Vec<u8>>,
    /// Message value.
    pub payload: Vec<u8>,
    /// Message headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The key of the rules layout in [`Family::Meta`].
const RULES_LAYOUT_KEY: &[u8] = b"rules-layout";

/// Key–value pairs read from a family, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A persisted timer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerRow {
    pub partition: u32,
    pub due: EventTime,
    pub model: u16,
    pub contact: String,
}

/// One atomic write: puts and deletes across families.
#[derive(Debug, Default)]
pub struct Batch {
    pub(crate) ops: Vec<(Family, Vec<u8>, Option<Vec<u8>>)>,
    pub(crate) drop_ranges: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.drop_ranges.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn put_contact(&mut self, partition: u32, contact: &str, state: &ContactState) {
        self.ops.push((
            Family::Contacts,
            keys::contact_key(partition, contact),
            Some(encode_contact(state)),
        ));
    }

    pub fn put_timer(&mut self, t: &TimerRow) {
        self.ops.push((
            Family::Timers,
            keys::timer_key(t.partition, t.due, t.model, &t.contact),
            Some(Vec::new()),
        ));
    }

    pub fn delete_timer(&mut self, t: &TimerRow) {
        self.ops.push((
            Family::Timers,
            keys::timer_key(t.partition, t.due, t.model, &t.contact),
            None,
        ));
    }

    pub fn put_outbox(&mut self, partition: u32, seq: u64, entry: &OutboxEntry) {
        let value = postcard::to_stdvec(entry).unwrap_or_default();
        self.ops.push((
            Family::Outbox,
            keys::outbox_key(partition, seq).to_vec(),
            Some(value),
        ));
    }

    pub fn delete_outbox(&mut self, partition: u32, seq: u64) {
        self.ops.push((
            Family::Outbox,
            keys::outbox_key(partition, seq).to_vec(),
            None,
        ));
    }

    /// Records that input `topic`/`partition` is consumed up to `next` (exclusive).
    pub fn put_offset(&mut self, partition: u32, topic: &str, next: i64) {
        self.ops.push((
            Family::Offsets,
            keys::offset_key(partition, topic),
            Some(next.to_be_bytes().to_vec()),
        ));
    }

    pub fn put_seen(&mut self, partition: u32, contact: &str, digest: u64, at: EventTime) {
        let key = keys::dedupe_key(partition, contact, digest);
        self.ops.push((
            Family::Dedupe,
            key,
            Some(at.millis().to_be_bytes().to_vec()),
        ));
    }

    pub fn delete_seen(&mut self, partition: u32, contact: &str, digest: u64) {
        self.ops.push((
            Family::Dedupe,
            keys::dedupe_key(partition, contact, digest),
            None,
        ));
    }

    /// Records the rules layout the state is written with.
    pub fn put_rules_layout(&mut self, layout: &Layout) {
        let value = serde_json::to_vec(layout).unwrap_or_default();
        self.ops
            .push((Family::Meta, RULES_LAYOUT_KEY.to_vec(), Some(value)));
    }

    /// Removes everything of `partition` in every partitioned family.
    pub fn drop_partition(&mut self, partition: u32) {
        self.drop_ranges.push((
            keys::partition_prefix(partition).to_vec(),
            keys::partition_end(partition),
        ));
    }
}

/// Durable state. Implementations provide the four primitives; the rest is shared.
pub trait StateStore: Send + Sync {
    /// The value of `key` in `family`.
    fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` entries with `start <= key < end`, in key order.
    fn scan(
        &self,
        family: Family,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Entries, StoreError>;
    /// Applies a batch atomically: all of it or nothing.
    fn commit(&self, batch: Batch) -> Result<(), StoreError>;

    fn contact(&self, partition: u32, contact: &str) -> Result<Option<ContactState>, StoreError> {
        match self.get(Family::Contacts, &keys::contact_key(partition, contact))? {
            Some(bytes) => Ok(Some(decode_contact(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The rules layout the state was written with, if one was recorded.
    fn rules_layout(&self) -> Result<Option<Layout>, StoreError> {
        let Some(bytes) = self.get(Family::Meta, RULES_LAYOUT_KEY)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                family: "meta",
                detail: format!("rules layout: {e}"),
            })
    }

    /// The next offset to consume of `topic`/`partition`, if any was committed.
    fn offset(&self, partition: u32, topic: &str) -> Result<Option<i64>, StoreError> {
        let value = self.get(Family::Offsets, &keys::offset_key(partition, topic))?;
        value.map(|v| be_i64(&v, "offsets")).transpose()
    }

    /// Timers of `partition` due before `until`, earliest first.
    fn timers_before(
        &self,
        partition: u32,
        until: EventTime,
        limit: usize,
    ) -> Result<Vec<TimerRow>, StoreError> {
        self.timers_between(partition, EventTime::MIN, until, limit)
    }

    /// Timers of `partition` due in `[from, until)`, earliest first.
    fn timers_between(
        &self,
        partition: u32,
        from: EventTime,
        until: EventTime,
        limit: usize,
    ) -> Result<Vec<TimerRow>, StoreError> {
        let (start, end) = keys::timer_range(partition, from, until);
        self.scan(Family::Timers, &start, &end, limit)?
            .into_iter()
            .map(|(k, _)| {
                keys::parse_timer_key(&k)
                    .map(|(partition, due, model, contact)| TimerRow {
                        partition,
                        due,
                        model,
                        contact,
                    })
                    .ok_or_else(|| StoreError::Corrupt {
                        family: "timers",
                        detail: format!("key of {} bytes", k.len()),
                    })
            })
            .collect()
    }

    /// Unpublished output of `partition`, in the order it was written.
    fn outbox(&self, partition: u32, limit: usize) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let start = keys::partition_prefix(partition);
        self.scan(
            Family::Outbox,
            &start,
            &keys::partition_end(partition),
            limit,
        )?
        .into_iter()
        .map(|(k, v)| {
            let corrupt = |detail: String| StoreError::Corrupt {
                family: "outbox",
                detail,
            };
            let (_, seq) = keys::parse_outbox_key(&k)
                .ok_or_else(|| corrupt(format!("key of {} bytes", k.len())))?;
            let entry = postcard::from_bytes(&v).map_err(|e| corrupt(e.to_string()))?;
            Ok((seq, entry))
        })
        .collect()
    }

    /// When `contact` last sent an event with this id digest, if remembered.
    fn seen(
        &self,
        partition: u32,
        contact: &str,
        digest: u64,
    ) -> Result<Option<EventTime>, StoreError> {
        let value = self.get(
            Family::Dedupe,
            &keys::dedupe_key(partition, contact, digest),
        )?;
        Ok(value
            .map(|v| be_i64(&v, "dedupe"))
            .transpose()?
            .map(EventTime::from_millis))
    }
}

/// An 8-byte big-endian value of `family`.
fn be_i64(bytes: &[u8], family: &'static str) -> Result<i64, StoreError> {
    let raw: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        family,
        detail: format!("value of {} bytes, expected 8", bytes.len()),
    })?;
    Ok(i64::from_be_bytes(raw))
}
