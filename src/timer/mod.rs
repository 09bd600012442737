//! Timers: a hierarchical timing wheel keyed by `(contact, model)`.
//!
//! `insert` / `cancel` / `poll(now)`; no clock inside. In the live service the
//! wheel holds the near future and is refilled from the persisted index in
//! `state`. Must not depend on scoring, Kafka or storage.

mod index;
mod wheel;

pub use index::{DenseIndex, KeyIndex};
pub use wheel::TimerWheel;
