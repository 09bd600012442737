//! The rules language (SPEC §3): loading, validation and the compiled form.
//!
//! `raw` mirrors the TOML file (serde, `deny_unknown_fields`, spans for line
//! numbers); `validate` turns it into a [`RuleSet`] or every error found, each
//! naming the model, the rule and the line; `field` holds the profile
//! conditions; `summary` prints what `check-rules` shows. Depends on toml,
//! serde and wildmatch only — nothing here knows about Kafka or storage.

pub mod field;
mod layout;
mod raw;
mod summary;
mod validate;

use std::fmt;
use std::path::Path;

use thiserror::Error;
use wildmatch::WildMatch;

use crate::event::{EmailAction, EventBody, EventKind};
use crate::time::EventTime;
pub use field::{FieldCondition, Norm};
pub use layout::{Layout, ModelLayout};
pub use summary::summary;

/// A compiled, validated rules file: one or more models scored side by side.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub models: Vec<Model>,
}

/// One scoring model (a `[[model]]` table).
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub decay: Decay,
    /// `decay.rate()`, computed once.
    pub decay_factor: DecayRate,
    pub hysteresis: f64,
    pub score_range: Option<(f64, f64)>,
    /// Ascending; the first tier's `min` is `-inf`.
    pub tiers: Vec<Tier>,
    /// Ascending by `after_days`.
    pub penalties: Vec<Penalty>,
    pub fit_rules: Vec<FitRule>,
    pub engagement_rules: Vec<EngagementRule>,
}

/// How engagement fades with time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decay {
    None,
    PercentPerDay(f64),
    HalfLifeDays(f64),
}

impl Decay {
    /// How fast a decaying contribution shrinks.
    pub fn rate(self) -> DecayRate {
        DecayRate(match self {
            Decay::None => 0.0,
            Decay::PercentPerDay(p) => (-p / 100.0).ln_1p(),
            Decay::HalfLifeDays(h) => -std::f64::consts::LN_2 / h,
        })
    }
}

/// The natural log of the factor `f` a decaying contribution is multiplied
/// by per day (≤ 0). Kept as a log, not as `f`: for half-lives under a
/// minute or two `f` itself underflows to 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecayRate(pub f64);

impl DecayRate {
    /// `f^days`.
    pub fn over(self, days: f64) -> f64 {
        (self.0 * days).exp()
    }

    /// A decaying `sum` valued at `from`, valued at `to` (as it is when `to`
    /// is not later, or when nothing decays).
    #[inline]
    pub fn carry(self, sum: f64, from: EventTime, to: EventTime) -> f64 {
        if sum != 0.0 && self.decays() && to > from {
            sum * self.over(to.days_since(from))
        } else {
            sum
        }
    }

    /// `ln f`.
    pub fn ln(self) -> f64 {
        self.0
    }

    /// Whether anything decays at all.
    pub fn decays(self) -> bool {
        self.0 < 0.0
    }
}

#[derive(Debug, Clone)]
pub struct Tier {
    pub name: String,
    pub min: f64,
    /// The lowest score that counts as reaching `min` ([`reach`]).
    pub up: f64,
    /// The lowest score that counts as reaching `min − hysteresis`: below
    /// it, a contact leaves this tier.
    pub down: f64,
}

impl Tier {
    pub fn new(name: String, min: f64, hysteresis: f64) -> Tier {
        Tier {
            name,
            min,
            up: reach(min),
            down: reach(min - hysteresis),
        }
    }
}

/// The lowest score that counts as reaching `edge`: the edge less a few
/// units in the last place of the sums (1e-13 points, or 2^-48 of the
/// edge's size past ~28 points). Scores are running sums, re-based as the
/// clock moves; where the spec's formula puts a score exactly on an edge
/// (points that cancel, 10 points at 10 %/day after one day against a `min`
/// of 9), they can come out that little below it, and the tier rule then
/// takes them as on it. A decay crossing is pinned to the first millisecond
/// at or past the same threshold.
pub fn reach(edge: f64) -> f64 {
    edge - (edge.abs() * TIE_RELATIVE).max(TIE_ABSOLUTE)
}

const TIE_ABSOLUTE: f64 = 1e-13;
/// 2^-48: 16 units in the last place.
const TIE_RELATIVE: f64 = 1.0 / (1u64 << 48) as f64;

#[derive(Debug, Clone)]
pub struct Penalty {
    pub after_days: f64,
    pub after_ms: i64,
    pub points: f64,
}

/// A fit rule: holds while the profile matches; never decays.
#[derive(Debug, Clone)]
pub struct FitRule {
    pub id: String,
    pub field: String,
    pub condition: FieldCondition,
    pub points: f64,
}

/// An engagement rule: scores each matching event, subject to its cap.
#[derive(Debug, Clone)]
pub struct EngagementRule {
    pub id: String,
    pub trigger: Trigger,
    pub filters: Filters,
    pub points: f64,
    pub cap: Option<Cap>,
    pub expires_after_ms: Option<i64>,
    pub decays: bool,
}

/// How many matches may score: `max_times` within a sliding window (or a lifetime).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cap {
    pub max_times: u32,
    pub window_ms: Option<i64>,
    pub per_item: bool,
}

/// The `when` of an engagement rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    PageVisit,
    EmailOpen,
    EmailClick,
    EmailUnsubscribe,
    FormSubmit,
    Purchase,
}

