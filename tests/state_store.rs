//! One contract, two stores: `MemStateStore` and `RocksStateStore` must
//! behave the same for contacts, offsets, timers, the outbox, dedupe ids and
//! dropping a partition. RocksDB must also keep it all across a reopen.

mod common;

use common::*;
use leadscore::rules::{Layout, ModelLayout};
use leadscore::state::{
    Batch, MemStateStore, OutboxEntry, RocksStateStore, StateStore, StoreError, TimerRow,
};
use leadscore::time::EventTime;

fn timer(partition: u32, due_ms: i64, model: u16, contact: &str) -> TimerRow {
    TimerRow {
        partition,
        due: EventTime::from_millis(due_ms),
        model,
        contact: contact.into(),
    }
}

fn entry(key: &str, payload: &[u8]) -> OutboxEntry {
    OutboxEntry {
        topic: "lead-score-events".into(),
        key: Some(key.as_bytes().to_vec()),
        payload: payload.to_vec(),
        headers: vec![("h".into(), b"v".to_vec())],
    }
}

fn a_contact() -> leadscore::scoring::ContactState {
    let mut c = Contact::new(include_str!("../examples/rules.toml"));
    c.apply(&visit("e1", "https://app.example/pricing", at(0.0)));
    c.apply(&form(
        "e2",
        "webinar-q1",
        &[("title", leadscore::event::FieldValue::Text("CTO".into()))],
        at(1.0),
    ));
    c.state
}

fn fill(store: &dyn StateStore) {
    let mut b = Batch::default();
    b.put_contact(1, "c-1", &a_contact());
    b.put_contact(2, "c-2", &a_contact());
    for t in [
        timer(1, 500, 0, "c-1"),
        timer(1, -20, 1, "c-1"),
        timer(1, 900, 0, "c-9"),
        timer(2, 100, 0, "c-2"),
    ] {
        b.put_timer(&t);
    }
    b.put_outbox(1, 7, &entry("c-1", b"{\"a\":1}"));
    b.put_outbox(1, 8, &entry("c-1", b"{\"a\":2}"));
    b.put_outbox(2, 1, &entry("c-2", b"{}"));
    b.put_offset(1, "page-visits", 42);
    b.put_offset(2, "page-visits", 7);
    b.put_seen(1, "c-1", 0xDEAD_BEEF, EventTime::from_millis(123));
    store.commit(b).unwrap();
}

fn contract(store: &dyn StateStore) {
    fill(store);
    assert_eq!(store.contact(1, "c-1").unwrap(), Some(a_contact()));
    assert_eq!(
        store.contact(1, "c-2").unwrap(),
        None,
        "keys are per partition"
    );
    assert_eq!(store.offset(1, "page-visits").unwrap(), Some(42));
    assert_eq!(store.offset(1, "purchases").unwrap(), None);
    let due = store
        .timers_before(1, EventTime::from_millis(900), 100)
        .unwrap();
    assert_eq!(
        due,
        vec![timer(1, -20, 1, "c-1"), timer(1, 500, 0, "c-1")],
        "partition 1, before 900, in due order"
    );
    assert_eq!(
        store
            .timers_before(1, EventTime::from_millis(901), 1)
            .unwrap()
            .len(),
        1,
        "limit"
    );
    let outbox = store.outbox(1, 100).unwrap();
    assert_eq!(outbox.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [7, 8]);
    assert_eq!(outbox[1].1.payload, b"{\"a\":2}");
    assert_eq!(
        store.seen(1, "c-1", 0xDEAD_BEEF).unwrap(),
        Some(EventTime::from_millis(123))
    );
    assert_eq!(store.seen(1, "c-1", 1).unwrap(), None);

    let mut b = Batch::default();
    b.delete_timer(&timer(1, -20, 1, "c-1"));
    b.delete_outbox(1, 7);
    b.delete_seen(1, "c-1", 0xDEAD_BEEF);
    b.put_offset(1, "page-visits", 43);
    store.commit(b).unwrap();
    assert_eq!(
        store
            .timers_before(1, EventTime::from_millis(900), 100)
            .unwrap(),
        vec![timer(1, 500, 0, "c-1")]
    );
    assert_eq!(store.outbox(1, 100).unwrap().len(), 1);
    assert_eq!(store.seen(1, "c-1", 0xDEAD_BEEF).unwrap(), None);
    assert_eq!(store.offset(1, "page-visits").unwrap(), Some(43));

    let mut b = Batch::default();
    b.drop_partition(1);
    store.commit(b).unwrap();
    assert_eq!(store.contact(1, "c-1").unwrap(), None);
    assert!(store
        .timers_before(1, EventTime::MAX, 100)
        .unwrap()
        .is_empty());
    assert!(store.outbox(1, 100).unwrap().is_empty());
    assert_eq!(store.offset(1, "page-visits").unwrap(), None);
    assert_eq!(
        store.contact(2, "c-2").unwrap(),
        Some(a_contact()),
        "other partitions stay"
    );
    assert_eq!(store.offset(2, "page-visits").unwrap(), Some(7));
    assert_eq!(store.outbox(2, 100).unwrap().len(), 1);

    // The rules layout belongs to the store, not to a partition.
    assert_eq!(store.rules_layout().unwrap(), None);
    let layout = Layout {
        models: vec![ModelLayout {
            name: "m".into(),
            tiers: vec!["cold".into(), "hot".into()],
            rules: vec!["r1".into()],
        }],
    };
    let mut b = Batch::default();
    b.put_rules_layout(&layout);
    b.drop_partition(2);
    store.commit(b).unwrap();
    assert_eq!(store.rules_layout().unwrap(), Some(layout));
}

