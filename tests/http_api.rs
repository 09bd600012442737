//! The HTTP side port against a real RocksDB store filled by the processor:
//! the contact API with two models (values worked out by hand from the
//! rules below), the model filter, 404s, health, and `/metrics` (which
//! `promtool check metrics` must accept).

mod common;

use std::sync::Arc;

use common::{at, http_get, http_request, DAY};
use leadscore::event::TopicMap;
use leadscore::http::{router, Shared};
use leadscore::metrics::NAMES;
use leadscore::processor::{InputRecord, Processor, ProcessorSettings};
use leadscore::rules::RuleSet;
use leadscore::scoring::Engine;
use leadscore::state::RocksStateStore;
use leadscore::time::EventTime;
use serde_json::{json, Value};
use tempfile::TempDir;

const RULES: &str = r#"
[[model]]
name = "alpha"
decay = { half_life_days = 10 }
tiers = [{ name = "cold" }, { name = "warm", min = 20 }, { name = "hot", min = 50 }]

[[model.rule]]
id = "has-budget"
when = "field"
field = "budget"
op = "gte"
value = 1000
points = 10

[[model.rule]]
id = "pricing"
when = "page_visit"
url = "*/pricing"
points = 20
max_times = 2
window_days = 7

[[model.rule]]
id = "demo"
when = "form_submit"
form_id = "demo"
points = 30
expires_after_days = 14
decays = false

[[model]]
name = "beta"
tiers = [{ name = "quiet" }, { name = "buyer", min = 100 }]

[[model.rule]]
id = "purchase"
when = "purchase"
points = 100
"#;

fn record(offset: i64, topic: &str, value: Value) -> InputRecord {
    InputRecord {
        topic: topic.into(),
        partition: 0,
        offset,
        key: Some(b"c-1".to_vec()),
        payload: Some(serde_json::to_vec(&value).unwrap()),
    }
}

fn visit(offset: i64, url: &str, t: EventTime) -> InputRecord {
    let v = json!({"event_id": format!("v{offset}"), "contact_id": "c-1",
        "occurred_at": t.to_rfc3339(), "url": url});
    record(offset, "page-visits", v)
}

/// Contact c-1 over two days, on the event clock (so `as_of` is day 2).
fn fill(store: Arc<RocksStateStore>, engine: Engine) -> EventTime {
    let settings = ProcessorSettings {
        topics: TopicMap::default(),
        output_topic: "out".into(),
        dead_letter_topic: "dlq".into(),
        max_message_bytes: 1_000_000,
        max_clock_skew_ms: None,
        dedupe_window_ms: 30 * DAY,
        timer_horizon_ms: 3_600_000,
        event_clock: true,
    };
    let mut p = Processor::new(engine, store, settings);
    p.assign(0, at(0.0)).unwrap();
    let form = |offset, id: &str, fields: Value, t: EventTime| {
        let v = json!({"event_id": format!("f{offset}"), "contact_id": "c-1",
            "occurred_at": t.to_rfc3339(), "form_id": id, "fields": fields});
        record(offset, "form-submissions", v)
    };
    let purchase = json!({"event_id": "p1", "contact_id": "c-1",
        "occurred_at": at(2.0).to_rfc3339(), "product_id": "x", "amount": 10});
    let records = vec![
        form(0, "signup", json!({"budget": 5000, "ratio": 2.5}), at(0.0)),
        visit(1, "https://x/pricing", at(0.0)),
        visit(2, "https://x/pricing", at(1.0)),
        form(3, "demo", json!({}), at(1.0)),
        visit(4, "https://x/pricing", at(2.0)), // third in 7 days: capped
        record(5, "purchases", purchase),
    ];
    p.process(&records, at(2.0)).unwrap();
    p.clock(0).unwrap()
}

struct Server {
    address: String,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
    _dir: TempDir,
}

fn server() -> Server {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(RocksStateStore::open(dir.path(), 32 << 20).unwrap());
    let engine = Engine::new(RuleSet::parse(RULES).unwrap(), 30 * DAY);
    let clock = fill(store.clone(), engine.clone());
    let shared = Arc::new(Shared::new(true));
    shared.set_state(store, engine);
    shared.set_partitions([(0, clock)].into_iter());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let app = router(shared.clone());
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        address,
        shared,
        _runtime: runtime,
        _dir: dir,
    }
}

fn get_json(s: &Server, path: &str) -> (u16, Value) {
    request_json(s, "GET", path)
}

fn request_json(s: &Server, method: &str, path: &str) -> (u16, Value) {
    let (status, body) = http_request(&s.address, method, path);
    let value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, value)
}

/// Asserts that `method path` is answered with `status` and a JSON error
/// whose text contains `says`.
fn assert_error(s: &Server, method: &str, path: &str, status: u16, says: &str) {
    let (got, v) = request_json(s, method, path);
    assert_eq!(got, status, "{method} {path}: {v}");
    let text = v["error"].as_str().unwrap_or_else(|| panic!("{path}: {v}"));
    assert!(text.contains(says), "{method} {path}: {v}");
}

fn close(actual: &Value, expected: f64) {
    let a = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{actual} is not a number"));
    assert!((a - expected).abs() <= 0.011, "{a} vs {expected}");
}

