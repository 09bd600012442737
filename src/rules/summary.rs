//! The one-screen summary `check-rules` prints for a valid file.

use std::fmt::Write;

use super::field::format_number;
use super::{Decay, Model, RuleSet, Trigger};

/// Renders models, tiers and rules by kind.
pub fn summary(rules: &RuleSet) -> String {
    let total: usize = rules
        .models
        .iter()
        .map(|m| m.fit_rules.len() + m.engagement_rules.len())
        .sum();
    let mut out = format!("{} model(s), {} rule(s)\n", rules.models.len(), total);
    for m in &rules.models {
        model_summary(&mut out, m);
    }
    out
}

fn model_summary(out: &mut String, m: &Model) {
    let decay = match m.decay {
        Decay::None => "no decay".to_string(),
        Decay::PercentPerDay(p) => format!("decay {}%/day", format_number(p)),
        Decay::HalfLifeDays(h) => format!("decay half-life {} days", format_number(h)),
    };
    let _ = writeln!(
        out,
        "\nmodel {}: {decay}, hysteresis {}",
        m.name,
        format_number(m.hysteresis)
    );
    let tiers: Vec<String> = m
        .tiers
        .iter()
        .map(|t| {
            if t.min.is_finite() {
                format!("{} ≥ {}", t.name, format_number(t.min))
            } else {
                t.name.clone()
            }
        })
        .collect();
    let _ = writeln!(out, "  tiers: {}", tiers.join(" < "));
    if let Some((lo, hi)) = m.score_range {
        let _ = writeln!(
            out,
            "  score range: [{}, {}]",
            format_number(lo),
            format_number(hi)
        );
    }
    if !m.penalties.is_empty() {
        let steps: Vec<String> = m
            .penalties
            .iter()
            .map(|p| {
                format!(
                    "{} after {}d",
                    format_number(p.points),
                    format_number(p.after_days)
                )
            })
            .collect();
        let _ = writeln!(out, "  inactivity: {}", steps.join(", "));
    }
    if !m.fit_rules.is_empty() {
        let ids: Vec<String> = m
            .fit_rules
            .iter()
            .map(|r| {
                format!(
                    "{} ({} {}, {})",
                    r.id,
                    r.field,
                    r.condition.op_name(),
                    signed(r.points)
                )
            })
            .collect();
        let _ = writeln!(out, "  field ({}): {}", ids.len(), ids.join(", "));
    }
    for trigger in [
        Trigger::PageVisit,
        Trigger::EmailOpen,
        Trigger::EmailClick,
        Trigger::EmailUnsubscribe,
        Trigger::FormSubmit,
        Trigger::Purchase,
    ] {
        let rules: Vec<String> = m
            .engagement_rules
            .iter()
            .filter(|r| r.trigger == trigger)
            .map(|r| {
                let mut s = format!("{} ({}", r.id, signed(r.points));
                if let Some(cap) = r.cap {
                    let _ = write!(s, ", max {}", cap.max_times);
                    if let Some(w) = cap.window_ms {
                        let _ = write!(s, "/{}d", format_number(w as f64 / 86_400_000.0));
                    }
                    if cap.per_item {
                        s.push_str(" per item");
                    }
                }
                if let Some(e) = r.expires_after_ms {
                    let _ = write!(s, ", expires {}d", format_number(e as f64 / 86_400_000.0));
                }
                if !r.decays {
                    s.push_str(", no decay");
                }
                s.push(')');
                s
            })
            .collect();
        if !rules.is_empty() {
            let _ = writeln!(
                out,
                "  {} ({}): {}",
                trigger.name(),
                rules.len(),
                rules.join(", ")
            );
        }
    }
}

fn signed(points: f64) -> String {
    if points >= 0.0 {
        format!("+{}", format_number(points))
    } else {
        format_number(points)
    }
}
