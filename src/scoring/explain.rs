//! "Why is this lead hot?": a contact's scores at an instant, broken down
//! by rule, with the next predicted tier change. Pure, like the rest of
//! scoring; the HTTP layer serializes what this returns.

use serde::Serialize;

use super::caps::CapLedger;
use super::predict::predict;
use super::score::{components, Edge};
use super::state::{ContactState, ModelState, PredictedCause};
use super::Engine;
use crate::event::output::round2;
use crate::event::FieldValue;
use crate::rules::field::whole;
use crate::rules::{Cap, Model};
use crate::time::EventTime;

/// Re-predictions followed past "recheck" points to find the next change.
const MAX_RECHECKS: usize = 16;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactView {
    pub contact_id: String,
    pub as_of: String,
    pub last_activity_at: Option<String>,
    pub profile: serde_json::Map<String, serde_json::Value>,
    pub models: Vec<ModelView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelView {
    pub model: String,
    pub score: f64,
    pub fit: f64,
    pub engagement: f64,
    pub penalty: f64,
    pub tier: String,
    pub rules: Vec<RuleView>,
    pub next_change: Option<NextChange>,
}

/// One rule's part in the score now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleView {
    pub rule: String,
    /// `fit` or `engagement`.
    pub kind: &'static str,
    /// Points it adds at `as_of` (decayed, expired ones gone).
    pub points: f64,
    /// Engagement rules: matches scored, lifetime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<CapView>,
}

/// Where a capped rule stands against its cap at `as_of`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapView {
    pub max_times: u32,
    /// `null` for a lifetime cap.
    pub window_days: Option<f64>,
    pub per_item: bool,
    /// Scored matches inside the window ending at `as_of` (per item: the
    /// busiest item).
    pub used: u32,
    /// `per_item` caps: items with scored matches remembered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<usize>,
    /// Whether another match now would not score (per item: for the busiest item).
    pub full: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextChange {
    pub at: String,
    pub to_tier: String,
    /// `decay`, `expiry` or `inactivity`.
    pub cause: &'static str,
    /// The expiring rule, for `expiry`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// The view of `contact` at `now`, for the models whose index `wanted` accepts.
pub fn explain(
    engine: &Engine,
    contact_id: &str,
    state: &ContactState,
    now: EventTime,
    wanted: impl Fn(&str) -> bool,
) -> ContactView {
    let models = &engine.rules().models;
    ContactView {
        contact_id: contact_id.to_string(),
        as_of: now.to_rfc3339(),
        last_activity_at: state.last_activity.map(|t| t.to_rfc3339()),
        profile: state
            .profile
            .entries()
            .iter()
            .filter_map(|e| Some((e.name.to_string(), json_value(&e.value.as_ref()?.raw))))
            .collect(),
        models: models
            .iter()
            .zip(&state.models)
            .filter(|(m, _)| wanted(&m.name))
            .map(|(model, ms)| model_view(model, ms, state, now))
            .collect(),
    }
}

fn json_value(v: &FieldValue) -> serde_json::Value {
    match v {
        FieldValue::Null => serde_json::Value::Null,
        FieldValue::Bool(b) => (*b).into(),
        // A whole number shows as one (`250`, as it was most likely sent).
        FieldValue::Number(n) => match whole(*n) {
            Some(i) => i.into(),
            None => serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, Into::into),
        },
        FieldValue::Text(s) => s.as_str().into(),
    }
}

