//! Shape errors (unknown keys, wrong types, missing keys), every one of them
//! rather than serde's first: after each error the file is deserialized again
//! with the offending part left out or stood in for — an unknown key alone, a
//! mistyped value by a well-formed one where the key has a stand-in, otherwise
//! the rule, key or model that holds the error — so the semantic checks still
//! run on everything that is well formed.

use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeArray, DeTable, DeValue, Deserializer, Error};
use toml::Spanned;

use super::super::raw::RawFile;
use super::super::RuleError;
use super::{enclosing, line_of};

/// Shape errors reported before giving up: each one costs another pass.
const MAX_ERRORS: usize = 100;

/// The file's raw form with every malformed part left out (`None` if the
/// text is not TOML, or what is left cannot be read), and the shape errors.
pub(super) fn shape(text: &str) -> (Option<RawFile>, Vec<RuleError>) {
    let mut doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        // A syntax error stops here: what follows it cannot be trusted.
        Err(e) => return (None, vec![shape_error(text, None, &e)]),
    };
    let mut errors = Vec::new();
    // Model keys left out for a wrong value: (the model's start, the key).
    let mut dropped = Vec::new();
    loop {
        let e = match RawFile::deserialize(Deserializer::from(doc.clone())) {
            Ok(raw) => return (Some(raw), errors),
            Err(e) => e,
        };
        let Some(span) = e.span() else {
            errors.push(shape_error(text, None, &e));
            return (None, errors);
        };
        let message = e.message();
        let consequence = missing_field(message)
            .is_some_and(|key| dropped.iter().any(|(at, k)| *at == span.start && k == key));
        if !consequence {
            errors.push(shape_error(text, Some(doc.get_ref()), &e));
        }
        let left_out = if message.starts_with("unknown field") {
            leave_out_key(doc.get_mut(), &span)
        } else {
            leave_out_part(doc.get_mut(), &span, &mut dropped)
        };
        if !left_out || errors.len() >= MAX_ERRORS {
            return (None, errors);
        }
    }
}

/// The key a "missing field" message names.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// The error with its line, model and rule; a message about a value (a
/// wrong type) gets the name of the key holding it.
fn shape_error(text: &str, doc: Option<&DeTable<'_>>, e: &Error) -> RuleError {
    let line = e.span().map(|s| line_of(text, s.start));
    let (model, rule) = match doc.zip(e.span()) {
        Some((doc, span)) => names_at(doc, span.start),
        None => line.map(|l| enclosing(text, l)).unwrap_or_default(),
    };
    let mut message = e.message().trim().to_string();
    let key = doc
        .zip(e.span())
        .and_then(|(doc, span)| key_of(doc, span.start));
    if let Some(key) = key.filter(|_| !message.contains("field `")) {
        message = format!("`{key}`: {message}");
    }
    RuleError {
        line,
        model,
        rule,
        message,
    }
}

/// The name of the model and the id of the rule whose text holds `offset`.
fn names_at(doc: &DeTable<'_>, offset: usize) -> (Option<String>, Option<String>) {
    let Some(model) = item_holding(doc, "model", offset) else {
        return (None, None);
    };
    let rule = item_holding(model, "rule", offset);
    (text_of(model, "name"), rule.and_then(|r| text_of(r, "id")))
}

/// The table in array `key` whose text holds `offset`.
fn item_holding<'a, 'i>(
    table: &'a DeTable<'i>,
    key: &str,
    offset: usize,
) -> Option<&'a DeTable<'i>> {
    let DeValue::Array(items) = table.get(key)?.get_ref() else {
        return None;
    };
    items
        .iter()
        .find(|i| extent(i).contains(&offset))
        .and_then(|i| match i.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        })
}

