//! Durable state of the live service: the contact-state codec, the key
//! layouts, and the [`StateStore`] capability with its in-memory and RocksDB
//! implementations. Depends on scoring's types, never on Kafka.

pub mod codec;
pub mod keys;
mod mem;
mod rocks;
mod store;

pub use codec::{decode_contact, encode_contact, CodecError};
pub use mem::MemStateStore;
pub use rocks::{DedupeExpiry, RocksStateStore};
pub use store::{Batch, Family, OutboxEntry, StateStore, StoreError, TimerRow};
