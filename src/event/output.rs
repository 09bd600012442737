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
        event.write_line(out, true)
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
    let digest = xxhash_rust::xxh3::xxh3_128(buf).to_be_bytes();
    let mut hex = [0u8; 32];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(digest) {
        pair[0] = b"0123456789abcdef"[usize::from(byte >> 4)];
        pair[1] = b"0123456789abcdef"[usize::from(byte & 0xf)];
    }
    hex
}

impl TierChanged<&str, &Cause> {
    /// Writes the event as JSON, byte for byte what serde writes for it,
    /// without serde's per-byte escaping of strings that need none (almost
    /// all of them: ids, names, times). The line is put together on the
    /// stack and written in one go.
    pub fn write_json(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.write_line(out, false)
    }

    /// [`Self::write_json`]; `ours` when the event id, type, direction and
    /// time are the ones [`Published`] makes (hex digits, fixed words, a
    /// formatted time): they need no escaping, and are not looked at.
    fn write_line(&self, out: &mut impl std::io::Write, ours: bool) -> std::io::Result<()> {
        let mut line = Line::default();
        line.field(b"{\"event_id\":\"", self.event_id, ours);
        line.field(b"\",\"type\":\"", self.kind, ours);
        line.text(b"\",\"contact_id\":\"", self.contact_id);
        line.text(b"\",\"model\":\"", self.model);
        line.text(b"\",\"from_tier\":\"", self.from_tier);
        line.text(b"\",\"to_tier\":\"", self.to_tier);
        line.field(b"\",\"direction\":\"", self.direction, ours);
        line.put(b"\",\"score\":");
        line.number(self.score);
        line.put(b",\"previous_score\":");
        line.number(self.previous_score);
        line.field(b",\"at\":\"", self.at, ours);
        line.field(b"\",\"cause\":{\"kind\":\"", self.cause.name(), true);
        match self.cause {
            Cause::Event { topic, event_id } => {
                line.text(b"\",\"topic\":\"", topic);
                line.text(b"\",\"event_id\":\"", event_id);
            }
            Cause::Expiry { rule } => line.text(b"\",\"rule\":\"", rule),
            Cause::Decay | Cause::Inactivity => {}
        }
        line.put(b"\"}");
        if let Some(emitted_at) = self.emitted_at {
            line.text(b",\"emitted_at\":\"", emitted_at);
            line.put(b"\"");
        }
        line.put(b"}");
        out.write_all(line.bytes())
    }
}

/// Room on the stack for a usual output line; a longer one moves to the heap.
const LINE_BYTES: usize = 448;

/// An output line being put together: on the stack while it fits.
struct Line {
    stack: [u8; LINE_BYTES],
    len: usize,
    /// The whole line once it outgrew the stack.
    heap: Vec<u8>,
}

impl Default for Line {
    fn default() -> Self {
        Line {
            stack: [0; LINE_BYTES],
            len: 0,
            heap: Vec::new(),
        }
    }
}

impl Line {
    /// Appends `bytes`; inlined, a constant piece is copied without a call.
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        match self.stack.get_mut(self.len..self.len + bytes.len()) {
            Some(room) if self.heap.is_empty() => {
                room.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            _ => self.spill(bytes),
        }
    }

    #[cold]
    fn spill(&mut self, bytes: &[u8]) {
        if self.heap.is_empty() {
            self.heap.extend_from_slice(&self.stack[..self.len]);
        }
        self.heap.extend_from_slice(bytes);
    }

    fn bytes(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.stack[..self.len]
        } else {
            &self.heap
        }
    }

    /// `prefix` (the JSON between the last value and this string's
    /// contents, its opening quote included), then the string's contents,
    /// escaped as serde escapes them; the closing quote is the next prefix's.
    #[inline(always)]
    fn text(&mut self, prefix: &[u8], value: &str) {
        self.put(prefix);
        if needs_escape(value.as_bytes()) {
            self.escaped(value);
        } else {
            self.put(value.as_bytes());
        }
    }

    /// [`Self::text`], of a value known to need no escaping when `plain`.
    #[inline(always)]
    fn field(&mut self, prefix: &[u8], value: &str, plain: bool) {
        debug_assert!(!plain || !needs_escape(value.as_bytes()), "{value:?}");
        if plain {
            self.put(prefix);
            self.put(value.as_bytes());
        } else {
            self.text(prefix, value);
        }
    }

    /// The contents of `value` as serde escapes them (without the quotes).
    #[cold]
    fn escaped(&mut self, value: &str) {
        // Serializing a `str` cannot fail; the quotes are the first and last bytes.
        let quoted = serde_json::to_vec(value).unwrap_or_default();
        self.put(
            quoted
                .get(1..quoted.len().saturating_sub(1))
                .unwrap_or_default(),
        );
    }

    /// `x` as serde writes it. A whole number of cents below 10^13 in size
    /// (as every score published is: see [`round2`]) is written by hand:
    /// the shortest decimal that reads back as `x` is then its cents, since
    /// any shorter decimal lies at least a cent away, and doubles that size
    /// are less than a hundredth apart. Anything else goes to serde.
    fn number(&mut self, x: f64) {
        let cents = (x * 100.0).round();
        if !(cents.abs() < 1e15 && cents / 100.0 == x) {
            let written = serde_json::to_vec(&x).unwrap_or_default();
            return self.put(&written);
        }
        let cents = cents.abs() as u64;
        let (whole, frac) = (cents / 100, cents % 100);
        // Sign, up to 13 digits, the point and two decimals, from the end.
        let mut buf = [0u8; 17];
        let mut at = buf.len();
        let mut push = |b: u8| {
            at -= 1;
            buf[at] = b;
        };
        match frac {
            0 => push(b'0'),
            _ if frac % 10 == 0 => push(b'0' + (frac / 10) as u8),
            _ => {
                push(b'0' + (frac % 10) as u8);
                push(b'0' + (frac / 10) as u8);
            }
        }
        push(b'.');
        let mut rest = whole;
        loop {
            push(b'0' + (rest % 10) as u8);
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if x.is_sign_negative() {
            push(b'-');
        }
        self.put(&buf[at..]);
    }
}

/// Whether any byte is one JSON escapes: a control character, `"` or `\\`.
/// Tested eight bytes at a time (exact: a word tests positive only if one
/// of its bytes is such a byte). The last word overlaps the one before it;
/// a shorter text is read as two overlapping halves of a word, or as its
/// first, middle and last bytes padded with spaces.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let escapes = |w: u64| {
        let below_space = w.wrapping_sub(0x20 * ONES) & !w & HIGH != 0;
        below_space || has_zero(w ^ (b'"' as u64 * ONES)) || has_zero(w ^ (b'\\' as u64 * ONES))
    };
    let n = bytes.len();
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
    let half = |at: usize| {
        u64::from(u32::from_le_bytes(
            bytes[at..at + 4].try_into().unwrap_or_default(),
        ))
    };
    match n {
        0 => false,
        1..=3 => {
            let (a, b, c) = (bytes[0], bytes[n / 2], bytes[n - 1]);
            escapes(u64::from_le_bytes([a, b, c, b' ', b' ', b' ', b' ', b' ']))
        }
        4..=7 => escapes(half(0) | half(n - 4) << 32),
        _ => (0..n / 8).any(|k| escapes(word(8 * k))) || escapes(word(n - 8)),
    }
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
