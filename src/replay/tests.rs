use super::*;
use crate::rules::RuleSet;

fn replayer() -> Replayer<Vec<u8>> {
    let rules = RuleSet::parse(
        "[[model]]\nname = \"m\"\ntiers = [{ name = \"cold\" }, { name = \"warm\", min = 10 }]\n",
    )
    .unwrap();
    Replayer::new(Engine::new(rules, 0), TopicMap::default(), 0, Vec::new())
}

/// Lines applied with the window held across runs give the same output,
/// rejects and counts as lines applied one at a time.
#[test]
fn holding_lines_between_runs_changes_nothing() {
    let rules = RuleSet::parse(
        "[[model]]\nname = \"m\"\ndecay = { half_life_days = 1 }\ntiers = [{ name = \"cold\" }, { name = \"warm\", min = 10 }]\n[[model.rule]]\nid = \"p\"\nwhen = \"page_visit\"\nurl = \"*\"\npoints = 6\n",
    )
    .unwrap();
    let make = || {
        Replayer::new(
            Engine::new(rules.clone(), 0),
            TopicMap::default(),
            0,
            Vec::new(),
        )
    };
    let lines: Vec<String> = (0..300)
        .map(|n| match n % 37 {
            0 => "not json".to_string(),
            _ => format!(
                r#"{{"topic": "page-visits", "key": "c-{c}", "value": {{"event_id": "e-{n}", "contact_id": "c-{c}", "occurred_at": "2026-01-{d:02}T10:00:00Z", "url": "https://x/"}}}}"#,
                c = n % 7,
                d = 1 + n / 12
            ),
        })
        .collect();
    let (mut held, mut single) = (make(), make());
    let (mut held_rejects, mut single_rejects) = (Vec::new(), Vec::new());
    for (i, line) in lines.iter().enumerate() {
        let n = i as u64 + 1;
        held.push(n, held.decode(line), &mut held_rejects).unwrap();
        single
            .push(n, single.decode(line), &mut single_rejects)
            .unwrap();
        single.drain(&mut single_rejects).unwrap();
    }
    held.drain(&mut held_rejects).unwrap();
    assert!(
        held.stats.changes > 10,
        "the lines move contacts between tiers"
    );
    assert_eq!(held.stats, single.stats);
    assert_eq!(held.stats.lines, 300);
    assert_eq!(held.stats.rejected, 9);
    assert_eq!(held_rejects, single_rejects);
    assert_eq!(held.out, single.out);
}

#[test]
fn contacts_whose_digests_collide_stay_apart() {
    let mut r = replayer();
    let lookup = |r: &mut Replayer<Vec<u8>>, name: &str, d: u64| {
        let candidate = r.candidate(d, name);
        (candidate, r.confirm(candidate, d, name))
    };
    // "alice" and "bob" given the same digest, as if their ids collided.
    let d = index::digest("alice");
    let (_, a) = lookup(&mut r, "alice", d);
    let (candidate, b) = lookup(&mut r, "bob", d);
    assert_eq!(candidate, a, "the digest alone finds alice");
    assert_ne!(b, a);
    assert_eq!(&*r.contacts[b as usize].name, "bob");
    assert_eq!(lookup(&mut r, "bob", d).1, b, "found again");
    assert_eq!(lookup(&mut r, "alice", d).1, a);
    // A third id sharing only the digest's upper half (its tag).
    let (_, c) = lookup(&mut r, "carol", d ^ 1);
    assert_eq!(lookup(&mut r, "carol", d ^ 1).1, c);
    assert_eq!(lookup(&mut r, "bob", d).1, b);
    assert_eq!(r.contacts(), 3);
}
