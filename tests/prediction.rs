//! Property tests of the engine's time behaviour: a predicted tier change
//! happens at the predicted instant (not one millisecond before), no change
//! happens earlier than predicted, and scoring is deterministic.

mod common;

use common::*;
use leadscore::event::{EmailAction, Event, FieldValue};
use leadscore::scoring::{predict, stays_lowest, transition, ContactState, Effects, Engine};
use leadscore::time::EventTime;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Params {
    decay: String,
    hysteresis: u32,
    warm: u32,
    hot_gap: u32,
    webinar_days: u32,
    webinar_decays: bool,
    penalty_days: u32,
    clamp: bool,
}

fn params() -> impl Strategy<Value = Params> {
    (
        prop_oneof![
            (1u32..400)
                .prop_map(|p| format!("decay = {{ percent_per_day = {} }}", p as f64 / 20.0)),
            (1u32..90).prop_map(|h| format!("decay = {{ half_life_days = {h} }}")),
        ],
        0u32..10,
        5u32..40,
        5u32..40,
        1u32..40,
        any::<bool>(),
        1u32..60,
        any::<bool>(),
    )
        .prop_map(
            |(
                decay,
                hysteresis,
                warm,
                hot_gap,
                webinar_days,
                webinar_decays,
                penalty_days,
                clamp,
            )| Params {
                decay,
                hysteresis,
                warm,
                hot_gap,
                webinar_days,
                webinar_decays,
                penalty_days,
                clamp,
            },
        )
}

fn rules(p: &Params) -> String {
    let range = if p.clamp {
        "score_range = [-20, 70]"
    } else {
        ""
    };
    format!(
        r#"[[model]]
name = "m"
{decay}
hysteresis = {h}
{range}
tiers = [{{ name = "cold" }}, {{ name = "warm", min = {warm} }}, {{ name = "hot", min = {hot} }}]
inactivity_penalties = [{{ after_days = {pd}, points = -7 }}, {{ after_days = {pd2}, points = -12 }}]

[[model.rule]]
id = "pricing"
when = "page_visit"
url = "*/pricing*"
points = 11
max_times = 3
window_days = 5

[[model.rule]]
id = "careers"
when = "page_visit"
url = "*/careers*"
points = -9

[[model.rule]]
id = "webinar"
when = "form_submit"
points = 17
expires_after_days = {wd}
decays = {wdec}

[[model.rule]]
id = "exec"
when = "field"
field = "title"
op = "eq"
value = "ceo"
points = 6

[[model.rule]]
id = "bought"
when = "purchase"
points = -30
decays = false
expires_after_days = {wd2}

[[model]]
name = "second"
decay = {{ half_life_days = 7 }}
tiers = [{{ name = "no" }}, {{ name = "yes", min = 12 }}]

[[model.rule]]
id = "any"
when = "email_click"
points = 13
"#,
        decay = p.decay,
        h = p.hysteresis,
        warm = p.warm,
        hot = p.warm + p.hot_gap,
        pd = p.penalty_days,
        pd2 = p.penalty_days * 2,
        wd = p.webinar_days,
        wdec = p.webinar_decays,
        wd2 = p.webinar_days + 3,
    )
}

/// (kind, minutes after the previous event, minutes late)
fn steps() -> impl Strategy<Value = Vec<(u8, u32, u32)>> {
    prop::collection::vec(
        (
            0u8..6,
            0u32..20_000,
            prop_oneof![9 => Just(0u32), 1 => 0u32..4000],
        ),
        1..25,
    )
}

fn events(steps: &[(u8, u32, u32)]) -> Vec<Event> {
    let mut t = at(0.0);
    steps
        .iter()
        .enumerate()
        .map(|(i, (kind, gap, late))| {
            t = t.plus_millis(*gap as i64 * 60_000);
            let when = t.plus_millis(-(*late as i64) * 60_000);
            let id = format!("e{i}");
            match kind {
                0 => visit(&id, "https://x/pricing", when),
                1 => visit(&id, "https://x/careers", when),
                2 => form(
                    &id,
                    "webinar",
                    &[(
                        "title",
                        FieldValue::Text(if i % 2 == 0 { "CEO" } else { "intern" }.into()),
                    )],
                    when,
                ),
                3 => purchase(&id, "pro", Some(10.0), when),
                4 => email(&id, "m", EmailAction::Click, when),
                _ => visit(&id, "https://x/", when),
            }
        })
        .collect()
}

