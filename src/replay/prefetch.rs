//! What replay prefetches of a contact's state ahead of its event, and
//! only that: on a machine where each random page costs a page walk that a
//! prefetch does not hide, prefetching a part the event will not read
//! costs as much as reading it.

use crate::cache::{prefetch, prefetch_bytes};
use crate::event::EventKind;
use crate::rules::RuleSet;
use crate::scoring::caps::CapLedger;
use crate::scoring::ContactState;

/// What each kind of event reads of a contact's state, by the rules, as
/// bit masks (a model or rule past the 64th is always prefetched).
#[derive(Debug, Clone)]
pub struct Reads {
    /// By [`EventKind::index`], bit `m`: whether such an event may change
    /// model `m` (a rule of that kind, fit rules and a form, or inactivity
    /// penalties). A model that cannot is left alone by the engine, unless
    /// it is the contact's first event or a predicted change is due (rare:
    /// such a model's parts are then read without a prefetch).
    models: [u64; 4],
    /// Per model, by kind, bit `r`: whether rule `r` is capped and matches
    /// that kind, so that such an event may read its cap ledger.
    ledgers: Vec<[u64; 4]>,
}

/// What one event reads (see [`Reads::of`]).
pub struct Parts<'r> {
    kind: usize,
    models: u64,
    ledgers: &'r [[u64; 4]],
}

impl Reads {
    pub fn new(rules: &RuleSet) -> Reads {
        let mut models = [0u64; 4];
        let mut ledgers = Vec::with_capacity(rules.models.len());
        for (m, model) in rules.models.iter().enumerate() {
            let mut capped = [0u64; 4];
            for kind in EventKind::ALL {
                let k = kind.index();
                let mut any_rule = false;
                for (r, rule) in model.engagement_rules.iter().enumerate() {
                    if rule.trigger.kind() == kind {
                        any_rule = true;
                        if rule.cap.is_some() {
                            capped[k] |= bit(r);
                        }
                    }
                }
                let may_change = any_rule
                    || (kind == EventKind::Form && !model.fit_rules.is_empty())
                    || !model.penalties.is_empty();
                if may_change {
                    models[k] |= bit(m);
                }
            }
            ledgers.push(capped);
        }
        Reads { models, ledgers }
    }

    pub fn of(&self, kind: EventKind) -> Parts<'_> {
        let kind = kind.index();
        Parts {
            kind,
            models: self.models[kind],
            ledgers: &self.ledgers,
        }
    }
}

/// Bit `i` of a mask; past the 64th, none (see [`test`]).
fn bit(i: usize) -> u64 {
    if i < 64 {
        1 << i
    } else {
        0
    }
}

/// Whether bit `i` of `mask` is set; true past the 64th.
fn test(mask: u64, i: usize) -> bool {
    i >= 64 || mask >> i & 1 == 1
}

impl Parts<'_> {
    /// Whether the event reads the profile (only a form does).
    pub fn profile(&self) -> bool {
        self.kind == EventKind::Form.index()
    }

    /// Whether the event may read model `m`'s state.
    pub fn model(&self, m: usize) -> bool {
        test(self.models, m)
    }

    /// Whether the event may read the cap ledger of rule `r` of model `m`.
    #[cfg(test)]
    fn ledger(&self, m: usize, r: usize) -> bool {
        self.model(m) && test(self.ledgers.get(m).map_or(u64::MAX, |k| k[self.kind]), r)
    }

    /// Calls `f` with each cap ledger of `state` that the event may read.
    fn each_ledger(&self, state: &ContactState, mut f: impl FnMut(&CapLedger)) {
        for (m, ms) in state.models.iter().enumerate() {
            if !self.model(m) {
                continue;
            }
            let capped = self.ledgers.get(m).map_or(u64::MAX, |k| k[self.kind]);
            if capped == 0 {
                continue;
            }
            for acc in ms.rules.iter() {
                if test(capped, acc.rule as usize) {
                    if let Some(ledger) = acc.cap.as_deref() {
                        f(ledger);
                    }
                }
            }
        }
    }
}

