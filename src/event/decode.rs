//! Bytes → validated [`Event`], or the reason it must be dead-lettered.

use compact_str::CompactString;
use serde_json::{Map, Value};
use thiserror::Error;

use super::wire::{decode_wire, EventWire};
use super::{ContactId, EmailAction, Event, EventBody, EventId, EventKind, FieldValue};
use crate::time::EventTime;

/// Largest accepted message value (SPEC §2: 64 KiB).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The longest replay line held in memory: a payload at the limit stays far
/// below it even escaped into kcat's `payload` string (6 bytes a byte at
/// worst); a longer line is skipped unread.
pub const MAX_LINE_BYTES: usize = 64 * MAX_PAYLOAD_BYTES;

/// Why an input record was rejected. `reason()` gives the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("field `{field}`: {reason}")]
    SchemaViolation { field: String, reason: String },
    #[error("message key `{key}` differs from contact_id `{contact_id}`")]
    KeyMismatch { key: String, contact_id: String },
    #[error("payload is {size} bytes, the limit is {MAX_PAYLOAD_BYTES}")]
    PayloadTooLarge { size: usize },
    /// A replay line too long to hold (its payload is over the limit too).
    #[error("line is {size} bytes, more than a line may hold ({MAX_LINE_BYTES} bytes); not read")]
    LineTooLong { size: u64 },
    #[error("topic `{0}` is not one of the input topics")]
    UnknownTopic(String),
    #[error("occurred_at {occurred_at} is more than {skew_ms} ms ahead of the clock ({clock})")]
    FutureTimestamp {
        occurred_at: String,
        clock: String,
        skew_ms: i64,
    },
}

impl DecodeError {
    /// The machine-readable reason of SPEC §2 / §6.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::InvalidJson(_) => "invalid_json",
            DecodeError::SchemaViolation { .. } => "schema_violation",
            DecodeError::KeyMismatch { .. } => "key_mismatch",
            DecodeError::PayloadTooLarge { .. } | DecodeError::LineTooLong { .. } => {
                "payload_too_large"
            }
            DecodeError::UnknownTopic(_) => "unknown_topic",
            DecodeError::FutureTimestamp { .. } => "future_timestamp",
        }
    }

    pub(crate) fn schema(field: &str, reason: impl Into<String>) -> Self {
        DecodeError::SchemaViolation {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// Decodes one message value of a topic of `kind`. `key` is the message key,
/// if the record has one. An invalid event is reported as such before a key
/// mismatch.
pub fn decode(kind: EventKind, key: Option<&[u8]>, payload: &[u8]) -> Result<Event, DecodeError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::PayloadTooLarge {
            size: payload.len(),
        });
    }
    // The wire struct is used where it lies, and the event is built where
    // it is returned: neither is moved (see `validate`).
    let mut decoded = decode_wire(payload);
    let mut slow;
    let wire = match &mut decoded {
        Ok(wire) => wire,
        Err(e) if e.is_data() => {
            slow = wire_from_value(kind, payload)?;
            &mut slow
        }
        Err(e) => return Err(DecodeError::InvalidJson(e.to_string())),
    };
    let other_key = key.filter(|k| wire.contact_id.as_deref().map(str::as_bytes) != Some(*k));
    if let Some(key) = other_key {
        let contact_id = wire.contact_id.clone().unwrap_or_default();
        validate(kind, wire)?;
        return Err(DecodeError::KeyMismatch {
            key: String::from_utf8_lossy(key).into_owned(),
            contact_id,
        });
    }
    validate(kind, wire)
}

/// Slow path, taken only when the typed decode failed on a value's type: finds
/// the offending field among those `kind` uses, or builds the wire struct from
/// the fields that matter (a mistyped field of another kind is ignored).
fn wire_from_value(kind: EventKind, payload: &[u8]) -> Result<EventWire, DecodeError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| DecodeError::InvalidJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(DecodeError::schema("$", "the event must be a JSON object"));
    };
    let mut wire = EventWire {
        event_id: string_field(&obj, "event_id")?,
        contact_id: string_field(&obj, "contact_id")?,
        occurred_at: string_field(&obj, "occurred_at")?,
        ..EventWire::default()
    };
    match kind {
        EventKind::PageVisit => {
            wire.url = string_field(&obj, "url")?;
            wire.referrer = string_field(&obj, "referrer")?;
            wire.title = string_field(&obj, "title")?;
        }
        EventKind::Email => {
            wire.email_id = string_field(&obj, "email_id")?;
            wire.action = string_field(&obj, "action")?;
            wire.link_url = string_field(&obj, "link_url")?;
        }
        EventKind::Form => {
            wire.form_id = string_field(&obj, "form_id")?;
            wire.fields = match obj.get("fields") {
                None | Some(Value::Null) => None,
                Some(Value::Object(map)) => Some(map.clone()),
                Some(_) => return Err(DecodeError::schema("fields", "must be an object")),
            };
        }
        EventKind::Purchase => {
            wire.product_id = string_field(&obj, "product_id")?;
            wire.currency = string_field(&obj, "currency")?;
            wire.amount = match obj.get("amount") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => n.as_f64(),
                Some(_) => return Err(DecodeError::schema("amount", "must be a number")),
            };
        }
    }
    Ok(wire)
}

