//! Event time: milliseconds since the Unix epoch, the one clock of scoring.
//!
//! Parsing and formatting of RFC 3339 lives here so that every layer agrees on
//! precision (milliseconds; finer digits are truncated) and on the output form
//! (`2026-11-20T10:00:00.000Z`). Depends on chrono only.

use std::cell::Cell;
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
        if let Some(t) = parse_common(text.as_bytes()) {
            return Some(t);
        }
        let parsed = DateTime::parse_from_rfc3339(text).ok()?;
        Some(EventTime(parsed.timestamp_millis()))
    }

    /// Formats as RFC 3339 UTC with milliseconds, e.g. `2026-11-20T10:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        match self.rfc3339_bytes() {
            Some(b) => b.iter().map(|&c| c as char).collect(),
            None => match DateTime::<Utc>::from_timestamp_millis(self.0) {
                Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
                None => format!("@{}ms", self.0),
            },
        }
    }

    /// The RFC 3339 form of years 0000–9999, formatted by hand without
    /// allocating (this is on the output path of every tier change); `None`
    /// outside that range.
    pub fn rfc3339_bytes(self) -> Option<[u8; 24]> {
        const MAX_MS: i64 = 253_402_300_799_999;
        if !(0..=MAX_MS).contains(&(self.0 + 62_167_219_200_000)) {
            return None;
        }
        let days = self.0.div_euclid(MS_PER_DAY);
        // In range, every part below fits a u32 (and is not negative).
        let ms_of_day = self.0.rem_euclid(MS_PER_DAY) as u32;
        let (y, m, d) = civil_from_days(days);
        let (h, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
        let (min, rest) = (rest / 60_000, rest % 60_000);
        let (sec, ms) = (rest / 1000, rest % 1000);
        let mut b = *b"0000-00-00T00:00:00.000Z";
        // Two digits of `v` (below 100) at `at`.
        let mut pair = |at: usize, v: u32| {
            b[at] = b'0' + (v / 10) as u8;
            b[at + 1] = b'0' + (v % 10) as u8;
        };
        let y = y as u32;
        pair(0, y / 100);
        pair(2, y % 100);
        pair(5, m as u32);
        pair(8, d as u32);
        pair(11, h);
        pair(14, min);
        pair(17, sec);
        pair(21, ms % 100);
        b[20] = b'0' + (ms / 100) as u8;
        Some(b)
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

/// Day count since 1970-01-01 of a proleptic Gregorian date (Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The common shape `YYYY-MM-DDTHH:MM:SS[.f…](Z|±hh:mm)` parsed by hand (it
/// is on the decode path of every event); `None` for anything else, which
/// then goes to chrono: lower-case separators, leap seconds, errors.
fn parse_common(b: &[u8]) -> Option<EventTime> {
    let head: &[u8; 19] = b.get(..19)?.try_into().ok()?;
    // `YYYY-MM-` and `HH:MM:SS` as words, separators checked and then
    // replaced by '0', so that every byte left must be a digit.
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    let word = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or_default());
    let (date, time) = (word(0), word(11));
    const DATE_SEPS: u64 = 0xff << 32 | 0xff << 56;
    const TIME_SEPS: u64 = 0xff << 16 | 0xff << 40;
    const DASHES: u64 = u64::from_le_bytes(*b"--------");
    const COLONS: u64 = u64::from_le_bytes(*b"::::::::");
    let seps_ok = date & DATE_SEPS == DASHES & DATE_SEPS
        && time & TIME_SEPS == COLONS & TIME_SEPS
        && head[10] == b'T';
    let date = date & !DATE_SEPS | ZEROS & DATE_SEPS;
    let time = time & !TIME_SEPS | ZEROS & TIME_SEPS;
    // A byte is a digit when its high nibble is 3 and adding 6 keeps it so.
    let digits = |w: u64| {
        const HIGH: u64 = 0xf0f0_f0f0_f0f0_f0f0;
        w & HIGH == ZEROS && w.wrapping_add(0x0606_0606_0606_0606) & HIGH == ZEROS
    };
    if !seps_ok || !digits(date) || !digits(time) {
        return None;
    }
    let (date, time) = (date - ZEROS, time - ZEROS);
    let digit = |w: u64, i: u32| ((w >> (8 * i)) & 0xff) as i64;
    let two = |w: u64, i: u32| digit(w, i) * 10 + digit(w, i + 1);
    let (h, min, sec) = (two(time, 0), two(time, 3), two(time, 6));
    if h > 23 || min > 59 || sec > 59 {
        return None;
    }
    // The date and hour (`YYYY-MM-DDTHH`) are checked and counted only
    // when they are not the last ones seen.
    let hour_start = match LastHour::start(head) {
        Some(start) => start,
        None => {
            let day = digit_pair(head[8], head[9])?;
            let (y, m) = (two(date, 0) * 100 + two(date, 2), two(date, 5));
            const MONTH_DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
            if !(1..=12).contains(&m) || day < 1 {
                return None;
            }
            if day > MONTH_DAYS[(m - 1) as usize] {
                let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
                if !(m == 2 && day == 29 && leap) {
                    return None;
                }
            }
            let start = (days_from_civil(y, m, day) * 86_400 + h * 3600) * 1000;
            LastHour::remember(head, start);
            start
        }
    };
    let (ms, rest) = match &b[19..] {
        // Milliseconds and `Z`, as producers mostly write them.
        &[b'.', d1, d2, d3, b'Z'] if d3.is_ascii_digit() => {
            (digit_pair(d1, d2)? * 10 + i64::from(d3 - b'0'), &b"Z"[..])
        }
        [b'.', frac @ ..] => {
            // Milliseconds: the first three digits, the rest truncated.
            let (mut ms, mut scale, mut digits) = (0, 100, 0);
            for &c in frac.iter().take_while(|c| c.is_ascii_digit()) {
                ms += i64::from(c - b'0') * scale;
                scale /= 10;
                digits += 1;
            }
            if digits == 0 {
                return None;
            }
            (ms, &frac[digits..])
        }
        rest => (0, rest),
    };
    let offset_min = match rest {
        b"Z" => 0,
        &[sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (oh, om) = (digit_pair(h1, h2)?, digit_pair(m1, m2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 60 + om;
            if sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    Some(EventTime(
        hour_start + (min * 60 + sec - offset_min * 60) * 1000 + ms,
    ))
}

/// The date and hour (`YYYY-MM-DDTHH`, valid) of the last timestamp parsed
/// on this thread, with the instant that hour starts before any offset.
/// Event times come mostly in order, hundreds an hour: most share it, and
/// skip the date's checks and day count.
#[derive(Clone, Copy)]
struct LastHour {
    /// Bytes 0..8 and 5..13 of the timestamp.
    head: [u64; 2],
    start_ms: i64,
}

thread_local! {
    static LAST_HOUR: Cell<Option<LastHour>> = const { Cell::new(None) };
}

impl LastHour {
    fn head(b: &[u8; 19]) -> [u64; 2] {
        let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
        [word(0), word(5)]
    }

    /// When the hour of `b` starts, if it is the remembered one.
    fn start(b: &[u8; 19]) -> Option<i64> {
        let last = LAST_HOUR.with(Cell::get)?;
        (Self::head(b) == last.head).then_some(last.start_ms)
    }

    /// Remembers the hour of `b`, checked valid, which starts at `start_ms`.
    fn remember(b: &[u8; 19], start_ms: i64) {
        let head = Self::head(b);
        LAST_HOUR.with(|last| last.set(Some(LastHour { head, start_ms })));
    }
}

/// The number written by two ASCII digits.
fn digit_pair(tens: u8, ones: u8) -> Option<i64> {
    let (t, o) = (tens.wrapping_sub(b'0'), ones.wrapping_sub(b'0'));
    (t <= 9 && o <= 9).then(|| i64::from(t) * 10 + i64::from(o))
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
        let ms = EventTime::parse_rfc3339("2026-03-03T10:00:00.045Z").unwrap();
        assert_eq!(ms.millis() - z.millis(), 45);
        for bad in [".04xZ", ".x45Z", ".4x5Z", ".045z0", ".Z"] {
            let text = format!("2026-03-03T10:00:00{bad}");
            assert_eq!(EventTime::parse_rfc3339(&text), None, "{text}");
        }
    }

    /// What chrono makes of `s` (it also takes a space for the `T`).
    fn chrono(s: &str) -> Option<EventTime> {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| EventTime(t.timestamp_millis()))
    }

    /// The hand parser against chrono on many valid and invalid shapes.
    #[test]
    fn fast_parse_agrees_with_chrono() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..50_000 {
            let y = rng.i64(0..=9999);
            let (m, d) = (rng.i64(0..=13), rng.i64(0..=32));
            let (h, min, sec) = (rng.i64(0..=24), rng.i64(0..=60), rng.i64(0..=60));
            let frac = match rng.u8(0..4) {
                0 => String::new(),
                1 => format!(".{}", rng.u32(0..10)),
                2 => format!(".{:03}", rng.u32(0..1000)),
                _ => format!(".{:09}", rng.u32(0..1_000_000_000)),
            };
            let off = match rng.u8(0..4) {
                0 => "Z".to_string(),
                1 => "z".to_string(),
                _ => format!(
                    "{}{:02}:{:02}",
                    if rng.bool() { '+' } else { '-' },
                    rng.i64(0..=24),
                    rng.i64(0..=60)
                ),
            };
            let s = format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{sec:02}{frac}{off}");
            if let Some(ours) = parse_common(s.as_bytes()) {
                assert_eq!(Some(ours), chrono(&s), "{s}");
            }
            assert_eq!(EventTime::parse_rfc3339(&s), chrono(&s), "{s}");
        }
        // One byte of a valid timestamp replaced by any ASCII character.
        let valid = b"2024-02-29T23:59:59.999+05:30";
        for _ in 0..50_000 {
            let mut s = valid.to_vec();
            s.truncate(rng.usize(19..=s.len()));
            if rng.bool() {
                s.extend_from_slice(b"Z");
            }
            let at = rng.usize(0..s.len());
            s[at] = rng.u8(0..128);
            let s = String::from_utf8(s).unwrap();
            if let Some(ours) = parse_common(s.as_bytes()) {
                assert_eq!(Some(ours), chrono(&s), "{s}");
            }
            // chrono also takes a space for the `T`; RFC 3339 proper does not.
            let expected = chrono(&s).filter(|_| matches!(s.as_bytes()[10], b'T' | b't'));
            assert_eq!(EventTime::parse_rfc3339(&s), expected, "{s}");
        }
        for bad in [
            "2026-03-03T10:00:00.Z",
            "2026-03-03T10:00:00+0200",
            "2026-3-03T10:00:00Z",
        ] {
            assert_eq!(parse_common(bad.as_bytes()), None, "{bad}");
        }
        assert!(
            parse_common(b"2026-03-03T10:00:00.5Z").is_some(),
            "the common shape is taken by hand"
        );
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

    /// Timestamps in the hour of the one before take the short way; that
    /// way too agrees with chrono, on valid and broken minutes, seconds,
    /// milliseconds and offsets, and leap seconds go to chrono.
    #[test]
    fn parsing_in_the_last_hour_agrees_with_chrono() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut hour = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        for _ in 0..200 {
            hour += rng.i64(0..3) * 3_600_000;
            for _ in 0..100 {
                let t = EventTime(hour + rng.i64(0..3_600_000));
                let text = t.to_rfc3339();
                assert_eq!(EventTime::parse_rfc3339(&text), Some(t), "{text}");
                // The same hour with an offset: the offset applies after it.
                let shifted = text.replace('Z', "-01:30");
                assert_eq!(
                    EventTime::parse_rfc3339(&shifted),
                    chrono(&shifted),
                    "{shifted}"
                );
                let mut broken = text.into_bytes();
                let at = rng.usize(13..24);
                broken[at] = rng.u8(0..128);
                let broken = String::from_utf8(broken).unwrap();
                assert_eq!(
                    EventTime::parse_rfc3339(&broken),
                    chrono(&broken),
                    "{broken}"
                );
            }
            let leap = EventTime(hour)
                .to_rfc3339()
                .replace(":00:00.000Z", ":59:60.250Z");
            assert_eq!(EventTime::parse_rfc3339(&leap), chrono(&leap), "{leap}");
        }
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
