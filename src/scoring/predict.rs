//! When will the tier change next if nothing else arrives?
//!
//! Between breakpoints (an expiry, an inactivity step, a contribution dated
//! ahead of the clock starting to decay) the score is `A·f^Δ + B`, monotone.
//! The walk starts from the full score at `now` and carries `A` and `B`
//! across breakpoints incrementally, so a prediction costs one pass over the
//! pending contributions plus O(1) per breakpoint visited. A segment on
//! whose end the tier rule fires holds a decay crossing (none otherwise, the
//! curve being monotone): it is solved in closed form, then pinned to the
//! first millisecond at which the rule, evaluated on the same curve, says
//! "move". At a breakpoint the score may jump; the rule is evaluated there.

use smallvec::SmallVec;

use super::fresh::{fresh_sums, LiveParts};
use super::score::{clamp, curve, penalty, transition, Curve, Edge};
use super::state::{Contribution, ModelState, PredictedCause, Prediction};
use crate::rules::DecayRate;
use crate::rules::Model;
use crate::time::{EventTime, MS_PER_DAY};

/// Breakpoints visited per prediction before settling for a recheck timer.
const MAX_BREAKPOINTS: usize = 64;

/// Latest instant we schedule anything for (year ~10,000).
const HORIZON_MS: i64 = 253_402_300_799_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Step {
    /// A contribution expires: subtract it from the decaying part (its value
    /// then) or from the constant part.
    Expiry {
        rule: u16,
        points: f64,
        t: EventTime,
        decays: bool,
    },
    /// The inactivity penalty becomes `points`, a change by `delta`.
    Inactivity { points: f64, delta: f64 },
    /// A contribution dated after `now` starts decaying.
    DecayStart { points: f64 },
}

/// Whether the contact stays in `model`'s lowest tier without new input,
/// known without walking the score's future: it is in the lowest tier and
/// its score cannot rise. The decaying sum is not negative (every decaying
/// contribution shrinks by the same factor, so the sum keeps its sign and
/// shrinks), no tracked contribution is negative (an expiry only takes
/// points away) or dated ahead (nothing is still to be added), and the
/// inactivity penalties only ever deepen. Expiries and penalties can then
/// only lower the score, never lift it into a higher tier.
///
/// Precondition: `ms.tier` is the tier the score at `now` gives, as it is
/// right after an event or a fired change; [`predict`] then returns `None`.
pub fn stays_lowest(model: &Model, ms: &ModelState, now: EventTime) -> bool {
    let mut penalty = 0.0;
    let penalties_deepen = model.penalties.iter().all(|p| {
        let deeper = p.points <= penalty;
        penalty = p.points;
        deeper
    });
    ms.tier == 0
        && ms.unfolded == 0
        && ms.decaying_total >= 0.0
        && penalties_deepen
        // Expired contributions may still be in the sums until a rebase.
        && ms.pending.first().is_none_or(|c| c.live(now, false))
        && ms.pending.iter().all(|c| c.points >= 0.0)
}