/// Prefetches what a contact's state points to (and `seen`, its spilled
/// dedupe ids), of what the event reads.
pub fn prefetch_heap(state: &ContactState, seen: Option<*const u8>, parts: &Parts) {
    if let Some(ids) = seen {
        prefetch(ids);
    }
    // An empty list's pointer is a dangling one, with no page to walk to.
    let profile = state.profile.entries();
    if parts.profile() && !profile.is_empty() {
        prefetch(profile.as_ptr());
    }
    for (m, ms) in state.models.iter().enumerate() {
        if !parts.model(m) {
            continue;
        }
        if !ms.pending.is_empty() {
            prefetch(ms.pending.as_ptr());
        }
        if ms.rules.spilled() {
            prefetch_bytes(
                ms.rules.as_ptr().cast(),
                std::mem::size_of_val(ms.rules.as_slice()),
            );
        }
    }
}

/// Prefetches what the parts fetched by [`prefetch_heap`] point to.
pub fn prefetch_deep(state: &ContactState, parts: &Parts) {
    if parts.profile() {
        state.profile.entry_parts(prefetch);
    }
    parts.each_ledger(state, |ledger| {
        prefetch_bytes(
            (ledger as *const CapLedger).cast(),
            std::mem::size_of::<CapLedger>(),
        )
    });
}

/// Prefetches the scored times of the cap ledgers fetched by [`prefetch_deep`].
pub fn prefetch_cap_times(state: &ContactState, parts: &Parts) {
    parts.each_ledger(state, |ledger| prefetch(ledger.times_ptr()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
[[model]]
name = "a"
tiers = [{ name = "cold" }, { name = "warm", min = 10 }]
inactivity_penalties = [{ after_days = 14, points = -5 }]
[[model.rule]]
id = "title"
when = "field"
field = "title"
op = "eq"
value = "ceo"
points = 5
[[model.rule]]
id = "pricing"
when = "page_visit"
url = "*/pricing*"
points = 10
max_times = 3
window_days = 7
[[model.rule]]
id = "click"
when = "email_click"
points = 4
[[model.rule]]
id = "open"
when = "email_open"
points = 1
max_times = 1
window_days = 7
per_item = true

[[model]]
name = "b"
tiers = [{ name = "quiet" }, { name = "busy", min = 10 }]
[[model.rule]]
id = "buy"
when = "purchase"
points = 15
max_times = 2
window_days = 30
"#;

    fn reads() -> Reads {
        Reads::new(&RuleSet::parse(RULES).unwrap())
    }

    #[test]
    fn only_a_form_reads_the_profile() {
        let reads = reads();
        for kind in EventKind::ALL {
            assert_eq!(
                reads.of(kind).profile(),
                kind == EventKind::Form,
                "{kind:?}"
            );
        }
    }

    /// A model with inactivity penalties may change on any event; one
    /// without changes only on the kinds its rules match.
    #[test]
    fn a_model_is_read_by_the_kinds_that_may_change_it() {
        let reads = reads();
        for kind in EventKind::ALL {
            assert!(reads.of(kind).model(0), "{kind:?}");
            assert_eq!(
                reads.of(kind).model(1),
                kind == EventKind::Purchase,
                "{kind:?}"
            );
        }
        // Past the masks' 64 bits, everything is read.
        assert!(reads.of(EventKind::Email).model(64));
    }

    /// Engagement rules are numbered apart from fit rules: "pricing" is 0.
    #[test]
    fn a_ledger_is_read_by_its_rules_kind_only() {
        let reads = reads();
        let (page, email) = (reads.of(EventKind::PageVisit), reads.of(EventKind::Email));
        assert!(page.ledger(0, 0));
        assert!(!email.ledger(0, 0));
        // "click" is not capped; "open" is, and matches email events.
        assert!(!email.ledger(0, 1));
        assert!(email.ledger(0, 2));
        assert!(!page.ledger(0, 2));
        assert!(reads.of(EventKind::Purchase).ledger(1, 0));
        assert!(!reads.of(EventKind::Form).ledger(1, 0));
    }
}
