//! Input events: wire types (serde) and the domain types scoring works on.
//!
//! `wire` is what arrives on a topic; `decode` turns bytes into a domain
//! [`Event`] or a [`DecodeError`] whose `reason()` is one of the dead-letter
//! reasons of SPEC §2; `output` is the tier-change event we publish.
//! Depends on serde/serde_json/chrono only — no Kafka, no storage.

mod decode;
pub mod output;
pub mod wire;

use std::fmt;

use compact_str::CompactString;

pub use decode::{decode, DecodeError, MAX_LINE_BYTES, MAX_PAYLOAD_BYTES};

use crate::time::EventTime;

/// A contact's identity: the Kafka key of every input and output topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContactId(pub CompactString);

impl fmt::Display for ContactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The producer-chosen id of an input event; the dedupe key within a contact.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EventId(pub CompactString);

/// Which kind of event a topic carries.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    PageVisit,
    Email,
    Form,
    Purchase,
}

impl EventKind {
    /// Every kind, in the order [`EventKind::index`] numbers them.
    pub const ALL: [EventKind; 4] = [
        EventKind::PageVisit,
        EventKind::Email,
        EventKind::Form,
        EventKind::Purchase,
    ];

    /// Its position in [`EventKind::ALL`].
    pub fn index(self) -> usize {
        match self {
            EventKind::PageVisit => 0,
            EventKind::Email => 1,
            EventKind::Form => 2,
            EventKind::Purchase => 3,
        }
    }

    /// The default topic name of this kind (SPEC §2).
    pub fn default_topic(self) -> &'static str {
        match self {
            EventKind::PageVisit => "page-visits",
            EventKind::Email => "email-clicks",
            EventKind::Form => "form-submissions",
            EventKind::Purchase => "purchases",
        }
    }
}

/// Maps topic names to the kind of event they carry.
#[derive(Clone, Debug)]
pub struct TopicMap {
    names: [String; 4],
}

impl Default for TopicMap {
    fn default() -> Self {
        TopicMap {
            names: EventKind::ALL.map(|k| k.default_topic().to_string()),
        }
    }
}

impl TopicMap {
    pub fn new(page_visits: &str, email: &str, forms: &str, purchases: &str) -> Self {
        TopicMap {
            names: [page_visits, email, forms, purchases].map(str::to_string),
        }
    }

    pub fn kind_of(&self, topic: &str) -> Option<EventKind> {
        let pos = self.names.iter().position(|n| n == topic)?;
        Some(EventKind::ALL[pos])
    }

    pub fn topic_of(&self, kind: EventKind) -> &str {
        &self.names[kind.index()]
    }
}

/// What an email event reports.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EmailAction {
    Open,
    Click,
    Unsubscribe,
}

/// A form field value: the JSON scalars a form may carry (`null` clears).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum FieldValue {
    Null,
    Bool(bool),
    Number(f64),
    /// Inline up to 24 bytes: kept in a contact's profile without a
    /// separate allocation.
    Text(compact_str::CompactString),
}

/// What happened, by kind.
#[derive(Clone, Debug, PartialEq)]
pub enum EventBody {
    PageVisit {
        url: CompactString,
        referrer: Option<CompactString>,
        title: Option<CompactString>,
    },
    Email {
        email_id: CompactString,
        action: EmailAction,
        link_url: Option<CompactString>,
    },
    Form {
        form_id: CompactString,
        fields: Vec<(CompactString, FieldValue)>,
    },
    Purchase {
        product_id: CompactString,
        amount: Option<f64>,
        currency: Option<CompactString>,
    },
}

impl EventBody {
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::PageVisit { .. } => EventKind::PageVisit,
            EventBody::Email { .. } => EventKind::Email,
            EventBody::Form { .. } => EventKind::Form,
            EventBody::Purchase { .. } => EventKind::Purchase,
        }
    }
}

/// A validated input event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub contact: ContactId,
    pub occurred_at: EventTime,
    pub body: EventBody,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_numbered_in_all_order() {
        for (i, kind) in EventKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }
}