/// The next tier change strictly after `now`, or `None` if there is none.
pub fn predict(
    model: &Model,
    ms: &ModelState,
    last_activity: Option<EventTime>,
    now: EventTime,
) -> Option<Prediction> {
    let f = model.decay_factor;
    let mut steps: SmallVec<[(EventTime, Step); 16]> = SmallVec::new();
    if ms.unfolded > 0 {
        for c in ms.pending.iter().filter(|c| c.decays && c.t > now) {
            steps.push((c.t, Step::DecayStart { points: c.points }));
        }
    }
    // `pending` is in expiry order: the first expiries after `now` suffice,
    // as the walk stops after MAX_BREAKPOINTS anyway. The expiries of one
    // instant are taken together; `cut` is the first instant left out, where
    // the walk must stop, as it does not know all that happens from there.
    let mut cut = None;
    for c in ms.pending.iter().skip_while(|c| c.expired(now, false)) {
        let Some(e) = c.expires else { break };
        let last = steps.last().map(|s| s.0);
        if steps.len() >= MAX_BREAKPOINTS + ms.unfolded as usize && last != Some(e) {
            cut = Some(e);
            break;
        }
        steps.push((
            e,
            Step::Expiry {
                rule: c.rule,
                points: c.points,
                t: c.t,
                decays: c.decays,
            },
        ));
    }
    if let Some(la) = last_activity {
        let mut previous = 0.0;
        for p in &model.penalties {
            let at = la.plus_millis(p.after_ms);
            if at > now {
                steps.push((
                    at,
                    Step::Inactivity {
                        points: p.points,
                        delta: p.points - previous,
                    },
                ));
            }
            previous = p.points;
        }
    }
    steps.sort_by_key(|s| s.0); // stable: expiries stay in pending's order

    let mut walk = Walk {
        model,
        f,
        tier: ms.tier as usize,
        start: now,
        curve: curve(model, ms, last_activity, now, Edge::At),
        state: (ms, last_activity, now),
        settle: None,
    };
    // Look again just before the cut: every step before it is known, so the
    // tier there is settled (the cut is at least 2 ms after `now`, as the
    // steps before it took at least one instant after `now`).
    let recheck = |cut: EventTime| Prediction {
        at: cut.plus_millis(-1),
        to_tier: None,
        cause: PredictedCause::Recheck,
    };
    let mut i = 0;
    let mut visited = 0;
    while i < steps.len() {
        let at = steps[i].0;
        if let Some(cut) = cut.filter(|&cut| at >= cut) {
            return walk.crossing(cut).or(Some(recheck(cut)));
        }
        // The curve is monotone up to `at`: unless the tier rule fires on it
        // just before the steps there, no earlier millisecond moves the tier
        // either, and the crossing need not be solved.
        let before = walk.at(at);
        if walk.change(before).is_some() {
            if let Some(p) = walk.crossing(at) {
                return Some(p);
            }
        }
        walk.advance_to(at, before);
        let mut cause = None;
        while i < steps.len() && steps[i].0 == at {
            let step_cause = walk.apply(at, steps[i].1);
            cause = cause.or(step_cause);
            i += 1;
        }
        if let Some(to) = walk.change(walk.curve) {
            let cause = cause.unwrap_or(PredictedCause::Decay);
            return Some(Prediction {
                at,
                to_tier: Some(to as u32),
                cause,
            });
        }
        visited += 1;
        if visited >= MAX_BREAKPOINTS && i < steps.len() {
            return Some(Prediction {
                at,
                to_tier: None,
                cause: PredictedCause::Recheck,
            });
        }
    }
    if let Some(cut) = cut {
        return walk.crossing(cut).or(Some(recheck(cut)));
    }
    walk.crossing(EventTime::from_millis(HORIZON_MS))
}

/// The score curve from `start` on.
struct Walk<'a> {
    model: &'a Model,
    f: DecayRate,
    tier: usize,
    start: EventTime,
    curve: Curve,
    /// The state walked from, its last activity and the walk's first instant.
    state: (&'a ModelState, Option<EventTime>, EventTime),
    /// Set up at the first expiry (most walks meet none); then `None` if
    /// contributions dated ahead of the clock are pending.
    settle: Option<Option<Settle<'a>>>,
}

/// What the walk needs to sum a part of the score (decaying or steady)
/// afresh after an expiry, as [`curve`] and `ModelState::rebase` do (see
/// `Tracked::fresh`): no residue of the subtractions is left to tip a score
/// that sits exactly on a tier's minimum. Not used when contributions dated
/// ahead of the clock are pending (they join the parts as the walk goes;
/// left to the plain sums).
struct Settle<'a> {
    /// The tracked contributions live at the walk's start, in expiry order:
    /// the walk's expiry steps take them in that order.
    live: &'a [Contribution],
    /// Expiry steps taken.
    taken: usize,
    /// What is live of `live[taken..]`, by part.
    left: LiveParts,
    /// The never-expiring decaying sum, valued at `ref_time`.
    untracked_decaying: f64,
    ref_time: EventTime,
    fit: f64,
    /// The never-expiring steady sum.
    untracked_steady: f64,
    /// The inactivity penalty reached.
    penalty: f64,
}

impl<'a> Settle<'a> {
    /// At the walk's first expiry, at `at`, before the steps at `at` are
    /// taken: what `ms` tracks live at `now`, and the penalty just before `at`.
    fn new(
        model: &Model,
        (ms, last_activity, now): (&'a ModelState, Option<EventTime>, EventTime),
        at: EventTime,
    ) -> Option<Settle<'a>> {
        if ms.unfolded > 0 {
            return None;
        }
        let expired = ms.pending.partition_point(|c| c.expired(now, false));
        let live = &ms.pending[expired..];
        let (untracked_decaying, untracked_steady) = ms.untracked(model);
        Some(Settle {
            live,
            taken: 0,
            left: LiveParts::default(),
            untracked_decaying,
            ref_time: ms.ref_time,
            fit: ms.fit,
            untracked_steady,
            penalty: penalty(model, last_activity, at, Edge::Before),
        })
    }
}

