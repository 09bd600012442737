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

mod common;

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

// --- scenarios ---------------------------------------------------------------

fn pipeline(broker: Broker) {
    let dir = TempDir::new().unwrap();
    let case = root().join("tests/conformance/cases/walkthrough");
    let config = write_config(dir.path(), &broker, "event", &case.join("rules.toml"), "");
    let mut lines: Vec<String> = std::fs::read_to_string(case.join("events.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let resent = lines[1].clone(); // a producer retry: same event_id, new offset
    lines.insert(4, resent);
    broker.produce(&lines);
    let log = dir.path().join("service.log");
    let _show = ShowLogOnFailure(log.clone());
    let mut child = spawn(&config, &["--idle-exit", "3s"], &log);
    assert_eq!(wait_exit(&mut child, DEADLINE, &log), 0);

    let (got, _) = service_changes(&broker);
    // Each partition's clock ends at its own last event.
    let mut clock = [EventTime::MIN; PARTITIONS as usize];
    for l in &lines {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        let p = partition_of(v["value"]["contact_id"].as_str().unwrap()) as usize;
        let at = EventTime::parse_rfc3339(v["value"]["occurred_at"].as_str().unwrap()).unwrap();
        clock[p] = clock[p].max(at);
    }
    let want: Vec<Value> = std::fs::read_to_string(case.join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| {
            let p = partition_of(v["contact_id"].as_str().unwrap()) as usize;
            EventTime::parse_rfc3339(v["at"].as_str().unwrap()).unwrap() <= clock[p]
        })
        .collect();
    let mut got: Vec<Value> = got.into_values().collect();
    got.sort_by_key(|v| v["at"].as_str().unwrap().to_string());
    for g in &mut got {
        if let Some(t) = g["cause"]["topic"].as_str() {
            g["cause"]["topic"] = Value::from(t.trim_start_matches(&broker.prefix));
        }
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(&want) {
        for f in ["contact_id", "model", "from_tier", "to_tier", "cause", "at"] {
            assert_eq!(g[f], w[f], "{g} vs {w}");
        }
    }

    let dlq = broker.read_all("lead-score-dlq");
    assert_eq!(dlq.len(), 1, "the one broken line");
    let (_, payload, headers) = &dlq[0];
    assert_eq!(payload, b"{broken");
    let header = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("error.reason"), Some("invalid_json"));
    assert_eq!(
        header("source.topic"),
        Some(broker.topic("page-visits").as_str())
    );
    assert!(header("source.partition").is_some() && header("source.offset").is_some());
    assert!(header("error.detail").is_some_and(|d| !d.is_empty()));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("duplicates: 1"), "{log_text}");
    assert_eq!(outbox_len(dir.path()), 0);
}

fn oracle(broker: Broker) {
    let dir = TempDir::new().unwrap();
    let rules = root().join("examples/rules.toml");
    let lines = oracle_stream(dir.path(), 4_000);
    broker.produce(&lines);
    let config = write_config(dir.path(), &broker, "event", &rules, "");
    let log = dir.path().join("service.log");
    let _show = ShowLogOnFailure(log.clone());
    let mut child = spawn(&config, &["--idle-exit", "3s"], &log);
    assert_eq!(wait_exit(&mut child, DEADLINE, &log), 0);

    let (want, want_scores) = replay_oracle(&broker, &config, &rules, &lines, dir.path());
    assert!(want.len() > 100, "a stream with plenty of tier changes");
    let (got, _) = service_changes(&broker);
    assert_same_changes(&got, &want);
    assert_eq!(service_scores(&config), want_scores);
}

fn crash_safety(broker: Broker) {
    let dir = TempDir::new().unwrap();
    let rules = root().join("examples/rules.toml");
    let lines = oracle_stream(dir.path(), 30_000);
    broker.produce(&lines);
    // Small batches: many commits to land a kill between.
    let config = write_config(
        dir.path(),
        &broker,
        "event",
        &rules,
        "[batch]\nmax_events = 50\nmax_wait = \"5ms\"",
    );
    let (want, want_scores) = replay_oracle(&broker, &config, &rules, &lines, dir.path());
    let log = dir.path().join("service.log");
    let _show = ShowLogOnFailure(log.clone());
    let total = want.len() as i64;
    for fraction in [0.05, 0.3, 0.6] {
        let mut child = spawn(&config, &[], &log);
        let seen = broker.count("lead-score-events");
        wait_count(
            &broker,
            "lead-score-events",
            seen.max((total as f64 * fraction) as i64) + 1,
            &log,
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let mut child = spawn(&config, &["--idle-exit", "3s"], &log);
    assert_eq!(wait_exit(&mut child, DEADLINE, &log), 0);

    let (got, copies) = service_changes(&broker);
    assert_same_changes(&got, &want);
    assert_eq!(
        service_scores(&config),
        want_scores,
        "no input counted twice or lost"
    );
    eprintln!(
        "crash safety: {} changes, {} copies published",
        want.len(),
        copies
    );
}

fn graceful_shutdown(broker: Broker) {
    let dir = TempDir::new().unwrap();
    let rules = root().join("examples/rules.toml");
    let lines = oracle_stream(dir.path(), 20_000);
    broker.produce(&lines);
    let config = write_config(dir.path(), &broker, "event", &rules, "");
    let log = dir.path().join("service.log");
    let _show = ShowLogOnFailure(log.clone());
    let mut child = spawn(&config, &[], &log);
    wait_count(&broker, "lead-score-events", 1, &log);
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30), &log), 0);
    assert_eq!(outbox_len(dir.path()), 0, "nothing left in the outbox");
    let published = broker.count("lead-score-events");
    assert!(published > 0);
}

