//! leadscore: real-time lead scoring over Kafka.
//!
//! Architecture, from the inside out:
//!
//! - [`time`]: the event-time clock's unit (ms since epoch) and RFC 3339.
//! - [`event`]: input wire types → validated domain events (or a dead-letter
//!   reason); the tier-change output event.
//! - [`rules`]: the TOML rules language, validated and compiled.
//! - [`scoring`]: PURE — state + event/timer + `now` → state + effects
//!   (tier changes, timer updates). Exact decay, caps, expiry, inactivity,
//!   hysteresis and next-change prediction. No clock, no I/O.
//! - [`timer`]: hierarchical timing wheel keyed by (contact, model).
//! - [`dedupe`]: recently seen event ids per contact.
//! - [`replay`]: the engine over a JSON-lines file, with the event-time clock.
//! - [`gen`]: synthetic event streams.
//! - [`processor`]: one step of the live service (records or due timers →
//!   one state write with offsets and outbox), without Kafka or a clock.
//! - [`service`]: `leadscore run` — consumer, producer, outbox, rebalances.
//! - [`metrics`] / [`http`]: Prometheus metrics, health and the contact API.
//! - [`cli`] / [`app`]: the command line and the wiring of each command.

pub mod app;
pub mod cache;
pub mod cli;
pub mod config;
pub mod dedupe;
pub mod demo;
pub mod event;
pub mod gen;
pub mod http;
pub mod metrics;
pub mod processor;
pub mod replay;
pub mod rules;
pub mod scoring;
pub mod service;
pub mod state;
pub mod time;
pub mod timer;
