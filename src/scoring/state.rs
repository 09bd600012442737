//! Per-contact scoring state, kept small: contributions are folded into
//! running sums per rule (decaying ones valued at a common reference time).
//! What expiry needs is also kept one by one, in expiry order, so that an
//! expiring contribution can be taken out of its sum when its time comes;
//! a contribution dated ahead of the clock stays out of the sums until then.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::caps::CapLedger;
use super::fresh::Tracked;
use super::profile::Profile;
use crate::rules::{DecayRate, EngagementRule, Model};
use crate::time::EventTime;

/// Everything scoring knows about one contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactState {
    pub profile: Profile,
    /// Latest `occurred_at` of any event.
    pub last_activity: Option<EventTime>,
    /// One per model, in rules-file order (inline for up to two).
    pub models: SmallVec<[ModelState; 2]>,
}

/// A contact's standing in one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelState {
    /// Index of the current tier (postcard stores it as the same varint as
    /// a `usize`).
    pub tier: u32,
    /// Fit points on the current profile (recomputed when the profile changes).
    pub fit: f64,
    /// The instant `RuleAcc::decaying` values are expressed at.
    pub ref_time: EventTime,
    /// Σ `RuleAcc::decaying`, kept alongside so a score costs O(1).
    pub decaying_total: f64,
    /// Σ `RuleAcc::steady`.
    pub steady_total: f64,
    /// Accumulators of the rules that have matched, sorted by rule index
    /// (inline for up to five: one cache-friendly block per model; with
    /// four, half the benchmark's contacts spilled their first model's).
    pub rules: SmallVec<[RuleAcc; 5]>,
    /// Contributions tracked one by one, in expiry order (non-expiring last):
    /// those that expire, and those dated after `ref_time`. Most contacts
    /// hold none to two: inline, they cost no heap part of their own.
    pub pending: SmallVec<[Contribution; 2]>,
    /// How many of `pending` are not folded into the sums.
    pub unfolded: u32,
    /// The next tier change without new input, as last predicted.
    pub next: Option<Prediction>,
}

/// What one engagement rule has contributed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleAcc {
    pub rule: u16,
    /// Sum of folded decaying contributions, valued at `ModelState::ref_time`.
    pub decaying: f64,
    /// Sum of folded contributions that do not decay.
    pub steady: f64,
    /// Scored matches, lifetime.
    pub matches: u32,
    /// Scored match times, for capped rules only.
    pub cap: Option<Box<CapLedger>>,
}

/// One individually tracked contribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub rule: u16,
    pub t: EventTime,
    pub points: f64,
    pub expires: Option<EventTime>,
    pub decays: bool,
    /// Whether it is counted in its rule's running sum.
    pub folded: bool,
}

/// A predicted tier change (or a point to look again, when `to_tier` is None).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub at: EventTime,
    pub to_tier: Option<u32>,
    pub cause: PredictedCause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PredictedCause {
    Decay,
    Expiry {
        rule: u16,
    },
    Inactivity,
    /// Too many breakpoints to scan at once: re-predict from here.
    Recheck,
}

impl Contribution {
    /// Whether it still counts at `now`; `before` asks about the instant just before.
    pub fn live(&self, now: EventTime, before: bool) -> bool {
        match self.expires {
            None => true,
            Some(e) if before => now <= e,
            Some(e) => now < e,
        }
    }

    /// Whether it has expired at `now` (`before`: just before `now`).
    pub fn expired(&self, now: EventTime, before: bool) -> bool {
        !self.live(now, before)
    }

    /// Its value at `now` under daily factor `f`.
    pub fn value(&self, now: EventTime, f: DecayRate) -> f64 {
        if self.decays && now > self.t {
            self.points * f.over(now.days_since(self.t))
        } else {
            self.points
        }
    }
}

impl ModelState {
    pub fn new(fit: f64) -> ModelState {
        ModelState {
            tier: 0,
            fit,
            ref_time: EventTime::MIN,
            decaying_total: 0.0,
            steady_total: 0.0,
            rules: SmallVec::new(),
            pending: SmallVec::new(),
            unfolded: 0,
            next: None,
        }
    }

    pub fn acc(&self, rule: u16) -> Option<&RuleAcc> {
        self.rules
            .binary_search_by_key(&rule, |a| a.rule)
            .ok()
            .map(|i| &self.rules[i])
    }

    fn acc_mut(&mut self, rule: u16) -> &mut RuleAcc {
        let i = match self.rules.binary_search_by_key(&rule, |a| a.rule) {
            Ok(i) => i,
            Err(i) => {
                let acc = RuleAcc {
                    rule,
                    decaying: 0.0,
                    steady: 0.0,
                    matches: 0,
                    cap: None,
                };
                self.rules.insert(i, acc);
                i
            }
        };
        &mut self.rules[i]
    }

    /// Re-expresses decaying sums at `now`, takes expired contributions out
    /// of their sums and folds in those whose time has come. `now` must not
    /// go backwards.
    pub fn rebase(&mut self, model: &Model, now: EventTime) {
        let f = model.decay_factor;
        if now <= self.ref_time {
            return;
        }
        if f.decays() && self.ref_time != EventTime::MIN {
            let m = f.over(now.days_since(self.ref_time));
            for acc in &mut self.rules {
                acc.decaying *= m;
            }
            self.decaying_total *= m;
        }
        self.ref_time = now;
        let expired = self.pending.partition_point(|c| c.expired(now, false));
        if expired > 0 {
            self.take_expired(model, expired);
        }
        if self.unfolded > 0 {
            for i in 0..self.pending.len() {
                let c = &mut self.pending[i];
                if c.folded || c.t > now {
                    continue;
                }
                c.folded = true;
                let c = *c;
                self.unfolded -= 1;
                self.fold_value(&c, f, now);
            }
            self.pending.retain(|c| !(c.folded && c.expires.is_none()));
        }
    }

