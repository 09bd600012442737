//! What replay prefetches of a contact's state ahead of its event, and
//! only that: on a machine where each random page costs a page walk that a
//! prefetch does not hide, prefetching a part the event will not read
//! costs as much as reading it.

use crate::cache::{prefetch, prefetch_bytes};
use crate::event::EventKind;
use crate::scoring::caps::CapLedger;
use crate::scoring::{ContactState, Engine};

/// What one event reads of its contact's state.
pub struct Parts<'e> {
    kind: EventKind,
    /// The models it may change ([`Engine::may_change`]). One it cannot is
    /// read only on a contact's first event or when its predicted change is
    /// due (rare: its parts are then read without a prefetch).
    models: u64,
    /// Per model, the capped rules it matches ([`Engine::capped_matches`]).
    ledgers: &'e [u64],
}

impl<'e> Parts<'e> {
    /// What an event of `kind` reads, given the capped rules it matches.
    pub fn new(engine: &Engine, kind: EventKind, ledgers: &'e [u64]) -> Parts<'e> {
        Parts {
            kind,
            models: engine.may_change(kind),
            ledgers,
        }
    }
}

impl Parts<'_> {
    /// Whether the event reads the profile (only a form does).
    pub fn profile(&self) -> bool {
        self.kind == EventKind::Form
    }

    /// Whether the event may read model `m`'s state (past the 64th, always).
    pub fn model(&self, m: usize) -> bool {
        m >= 64 || self.models >> m & 1 == 1
    }

    /// Calls `f` with each cap ledger of `state` that the event may read.
    fn each_ledger(&self, state: &ContactState, mut f: impl FnMut(&CapLedger)) {
        for (ms, &capped) in state.models.iter().zip(self.ledgers) {
            if capped == 0 {
                continue;
            }
            for acc in ms.rules.iter() {
                let matched = acc.rule >= 64 || capped >> acc.rule & 1 == 1;
                if let Some(ledger) = acc.cap.as_deref().filter(|_| matched) {
                    f(ledger);
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
    // Inline entries are in the slot, fetched already.
    if parts.profile() && state.profile.spilled() {
        prefetch(state.profile.entries().as_ptr());
    }
    for (m, ms) in state.models.iter().enumerate() {
        if !parts.model(m) {
            continue;
        }
        if ms.pending.spilled() {
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
    use crate::event::{EmailAction, EventBody};
    use crate::rules::RuleSet;
    use crate::scoring::state::RuleAcc;

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

    fn engine() -> Engine {
        Engine::new(RuleSet::parse(RULES).unwrap(), 0)
    }

    #[test]
    fn only_a_form_reads_the_profile() {
        let engine = engine();
        for kind in EventKind::ALL {
            assert_eq!(
                Parts::new(&engine, kind, &[0, 0]).profile(),
                kind == EventKind::Form,
                "{kind:?}"
            );
        }
    }

    /// A model with inactivity penalties may change on any event; one
    /// without changes only on the kinds its rules match.
    #[test]
    fn a_model_is_read_by_the_kinds_that_may_change_it() {
        let engine = engine();
        for kind in EventKind::ALL {
            assert!(Parts::new(&engine, kind, &[0, 0]).model(0), "{kind:?}");
            assert_eq!(
                Parts::new(&engine, kind, &[0, 0]).model(1),
                kind == EventKind::Purchase,
                "{kind:?}"
            );
        }
        // Past the masks' 64 bits, everything is read.
        assert!(Parts::new(&engine, EventKind::Email, &[0, 0]).model(64));
    }

    /// Only the ledgers of the capped rules the event matches are read
    /// ("pricing" is engagement rule 0 of model "a", "open" its rule 2,
    /// "buy" rule 0 of model "b").
    #[test]
    fn only_the_ledgers_of_matched_capped_rules_are_read() {
        let rules = RuleSet::parse(RULES).unwrap();
        let engine = Engine::new(rules.clone(), 0);
        let mut state = engine.new_contact();
        for (m, r) in [(0, 0), (0, 1), (0, 2), (1, 0)] {
            let capped = rules.models[m].engagement_rules[r as usize].cap.is_some();
            state.models[m].rules.push(RuleAcc {
                rule: r,
                decaying: 0.0,
                steady: 0.0,
                matches: 1,
                cap: capped.then(Box::default),
            });
        }
        let ledger = |m: usize, k: usize| {
            let acc = &state.models[m].rules[k];
            acc.cap.as_deref().unwrap() as *const CapLedger
        };
        let read = |body: EventBody| {
            let mut masks = Vec::new();
            engine.capped_matches(&body, engine.url_matches(&body), &mut masks);
            let mut seen = Vec::new();
            let parts = Parts::new(&engine, body.kind(), &masks);
            parts.each_ledger(&state, |l| seen.push(l as *const CapLedger));
            seen
        };
        let visit = |url: &str| EventBody::PageVisit {
            url: url.into(),
            referrer: None,
            title: None,
        };
        let email = |action| EventBody::Email {
            email_id: "em-1".into(),
            action,
            link_url: None,
        };
        let purchase = EventBody::Purchase {
            product_id: "p".into(),
            amount: Some(10.0),
            currency: None,
        };
        assert_eq!(read(visit("https://x/pricing")), vec![ledger(0, 0)]);
        assert_eq!(read(visit("https://x/blog")), vec![]);
        assert_eq!(read(email(EmailAction::Open)), vec![ledger(0, 2)]);
        assert_eq!(read(email(EmailAction::Click)), vec![]);
        assert_eq!(read(purchase), vec![ledger(1, 0)]);
    }
}
