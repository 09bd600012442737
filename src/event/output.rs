//! The tier-change event we publish (SPEC §5), and its deterministic id.

use serde::{Deserialize, Serialize};

/// What moved a contact between tiers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    Event { topic: String, event_id: String },
    Decay,
    Expiry { rule: String },
    Inactivity,
}

impl Cause {
    /// The `kind` it is serialized with.
    pub fn name(&self) -> &'static str {
        match self {
            Cause::Event { .. } => "event",
            Cause::Decay => "decay",
            Cause::Expiry { .. } => "expiry",
            Cause::Inactivity => "inactivity",
        }
    }
}

/// One `tier_changed` event on the output topic. Owned by default; the
/// output path serializes a borrowed one (`TierChanged<&str, &Cause>`) so
/// that publishing a change allocates nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierChanged<S = String, C = Cause> {
    pub event_id: S,
    #[serde(rename = "type")]
    pub kind: S,
    pub contact_id: S,
    pub model: S,
    pub from_tier: S,
    pub to_tier: S,
    pub direction: S,
    pub score: f64,
    pub previous_score: f64,
    pub at: S,
    pub cause: C,
    /// Wall-clock time of publication; live mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emitted_at: Option<S>,
}

/// The same tier change always gets the same id: a 128-bit XXH3 digest (a
/// stable, specified hash) of everything that identifies it — contact, model,
/// instant, tiers and cause — as 32 lower-case hex digits (no allocation).
pub fn tier_change_id(
    contact: &str,
    model: &str,
    at_ms: i64,
    from: &str,
    to: &str,
    cause: &Cause,
) -> [u8; 32] {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut part = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part(contact.as_bytes());
    part(model.as_bytes());
    part(&at_ms.to_le_bytes());
    part(from.as_bytes());
    part(to.as_bytes());
    match cause {
        Cause::Event { topic, event_id } => {
            part(b"event");
            part(topic.as_bytes());
            part(event_id.as_bytes());
        }
        Cause::Decay => part(b"decay"),
        Cause::Expiry { rule } => {
            part(b"expiry");
            part(rule.as_bytes());
        }
        Cause::Inactivity => part(b"inactivity"),
    }
    let digest = h.digest128();
    let mut hex = [0u8; 32];
    for (i, c) in hex.iter_mut().enumerate() {
        let nibble = (digest >> (124 - 4 * i)) & 0xf;
        *c = b"0123456789abcdef"[nibble as usize];
    }
    hex
}

/// Rounds a score to the two decimals the output carries.
pub fn round2(x: f64) -> f64 {
    let r = (x * 100.0).round() / 100.0;
    if r == 0.0 {
        0.0 // no "-0.0" in output
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinguish_causes() {
        let a = tier_change_id("c", "m", 5, "cold", "warm", &Cause::Decay);
        assert_eq!(
            a,
            tier_change_id("c", "m", 5, "cold", "warm", &Cause::Decay)
        );
        assert_eq!(a.len(), 32);
        let digest = {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for part in [
                &b"c"[..],
                b"m",
                &5i64.to_le_bytes(),
                b"cold",
                b"warm",
                b"decay",
            ] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part);
            }
            h.digest128()
        };
        assert_eq!(
            std::str::from_utf8(&a).unwrap(),
            format!("{digest:032x}"),
            "the digest in hex"
        );
        assert_ne!(
            a,
            tier_change_id("c", "m", 5, "cold", "warm", &Cause::Inactivity)
        );
        assert_ne!(
            a,
            tier_change_id("c", "m", 6, "cold", "warm", &Cause::Decay)
        );
        let e1 = Cause::Event {
            topic: "t".into(),
            event_id: "1".into(),
        };
        let e2 = Cause::Event {
            topic: "t1".into(),
            event_id: "".into(),
        };
        assert_ne!(
            tier_change_id("c", "m", 5, "a", "b", &e1),
            tier_change_id("c", "m", 5, "a", "b", &e2)
        );
    }

    #[test]
    fn cause_serializes_as_in_the_spec() {
        let json = serde_json::to_string(&Cause::Expiry {
            rule: "webinar".into(),
        })
        .unwrap();
        assert_eq!(json, r#"{"kind":"expiry","rule":"webinar"}"#);
        assert_eq!(
            serde_json::to_string(&Cause::Decay).unwrap(),
            r#"{"kind":"decay"}"#
        );
    }

    #[test]
    fn rounds_to_two_decimals_without_negative_zero() {
        assert_eq!(round2(23.996), 24.0);
        assert_eq!(round2(-0.001).to_string(), "0");
        assert_eq!(round2(-950.254), -950.25);
    }
}
