//! Which URL globs of the rules match a page visit's URL, remembered.
//!
//! Every page visit is tested against every `url` glob of every model, and
//! that test is most of a page visit's rule matching. A site has far fewer
//! pages than visits, so the answer for a URL — one bit per glob — is kept
//! in a small per-thread table (direct-mapped, fixed size: memory does not
//! grow with traffic). An entry holds its URL and is used only on an exact
//! match, so a remembered answer is always the answer.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::rules::{Glob, RuleSet, Trigger};

/// Entries of the per-thread table.
const SLOTS: usize = 1024;
/// URLs longer than this are matched directly (not worth keeping).
const MAX_URL: usize = 256;

/// The URL globs of a rule set, numbered (at most 64; rules beyond are
/// matched directly).
#[derive(Debug, Clone)]
pub struct UrlGlobs {
    /// Tells rule sets apart in the per-thread table.
    id: u64,
    /// The numbered globs.
    globs: Vec<Glob>,
    /// Per model, per engagement rule: its glob's number.
    bit: Vec<Vec<Option<u8>>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Memo {
    id: u64,
    slots: Vec<(String, u64)>,
}

thread_local! {
    static MEMO: RefCell<Memo> = const { RefCell::new(Memo { id: 0, slots: Vec::new() }) };
}

impl UrlGlobs {
    pub fn new(rules: &RuleSet) -> UrlGlobs {
        let mut numbered = Vec::new();
        let bit = rules
            .models
            .iter()
            .map(|model| {
                model
                    .engagement_rules
                    .iter()
                    .map(|rule| {
                        let glob = rule.filters.url.as_ref();
                        let glob = glob.filter(|_| rule.trigger == Trigger::PageVisit)?;
                        if numbered.len() >= 64 {
                            return None;
                        }
                        numbered.push(glob.clone());
                        Some((numbered.len() - 1) as u8)
                    })
                    .collect()
            })
            .collect();
        UrlGlobs {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            globs: numbered,
            bit,
        }
    }

    /// The number of rule `r` of model `m`'s glob, if it has one.
    pub fn bit(&self, m: usize, r: usize) -> Option<u8> {
        self.bit[m][r]
    }

    /// Bit `k` set when numbered glob `k` matches `url`; `None` when no rule
    /// has a URL glob.
    pub fn matching(&self, url: &str) -> Option<u64> {
        if self.globs.is_empty() {
            return None;
        }
        // Vacant entries hold the empty URL: it is never looked up.
        if url.is_empty() || url.len() > MAX_URL {
            return Some(self.compute(url));
        }
        let slot = xxhash_rust::xxh3::xxh3_64(url.as_bytes()) as usize % SLOTS;
        MEMO.with(|memo| {
            let mut memo = memo.borrow_mut();
            if memo.id != self.id {
                memo.id = self.id;
                memo.slots.clear();
                memo.slots.resize(SLOTS, (String::new(), 0));
            }
            let (known, mask) = &mut memo.slots[slot];
            if known == url {
                return Some(*mask);
            }
            let fresh = self.compute(url);
            known.clear();
            known.push_str(url);
            *mask = fresh;
            Some(fresh)
        })
    }

    fn compute(&self, url: &str) -> u64 {
        self.globs
            .iter()
            .enumerate()
            .filter(|(_, glob)| glob.matches(url))
            .fold(0, |mask, (k, _)| mask | 1 << k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(globs: &[&str]) -> RuleSet {
        let mut text = String::from(
            "[[model]]\nname = \"m\"\ntiers = [{ name = \"cold\" }, { name = \"warm\", min = 10 }]\n",
        );
        for (i, g) in globs.iter().enumerate() {
            text += &format!(
                "[[model.rule]]\nid = \"r{i}\"\nwhen = \"page_visit\"\nurl = \"{g}\"\npoints = 1\n"
            );
        }
        text += "[[model.rule]]\nid = \"any\"\nwhen = \"page_visit\"\npoints = 1\n";
        RuleSet::parse(&text).unwrap()
    }

    /// The answer straight from the globs, rule by rule.
    fn direct(rules: &RuleSet, globs: &UrlGlobs, url: &str) -> u64 {
        let model = &rules.models[0];
        (0..model.engagement_rules.len())
            .filter_map(|r| globs.bit(0, r).map(|k| (r, k)))
            .filter(|&(r, _)| {
                model.engagement_rules[r]
                    .filters
                    .url
                    .as_ref()
                    .unwrap()
                    .matches(url)
            })
            .fold(0, |mask, (_, k)| mask | 1 << k)
    }

    #[test]
    fn remembered_answers_equal_direct_ones() {
        let set = rules(&["*/pricing*", "*/docs/*", "https://A.example/*", "*?x=?"]);
        let globs = UrlGlobs::new(&set);
        assert_eq!(
            globs.bit(0, 4),
            None,
            "a rule without a URL glob has no bit"
        );
        // Far more distinct URLs than slots: entries are replaced, and
        // different URLs share slots.
        let urls: Vec<String> = (0..5000)
            .map(|i| match i % 4 {
                0 => format!("https://a.example/pricing/{i}"),
                1 => format!("https://a.example/DOCS/{i}"),
                2 => format!("https://b.example/{i}?x={}", i % 10),
                _ => format!("/p{i}"),
            })
            .collect();
        for round in 0..2 {
            for url in &urls {
                let got = globs.matching(url);
                assert_eq!(
                    got,
                    Some(direct(&set, &globs, url)),
                    "{url} (round {round})"
                );
            }
        }
        assert_eq!(globs.matching(""), Some(direct(&set, &globs, "")));
        let long = format!("https://a.example/pricing/{}", "x".repeat(400));
        assert_eq!(globs.matching(&long), Some(0b0001 | 0b0100));
    }

    #[test]
    fn rule_sets_on_one_thread_do_not_share_answers() {
        let pricing = rules(&["*/pricing"]);
        let docs = rules(&["*/docs"]);
        let (a, b) = (UrlGlobs::new(&pricing), UrlGlobs::new(&docs));
        for _ in 0..2 {
            assert_eq!(a.matching("/pricing"), Some(1));
            assert_eq!(b.matching("/pricing"), Some(0));
            assert_eq!(b.matching("/docs"), Some(1));
            assert_eq!(a.matching("/docs"), Some(0));
        }
    }

    #[test]
    fn globs_past_64_are_matched_directly() {
        let many: Vec<String> = (0..70).map(|i| format!("*/p{i}")).collect();
        let set = rules(&many.iter().map(String::as_str).collect::<Vec<_>>());
        let globs = UrlGlobs::new(&set);
        assert_eq!(globs.bit(0, 63), Some(63));
        assert_eq!(globs.bit(0, 64), None);
        assert_eq!(globs.matching("/p63"), Some(1 << 63));
        assert_eq!(globs.matching("/p64"), Some(0));
    }

    #[test]
    fn no_url_globs_no_mask() {
        let set = rules(&[]);
        assert_eq!(UrlGlobs::new(&set).matching("/x"), None);
    }
}
