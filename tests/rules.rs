//! `check-rules` through the binary: every invalid fixture exits 2 naming
//! the problem (and the line, when the fixture says which); valid files
//! print a summary and exit 0.

use std::path::Path;
use std::process::Command;

use leadscore::rules::{RuleError, RuleSet};

fn check_rules(path: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_leadscore"))
        .arg("check-rules")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Reads `# expect: …` and `# line: N` from the fixture's header.
fn expectations(text: &str) -> (String, Option<String>) {
    let header = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
    };
    (
        header("# expect:").expect("fixture has an # expect: line"),
        header("# line:"),
    )
}

#[test]
fn invalid_rules_exit_2_with_a_precise_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules/invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let (expect, line) = expectations(&std::fs::read_to_string(&path).unwrap());
        let (code, _, stderr) = check_rules(&path);
        assert_eq!(code, 2, "{}: {stderr}", path.display());
        assert!(
            stderr.contains(&expect),
            "{}: want `{expect}` in:\n{stderr}",
            path.display()
        );
        if let Some(line) = line {
            assert!(
                stderr.contains(&format!("line {line}:")),
                "{}: want line {line} in:\n{stderr}",
                path.display()
            );
        }
        seen += 1;
    }
    assert!(seen >= 15, "fixtures missing: {seen}");
}

#[test]
fn unknown_keys_name_the_model_and_rule() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules/invalid/unknown-key.toml");
    let (_, _, stderr) = check_rules(&path);
    assert!(stderr.contains("model `m`: rule `r1`"), "{stderr}");
}

#[test]
fn a_valid_file_prints_a_summary() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rules.toml");
    let (code, stdout, stderr) = check_rules(&path);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("model b2b"), "{stdout}");
    assert!(stdout.contains("page_visit ("), "{stdout}");
    assert!(
        stdout.contains("tiers: cold < warm ≥ 25 < hot ≥ 60"),
        "{stdout}"
    );
}

#[test]
fn a_missing_file_exits_2_and_says_so() {
    let (code, _, stderr) = check_rules(Path::new("/nonexistent/rules.toml"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("cannot read rules file /nonexistent/rules.toml"),
        "{stderr}"
    );
}

fn errors_of(text: &str) -> Vec<RuleError> {
    RuleSet::parse(text).expect_err("the rules are invalid")
}

/// One expected error: line, model, rule, and how the message starts.
type Want<'a> = (usize, &'a str, Option<&'a str>, &'a str);

/// `text`'s errors are `want`, in order.
fn assert_errors(text: &str, want: &[Want]) {
    let got = errors_of(text);
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (e, &(line, model, rule, message)) in got.iter().zip(want) {
        assert_eq!(e.line, Some(line), "{e}");
        assert_eq!(e.model.as_deref(), Some(model), "{e}");
        assert_eq!(e.rule.as_deref(), rule, "{e}");
        assert!(
            e.message.starts_with(message),
            "want `{message}…`, got `{e}`"
        );
    }
}

#[test]
fn every_shape_error_is_reported_with_the_semantic_ones() {
    let text = r#"[[model]]
name = "a"
tiers = [{ name = "cold" }]
bogus = 1

[[model]]
name = "b"
hysteresis = "x"
tiers = [{ name = "cold" }, { name = "warm", min = 10 }]

[[model.rule]]
id = "r1"
when = "page_visit"
points = "1"

[[model.rule]]
id = "r2"
when = "purchase"
url = "*"
points = 1

[[model.rule]]
id = "r3"
when = "page_visit"
ponts = 1

[[model.rule]]
id = "r2"
when = "purchase"
points = 2
"#;
    assert_errors(
        text,
        &[
            (4, "a", None, "unknown field `bogus`"),
            (8, "b", None, "`hysteresis`: invalid type: string \"x\""),
            (14, "b", Some("r1"), "`points`: invalid type: string \"1\""),
            (
                16,
                "b",
                Some("r2"),
                "filter `url` does not apply to `purchase` rules",
            ),
            (22, "b", Some("r3"), "missing field `points`"),
            (25, "b", Some("r3"), "unknown field `ponts`"),
            (28, "b", Some("r2"), "duplicate rule id"),
        ],
    );
}

#[test]
fn a_model_with_malformed_tiers_is_still_checked_and_not_reported_twice() {
    // Tiers are required: left out, they would take model `a` with them,
    // and with it its rule's error and the clash of its name.
    let text = r#"[[model]]
name = "a"
tiers = [{ name = "cold" }, { name = "warm", min = "ten" }]

[[model.rule]]
id = "r0"
when = "purchase"
min_amount = -1
points = 1

[[model]]
name = "a"
tiers = [{ name = "cold" }]

[[model.rule]]
id = "r1"
when = "page_visit"
window_days = 7
points = 1
"#;
    assert_errors(
        text,
        &[
            (3, "a", None, "`min`: invalid type"),
            (5, "a", Some("r0"), "min_amount must be ≥ 0"),
            (12, "a", None, "duplicate model name"),
            (15, "a", Some("r1"), "window_days needs max_times"),
        ],
    );
}

#[test]
fn a_rule_with_a_mistyped_value_is_still_checked() {
    // Each mistyped value stands in for a valid one of its type: the rule
    // keeps its other errors, and the id stays taken.
    let text = r#"[[model]]
name = "a"
tiers = [{ name = "cold" }]

[[model.rule]]
id = "r1"
when = "purchase"
url = 5
max_times = "3"
points = "ten"

[[model.rule]]
id = "r1"
when = "page_visit"
window_days = 0
points = 1
"#;
    let r1 = Some("r1");
    assert_errors(
        text,
        &[
            (
                5,
                "a",
                r1,
                "filter `url` does not apply to `purchase` rules",
            ),
            (8, "a", r1, "`url`: invalid type: integer `5`"),
            (9, "a", r1, "`max_times`: invalid type: string \"3\""),
            (10, "a", r1, "`points`: invalid type: string \"ten\""),
            (12, "a", r1, "window_days must be > 0, got 0"),
            (12, "a", r1, "window_days needs max_times"),
            (13, "a", r1, "duplicate rule id"),
        ],
    );
}

#[test]
fn a_first_tier_with_a_min_still_bounds_the_next() {
    let text = r#"[[model]]
name = "a"
tiers = [{ name = "cold", min = 10 }, { name = "warm", min = 5 }]
"#;
    let messages: Vec<String> = errors_of(text).into_iter().map(|e| e.message).collect();
    assert_eq!(
        messages,
        [
            "the first tier `cold` must not have a min",
            "tiers must be strictly ascending: `warm` min 5 is not above `cold`",
        ],
    );
}