fn string_field(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, DecodeError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(DecodeError::schema(name, "must be a string")),
    }
}

/// A required field's text, or the error that names it.
fn required<'a>(value: Option<&'a str>, field: &str) -> Result<&'a str, DecodeError> {
    value.ok_or_else(|| DecodeError::schema(field, "is required"))
}

/// Checks a required id: present, 1 to `max_chars` characters.
fn check_bounded(value: Option<&str>, field: &str, max_chars: usize) -> Result<(), DecodeError> {
    let value = required(value, field)?;
    // Up to `max_chars` bytes cannot be more characters: count only past that.
    let too_long = value.len() > max_chars && value.chars().count() > max_chars;
    if value.is_empty() || too_long {
        let chars = value.chars().count();
        return Err(DecodeError::schema(
            field,
            format!("must be 1 to {max_chars} characters, got {chars}"),
        ));
    }
    Ok(())
}

/// Every check comes first, on the decoded text where it lies; the event is
/// then built in one go, each text made inline where it will stay (a short
/// text built and then moved is read back before its bytes have left the
/// store buffer: a stall on every field).
fn validate(kind: EventKind, w: &mut EventWire) -> Result<Event, DecodeError> {
    check_bounded(w.event_id.as_deref(), "event_id", 128)?;
    check_bounded(w.contact_id.as_deref(), "contact_id", 256)?;
    let occurred_text = required(w.occurred_at.as_deref(), "occurred_at")?;
    let occurred_at = EventTime::parse_rfc3339(occurred_text).ok_or_else(|| {
        DecodeError::schema(
            "occurred_at",
            format!("`{occurred_text}` is not an RFC 3339 timestamp with offset"),
        )
    })?;
    let mut action = EmailAction::Click;
    let mut fields = Vec::new();
    match kind {
        EventKind::PageVisit => {
            required(w.url.as_deref(), "url")?;
        }
        EventKind::Email => {
            required(w.email_id.as_deref(), "email_id")?;
            action = email_action(w.action.as_deref())?;
        }
        EventKind::Form => {
            required(w.form_id.as_deref(), "form_id")?;
            fields = form_fields(w.fields.take())?;
        }
        EventKind::Purchase => {
            required(w.product_id.as_deref(), "product_id")?;
            if w.amount
                .is_some_and(|a| a.is_nan() || a < 0.0 || a.is_infinite())
            {
                return Err(DecodeError::schema("amount", "must be a number ≥ 0"));
            }
        }
    }
    let text = |field: &mut Option<String>| field.take().unwrap_or_default().into();
    let optional = |field: &mut Option<String>| field.take().map(CompactString::from);
    Ok(Event {
        id: EventId(text(&mut w.event_id)),
        contact: ContactId(text(&mut w.contact_id)),
        occurred_at,
        body: match kind {
            EventKind::PageVisit => EventBody::PageVisit {
                url: text(&mut w.url),
                referrer: optional(&mut w.referrer),
                title: optional(&mut w.title),
            },
            EventKind::Email => EventBody::Email {
                email_id: text(&mut w.email_id),
                action,
                link_url: optional(&mut w.link_url),
            },
            EventKind::Form => EventBody::Form {
                form_id: text(&mut w.form_id),
                fields,
            },
            EventKind::Purchase => EventBody::Purchase {
                product_id: text(&mut w.product_id),
                amount: w.amount,
                currency: optional(&mut w.currency),
            },
        },
    })
}

fn email_action(action: Option<&str>) -> Result<EmailAction, DecodeError> {
    match action {
        None | Some("click") => Ok(EmailAction::Click),
        Some("open") => Ok(EmailAction::Open),
        Some("unsubscribe") => Ok(EmailAction::Unsubscribe),
        Some(other) => Err(DecodeError::schema(
            "action",
            format!("`{other}` is not one of open, click, unsubscribe"),
        )),
    }
}

