//! When will the tier change next if nothing else arrives?
//!
//! Between breakpoints (an expiry, an inactivity step, a contribution dated
//! ahead of the clock starting to decay) the score is `A·f^Δ + B`, monotone,
//! so a decay crossing is solved in closed form and then pinned to the first
//! millisecond at which the tier rule — evaluated by the very code that will
//! run when the timer fires — says "move". At a breakpoint the score may
//! jump; the tier rule is evaluated there directly.

use super::score::{components, curve, transition, Edge};
use super::state::{ModelState, PredictedCause, Prediction};
use crate::rules::Model;
use crate::time::{EventTime, MS_PER_DAY};

/// Breakpoints scanned per prediction before settling for a recheck timer.
const MAX_BREAKPOINTS: usize = 64;

/// Latest instant we schedule anything for (year ~10,000).
const HORIZON_MS: i64 = 253_402_300_799_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Break {
    Expiry(u16),
    Inactivity,
    DecayStart,
}

/// The next tier change strictly after `now`, or `None` if there is none.
pub fn predict(model: &Model, ms: &ModelState, last_activity: Option<EventTime>, now: EventTime) -> Option<Prediction> {
    let mut breaks: Vec<(EventTime, Break)> = Vec::new();
    for c in &ms.pending {
        if let Some(e) = c.expires.filter(|e| *e > now) {
            breaks.push((e, Break::Expiry(c.rule)));
        }
        if c.decays && c.t > now {
            breaks.push((c.t, Break::DecayStart));
        }
    }
    if let Some(la) = last_activity {
        for p in &model.penalties {
            let at = la.plus_millis(p.after_ms);
            if at > now {
                breaks.push((at, Break::Inactivity));
            }
        }
    }
    breaks.sort_unstable();
    let view = View { model, ms, last_activity };
    let mut start = now;
    let mut i = 0;
    let mut scanned = 0;
    while i < breaks.len() {
        let at = breaks[i].0;
        let group_end = breaks[i..].iter().position(|b| b.0 != at).map_or(breaks.len(), |n| i + n);
        if let Some(p) = view.crossing(start, at) {
            return Some(p);
        }
        if let Some(to) = view.change_at(at) {
            let cause = match breaks[i].1 {
                Break::Expiry(rule) => PredictedCause::Expiry { rule },
                Break::Inactivity => PredictedCause::Inactivity,
                Break::DecayStart => PredictedCause::Decay,
            };
            return Some(Prediction { at, to_tier: Some(to), cause });
        }
        scanned += 1;
        if scanned >= MAX_BREAKPOINTS && group_end < breaks.len() {
            return Some(Prediction { at, to_tier: None, cause: PredictedCause::Recheck });
        }
        start = at;
        i = group_end;
    }
    view.crossing(start, EventTime::from_millis(HORIZON_MS))
}

struct View<'a> {
    model: &'a Model,
    ms: &'a ModelState,
    last_activity: Option<EventTime>,
}

impl View<'_> {
    fn change_at(&self, at: EventTime) -> Option<usize> {
        let score = components(self.model, self.ms, self.last_activity, at, Edge::At).score;
        transition(self.model, self.ms.tier, score)
    }

    /// The first millisecond in `(start, end)` at which decay moves the tier.
    fn crossing(&self, start: EventTime, end: EventTime) -> Option<Prediction> {
        let model = self.model;
        let f = model.decay.factor();
        let c = curve(model, self.ms, self.last_activity, start, Edge::At);
        if f >= 1.0 || c.decaying == 0.0 {
            return None;
        }
        let tiers = &model.tiers;
        let current = self.ms.tier;
        let (lo, hi) = model.score_range.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
        let boundary = if c.decaying > 0.0 {
            // falling towards `constant`: a move down needs score < min − h
            let b = tiers[current].min - model.hysteresis;
            (current > 0 && c.constant < b && b > lo).then_some(b)?
        } else {
            // rising towards `constant`: a move up needs score ≥ next min
            let b = tiers.get(current + 1)?.min;
            (c.constant > b && b <= hi).then_some(b)?
        };
        let ratio = (boundary - c.constant) / c.decaying;
        if ratio.is_nan() || ratio <= 0.0 {
            return None;
        }
        let days = if ratio >= 1.0 { 0.0 } else { ratio.ln() / f.ln() };
        let exact = start.millis() as f64 + days * MS_PER_DAY as f64;
        if exact.is_nan() || exact >= end.millis() as f64 + 1.0 || exact > HORIZON_MS as f64 {
            return None;
        }
        let first = self.first_change(start, end, exact.ceil() as i64)?;
        let to = self.change_at(first)?;
        Some(Prediction { at: first, to_tier: Some(to), cause: PredictedCause::Decay })
    }

    /// Pins the estimate to the first millisecond in `(start, end)` where the
    /// tier rule fires; the score is monotone there, so the rule's answer is too.
    fn first_change(&self, start: EventTime, end: EventTime, estimate: i64) -> Option<EventTime> {
        let (s, e) = (start.millis(), end.millis());
        if e - s < 2 {
            return None;
        }
        let fires = |ms: i64| self.change_at(EventTime::from_millis(ms)).is_some();
        let mut hi = estimate.clamp(s + 1, e - 1);
        let mut step = 1i64;
        // Find some `hi` where it fires (the estimate may be a hair early).
        while !fires(hi) {
            if hi >= e - 1 {
                return None;
            }
            hi = (hi + step).min(e - 1);
            step = step.saturating_mul(2);
        }
        // Find some `lo` where it does not (or `start` itself).
        let mut lo = hi - 1;
        step = 1;
        while lo > s && fires(lo) {
            hi = lo;
            lo = (lo - step).max(s);
            step = step.saturating_mul(2);
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fires(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(EventTime::from_millis(hi))
    }
}
