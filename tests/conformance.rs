//! Runs the replay conformance cases (tests/conformance/cases, copied from the
//! shared suite produced by an independent implementation) with the same
//! tolerances as its check.py: scores ±0.02, `at` ±1 s, causes exact.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const SCORE_TOL: f64 = 0.02;
const AT_TOL_S: f64 = 1.0;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/cases")
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn secs(at: &Value) -> f64 {
    let t = leadscore::time::EventTime::parse_rfc3339(at.as_str().unwrap()).unwrap();
    t.millis() as f64 / 1000.0
}

fn num(v: &Value, f: &str) -> f64 {
    v[f].as_f64()
        .unwrap_or_else(|| panic!("{f} missing in {v}"))
}

fn change_key(e: &Value) -> String {
    let c = &e["cause"];
    format!(
        "{} {} {} {} {} {} {} {}",
        e["contact_id"],
        e["model"],
        e["from_tier"],
        e["to_tier"],
        e["direction"],
        c["kind"],
        c["event_id"],
        c["rule"]
    )
}

fn compare_changes(case: &str, expected: &[Value], got: &[Value]) {
    let ats: Vec<f64> = got.iter().map(|e| secs(&e["at"])).collect();
    assert!(
        ats.windows(2).all(|w| w[1] >= w[0] - 1e-9),
        "{case}: output is not in `at` order"
    );
    assert_eq!(expected.len(), got.len(), "{case}: number of tier changes");
    let sort = |v: &[Value]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| {
            (a["contact_id"].as_str(), a["model"].as_str())
                .cmp(&(b["contact_id"].as_str(), b["model"].as_str()))
                .then(secs(&a["at"]).total_cmp(&secs(&b["at"])))
        });
        v
    };
    for (a, b) in sort(expected).iter().zip(sort(got).iter()) {
        for f in ["type", "event_id", "score", "previous_score", "at", "cause"] {
            assert!(b.get(f).is_some(), "{case}: output lacks {f}: {b}");
        }
        let same = change_key(a) == change_key(b)
            && (secs(&a["at"]) - secs(&b["at"])).abs() <= AT_TOL_S
            && (num(a, "score") - num(b, "score")).abs() <= SCORE_TOL
            && (num(a, "previous_score") - num(b, "previous_score")).abs() <= SCORE_TOL;
        assert!(
            same,
            "{case}: first difference\n expected {a}\n      got {b}"
        );
    }
    let mut ids: Vec<&str> = got
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        got.len(),
        "{case}: output event_ids are not unique"
    );
}

fn compare_scores(case: &str, expected: &[Value], got: &[Value]) {
    assert_eq!(expected.len(), got.len(), "{case}: number of score rows");
    for (a, b) in expected.iter().zip(got) {
        for f in ["contact_id", "model", "tier"] {
            assert_eq!(
                a[f], b[f],
                "{case}: score row differs: expected {a} got {b}"
            );
        }
        for f in ["score", "fit", "engagement", "penalty"] {
            assert!(
                (num(a, f) - num(b, f)).abs() <= SCORE_TOL,
                "{case}: {f} differs: expected {a} got {b}"
            );
        }
    }
}

fn compare_rejects(case: &str, expected: &[Value], got: &[Value]) {
    let lines = |v: &[Value]| {
        let mut l: Vec<u64> = v.iter().map(|r| r["line"].as_u64().unwrap()).collect();
        l.sort_unstable();
        l
    };
    assert_eq!(lines(expected), lines(got), "{case}: rejected lines");
    for r in expected {
        let g = got.iter().find(|g| g["line"] == r["line"]).unwrap();
        let envelope = r["detail"]
            .as_str()
            .unwrap_or("")
            .starts_with("line is not an envelope");
        let ok = g["reason"] == r["reason"]
            || (envelope && (g["reason"] == "invalid_json" || g["reason"] == "schema_violation"));
        assert!(
            ok,
            "{case}: line {}: expected reason {}, got {}",
            r["line"], r["reason"], g["reason"]
        );
    }
}

fn run_case(name: &str) {
    let dir = cases_dir().join(name);
    let tmp = tempfile::tempdir().unwrap();
    let (scores, rejects) = (
        tmp.path().join("scores.jsonl"),
        tmp.path().join("rejects.jsonl"),
    );
    let until = std::fs::read_to_string(dir.join("until")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .arg("replay")
        .arg("--rules")
        .arg(dir.join("rules.toml"))
        .arg("--events")
        .arg(dir.join("events.jsonl"))
        .args(["--until", until.trim()])
        .arg("--scores-out")
        .arg(&scores)
        .arg("--rejects-out")
        .arg(&rejects)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    compare_changes(name, &read_jsonl(&dir.join("expected.jsonl")), &got);
    compare_scores(
        name,
        &read_jsonl(&dir.join("expected_scores.jsonl")),
        &read_jsonl(&scores),
    );
    compare_rejects(
        name,
        &read_jsonl(&dir.join("expected_rejects.jsonl")),
        &read_jsonl(&rejects),
    );
}

#[test]
fn every_case_matches_its_expected_output() {
    let mut names: Vec<String> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('_'))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "conformance cases are missing: {names:?}");
    for name in names {
        run_case(&name);
    }
}

#[test]
fn every_case_rules_file_passes_check_rules() {
    for entry in std::fs::read_dir(cases_dir()).unwrap() {
        let rules = entry.unwrap().path().join("rules.toml");
        if !rules.exists() {
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_leadscore"))
            .arg("check-rules")
            .arg(&rules)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            rules.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
