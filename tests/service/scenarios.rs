//! The scenarios, each run on the mock cluster and on a real broker: the
//! pipeline, the oracle, crash safety, graceful shutdown, and a timer that
//! comes due while the service is down.

use super::*;

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
    let header = |k: &str| header(headers, k);
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
    wait_log(&log, "ready partitions=");
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
