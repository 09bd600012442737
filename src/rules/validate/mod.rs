//! Raw TOML → [`RuleSet`], collecting every error with model, rule and line.

use std::collections::HashSet;

use toml::Spanned;

mod rule;
mod shape;

use super::raw::{RawDecay, RawModel};
use super::{Decay, Model, Penalty, RuleError, RuleSet, Tier};
use crate::time::days_to_millis;

/// Parses rules text and reports every error, sorted by line: shape errors
/// (unknown keys, wrong types) and the semantic checks of what is well formed.
pub(super) fn parse(text: &str) -> Result<RuleSet, Vec<RuleError>> {
    let (raw, mut errors) = shape::shape(text);
    let Some(raw) = raw.filter(|r| errors.is_empty() || !r.model.is_empty()) else {
        return Err(errors);
    };
    let mut v = Validator {
        text,
        errors: Vec::new(),
    };
    let models = v.models(raw.model);
    if errors.is_empty() && v.errors.is_empty() {
        return Ok(RuleSet { models });
    }
    errors.append(&mut v.errors);
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    Err(errors)
}

/// The model name and rule id of the tables around a line, found by reading
/// the text (used when serde stopped before any span-carrying value existed).
fn enclosing(text: &str, line: usize) -> (Option<String>, Option<String>) {
    let (mut model, mut rule, mut in_rule) = (None, None, false);
    let value = |l: &str, key: &str| {
        let rest = l.strip_prefix(key)?.trim_start().strip_prefix('=')?.trim();
        Some(rest.trim_matches('"').to_string())
    };
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.starts_with('[') {
            if i + 1 > line {
                break;
            }
            in_rule = l.starts_with("[[model.rule]]");
            if l.starts_with("[[model]]") {
                model = None;
            }
            rule = None;
        } else if let Some(v) = value(l, "name").filter(|_| !in_rule && i < line) {
            model = Some(v);
        } else if let Some(v) = value(l, "id").filter(|_| in_rule) {
            rule = Some(v);
        }
    }
    (model, rule)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

struct Validator<'t> {
    text: &'t str,
    errors: Vec<RuleError>,
}

/// Where an error is: the model, the rule and the byte offset.
struct At<'a> {
    model: Option<&'a str>,
    rule: Option<&'a str>,
    offset: usize,
}

