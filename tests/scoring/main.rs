//! Scoring semantics of SPEC §4 through the engine's public API: decay,
//! caps, expiry, inactivity, clamping, tiers, fit, several models, and
//! bounded state.

#[path = "../common/mod.rs"]
mod common;
mod engine;
mod exact;

use common::*;
use leadscore::event::output::Cause;
use leadscore::event::{EmailAction, FieldValue};

const TIERS: &str =
    r#"tiers = [{ name = "cold" }, { name = "warm", min = 20 }, { name = "hot", min = 50 }]"#;

fn model(extra: &str, rules: &str) -> String {
    format!("[[model]]\nname = \"m\"\n{TIERS}\n{extra}\n{rules}")
}

fn rule(id: &str, body: &str) -> String {
    format!("[[model.rule]]\nid = \"{id}\"\n{body}\n")
}

#[test]
fn percent_decay_is_continuous_and_exact() {
    let mut c = Contact::new(&model(
        "decay = { percent_per_day = 1.0 }",
        &rule("p", "when = \"page_visit\"\npoints = 10"),
    ));
    c.apply(&visit("e1", "https://x/", at(0.0)));
    assert!(close(
        c.score(0, at(10.0)).engagement,
        10.0 * 0.99f64.powf(10.0)
    ));
    assert!(
        close(c.score(0, at(0.5)).engagement, 10.0 * 0.99f64.powf(0.5)),
        "no daily steps"
    );
    c.apply(&visit("e2", "https://x/", at(3.0)));
    let want = 10.0 * 0.99f64.powf(10.0) + 10.0 * 0.99f64.powf(7.0);
    assert!(close(c.score(0, at(10.0)).engagement, want));
}

#[test]
fn half_life_halves() {
    let mut c = Contact::new(&model(
        "decay = { half_life_days = 20 }",
        &rule("p", "when = \"page_visit\"\npoints = 8"),
    ));
    c.apply(&visit("e1", "https://x/", at(0.0)));
    assert!(close(c.score(0, at(20.0)).engagement, 4.0));
    assert!(close(c.score(0, at(40.0)).engagement, 2.0));
}

#[test]
fn half_lives_of_seconds_decay_too() {
    // 10 s: the daily factor 0.5^8640 underflows to 0; the rate does not.
    let ten_seconds = 10.0 / 86_400.0;
    let mut c = Contact::new(&model(
        &format!("decay = {{ half_life_days = {ten_seconds} }}"),
        &rule("p", "when = \"page_visit\"\npoints = 100"),
    ));
    c.apply(&visit("e1", "https://x/", at(0.0)));
    assert!(close(c.score(0, at(ten_seconds)).engagement, 50.0));
    assert!(close(c.score(0, at(2.0 * ten_seconds)).engagement, 25.0));
}

#[test]
fn non_decaying_rules_and_fit_never_decay() {
    let rules = model(
        "decay = { percent_per_day = 50 }",
        &(rule(
            "unsub",
            "when = \"email_unsubscribe\"\npoints = -25\ndecays = false",
        ) + &rule(
            "dog",
            "when = \"field\"\nfield = \"pet\"\nop = \"eq\"\nvalue = \"dog\"\npoints = 3",
        )),
    );
    let mut c = Contact::new(&rules);
    c.apply(&form(
        "f",
        "x",
        &[("pet", FieldValue::Text("Dog".into()))],
        at(0.0),
    ));
    c.apply(&email("e", "m1", EmailAction::Unsubscribe, at(0.0)));
    let s = c.score(0, at(100.0));
    assert_eq!((s.fit, s.engagement, s.score), (3.0, -25.0, -22.0));
}

#[test]
fn expiry_removes_the_contribution_at_exactly_t_plus_n_days() {
    let rules = model(
        "",
        &rule(
            "webinar",
            "when = \"form_submit\"\npoints = 25\nexpires_after_days = 30",
        ),
    );
    let mut c = Contact::new(&rules);
    assert_eq!(c.apply(&form("f", "webinar-1", &[], at(0.0)))[0].to, 1);
    let expiry = at(30.0);
    assert_eq!(c.score(0, expiry.plus_millis(-1)).engagement, 25.0);
    assert_eq!(c.score(0, expiry).engagement, 0.0);
    let next = c.state.models[0].next.clone().expect("expiry is predicted");
    assert_eq!(next.at, expiry);
    let changes = c.run_until(at(31.0));
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0].cause,
        Cause::Expiry {
            rule: "webinar".into()
        }
    );
    assert_eq!((changes[0].previous_score, changes[0].score), (25.0, 0.0));
}

#[test]
fn caps_limit_scored_matches_in_a_sliding_window() {
    let rules = model("", &rule("pricing", "when = \"page_visit\"\nurl = \"*/pricing*\"\npoints = 10\nmax_times = 2\nwindow_days = 7"));
    let mut c = Contact::new(&rules);
    for (i, d) in [0.0, 1.0, 2.0, 6.9].iter().enumerate() {
        c.apply(&visit(&format!("e{i}"), "https://x/PRICING", at(*d)));
    }
    assert_eq!(c.score(0, at(7.5)).engagement, 20.0);
    c.apply(&visit("e9", "https://x/pricing", at(7.5)));
    assert_eq!(
        c.score(0, at(7.5)).engagement,
        30.0,
        "day 0 left the window (0.5, 7.5]"
    );
    assert_eq!(c.state.models[0].acc(0).unwrap().matches, 3);
}

