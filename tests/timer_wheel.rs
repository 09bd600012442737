//! The timer wheel against a `BTreeMap` model over random insert / cancel /
//! poll sequences, with due times spread from "already due" to far beyond the
//! wheel's top level (the overflow set).

use std::collections::BTreeMap;

use leadscore::time::EventTime;
use leadscore::timer::{DenseIndex, KeyIndex, TimerWheel};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert { key: u8, delta: i64 },
    Cancel { key: u8 },
    Poll { advance: i64 },
}

/// Offsets covering every level of the wheel and the overflow.
fn delta() -> impl Strategy<Value = i64> {
    prop_oneof![
        -50i64..0,
        0i64..64,
        64i64..4_096,
        4_096i64..262_144,
        262_144i64..16_777_216,
        16_777_216i64..(1i64 << 36),
        (1i64 << 36)..(1i64 << 40),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..32, delta()).prop_map(|(key, delta)| Op::Insert { key, delta }),
        1 => (0u8..32).prop_map(|key| Op::Cancel { key }),
        3 => delta().prop_map(|d| Op::Poll { advance: d.max(0) }),
    ]
}

/// Runs `ops` on `wheel` and on a sorted map side by side; `key` maps the
/// generated keys to the wheel's (order-preserving).
fn matches_a_sorted_map<K: Clone + Ord + std::fmt::Debug, I: KeyIndex<K>>(
    mut wheel: TimerWheel<K, I>,
    key: impl Fn(u8) -> K,
    start: i64,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut model: BTreeMap<u8, i64> = BTreeMap::new();
    let mut now = start;
    let mut fired = Vec::new();
    for op in ops {
        match op {
            Op::Insert { key: k, delta } => {
                wheel.insert(key(k), EventTime::from_millis(now + delta));
                model.insert(k, now + delta);
            }
            Op::Cancel { key: k } => {
                let got = wheel.cancel(&key(k)).map(|t| t.millis());
                prop_assert_eq!(got, model.remove(&k));
            }
            Op::Poll { advance } => {
                now += advance;
                fired.clear();
                wheel.poll(EventTime::from_millis(now), &mut fired);
                let mut want: Vec<(i64, K)> = model
                    .iter()
                    .filter(|(_, d)| **d <= now)
                    .map(|(k, d)| (*d, key(*k)))
                    .collect();
                want.sort();
                model.retain(|_, d| *d > now);
                let got: Vec<(i64, K)> =
                    fired.iter().map(|(t, k)| (t.millis(), k.clone())).collect();
                prop_assert_eq!(got, want);
            }
        }
        prop_assert_eq!(wheel.len(), model.len());
        for (k, d) in &model {
            prop_assert_eq!(wheel.due(&key(*k)).map(|t| t.millis()), Some(*d));
        }
    }
    // Everything left fires once time runs far enough.
    fired.clear();
    wheel.poll(EventTime::from_millis(now + (1i64 << 41)), &mut fired);
    prop_assert_eq!(fired.len(), model.len());
    prop_assert!(wheel.is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn wheel_matches_a_sorted_map(start in 0i64..1_800_000_000_000, ops in prop::collection::vec(op(), 1..200)) {
        let wheel: TimerWheel<u8> = TimerWheel::new(EventTime::from_millis(start));
        matches_a_sorted_map(wheel, |k| k, start, ops)?;
    }

    #[test]
    fn wheel_with_a_dense_index_matches_a_sorted_map(start in 0i64..1_800_000_000_000, ops in prop::collection::vec(op(), 1..200)) {
        let wheel = TimerWheel::with_index(EventTime::from_millis(start), DenseIndex::new(3));
        matches_a_sorted_map(wheel, |k| (u32::from(k / 3), u16::from(k % 3)), start, ops)?;
    }
}

#[test]
fn next_due_is_a_lower_bound() {
    let mut wheel: TimerWheel<u32> = TimerWheel::new(EventTime::from_millis(1_000));
    assert_eq!(wheel.next_due(), None);
    for (k, d) in [(1, 5_000), (2, 90_000_000), (3, 1_000_000_000_000)] {
        wheel.insert(k, EventTime::from_millis(d));
    }
    let next = wheel.next_due().unwrap().millis();
    assert!(next <= 5_000, "{next}");
    let mut out = Vec::new();
    wheel.poll(EventTime::from_millis(5_000), &mut out);
    assert_eq!(out, vec![(EventTime::from_millis(5_000), 1)]);
    assert!(wheel.next_due().unwrap().millis() <= 90_000_000);
}

#[test]
fn a_million_timers_fire_in_order() {
    let mut wheel: TimerWheel<u32> = TimerWheel::new(EventTime::from_millis(0));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for k in 0..1_000_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        wheel.insert(k, EventTime::from_millis((x % 10_000_000_000) as i64 + 1));
    }
    let mut out = Vec::new();
    let mut last = (EventTime::MIN, 0);
    let mut total = 0;
    for step in 1..=100 {
        out.clear();
        wheel.poll(EventTime::from_millis(step * 100_000_000), &mut out);
        for item in &out {
            assert!(*item >= last, "out of order");
            last = *item;
        }
        total += out.len();
    }
    assert_eq!(total, 1_000_000);
}

/// A poll to the very millisecond a timer is due returns it, whichever
/// level it waited on, also when the poll before it found nothing due.
#[test]
fn a_poll_at_the_due_instant_returns_the_timer() {
    for delta in [1, 2, 63, 64, 65, 4_095, 4_096, 300_000, 20_000_000, 1 << 37] {
        let start = EventTime::from_millis(1_000_000);
        let mut wheel: TimerWheel<u8> = TimerWheel::new(start);
        let due = start.plus_millis(delta);
        wheel.insert(1, due);
        wheel.insert(2, due.plus_millis(5));
        let mut out = Vec::new();
        for step in [delta / 3, delta / 2, delta - 1] {
            wheel.poll(start.plus_millis(step), &mut out);
            assert!(out.is_empty(), "{delta}: nothing due at +{step}");
        }
        wheel.poll(due, &mut out);
        assert_eq!(out, vec![(due, 1)], "{delta}");
        out.clear();
        wheel.poll(due.plus_millis(4), &mut out);
        assert!(out.is_empty(), "{delta}");
        wheel.poll(due.plus_millis(5), &mut out);
        assert_eq!(out, vec![(due.plus_millis(5), 2)], "{delta}");
    }
}
