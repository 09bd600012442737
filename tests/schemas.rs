//! The JSON Schemas in `schemas/` and the decoder must agree: every sample
//! below is accepted by both or rejected by both. Output events (ours and the
//! conformance suite's) validate against the tier-changed schema.

use std::path::Path;
use std::process::Command;

use leadscore::event::{decode, EventKind};
use serde_json::{json, Value};

fn validator(name: &str) -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(name);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn base() -> Value {
    json!({"event_id": "e-1", "contact_id": "c-1", "occurred_at": "2026-03-03T10:00:00+01:00"})
}

fn with(mut v: Value, extra: Value) -> Value {
    for (k, x) in extra.as_object().unwrap() {
        if x == &json!("__remove__") {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = x.clone();
        }
    }
    v
}

/// (sample, valid?) pairs common to every kind, given one valid event.
fn common_cases(valid: Value) -> Vec<(Value, bool)> {
    vec![
        (valid.clone(), true),
        (
            with(valid.clone(), json!({"extra": {"nested": [1, 2]}})),
            true,
        ),
        (
            with(valid.clone(), json!({"event_id": "__remove__"})),
            false,
        ),
        (with(valid.clone(), json!({"event_id": ""})), false),
        (
            with(valid.clone(), json!({"event_id": "x".repeat(128)})),
            true,
        ),
        (
            with(valid.clone(), json!({"event_id": "x".repeat(129)})),
            false,
        ),
        (with(valid.clone(), json!({"event_id": 7})), false),
        (
            with(valid.clone(), json!({"contact_id": "é".repeat(256)})),
            true,
        ),
        (
            with(valid.clone(), json!({"contact_id": "é".repeat(257)})),
            false,
        ),
        (with(valid.clone(), json!({"contact_id": null})), false),
        (
            with(
                valid.clone(),
                json!({"occurred_at": "2026-03-03T10:00:00Z"}),
            ),
            true,
        ),
        (
            with(
                valid.clone(),
                json!({"occurred_at": "2026-03-03T10:00:00.123456Z"}),
            ),
            true,
        ),
        (
            with(valid.clone(), json!({"occurred_at": "2026-03-03T10:00:00"})),
            false,
        ),
        (
            with(
                valid.clone(),
                json!({"occurred_at": "2026-03-03 10:00:00Z"}),
            ),
            false,
        ),
        (
            with(valid.clone(), json!({"occurred_at": "03/03/2026"})),
            false,
        ),
        (
            with(valid.clone(), json!({"occurred_at": 1772532000})),
            false,
        ),
        (json!([valid.clone()]), false),
        (json!("event"), false),
    ]
}

fn agree(kind: EventKind, schema: &str, cases: Vec<(Value, bool)>) {
    let v = validator(schema);
    for (sample, valid) in cases {
        assert_eq!(v.is_valid(&sample), valid, "{schema} on {sample}");
        let decoded = decode(kind, None, sample.to_string().as_bytes());
        assert_eq!(decoded.is_ok(), valid, "decoder on {sample}: {decoded:?}");
    }
}

#[test]
fn page_visit_schema_and_decoder_agree() {
    let ok = with(
        base(),
        json!({"url": "https://x/pricing", "referrer": null}),
    );
    let mut cases = common_cases(ok.clone());
    cases.extend([
        (with(ok.clone(), json!({"url": "__remove__"})), false),
        (with(ok.clone(), json!({"url": 5})), false),
        (with(ok.clone(), json!({"title": ["a"]})), false),
        (
            with(ok.clone(), json!({"amount": "not a page field"})),
            true,
        ),
    ]);
    agree(EventKind::PageVisit, "page-visit.schema.json", cases);
}

#[test]
fn email_schema_and_decoder_agree() {
    let ok = with(base(), json!({"email_id": "em-1"}));
    let mut cases = common_cases(ok.clone());
    cases.extend([
        (with(ok.clone(), json!({"action": "open"})), true),
        (
            with(
                ok.clone(),
                json!({"action": "unsubscribe", "link_url": null}),
            ),
            true,
        ),
        (with(ok.clone(), json!({"action": null})), true),
        (with(ok.clone(), json!({"action": "bounce"})), false),
        (with(ok.clone(), json!({"action": "OPEN"})), false),
        (with(ok.clone(), json!({"email_id": "__remove__"})), false),
        (with(ok.clone(), json!({"link_url": 3})), false),
    ]);
    agree(EventKind::Email, "email.schema.json", cases);
}

#[test]
fn form_schema_and_decoder_agree() {
    let ok = with(
        base(),
        json!({"form_id": "demo", "fields": {"a": "x", "b": 2.5, "c": true, "d": null}}),
    );
    let mut cases = common_cases(ok.clone());
    cases.extend([
        (with(ok.clone(), json!({"fields": "__remove__"})), true),
        (with(ok.clone(), json!({"fields": null})), true),
        (with(ok.clone(), json!({"fields": {"a": {"b": 1}}})), false),
        (with(ok.clone(), json!({"fields": {"a": [1]}})), false),
        (with(ok.clone(), json!({"fields": [1]})), false),
        (with(ok.clone(), json!({"form_id": "__remove__"})), false),
    ]);
    agree(EventKind::Form, "form-submission.schema.json", cases);
}

#[test]
fn purchase_schema_and_decoder_agree() {
    let ok = with(
        base(),
        json!({"product_id": "pro", "amount": 99.5, "currency": "EUR"}),
    );
    let mut cases = common_cases(ok.clone());
    cases.extend([
        (with(ok.clone(), json!({"amount": 0})), true),
        (with(ok.clone(), json!({"amount": null})), true),
        (with(ok.clone(), json!({"amount": "__remove__"})), true),
        (with(ok.clone(), json!({"amount": -0.01})), false),
        (with(ok.clone(), json!({"amount": "99"})), false),
        (with(ok.clone(), json!({"product_id": "__remove__"})), false),
        (with(ok.clone(), json!({"currency": 978})), false),
    ]);
    agree(EventKind::Purchase, "purchase.schema.json", cases);
}

#[test]
fn output_events_match_the_tier_changed_schema() {
    let v = validator("tier-changed.schema.json");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["replay", "--rules"])
        .arg(root.join("examples/rules.toml"))
        .arg("--events")
        .arg(root.join("examples/events.jsonl"))
        .args(["--until", "2026-04-01T00:00:00Z"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ours: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let causes: std::collections::BTreeSet<&str> = ours
        .iter()
        .map(|e| e["cause"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        causes.into_iter().collect::<Vec<_>>(),
        ["decay", "event", "expiry", "inactivity"]
    );
    for e in &ours {
        assert!(v.is_valid(e), "{e}");
    }
    let mut bad = ours[0].clone();
    bad["cause"] = json!({"kind": "expiry"});
    assert!(!v.is_valid(&bad), "expiry without rule must be invalid");
    let expected = root.join("tests/conformance/cases/walkthrough/expected.jsonl");
    for line in std::fs::read_to_string(expected).unwrap().lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        assert!(v.is_valid(&e), "{e}");
    }
}
