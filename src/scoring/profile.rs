//! The contact's profile: form fields, latest `occurred_at` wins per field.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::event::FieldValue;
use crate::rules::field::ProfileValue;
use crate::time::EventTime;

/// One field; `value == None` is a cleared (or empty) field, kept with its
/// time so that an older, later-processed event cannot bring it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileEntry {
    /// Inline up to 24 bytes, as field names are.
    pub name: CompactString,
    pub value: Option<ProfileValue>,
    pub updated_at: EventTime,
}

/// Fields sorted by name; up to three inline (the benchmark's forms carry
/// three), so that a form's profile is read from the contact's slot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    entries: SmallVec<[ProfileEntry; 3]>,
}

impl Profile {
    #[inline]
    pub fn get(&self, name: &str) -> Option<&ProfileValue> {
        // Most profiles hold a few fields: comparing each name for equality
        // (lengths first) costs less than ordering them in a binary search.
        let entry = if self.entries.len() <= 8 {
            self.entries.iter().find(|e| e.name == name)
        } else {
            let i = self.entries.binary_search_by(|e| e.name.as_str().cmp(name));
            i.ok().map(|i| &self.entries[i])
        };
        entry?.value.as_ref()
    }

    pub fn entries(&self) -> &[ProfileEntry] {
        &self.entries
    }

    /// Whether the entries live on the heap rather than inline.
    pub fn spilled(&self) -> bool {
        self.entries.spilled()
    }

    /// Calls `f` with the address of each entry's name and text value (what
    /// a lookup reads beyond the entries themselves), for prefetching.
    pub fn entry_parts(&self, mut f: impl FnMut(*const u8)) {
        for e in &self.entries {
            f(e.name.as_ptr());
            if let Some(FieldValue::Text(text)) = e.value.as_ref().map(|v| &v.raw) {
                f(text.as_ptr());
            }
        }
    }

    /// Applies a form's fields observed at `t`; returns whether any present
    /// value changed (which is when fit must be recomputed).
    pub fn apply(&mut self, fields: &[(CompactString, FieldValue)], t: EventTime) -> bool {
        let mut changed = false;
        if self.entries.is_empty() && fields.len() > self.entries.inline_size() {
            // A contact's forms mostly carry the same fields: room for the
            // first form's, not the next power of two.
            self.entries.reserve_exact(fields.len());
        }
        for (name, raw) in fields {
            match self.entries.binary_search_by(|e| e.name.cmp(name)) {
                Ok(i) => {
                    let entry = &mut self.entries[i];
                    if t < entry.updated_at {
                        continue;
                    }
                    entry.updated_at = t;
                    // Compared before anything is built: a repeated value
                    // costs no allocation.
                    let same = match &entry.value {
                        Some(v) => v.raw == *raw,
                        None => ProfileValue::is_absent(raw),
                    };
                    if !same {
                        changed = true;
                        entry.value = ProfileValue::new(raw.clone());
                    }
                }
                Err(i) => {
                    let value = ProfileValue::new(raw.clone());
                    changed |= value.is_some();
                    self.entries.insert(
                        i,
                        ProfileEntry {
                            name: name.clone(),
                            value,
                            updated_at: t,
                        },
                    );
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> EventTime {
        EventTime::from_millis(ms)
    }
    fn text(s: &str) -> FieldValue {
        FieldValue::Text(s.into())
    }

    #[test]
    fn latest_occurred_at_wins_and_ties_go_to_the_later_processed() {
        let mut p = Profile::default();
        assert!(p.apply(&[("pet".into(), text("dog"))], t(10)));
        assert!(
            !p.apply(&[("pet".into(), text("cat"))], t(5)),
            "older event must not win"
        );
        assert_eq!(p.get("pet").unwrap().raw, text("dog"));
        assert!(
            p.apply(&[("pet".into(), text("cat"))], t(10)),
            "a tie goes to the later-processed"
        );
        assert_eq!(p.get("pet").unwrap().raw, text("cat"));
        assert!(
            !p.apply(&[("pet".into(), text("cat"))], t(20)),
            "the same value again changes nothing"
        );
        assert!(
            !p.apply(&[("pet".into(), text("dog"))], t(15)),
            "but it moves the field's time"
        );
        assert!(!p.apply(&[("gone".into(), FieldValue::Null)], t(20)));
        assert!(
            !p.apply(&[("gone".into(), text(""))], t(30)),
            "still absent"
        );
    }

    #[test]
    fn null_and_empty_clear_and_the_clear_is_remembered() {
        let mut p = Profile::default();
        p.apply(&[("pet".into(), text("dog"))], t(10));
        assert!(p.apply(&[("pet".into(), FieldValue::Null)], t(20)));
        assert!(p.get("pet").is_none());
        assert!(
            !p.apply(&[("pet".into(), text("dog"))], t(15)),
            "older value must not come back"
        );
        assert!(p.get("pet").is_none());
        p.apply(&[("pet".into(), text("dog"))], t(30));
        p.apply(&[("pet".into(), text(""))], t(40));
        assert!(p.get("pet").is_none());
    }

    /// A field is found by name whether the profile holds a few fields
    /// (looked through one by one) or many (searched in name order).
    #[test]
    fn fields_are_found_among_few_and_among_many() {
        let mut p = Profile::default();
        for n in 0..20 {
            let name = format!("f{}", (n * 7) % 20);
            p.apply(&[(name.as_str().into(), text(&name))], t(n));
            for k in 0..20 {
                let name = format!("f{k}");
                let set = (0..=n).any(|m| (m * 7) % 20 == k);
                assert_eq!(
                    p.get(&name).map(|v| &v.raw),
                    set.then(|| text(&name)).as_ref()
                );
            }
            assert!(p.get("f").is_none() && p.get("f200").is_none());
        }
    }

    /// Stored as a list of entries, whether they are inline or spilled:
    /// the same bytes as a plain `Vec` gave, and read back as they were.
    #[test]
    fn stored_as_a_list_inline_or_not() {
        #[derive(Serialize)]
        struct AsList<'a> {
            entries: &'a [ProfileEntry],
        }
        for n in 0..8 {
            let mut p = Profile::default();
            for k in 0..n {
                p.apply(&[(format!("f{k}").into(), text("x"))], t(k));
            }
            assert_eq!(p.spilled(), n > 3, "{n} fields");
            let list = postcard::to_stdvec(&AsList {
                entries: p.entries(),
            })
            .unwrap();
            assert_eq!(postcard::to_stdvec(&p).unwrap(), list, "{n} fields");
            assert_eq!(postcard::from_bytes::<Profile>(&list).unwrap(), p);
        }
    }
}
