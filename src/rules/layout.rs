//! What persisted scoring state depends on in a rules file. A contact's state
//! refers to its models, their tiers and their engagement rules by position,
//! so a rules file may change points, filters, caps, thresholds and decay
//! under existing state, and add engagement rules after a model's last one,
//! but not remove, rename or reorder models, tiers or engagement rules.

use serde::{Deserialize, Serialize};

use super::RuleSet;

/// The positions state refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub models: Vec<ModelLayout>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelLayout {
    pub name: String,
    pub tiers: Vec<String>,
    /// Engagement rule ids, in file order.
    pub rules: Vec<String>,
}

impl Layout {
    pub fn of(rules: &RuleSet) -> Layout {
        Layout {
            models: rules
                .models
                .iter()
                .map(|m| ModelLayout {
                    name: m.name.clone(),
                    tiers: m.tiers.iter().map(|t| t.name.clone()).collect(),
                    rules: m.engagement_rules.iter().map(|r| r.id.clone()).collect(),
                })
                .collect(),
        }
    }

    /// Why state written under `self` would be read wrong under `new`, if it would.
    pub fn incompatibility(&self, new: &Layout) -> Option<String> {
        if names(self) != names(new) {
            return Some(format!(
                "the models were {} and are now {}",
                listed(&names(self)),
                listed(&names(new))
            ));
        }
        for (old, new) in self.models.iter().zip(&new.models) {
            if old.tiers != new.tiers {
                return Some(format!(
                    "model `{}`: the tiers were {} and are now {}",
                    old.name,
                    listed(&old.tiers),
                    listed(&new.tiers)
                ));
            }
            if let Some((n, id)) = old
                .rules
                .iter()
                .enumerate()
                .find(|(n, id)| new.rules.get(*n) != Some(*id))
            {
                return Some(format!(
                    "model `{}`: engagement rule `{id}` (number {}) was removed, renamed or \
                     moved; new rules may only follow the existing ones",
                    old.name,
                    n + 1
                ));
            }
        }
        None
    }
}

fn names(l: &Layout) -> Vec<&str> {
    l.models.iter().map(|m| m.name.as_str()).collect()
}

fn listed(items: &[impl AsRef<str>]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("`{}`", s.as_ref())).collect();
    quoted.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(models: &[(&str, &[&str], &[&str])]) -> Layout {
        let strings = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        Layout {
            models: models
                .iter()
                .map(|(name, tiers, rules)| ModelLayout {
                    name: name.to_string(),
                    tiers: strings(tiers),
                    rules: strings(rules),
                })
                .collect(),
        }
    }

    #[test]
    fn rules_may_be_added_after_the_last_and_nothing_else_may_move() {
        let old = layout(&[("a", &["cold", "hot"], &["r1", "r2"]), ("b", &["q"], &[])]);
        let fine = [
            old.clone(),
            layout(&[
                ("a", &["cold", "hot"], &["r1", "r2", "r3"]),
                ("b", &["q"], &["x"]),
            ]),
        ];
        for new in &fine {
            assert_eq!(old.incompatibility(new), None, "{new:?}");
        }
        let refused = [
            (
                layout(&[("a", &["cold", "hot"], &["r1", "r2"])]),
                "the models were `a`, `b`",
            ),
            (
                layout(&[("b", &["q"], &[]), ("a", &["cold", "hot"], &["r1", "r2"])]),
                "and are now `b`, `a`",
            ),
            (
                layout(&[
                    ("a", &["cold", "warm", "hot"], &["r1", "r2"]),
                    ("b", &["q"], &[]),
                ]),
                "model `a`: the tiers were `cold`, `hot`",
            ),
            (
                layout(&[("a", &["cold", "hot"], &["r2", "r1"]), ("b", &["q"], &[])]),
                "engagement rule `r1` (number 1) was removed",
            ),
            (
                layout(&[("a", &["cold", "hot"], &["r1"]), ("b", &["q"], &[])]),
                "engagement rule `r2` (number 2)",
            ),
        ];
        for (new, want) in refused {
            let why = old.incompatibility(&new).expect("refused");
            assert!(why.contains(want), "want `{want}` in `{why}`");
        }
    }
}
