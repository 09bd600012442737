//! The tier-change event we publish (SPEC §5), and its deterministic id.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::time::EventTime;

/// What moved a contact between tiers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// Inline when short (topic names and event ids mostly are): a tier
    /// change allocates nothing.
    Event {
        topic: CompactString,
        event_id: CompactString,
    },
    Decay,
    Expiry {
        rule: CompactString,
    },
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

/// A tier change as it is published: the engine's change with the names the
/// rules give its model and tiers (`scoring::Engine::published`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Published<'a> {
    pub contact: &'a str,
    pub model: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    /// Whether `to` is above `from`.
    pub up: bool,
    pub score: f64,
    pub previous_score: f64,
    pub at: EventTime,
    pub cause: &'a Cause,
}

impl Published<'_> {
    /// Writes the output event as JSON, without allocating (its id and time
    /// are formatted on the stack); `emitted_at` is the live service's
    /// publication time.
    pub fn write_json(
        &self,
        out: &mut impl std::io::Write,
        emitted_at: Option<&str>,
    ) -> std::io::Result<()> {
        let id = tier_change_id(
            self.contact,
            self.model,
            self.at.millis(),
            self.from,
            self.to,
            self.cause,
        );
        let at_owned;
        let at_bytes = self.at.rfc3339_bytes();
        let at = match &at_bytes {
            Some(b) => ascii(b),
            None => {
                at_owned = self.at.to_rfc3339();
                &at_owned
            }
        };
        let event = TierChanged {
            event_id: ascii(&id),
            kind: "tier_changed",
            contact_id: self.contact,
            model: self.model,
            from_tier: self.from,
            to_tier: self.to,
            direction: if self.up { "up" } else { "down" },
            score: round2(self.score),
            previous_score: round2(self.previous_score),
            at,
            cause: self.cause,
            emitted_at,
        };
        event.write_json(out)
    }
}

/// Text of bytes known to be ASCII (hex digits, formatted times).
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
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
    let at = at_ms.to_le_bytes();
    let (cause_parts, n): ([&[u8]; 3], usize) = match cause {
        Cause::Event { topic, event_id } => ([b"event", topic.as_bytes(), event_id.as_bytes()], 3),
        Cause::Decay => ([b"decay", b"", b""], 1),
        Cause::Expiry { rule } => ([b"expiry", rule.as_bytes(), b""], 2),
        Cause::Inactivity => ([b"inactivity", b"", b""], 1),
    };
    let parts = [
        contact.as_bytes(),
        model.as_bytes(),
        &at,
        from.as_bytes(),
        to.as_bytes(),
    ];
    let parts = parts.iter().chain(&cause_parts[..n]);
    // The parts, each preceded by its length, hashed in one call (the same
    // digest as streaming them, at a fraction of the cost): from the stack,
    // or from the heap for the rare ids too long for it.
    let total: usize = parts.clone().map(|p| 8 + p.len()).sum();
    let (mut stack, mut heap) = ([0u8; 320], Vec::new());
    let buf = if total <= stack.len() {
        &mut stack[..total]
    } else {
        heap.resize(total, 0);
        &mut heap[..]
    };
    let mut pos = 0;
    for p in parts {
        buf[pos..pos + 8].copy_from_slice(&(p.len() as u64).to_le_bytes());
        buf[pos + 8..pos + 8 + p.len()].copy_from_slice(p);
        pos += 8 + p.len();
    }
    let digest = xxhash_rust::xxh3::xxh3_128(buf);
    let mut hex = [0u8; 32];
    for (i, c) in hex.iter_mut().enumerate() {
        let nibble = (digest >> (124 - 4 * i)) & 0xf;
        *c = b"0123456789abcdef"[nibble as usize];
    }
    hex
}

impl TierChanged<&str, &Cause> {
    /// Writes the event as JSON, byte for byte what serde writes for it,
    /// without serde's per-byte escaping of strings that need none (almost
    /// all of them: ids, names, times). Each piece of JSON between two
    /// values is one write.
    pub fn write_json(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        text(out, b"{\"event_id\":\"", self.event_id)?;
        text(out, b"\",\"type\":\"", self.kind)?;
        text(out, b"\",\"contact_id\":\"", self.contact_id)?;
        text(out, b"\",\"model\":\"", self.model)?;
        text(out, b"\",\"from_tier\":\"", self.from_tier)?;
        text(out, b"\",\"to_tier\":\"", self.to_tier)?;
        text(out, b"\",\"direction\":\"", self.direction)?;
        out.write_all(b"\",\"score\":")?;
        serde_json::to_writer(&mut *out, &self.score)?;
        out.write_all(b",\"previous_score\":")?;
        serde_json::to_writer(&mut *out, &self.previous_score)?;
        text(out, b",\"at\":\"", self.at)?;
        text(out, b"\",\"cause\":{\"kind\":\"", self.cause.name())?;
        match self.cause {
            Cause::Event { topic, event_id } => {
                text(out, b"\",\"topic\":\"", topic)?;
                text(out, b"\",\"event_id\":\"", event_id)?;
            }
            Cause::Expiry { rule } => text(out, b"\",\"rule\":\"", rule)?,
            Cause::Decay | Cause::Inactivity => {}
        }
        out.write_all(b"\"}")?;
        if let Some(emitted_at) = self.emitted_at {
            text(out, b",\"emitted_at\":\"", emitted_at)?;
            out.write_all(b"\"")?;
        }
        out.write_all(b"}")
    }
}

/// `prefix` (the JSON between the last value and this string's contents,
/// its opening quote included), then the string's contents, escaped as
/// serde escapes them; the closing quote is the next prefix's.
fn text(out: &mut impl std::io::Write, prefix: &[u8], value: &str) -> std::io::Result<()> {
    out.write_all(prefix)?;
    let bytes = value.as_bytes();
    if !needs_escape(bytes) {
        return out.write_all(bytes);
    }
    escaped(out, value)
}

/// The contents of `value` as serde escapes them (without the quotes).
#[cold]
fn escaped(out: &mut impl std::io::Write, value: &str) -> std::io::Result<()> {
    let quoted = serde_json::to_vec(value)?;
    out.write_all(&quoted[1..quoted.len() - 1])
}

/// Whether any byte is one JSON escapes: a control character, `"` or `\\`.
/// Eight bytes at a time (exact: a word tests positive only if one of its
/// bytes is such a byte).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().unwrap_or_default());
        let below_space = w.wrapping_sub(0x20 * ONES) & !w & HIGH != 0;
        if below_space || has_zero(w ^ (b'"' as u64 * ONES)) || has_zero(w ^ (b'\\' as u64 * ONES))
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
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
mod tests;
