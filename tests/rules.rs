//! `check-rules` through the binary: every invalid fixture exits 2 naming
//! the problem (and the line, when the fixture says which); valid files
//! print a summary and exit 0.

use std::path::Path;
use std::process::Command;

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
