//! The service's processing step without Kafka: `MemStateStore`, `now` as a
//! parameter, no sleeps. Covers events → tier changes, dead letters with
//! their headers, duplicates, restart from committed offsets and outbox, and
//! timers that come due while the service is down.

use std::path::Path;
use std::sync::Arc;

use leadscore::event::TopicMap;
use leadscore::processor::{InputRecord, Outgoing, Processor, ProcessorSettings};
use leadscore::replay::parse_line;
use leadscore::rules::RuleSet;
use leadscore::scoring::Engine;
use leadscore::state::{MemStateStore, OutboxEntry, StateStore};
use leadscore::time::EventTime;
use serde_json::Value;

const DAY: i64 = 86_400_000;

fn walkthrough() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/cases/walkthrough")
}

fn processor(store: Arc<MemStateStore>, skew: Option<i64>) -> Processor<MemStateStore> {
    with_clock(store, skew, false)
}

fn with_clock(
    store: Arc<MemStateStore>,
    skew: Option<i64>,
    event_clock: bool,
) -> Processor<MemStateStore> {
    with_settings(store, settings(skew, event_clock))
}

fn settings(skew: Option<i64>, event_clock: bool) -> ProcessorSettings {
    ProcessorSettings {
        topics: TopicMap::default(),
        output_topic: "lead-score-events".into(),
        dead_letter_topic: "lead-score-dlq".into(),
        max_message_bytes: 1_000_000,
        max_clock_skew_ms: skew,
        dedupe_window_ms: 30 * DAY,
        timer_horizon_ms: 3_600_000,
        event_clock,
    }
}

fn with_settings(
    store: Arc<MemStateStore>,
    settings: ProcessorSettings,
) -> Processor<MemStateStore> {
    let rules = RuleSet::load(&walkthrough().join("rules.toml")).unwrap();
    Processor::new(Engine::new(rules, 30 * DAY), store, settings)
}

/// The walkthrough case as consumed records (bad lines kept as raw bytes).
fn records() -> Vec<InputRecord> {
    let text = std::fs::read_to_string(walkthrough().join("events.jsonl")).unwrap();
    text.lines()
        .enumerate()
        .map(|(i, line)| match parse_line(line) {
            Ok(r) => InputRecord {
                topic: r.topic.into_owned(),
                partition: 0,
                offset: i as i64,
                key: r.key.map(|k| k.as_bytes().to_vec()),
                payload: Some(r.payload.into_owned()),
            },
            Err(_) => InputRecord {
                topic: "page-visits".into(),
                partition: 0,
                offset: i as i64,
                key: None,
                payload: Some(line.as_bytes().to_vec()),
            },
        })
        .collect()
}

fn occurred_at(rec: &InputRecord) -> Option<EventTime> {
    let v: Value = serde_json::from_slice(rec.payload.as_ref()?).ok()?;
    EventTime::parse_rfc3339(v["occurred_at"].as_str()?)
}