/// Whether `score` ties (up to rounding) a threshold that decides where
/// `transition` takes model `m` from its tier: the minimum of a tier above,
/// or the minimum less hysteresis of the tier or one below it that a drop
/// may stop at. At such a tie the running sums' last bits decide.
fn near_boundary(engine: &Engine, state: &ContactState, m: usize, score: f64) -> bool {
    let model = &engine.rules().models[m];
    let tier = state.models[m].tier as usize;
    let above = model.tiers[tier + 1..].iter().map(|t| t.min);
    let below = model.tiers[1..=tier]
        .iter()
        .map(|t| t.min - model.hysteresis);
    above.chain(below).any(|b| (score - b).abs() < 1e-12)
}

/// Checks the prediction of every model against direct evaluation.
fn check_predictions(c: &Contact, now: EventTime, samples: &[u32]) -> Result<(), TestCaseError> {
    for (m, ms) in c.state.models.iter().enumerate() {
        let model = &c.engine.rules().models[m];
        let changes_at = |t: EventTime| {
            let score = c.engine.components(&c.state, m, t).score;
            (
                transition(model, ms.tier as usize, score),
                near_boundary(&c.engine, &c.state, m, score),
            )
        };
        let horizon = match &ms.next {
            Some(p) => p.at,
            None => now.plus_millis(3000 * DAY),
        };
        prop_assert!(horizon > now, "prediction {horizon} is not after now {now}");
        for s in samples {
            let t = EventTime::from_millis(
                now.millis() + (horizon.millis() - 1 - now.millis()) * *s as i64 / 1000,
            );
            if t <= now {
                continue;
            }
            let (change, near) = changes_at(t);
            prop_assert!(
                change.is_none() || near,
                "model {m}: tier changes at {t}, before the predicted {horizon}"
            );
        }
        if let Some(p) = ms.next.as_ref().filter(|p| p.to_tier.is_some()) {
            let (at, near) = changes_at(p.at);
            prop_assert!(
                at == p.to_tier.map(|t| t as usize) || near,
                "model {m}: predicted {:?} at {}, evaluation says {at:?}",
                p.to_tier,
                p.at
            );
            if p.at.plus_millis(-1) > now {
                let (before, near) = changes_at(p.at.plus_millis(-1));
                prop_assert!(
                    before.is_none() || near,
                    "model {m}: already changes 1 ms before {}",
                    p.at
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn predicted_changes_happen_at_the_predicted_instant(
        p in params(),
        steps in steps(),
        samples in prop::collection::vec(0u32..1000, 8),
        idle in prop::collection::vec(0u32..2000, 3),
    ) {
        let mut c = Contact::new(&rules(&p));
        for e in events(&steps) {
            c.apply(&e);
            check_predictions(&c, c.clock, &samples)?;
        }
        // Let time pass: fire timers and check each new prediction.
        for hours in idle {
            let until = c.clock.plus_millis(hours as i64 * 3_600_000);
            loop {
                let due = c.state.models.iter().enumerate()
                    .filter_map(|(m, s)| s.next.as_ref().map(|p| (p.at, m)))
                    .filter(|(t, _)| *t <= until)
                    .min();
                let Some((t, m)) = due else { break };
                let before = c.state.models[m].tier as usize;
                let mut fx = Effects::default();
                c.engine.fire(&mut c.state, m, t, &mut fx);
                c.clock = t;
                if let Some(ch) = fx.changes.first() {
                    prop_assert_eq!(ch.from, before);
                    prop_assert_eq!(ch.at, t);
                }
                check_predictions(&c, t, &samples)?;
            }
            c.clock = until;
        }
    }

    /// The shortcut that skips the walk for contacts stuck in the lowest
    /// tier never disagrees with the walk.
    #[test]
    fn staying_lowest_agrees_with_the_walk(p in params(), steps in steps()) {
        let mut c = Contact::new(&rules(&p));
        for e in events(&steps) {
            c.apply(&e);
            for (m, ms) in c.state.models.iter().enumerate() {
                let model = &c.engine.rules().models[m];
                if stays_lowest(model, ms, c.clock) {
                    prop_assert_eq!(predict(model, ms, c.state.last_activity, c.clock), None);
                }
            }
        }
    }

    #[test]
    fn replaying_the_same_events_is_deterministic(p in params(), steps in steps()) {
        let evs = events(&steps);
        let run = || {
            let mut c = Contact::new(&rules(&p));
            let changes: Vec<_> = evs.iter().flat_map(|e| c.apply(e)).collect();
            let fired = c.run_until(c.clock.plus_millis(400 * DAY));
            (c.state, changes, fired)
        };
        prop_assert_eq!(run(), run());
    }
}

/// A contact in the lowest tier whose score rises as a negative contribution
/// fades is not taken for one that stays there: its rise is predicted.
#[test]
fn a_lowest_tier_score_that_rises_is_still_predicted() {
    let mut c = Contact::new(LOWEST_TIER);
    let ceo = [("title", FieldValue::Text("ceo".into()))];
    c.apply(&form("e1", "f", &ceo, at(0.0)));
    assert_eq!(c.tier(0), "warm");
    c.apply(&visit("e2", "https://x/careers", at(0.0)));
    assert_eq!(c.tier(0), "cold", "10 − 9 is below warm");
    let model = &c.engine.rules().models[0];
    assert!(!stays_lowest(model, &c.state.models[0], c.clock));
    // 10 − 9·2^(−d/7) reaches 5 at d = 7·log2(9/5).
    let p = c.state.models[0].next.clone().expect("a rise into warm");
    assert_eq!(p.to_tier, Some(1));
    let expected = 7.0 * (9.0f64 / 5.0).log2();
    assert!((p.at.days_since(at(0.0)) - expected).abs() < 1e-6, "{p:?}");

    // With only positive points below warm, nothing can lift it: no walk.
    let mut plain = Contact::new(LOWEST_TIER);
    plain.apply(&visit("e1", "https://x/docs/a", at(0.0)));
    assert_eq!(plain.score(0, at(0.0)).score, 2.0);
    let model = &plain.engine.rules().models[0];
    assert!(stays_lowest(model, &plain.state.models[0], plain.clock));
    assert_eq!(plain.state.models[0].next, None);
}

/// A score that only tends to a tier's `min` (a fading negative part over a
/// fit exactly on it) never reaches it by decay, as in the spec's formula,
/// however close it comes: no change is predicted. One that tends to just
/// above it gets there.
#[test]
fn a_score_that_only_tends_to_a_min_never_reaches_it() {
    let rules = LOWEST_TIER.replace("min = 5", "min = 10");
    let mut c = Contact::new(&rules);
    let ceo = [("title", FieldValue::Text("ceo".into()))];
    c.apply(&form("e1", "f", &ceo, at(0.0)));
    c.apply(&visit("e2", "https://x/careers", at(0.0)));
    assert_eq!(c.tier(0), "cold", "10 − 9 is below warm");
    assert_eq!(
        c.state.models[0].next, None,
        "10 − 9·2^(−d/7) stays below 10"
    );

    // With the fit half a point above the min, the rise gets there:
    // 10.5 − 9·2^(−d/7) = 10 at d = 7·log2(18).
    let above_rules = rules.replace("points = 10\n", "points = 10.5\n");
    let mut above = Contact::new(&above_rules);
    above.apply(&form("e1", "f", &ceo, at(0.0)));
    above.apply(&visit("e2", "https://x/careers", at(0.0)));
    let p = above.state.models[0]
        .next
        .clone()
        .expect("a rise into warm");
    assert_eq!(p.to_tier, Some(1));
    let expected = 7.0 * 18f64.log2();
    assert!((p.at.days_since(at(0.0)) - expected).abs() < 1e-6, "{p:?}");
}

const LOWEST_TIER: &str = r#"[[model]]
name = "m"
decay = { half_life_days = 7 }
tiers = [{ name = "cold" }, { name = "warm", min = 5 }]

[[model.rule]]
id = "exec"
when = "field"
field = "title"
op = "eq"
value = "ceo"
points = 10

[[model.rule]]
id = "careers"
when = "page_visit"
url = "*/careers*"
points = -9

[[model.rule]]
id = "docs"
when = "page_visit"
url = "*/docs*"
points = 2
"#;
