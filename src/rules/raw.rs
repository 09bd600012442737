//! The rules file exactly as written: serde structs with spans for line numbers.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub model: Vec<Spanned<RawModel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModel {
    pub name: Spanned<String>,
    pub decay: Option<Spanned<RawDecay>>,
    pub hysteresis: Option<Spanned<f64>>,
    pub score_range: Option<Spanned<Vec<f64>>>,
    pub tiers: Spanned<Vec<Spanned<RawTier>>>,
    #[serde(default)]
    pub inactivity_penalties: Vec<Spanned<RawPenalty>>,
    #[serde(default)]
    pub rule: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDecay {
    pub percent_per_day: Option<f64>,
    pub half_life_days: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTier {
    pub name: String,
    pub min: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPenalty {
    pub after_days: f64,
    pub points: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub id: Spanned<String>,
    pub when: String,
    pub points: f64,
    // fit rules
    pub field: Option<String>,
    pub op: Option<String>,
    pub value: Option<toml::Value>,
    // engagement filters
    pub url: Option<String>,
    pub email_id: Option<String>,
    pub link_url: Option<String>,
    pub form_id: Option<String>,
    pub product_id: Option<String>,
    pub min_amount: Option<f64>,
    // engagement options
    pub max_times: Option<i64>,
    pub window_days: Option<f64>,
    pub per_item: Option<bool>,
    pub expires_after_days: Option<f64>,
    pub decays: Option<bool>,
}