#[test]
fn per_item_caps_count_each_item_separately() {
    let rules = model(
        "",
        &rule(
            "open",
            "when = \"email_open\"\npoints = 1\nmax_times = 1\nper_item = true",
        ),
    );
    let mut c = Contact::new(&rules);
    for (i, m) in ["m1", "m2", "m1", "m3", "m2"].iter().enumerate() {
        c.apply(&email(&format!("e{i}"), m, EmailAction::Open, at(i as f64)));
    }
    assert_eq!(c.score(0, at(10.0)).engagement, 3.0);
}

#[test]
fn filters_actions_and_min_amount() {
    let rules = model(
        "",
        &(rule(
            "click",
            "when = \"email_click\"\nemail_id = \"offer-*\"\nlink_url = \"*/offer\"\npoints = 5",
        ) + &rule(
            "big",
            "when = \"purchase\"\nmin_amount = 100\nproduct_id = \"pro\"\npoints = 7",
        )),
    );
    let mut c = Contact::new(&rules);
    c.apply(&email("e1", "offer-7", EmailAction::Open, at(0.0)));
    c.apply(&email("e2", "news-1", EmailAction::Click, at(0.0)));
    assert_eq!(
        c.score(0, at(0.0)).engagement,
        0.0,
        "an open is not a click; news-1 is not offer-*"
    );
    c.apply(&email("e3", "OFFER-7", EmailAction::Click, at(0.0)));
    c.apply(&purchase("p1", "pro", None, at(0.0)));
    c.apply(&purchase("p2", "pro", Some(99.0), at(0.0)));
    c.apply(&purchase("p3", "basic", Some(500.0), at(0.0)));
    assert_eq!(
        c.score(0, at(0.0)).engagement,
        5.0,
        "no amount, too small, wrong product"
    );
    c.apply(&purchase("p4", "Pro", Some(100.0), at(0.0)));
    assert_eq!(c.score(0, at(0.0)).engagement, 12.0);
}

#[test]
fn inactivity_steps_begin_on_time_and_reset_with_activity() {
    let rules = model(
        "inactivity_penalties = [{ after_days = 60, points = -30 }, { after_days = 30, points = -15 }]",
        &rule("p", "when = \"page_visit\"\npoints = 30"),
    );
    let mut c = Contact::new(&rules);
    c.apply(&visit("e1", "https://x/", at(0.0)));
    assert_eq!(c.score(0, at(30.0).plus_millis(-1)).penalty, 0.0);
    assert_eq!(c.score(0, at(30.0)).penalty, -15.0);
    assert_eq!(
        c.score(0, at(61.0)).penalty,
        -30.0,
        "the largest step reached"
    );
    let changes = c.run_until(at(31.0));
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].at, changes[0].cause.clone()),
        (at(30.0), Cause::Inactivity)
    );
    c.apply(&visit("e2", "https://x/", at(40.0)));
    assert_eq!(c.score(0, at(40.0)).penalty, 0.0);
}

#[test]
fn a_new_contact_has_no_penalty_and_missing_rules_already_apply() {
    let rules = model(
        "inactivity_penalties = [{ after_days = 1, points = -5 }]",
        &(rule(
            "no-phone",
            "when = \"field\"\nfield = \"phone\"\nop = \"missing\"\npoints = 21",
        ) + &rule("p", "when = \"page_visit\"\npoints = 1")),
    );
    let c = Contact::new(&rules);
    assert_eq!(c.score(0, at(100.0)).score, 21.0);
    let mut c = Contact::new(&rules);
    let changes = c.apply(&visit("e1", "https://x/", at(0.0)));
    assert_eq!((changes[0].previous_score, changes[0].score), (21.0, 22.0));
}

#[test]
fn score_range_clamps() {
    let rules = model(
        "score_range = [-10, 60]",
        &rule("p", "when = \"purchase\"\npoints = -500\ndecays = false"),
    );
    let mut c = Contact::new(&rules);
    c.apply(&purchase("p1", "x", None, at(0.0)));
    let s = c.score(0, at(0.0));
    assert_eq!((s.engagement, s.score), (-500.0, -10.0));
}

#[test]
fn tiers_move_up_at_once_and_down_past_hysteresis() {
    let rules = model(
        "hysteresis = 5",
        &(rule("big", "when = \"form_submit\"\npoints = 55")
            + &rule("bad", "when = \"page_visit\"\npoints = -8")),
    );
    let mut c = Contact::new(&rules);
    let up = c.apply(&form("f", "demo", &[], at(0.0)));
    assert_eq!((up[0].from, up[0].to), (0, 2), "cold → hot directly");
    assert!(
        c.apply(&visit("v1", "https://x/", at(0.0))).is_empty(),
        "47 is within hot's band"
    );
    let down = c.apply(&visit("v2", "https://x/", at(0.0)));
    assert_eq!((down[0].from, down[0].to), (2, 1), "39 < 45: down to warm");
    assert_eq!(c.tier(0), "warm");
}

