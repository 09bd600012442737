//! The score formula of SPEC §4 and the tier rule with hysteresis.

use super::fresh::{fresh_sums, Tracked};
use super::state::ModelState;
use crate::rules::Model;
use crate::time::EventTime;

/// Which side of an instant to evaluate: steps (expiry, inactivity) that
/// happen exactly at `now` are taken with `At` and not yet with `Before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    At,
    Before,
}

/// The parts of a score at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Components {
    pub fit: f64,
    pub engagement: f64,
    pub penalty: f64,
    pub score: f64,
}

/// Score as `A·f^Δ + B` from an instant on, until the next breakpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Curve {
    /// The decaying part at the start.
    pub decaying: f64,
    /// Everything constant until the next breakpoint, unclamped.
    pub constant: f64,
}

pub fn clamp(model: &Model, raw: f64) -> f64 {
    match model.score_range {
        Some((lo, hi)) => raw.clamp(lo, hi),
        None => raw,
    }
}

/// Penalty of the largest inactivity step reached at `now`.
pub fn penalty(model: &Model, last_activity: Option<EventTime>, now: EventTime, edge: Edge) -> f64 {
    let Some(la) = last_activity else {
        return 0.0;
    };
    let idle = now.millis().saturating_sub(la.millis());
    let reached = |after: i64| match edge {
        Edge::At => after <= idle,
        Edge::Before => after < idle,
    };
    model
        .penalties
        .iter()
        .rev()
        .find(|p| reached(p.after_ms))
        .map_or(0.0, |p| p.points)
}

/// Splits engagement at `now` (≥ the state's reference time) into its
/// decaying and constant parts. Costs O(rules) plus the contributions that
/// expired since the last rebase.
pub fn curve(
    model: &Model,
    ms: &ModelState,
    last_activity: Option<EventTime>,
    now: EventTime,
    edge: Edge,
) -> Curve {
    let f = model.decay_factor;
    let before = edge == Edge::Before;
    let mut decaying = f.carry(ms.decaying_total, ms.ref_time, now);
    let fit_and_penalty = ms.fit + penalty(model, last_activity, now, edge);
    let mut constant = fit_and_penalty + ms.steady_total;
    for c in ms
        .pending
        .iter()
        .take_while(|c| c.expired(now, before))
        .filter(|c| c.folded)
    {
        if c.decays {
            decaying -= c.value(now, f);
        } else {
            constant -= c.points;
        }
    }
    if ms.pending.first().is_some_and(|c| c.expired(now, before)) {
        settle(
            model,
            ms,
            now,
            before,
            fit_and_penalty,
            &mut decaying,
            &mut constant,
        );
    }
    if ms.unfolded > 0 {
        for c in ms
            .pending
            .iter()
            .filter(|c| !c.folded && c.live(now, before))
        {
            if c.decays && c.t <= now {
                decaying += c.value(now, f);
            } else {
                constant += c.points;
            }
        }
    }
    Curve { decaying, constant }
}

/// For [`curve`], once expired contributions were taken out: a part that
/// lost some is summed afresh from what is live when that is little (as
/// `ModelState::rebase` leaves it), not left to the subtractions' residue.
#[cold]
fn settle(
    model: &Model,
    ms: &ModelState,
    now: EventTime,
    before: bool,
    fit_and_penalty: f64,
    decaying: &mut f64,
    constant: &mut f64,
) {
    let expired = ms.pending.partition_point(|c| c.expired(now, before));
    let live = &ms.pending[expired..];
    let (fresh_decaying, fresh_steady) = Tracked::of(&ms.pending[..expired]).fresh(live);
    if !fresh_decaying && !fresh_steady {
        return;
    }
    let live = live.iter().filter(|c| c.folded);
    let (fresh, steady) = fresh_sums(
        live,
        ms.untracked(model),
        ms.ref_time,
        now,
        model.decay_factor,
    );
    if fresh_decaying {
        *decaying = fresh;
    }
    if fresh_steady {
        *constant = fit_and_penalty + steady;
    }
}

/// Fit, engagement, penalty and the clamped score at `now`.
pub fn components(
    model: &Model,
    ms: &ModelState,
    last_activity: Option<EventTime>,
    now: EventTime,
    edge: Edge,
) -> Components {
    let c = curve(model, ms, last_activity, now, edge);
    let penalty = penalty(model, last_activity, now, edge);
    let engagement = c.decaying + c.constant - ms.fit - penalty;
    Components {
        fit: ms.fit,
        engagement,
        penalty,
        score: clamp(model, c.decaying + c.constant),
    }
}

