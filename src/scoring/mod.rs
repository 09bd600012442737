//! PURE scoring: state + event (or timer) + `now` → new state and effects.
//!
//! No clock, no I/O: callers pass `now` and apply the returned [`Effects`]
//! (tier changes to publish, timers to set or clear) themselves. Must not
//! import tokio, rdkafka, rocksdb or prometheus.

pub mod caps;
pub mod explain;
mod fresh;
mod predict;
pub mod profile;
mod score;
pub mod state;
mod urls;

pub use explain::{explain, ContactView};
pub use predict::{predict, stays_lowest};
pub use score::{components, transition, Components, Edge};
pub use state::{ContactState, ModelState, PredictedCause, Prediction};

use crate::event::output::{Cause, Published};
use crate::event::{Event, EventBody, EventKind};
use crate::rules::RuleSet;
use crate::time::EventTime;
use smallvec::SmallVec;

/// A tier change, as the engine reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TierChange {
    pub model: usize,
    pub from: usize,
    pub to: usize,
    pub score: f64,
    pub previous_score: f64,
    pub at: EventTime,
    pub cause: Cause,
}

/// The timer of `(contact, model)` must now be due at `due` (or cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerUpdate {
    pub model: usize,
    pub due: Option<EventTime>,
}

/// What one step of scoring asks the caller to do.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    pub changes: Vec<TierChange>,
    pub timers: Vec<TimerUpdate>,
}

impl Effects {
    pub fn clear(&mut self) {
        self.changes.clear();
        self.timers.clear();
    }
}

/// Bit `k` set when numbered URL glob `k` matches an event's URL, as
/// [`Engine::url_matches`] works it out. Only the engine fills one in; the
/// default (nothing worked out) leaves each rule to match the URL itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UrlMatches(Option<u64>);

/// The scoring engine: the compiled rules plus the few knobs scoring needs.
#[derive(Debug, Clone)]
pub struct Engine {
    rules: RuleSet,
    /// Per model and event kind (as in `EventKind::ALL`): the engagement
    /// rules that can match, in file order.
    by_kind: Vec<[Vec<usize>; 4]>,
    /// The same, of capped rules only.
    capped_by_kind: Vec<[Vec<usize>; 4]>,
    /// By event kind, bit `m`: whether such an event may change model `m`
    /// (see [`Engine::may_change`]).
    changeable: [u64; 4],
    urls: urls::UrlGlobs,
    /// How late an event may be for windowed caps to stay exact.
    late_grace_ms: i64,
}

