//! Key layouts of the state column families. Every key starts with the
//! partition (u32 big-endian) so that a partition's state is one key range:
//! dropped on revoke, restored elsewhere.
//!
//! | family    | key                                              | value |
//! |-----------|--------------------------------------------------|-------|
//! | contacts  | partition · contact id                           | encoded `ContactState` |
//! | timers    | partition · due (u64 BE, order-preserving) · model (u16 BE) · contact id | empty |
//! | outbox    | partition · sequence (u64 BE)                    | postcard `OutboxEntry` |
//! | offsets   | partition · topic                                | next offset (i64 BE) |
//! | dedupe    | partition · contact id · 0xFF · digest (u64 BE)  | seen at (i64 BE) |

use crate::time::EventTime;

pub fn partition_prefix(partition: u32) -> [u8; 4] {
    partition.to_be_bytes()
}

/// The first key after every key of `partition`.
pub fn partition_end(partition: u32) -> Vec<u8> {
    match partition.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xFF; 5],
    }
}

pub fn contact_key(partition: u32, contact: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + contact.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(contact.as_bytes());
    k
}

/// (partition, contact id) of a contact key.
pub fn parse_contact_key(k: &[u8]) -> Option<(u32, String)> {
    let partition = u32::from_be_bytes(k.get(..4)?.try_into().ok()?);
    let contact = String::from_utf8(k[4..].to_vec()).ok()?;
    Some((partition, contact))
}

/// Event time as an unsigned big-endian number that sorts like the time.
fn due_bytes(due: EventTime) -> [u8; 8] {
    ((due.millis() as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn timer_key(partition: u32, due: EventTime, model: u16, contact: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(14 + contact.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(&due_bytes(due));
    k.extend_from_slice(&model.to_be_bytes());
    k.extend_from_slice(contact.as_bytes());
    k
}

/// The timers of `partition` due in `[from, until)` are the keys in [start, end).
pub fn timer_range(partition: u32, from: EventTime, until: EventTime) -> (Vec<u8>, Vec<u8>) {
    let bound = |t: EventTime| {
        let mut k = partition.to_be_bytes().to_vec();
        k.extend_from_slice(&due_bytes(t));
        k
    };
    (bound(from), bound(until))
}

/// (partition, due, model, contact) of a timer key.
pub fn parse_timer_key(k: &[u8]) -> Option<(u32, EventTime, u16, String)> {
    if k.len() < 14 {
        return None;
    }
    let partition = u32::from_be_bytes(k[0..4].try_into().ok()?);
    let due =
        EventTime::from_millis((u64::from_be_bytes(k[4..12].try_into().ok()?) ^ (1 << 63)) as i64);
    let model = u16::from_be_bytes(k[12..14].try_into().ok()?);
    let contact = String::from_utf8(k[14..].to_vec()).ok()?;
    Some((partition, due, model, contact))
}

pub fn outbox_key(partition: u32, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&partition.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn parse_outbox_key(k: &[u8]) -> Option<(u32, u64)> {
    let k: &[u8; 12] = k.try_into().ok()?;
    Some((
        u32::from_be_bytes(k[..4].try_into().ok()?),
        u64::from_be_bytes(k[4..].try_into().ok()?),
    ))
}

pub fn offset_key(partition: u32, topic: &str) -> Vec<u8> {
    let mut k = partition.to_be_bytes().to_vec();
    k.extend_from_slice(topic.as_bytes());
    k
}

pub fn dedupe_key(partition: u32, contact: &str, digest: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(13 + contact.len());
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(contact.as_bytes());
    k.push(0xFF); // never inside UTF-8, so no contact id is a prefix of another's keys
    k.extend_from_slice(&digest.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_sort_by_partition_then_due_and_parse_back() {
        let a = timer_key(1, EventTime::from_millis(-5), 0, "zz");
        let b = timer_key(1, EventTime::from_millis(3), 0, "aa");
        let c = timer_key(2, EventTime::from_millis(-9), 1, "aa");
        assert!(a < b && b < c);
        assert_eq!(
            parse_timer_key(&b),
            Some((1, EventTime::from_millis(3), 0, "aa".into()))
        );
        let (start, end) = timer_range(1, EventTime::MIN, EventTime::from_millis(3));
        assert!(start.as_slice() <= a.as_slice() && a < end && b >= end);
    }

    #[test]
    fn outbox_keys_round_trip() {
        assert_eq!(parse_outbox_key(&outbox_key(7, 42)), Some((7, 42)));
        assert!(outbox_key(7, 42) < outbox_key(7, 43));
        assert!(partition_end(7).as_slice() > outbox_key(7, u64::MAX).as_slice());
    }
}
