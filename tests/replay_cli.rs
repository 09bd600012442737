//! `leadscore replay` through the binary: input formats, rejects and line
//! numbers, `--until`, exit codes, determinism.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use leadscore::time::EventTime;
use serde_json::Value;

const RULES: &str = r#"
[[model]]
name = "m"
decay = { percent_per_day = 10 }
tiers = [{ name = "cold" }, { name = "warm", min = 20 }]

[[model.rule]]
id = "pricing"
when = "page_visit"
url = "*/pricing*"
points = 25
"#;

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(rules: &str, events: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.toml"), rules).unwrap();
        std::fs::write(dir.path().join("events.jsonl"), events).unwrap();
        Case { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `leadscore replay` of the case's rules and events, with `extra`.
    fn command(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_leadscore"));
        command
            .arg("replay")
            .arg("--rules")
            .arg(self.path("rules.toml"))
            .arg("--events")
            .arg(self.path("events.jsonl"))
            .args(extra);
        command
    }

    fn replay(&self, extra: &[&str]) -> Output {
        self.command(extra).output().unwrap()
    }
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn visit(id: &str, contact: &str, at: &str) -> String {
    format!(
        r#"{{"topic": "page-visits", "key": "{contact}", "value": {{"event_id": "{id}", "contact_id": "{contact}", "occurred_at": "{at}", "url": "https://x/pricing"}}}}"#
    )
}

#[test]
fn rejects_name_the_physical_line_and_processing_continues() {
    let events = [
        visit("e1", "c1", "2026-03-01T00:00:00Z"),
        String::new(),
        "{broken".into(),
        r#"{"topic": "clicks", "value": {}}"#.into(),
        visit("e2", "c2", "2026-03-01T00:00:00Z").replace(r#""key": "c2""#, r#""key": "other""#),
        visit("e3", "c3", "2026-03-01T00:00:00Z").replace("https://x/pricing", ""),
        visit("e4", "c4", "2026-03-01T00:00:00Z").replace(r#""https://x/pricing""#, "4"),
        "   ".into(),
        // Over the payload limit, then too long to hold at all.
        visit("e6", "c6", "2026-03-01T00:00:00Z").replace("pricing", &"p".repeat(70_000)),
        visit("e7", "c7", "2026-03-01T00:00:00Z").replace("pricing", &"p".repeat(5 << 20)),
        visit("e5", "c5", "2026-03-01T01:00:00Z"),
    ]
    .join("\n");
    let case = Case::new(RULES, &events);
    let out = case.replay(&[]);
    assert!(out.status.success());
    let rejects = lines(&out.stderr);
    let got: Vec<(u64, &str)> = rejects
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (3, "invalid_json"),
            (4, "unknown_topic"),
            (5, "key_mismatch"),
            (7, "schema_violation"),
            (9, "payload_too_large"),
            (10, "payload_too_large"),
        ],
        "{rejects:?}"
    );
    assert!(
        rejects[3]["detail"].as_str().unwrap().contains("url"),
        "the detail names the field"
    );
    assert!(
        rejects[5]["detail"].as_str().unwrap().contains("not read"),
        "{}",
        rejects[5]
    );
    // Named as a file, standard error is written through, not opened again
    // (which would write over the summary line, or it over them).
    let err = case.path("stderr.txt");
    let status = case
        .command(&["--rejects-out", "/dev/stderr"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read(&err).unwrap();
    assert_eq!(lines(&text), rejects);
    assert!(String::from_utf8_lossy(&text).contains("6 rejected"));
    let changes = lines(&out.stdout);
    let contacts: Vec<&str> = changes
        .iter()
        .map(|c| c["contact_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        contacts,
        ["c1", "c5"],
        "c3 has an empty url: valid, but not pricing"
    );
}

#[test]
fn kcat_envelopes_replay_as_is() {
    let payload = serde_json::to_string(&serde_json::json!({
        "event_id": "e1", "contact_id": "c1", "occurred_at": "2026-03-01T00:00:00Z", "url": "https://x/pricing"
    }))
    .unwrap();
    let line = serde_json::json!({
        "topic": "page-visits", "partition": 0, "offset": 42, "tstype": "create", "ts": 1, "broker": 1,
        "key": "c1", "payload": payload
    });
    let case = Case::new(RULES, &line.to_string());
    let out = case.replay(&[]);
    assert!(out.status.success());
    let changes = lines(&out.stdout);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["cause"]["event_id"], "e1");
    assert_eq!(changes[0]["cause"]["topic"], "page-visits");
}

/// `--events -` reads standard input, so a topic dump can be piped in
/// (`kcat -C -J … | leadscore replay --events -`).
#[test]
fn events_from_stdin_replay_like_a_file() {
    let events = [
        visit("e1", "c1", "2026-03-01T00:00:00Z"),
        "{broken".into(),
        visit("e2", "c2", "2026-03-01T06:00:00Z"),
    ]
    .join("\n");
    let case = Case::new(RULES, &events);
    let from_file = case.replay(&["--until", "2026-03-20T00:00:00Z"]);
    let from_stdin = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .arg("replay")
        .arg("--rules")
        .arg(case.path("rules.toml"))
        .args(["--events", "-", "--until", "2026-03-20T00:00:00Z"])
        .stdin(std::fs::File::open(case.path("events.jsonl")).unwrap())
        .output()
        .unwrap();
    assert!(from_stdin.status.success(), "{from_stdin:?}");
    assert_eq!(
        lines(&from_file.stdout).len(),
        4,
        "two contacts warm up and decay back"
    );
    assert_eq!(from_stdin.stdout, from_file.stdout);
    assert_eq!(lines(&from_stdin.stderr), lines(&from_file.stderr));
    assert_eq!(lines(&from_stdin.stderr)[0]["line"], 2);
}

#[test]
fn until_fires_timers_and_scores_out_is_sorted() {
    let events = [
        visit("e1", "b", "2026-03-01T00:00:00Z"),
        visit("e2", "a", "2026-03-01T12:00:00Z"),
    ]
    .join("\n");
    let case = Case::new(RULES, &events);
    let without = lines(&case.replay(&[]).stdout);
    assert_eq!(
        without.len(),
        2,
        "both up, nothing decays before the last event"
    );
    let scores = case.path("scores.jsonl");
    let out = case.replay(&[
        "--until",
        "2026-03-10T00:00:00Z",
        "--scores-out",
        scores.to_str().unwrap(),
    ]);
    let changes = lines(&out.stdout);
    assert_eq!(changes.len(), 4);
    // 25·0.9^d = 20 → d = ln(0.8)/ln(0.9) ≈ 2.118 days after each visit
    assert_eq!(changes[2]["contact_id"], "b");
    assert_eq!(changes[2]["cause"]["kind"], "decay");
    let exact = EventTime::parse_rfc3339("2026-03-01T00:00:00Z")
        .unwrap()
        .millis() as f64
        + 0.8f64.ln() / 0.9f64.ln() * 86_400_000.0;
    let at = EventTime::parse_rfc3339(changes[2]["at"].as_str().unwrap())
        .unwrap()
        .millis() as f64;
    assert!(
        at >= exact && at - exact <= 1.0,
        "{} vs exact {exact}",
        changes[2]
    );
    let ats: Vec<&str> = changes.iter().map(|c| c["at"].as_str().unwrap()).collect();
    assert!(
        ats.windows(2).all(|w| w[0] <= w[1]),
        "in `at` order: {ats:?}"
    );
    let rows = lines(&std::fs::read(scores).unwrap());
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["contact_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(rows[1]["tier"], "cold");
    let want = 25.0 * 0.9f64.powf(9.0);
    assert!(
        (rows[1]["score"].as_f64().unwrap() - want).abs() < 0.006,
        "{}",
        rows[1]
    );

    // `-` and `/dev/stdout`: the scores follow the tier changes on standard
    // output, also when that is a file (which opening it again would overwrite).
    for target in ["-", "/dev/stdout"] {
        let both = case.path("both.jsonl");
        let status = case
            .command(&["--until", "2026-03-10T00:00:00Z", "--scores-out", target])
            .stdout(std::fs::File::create(&both).unwrap())
            .status()
            .unwrap();
        assert!(status.success());
        let got = lines(&std::fs::read(&both).unwrap());
        assert_eq!(got.len(), changes.len() + rows.len(), "{target}: {got:?}");
        assert_eq!(got[..changes.len()], changes[..], "{target}");
        assert_eq!(got[changes.len()..], rows[..], "{target}");
    }
}

#[test]
fn duplicates_are_skipped_and_output_is_deterministic() {
    let events = [
        visit("e1", "c1", "2026-03-01T00:00:00Z"),
        visit("e1", "c1", "2026-03-01T00:00:00Z"),
        visit("e1", "c2", "2026-03-01T00:00:00Z"),
    ]
    .join("\n");
    let case = Case::new(RULES, &events);
    let scores = case.path("scores.jsonl");
    let first = case.replay(&[
        "--until",
        "2026-04-01T00:00:00Z",
        "--scores-out",
        scores.to_str().unwrap(),
        "--rejects-out",
        "/dev/null",
    ]);
    let rows = lines(&std::fs::read(&scores).unwrap());
    let at_start: Vec<f64> = rows.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert_eq!(at_start.len(), 2);
    assert_eq!(
        at_start[0], at_start[1],
        "c1's duplicate was not counted twice"
    );
    assert!(String::from_utf8_lossy(&first.stderr).contains("1 duplicates skipped"));
    let second = case.replay(&["--until", "2026-04-01T00:00:00Z"]);
    assert_eq!(
        first.stdout, second.stdout,
        "same input, same output and event ids"
    );
}

#[test]
fn exit_codes() {
    let case = Case::new(RULES, &visit("e1", "c1", "2026-03-01T00:00:00Z"));
    assert_eq!(case.replay(&["--until", "tomorrow"]).status.code(), Some(2));
    let bad = Case::new("[[model]]\nname = \"m\"\n", "");
    let out = bad.replay(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tiers"),
        "names the problem"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .args(["replay", "--events", "/nonexistent/events.jsonl", "--rules"])
        .arg(case.path("rules.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/events.jsonl"));
    // An output that cannot be created fails before anything is replayed.
    let unwritable = Path::new("/nonexistent/dir/scores.jsonl");
    let out = case.replay(&["--scores-out", unwritable.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir/scores.jsonl"));
    assert!(out.stdout.is_empty(), "no tier change written");
    assert!(
        !case.replay(&[]).stdout.is_empty(),
        "the same replay writes one when it can"
    );
}