/// Wall clock: the contact turns hot, the service stops, the decay crossing
/// passes while it is down, and on start it is published with its instant.
fn timer_while_down(broker: Broker) {
    let dir = TempDir::new().unwrap();
    // Engagement halves every 10 s: hot (≥ 60) from 100 points lasts ~7.4 s.
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        r#"
[[model]]
name = "fast"
decay = { half_life_days = 0.000115740741 }
tiers = [{ name = "cold" }, { name = "hot", min = 60 }]
[[model.rule]]
id = "visit"
when = "page_visit"
url = "*"
points = 100
"#,
    )
    .unwrap();
    let config = write_config(dir.path(), &broker, "wall", &rules, "");
    let log = dir.path().join("service.log");
    let _show = ShowLogOnFailure(log.clone());
    let mut child = spawn(&config, &[], &log);
    wait_log(&log, "ready");
    let now = EventTime::from_millis(chrono::Utc::now().timestamp_millis());
    let line = format!(
        r#"{{"topic": "page-visits", "key": "c-1", "value": {{"event_id": "v-1", "contact_id": "c-1", "occurred_at": "{}", "url": "https://x.example/"}}}}"#,
        now.to_rfc3339()
    );
    broker.produce(std::slice::from_ref(&line));
    wait_count(&broker, "lead-score-events", 1, &log);
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30), &log), 0);
    assert_eq!(
        broker.count("lead-score-events"),
        1,
        "stopped before the crossing"
    );
    let up: Value = serde_json::from_slice(&broker.read_all("lead-score-events")[0].1).unwrap();
    assert_eq!(up["to_tier"], "hot");

    // What replay says the crossing is.
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, format!("{line}\n")).unwrap();
    let until = now.plus_millis(60_000).to_rfc3339();
    let expected = run_bin(&[
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--until",
        &until,
    ]);
    let down: Value = serde_json::from_str(expected.lines().nth(1).unwrap()).unwrap();
    assert_eq!(down["cause"]["kind"], "decay");
    let due = EventTime::parse_rfc3339(down["at"].as_str().unwrap()).unwrap();
    // Down until the crossing has passed on the wall clock.
    let started = Instant::now();
    while chrono::Utc::now().timestamp_millis() <= due.millis() + 200 {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(std::fs::read_to_string(&log).unwrap().contains("stopped"));

    let mut child = spawn(&config, &[], &log);
    wait_count(&broker, "lead-score-events", 2, &log);
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30), &log), 0);
    let mut got: Value =
        serde_json::from_slice(&broker.read_all("lead-score-events")[1].1).unwrap();
    got.as_object_mut().unwrap().remove("emitted_at");
    assert_eq!(got, down, "fired on start with its original instant");
}

// --- each scenario on the mock cluster and on a real broker -------------------

