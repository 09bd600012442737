//! Warnings that repeat while a fault lasts (a broker outage reports itself
//! every few milliseconds), logged once per period of each kind: the first
//! at once, then one per period with the count of those held back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one kind of repeated warning is logged.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Throttle {
    every: Duration,
    /// Per kind: when it was last logged, and how many were held back since.
    kinds: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(LOG_EVERY)
    }
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Throttle {
            every,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a warning of `kind` is to be logged now: `Some(held back
    /// since the last one logged)`, or `None` to drop it. Kinds are meant to
    /// be few (error codes), as each is remembered.
    pub fn admit(&self, kind: &str) -> Option<u64> {
        self.admit_at(kind, Instant::now())
    }

    fn admit_at(&self, kind: &str, now: Instant) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let Some((last, held)) = kinds.get_mut(kind) else {
            kinds.insert(kind.to_string(), (now, 0));
            return Some(0);
        };
        if now.saturating_duration_since(*last) < self.every {
            *held += 1;
            return None;
        }
        *last = now;
        Some(std::mem::take(held))
    }
}

/// What follows a throttled warning: " (N more like it in the last 10s)",
/// or nothing when none was held back.
pub fn held_back(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more like it in the last {}s)", LOG_EVERY.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_kind_and_period_with_the_count_held_back() {
        let throttle = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            throttle.admit_at("down", at(0)),
            Some(0),
            "the first at once"
        );
        assert_eq!(throttle.admit_at("down", at(1)), None);
        assert_eq!(throttle.admit_at("down", at(9)), None);
        assert_eq!(throttle.admit_at("refused", at(9)), Some(0), "kinds apart");
        assert_eq!(throttle.admit_at("down", at(10)), Some(2));
        assert_eq!(throttle.admit_at("down", at(11)), None);
        assert_eq!(throttle.admit_at("down", at(30)), Some(1));
        assert_eq!(throttle.admit_at("down", at(45)), Some(0));
    }
}
