//! What the engine keeps and what it works out ahead: state bounded however
//! many events a contact has, and URL globs matched before the event is
//! applied, which must score as matching them during it does.

use leadscore::scoring::{Effects, UrlMatches};

use super::common::*;
use super::{model, rule, two_models};

#[test]
fn a_million_events_keep_state_small() {
    let rules = model(
        "decay = { percent_per_day = 2 }",
        &(rule("p", "when = \"page_visit\"\npoints = 1")
            + &rule("capped", "when = \"page_visit\"\npoints = 1\nmax_times = 3\nwindow_days = 1\nper_item = true")
            + &rule("w", "when = \"page_visit\"\npoints = 1\nexpires_after_days = 1\ndecays = false")),
    );
    let mut c = Contact::new(&rules);
    for i in 0..1_000_000i64 {
        let t = at(0.0).plus_millis(i * 60_000); // one a minute, ~694 days
        c.apply(&visit(
            &format!("e{i}"),
            &format!("https://x/{}", i % 5000),
            t,
        ));
    }
    let ms = &c.state.models[0];
    assert_eq!(ms.rules.len(), 3, "one accumulator per rule");
    assert!(
        ms.pending.len() <= 1441,
        "only unexpired contributions are kept: {}",
        ms.pending.len()
    );
    let ledger = ms
        .acc(1)
        .unwrap()
        .cap
        .as_deref()
        .expect("a capped rule has a ledger");
    assert!(ledger.item_count() <= 5000);
    let s = c.score(0, c.clock);
    // geometric series: Σ 0.98^(i/1440) for the decaying rule ≈ 1/(1 − 0.98^(1/1440))
    let per_min = 0.98f64.powf(1.0 / 1440.0);
    let want_p = (1.0 - per_min.powi(1_000_000)) / (1.0 - per_min);
    let p = ms.acc(0).unwrap().decaying * 0.98f64.powf(c.clock.days_since(ms.ref_time));
    assert!((p - want_p).abs() < 1e-6 * want_p, "{p} vs {want_p}");
    assert!(s.engagement > want_p);
}

/// URL globs worked out ahead (`url_matches`) or not at all (the default)
/// score exactly as `apply_event` does.
#[test]
fn url_matches_worked_out_ahead_or_not_score_alike() {
    let rules = two_models();
    let engine = engine(&rules);
    let events = [
        visit("e1", "https://x/add-ons/sso", at(0.0)),
        visit("e2", "https://x/pricing", at(1.0)),
        visit("e3", "https://x/add-ons/audit", at(2.0)),
    ];
    let run = |how: u8| {
        let mut state = engine.new_contact();
        let mut changes = Vec::new();
        for e in &events {
            let mut fx = Effects::default();
            let now = e.occurred_at;
            match how {
                0 => engine.apply_event(&mut state, e, "t", now, &mut fx),
                1 => {
                    let urls = engine.url_matches(&e.body);
                    engine.apply_matched(&mut state, e, urls, "t", now, &mut fx)
                }
                _ => engine.apply_matched(&mut state, e, UrlMatches::default(), "t", now, &mut fx),
            }
            changes.extend(fx.changes);
        }
        (state, changes)
    };
    let (plain, ahead, default) = (run(0), run(1), run(2));
    let moves: Vec<_> = plain.1.iter().map(|c| (c.model, c.to)).collect();
    assert_eq!(
        moves,
        vec![(1, 1)],
        "the add-ons glob moves the second model"
    );
    assert_eq!(ahead, plain);
    assert_eq!(default, plain);
}
