//! Field conditions of fit rules and the comparison semantics of SPEC §3:
//! strings compare case-insensitively, numbers given as strings compare as
//! numbers, `"true"`/`"false"` in any case as booleans, and an absent field
//! (never set, cleared by `null`, or `""`) matches only `missing`.

use std::borrow::Cow;

use compact_str::CompactString;

use crate::event::FieldValue;

/// A value reduced to what comparisons see.
#[derive(Debug, Clone, PartialEq)]
pub enum Norm {
    Num(f64),
    Bool(bool),
    /// Lower-cased text (inline up to 24 bytes).
    Text(CompactString),
}

impl Norm {
    pub fn from_text(text: &str) -> Norm {
        let trimmed = text.trim();
        // A finite number starts with a digit, a sign or a point (`inf` and
        // `nan` parse, but not as finite): other text skips the parse.
        let may_be_number = trimmed
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.'));
        if may_be_number {
            if let Ok(n) = trimmed.parse::<f64>() {
                if n.is_finite() {
                    return Norm::Num(n);
                }
            }
        }
        if trimmed.eq_ignore_ascii_case("true") {
            Norm::Bool(true)
        } else if trimmed.eq_ignore_ascii_case("false") {
            Norm::Bool(false)
        } else {
            Norm::Text(lowercase(text))
        }
    }

    fn same(&self, other: &Norm) -> bool {
        match (self, other) {
            (Norm::Num(a), Norm::Num(b)) => a == b,
            (Norm::Bool(a), Norm::Bool(b)) => a == b,
            (Norm::Text(a), Norm::Text(b)) => a == b,
            _ => false,
        }
    }
}

/// `text` lower-cased; ASCII (the common case) in place, without a detour
/// through a `String`.
fn lowercase(text: &str) -> CompactString {
    if text.is_ascii() {
        let mut s = CompactString::new(text);
        s.as_mut_str().make_ascii_lowercase();
        s
    } else {
        text.to_lowercase().into()
    }
}

/// A present profile value together with its normalized form. Stored as the
/// raw value only; the normalized form is derived again when read.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(into = "FieldValue", try_from = "FieldValue")]
pub struct ProfileValue {
    pub raw: FieldValue,
    pub norm: Norm,
}

impl ProfileValue {
    /// Whether `raw` makes a field absent: `null` and `""`.
    pub fn is_absent(raw: &FieldValue) -> bool {
        match raw {
            FieldValue::Null => true,
            FieldValue::Text(s) => s.is_empty(),
            _ => false,
        }
    }

    /// `None` for values that make a field absent: `null` and `""`.
    pub fn new(raw: FieldValue) -> Option<ProfileValue> {
        let norm = match &raw {
            FieldValue::Null => return None,
            FieldValue::Text(s) if s.is_empty() => return None,
            FieldValue::Text(s) => Norm::from_text(s),
            FieldValue::Number(n) => Norm::Num(*n),
            FieldValue::Bool(b) => Norm::Bool(*b),
        };
        Some(ProfileValue { raw, norm })
    }

    /// The value as lower-cased text, for `contains` and friends.
    fn text(&self) -> Cow<'_, str> {
        match (&self.norm, &self.raw) {
            (Norm::Text(s), _) => Cow::Borrowed(s.as_str()),
            (_, FieldValue::Text(s)) => Cow::Owned(s.as_str().to_lowercase()),
            (_, FieldValue::Number(n)) => Cow::Owned(format_number(*n)),
            (_, FieldValue::Bool(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
            (_, FieldValue::Null) => Cow::Borrowed(""),
        }
    }
}

impl From<ProfileValue> for FieldValue {
    fn from(v: ProfileValue) -> FieldValue {
        v.raw
    }
}

impl TryFrom<FieldValue> for ProfileValue {
    type Error = &'static str;