impl Engine {
    pub fn new(rules: RuleSet, late_grace_ms: i64) -> Engine {
        let by_kind: Vec<[Vec<usize>; 4]> = rules
            .models
            .iter()
            .map(|model| {
                EventKind::ALL.map(|kind| {
                    let rules = model.engagement_rules.iter().enumerate();
                    rules
                        .filter(|(_, rule)| rule.trigger.kind() == kind)
                        .map(|(r, _)| r)
                        .collect()
                })
            })
            .collect();
        let capped_by_kind = by_kind
            .iter()
            .zip(&rules.models)
            .map(|(kinds, model)| {
                kinds.clone().map(|rules| {
                    let capped = |r: &usize| model.engagement_rules[*r].cap.is_some();
                    rules.into_iter().filter(capped).collect()
                })
            })
            .collect();
        let mut changeable = [0u64; 4];
        for (m, (kinds, model)) in by_kind.iter().zip(&rules.models).enumerate().take(64) {
            for kind in EventKind::ALL {
                let k = kind.index();
                if !kinds[k].is_empty()
                    || (kind == EventKind::Form && !model.fit_rules.is_empty())
                    || !model.penalties.is_empty()
                {
                    changeable[k] |= 1 << m;
                }
            }
        }
        Engine {
            by_kind,
            capped_by_kind,
            changeable,
            urls: urls::UrlGlobs::new(&rules),
            rules,
            late_grace_ms,
        }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The state of a contact never seen before (a `missing` rule already holds).
    pub fn new_contact(&self) -> ContactState {
        let empty = profile::Profile::default();
        ContactState::new(self.rules.models.iter().map(|m| state::fit_of(m, &empty)))
    }

    /// Score components of one model at `now`.
    pub fn components(&self, contact: &ContactState, model: usize, now: EventTime) -> Components {
        components(
            &self.rules.models[model],
            &contact.models[model],
            contact.last_activity,
            now,
            Edge::At,
        )
    }

    /// Applies one event at clock time `now` (≥ every earlier `now` for this contact).
    pub fn apply_event(
        &self,
        contact: &mut ContactState,
        event: &Event,
        topic: &str,
        now: EventTime,
        fx: &mut Effects,
    ) {
        let urls = self.url_matches(&event.body);
        self.apply_matched(contact, event, urls, topic, now, fx)
    }

    /// Which of the rules' URL globs an event matches: worked out once for
    /// a caller that needs it before [`Engine::apply_matched`] too.
    pub fn url_matches(&self, body: &EventBody) -> UrlMatches {
        UrlMatches(match body {
            EventBody::PageVisit { url, .. } => self.urls.matching(url),
            _ => None,
        })
    }

    /// [`Engine::apply_event`], given the event's [`Engine::url_matches`].
    pub fn apply_matched(
        &self,
        contact: &mut ContactState,
        event: &Event,
        urls: UrlMatches,
        topic: &str,
        now: EventTime,
        fx: &mut Effects,
    ) {
        let t = event.occurred_at;
        let kind = event.body.kind().index();
        let urls = urls.0;
        // Models the event cannot change are left as they are: no rule of
        // theirs matches, their fit cannot move (not a form, or no fit
        // rules), neither can their penalty (none, or the event is not the
        // contact's latest), and no predicted change of theirs is due (its
        // timer not fired yet). Their tier is then the one their score gives,
        // so they need no rebasing and no scoring. A contact's first event
        // is always scored: its tier is not settled yet.
        let is_form = matches!(event.body, EventBody::Form { .. });
        let activity_moves = contact.last_activity.is_none_or(|la| t > la);
        let first = contact.last_activity.is_none();
        // Bit `m` set: model `m` is quiet (only the first 64 models can be).
        let mut quiet = 0u64;
        for (m, model) in self.rules.models.iter().enumerate().take(64) {
            let due = contact.models[m].next.as_ref().is_some_and(|p| p.at <= now);
            let can_change = first
                || due
                || (is_form && !model.fit_rules.is_empty())
                || (activity_moves && !model.penalties.is_empty())
                || self.by_kind[m][kind]
                    .iter()
                    .any(|&r| self.rule_item(m, r, &event.body, urls).is_some());
            debug_assert!(
                !can_change || first || due || self.changeable[kind] >> m & 1 == 1,
                "may_change must cover every model an event can change"
            );
            quiet |= u64::from(!can_change) << m;
        }
        let is_quiet = |m: usize| m < 64 && quiet >> m & 1 == 1;
        // Rebasing leaves scores unchanged; done first, the scores before the
        // event need no further decay arithmetic.
        for (m, (ms, model)) in contact
            .models
            .iter_mut()
            .zip(&self.rules.models)
            .enumerate()
        {
            if !is_quiet(m) {
                ms.rebase(model, now);
            }
        }
        // Each model's score and fit before the event (of those it can change).
        let mut before: SmallVec<[(f64, f64); 4]> = SmallVec::new();
        for (m, (ms, model)) in contact.models.iter().zip(&self.rules.models).enumerate() {
            let score = if is_quiet(m) {
                f64::NAN
            } else {
                components(model, ms, contact.last_activity, now, Edge::At).score
            };
            before.push((score, ms.fit));
        }
        let last_activity = contact.last_activity;
        if let EventBody::Form { fields, .. } = &event.body {
            if contact.profile.apply(fields, t) {
                for (model, ms) in self.rules.models.iter().zip(&mut contact.models) {
                    ms.fit = state::fit_of(model, &contact.profile);
                }
            }
        }
        contact.last_activity = Some(contact.last_activity.map_or(t, |la| la.max(t)));
        for (m, model) in self.rules.models.iter().enumerate() {
            if is_quiet(m) {
                debug_assert_eq!(
                    transition(
                        model,
                        contact.models[m].tier as usize,
                        components(model, &contact.models[m], last_activity, now, Edge::At).score
                    ),
                    None,
                    "a quiet model's tier is settled"
                );
                continue;
            }
            let f = model.decay_factor;
            let ms = &mut contact.models[m];
            let mut scored = false;
            for &r in &self.by_kind[m][kind] {
                let rule = &model.engagement_rules[r];
                let Some(item) = self.rule_item(m, r, &event.body, urls) else {
                    continue;
                };
                let index = r as u16;
                if ms.admit(index, rule, item, t, now, self.late_grace_ms) {
                    ms.contribute(index, rule, f, t, now);
                    scored = true;
                }
            }
            // Nothing a score depends on changed (rebasing changes how the
            // state is written, not what it is): the score is the one before.
            let untouched = !scored
                && ms.fit.to_bits() == before[m].1.to_bits()
                && (model.penalties.is_empty() || contact.last_activity == last_activity);
            let after = if untouched {
                before[m].0
            } else {
                components(model, ms, contact.last_activity, now, Edge::At).score
            };
            let moved = transition(model, ms.tier as usize, after);
            if let Some(to) = moved {
                fx.changes.push(TierChange {
                    model: m,
                    from: ms.tier as usize,
                    to,
                    score: after,
                    previous_score: before[m].0,
                    at: now,
                    cause: Cause::Event {
                        topic: topic.into(),
                        event_id: event.id.0.clone(),
                    },
                });
                ms.tier = to as u32;
            }
            // Nor does the prediction: it still holds.
            let still_predicted =
                untouched && moved.is_none() && ms.next.as_ref().is_none_or(|p| p.at > now);
            if !still_predicted {
                self.repredict(contact, m, now, fx);
            }
        }
    }

    /// If rule `r` of model `m` matches `body`, the event's item (see
    /// `EngagementRule::matches`); a URL glob's answer is taken from `urls`,
    /// the event's [`urls::UrlGlobs::matching`] mask.
    fn rule_item<'e>(
        &self,
        m: usize,
        r: usize,
        body: &'e EventBody,
        urls: Option<u64>,
    ) -> Option<&'e str> {
        match (urls, self.urls.bit(m, r), body) {
            (Some(mask), Some(k), EventBody::PageVisit { url, .. }) => {
                (mask >> k & 1 == 1).then_some(url.as_str())
            }
            _ => self.rules.models[m].engagement_rules[r].matches(body),
        }
    }

    /// Bit `m` set when an event of `kind` may change model `m`: it has a
    /// rule of that kind, fit rules and the event is a form, or inactivity
    /// penalties. Every other model of the first 64 is left alone by
    /// [`Engine::apply_matched`], unless it is the contact's first event or
    /// the model's predicted change is due. Replay prefetches by it.
    pub fn may_change(&self, kind: EventKind) -> u64 {
        self.changeable[kind.index()]
    }

    /// Appends to `out`, per model, a mask with bit `r` set for each capped
    /// engagement rule `r` that `body` matches (past the 64th rule, all
    /// bits): the cap ledgers that applying the event may read. Replay
    /// prefetches by it.
    pub fn capped_matches(&self, body: &EventBody, urls: UrlMatches, out: &mut Vec<u64>) {
        let kind = body.kind().index();
        for (m, kinds) in self.capped_by_kind.iter().enumerate() {
            let mut mask = 0;
            for &r in &kinds[kind] {
                if self.rule_item(m, r, body, urls.0).is_some() {
                    mask |= 1u64.checked_shl(r as u32).unwrap_or(u64::MAX);
                }
            }
            out.push(mask);
        }
    }

    /// Fires the timer of `model` due at `at`: applies the predicted change
    /// (if still current) and predicts the next one.
    pub fn fire(&self, contact: &mut ContactState, m: usize, at: EventTime, fx: &mut Effects) {
        let model = &self.rules.models[m];
        let la = contact.last_activity;
        let ms = &mut contact.models[m];
        let Some(p) = ms.next.clone().filter(|p| p.at == at) else {
            return; // stale: the state changed since this timer was set
        };
        if let Some(to) = p.to_tier {
            let score = components(model, ms, la, at, Edge::At).score;
            let previous_score = components(model, ms, la, at, Edge::Before).score;
            let cause = match p.cause {
                PredictedCause::Decay | PredictedCause::Recheck => Cause::Decay,
                PredictedCause::Inactivity => Cause::Inactivity,
                PredictedCause::Expiry { rule } => Cause::Expiry {
                    rule: model.engagement_rules[rule as usize].id.as_str().into(),
                },
            };
            fx.changes.push(TierChange {
                model: m,
                from: ms.tier as usize,
                to: to as usize,
                score,
                previous_score,
                at,
                cause,
            });
            ms.tier = to;
        }
        ms.next = None;
        self.repredict(contact, m, at, fx);
    }

    fn repredict(&self, contact: &mut ContactState, m: usize, now: EventTime, fx: &mut Effects) {
        let (model, ms) = (&self.rules.models[m], &mut contact.models[m]);
        // Most contacts sit in the lowest tier with a score that can only
        // fall: no walk needed to know that nothing will change.
        let next = if stays_lowest(model, ms, now) {
            debug_assert_eq!(predict(model, ms, contact.last_activity, now), None);
            None
        } else {
            predict(model, ms, contact.last_activity, now)
        };
        if next.as_ref().map(|p| p.at) != ms.next.as_ref().map(|p| p.at) {
            fx.timers.push(TimerUpdate {
                model: m,
                due: next.as_ref().map(|p| p.at),
            });
        }
        ms.next = next;
    }

    /// The output event of a change of `contact`, with the names the rules
    /// give its model and tiers; the caller writes it
    /// ([`Published::write_json`]).
    pub fn published<'a>(&'a self, contact: &'a str, change: &'a TierChange) -> Published<'a> {
        let model = &self.rules.models[change.model];
        Published {
            contact,
            model: &model.name,
            from: &model.tiers[change.from].name,
            to: &model.tiers[change.to].name,
            up: change.to > change.from,
            score: change.score,
            previous_score: change.previous_score,
            at: change.at,
            cause: &change.cause,
        }
    }
}