/// The value of an outbox entry's header `name`.
fn header(entry: &OutboxEntry, name: &str) -> Option<String> {
    let mut found = entry.headers.iter().filter(|(n, _)| n == name);
    found
        .next()
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

fn changes(out: &[Outgoing]) -> Vec<Value> {
    out.iter()
        .filter(|(_, _, e)| e.topic == "lead-score-events")
        .map(|(_, _, e)| serde_json::from_slice(&e.payload).unwrap())
        .collect()
}

/// Feeds records one by one with the clock at each event's time, firing
/// timers first — what `clock = "event"` does for one partition.
fn run_event_clock(
    p: &mut Processor<MemStateStore>,
    recs: &[InputRecord],
    until: EventTime,
) -> Vec<Outgoing> {
    let mut out = Vec::new();
    let mut clock = EventTime::MIN;
    for rec in recs {
        clock = clock.max(occurred_at(rec).unwrap_or(clock));
        out.extend(p.fire_due(clock).unwrap());
        out.extend(p.process(std::slice::from_ref(rec), clock).unwrap());
    }
    out.extend(p.fire_due(until).unwrap());
    out
}

#[test]
fn the_processor_gives_what_replay_gives() {
    let store = Arc::new(MemStateStore::default());
    let mut p = processor(store, None);
    p.assign(0, EventTime::from_millis(0)).unwrap();
    let until = EventTime::parse_rfc3339(
        std::fs::read_to_string(walkthrough().join("until"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let got = changes(&run_event_clock(&mut p, &records(), until));
    let expected: Vec<Value> = std::fs::read_to_string(walkthrough().join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        for f in ["contact_id", "model", "from_tier", "to_tier", "cause"] {
            assert_eq!(g[f], e[f], "{g} vs {e}");
        }
        let (ga, ea) = (
            EventTime::parse_rfc3339(g["at"].as_str().unwrap()).unwrap(),
            EventTime::parse_rfc3339(e["at"].as_str().unwrap()).unwrap(),
        );
        assert!((ga.millis() - ea.millis()).abs() <= 1000);
    }
}

fn expected() -> Vec<Value> {
    std::fs::read_to_string(walkthrough().join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_event_clock_fires_timers_before_each_event_as_replay_does() {
    let store = Arc::new(MemStateStore::default());
    let recs = records();
    let last = recs.iter().filter_map(occurred_at).max().unwrap();
    let wall = EventTime::parse_rfc3339("2030-01-01T00:00:00Z").unwrap();
    let mut p = with_clock(store.clone(), Some(60_000), true);
    p.assign(0, wall).unwrap();
    // Split in two batches, with a restart between: the clock is persisted.
    let mut out = p.process(&recs[..6], wall).unwrap();
    drop(p);
    let mut q = with_clock(store, Some(60_000), true);
    q.assign(0, wall).unwrap();
    assert!(q.clock(0).unwrap() < last, "event time, not wall time");
    out.extend(q.process(&recs[6..], wall).unwrap());
    assert_eq!(q.clock(0), Some(last));
    let got = changes(&out);
    let want: Vec<Value> = expected()
        .into_iter()
        .filter(|e| EventTime::parse_rfc3339(e["at"].as_str().unwrap()).unwrap() <= last)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, e) in got.iter().zip(&want) {
        for f in ["contact_id", "model", "from_tier", "to_tier", "cause", "at"] {
            assert_eq!(g[f], e[f], "{g} vs {e}");
        }
        assert_eq!(g["emitted_at"], "2030-01-01T00:00:00.000Z");
    }
    assert!(
        out.iter().all(|(_, _, e)| e.topic != "lead-score-dlq"
            || !e.headers.iter().any(|(_, v)| v == b"future_timestamp")),
        "no skew check against event time"
    );
}

#[test]
fn records_at_offsets_already_applied_are_skipped() {
    let store = Arc::new(MemStateStore::default());
    let now = EventTime::parse_rfc3339("2026-03-05T00:00:00Z").unwrap();
    let recs = records();
    let mut p = processor(store.clone(), None);
    p.assign(0, now).unwrap();
    p.process(&recs[..3], now).unwrap();
    drop(p);
    let before = store.contact(0, "w-dog").unwrap();
    let mut q = processor(store.clone(), None);
    q.assign(0, now).unwrap();
    // The broker redelivers from an older position (e.g. Kafka's committed offset).
    let out = q.process(&recs[..3], now).unwrap();
    assert!(out.is_empty());
    assert_eq!(q.stats.redelivered, 3);
    assert_eq!(q.stats.duplicates, 0, "skipped by offset, before dedupe");
    assert_eq!(store.contact(0, "w-dog").unwrap(), before);
}

#[test]
fn bad_records_go_to_the_dead_letter_topic_with_headers() {
    let store = Arc::new(MemStateStore::default());
    let mut p = processor(store, None);
    p.assign(0, EventTime::from_millis(0)).unwrap();
    let recs = records();
    let out = p
        .process(
            &recs,
            EventTime::parse_rfc3339("2026-03-05T00:00:00Z").unwrap(),
        )
        .unwrap();
    let dlq: Vec<_> = out
        .iter()
        .filter(|(_, _, e)| e.topic == "lead-score-dlq")
        .collect();
    assert_eq!(dlq.len(), 1);
    let entry = &dlq[0].2;
    assert_eq!(entry.payload, b"{broken");
    let header = |k: &str| header(entry, k);
    assert_eq!(header("error.reason").as_deref(), Some("invalid_json"));
    assert_eq!(header("source.topic").as_deref(), Some("page-visits"));
    assert_eq!(header("source.partition").as_deref(), Some("0"));
    assert_eq!(header("source.offset").as_deref(), Some("7"));
    assert!(header("error.detail").is_some_and(|d| !d.is_empty()));
    assert_eq!(
        p.stats.consumed,
        recs.len() as u64,
        "processing went on past the bad record"
    );
}

#[test]
fn a_dead_letter_is_cut_to_what_the_producer_may_send() {
    let max = 20_000;
    let mut p = with_settings(
        Arc::new(MemStateStore::default()),
        ProcessorSettings {
            max_message_bytes: max,
            ..settings(None, false)
        },
    );
    p.assign(0, EventTime::from_millis(0)).unwrap();
    let record = |offset: i64, size: usize| InputRecord {
        topic: "page-visits".into(),
        partition: 0,
        offset,
        key: Some(b"c-1".to_vec()),
        payload: Some((0..size).map(|i| (i % 251) as u8).collect()),
    };
    // Both over SPEC's 64 KiB; only the second over what may be sent.
    let (fits, over) = (record(0, 19_000).payload, record(1, 100_000).payload);
    let now = EventTime::parse_rfc3339("2026-03-05T00:00:00Z").unwrap();
    let out = p
        .process(&[record(0, 19_000), record(1, 100_000)], now)
        .unwrap();
    let dlq: Vec<_> = out.iter().map(|(_, _, e)| e).collect();
    assert_eq!(dlq.len(), 2);
    let header = |i: usize, k: &str| header(dlq[i], k);
    assert_eq!(dlq[0].payload, fits.unwrap(), "small enough: whole");
    assert_eq!(header(0, "error.original_size"), None);
    let cut = &dlq[1].payload;
    assert_eq!(
        header(1, "error.reason").as_deref(),
        Some("payload_too_large")
    );
    assert_eq!(header(1, "error.original_size").as_deref(), Some("100000"));
    assert_eq!(header(1, "source.offset").as_deref(), Some("1"));
    assert_eq!(cut[..], over.unwrap()[..cut.len()], "its first bytes");
    let headers: usize = dlq[1]
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum();
    let wire = cut.len() + 3 + headers;
    assert!(wire <= max - 40, "fits with librdkafka's overhead: {wire}");
    assert!(wire > max - 1_000, "not cut more than needed: {wire}");
}

#[test]
fn future_events_are_dead_lettered_in_wall_clock_mode() {
    let store = Arc::new(MemStateStore::default());
    let mut p = processor(store, Some(5 * 60_000));
    p.assign(0, EventTime::from_millis(0)).unwrap();
    let first = records().remove(0); // occurred 2026-03-02T09:00:00Z
    let out = p
        .process(
            &[first],
            EventTime::parse_rfc3339("2026-03-02T08:50:00Z").unwrap(),
        )
        .unwrap();
    assert_eq!(out.len(), 1);
    assert!(out[0]
        .2
        .headers
        .iter()
        .any(|(k, v)| k == "error.reason" && v == b"future_timestamp"));
}

#[test]
fn duplicates_are_skipped_across_batches_and_restarts() {
    let store = Arc::new(MemStateStore::default());
    let now = EventTime::parse_rfc3339("2026-03-05T00:00:00Z").unwrap();
    // The same event re-sent by its producer: new offsets, same event_id.
    let resent = |offset: i64| InputRecord {
        offset,
        ..records()[1].clone()
    };
    let mut p = processor(store.clone(), None);
    p.assign(0, now).unwrap();
    p.process(&[resent(100), resent(101)], now).unwrap();
    p.process(&[resent(102)], now).unwrap();
    assert_eq!(p.stats.duplicates, 2);
    let mut again = processor(store.clone(), None);
    again.assign(0, now).unwrap();
    again.process(&[resent(103)], now).unwrap();
    assert_eq!(again.stats.duplicates, 1);
    let state = store.contact(0, "w-dog").unwrap().unwrap();
    assert_eq!(
        state.models[0].acc(0).map(|a| a.matches),
        Some(1),
        "the pricing visit counted once"
    );
}

#[test]
fn a_restart_resumes_from_committed_offsets_and_resends_the_outbox() {
    let store = Arc::new(MemStateStore::default());
    let now = EventTime::parse_rfc3339("2026-03-05T00:00:00Z").unwrap();
    let recs = records();
    let mut p = processor(store.clone(), None);
    let (offsets, pending) = p.assign(0, now).unwrap();
    assert!(offsets.iter().all(|(_, o)| o.is_none()) && pending.is_empty());
    let out = p.process(&recs[..5], now).unwrap();
    assert!(!out.is_empty());
    p.published(&[(out[0].0, out[0].1)]).unwrap();
    drop(p); // a crash: the rest was never acknowledged
    let mut q = processor(store, None);
    let (offsets, pending) = q.assign(0, now).unwrap();
    let page_visits = offsets.iter().find(|(t, _)| t == "page-visits").unwrap().1;
    assert_eq!(
        page_visits,
        Some(5),
        "next offset after the last page visit consumed (offset 4)"
    );
    assert_eq!(
        offsets
            .iter()
            .find(|(t, _)| t == "form-submissions")
            .unwrap()
            .1,
        Some(4)
    );
    assert_eq!(
        pending.iter().map(|(_, s, _)| *s).collect::<Vec<_>>(),
        out[1..].iter().map(|(_, s, _)| *s).collect::<Vec<_>>()
    );
    let more = q.process(&recs[5..], now).unwrap();
    assert!(
        more.iter().all(|(_, s, _)| *s > out.last().unwrap().1),
        "sequence numbers continue"
    );
}

#[test]
fn a_timer_due_while_down_fires_on_start_with_its_original_instant() {
    let store = Arc::new(MemStateStore::default());
    let recs = records();
    let mut p = processor(store.clone(), None);
    p.assign(0, EventTime::from_millis(0)).unwrap();
    // w-dog up to hot by 2026-03-04T12:00, then nothing: decays to warm at 2026-03-21T19:44:28.978Z.
    let out = run_event_clock(
        &mut p,
        &recs[..5],
        EventTime::parse_rfc3339("2026-03-05T00:00:00Z").unwrap(),
    );
    assert_eq!(changes(&out).last().unwrap()["to_tier"], "hot");
    drop(p);
    let restart = EventTime::parse_rfc3339("2026-04-01T00:00:00Z").unwrap();
    let mut q = processor(store, None);
    q.assign(0, restart).unwrap();
    assert!(q.timers_loaded() > 0, "loaded from the index");
    let fired = changes(&q.fire_due(restart).unwrap());
    let down: Vec<&Value> = fired
        .iter()
        .filter(|c| c["contact_id"] == "w-dog")
        .collect();
    assert_eq!(down[0]["to_tier"], "warm");
    assert_eq!(down[0]["at"], "2026-03-21T19:44:28.978Z");
    assert_eq!(down[0]["cause"]["kind"], "decay");
    assert!(
        down.iter()
            .all(|c| c["at"].as_str().unwrap() < "2026-04-01"),
        "every change keeps its own instant"
    );
}
