//! Lines of a replay file: `{"topic","key","value":{…}}` or kcat's `-J`
//! envelope, where `payload` carries the event as a string.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::DecodeError;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    topic: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<Cow<'a, str>>,
}

/// One record of a replay file, still undecoded.
#[derive(Debug)]
pub struct Record<'a> {
    pub topic: Cow<'a, str>,
    pub key: Option<Cow<'a, str>>,
    pub payload: Cow<'a, [u8]>,
}

fn not_envelope(why: impl std::fmt::Display) -> DecodeError {
    DecodeError::schema("$", format!("line is not an envelope: {why}"))
}

/// Splits a line into topic, key and payload bytes.
pub fn parse_line(line: &str) -> Result<Record<'_>, DecodeError> {
    if !line.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(line) {
            Err(e) => DecodeError::InvalidJson(e.to_string()),
            Ok(_) => not_envelope("expected a JSON object"),
        });
    }
    let env: Envelope = serde_json::from_str(line).map_err(|e| {
        if e.is_data() {
            not_envelope(e)
        } else {
            DecodeError::InvalidJson(e.to_string())
        }
    })?;
    let topic = env.topic.ok_or_else(|| not_envelope("no `topic`"))?;
    let payload = match (env.value, env.payload) {
        (Some(raw), _) if raw.get() != "null" => Cow::Borrowed(raw.get().as_bytes()),
        (_, Some(Cow::Borrowed(s))) => Cow::Borrowed(s.as_bytes()),
        (_, Some(Cow::Owned(s))) => Cow::Owned(s.into_bytes()),
        _ => {
            return Err(not_envelope(
                "no event: `value` and `payload` are absent or null",
            ))
        }
    };
    Ok(Record {
        topic,
        key: env.key,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_envelopes() {
        let plain =
            parse_line(r#"{"topic": "page-visits", "key": "c-1", "value": {"a": 1}}"#).unwrap();
        assert_eq!(plain.topic, "page-visits");
        assert_eq!(plain.key.as_deref(), Some("c-1"));
        assert_eq!(&*plain.payload, br#"{"a": 1}"#);
        let kcat = parse_line(
            r#"{"topic":"purchases","partition":0,"offset":7,"tstype":"create","ts":1,"broker":1,"key":null,"payload":"{\"a\":\"x\"}"}"#,
        )
        .unwrap();
        assert_eq!(kcat.topic, "purchases");
        assert_eq!(kcat.key, None);
        assert_eq!(&*kcat.payload, br#"{"a":"x"}"#);
    }

    #[test]
    fn classifies_bad_lines() {
        assert_eq!(parse_line("{broken").unwrap_err().reason(), "invalid_json");
        assert_eq!(parse_line("[1]").unwrap_err().reason(), "schema_violation");
        assert_eq!(
            parse_line(r#"{"value": {}}"#).unwrap_err().reason(),
            "schema_violation"
        );
        assert_eq!(
            parse_line(r#"{"topic": "x"}"#).unwrap_err().reason(),
            "schema_violation"
        );
        let tombstone = parse_line(r#"{"topic":"x","key":"c","payload":null}"#).unwrap_err();
        assert_eq!(tombstone.reason(), "schema_violation");
        assert!(
            tombstone.to_string().contains("absent or null"),
            "{tombstone}"
        );
        assert_eq!(
            parse_line(r#"{"topic": 5, "value": {}}"#)
                .unwrap_err()
                .reason(),
            "schema_violation"
        );
    }
}