/// Declares, per scenario, a test on the mock cluster and one on the real
/// broker (Tansu in .ci/run), the latter ignored unless one is named.
macro_rules! on_both_brokers {
    ($($scenario:ident: $mock:ident, $real:ident;)*) => {$(
        #[test]
        fn $mock() {
            $scenario(Broker::mock());
        }

        #[test]
        #[ignore = "needs a real Kafka broker: set LEADSCORE_TEST_BROKER (.ci/run starts Tansu)"]
        fn $real() {
            $scenario(Broker::real());
        }
    )*};
}

on_both_brokers! {
    pipeline: pipeline_on_mock_cluster, pipeline_on_real_broker;
    oracle: oracle_on_mock_cluster, oracle_on_real_broker;
    crash_safety: crash_safety_on_mock_cluster, crash_safety_on_real_broker;
    graceful_shutdown: graceful_shutdown_on_mock_cluster, graceful_shutdown_on_real_broker;
    timer_while_down: timer_due_while_down_on_mock_cluster, timer_due_while_down_on_real_broker;
}

// --- the embedded default ----------------------------------------------------

#[test]
fn run_with_no_configuration_starts_an_embedded_broker_and_scores_what_is_produced() {
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("service.log");
    let _show = ShowLogOnFailure(log.clone());
    let mut child = Command::new(bin())
        .arg("run")
        .current_dir(dir.path())
        .env("LEADSCORE__HTTP__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut banner).unwrap();
    let address = banner
        .split("embedded Kafka broker at ")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .trim()
        .to_string();
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    wait_log(&log, "ready");
    // Recent events: the wall clock scores them as they are now.
    let (events, _) = recent_events(dir.path(), 500, 20);
    run_bin(&[
        "produce",
        "--brokers",
        &address,
        "--file",
        events.to_str().unwrap(),
    ]);
    let broker = Broker {
        bootstrap: address,
        prefix: String::new(),
        _mock: None,
    };
    wait_count(&broker, "lead-score-events", 1, &log);
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30), &log), 0);
    assert!(
        dir.path().join("leadscore-data").is_dir(),
        "state in the default directory"
    );
}

#[test]
fn demo_prints_tier_changes_as_they_happen() {
    let out = Command::new(bin())
        .args(["demo", "--duration", "4s", "--rate", "300", "--speed", "1d"])
        .env("LEADSCORE__HTTP__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let changes = text.lines().filter(|l| l.contains(" -> ")).count();
    assert!(changes > 0, "{text}");
    assert!(text.contains("tier changes published"), "{text}");
}

// --- faults ------------------------------------------------------------------

#[test]
fn an_unreachable_broker_is_retried_and_logged_not_fatal() {
    let dir = TempDir::new().unwrap();
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = nobody.local_addr().unwrap().to_string();
    drop(nobody); // nothing listens there now
    let broker = Broker {
        bootstrap: address,
        prefix: String::new(),
        _mock: None,
    };
    let rules = root().join("examples/rules.toml");
    let config = write_config(dir.path(), &broker, "wall", &rules, "");
    let log = dir.path().join("service.log");
    let _show = ShowLogOnFailure(log.clone());
    let mut child = spawn(&config, &[], &log);
    wait_log(&log, "retrying with backoff");
    assert!(child.try_wait().unwrap().is_none(), "still running");
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(40), &log), 0);
}

#[test]
fn a_corrupt_state_directory_stops_the_service_with_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let broker = Broker::mock();
    let rules = root().join("examples/rules.toml");
    let config = write_config(dir.path(), &broker, "wall", &rules, "");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("CURRENT"), "MANIFEST-000042\n").unwrap();
    let out = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("opening state in") && stderr.contains(state.to_str().unwrap()),
        "{stderr}"
    );
}

#[test]
#[ignore = "mounts a 4 MiB tmpfs: needs root (scripts/test.sh runs it where allowed)"]
fn a_full_disk_stops_the_service_with_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount needs root");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    let broker = Broker::mock();
    let rules = root().join("examples/rules.toml");
    let config = write_config(dir.path(), &broker, "event", &rules, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("dir = \"{}\"", dir.path().join("state").display()),
        &format!("dir = \"{}\"", small.join("state").display()),
    );
    std::fs::write(&config, text).unwrap();
    broker.produce(&oracle_stream(dir.path(), 60_000));
    let log = dir.path().join("service.log");
    let _show = ShowLogOnFailure(log.clone());
    let mut child = spawn(&config, &[], &log);
    assert_eq!(wait_exit(&mut child, DEADLINE, &log), 1);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("No space left on device"), "{text}");
}
