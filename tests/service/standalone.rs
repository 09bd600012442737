//! The service on its own: the embedded default, the demo, and faults
//! outside the service (a broker that is not there, a corrupt state
//! directory, a full disk).

use super::*;

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
        .env_remove("NO_COLOR") // logs to a file are plain without it
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
    wait_log(&log, "ready partitions=");
    // Recent events: the wall clock scores them as they are now.
    let (events, _) = recent_events(dir.path(), 500, 20);
    // Two lines `produce` must skip, and go on: not UTF-8, not an envelope.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&events)
        .unwrap();
    std::io::Write::write_all(&mut file, b"\xff\xfe\n[1, 2]\n").unwrap();
    let out = Command::new(bin())
        .args(["produce", "--brokers", &address, "--file"])
        .arg(&events)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("produce: 500 records, 2 lines skipped"),
        "{said}"
    );
    assert!(said.contains("line 501: skipped: not UTF-8"), "{said}");
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
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(" INFO "), "human-readable logs:\n{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file:\n{text}"
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
    // The demo's own clients close before its broker goes: no "all brokers
    // down" on the way out.
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(!logs.contains("ERROR"), "{logs}");
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
    let started = Instant::now();
    let mut child = spawn(&config, &[], &log);
    wait_log(&log, "retrying with backoff");
    // librdkafka's own log of its attempts: a few of them, for the
    // warnings below to repeat.
    wait_log_lines(&log, "librdkafka: [thrd:", 4);
    assert!(child.try_wait().unwrap().is_none(), "still running");
    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(40), &log), 0);
    // librdkafka repeats these every few milliseconds; the log has each
    // kind once per 10 s period: two errors, each reported to the consumer,
    // to the producer, and again by a consume call.
    assert_throttled(&log, "(retrying", 6, started);
}

#[test]
fn idle_exit_does_not_take_a_broker_outage_for_the_end_of_the_input() {
    let dir = TempDir::new().unwrap();
    let broker = Broker::mock();
    let rules = root().join("examples/rules.toml");
    let config = write_config(dir.path(), &broker, "wall", &rules, "");
    let log = dir.path().join("service.log");
    let _show = ShowLogOnFailure(log.clone());
    let mut child = spawn(&config, &["--idle-exit", "3s"], &log);
    wait_log(&log, "ready partitions=");
    broker.set_reachable(false);
    wait_log(&log, "the broker does not answer");
    assert!(child.try_wait().unwrap().is_none(), "still running");
    broker.set_reachable(true);
    assert_eq!(wait_exit(&mut child, DEADLINE, &log), 0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("no input for the idle-exit time: stopping"),
        "{text}"
    );
}

#[test]
fn sigterm_during_a_broker_outage_still_stops_in_bounded_time() {
    let dir = TempDir::new().unwrap();
    let broker = Broker::mock();
    let rules = root().join("examples/rules.toml");
    broker.produce(&oracle_stream(dir.path(), 500));
    let config = write_config(dir.path(), &broker, "event", &rules, "");
    // librdkafka's default session: leaving the group could wait that long.
    let text = std::fs::read_to_string(&config).unwrap();
    let default_session = text.replace(
        r#""session.timeout.ms" = "6000""#,
        r#""session.timeout.ms" = "45000""#,
    );
    assert_ne!(text, default_session);
    std::fs::write(&config, default_session).unwrap();
    let log = dir.path().join("service.log");
    let _show = ShowLogOnFailure(log.clone());
    let mut child = spawn(&config, &[], &log);
    wait_count(&broker, "lead-score-events", 1, &log);
    broker.set_reachable(false);
    wait_log(&log, "brokers are down");
    sigterm(&child);
    // Within Kubernetes' default grace period.
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30), &log), 0);
}

#[test]
fn produce_says_when_the_broker_did_not_take_a_record() {
    let broker = Broker::mock();
    broker.refuse_topic("purchases", true);
    let lines = [
        r#"{"topic": "page-visits", "key": "c-1", "value": {"event_id": "e-1", "contact_id": "c-1", "occurred_at": "2026-03-01T00:00:00Z", "url": "https://x/"}}"#,
        r#"{"topic": "purchases", "key": "c-1", "value": {"event_id": "e-2", "contact_id": "c-1", "occurred_at": "2026-03-01T00:00:00Z", "product_id": "p"}}"#,
    ]
    .join("\n");
    let err = leadscore::service::produce::produce_lines(&broker.bootstrap, lines.as_bytes())
        .expect_err("a record was refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("1 of 2 records were not delivered"),
        "{message}"
    );
    assert!(message.contains("uthorization"), "{message}");
    assert_eq!(broker.count("page-visits"), 1, "the other one is there");
}

#[test]
fn produce_skips_a_record_too_large_to_send_and_goes_on() {
    let broker = Broker::mock();
    let visit = |id: &str, title: &str| {
        format!(
            r#"{{"topic": "page-visits", "key": "c-1", "value": {{"event_id": "{id}", "contact_id": "c-1", "occurred_at": "2026-03-01T00:00:00Z", "url": "https://x/", "title": "{title}"}}}}"#
        )
    };
    let lines = [visit("e-1", &"x".repeat(2_000_000)), visit("e-2", "ok")].join("\n");
    let report =
        leadscore::service::produce::produce_lines(&broker.bootstrap, lines.as_bytes()).unwrap();
    assert_eq!((report.produced, report.skipped), (1, 1));
    let got = broker.read_all("page-visits");
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0].1).contains("e-2"));
}

