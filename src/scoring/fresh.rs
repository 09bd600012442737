//! Summing a part of the score afresh after an expiry, rather than trusting
//! the running sums' subtractions: which part, and the sums themselves
//! (used alike by `ModelState::rebase`, `curve` and the prediction walk).

use super::state::Contribution;
use crate::rules::DecayRate;
use crate::time::EventTime;

/// Live tracked contributions up to which a part that lost some to expiry
/// is summed afresh rather than by subtraction.
const FRESH_MAX: u32 = 8;

/// Pending contributions beyond which no part is summed afresh (so that an
/// expiry's extra work stays bounded for a very busy contact).
const FRESH_SCAN: usize = 128;

/// Counts of folded, tracked contributions by part: decaying or steady.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tracked {
    pub decaying: u32,
    pub steady: u32,
}

impl Tracked {
    /// One contribution: of the decaying part if `decays`, else the steady one.
    pub fn one(decays: bool) -> Tracked {
        Tracked {
            decaying: u32::from(decays),
            steady: u32::from(!decays),
        }
    }

    /// With `self` the parts that just expired and `live` the contributions
    /// still pending: whether to sum each part (decaying, steady) afresh from
    /// what is live rather than trust the subtractions, i.e. whether it lost
    /// some and what is left of it is none, or little. Not past
    /// [`FRESH_SCAN`] pending.
    pub fn fresh(self, live: &[Contribution]) -> (bool, bool) {
        if live.len() > FRESH_SCAN {
            return (false, false); // a busy contact: bounded work per expiry
        }
        self.fresh_against(Tracked::of(live))
    }

    /// [`Tracked::fresh`], given `left`, what is live of each part.
    fn fresh_against(self, left: Tracked) -> (bool, bool) {
        let little = left.decaying + left.steady <= FRESH_MAX;
        (
            self.decaying > 0 && (left.decaying == 0 || little),
            self.steady > 0 && (left.steady == 0 || little),
        )
    }

    /// Those of `pending` (a slice of `ModelState::pending`).
    pub fn of(pending: &[Contribution]) -> Tracked {
        let mut parts = Tracked::default();
        for c in pending.iter().filter(|c| c.folded) {
            parts.count(c);
        }
        parts
    }

    fn count(&mut self, c: &Contribution) {
        if c.decays {
            self.decaying += 1;
        } else {
            self.steady += 1;
        }
    }
}

/// What is live of each part as a walk takes folded contributions' expiries
/// in their order: counted once no more than [`FRESH_SCAN`] are left, then
/// kept step by step. So an expiry step costs O(1), and a busy contact's
/// walk counts nothing.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LiveParts(Option<Tracked>);

impl LiveParts {
    /// [`Tracked::fresh`] after one contribution (decaying if `decays`)
    /// expired, with `rest` still pending.
    pub fn fresh_after(&mut self, decays: bool, rest: &[Contribution]) -> (bool, bool) {
        if rest.len() > FRESH_SCAN {
            return (false, false); // as in `Tracked::fresh`
        }
        let left = match &mut self.0 {
            Some(left) => {
                let part = if decays {
                    &mut left.decaying
                } else {
                    &mut left.steady
                };
                *part = part.saturating_sub(1);
                *left
            }
            None => *self.0.insert(Tracked::of(rest)),
        };
        Tracked::one(decays).fresh_against(left)
    }
}

/// The two parts of engagement at `now` summed afresh: the never-expiring
/// rules' sums (`untracked`, the decaying one valued at `ref_time`) plus each
/// contribution of `live` (decaying ones valued at `now`, the others at their
/// points). `curve` and the prediction walk sum them in this one order.
pub(crate) fn fresh_sums<'c>(
    live: impl Iterator<Item = &'c Contribution> + Clone,
    (untracked_decaying, untracked_steady): (f64, f64),
    ref_time: EventTime,
    now: EventTime,
    f: DecayRate,
) -> (f64, f64) {
    let untracked = f.carry(untracked_decaying, ref_time, now);
    let decaying = live
        .clone()
        .filter(|c| c.decays)
        .fold(untracked, |sum, c| sum + c.value(now, f));
    let steady = live
        .filter(|c| !c.decays)
        .fold(untracked_steady, |sum, c| sum + c.points);
    (decaying, steady)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A walk's step-by-step counts decide as a recount of what is left
    /// would, at every step, for a busy contact as for a quiet one.
    #[test]
    fn counts_kept_by_a_walk_decide_as_a_recount() {
        for n in [3, 12, FRESH_SCAN + 20] {
            let pending: Vec<Contribution> = (0..n)
                .map(|i| Contribution {
                    rule: 0,
                    t: EventTime::from_millis(i as i64),
                    points: 1.0,
                    expires: Some(EventTime::from_millis(1000 + i as i64)),
                    decays: i % 3 != 0,
                    folded: true,
                })
                .collect();
            let mut kept = LiveParts::default();
            for (taken, c) in pending.iter().enumerate() {
                let rest = &pending[taken + 1..];
                assert_eq!(
                    kept.fresh_after(c.decays, rest),
                    Tracked::one(c.decays).fresh(rest),
                    "{n} pending, step {taken}"
                );
            }
        }
    }
}
