//! Exact scores at a tier's edge after expiries: what is left live is summed
//! afresh, and a prediction that stops short of the expiries it left out
//! does not miss a change.

use leadscore::event::{EmailAction, FieldValue};
use leadscore::time::EventTime;

use super::common::*;
use super::{model, rule};

/// When every expiring contribution has gone, engagement is exactly what
/// the contributions that never expire make (here none): a fit exactly at a
/// tier's minimum keeps that tier, whether the expiry is seen by a fired
/// timer, by the next event, or by a score asked for in between. Subtracting
/// each expired value from a running sum would leave a residue of ~1e-15 that
/// can fall either side of the minimum.
#[test]
fn an_expiry_back_to_an_exact_threshold_keeps_the_tier() {
    let rules = model(
        "decay = { half_life_days = 7 }",
        &(dog_rule() + &rule(
            "webinar",
            "when = \"form_submit\"\nform_id = \"webinar*\"\npoints = 33\nexpires_after_days = 10",
        ) + &rule(
            "pricing",
            "when = \"page_visit\"\npoints = 7.3\nexpires_after_days = 3",
        ) + &rule(
            "steady",
            "when = \"email_open\"\npoints = 2.6\ndecays = false\nexpires_after_days = 5",
        )),
    );
    // Times that leave a residue of both signs when values are subtracted;
    // every contribution has expired by day 15: the score is the fit alone.
    settles_on_the_fit(&rules, at(30.0), |c, odd, n| {
        c.apply(&form("f0", "signup", &dog(), at(odd(1))));
        for k in 0..=(n % 4) {
            let day = 1.0 + f64::from(k);
            c.apply(&form(
                &format!("w{k}"),
                "webinar-1",
                &[],
                at(day + odd(2 * k + 2)),
            ));
            c.apply(&visit(
                &format!("v{k}"),
                "https://x/",
                at(day + odd(2 * k + 3)),
            ));
            c.apply(&email(
                &format!("m{k}"),
                "n",
                EmailAction::Open,
                at(day + odd(5 * k + 4)),
            ));
        }
    });
}

/// A fit rule worth 20 (warm's minimum) for a dog, and the form field it
/// looks at.
fn dog_rule() -> String {
    rule(
        "dog",
        "when = \"field\"\nfield = \"pet\"\nop = \"eq\"\nvalue = \"dog\"\npoints = 20",
    )
}

fn dog() -> [(&'static str, FieldValue); 1] {
    [("pet", FieldValue::Text("dog".into()))]
}

/// Drives 60 variants of a contact (`drive` gets an odd-fraction source
/// and the variant) whose score at `later` must be its fit alone, exactly 20
/// (warm's minimum): asked for before any rebase, after its timers fired, and
/// after one more event.
fn settles_on_the_fit(
    rules: &str,
    later: EventTime,
    drive: impl Fn(&mut Contact, &dyn Fn(u32) -> f64, u32),
) {
    for n in 0..60u32 {
        let odd = |k: u32| f64::from((n * 7919 + k * 104_729) % 86_400_000) / 86_400_000.0;
        let mut fired = Contact::new(rules);
        let mut stepped = Contact::new(rules);
        drive(&mut fired, &odd, n);
        drive(&mut stepped, &odd, n);
        let s = fired.score(0, later);
        assert_eq!((s.score, s.engagement), (20.0, 0.0), "case {n}: asked for");
        let changes = fired.run_until(later);
        assert!(
            changes.iter().all(|c| c.to != 0),
            "case {n}: a score of exactly 20 is warm: {changes:?}"
        );
        assert_eq!(fired.tier(0), "warm", "case {n}: timers fired");
        stepped.apply(&form("f1", "other", &[], later));
        assert_eq!(stepped.tier(0), "warm", "case {n}: next event");
        assert_eq!(stepped.score(0, later).score, 20.0, "case {n}");
    }
}

/// When an expiry leaves only a few live expiring contributions, their part
/// is summed afresh: here a click's −25 and +25 (both decaying, expiring on
/// different days) cancel exactly, so when an earlier visit's points expire
/// the score is the fit alone, exactly a tier's minimum, however the running
/// sums rounded the visit's value on the way.
#[test]
fn an_expiry_leaves_what_is_live_summed_afresh() {
    let rules = model(
        "decay = { percent_per_day = 3 }",
        &(dog_rule()
            + &rule(
                "visit",
                "when = \"page_visit\"\npoints = 7.3\nexpires_after_days = 1",
            )
            + &rule(
                "minus",
                "when = \"email_click\"\npoints = -25\nexpires_after_days = 5",
            )
            + &rule(
                "plus",
                "when = \"email_click\"\npoints = 25\nexpires_after_days = 9",
            )),
    );
    // Both visits expired by day 1.5; the click's points cancel until day 5.6.
    settles_on_the_fit(&rules, at(1.5), |c, odd, _| {
        c.apply(&form("f0", "signup", &dog(), at(0.0)));
        c.apply(&visit("v", "https://x/", at(0.1 + 0.3 * odd(1))));
        c.apply(&visit("w", "https://x/", at(0.2 + 0.3 * odd(2))));
        c.apply(&email("m", "n", EmailAction::Click, at(0.6 + 0.3 * odd(3))));
    });
}

/// A prediction looks at the first 64 expiries ahead. Here 70 visits expire
/// in pairs, the last pair on the very millisecond the inactivity penalty
/// starts: only with every expiry up to then taken does the score fall out
/// of warm there. The prediction must stop short of the expiries it left
/// out, not walk on to the penalty without them (which found no change, and
/// then a re-check at that instant that saw none either).
#[test]
fn a_change_past_the_first_64_expiries_is_not_missed() {
    let rules = model(
        "inactivity_penalties = [{ after_days = 30, points = -20 }]",
        &(dog_rule()
            + &rule(
                "visit",
                "when = \"page_visit\"\npoints = 5\nexpires_after_days = 30",
            )),
    );
    let mut c = Contact::new(&rules);
    c.apply(&form("f", "signup", &dog(), at(0.0)));
    let mut last = at(0.0);
    for k in 0..70u32 {
        last = at(1.0 + f64::from(k / 2) / 1440.0);
        c.apply(&visit(&format!("v{k}"), "https://x/", last));
    }
    assert_eq!(c.tier(0), "hot", "20 + 350 points");
    let changes = c.run_until(at(40.0));
    let ends = last.plus_millis(30 * DAY);
    let down: Vec<_> = changes
        .iter()
        .filter(|ch| ch.to < ch.from)
        .map(|ch| (ch.to, ch.at))
        .collect();
    assert_eq!(down.last(), Some(&(0, ends)), "{changes:?}");
    assert_eq!(c.tier(0), "cold");
    assert_eq!(c.score(0, at(40.0)).score, 0.0);
}