fn text_of(table: &DeTable<'_>, key: &str) -> Option<String> {
    match table.get(key).map(Spanned::get_ref) {
        Some(DeValue::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// The innermost key whose value holds `offset`.
fn key_of(table: &DeTable<'_>, offset: usize) -> Option<String> {
    table.iter().find_map(|(k, v)| {
        let inner = match v.get_ref() {
            DeValue::Table(t) => key_of(t, offset),
            DeValue::Array(items) => items.iter().find_map(|item| match item.get_ref() {
                DeValue::Table(t) => key_of(t, offset),
                _ => None,
            }),
            _ => None,
        };
        inner.or_else(|| v.span().contains(&offset).then(|| k.get_ref().to_string()))
    })
}

/// Removes the key that starts where `span` does, at any depth.
fn leave_out_key(table: &mut DeTable<'_>, span: &Range<usize>) -> bool {
    let key = table.keys().find(|k| k.span().start == span.start).cloned();
    if let Some(key) = key {
        return table.remove(&key).is_some();
    }
    table.iter_mut().any(|(_, v)| match v.get_mut() {
        DeValue::Table(t) => leave_out_key(t, span),
        DeValue::Array(items) => items.iter_mut().any(|item| match item.get_mut() {
            DeValue::Table(t) => leave_out_key(t, span),
            _ => false,
        }),
        _ => false,
    })
}

/// Leaves out what holds `span`: in a rule, the malformed value if it has a
/// stand-in, else the `[[model.rule]]`; else the model's
/// key whose value holds it (noted in `dropped`, so that the "missing field"
/// this may cause is not reported again; `tiers` is replaced instead, see
/// [`stand_in_tiers`]); else the `[[model]]`.
fn leave_out_part(
    doc: &mut DeTable<'_>,
    span: &Range<usize>,
    dropped: &mut Vec<(usize, String)>,
) -> bool {
    let Some(models) = array_mut(doc, "model") else {
        return false;
    };
    for model in models.iter_mut() {
        let DeValue::Table(model) = model.get_mut() else {
            continue;
        };
        if let Some(rules) = array_mut(model, "rule") {
            if stand_in_rule_value(rules, span) || remove_holding(rules, span) {
                return true;
            }
        }
    }
    for model in models.iter_mut() {
        let start = model.span().start;
        let DeValue::Table(table) = model.get_mut() else {
            continue;
        };
        let key = table
            .iter()
            .find(|(k, v)| k.get_ref() != "rule" && extent(v).contains(&span.start))
            .map(|(k, _)| k.clone());
        if let Some(key) = key {
            match table.get_mut(&key) {
                Some(value) if key.get_ref() == "tiers" => *value = stand_in_tiers(value.span()),
                _ => {
                    table.remove(&key);
                    dropped.push((start, key.into_inner().into_owned()));
                }
            }
            return true;
        }
    }
    remove_holding(models, span)
}

/// Replaces the malformed value that holds `span` in a rule by a well-formed
/// one that passes every check (see [`rule_stand_in`]), so that the rule is
/// still checked: the key stays, and with it the checks of what may go with
/// what. `false` if the key has no stand-in.
fn stand_in_rule_value(rules: &mut DeArray<'_>, span: &Range<usize>) -> bool {
    let Some(rule) = rules.iter_mut().find(|r| extent(r).contains(&span.start)) else {
        return false;
    };
    let DeValue::Table(table) = rule.get_mut() else {
        return false;
    };
    let Some((key, value)) = table
        .iter_mut()
        .find(|(_, v)| extent(v).contains(&span.start))
    else {
        return false;
    };
    let Some(stand_in) = rule_stand_in(key.get_ref()) else {
        return false;
    };
    *value = Spanned::new(value.span(), stand_in);
    true
}

/// A value of the right type for a rule's key that no check refuses; `None`
/// for `id`, `when` and `op`, without which the rule cannot be checked.
fn rule_stand_in(key: &str) -> Option<DeValue<'static>> {
    let text = match key {
        "url" | "email_id" | "link_url" | "form_id" | "product_id" => "\"*\"",
        "field" => "\"stand-in\"",
        "points" | "min_amount" => "0",
        "max_times" | "window_days" | "expires_after_days" => "1",
        "per_item" => "false",
        "decays" => "true",
        _ => return None,
    };
    DeValue::parse(text).ok().map(Spanned::into_inner)
}

/// One tier without a `min`, in place of a malformed `tiers`: a model cannot
/// do without tiers, and left out they would take the whole model with them,
/// hiding its rules' errors and its name's. A single such tier is valid, so
/// it adds no error of its own.
fn stand_in_tiers(span: Range<usize>) -> Spanned<DeValue<'static>> {
    let mut tier = DeTable::new();
    tier.insert(
        Spanned::new(span.clone(), "name".into()),
        Spanned::new(span.clone(), DeValue::String("stand-in".into())),
    );
    let mut tiers = DeArray::new();
    tiers.push(Spanned::new(span.clone(), DeValue::Table(tier)));
    Spanned::new(span, DeValue::Array(tiers))
}

fn array_mut<'a, 'i>(table: &'a mut DeTable<'i>, key: &str) -> Option<&'a mut DeArray<'i>> {
    match table.get_mut(key).map(Spanned::get_mut) {
        Some(DeValue::Array(items)) => Some(items),
        _ => None,
    }
}

/// Removes the item whose text holds `span`'s start.
fn remove_holding(items: &mut DeArray<'_>, span: &Range<usize>) -> bool {
    let Some(at) = items.iter().position(|i| extent(i).contains(&span.start)) else {
        return false;
    };
    let mut kept = DeArray::new();
    for (n, item) in items.iter().enumerate() {
        if n != at {
            kept.push(item.clone());
        }
    }
    *items = kept;
    true
}

/// The text a value spans with everything inside it (an `[[array]]` item's
/// own span is only its header).
fn extent(value: &Spanned<DeValue<'_>>) -> Range<usize> {
    let mut all = value.span();
    let mut widen = |r: Range<usize>| {
        all.start = all.start.min(r.start);
        all.end = all.end.max(r.end);
    };
    match value.get_ref() {
        DeValue::Table(t) => t.iter().for_each(|(k, v)| {
            widen(k.span());
            widen(extent(v));
        }),
        DeValue::Array(items) => items.iter().for_each(|v| widen(extent(v))),
        _ => {}
    }
    all
}
