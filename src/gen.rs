//! Synthetic event streams for replay, demos and benchmarks.
//!
//! Contacts behave like visitors: they browse (pricing, docs, careers,
//! add-ons), open and click emails, fill forms that update their profile, buy,
//! and go quiet. By default 3 % of events arrive late (up to two days) and 1 % are
//! re-sent duplicates, as on a real topic. Deterministic for a given seed.

use std::io::{self, Write};

use crate::time::{EventTime, MS_PER_DAY};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub events: u64,
    pub contacts: u64,
    pub days: f64,
    pub seed: u64,
    pub start: EventTime,
    /// Percentage of events that arrive late (up to two days).
    pub late_percent: u32,
}

const PAGES: &[&str] = &[
    "https://app.example/",
    "https://app.example/pricing",
    "https://app.example/pricing/enterprise",
    "https://app.example/docs/getting-started",
    "https://app.example/docs/api",
    "https://app.example/blog/decay-scoring",
    "https://app.example/careers",
    "https://app.example/add-ons/sso",
    "https://app.example/add-ons/audit-log",
];
const FORMS: &[&str] = &["newsletter", "webinar-q1", "webinar-q2", "demo", "contact"];
const TITLES: &[&str] = &["ceo", "cto", "vp", "engineer", "student", "manager"];
const PRODUCTS: &[&str] = &["starter", "pro", "enterprise"];

/// Writes `opts.events` lines in replay's `{"topic","key","value"}` format.
pub fn generate(opts: &GenOptions, out: &mut impl Write) -> io::Result<()> {
    let mut rng = fastrand::Rng::with_seed(opts.seed);
    let span_ms = (opts.days * MS_PER_DAY as f64) as i64;
    let contacts = opts.contacts.max(1);
    let mut line = String::with_capacity(512);
    let mut previous = String::new();
    for n in 0..opts.events {
        if n > 0 && rng.u32(0..100) == 0 && !previous.is_empty() {
            out.write_all(previous.as_bytes())?; // a re-sent duplicate
            continue;
        }
        let mut at =
            opts.start.millis() + (span_ms as i128 * n as i128 / opts.events.max(1) as i128) as i64;
        if rng.u32(0..100) < opts.late_percent {
            at -= rng.i64(0..2 * MS_PER_DAY);
        }
        let contact = format!("c-{:06}", rng.u64(0..contacts));
        line.clear();
        event_line(&mut rng, n, &contact, EventTime::from_millis(at), &mut line);
        line.push('\n');
        out.write_all(line.as_bytes())?;
        std::mem::swap(&mut previous, &mut line);
    }
    Ok(())
}

/// Appends one random event of `contact` at `at` (id `e-{n}`) as a
/// replay-format line, without the newline.
pub fn event_line(
    rng: &mut fastrand::Rng,
    n: u64,
    contact: &str,
    at: EventTime,
    line: &mut String,
) {
    let when = at.to_rfc3339();
    let head =
        format!(r#""event_id": "e-{n}", "contact_id": "{contact}", "occurred_at": "{when}""#);
    match rng.u32(0..100) {
        0..=49 => {
            let url = PAGES[rng.usize(0..PAGES.len())];
            line.push_str(&format!(r#"{{"topic": "page-visits", "key": "{contact}", "value": {{{head}, "url": "{url}"}}}}"#));
        }
        50..=76 => {
            let email = rng.u32(1..20);
            let action = match rng.u32(0..100) {
                0..=59 => "open",
                60..=97 => "click",
                _ => "unsubscribe",
            };
            line.push_str(&format!(
                r#"{{"topic": "email-clicks", "key": "{contact}", "value": {{{head}, "email_id": "em-{email}", "action": "{action}"}}}}"#
            ));
        }
        77..=91 => {
            let form = FORMS[rng.usize(0..FORMS.len())];
            let title = TITLES[rng.usize(0..TITLES.len())];
            let budget = rng.u32(0..50) * 100;
            let mail = if rng.bool() {
                "gmail.com"
            } else {
                "corp.example"
            };
            line.push_str(&format!(
                r#"{{"topic": "form-submissions", "key": "{contact}", "value": {{{head}, "form_id": "{form}", "fields": {{"title": "{title}", "budget": {budget}, "email": "x@{mail}"}}}}}}"#
            ));
        }
        _ => {
            let product = PRODUCTS[rng.usize(0..PRODUCTS.len())];
            let amount = rng.u32(10..2000);
            line.push_str(&format!(
                r#"{{"topic": "purchases", "key": "{contact}", "value": {{{head}, "product_id": "{product}", "amount": {amount}, "currency": "EUR"}}}}"#
            ));
        }
    }
}
