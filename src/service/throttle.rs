//! Warnings that repeat while a fault lasts (a broker outage reports itself
//! every few milliseconds), logged once per period of each kind: the first
//! at once, then one per period with the count of those held back.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one kind of repeated warning is logged.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Throttle {
    every: Duration,
    /// Per kind: when it was last logged, and how many were held back since.
    kinds: Mutex<HashMap<String, (Instant, u64)>>,
}

/// A warning let through, and how many like it were held back since the
/// last one: shown after its message, " (N more like it in the last 10s)",
/// or as nothing when there were none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    held_back: u64,
    every: Duration,
}

impl fmt::Display for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.held_back {
            0 => Ok(()),
            n => write!(
                f,
                " ({n} more like it in the last {}s)",
                self.every.as_secs()
            ),
        }
    }
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

    /// Whether a warning of `kind` is to be logged now (`None`: drop it).
    /// Kinds are meant to be few (error codes), as each is remembered.
    pub fn admit(&self, kind: &str) -> Option<Admitted> {
        self.admit_at(kind, Instant::now())
    }

    fn admit_at(&self, kind: &str, now: Instant) -> Option<Admitted> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let held_back = match kinds.get_mut(kind) {
            None => {
                kinds.insert(kind.to_string(), (now, 0));
                0
            }
            Some((last, held)) if now.saturating_duration_since(*last) < self.every => {
                *held += 1;
                return None;
            }
            Some((last, held)) => {
                *last = now;
                std::mem::take(held)
            }
        };
        Some(Admitted {
            held_back,
            every: self.every,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_kind_and_period_with_the_count_held_back() {
        let throttle = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let admit = |kind: &str, s: u64| {
            throttle
                .admit_at(kind, t0 + Duration::from_secs(s))
                .map(|a| a.held_back)
        };
        assert_eq!(admit("down", 0), Some(0), "the first at once");
        assert_eq!(admit("down", 1), None);
        assert_eq!(admit("down", 9), None);
        assert_eq!(admit("refused", 9), Some(0), "kinds apart");
        assert_eq!(admit("down", 10), Some(2));
        assert_eq!(admit("down", 11), None);
        assert_eq!(admit("down", 30), Some(1));
        assert_eq!(admit("down", 45), Some(0));
    }

    #[test]
    fn the_count_follows_the_message_when_there_is_one() {
        let every = Duration::from_secs(10);
        let shown = |held_back| Admitted { held_back, every }.to_string();
        assert_eq!(shown(0), "");
        assert_eq!(shown(3), " (3 more like it in the last 10s)");
    }
}
