//! Rules of a model: fit rules and their field conditions, engagement rules
//! with their filters and caps.

use super::{At, Validator};
use crate::rules::field::{FieldCondition, Norm};
use crate::rules::raw::RawRule;
use crate::rules::{Cap, EngagementRule, Filters, FitRule, Glob, Trigger};
use crate::time::days_to_millis;

impl Validator<'_> {
    pub(super) fn fit_rule(&mut self, at: &At, r: RawRule) -> Option<FitRule> {
        let foreign = [
            ("url", r.url.is_some()),
            ("email_id", r.email_id.is_some()),
            ("link_url", r.link_url.is_some()),
            ("form_id", r.form_id.is_some()),
            ("product_id", r.product_id.is_some()),
            ("min_amount", r.min_amount.is_some()),
            ("max_times", r.max_times.is_some()),
            ("window_days", r.window_days.is_some()),
            ("per_item", r.per_item.is_some()),
            ("expires_after_days", r.expires_after_days.is_some()),
            ("decays", r.decays.is_some()),
        ];
        for (key, present) in foreign {
            if present {
                self.error(at, format!("`{key}` does not belong to a `field` rule"));
            }
        }
        let field = match r.field {
            Some(f) if !f.is_empty() => f,
            _ => {
                self.error(at, "a `field` rule needs `field`");
                return None;
            }
        };
        let Some(op) = r.op else {
            self.error(at, "a `field` rule needs `op`");
            return None;
        };
        let condition = match field_condition(&op, r.value.as_ref()) {
            Ok(c) => c,
            Err(message) => {
                self.error(at, message);
                return None;
            }
        };
        Some(FitRule {
            id: r.id.into_inner(),
            field,
            condition,
            points: r.points,
        })
    }

    pub(super) fn engagement_rule(&mut self, at: &At, r: RawRule) -> Option<EngagementRule> {
        let trigger = match r.when.as_str() {
            "page_visit" => Trigger::PageVisit,
            "email_open" => Trigger::EmailOpen,
            "email_click" => Trigger::EmailClick,
            "email_unsubscribe" => Trigger::EmailUnsubscribe,
            "form_submit" => Trigger::FormSubmit,
            "purchase" => Trigger::Purchase,
            other => {
                self.error(at, format!("unknown `when` = \"{other}\" (field, page_visit, email_open, email_click, email_unsubscribe, form_submit, purchase)"));
                return None;
            }
        };
        for (key, present) in [
            ("field", r.field.is_some()),
            ("op", r.op.is_some()),
            ("value", r.value.is_some()),
        ] {
            if present {
                self.error(
                    at,
                    format!("`{key}` belongs to `field` rules, not `{}`", trigger.name()),
                );
            }
        }
        let email = matches!(
            trigger,
            Trigger::EmailOpen | Trigger::EmailClick | Trigger::EmailUnsubscribe
        );
        let filters = [
            ("url", &r.url, trigger == Trigger::PageVisit),
            ("email_id", &r.email_id, email),
            ("link_url", &r.link_url, trigger == Trigger::EmailClick),
            ("form_id", &r.form_id, trigger == Trigger::FormSubmit),
            ("product_id", &r.product_id, trigger == Trigger::Purchase),
        ];
        for (key, value, belongs) in filters {
            if value.is_some() && !belongs {
                self.error(
                    at,
                    format!(
                        "filter `{key}` does not apply to `{}` rules",
                        trigger.name()
                    ),
                );
            }
        }
        if let Some(min) = r.min_amount {
            if trigger != Trigger::Purchase {
                self.error(
                    at,
                    format!(
                        "filter `min_amount` does not apply to `{}` rules",
                        trigger.name()
                    ),
                );
            } else if min.is_nan() || min < 0.0 {
                self.error(at, "min_amount must be ≥ 0");
            }
        }
        let cap = self.cap(at, &r);
        let expires_after_ms = self.days(at, "expires_after_days", r.expires_after_days);
        let glob = |g: &Option<String>| g.as_deref().map(Glob::new);
        Some(EngagementRule {
            id: r.id.get_ref().clone(),
            trigger,
            filters: Filters {
                url: glob(&r.url),
                email_id: glob(&r.email_id),
                link_url: glob(&r.link_url),
                form_id: glob(&r.form_id),
                product_id: glob(&r.product_id),
                min_amount: r.min_amount,
            },
            points: r.points,
            cap,
            expires_after_ms,
            decays: r.decays.unwrap_or(true),
        })
    }

    /// A span of days given as `key`, in milliseconds; it must be positive.
    fn days(&mut self, at: &At, key: &str, days: Option<f64>) -> Option<i64> {
        match days {
            None => None,
            Some(d) if d > 0.0 && d.is_finite() => Some(days_to_millis(d)),
            Some(d) => {
                self.error(at, format!("{key} must be > 0, got {d}"));
                None
            }
        }
    }

    fn cap(&mut self, at: &At, r: &RawRule) -> Option<Cap> {
        let window_ms = self.days(at, "window_days", r.window_days);
        match r.max_times {
            None => {
                if r.window_days.is_some() {
                    self.error(at, "window_days needs max_times");
                }
                None
            }
            Some(n) if n >= 1 && n <= u32::MAX as i64 => Some(Cap {
                max_times: n as u32,
                window_ms,
                per_item: r.per_item.unwrap_or(false),
            }),
            Some(n) => {
                self.error(at, format!("max_times must be ≥ 1, got {n}"));
                None
            }
        }
    }
}

