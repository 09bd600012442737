//! The live service end to end, on Kafka: the pipeline (events in → tier
//! changes out, dead letters, duplicates), the oracle (`clock = "event"`
//! gives what `leadscore replay` gives), crash safety under SIGKILL,
//! graceful SIGTERM, and a timer that comes due while the service is down.
//!
//! Each scenario runs on librdkafka's mock cluster (in this process, on its
//! own thread) and, when `LEADSCORE_TEST_BROKER` names a real broker (Tansu,
//! started by `.ci/run`), on that broker too. The service runs as the real
//! binary in a child process. Waits are bounded loops on observable
//! conditions (output offsets, process exit), never fixed sleeps.

#[path = "../common/mod.rs"]
mod common;
mod scenarios;
mod standalone;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::*;
use leadscore::state::{RocksStateStore, StateStore};
use leadscore::time::EventTime;
use serde_json::Value;
use tempfile::TempDir;

/// A generated stream without late events, closed by one event per
/// partition at the last instant so every partition's clock ends where
/// replay's does.
fn oracle_stream(dir: &Path, events: u64) -> Vec<String> {
    let file = dir.join("events.jsonl");
    run_bin(&[
        "gen",
        "--events",
        &events.to_string(),
        "--contacts",
        "400",
        "--days",
        "60",
        "--late-percent",
        "0",
        "--out",
        file.to_str().unwrap(),
    ]);
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let last = lines
        .iter()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            EventTime::parse_rfc3339(v["value"]["occurred_at"].as_str()?)
        })
        .max()
        .unwrap();
    let end = last.plus_millis(1000).to_rfc3339();
    let mut covered = [false; PARTITIONS as usize];
    for i in 0.. {
        let contact = format!("zz-close-{i}");
        let p = partition_of(&contact) as usize;
        if !covered[p] {
            covered[p] = true;
            lines.push(format!(
                r#"{{"topic": "page-visits", "key": "{contact}", "value": {{"event_id": "close-{i}", "contact_id": "{contact}", "occurred_at": "{end}", "url": "https://app.example/"}}}}"#
            ));
        }
        if covered.iter().all(|c| *c) {
            break;
        }
    }
    lines
}

/// What replay says, with the topic names of `config`: tier changes by
/// event id, and the score lines.
fn replay_oracle(
    broker: &Broker,
    config: &Path,
    rules: &Path,
    lines: &[String],
    dir: &Path,
) -> (BTreeMap<String, Value>, String) {
    let events = dir.join("replay-events.jsonl");
    let mut f = std::fs::File::create(&events).unwrap();
    for l in lines {
        let l = l.replacen(
            r#""topic": ""#,
            &format!(r#""topic": "{}"#, broker.prefix),
            1,
        );
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    let scores = dir.join("replay-scores.jsonl");
    let out = run_bin(&[
        "replay",
        "--config",
        config.to_str().unwrap(),
        "--rules",
        rules.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--scores-out",
        scores.to_str().unwrap(),
    ]);
    let changes = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["event_id"].as_str().unwrap().to_string(), v)
        })
        .collect();
    (changes, std::fs::read_to_string(scores).unwrap())
}

/// The service's output, checked: copies of one change are identical apart
/// from `emitted_at`, and each contact's changes are in `at` order.
fn service_changes(broker: &Broker) -> (BTreeMap<String, Value>, usize) {
    let records = broker.read_all("lead-score-events");
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    let mut last_at: HashMap<(String, String), String> = HashMap::new();
    for (key, payload, _) in &records {
        let mut v: Value = serde_json::from_slice(payload).unwrap();
        assert!(v["emitted_at"].is_string(), "live output has emitted_at");
        v.as_object_mut().unwrap().remove("emitted_at");
        assert_eq!(key.as_deref(), v["contact_id"].as_str(), "key = contact_id");
        let id = v["event_id"].as_str().unwrap().to_string();
        if let Some(prev) = by_id.get(&id) {
            assert_eq!(prev, &v, "a duplicate must be the same change");
            continue;
        }
        let at = v["at"].as_str().unwrap().to_string();
        let slot = (
            v["contact_id"].as_str().unwrap().to_string(),
            v["model"].as_str().unwrap().to_string(),
        );
        if let Some(prev) = last_at.insert(slot.clone(), at.clone()) {
            assert!(prev <= at, "{slot:?}: {prev} published before {at}");
        }
        by_id.insert(id, v);
    }
    (by_id, records.len())
}

fn assert_same_changes(got: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>) {
    let missing: Vec<&Value> = want
        .iter()
        .filter(|(k, _)| !got.contains_key(*k))
        .map(|(_, v)| v)
        .collect();
    let extra: Vec<&Value> = got
        .iter()
        .filter(|(k, _)| !want.contains_key(*k))
        .map(|(_, v)| v)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} missing (first: {:?}), {} extra (first: {:?})",
        missing.len(),
        missing.first(),
        extra.len(),
        extra.first()
    );
    assert_eq!(got, want);
}

fn service_scores(config: &Path) -> String {
    run_bin(&["scores", "--config", config.to_str().unwrap()])
}

fn outbox_len(dir: &Path) -> usize {
    let store = RocksStateStore::open(&dir.join("state"), 32 << 20).unwrap();
    (0..PARTITIONS as u32)
        .map(|p| store.outbox(p, usize::MAX).unwrap().len())
        .sum()
}