impl Validator<'_> {
    fn error(&mut self, at: &At, message: impl Into<String>) {
        self.errors.push(RuleError {
            line: Some(line_of(self.text, at.offset)),
            model: at.model.map(str::to_string),
            rule: at.rule.map(str::to_string),
            message: message.into(),
        });
    }

    fn models(&mut self, raw: Vec<Spanned<RawModel>>) -> Vec<Model> {
        if raw.is_empty() {
            self.errors.push(RuleError {
                line: None,
                model: None,
                rule: None,
                message: "the file defines no [[model]]".into(),
            });
        }
        let mut names = HashSet::new();
        let mut models = Vec::new();
        for spanned in raw {
            let offset = spanned.span().start;
            let m = spanned.into_inner();
            let name = m.name.get_ref().clone();
            let at = At {
                model: Some(&name),
                rule: None,
                offset: m.name.span().start,
            };
            let valid_name = !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                });
            if !valid_name {
                self.error(&at, "name must match [a-z0-9_-]+");
            }
            if !names.insert(name.clone()) {
                self.error(&at, "duplicate model name");
            }
            if let Some(model) = self.model(&name, offset, m) {
                models.push(model);
            }
        }
        models
    }

    fn model(&mut self, name: &str, offset: usize, m: RawModel) -> Option<Model> {
        let at = At {
            model: Some(name),
            rule: None,
            offset,
        };
        let decay = match &m.decay {
            None => Decay::None,
            Some(d) => self.decay(
                &At {
                    offset: d.span().start,
                    ..at
                },
                d.get_ref(),
            ),
        };
        let hysteresis = match &m.hysteresis {
            None => 0.0,
            Some(h) if *h.get_ref() >= 0.0 && h.get_ref().is_finite() => *h.get_ref(),
            Some(h) => {
                self.error(
                    &At {
                        offset: h.span().start,
                        ..at
                    },
                    "hysteresis must be a number ≥ 0",
                );
                0.0
            }
        };
        let score_range = m
            .score_range
            .as_ref()
            .and_then(|r| match r.get_ref().as_slice() {
                [lo, hi] if lo < hi => Some((*lo, *hi)),
                _ => {
                    self.error(
                        &At {
                            offset: r.span().start,
                            ..at
                        },
                        "score_range must be [low, high] with low < high",
                    );
                    None
                }
            });
        let tiers = self.tiers(&at, &m, hysteresis);
        let penalties = self.penalties(&at, &m);
        let mut ids = HashSet::new();
        let mut fit_rules = Vec::new();
        let mut engagement_rules = Vec::new();
        for spanned in m.rule {
            let offset = spanned.span().start;
            let rule = spanned.into_inner();
            let id = rule.id.get_ref().clone();
            let rat = At {
                model: Some(name),
                rule: Some(&id),
                offset,
            };
            if id.is_empty() {
                self.error(&rat, "rule id must not be empty");
            }
            if !ids.insert(id.clone()) {
                self.error(
                    &At {
                        offset: rule.id.span().start,
                        ..rat
                    },
                    "duplicate rule id",
                );
            }
            if !rule.points.is_finite() {
                self.error(&rat, "points must be a finite number");
            }
            if rule.when == "field" {
                fit_rules.extend(self.fit_rule(&rat, rule));
            } else {
                engagement_rules.extend(self.engagement_rule(&rat, rule));
            }
        }
        Some(Model {
            name: name.to_string(),
            decay,
            decay_factor: decay.rate(),
            hysteresis,
            score_range,
            tiers,
            penalties,
            fit_rules,
            engagement_rules,
        })
    }

    fn decay(&mut self, at: &At, d: &RawDecay) -> Decay {
        match (d.percent_per_day, d.half_life_days) {
            (Some(p), None) if p > 0.0 && p < 100.0 => Decay::PercentPerDay(p),
            (Some(p), None) => {
                self.error(
                    at,
                    format!("decay percent_per_day must be in (0, 100), got {p}"),
                );
                Decay::None
            }
            (None, Some(h)) if h > 0.0 && h.is_finite() => Decay::HalfLifeDays(h),
            (None, Some(h)) => {
                self.error(at, format!("decay half_life_days must be > 0, got {h}"));
                Decay::None
            }
            _ => {
                self.error(
                    at,
                    "decay takes exactly one of percent_per_day or half_life_days",
                );
                Decay::None
            }
        }
    }

    fn tiers(&mut self, at: &At, m: &RawModel, hysteresis: f64) -> Vec<Tier> {
        let mut tiers: Vec<Tier> = Vec::new();
        if m.tiers.get_ref().is_empty() {
            self.error(
                &At {
                    offset: m.tiers.span().start,
                    ..*at
                },
                "tiers must not be empty",
            );
        }
        let mut names = HashSet::new();
        for (i, spanned) in m.tiers.get_ref().iter().enumerate() {
            let tat = At {
                offset: spanned.span().start,
                ..*at
            };
            let t = spanned.get_ref();
            if t.name.is_empty() || !names.insert(t.name.as_str()) {
                self.error(&tat, format!("tier name `{}` is empty or repeated", t.name));
            }
            let min = match (i, t.min) {
                (0, None) => f64::NEG_INFINITY,
                (0, Some(min)) => {
                    self.error(
                        &tat,
                        format!("the first tier `{}` must not have a min", t.name),
                    );
                    min // still the bound the next tiers must be above
                }
                (_, None) => {
                    self.error(&tat, format!("tier `{}` needs a min", t.name));
                    f64::INFINITY
                }
                (_, Some(min)) => {
                    if let Some(prev) = tiers.last().filter(|p| p.min >= min) {
                        self.error(&tat, format!("tiers must be strictly ascending: `{}` min {min} is not above `{}`", t.name, prev.name));
                    }
                    min
                }
            };
            tiers.push(Tier::new(t.name.clone(), min, hysteresis));
        }
        tiers
    }

    fn penalties(&mut self, at: &At, m: &RawModel) -> Vec<Penalty> {
        let mut out: Vec<Penalty> = Vec::new();
        for spanned in &m.inactivity_penalties {
            let p = spanned.get_ref();
            let pat = At {
                offset: spanned.span().start,
                ..*at
            };
            if p.after_days.is_nan()
                || p.after_days <= 0.0
                || !p.after_days.is_finite()
                || !p.points.is_finite()
            {
                self.error(
                    &pat,
                    "inactivity penalty needs after_days > 0 and finite points",
                );
            } else if out.iter().any(|q| q.after_days == p.after_days) {
                self.error(
                    &pat,
                    format!(
                        "two inactivity penalties with after_days = {}",
                        p.after_days
                    ),
                );
            } else {
                out.push(Penalty {
                    after_days: p.after_days,
                    after_ms: days_to_millis(p.after_days),
                    points: p.points,
                });
            }
        }
        out.sort_by_key(|p| p.after_ms);
        out
    }
}