#[test]
fn a_contact_with_two_models_is_explained_rule_by_rule() {
    let s = server();
    let (status, v) = get_json(&s, "/v1/contacts/c-1");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["contact_id"], "c-1");
    assert_eq!(v["as_of"], at(2.0).to_rfc3339());
    assert_eq!(v["last_activity_at"], at(2.0).to_rfc3339());
    // Whole numbers show as they were sent, not as `5000.0`.
    assert_eq!(v["profile"], json!({"budget": 5000, "ratio": 2.5}));
    assert_eq!(v["profile"]["budget"].to_string(), "5000");
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);

    let alpha = &models[0];
    assert_eq!(alpha["model"], "alpha");
    // Pricing scored at days 0 and 1 (the day-2 visit is over the cap),
    // each halving every 10 days; the demo form does not decay.
    let pricing = 20.0 * 0.5f64.powf(0.2) + 20.0 * 0.5f64.powf(0.1);
    close(&alpha["fit"], 10.0);
    close(&alpha["engagement"], pricing + 30.0);
    close(&alpha["penalty"], 0.0);
    close(&alpha["score"], 10.0 + pricing + 30.0);
    assert_eq!(alpha["tier"], "hot");
    let rules = alpha["rules"].as_array().unwrap();
    let rule = |id: &str| rules.iter().find(|r| r["rule"] == id).unwrap();
    assert_eq!(rule("has-budget")["kind"], "fit");
    close(&rule("has-budget")["points"], 10.0);
    let p = rule("pricing");
    close(&p["points"], pricing);
    assert_eq!(p["matches"], 2);
    assert_eq!(
        p["cap"],
        json!({"max_times": 2, "window_days": 7.0, "per_item": false, "used": 2, "full": true})
    );
    close(&rule("demo")["points"], 30.0);
    assert_eq!(rule("demo")["matches"], 1);
    assert!(rule("demo").get("cap").is_none());
    // With no new input the demo form expires on day 15: 10 + pricing then
    // (about 14.6) leaves hot and lands in warm, before decay alone would.
    assert_eq!(
        alpha["next_change"],
        json!({"at": at(15.0).to_rfc3339(), "to_tier": "warm", "cause": "expiry", "rule": "demo"})
    );

    let beta = &models[1];
    assert_eq!(beta["model"], "beta");
    close(&beta["score"], 100.0);
    assert_eq!(beta["tier"], "buyer");
    assert_eq!(beta["rules"].as_array().unwrap().len(), 1);
    assert_eq!(beta["next_change"], Value::Null, "no decay: nothing is due");
}

#[test]
fn the_model_filter_keeps_the_named_models_and_refuses_unknown_ones() {
    let s = server();
    let (status, v) = get_json(&s, "/v1/contacts/c-1?model=beta");
    assert_eq!(status, 200);
    let names: Vec<&Value> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["model"])
        .collect();
    assert_eq!(names, [&json!("beta")]);
    let (status, v) = get_json(&s, "/v1/contacts/c-1?model=beta,alpha");
    assert_eq!(status, 200);
    assert_eq!(v["models"].as_array().unwrap().len(), 2);
    assert_error(&s, "GET", "/v1/contacts/c-1?model=gamma", 400, "gamma");
}

#[test]
fn an_unknown_contact_or_path_is_a_json_404() {
    let s = server();
    assert_error(&s, "GET", "/v1/contacts/c-404", 404, "c-404");
    assert_error(&s, "GET", "/v2/nothing", 404, "");
}

#[test]
fn a_malformed_request_is_told_in_json_too() {
    let s = server();
    assert_error(&s, "GET", "/v1/contacts/%FF%FE", 400, "UTF-8");
    assert_error(
        &s,
        "GET",
        "/v1/contacts/c-1?model=a&model=b",
        400,
        "duplicate",
    );
    assert_error(&s, "POST", "/v1/contacts/c-1", 405, "");
}

#[test]
fn readiness_follows_the_assignment_and_liveness_the_heartbeat() {
    let s = server();
    let (status, v) = get_json(&s, "/readyz");
    assert_eq!(status, 503, "not ready before set_ready: {v}");
    s.shared.set_ready(true);
    let (status, v) = get_json(&s, "/readyz");
    assert_eq!(status, 200);
    assert_eq!(v["partitions"], json!([0]));
    s.shared.beat();
    let (status, _) = get_json(&s, "/livez");
    assert_eq!(status, 200);
}

#[test]
fn metrics_are_exposed_in_the_text_format_with_every_documented_name() {
    let s = server();
    s.shared.set_ready(true);
    let (status, text) = http_get(&s.address, "/metrics");
    assert_eq!(status, 200);
    // These carry labels that only traffic creates (topic, reason, tier
    // change, lag per partition); the service test sees them.
    let by_traffic = [
        "leadscore_events_consumed_total",
        "leadscore_events_rejected_total",
        "leadscore_tier_changes_total",
        "leadscore_consumer_lag_messages",
    ];
    for name in NAMES.iter().filter(|n| !by_traffic.contains(n)) {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from:\n{text}"
        );
    }
    assert!(text.contains("leadscore_ready 1"), "{text}");
    assert!(text.contains("leadscore_partitions_assigned 1"), "{text}");
}

#[test]
#[ignore = "needs promtool (Debian package prometheus); scripts/test.sh runs it when Tansu is installed, as in CI"]
fn metrics_pass_promtool_check_metrics() {
    let s = server();
    let (_, text) = http_get(&s.address, "/metrics");
    common::promtool_accepts(&["check", "metrics"], Some(&text));
}
