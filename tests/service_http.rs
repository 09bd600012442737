//! The HTTP port of a running service (the real binary, on the mock
//! cluster): readiness after assignment, `/metrics` counting exactly what
//! went through, consumer lag from librdkafka's statistics, the contact API
//! on live state, and JSON logs with their spans.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::http_get;
use leadscore::time::EventTime;
use serde_json::Value;
use tempfile::TempDir;

/// The sum of a metric's samples (all label sets) in a text exposition.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with([' ', '{']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `/metrics` until `done` holds (bounded); returns the last text.
fn metrics_until(address: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let (status, text) = http_get(address, "/metrics");
        assert_eq!(status, 200);
        if done(&text) {
            return text;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "never saw {what} in /metrics:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The HTTP address from the JSON log line the service writes when it listens.
fn http_address(log: &Path) -> String {
    wait_log(log, "HTTP: /metrics");
    let text = std::fs::read_to_string(log).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| Some(v["fields"]["address"].as_str()?.to_string()))
        .unwrap_or_else(|| panic!("no address field in the JSON log:\n{text}"))
}

#[test]
fn a_running_service_reports_readiness_metrics_and_contacts_over_http() {
    let broker = Broker::mock();
    let dir = TempDir::new().unwrap();
    let rules = root().join("examples/rules.toml");
    let config = write_config(dir.path(), &broker, "wall", &rules, "");
    let log = dir.path().join("service.log");
    let _show = ShowLogOnFailure(log.clone());
    let mut child = spawn(&config, &["--log-format", "json"], &log);
    let address = http_address(&log);
    let started = Instant::now();
    while http_get(&address, "/readyz").0 != 200 {
        assert!(started.elapsed() < DEADLINE, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(&address, "/livez").0, 200);

    // Recent events, so the wall clock scores them as they come; one bad line.
    let (_, mut lines) = recent_events(dir.path(), 600, 30);
    lines.push("this is not JSON".to_string());
    broker.produce(&lines);

    let total = lines.len() as f64;
    let text = metrics_until(&address, "every record consumed and published", |t| {
        metric_sum(t, "leadscore_events_consumed_total") == total
            && metric_sum(t, "leadscore_outbox_pending_messages") == 0.0
            && metric_sum(t, "leadscore_published_messages_total")
                == metric_sum(t, "leadscore_tier_changes_total")
                    + metric_sum(t, "leadscore_events_rejected_total")
    });
    assert!(
        text.contains(
            r#"leadscore_events_rejected_total{reason="invalid_json",topic="page-visits"} 1"#
        ),
        "{text}"
    );
    let changes = metric_sum(&text, "leadscore_tier_changes_total");
    assert!(changes > 0.0, "{text}");
    assert_eq!(
        broker.count("lead-score-events") as f64,
        changes,
        "one output record per tier change counted"
    );
    assert!(metric_sum(&text, "leadscore_processing_duration_seconds_count") > 0.0);
    assert_eq!(
        metric_sum(&text, "leadscore_event_age_seconds_count"),
        total - 1.0,
        "every decoded event's age observed"
    );
    assert!(
        text.contains(r#"leadscore_rebalances_total{kind="assigned"} 1"#),
        "{text}"
    );
    assert!(text.contains("leadscore_ready 1"), "{text}");
    // Lag arrives with librdkafka's statistics (every 5 s); statistics taken
    // while the records were still arriving may show some, later ones none.
    let text = metrics_until(&address, "consumer lag of zero", |t| {
        t.contains("leadscore_consumer_lag_messages{")
            && metric_sum(t, "leadscore_consumer_lag_messages") == 0.0
    });
    for name in leadscore::metrics::NAMES {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
    }

    // A contact from the stream, as of now, with both models of the rules.
    let contact = lines
        .iter()
        .find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            Some(v["value"]["contact_id"].as_str()?.to_string())
        })
        .unwrap();
    let (status, body) = http_get(&address, &format!("/v1/contacts/{contact}"));
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["contact_id"].as_str(), Some(contact.as_str()));
    let models: BTreeSet<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, BTreeSet::from(["b2b", "expansion"]));
    let as_of = EventTime::parse_rfc3339(v["as_of"].as_str().unwrap()).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        (now - as_of.millis()).abs() < 60_000,
        "wall clock: as of now"
    );
    assert_eq!(http_get(&address, "/v1/contacts/nobody").0, 404);

    sigterm(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60), &log), 0);
    // Every log line is JSON; the rebalance is a span.
    let text = std::fs::read_to_string(&log).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        records.iter().any(|r| r["span"]["name"] == "rebalance"),
        "no log line inside the rebalance span:\n{text}"
    );
}