#[test]
fn a_decay_crossing_fires_at_the_solved_instant() {
    let rules = model(
        "decay = { percent_per_day = 1.0 }",
        &rule("p", "when = \"form_submit\"\npoints = 60"),
    );
    let mut c = Contact::new(&rules);
    c.apply(&form("f", "demo", &[], at(0.0)));
    // 60·0.99^d = 50  →  d = ln(5/6)/ln(0.99)
    let d = (50.0f64 / 60.0).ln() / 0.99f64.ln();
    let exact = at(0.0).millis() as f64 + d * DAY as f64;
    let next = c.state.models[0].next.clone().unwrap();
    assert!(
        (next.at.millis() as f64 - exact).abs() <= 1.0,
        "{} vs {exact}",
        next.at.millis()
    );
    let changes = c.run_until(at(d + 1.0));
    assert_eq!(changes[0].cause, Cause::Decay);
    assert!(changes[0].score < 50.0 && changes[0].score > 49.999);
    assert_eq!(
        c.state.models[0].next.as_ref().map(|p| p.to_tier),
        Some(Some(0)),
        "then on to cold"
    );
}

#[test]
fn late_events_count_from_their_own_time_at_the_clock() {
    let rules = model(
        "decay = { half_life_days = 10 }",
        &rule("p", "when = \"page_visit\"\npoints = 16"),
    );
    let mut c = Contact::new(&rules);
    c.apply(&visit("e1", "https://x/", at(20.0)));
    let changes = c.apply(&visit("e0", "https://x/", at(0.0)));
    assert!(
        close(c.score(0, at(20.0)).engagement, 16.0 + 4.0),
        "the late one is already two half-lives old"
    );
    assert_eq!(
        (changes[0].at, changes[0].to),
        (at(20.0), 1),
        "applied at the clock: 16 + 4 reaches warm"
    );
    assert_eq!(c.state.last_activity, Some(at(20.0)));
}

#[test]
fn models_are_scored_side_by_side() {
    let rules = format!(
        "{}\n[[model]]\nname = \"other\"\ntiers = [{{ name = \"no\" }}, {{ name = \"yes\", min = 5 }}]\n{}",
        model("", &rule("p", "when = \"page_visit\"\npoints = 25")),
        rule("q", "when = \"page_visit\"\nurl = \"*/add-ons*\"\npoints = 5")
    );
    let mut c = Contact::new(&rules);
    let changes = c.apply(&visit("e1", "https://x/add-ons/sso", at(0.0)));
    assert_eq!(
        changes
            .iter()
            .map(|ch| (ch.model, ch.to))
            .collect::<Vec<_>>(),
        vec![(0, 1), (1, 1)]
    );
}

/// Two models; the second has only an add-ons rule and decays, so a visit
/// elsewhere cannot change it.
fn two_models() -> String {
    format!(
        "{}\n[[model]]\nname = \"other\"\ndecay = {{ percent_per_day = 10 }}\ntiers = [{{ name = \"no\" }}, {{ name = \"yes\", min = 5 }}]\n{}",
        model("", &rule("p", "when = \"page_visit\"\npoints = 1")),
        rule("q", "when = \"page_visit\"\nurl = \"*/add-ons*\"\npoints = 8")
    )
}

#[test]
fn a_model_the_event_cannot_change_is_left_as_it_was() {
    let mut c = Contact::new(&two_models());
    c.apply(&visit("e1", "https://x/add-ons/sso", at(0.0)));
    let other = c.state.models[1].clone();
    assert_eq!(c.tier(1), "yes");
    let changes = c.apply(&visit("e2", "https://x/pricing", at(1.0)));
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(c.state.models[1], other, "not even rebased");
    assert!(
        close(c.score(1, at(1.0)).score, 8.0 * 0.9),
        "its score still decays: {:?}",
        c.score(1, at(1.0))
    );
}

#[test]
fn an_event_after_a_due_change_whose_timer_has_not_fired_applies_it() {
    // `other` falls below 5 at ln(5/8)/ln(0.9) ≈ 4.46 days; the event at day
    // 6 comes before that timer has fired, so the event moves it, as it
    // would move a model the event does change.
    let mut c = Contact::new(&two_models());
    c.apply(&visit("e1", "https://x/add-ons/sso", at(0.0)));
    let due = c.state.models[1].next.clone().expect("a decay change");
    assert!(due.at < at(6.0));
    let changes = c.apply(&visit("e2", "https://x/pricing", at(6.0)));
    let moved: Vec<_> = changes.iter().filter(|ch| ch.model == 1).collect();
    assert_eq!(moved.len(), 1, "{changes:?}");
    assert_eq!((moved[0].from, moved[0].to, moved[0].at), (1, 0, at(6.0)));
    assert!(matches!(moved[0].cause, Cause::Event { .. }));
    assert_eq!(c.tier(1), "no");
}
