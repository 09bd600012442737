use super::*;

const DAY: i64 = 86_400_000;

fn t(days: i64) -> EventTime {
    EventTime::from_millis(days * DAY)
}

#[test]
fn a_ledger_fits_one_cache_line() {
    assert!(std::mem::size_of::<CapLedger>() <= 64);
}

#[test]
fn the_prefetched_address_is_where_a_lookup_reads() {
    let plain = Cap {
        max_times: 5,
        window_ms: None,
        per_item: false,
    };
    let mut l = CapLedger::default();
    for d in 0..3 {
        assert!(l.admit(&plain, "", t(d), t(d), 0));
    }
    assert_eq!(l.times_ptr(), l.times.as_ptr().cast());

    let per_item = Cap {
        per_item: true,
        ..plain
    };
    let mut l = CapLedger::default();
    assert!(l.admit(&per_item, "email-1", t(0), t(0), 0));
    let Items::List(list) = &l.items else {
        panic!("one item is a list")
    };
    assert_eq!(l.times_ptr(), list.as_ptr().cast());
}

#[test]
fn window_cap_slides() {
    let cap = Cap {
        max_times: 2,
        window_ms: Some(7 * DAY),
        per_item: false,
    };
    let mut l = CapLedger::default();
    assert!(l.admit(&cap, "a", t(100), t(100), 0));
    assert!(l.admit(&cap, "b", t(101), t(101), 0));
    assert!(!l.admit(&cap, "c", t(103), t(103), 0));
    assert!(
        !l.admit(&cap, "c", t(106), t(106), 0),
        "day 100 is still inside (99, 106]"
    );
    assert!(
        l.admit(&cap, "c", t(107), t(107), 0),
        "day 100 left the window (100, 107]"
    );
    assert!(
        !l.admit(&cap, "d", t(107), t(107), 0),
        "101 and 107 fill the window"
    );
}

#[test]
fn per_item_caps_count_each_item() {
    let cap = Cap {
        max_times: 1,
        window_ms: Some(DAY),
        per_item: true,
    };
    let mut l = CapLedger::default();
    assert!(l.admit(&cap, "em-1", t(10), t(10), 0));
    assert!(l.admit(&cap, "em-2", t(10), t(10), 0));
    assert!(!l.admit(&cap, "em-1", t(10), t(10), 0));
}

#[test]
fn late_events_count_only_matches_before_them() {
    let cap = Cap {
        max_times: 1,
        window_ms: None,
        per_item: false,
    };
    let mut l = CapLedger::default();
    assert!(l.admit(&cap, "", t(10), t(10), 0));
    assert!(
        l.admit(&cap, "", t(5), t(10), 0),
        "nothing scored at or before day 5"
    );
    assert!(!l.admit(&cap, "", t(7), t(10), 0));
    assert_eq!(
        l.times(""),
        &[t(5)],
        "a lifetime cap keeps the earliest max_times"
    );
}

/// The shape ledgers have always been stored in: a map of item to times.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct StoredLedger {
    times: Vec<EventTime>,
    items: std::collections::HashMap<String, Vec<EventTime>>,
    swept_at: Option<EventTime>,
}

#[test]
fn per_item_times_are_stored_as_a_map() {
    let cap = Cap {
        max_times: 2,
        window_ms: Some(30 * DAY),
        per_item: true,
    };
    let mut l = CapLedger::default();
    for (item, day) in [("em-2", 3), ("em-10", 1), ("em-2", 1), ("em-1", 2)] {
        assert!(l.admit(&cap, item, t(day), t(3), 0));
    }
    let stored: StoredLedger = postcard::from_bytes(&postcard::to_stdvec(&l).unwrap()).unwrap();
    let want = [
        ("em-1", vec![t(2)]),
        ("em-10", vec![t(1)]),
        ("em-2", vec![t(1), t(3)]),
    ];
    assert_eq!(
        stored.items,
        want.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    );
    // And a ledger stored that way reads back as the same ledger.
    let read: CapLedger = postcard::from_bytes(&postcard::to_stdvec(&stored).unwrap()).unwrap();
    assert_eq!(read, l);
    assert_eq!(read.times("em-2"), &[t(1), t(3)]);
    // Past eight items the ledger keeps a table; stored the same way.
    for i in 0..20 {
        assert!(l.admit(&cap, &format!("more-{i}"), t(3), t(3), 0));
    }
    assert!(matches!(l.items, Items::Table(_)));
    let stored: StoredLedger = postcard::from_bytes(&postcard::to_stdvec(&l).unwrap()).unwrap();
    assert_eq!(stored.items.len(), 23);
    assert_eq!(stored.items["em-2"], vec![t(1), t(3)]);
    let read: CapLedger = postcard::from_bytes(&postcard::to_stdvec(&stored).unwrap()).unwrap();
    assert_eq!(read, l);
    assert!(
        !l.clone().admit(&cap, "em-2", t(3), t(3), 0),
        "em-2 is full"
    );
}

proptest::proptest! {
    /// Against the plain definition, over every scored match kept: for
    /// events at most `grace` behind the clock, a match scores when fewer
    /// than `max_times` scored matches of its item lie in `(t − window, t]`
    /// (`≤ t` for a lifetime cap).
    #[test]
    fn agrees_with_a_list_of_every_scored_match(
        max_times in 1u32..4,
        window_days in proptest::option::of(1i64..4),
        per_item in proptest::bool::ANY,
        // Up to 12 items: past the list's 8, so that lists become tables.
        steps in proptest::collection::vec((0u8..12, 0i64..DAY / 4, 0i64..2 * DAY), 1..300),
    ) {
        let cap = Cap { max_times, window_ms: window_days.map(|d| d * DAY), per_item };
        let grace = 2 * DAY;
        let mut l = CapLedger::default();
        let mut scored: Vec<(String, i64)> = Vec::new();
        let mut clock = 10 * DAY;
        for (item, advance, late) in steps {
            clock += advance;
            let t = clock - late;
            let item = format!("em-{item}");
            let key = if per_item { item.clone() } else { String::new() };
            let count = scored
                .iter()
                .filter(|(k, s)| *k == key && *s <= t && cap.window_ms.is_none_or(|w| *s > t - w))
                .count();
            let expected = count < max_times as usize;
            let got = l.admit(&cap, &item, EventTime::from_millis(t), EventTime::from_millis(clock), grace);
            proptest::prop_assert_eq!(got, expected, "{} at {} (clock {})", item, t, clock);
            if got {
                scored.push((key, t));
            }
        }
    }
}

#[test]
fn memory_stays_bounded() {
    let cap = Cap {
        max_times: 3,
        window_ms: Some(DAY),
        per_item: true,
    };
    let mut l = CapLedger::default();
    for i in 0..10_000 {
        let now = EventTime::from_millis(i * DAY / 10);
        l.admit(&cap, &format!("item-{i}"), now, now, DAY);
    }
    assert!(
        l.item_count() < 40,
        "stale items must be swept, got {}",
        l.item_count()
    );
}