/// The tier a contact in tier `current` moves to at `score`, if it moves.
/// A score counts as reaching an edge (a `min`, or `min − h` on the way
/// down) from a hair below it ([`crate::rules::reach`]).
pub fn transition(model: &Model, current: usize, score: f64) -> Option<usize> {
    let tiers = &model.tiers;
    if let Some(up) = (current + 1..tiers.len())
        .rev()
        .find(|&i| score >= tiers[i].up)
    {
        return Some(up);
    }
    if current > 0 && score < tiers[current].down {
        return (0..current)
            .rev()
            .find(|&i| i == 0 || score >= tiers[i].down);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;

    fn model(hysteresis: u32) -> Model {
        let text = format!(
            "[[model]]\nname = \"m\"\nhysteresis = {hysteresis}\ntiers = [{{ name = \"cold\" }}, {{ name = \"warm\", min = 20 }}, {{ name = \"hot\", min = 50 }}]\n"
        );
        RuleSet::parse(&text).unwrap().models.remove(0)
    }

    #[test]
    fn moves_up_to_the_highest_qualifying_tier() {
        let m = model(5);
        assert_eq!(transition(&m, 0, 19.99), None);
        assert_eq!(transition(&m, 0, 20.0), Some(1));
        assert_eq!(transition(&m, 0, 75.0), Some(2));
        assert_eq!(transition(&m, 1, 50.0), Some(2));
    }

    #[test]
    fn moves_down_only_past_the_hysteresis_band() {
        let m = model(5);
        assert_eq!(transition(&m, 2, 45.0), None, "45 is not below 50 - 5");
        assert_eq!(transition(&m, 2, 44.9), Some(1));
        assert_eq!(transition(&m, 2, 14.9), Some(0), "below warm's band too");
        assert_eq!(transition(&m, 2, 15.0), Some(1));
        assert_eq!(transition(&m, 1, -100.0), Some(0));
        assert_eq!(transition(&m, 0, -1e9), None);
        let strict = model(0);
        assert_eq!(transition(&strict, 2, 50.0), None);
        assert_eq!(transition(&strict, 2, 49.999), Some(1));
    }

    /// What running sums leave of points that cancel, or of a decayed value
    /// the formula puts exactly on an edge, does not decide a tier: a score
    /// a few units in the last place below an edge counts as on it, one a
    /// visible amount below does not.
    #[test]
    fn a_score_a_rounding_below_an_edge_is_on_it() {
        let m = model(5);
        let below = |edge: f64, ulps: f64| edge - ulps * edge.abs().max(1.0) * f64::EPSILON;
        assert_eq!(transition(&m, 0, below(20.0, 4.0)), Some(1));
        assert_eq!(transition(&m, 0, 20.0 - 1e-9), None);
        assert_eq!(transition(&m, 2, below(45.0, 4.0)), None, "on 50 − 5");
        assert_eq!(transition(&m, 2, 45.0 - 1e-9), Some(1));
        assert_eq!(transition(&m, 1, below(15.0, 4.0)), None, "on 20 − 5");
        // 10 points at 10 %/day, re-based after 18 hours and valued 6 hours
        // later, against a `min` of 9: 10 × 0.9^0.75 × 0.9^0.25 is
        // 8.999999999999998, where the formula gives 10 × 0.9 = 9.
        let nine = RuleSet::parse(
            "[[model]]\nname = \"m\"\ntiers = [{ name = \"cold\" }, { name = \"warm\", min = 9 }]\n",
        )
        .unwrap()
        .models
        .remove(0);
        assert_eq!(transition(&nine, 0, 8.999999999999998), Some(1));
        assert_eq!(transition(&nine, 0, 8.9999999), None);
        // An edge at zero (a hysteresis band down to 0) and +25 and −25 that
        // cancel, one carried over two re-bases: what is left is on it.
        let cancel = model(20);
        assert_eq!(transition(&cancel, 1, -3.6e-15), None, "on 20 − 20");
        assert_eq!(transition(&cancel, 1, -1e-9), Some(0));
    }
}