#[test]
fn memory_store_meets_the_contract() {
    contract(&MemStateStore::default());
}

#[test]
fn rocksdb_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&RocksStateStore::open(dir.path(), 64 << 20).unwrap());
}

#[test]
fn rocksdb_keeps_state_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RocksStateStore::open(dir.path(), 64 << 20).unwrap();
        fill(&store);
    }
    let store = RocksStateStore::open(dir.path(), 64 << 20).unwrap();
    assert_eq!(store.contact(1, "c-1").unwrap(), Some(a_contact()));
    assert_eq!(store.offset(1, "page-visits").unwrap(), Some(42));
    assert_eq!(
        store.timers_before(2, EventTime::MAX, 10).unwrap(),
        vec![timer(2, 100, 0, "c-2")]
    );
    assert!(store.live_data_size() > 0 || store.cache_usage() > 0);
}

#[test]
fn a_directory_open_elsewhere_is_said_to_be_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RocksStateStore::open(dir.path(), 64 << 20).unwrap();
    let err = RocksStateStore::open(dir.path(), 64 << 20)
        .err()
        .expect("one opener at a time");
    assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
    assert!(err.to_string().contains("in use"), "{err}");
}

#[test]
fn a_corrupt_state_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        RocksStateStore::open(dir.path(), 64 << 20).unwrap();
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("MANIFEST")
        {
            std::fs::write(&path, b"not a manifest").unwrap();
        }
    }
    let err = RocksStateStore::open(dir.path(), 64 << 20)
        .err()
        .expect("a corrupt manifest must not open");
    assert!(err.to_string().contains("state store"), "{err}");
}

#[test]
fn rocksdb_forgets_event_ids_once_no_partition_can_match_them() {
    use leadscore::state::DedupeExpiry;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let watermark = Arc::new(AtomicI64::new(i64::MIN));
    let expiry = DedupeExpiry {
        window_ms: 500,
        watermark: watermark.clone(),
    };
    let store = RocksStateStore::open_with(dir.path(), 32 << 20, Some(expiry)).unwrap();
    let mut batch = Batch::default();
    batch.put_seen(0, "c", 1, EventTime::from_millis(0));
    batch.put_seen(0, "c", 2, EventTime::from_millis(1000));
    store.commit(batch).unwrap();
    store.compact_dedupe().unwrap();
    assert!(
        store.seen(0, "c", 1).unwrap().is_some(),
        "kept while no clock is known"
    );
    watermark.store(1200, Ordering::Relaxed);
    store.compact_dedupe().unwrap();
    assert_eq!(store.seen(0, "c", 1).unwrap(), None, "0 + 500 <= 1200");
    assert_eq!(
        store.seen(0, "c", 2).unwrap(),
        Some(EventTime::from_millis(1000)),
        "1000 + 500 > 1200: still a possible duplicate"
    );
}
