//! Event time: milliseconds since the Unix epoch, the one clock of scoring.
//!
//! Parsing and formatting of RFC 3339 lives here so that every layer agrees on
//! precision (milliseconds; finer digits are truncated) and on the output form
//! (`2026-11-20T10:00:00.000Z`). Depends on chrono only.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Milliseconds in one scoring day (86 400 s).
pub const MS_PER_DAY: i64 = 86_400_000;

/// An instant on the event-time clock, in milliseconds since the Unix epoch.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct EventTime(i64);

impl EventTime {
    pub const MIN: EventTime = EventTime(i64::MIN);
    pub const MAX: EventTime = EventTime(i64::MAX);

    pub const fn from_millis(ms: i64) -> Self {
        EventTime(ms)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 timestamp that carries an offset (`Z` or `±hh:mm`).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        if !matches!(text.as_bytes().get(10), Some(b'T' | b't')) {
            return None; // RFC 3339 proper: no space between date and time
        }
        let parsed = DateTime::parse_from_rfc3339(text).ok()?;
        Some(EventTime(parsed.timestamp_millis()))
    }

    /// Formats as RFC 3339 UTC with milliseconds, e.g. `2026-11-20T10:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        // Years 0000–9999 by hand (this is on the output path of every tier
        // change); anything else through chrono.
        const MAX_MS: i64 = 253_402_300_799_999;
        if !(0..=MAX_MS).contains(&(self.0 + 62_167_219_200_000)) {
            return match DateTime::<Utc>::from_timestamp_millis(self.0) {
                Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
                None => format!("@{}ms", self.0),
            };
        }
        let days = self.0.div_euclid(MS_PER_DAY);
        let ms_of_day = self.0.rem_euclid(MS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
        let (min, rest) = (rest / 60_000, rest % 60_000);
        let (sec, ms) = (rest / 1000, rest % 1000);
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{sec:02}.{ms:03}Z")
    }

    /// `self - earlier` in days (negative when `earlier` is later).
    pub fn days_since(self, earlier: EventTime) -> f64 {
        (self.0 as f64 - earlier.0 as f64) / MS_PER_DAY as f64
    }

    /// This instant plus a duration in milliseconds, saturating at the ends.
    pub fn plus_millis(self, ms: i64) -> EventTime {
        EventTime(self.0.saturating_add(ms))
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// (year, month, day) of a day count since 1970-01-01 in the proleptic
/// Gregorian calendar (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Converts a number of days (possibly fractional) to whole milliseconds.
pub fn days_to_millis(days: f64) -> i64 {
    let ms = (days * MS_PER_DAY as f64).round();
    if ms >= i64::MAX as f64 {
        i64::MAX
    } else if ms <= i64::MIN as f64 {
        i64::MIN
    } else {
        ms as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_truncates_to_millis() {
        let z = EventTime::parse_rfc3339("2026-03-03T10:00:00Z").unwrap();
        let off = EventTime::parse_rfc3339("2026-03-03T12:00:00+02:00").unwrap();
        assert_eq!(z, off);
        let fine = EventTime::parse_rfc3339("2026-03-03T10:00:00.123456789Z").unwrap();
        assert_eq!(fine.millis() - z.millis(), 123);
    }

    #[test]
    fn rejects_timestamps_without_offset() {
        assert!(EventTime::parse_rfc3339("2026-03-03T10:00:00").is_none());
        assert!(EventTime::parse_rfc3339("yesterday").is_none());
        assert!(EventTime::parse_rfc3339("2026-03-03 10:00:00Z").is_none());
    }

    #[test]
    fn formats_utc_with_millis() {
        let t = EventTime::parse_rfc3339("2026-03-21T21:44:28.978+02:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-03-21T19:44:28.978Z");
    }

    #[test]
    fn hand_formatting_agrees_with_chrono() {
        let mut t = -62_167_219_200_000i64; // 0000-01-01
        while t < 253_402_300_799_999 {
            let ours = EventTime::from_millis(t).to_rfc3339();
            let chrono = DateTime::<Utc>::from_timestamp_millis(t)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            assert_eq!(ours, chrono, "{t}");
            t += 7_777_777_777; // ~90 days and odd milliseconds
        }
        assert_eq!(
            EventTime::from_millis(-1).to_rfc3339(),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn day_arithmetic() {
        let a = EventTime::from_millis(0);
        let b = a.plus_millis(days_to_millis(1.5));
        assert_eq!(b.days_since(a), 1.5);
        assert_eq!(days_to_millis(30.0), 30 * MS_PER_DAY);
    }
}