    fn try_from(raw: FieldValue) -> Result<Self, Self::Error> {
        ProfileValue::new(raw).ok_or("a stored profile value cannot be absent")
    }
}

/// Formats a number the way JSON would print it (`1000`, not `1000.0`).
pub fn format_number(n: f64) -> String {
    match whole(n) {
        Some(i) => format!("{i}"),
        None => format!("{n}"),
    }
}

/// `n` as an integer, when it is a whole one (and small enough to be exact).
pub fn whole(n: f64) -> Option<i64> {
    (n.fract() == 0.0 && n.abs() < 1e15).then_some(n as i64)
}

/// The condition of a fit rule on one profile field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldCondition {
    Eq(Norm),
    Ne(Norm),
    In(Vec<Norm>),
    NotIn(Vec<Norm>),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    /// Any of the (lower-cased) needles.
    Contains(Vec<String>),
    StartsWith(Vec<String>),
    EndsWith(Vec<String>),
    Exists,
    Missing,
}

impl FieldCondition {
    /// Whether the condition holds for a field's value (`None` = absent).
    pub fn holds(&self, value: Option<&ProfileValue>) -> bool {
        let Some(v) = value else {
            return matches!(self, FieldCondition::Missing);
        };
        let num = match v.norm {
            Norm::Num(n) => Some(n),
            _ => None,
        };
        match self {
            FieldCondition::Missing => false,
            FieldCondition::Exists => true,
            FieldCondition::Eq(x) => v.norm.same(x),
            FieldCondition::Ne(x) => !v.norm.same(x),
            FieldCondition::In(xs) => xs.iter().any(|x| v.norm.same(x)),
            FieldCondition::NotIn(xs) => !xs.iter().any(|x| v.norm.same(x)),
            FieldCondition::Gt(x) => num.is_some_and(|n| n > *x),
            FieldCondition::Gte(x) => num.is_some_and(|n| n >= *x),
            FieldCondition::Lt(x) => num.is_some_and(|n| n < *x),
            FieldCondition::Lte(x) => num.is_some_and(|n| n <= *x),
            FieldCondition::Contains(xs) => xs.iter().any(|x| v.text().contains(x.as_str())),
            FieldCondition::StartsWith(xs) => xs.iter().any(|x| v.text().starts_with(x.as_str())),
            FieldCondition::EndsWith(xs) => xs.iter().any(|x| v.text().ends_with(x.as_str())),
        }
    }

    /// The op's name as written in a rules file.
    pub fn op_name(&self) -> &'static str {
        match self {
            FieldCondition::Eq(_) => "eq",
            FieldCondition::Ne(_) => "ne",
            FieldCondition::In(_) => "in",
            FieldCondition::NotIn(_) => "not_in",
            FieldCondition::Gt(_) => "gt",
            FieldCondition::Gte(_) => "gte",
            FieldCondition::Lt(_) => "lt",
            FieldCondition::Lte(_) => "lte",
            FieldCondition::Contains(_) => "contains",
            FieldCondition::StartsWith(_) => "starts_with",
            FieldCondition::EndsWith(_) => "ends_with",
            FieldCondition::Exists => "exists",
            FieldCondition::Missing => "missing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Option<ProfileValue> {
        ProfileValue::new(FieldValue::Text(s.into()))
    }
    fn num(n: f64) -> Option<ProfileValue> {
        ProfileValue::new(FieldValue::Number(n))
    }

    #[test]
    fn eq_is_case_insensitive_and_numeric_strings_compare_as_numbers() {
        let dog = FieldCondition::Eq(Norm::from_text("dog"));
        assert!(dog.holds(text("DOG").as_ref()));
        assert!(!dog.holds(text("cat").as_ref()));
        let hundred = FieldCondition::Eq(Norm::Num(100.0));
        assert!(hundred.holds(text("100.0").as_ref()));
        assert!(hundred.holds(num(100.0).as_ref()));
        let yes = FieldCondition::Eq(Norm::Bool(true));
        assert!(yes.holds(text("TRUE").as_ref()));
        assert!(yes.holds(ProfileValue::new(FieldValue::Bool(true)).as_ref()));
        assert!(!yes.holds(text("yes").as_ref()));
    }

