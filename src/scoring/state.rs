//! Per-contact scoring state, kept small: decaying contributions are folded
//! into one running sum per rule at a common reference time; only what expiry
//! (and a contribution dated ahead of the clock) needs is kept one by one.

use super::caps::CapLedger;
use super::profile::Profile;
use crate::rules::{EngagementRule, Model};
use crate::time::EventTime;

/// Everything scoring knows about one contact.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactState {
    pub profile: Profile,
    /// Latest `occurred_at` of any event.
    pub last_activity: Option<EventTime>,
    /// One per model, in rules-file order.
    pub models: Vec<ModelState>,
}

/// A contact's standing in one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelState {
    pub tier: usize,
    /// Fit points on the current profile (recomputed when the profile changes).
    pub fit: f64,
    /// The instant `RuleAcc::decaying` values are expressed at.
    pub ref_time: EventTime,
    /// Accumulators of the rules that have matched, sorted by rule index.
    pub rules: Vec<RuleAcc>,
    /// Contributions tracked one by one: those that expire, and decaying ones
    /// dated after `ref_time` (not yet foldable).
    pub pending: Vec<Contribution>,
    /// The next tier change without new input, as last predicted.
    pub next: Option<Prediction>,
}

/// What one engagement rule has contributed.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleAcc {
    pub rule: u16,
    /// Sum of folded decaying contributions, valued at `ModelState::ref_time`.
    pub decaying: f64,
    /// Sum of contributions that neither decay nor expire.
    pub steady: f64,
    /// Scored matches, lifetime.
    pub matches: u32,
    pub cap: CapLedger,
}

/// One individually tracked contribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub rule: u16,
    pub t: EventTime,
    pub points: f64,
    pub expires: Option<EventTime>,
    pub decays: bool,
}

/// A predicted tier change (or a point to look again, when `to_tier` is None).
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub at: EventTime,
    pub to_tier: Option<usize>,
    pub cause: PredictedCause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictedCause {
    Decay,
    Expiry { rule: u16 },
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

    /// Its value at `now` under daily factor `f`.
    pub fn value(&self, now: EventTime, f: f64) -> f64 {
        if self.decays && now > self.t {
            self.points * f.powf(now.days_since(self.t))
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
            rules: Vec::new(),
            pending: Vec::new(),
            next: None,
        }
    }

    pub fn acc(&self, rule: u16) -> Option<&RuleAcc> {
        self.rules.binary_search_by_key(&rule, |a| a.rule).ok().map(|i| &self.rules[i])
    }

    fn acc_mut(&mut self, rule: u16) -> &mut RuleAcc {
        let i = match self.rules.binary_search_by_key(&rule, |a| a.rule) {
            Ok(i) => i,
            Err(i) => {
                let acc = RuleAcc { rule, decaying: 0.0, steady: 0.0, matches: 0, cap: CapLedger::default() };
                self.rules.insert(i, acc);
                i
            }
        };
        &mut self.rules[i]
    }

    /// Re-expresses decaying sums at `now`, folds pending contributions whose
    /// time has come and drops expired ones. `now` must not go backwards.
    pub fn rebase(&mut self, f: f64, now: EventTime) {
        if now <= self.ref_time {
            return;
        }
        if f < 1.0 && self.ref_time != EventTime::MIN {
            let m = f.powf(now.days_since(self.ref_time));
            for acc in &mut self.rules {
                acc.decaying *= m;
            }
        }
        self.ref_time = now;
        let mut i = 0;
        while i < self.pending.len() {
            let c = &self.pending[i];
            if !c.live(now, false) {
                self.pending.swap_remove(i);
            } else if c.expires.is_none() && c.t <= now {
                let c = self.pending.swap_remove(i);
                self.acc_mut(c.rule).decaying += c.value(now, f);
            } else {
                i += 1;
            }
        }
    }

    /// Whether `rule`'s cap lets a match at `t` score (recording it if so).
    pub fn admit(&mut self, index: u16, rule: &EngagementRule, item: &str, t: EventTime, now: EventTime, grace_ms: i64) -> bool {
        match &rule.cap {
            None => true,
            Some(cap) => self.acc_mut(index).cap.admit(cap, item, t, now, grace_ms),
        }
    }

    /// Adds a scored contribution of `rule` dated `t`; the state must be rebased to `now`.
    pub fn contribute(&mut self, index: u16, rule: &EngagementRule, f: f64, t: EventTime, now: EventTime) {
        let decays = rule.decays && f < 1.0;
        let acc = self.acc_mut(index);
        acc.matches = acc.matches.saturating_add(1);
        if let Some(ms) = rule.expires_after_ms {
            let expires = t.plus_millis(ms);
            if expires > now {
                self.pending.push(Contribution { rule: index, t, points: rule.points, expires: Some(expires), decays });
            }
        } else if !decays {
            acc.steady += rule.points;
        } else if t > now {
            self.pending.push(Contribution { rule: index, t, points: rule.points, expires: None, decays });
        } else {
            acc.decaying += rule.points * f.powf(now.days_since(t));
        }
    }
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
    model.fit_rules.iter().filter(|r| r.condition.holds(profile.get(&r.field))).map(|r| r.points).sum()
}
