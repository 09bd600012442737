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
    /// With `self` the parts that just expired and `live` the contributions
    /// still pending: whether to sum each part (decaying, steady) afresh from
    /// what is live rather than trust the subtractions, i.e. whether it lost
    /// some and what is left of it is none, or little. Not past
    /// [`FRESH_SCAN`] pending.
    pub fn fresh(self, live: &[Contribution]) -> (bool, bool) {
        // Counted no further than the bound: past it the counts go unused.
        let left = Tracked::of(&live[..live.len().min(FRESH_SCAN)]);
        self.fresh_given(left, live.len())
    }

    /// [`Tracked::fresh`], given what is live already counted: `left` of
    /// `pending` contributions still pending.
    pub fn fresh_given(self, left: Tracked, pending: usize) -> (bool, bool) {
        if pending > FRESH_SCAN {
            return (false, false); // a busy contact: bounded work per expiry
        }
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

    /// Takes one contribution of the decaying part (`decays`) or the steady
    /// one out of the counts.
    pub fn take(&mut self, decays: bool) {
        let part = if decays {
            &mut self.decaying
        } else {
            &mut self.steady
        };
        *part = part.saturating_sub(1);
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