fn scalar(v: &toml::Value) -> Option<Norm> {
    match v {
        toml::Value::String(s) => Some(Norm::from_text(s)),
        toml::Value::Integer(i) => Some(Norm::Num(*i as f64)),
        toml::Value::Float(f) => Some(Norm::Num(*f)),
        toml::Value::Boolean(b) => Some(Norm::Bool(*b)),
        _ => None,
    }
}

fn strings(v: &toml::Value) -> Option<Vec<String>> {
    match v {
        toml::Value::String(s) => Some(vec![s.to_lowercase()]),
        toml::Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| i.as_str().map(str::to_lowercase))
            .collect(),
        _ => None,
    }
}

fn field_condition(op: &str, value: Option<&toml::Value>) -> Result<FieldCondition, String> {
    let need = |what: &str| format!("op `{op}` needs `value` to be {what}");
    let number = |v: Option<&toml::Value>| match v {
        Some(toml::Value::Integer(i)) => Ok(*i as f64),
        Some(toml::Value::Float(f)) if f.is_finite() => Ok(*f),
        _ => Err(need("a number")),
    };
    let list = |v: Option<&toml::Value>| match v {
        Some(toml::Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| need("an array of strings, numbers or booleans")),
        _ => Err(need("a non-empty array")),
    };
    match op {
        "eq" | "ne" => {
            let v = value.and_then(scalar).ok_or_else(|| need("a string, number or boolean"))?;
            Ok(if op == "eq" { FieldCondition::Eq(v) } else { FieldCondition::Ne(v) })
        }
        "in" => list(value).map(FieldCondition::In),
        "not_in" => list(value).map(FieldCondition::NotIn),
        "gt" => number(value).map(FieldCondition::Gt),
        "gte" => number(value).map(FieldCondition::Gte),
        "lt" => number(value).map(FieldCondition::Lt),
        "lte" => number(value).map(FieldCondition::Lte),
        "contains" | "starts_with" | "ends_with" => {
            let needles = value.and_then(strings).ok_or_else(|| need("a string or an array of strings"))?;
            Ok(match op {
                "contains" => FieldCondition::Contains(needles),
                "starts_with" => FieldCondition::StartsWith(needles),
                _ => FieldCondition::EndsWith(needles),
            })
        }
        "exists" | "missing" => match value {
            Some(_) => Err(format!("op `{op}` takes no `value`")),
            None => Ok(if op == "exists" { FieldCondition::Exists } else { FieldCondition::Missing }),
        },
        other => Err(format!(
            "unknown op `{other}` (eq, ne, in, not_in, gt, gte, lt, lte, contains, starts_with, ends_with, exists, missing)"
        )),
    }
}