#[test]
fn an_output_topic_refused_for_a_while_loses_nothing() {
    let dir = TempDir::new().unwrap();
    let broker = Broker::mock();
    let rules = root().join("examples/rules.toml");
    let lines = oracle_stream(dir.path(), 2_000);
    broker.produce(&lines);
    let config = write_config(dir.path(), &broker, "event", &rules, "");
    let (want, want_scores) = replay_oracle(&broker, &config, &rules, &lines, dir.path());
    broker.refuse_topic("lead-score-events", true);
    let log = dir.path().join("service.log");
    let _show = ShowLogOnFailure(log.clone());
    let started = Instant::now();
    let mut child = spawn(&config, &["--idle-exit", "3s"], &log);
    wait_log(&log, "publish failed, sending again");
    assert!(child.try_wait().unwrap().is_none(), "still running");
    broker.refuse_topic("lead-score-events", false);
    assert_eq!(wait_exit(&mut child, DEADLINE, &log), 0);
    // Sent again at a steady pace, and said once per 10 s, not per record.
    assert_throttled(&log, "publish failed", 2, started);
    let (got, _) = service_changes(&broker);
    assert_same_changes(&got, &want);
    assert_eq!(service_scores(&config), want_scores);
    assert_eq!(outbox_len(dir.path()), 0);
}

#[test]
fn a_record_refused_before_it_leaves_is_sent_again_not_set_aside() {
    use leadscore::service::kafka::ProducerCtx;
    use leadscore::service::sink::Sink;
    use leadscore::state::OutboxEntry;
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, Producer};

    let broker = Broker::mock();
    let topic = "lead-score-events";
    broker.refuse_topic(topic, true);
    let producer: BaseProducer<ProducerCtx> = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .create_with_context(ProducerCtx::default())
        .unwrap();
    // The producer learns of the refusal, so the record fails as it is sent.
    let _ = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10));
    let mut sink = Sink::new(producer);
    let entry = OutboxEntry {
        topic: topic.into(),
        key: Some(b"c-1".to_vec()),
        payload: b"{}".to_vec(),
        headers: Vec::new(),
    };
    sink.send(vec![(0, 7, entry)]);
    assert_eq!(
        sink.pending(),
        1,
        "still to publish, not left for a restart"
    );
    assert!(sink.stats.failures >= 1, "the refusal is counted");
    broker.refuse_topic(topic, false);
    let started = Instant::now();
    let mut done = Vec::new();
    while done.is_empty() {
        assert!(started.elapsed() < DEADLINE, "never published");
        done = sink.poll(Duration::from_millis(50));
    }
    assert_eq!(done, [(0, 7)]);
    assert_eq!(broker.count(topic), 1);
}

#[test]
fn a_dead_letter_too_large_to_send_is_cut_to_fit_and_says_its_size() {
    let dir = TempDir::new().unwrap();
    let broker = Broker::mock();
    let rules = root().join("examples/rules.toml");
    // The producer may send less than the topics hold: a record of 100,000
    // bytes came in, only 20,000 may go out.
    let producer = "[kafka.producer]\n\"message.max.bytes\" = \"20000\"";
    let config = write_config(dir.path(), &broker, "event", &rules, producer);
    let big: String = (0..100_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    broker.produce(std::slice::from_ref(&big));
    let log = dir.path().join("service.log");
    let _show = ShowLogOnFailure(log.clone());
    let mut child = spawn(&config, &["--idle-exit", "3s"], &log);
    assert_eq!(wait_exit(&mut child, DEADLINE, &log), 0);
    let dlq = broker.read_all("lead-score-dlq");
    assert_eq!(dlq.len(), 1, "the dead letter went out");
    let (_, payload, headers) = &dlq[0];
    let header = |k: &str| header(headers, k);
    assert_eq!(header("error.reason"), Some("payload_too_large"));
    assert_eq!(header("error.original_size"), Some("100000"));
    assert_eq!(header("source.offset"), Some("0"));
    assert!(
        payload.len() > 15_000 && payload.len() < 20_000,
        "cut to fit, not emptied: {} bytes",
        payload.len()
    );
    assert_eq!(
        &payload[..],
        &big.as_bytes()[..payload.len()],
        "its first bytes"
    );
    assert_eq!(outbox_len(dir.path()), 0, "nothing left for the next start");
}

#[test]
fn rules_that_would_misread_the_state_are_refused_and_added_rules_are_not() {
    let dir = TempDir::new().unwrap();
    let broker = Broker::mock();
    let example = std::fs::read_to_string(root().join("examples/rules.toml")).unwrap();
    let run = |rules: &str, name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, rules).unwrap();
        let config = write_config(dir.path(), &broker, "wall", &path, "");
        let log = dir.path().join(format!("{name}.log"));
        let _show = ShowLogOnFailure(log.clone());
        let mut child = spawn(&config, &["--idle-exit", "1s"], &log);
        let code = wait_exit(&mut child, DEADLINE, &log);
        (code, std::fs::read_to_string(&log).unwrap())
    };
    assert_eq!(run(&example, "first.toml").0, 0);
    // A rule removed from the middle: later rules would take its place.
    let removed = example.replacen("id = \"docs\"", "id = \"docs-renamed\"", 1);
    let (code, log) = run(&removed, "renamed.toml");
    assert_eq!(code, 1, "{log}");
    assert!(
        log.contains("the rules do not fit the state")
            && log.contains("model `b2b`: engagement rule `docs` (number 2)"),
        "{log}"
    );
    // Points changed and a rule added after the last one: the state reads right.
    let extended = format!(
        "{}\n[[model.rule]]\nid = \"late\"\nwhen = \"page_visit\"\npoints = 1\n",
        example.replacen("points = 10", "points = 12", 1)
    );
    assert_eq!(run(&extended, "extended.toml").0, 0);
    // That layout is now the one on record: going back would drop `late`.
    let (code, log) = run(&example, "again.toml");
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("engagement rule `late`"), "{log}");
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