impl Trigger {
    /// The kind of event it can match.
    pub fn kind(self) -> EventKind {
        match self {
            Trigger::PageVisit => EventKind::PageVisit,
            Trigger::EmailOpen | Trigger::EmailClick | Trigger::EmailUnsubscribe => {
                EventKind::Email
            }
            Trigger::FormSubmit => EventKind::Form,
            Trigger::Purchase => EventKind::Purchase,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Trigger::PageVisit => "page_visit",
            Trigger::EmailOpen => "email_open",
            Trigger::EmailClick => "email_click",
            Trigger::EmailUnsubscribe => "email_unsubscribe",
            Trigger::FormSubmit => "form_submit",
            Trigger::Purchase => "purchase",
        }
    }
}

/// A case-insensitive glob: `*` any run of characters (including `/`), `?` one.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    matcher: GlobMatcher,
}

#[derive(Debug, Clone)]
enum GlobMatcher {
    /// ASCII pattern with `*` only: the literal parts between stars, lower-cased.
    Parts(Vec<Vec<u8>>),
    /// Anything else.
    Wild(WildMatch),
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        let matcher = if pattern.is_ascii() && !pattern.contains('?') {
            GlobMatcher::Parts(
                pattern
                    .split('*')
                    .map(|p| p.to_ascii_lowercase().into_bytes())
                    .collect(),
            )
        } else {
            GlobMatcher::Wild(WildMatch::new_case_insensitive(pattern))
        };
        Glob {
            pattern: pattern.to_string(),
            matcher,
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        match &self.matcher {
            GlobMatcher::Wild(w) => w.matches(text),
            GlobMatcher::Parts(parts) => parts_match(parts, text.as_bytes()),
        }
    }
}

/// `parts` are the pieces of `a*b*c`: `a` must start the text, `c` end it,
/// and the middle ones appear in order in between (leftmost match is optimal).
fn parts_match(parts: &[Vec<u8>], text: &[u8]) -> bool {
    let eq = |a: &[u8], b: &[u8]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_ascii_lowercase() == *y)
    };
    let (first, rest) = match parts.split_first() {
        Some(split) => split,
        None => return text.is_empty(),
    };
    if rest.is_empty() {
        return eq(text, first);
    }
    let last = &rest[rest.len() - 1];
    if text.len() < first.len() + last.len()
        || !eq(&text[..first.len()], first)
        || !eq(&text[text.len() - last.len()..], last)
    {
        return false;
    }
    let mut window = &text[first.len()..text.len() - last.len()];
    for part in rest[..rest.len() - 1].iter().filter(|p| !p.is_empty()) {
        match window.windows(part.len()).position(|w| eq(w, part)) {
            Some(i) => window = &window[i + part.len()..],
            None => return false,
        }
    }
    true
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// Optional event filters of an engagement rule; all must match.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub url: Option<Glob>,
    pub email_id: Option<Glob>,
    pub link_url: Option<Glob>,
    pub form_id: Option<Glob>,
    pub product_id: Option<Glob>,
    pub min_amount: Option<f64>,
}

fn glob_ok(glob: &Option<Glob>, value: Option<&str>) -> bool {
    match glob {
        None => true,
        Some(g) => value.is_some_and(|v| g.matches(v)),
    }
}

impl EngagementRule {
    /// If this rule matches the event, returns the event's item (url, email_id,
    /// form_id or product_id) — the key of a `per_item` cap.
    pub fn matches<'e>(&self, body: &'e EventBody) -> Option<&'e str> {
        let f = &self.filters;
        match (self.trigger, body) {
            (Trigger::PageVisit, EventBody::PageVisit { url, .. }) => {
                glob_ok(&f.url, Some(url)).then_some(url.as_str())
            }
            (
                Trigger::EmailOpen | Trigger::EmailClick | Trigger::EmailUnsubscribe,
                EventBody::Email {
                    email_id,
                    action,
                    link_url,
                },
            ) => {
                let wanted = match self.trigger {
                    Trigger::EmailOpen => EmailAction::Open,
                    Trigger::EmailClick => EmailAction::Click,
                    _ => EmailAction::Unsubscribe,
                };
                (*action == wanted
                    && glob_ok(&f.email_id, Some(email_id))
                    && glob_ok(&f.link_url, link_url.as_deref()))
                .then_some(email_id.as_str())
            }
            (Trigger::FormSubmit, EventBody::Form { form_id, .. }) => {
                glob_ok(&f.form_id, Some(form_id)).then_some(form_id.as_str())
            }
            (
                Trigger::Purchase,
                EventBody::Purchase {
                    product_id, amount, ..
                },
            ) => {
                let amount_ok = match f.min_amount {
                    None => true,
                    Some(min) => amount.is_some_and(|a| a >= min),
                };
                (amount_ok && glob_ok(&f.product_id, Some(product_id)))
                    .then_some(product_id.as_str())
            }
            _ => None,
        }
    }
}

/// One problem in a rules file, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub line: Option<usize>,
    pub model: Option<String>,
    pub rule: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(model) = &self.model {
            write!(f, "model `{model}`: ")?;
        }
        if let Some(rule) = &self.rule {
            write!(f, "rule `{rule}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a rules file could not be loaded.
#[derive(Debug, Error)]
pub enum RulesError {
    #[error("cannot read rules file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {}", .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(&format!("\n{path}: ")))]
    Invalid {
        path: String,
        errors: Vec<RuleError>,
    },
}

impl RuleSet {
    /// Reads and validates a rules file.
    pub fn load(path: &Path) -> Result<RuleSet, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Io {
            path: path.display().to_string(),
            source,
        })?;
        RuleSet::parse(&text).map_err(|errors| RulesError::Invalid {
            path: path.display().to_string(),
            errors,
        })
    }

    /// Parses and validates rules text; on failure returns every error found.
    pub fn parse(text: &str) -> Result<RuleSet, Vec<RuleError>> {
        validate::parse(text)
    }

    pub fn model_index(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.name == name)
    }
}

#[cfg(test)]
mod tests;