    /// Takes the first `expired` of `pending` (rebased to `ref_time`) out
    /// of their sums. A part (decaying or not) that lost some is then summed
    /// afresh from what is live when that is little (see [`Tracked::fresh`]):
    /// no rounding residue of the subtractions is left to tip a score that
    /// sits exactly on a tier's minimum.
    fn take_expired(&mut self, model: &Model, expired: usize) {
        let (f, now) = (model.decay_factor, self.ref_time);
        for i in 0..expired {
            let c = self.pending[i];
            if c.folded {
                self.unfold_value(&c, f, now);
            } else {
                self.unfolded -= 1;
            }
        }
        let gone = Tracked::of(&self.pending[..expired]);
        self.pending.drain(..expired);
        let (decaying, steady) = gone.fresh(&self.pending);
        if !decaying && !steady {
            return;
        }
        for acc in self.rules.iter_mut().filter(|acc| expires(model, acc.rule)) {
            if decaying {
                acc.decaying = 0.0;
            }
            if steady {
                acc.steady = 0.0;
            }
        }
        let (untracked_decaying, untracked_steady) = self.untracked(model);
        if decaying {
            self.decaying_total = untracked_decaying;
        }
        if steady {
            self.steady_total = untracked_steady;
        }
        for i in 0..self.pending.len() {
            let c = self.pending[i];
            if c.folded && (if c.decays { decaying } else { steady }) {
                self.fold_value(&c, f, now);
            }
        }
    }

    /// The decaying sum (valued at `ref_time`) and the steady sum of the
    /// rules whose contributions never expire: what is left of engagement
    /// once every tracked contribution has expired.
    pub fn untracked(&self, model: &Model) -> (f64, f64) {
        self.rules
            .iter()
            .filter(|acc| !expires(model, acc.rule))
            .fold((0.0, 0.0), |(d, s), acc| (d + acc.decaying, s + acc.steady))
    }

    fn fold_value(&mut self, c: &Contribution, f: DecayRate, now: EventTime) {
        self.add_value(c, f, now, 1.0);
    }

    fn unfold_value(&mut self, c: &Contribution, f: DecayRate, now: EventTime) {
        self.add_value(c, f, now, -1.0);
    }

    fn add_value(&mut self, c: &Contribution, f: DecayRate, now: EventTime, sign: f64) {
        let value = sign * if c.decays { c.value(now, f) } else { c.points };
        let acc = self.acc_mut(c.rule);
        if c.decays {
            acc.decaying += value;
            self.decaying_total += value;
        } else {
            acc.steady += value;
            self.steady_total += value;
        }
    }

    /// Whether `rule`'s cap lets a match at `t` score (recording it if so).
    pub fn admit(
        &mut self,
        index: u16,
        rule: &EngagementRule,
        item: &str,
        t: EventTime,
        now: EventTime,
        grace_ms: i64,
    ) -> bool {
        match &rule.cap {
            None => true,
            Some(cap) => {
                let ledger = self.acc_mut(index).cap.get_or_insert_with(Default::default);
                ledger.admit(cap, item, t, now, grace_ms)
            }
        }
    }

    /// Adds a scored contribution of `rule` dated `t`; the state must be rebased to `now`.
    pub fn contribute(
        &mut self,
        index: u16,
        rule: &EngagementRule,
        f: DecayRate,
        t: EventTime,
        now: EventTime,
    ) {
        let decays = rule.decays && f.decays();
        let acc = self.acc_mut(index);
        acc.matches = acc.matches.saturating_add(1);
        let expires = rule.expires_after_ms.map(|ms| t.plus_millis(ms));
        if expires.is_some_and(|e| e <= now) {
            return; // scored (it counts against the cap) but already expired
        }
        let c = Contribution {
            rule: index,
            t,
            points: rule.points,
            expires,
            decays,
            folded: t <= now,
        };
        if c.folded {
            self.fold_value(&c, f, now);
        } else {
            self.unfolded += 1;
        }
        if c.expires.is_some() || !c.folded {
            self.add_pending(c);
        }
    }
}

impl ModelState {
    /// Inserts keeping `pending` in expiry order (non-expiring last).
    fn add_pending(&mut self, c: Contribution) {
        let key = |c: &Contribution| c.expires.unwrap_or(EventTime::MAX);
        let at = self.pending.partition_point(|p| key(p) <= key(&c));
        self.pending.insert(at, c);
    }
}

/// Whether rule `rule` of `model` has contributions that expire (then every
/// one of them is tracked in `pending` until it does).
fn expires(model: &Model, rule: u16) -> bool {
    model
        .engagement_rules
        .get(rule as usize)
        .is_some_and(|r| r.expires_after_ms.is_some())
}

impl ContactState {
    pub fn new(rules_fit: impl Iterator<Item = f64>) -> ContactState {
        ContactState {
            profile: Profile::default(),
            last_activity: None,
            models: rules_fit.map(ModelState::new).collect(),
        }
    }
}

/// Fit points of `model` on `profile`.
pub fn fit_of(model: &Model, profile: &Profile) -> f64 {
    model
        .fit_rules
        .iter()
        .filter(|r| r.condition.holds(profile.get(&r.field)))
        .map(|r| r.points)
        .sum()
}
