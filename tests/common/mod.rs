//! Fixtures shared by the engine-level tests: an engine from TOML text,
//! events built in code, and a one-contact harness.
#![allow(dead_code)]

pub mod cluster;

use leadscore::event::{ContactId, EmailAction, Event, EventBody, EventId, FieldValue};
use leadscore::rules::RuleSet;
use leadscore::scoring::{Components, ContactState, Effects, Engine, TierChange};
use leadscore::time::{EventTime, MS_PER_DAY};

pub const DAY: i64 = MS_PER_DAY;
/// 2026-03-01T00:00:00Z
pub const BASE: i64 = 1_772_323_200_000;

pub fn at(days: f64) -> EventTime {
    EventTime::from_millis(BASE + (days * DAY as f64).round() as i64)
}

pub fn engine(rules: &str) -> Engine {
    Engine::new(
        RuleSet::parse(rules).unwrap_or_else(|e| panic!("{e:?}")),
        30 * DAY,
    )
}

fn event(id: &str, t: EventTime, body: EventBody) -> Event {
    Event {
        id: EventId(id.into()),
        contact: ContactId("c-1".into()),
        occurred_at: t,
        body,
    }
}

pub fn visit(id: &str, url: &str, t: EventTime) -> Event {
    event(
        id,
        t,
        EventBody::PageVisit {
            url: url.into(),
            referrer: None,
            title: None,
        },
    )
}

pub fn email(id: &str, email_id: &str, action: EmailAction, t: EventTime) -> Event {
    event(
        id,
        t,
        EventBody::Email {
            email_id: email_id.into(),
            action,
            link_url: Some("https://x/offer".into()),
        },
    )
}

pub fn form(id: &str, form_id: &str, fields: &[(&str, FieldValue)], t: EventTime) -> Event {
    let fields = fields
        .iter()
        .map(|(k, v)| ((*k).into(), v.clone()))
        .collect();
    event(
        id,
        t,
        EventBody::Form {
            form_id: form_id.into(),
            fields,
        },
    )
}

pub fn purchase(id: &str, product: &str, amount: Option<f64>, t: EventTime) -> Event {
    event(
        id,
        t,
        EventBody::Purchase {
            product_id: product.into(),
            amount,
            currency: None,
        },
    )
}

/// One contact driven through the engine; the clock is the max time seen.
pub struct Contact {
    pub engine: Engine,
    pub state: ContactState,
    pub clock: EventTime,
}

impl Contact {
    pub fn new(rules: &str) -> Contact {
        let engine = engine(rules);
        let state = engine.new_contact();
        Contact {
            engine,
            state,
            clock: EventTime::MIN,
        }
    }

    /// Applies an event at `max(clock, occurred_at)` and returns its tier changes.
    pub fn apply(&mut self, e: &Event) -> Vec<TierChange> {
        self.clock = self.clock.max(e.occurred_at);
        let mut fx = Effects::default();
        self.engine
            .apply_event(&mut self.state, e, "topic", self.clock, &mut fx);
        fx.changes
    }

    pub fn score(&self, model: usize, t: EventTime) -> Components {
        self.engine.components(&self.state, model, t)
    }

    pub fn tier(&self, model: usize) -> &str {
        &self.engine.rules().models[model].tiers[self.state.models[model].tier as usize].name
    }

    /// Fires timers while any is due at or before `until`; returns the changes.
    pub fn run_until(&mut self, until: EventTime) -> Vec<TierChange> {
        let mut all = Vec::new();
        loop {
            let due = self
                .state
                .models
                .iter()
                .enumerate()
                .filter_map(|(m, s)| s.next.as_ref().map(|p| (p.at, m)))
                .filter(|(t, _)| *t <= until)
                .min();
            let Some((t, m)) = due else { break };
            let mut fx = Effects::default();
            self.engine.fire(&mut self.state, m, t, &mut fx);
            self.clock = self.clock.max(t);
            all.extend(fx.changes);
        }
        all
    }
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * (1.0 + a.abs().max(b.abs()))
}

/// A blocking `GET` on a 127.0.0.1 HTTP server: (status, body).
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    http_request(address, "GET", path)
}

/// One request without a body; the status and the body of the answer.
pub fn http_request(address: &str, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)
        .unwrap_or_else(|e| panic!("connecting to {address}: {e}"));
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "chunked responses are not decoded here: {head}"
    );
    (status, body.to_string())
}

/// Runs `promtool ARGS` (with `stdin` piped in) and asserts it succeeds.
pub fn promtool_accepts(args: &[&str], stdin: Option<&str>) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool: {e} (install the Debian package `prometheus`)"));
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} refused it:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