    #[test]
    fn case_folds_beyond_ascii_and_beyond_inline_length() {
        let school = FieldCondition::Eq(Norm::from_text("école"));
        assert!(school.holds(text("ÉCOLE").as_ref()));
        assert!(!school.holds(text("ECOLE").as_ref()));
        let long = "Vice President of Engineering, EMEA";
        assert!(long.len() > 24, "longer than a CompactString holds inline");
        let cond = FieldCondition::Eq(Norm::from_text(&long.to_uppercase()));
        assert!(cond.holds(text(long).as_ref()));
        assert!(!cond.holds(text(&long[..30]).as_ref()));
    }

    #[test]
    fn absent_fields_match_only_missing() {
        for absent in [None, text(""), ProfileValue::new(FieldValue::Null)] {
            assert!(FieldCondition::Missing.holds(absent.as_ref()));
            assert!(!FieldCondition::Exists.holds(absent.as_ref()));
            assert!(!FieldCondition::Ne(Norm::from_text("dog")).holds(absent.as_ref()));
            assert!(!FieldCondition::NotIn(vec![Norm::from_text("dog")]).holds(absent.as_ref()));
        }
        assert!(FieldCondition::Exists.holds(text("x").as_ref()));
        assert!(!FieldCondition::Missing.holds(text("x").as_ref()));
    }

    #[test]
    fn ne_in_and_not_in() {
        assert!(FieldCondition::Ne(Norm::from_text("dog")).holds(text("cat").as_ref()));
        assert!(!FieldCondition::Ne(Norm::from_text("dog")).holds(text("Dog").as_ref()));
        let execs = vec![Norm::from_text("ceo"), Norm::from_text("cto")];
        assert!(FieldCondition::In(execs.clone()).holds(text("CTO").as_ref()));
        assert!(!FieldCondition::In(execs.clone()).holds(text("intern").as_ref()));
        assert!(FieldCondition::NotIn(execs).holds(text("intern").as_ref()));
    }

    #[test]
    fn numeric_ops_never_match_non_numbers() {
        assert!(FieldCondition::Gte(1000.0).holds(num(1000.0).as_ref()));
        assert!(FieldCondition::Gte(1000.0).holds(text(" 2500 ").as_ref()));
        assert!(!FieldCondition::Gt(1000.0).holds(num(1000.0).as_ref()));
        assert!(FieldCondition::Lt(100.0).holds(num(40.0).as_ref()));
        assert!(FieldCondition::Lte(100.0).holds(num(100.0).as_ref()));
        assert!(!FieldCondition::Lt(100.0).holds(text("cheap").as_ref()));
        assert!(
            !FieldCondition::Lt(100.0).holds(ProfileValue::new(FieldValue::Bool(false)).as_ref())
        );
    }

    #[test]
    fn string_ops_take_any_of_several_needles() {
        let gmail = FieldCondition::EndsWith(vec!["@gmail.com".into(), "@yahoo.com".into()]);
        assert!(gmail.holds(text("Ann@GMAIL.com").as_ref()));
        assert!(!gmail.holds(text("ann@corp.com").as_ref()));
        assert!(FieldCondition::StartsWith(vec!["vp".into()]).holds(text("VP Sales").as_ref()));
        assert!(FieldCondition::Contains(vec!["sales".into()]).holds(text("VP Sales").as_ref()));
        assert!(FieldCondition::Contains(vec!["00".into()]).holds(num(1000.0).as_ref()));
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// Text is read as a number exactly when Rust parses it as a finite
        /// one (the parse is skipped for text that cannot start one).
        #[test]
        fn text_is_a_number_when_it_parses_as_a_finite_one(
            text in proptest::prop_oneof![
                "[ +\\-.0-9eEinfaINFAtyxr]{0,8}",
                proptest::prelude::any::<String>(),
                proptest::sample::select(vec![
                    "inf", "-inf", "+Infinity", "NaN", " 12 ", "1e5", ".5", "+.5e-3", "-0", "1e400",
                ]).prop_map(String::from),
            ]
        ) {
            let parsed = text.trim().parse::<f64>().ok().filter(|n| n.is_finite());
            match Norm::from_text(&text) {
                Norm::Num(n) => proptest::prop_assert_eq!(Some(n.to_bits()), parsed.map(f64::to_bits)),
                _ => proptest::prop_assert_eq!(parsed, None),
            }
        }
    }
}
