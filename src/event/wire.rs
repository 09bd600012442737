//! The JSON shape of input events as they arrive (SPEC §2).
//!
//! One struct serves the four kinds: every field is optional here so that
//! presence, length and type rules are checked in one place (`decode`) and
//! reported with the field's name. Unknown fields are ignored.

use serde::Deserialize;
use serde_json::{Map, Value};

/// An input event as decoded from JSON, before validation.
#[derive(Debug, Default, Deserialize)]
pub struct EventWire {
    pub event_id: Option<String>,
    pub contact_id: Option<String>,
    pub occurred_at: Option<String>,
    // page visit
    pub url: Option<String>,
    pub referrer: Option<String>,
    pub title: Option<String>,
    // email
    pub email_id: Option<String>,
    pub action: Option<String>,
    pub link_url: Option<String>,
    // form
    pub form_id: Option<String>,
    pub fields: Option<Map<String, Value>>,
    // purchase
    pub product_id: Option<String>,
    pub amount: Option<f64>,
    pub currency: Option<String>,
}

/// Decodes the wire form of one event; the floor that replay is measured against.
pub fn decode_wire(bytes: &[u8]) -> serde_json::Result<EventWire> {
    serde_json::from_slice(bytes)
}