fn form_fields(
    fields: Option<Map<String, Value>>,
) -> Result<Vec<(CompactString, FieldValue)>, DecodeError> {
    let Some(map) = fields else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let value = match value {
            Value::Null => FieldValue::Null,
            Value::Bool(b) => FieldValue::Bool(b),
            Value::Number(n) => FieldValue::Number(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => FieldValue::Text(s.into()),
            Value::Array(_) | Value::Object(_) => {
                return Err(DecodeError::schema(
                    &format!("fields.{name}"),
                    "must be a string, number, boolean or null",
                ))
            }
        };
        out.push((name.into(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(json: &str) -> Result<Event, DecodeError> {
        decode(EventKind::PageVisit, None, json.as_bytes())
    }

    const OK: &str = r#"{"event_id":"e1","contact_id":"c1","occurred_at":"2026-03-03T10:00:00Z","url":"https://x/pricing"}"#;

    #[test]
    fn accepts_a_page_visit_and_ignores_unknown_fields() {
        let with_extra = OK.replace("}", r#","extra":{"a":[1]},"amount":"not mine"}"#);
        let e = page(&with_extra).unwrap();
        assert_eq!(e.contact.0, "c1");
        assert!(
            matches!(e.body, EventBody::PageVisit { ref url, .. } if url == "https://x/pricing")
        );
    }

    #[test]
    fn names_the_missing_or_mistyped_field() {
        let missing =
            page(r#"{"event_id":"e1","contact_id":"c1","occurred_at":"2026-03-03T10:00:00Z"}"#);
        assert_eq!(
            missing.unwrap_err(),
            DecodeError::schema("url", "is required")
        );
        let typed = page(&OK.replace(r#""url":"https://x/pricing""#, r#""url":5"#)).unwrap_err();
        assert!(matches!(typed, DecodeError::SchemaViolation { ref field, .. } if field == "url"));
        let bad_time = page(&OK.replace("2026-03-03T10:00:00Z", "2026-03-03 10:00")).unwrap_err();
        assert!(
            matches!(bad_time, DecodeError::SchemaViolation { ref field, .. } if field == "occurred_at")
        );
    }

    #[test]
    fn enforces_id_lengths() {
        let long = "x".repeat(129);
        let err = page(&OK.replace(r#""e1""#, &format!("\"{long}\""))).unwrap_err();
        assert!(
            matches!(err, DecodeError::SchemaViolation { ref field, .. } if field == "event_id")
        );
        // Lengths are characters, not bytes.
        let wide = "é".repeat(128);
        assert!(page(&OK.replace(r#""e1""#, &format!("\"{wide}\""))).is_ok());
        let wider = "é".repeat(129);
        let err = page(&OK.replace(r#""e1""#, &format!("\"{wider}\""))).unwrap_err();
        assert!(err.to_string().contains("got 129"), "{err}");
        let empty = page(&OK.replace(r#""c1""#, r#""""#)).unwrap_err();
        assert!(
            matches!(empty, DecodeError::SchemaViolation { ref field, .. } if field == "contact_id")
        );
    }

    #[test]
    fn classifies_reasons() {
        assert_eq!(page("{broken").unwrap_err().reason(), "invalid_json");
        assert_eq!(page("[1,2]").unwrap_err().reason(), "schema_violation");
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_PAYLOAD_BYTES));
        assert_eq!(page(&big).unwrap_err().reason(), "payload_too_large");
        let mismatch = decode(EventKind::PageVisit, Some(b"c2"), OK.as_bytes()).unwrap_err();
        assert_eq!(
            mismatch,
            DecodeError::KeyMismatch {
                key: "c2".into(),
                contact_id: "c1".into()
            }
        );
        assert_eq!(mismatch.reason(), "key_mismatch");
        assert!(decode(EventKind::PageVisit, Some(b"c1"), OK.as_bytes()).is_ok());
        let no_url = r#"{"event_id":"e1","contact_id":"c1","occurred_at":"2026-03-03T10:00:00Z"}"#;
        let invalid = decode(EventKind::PageVisit, Some(b"c2"), no_url.as_bytes()).unwrap_err();
        assert_eq!(
            invalid.reason(),
            "schema_violation",
            "an invalid event is reported as such before its key"
        );
    }

    #[test]
    fn email_action_defaults_to_click_and_rejects_others() {
        let base = r#"{"event_id":"e","contact_id":"c","occurred_at":"2026-01-01T00:00:00Z","email_id":"m"}"#;
        let e = decode(EventKind::Email, None, base.as_bytes()).unwrap();
        assert!(matches!(
            e.body,
            EventBody::Email {
                action: EmailAction::Click,
                ..
            }
        ));
        let bad = base.replace(r#""m""#, r#""m","action":"bounce""#);
        let err = decode(EventKind::Email, None, bad.as_bytes()).unwrap_err();
        assert!(matches!(err, DecodeError::SchemaViolation { ref field, .. } if field == "action"));
    }

    #[test]
    fn form_fields_must_be_scalars_and_amount_non_negative() {
        let form = r#"{"event_id":"e","contact_id":"c","occurred_at":"2026-01-01T00:00:00Z","form_id":"f","fields":{"a":1,"b":null,"c":"x","d":true}}"#;
        let e = decode(EventKind::Form, None, form.as_bytes()).unwrap();
        let EventBody::Form { fields, .. } = e.body else {
            panic!("not a form")
        };
        assert_eq!(fields.len(), 4);
        let nested = form.replace(r#""d":true"#, r#""d":{"x":1}"#);
        let err = decode(EventKind::Form, None, nested.as_bytes()).unwrap_err();
        assert!(
            matches!(err, DecodeError::SchemaViolation { ref field, .. } if field == "fields.d")
        );
        let buy = r#"{"event_id":"e","contact_id":"c","occurred_at":"2026-01-01T00:00:00Z","product_id":"p","amount":-1}"#;
        let err = decode(EventKind::Purchase, None, buy.as_bytes()).unwrap_err();
        assert!(matches!(err, DecodeError::SchemaViolation { ref field, .. } if field == "amount"));
    }
}