impl Walk<'_> {
    fn at(&self, t: EventTime) -> Curve {
        Curve {
            decaying: self.f.carry(self.curve.decaying, self.start, t),
            constant: self.curve.constant,
        }
    }

    fn change(&self, c: Curve) -> Option<usize> {
        transition(
            self.model,
            self.tier,
            clamp(self.model, c.decaying + c.constant),
        )
    }

    /// Moves the walk's start to `t`, where the curve is `curve` (`self.at(t)`).
    fn advance_to(&mut self, t: EventTime, curve: Curve) {
        self.curve = curve;
        self.start = t;
    }

    fn apply(&mut self, at: EventTime, step: Step) -> Option<PredictedCause> {
        match step {
            Step::Expiry {
                rule,
                points,
                t,
                decays,
            } => {
                if decays && t <= at {
                    self.curve.decaying -= points * self.f.over(at.days_since(t));
                } else {
                    self.curve.constant -= points;
                }
                self.settle_expiry(at, decays);
                Some(PredictedCause::Expiry { rule })
            }
            Step::Inactivity { points, delta } => {
                self.curve.constant += delta;
                if let Some(Some(s)) = &mut self.settle {
                    s.penalty = points;
                }
                Some(PredictedCause::Inactivity)
            }
            Step::DecayStart { points } => {
                self.curve.constant -= points;
                self.curve.decaying += points;
                None
            }
        }
    }

    /// After an expiry at `at` (of a decaying contribution or not): the
    /// part it left is summed afresh from what is still live, when that is
    /// none of it or little (see [`Settle`]).
    #[cold]
    fn settle_expiry(&mut self, at: EventTime, decays: bool) {
        let (model, state) = (self.model, self.state);
        let Some(s) = self
            .settle
            .get_or_insert_with(|| Settle::new(model, state, at))
        else {
            return;
        };
        s.taken += 1;
        let (fresh_decaying, fresh_steady) = s.left.fresh_after(decays, &s.live[s.taken..]);
        if !fresh_decaying && !fresh_steady {
            return;
        }
        let untracked = (s.untracked_decaying, s.untracked_steady);
        let (decaying, steady) =
            fresh_sums(s.live[s.taken..].iter(), untracked, s.ref_time, at, self.f);
        if fresh_decaying {
            self.curve.decaying = decaying;
        }
        if fresh_steady {
            // Summed in the order `curve` sums them.
            self.curve.constant = s.fit + s.penalty + steady;
        }
    }

    /// The first millisecond in `(start, end)` at which decay moves the tier.
    fn crossing(&self, end: EventTime) -> Option<Prediction> {
        let (model, c) = (self.model, self.curve);
        if !self.f.decays() || c.decaying == 0.0 {
            return None;
        }
        let tiers = &model.tiers;
        let (lo, hi) = model
            .score_range
            .unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
        let boundary = if c.decaying > 0.0 {
            // falling towards `constant`: a move down needs score < min − h
            let b = tiers[self.tier].down;
            (self.tier > 0 && c.constant < b && b > lo).then_some(b)?
        } else {
            // rising towards `constant`: a move up needs score ≥ next min
            // (from a hair below it on); a curve that only tends to the min
            // never gets there, however close it comes
            let next = tiers.get(self.tier + 1)?;
            (c.constant > next.min && next.min <= hi).then_some(next.up)?
        };
        let ratio = (boundary - c.constant) / c.decaying;
        if ratio.is_nan() || ratio <= 0.0 {
            return None;
        }
        let days = if ratio >= 1.0 {
            0.0
        } else {
            ratio.ln() / self.f.ln()
        };
        let exact = self.start.millis() as f64 + days * MS_PER_DAY as f64;
        if exact.is_nan() || exact >= end.millis() as f64 + 1.0 || exact > HORIZON_MS as f64 {
            return None;
        }
        let first = self.first_change(end, exact.ceil() as i64)?;
        let to = self.change(self.at(first))?;
        Some(Prediction {
            at: first,
            to_tier: Some(to as u32),
            cause: PredictedCause::Decay,
        })
    }

    /// Pins the estimate to the first millisecond in `(start, end)` where the
    /// tier rule fires; the curve is monotone there, so the rule's answer is too.
    fn first_change(&self, end: EventTime, estimate: i64) -> Option<EventTime> {
        let (s, e) = (self.start.millis(), end.millis());
        if e - s < 2 {
            return None;
        }
        let fires = |ms: i64| self.change(self.at(EventTime::from_millis(ms))).is_some();
        let mut hi = estimate.clamp(s + 1, e - 1);
        let mut step = 1i64;
        while !fires(hi) {
            if hi >= e - 1 {
                return None;
            }
            hi = (hi + step).min(e - 1);
            step = step.saturating_mul(2);
        }
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