fn model_view(model: &Model, ms: &ModelState, contact: &ContactState, now: EventTime) -> ModelView {
    let la = contact.last_activity;
    let c = components(model, ms, la, now, Edge::At);
    let mut rules: Vec<RuleView> = model
        .fit_rules
        .iter()
        .filter(|r| r.condition.holds(contact.profile.get(&r.field)))
        .map(|r| RuleView {
            rule: r.id.clone(),
            kind: "fit",
            points: round2(r.points),
            matches: None,
            cap: None,
        })
        .collect();
    // Rebased to `now`, each rule's sums hold exactly its points now.
    let mut at_now = ms.clone();
    at_now.rebase(model, now);
    for acc in &at_now.rules {
        let Some(rule) = model.engagement_rules.get(acc.rule as usize) else {
            continue;
        };
        let ahead: f64 = at_now
            .pending
            .iter()
            .filter(|p| p.rule == acc.rule && !p.folded && p.live(now, false))
            .map(|p| p.points)
            .sum();
        rules.push(RuleView {
            rule: rule.id.clone(),
            kind: "engagement",
            points: round2(acc.decaying + acc.steady + ahead),
            matches: Some(acc.matches),
            cap: rule
                .cap
                .as_ref()
                .map(|cap| cap_view(cap, acc.cap.as_deref(), now)),
        });
    }
    ModelView {
        model: model.name.clone(),
        score: round2(c.score),
        fit: round2(c.fit),
        engagement: round2(c.engagement),
        penalty: round2(c.penalty),
        tier: model.tiers[ms.tier as usize].name.clone(),
        rules,
        next_change: next_change(model, &at_now, la, now),
    }
}

fn cap_view(cap: &Cap, ledger: Option<&CapLedger>, now: EventTime) -> CapView {
    let in_window = |times: &[EventTime]| {
        let from = cap.window_ms.map(|w| now.plus_millis(-w));
        times
            .iter()
            .filter(|t| **t <= now && from.is_none_or(|f| **t > f))
            .count() as u32
    };
    let (used, items) = match ledger {
        None => (0, cap.per_item.then_some(0)),
        Some(l) if cap.per_item => (
            l.items()
                .map(|(_, times)| in_window(times))
                .max()
                .unwrap_or(0),
            Some(l.item_count()),
        ),
        Some(l) => (in_window(l.times("")), None),
    };
    CapView {
        max_times: cap.max_times,
        window_days: cap.window_ms.map(|w| w as f64 / 86_400_000.0),
        per_item: cap.per_item,
        used,
        items,
        full: used >= cap.max_times,
    }
}

/// The next tier change after `now` with no new input, following recheck
/// points (long runs of breakpoints) a bounded number of times.
fn next_change(
    model: &Model,
    ms: &ModelState,
    la: Option<EventTime>,
    now: EventTime,
) -> Option<NextChange> {
    let mut from = now;
    for _ in 0..MAX_RECHECKS {
        let p = predict(model, ms, la, from)?;
        let Some(to) = p.to_tier else {
            from = p.at;
            continue;
        };
        let (cause, rule) = match p.cause {
            PredictedCause::Decay | PredictedCause::Recheck => ("decay", None),
            PredictedCause::Inactivity => ("inactivity", None),
            PredictedCause::Expiry { rule } => (
                "expiry",
                model
                    .engagement_rules
                    .get(rule as usize)
                    .map(|r| r.id.clone()),
            ),
        };
        return Some(NextChange {
            at: p.at.to_rfc3339(),
            to_tier: model.tiers[to as usize].name.clone(),
            cause,
            rule,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn t(days: f64) -> EventTime {
        EventTime::from_millis((days * DAY as f64) as i64)
    }

    #[test]
    fn a_per_item_cap_shows_its_busiest_item() {
        let cap = Cap {
            max_times: 2,
            window_ms: Some(7 * DAY),
            per_item: true,
        };
        let mut ledger = CapLedger::default();
        for (item, day) in [("em-3", 0.0), ("em-1", 1.0), ("em-1", 2.0), ("em-2", 3.0)] {
            assert!(ledger.admit(&cap, item, t(day), t(day), 0));
        }
        // Day 2.5: em-1's two matches (days 1 and 2) fill its cap.
        let view = cap_view(&cap, Some(&ledger), t(2.5));
        assert_eq!((view.used, view.items, view.full), (2, Some(3), true));
        // Day 8: the window (1, 8] holds only em-1's day 2 and em-2's day 3.
        let view = cap_view(&cap, Some(&ledger), t(8.0));
        assert_eq!((view.used, view.items, view.full), (1, Some(3), false));
        // No ledger yet: nothing used, no items.
        let view = cap_view(&cap, None, t(8.0));
        assert_eq!((view.used, view.items, view.full), (0, Some(0), false));
    }
}
