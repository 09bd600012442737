//! `leadscore replay`: the scoring engine over a JSON-lines file (SPEC §6).
//!
//! The clock is the largest `occurred_at` seen; before each event it advances,
//! firing due timers in time order; tier changes go to the output in `at`
//! order. Memory is constant in the file size (the file is streamed); it grows
//! with contacts, not with events per contact.

pub mod input;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, BufRead, Write};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use input::{parse_line, Record};

use crate::dedupe::MemDedupe;
use crate::event::output::round2;
use crate::event::{decode, ContactId, DecodeError, Event, TopicMap};
use crate::scoring::{ContactState, Effects, Engine};
use crate::time::EventTime;
use crate::timer::TimerWheel;

/// Counts reported at the end of a replay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    pub lines: u64,
    pub events: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub changes: u64,
    pub timers_fired: u64,
}

/// A `--rejects-out` line.
#[derive(Debug, Serialize)]
pub struct RejectLine<'a> {
    pub line: u64,
    pub reason: &'a str,
    pub detail: String,
}

/// A `--scores-out` line.
#[derive(Debug, Serialize)]
pub struct ScoreLine<'a> {
    pub contact_id: &'a str,
    pub model: &'a str,
    pub score: f64,
    pub fit: f64,
    pub engagement: f64,
    pub penalty: f64,
    pub tier: &'a str,
}

type TimerKey = (u32, u16);

/// Replays records through the engine, writing tier changes to `out`.
pub struct Replayer<W: Write> {
    engine: Engine,
    topics: TopicMap,
    out: W,
    ids: HashMap<String, u32>,
    contacts: Vec<(ContactId, ContactState)>,
    wheel: TimerWheel<TimerKey>,
    dedupe: MemDedupe,
    clock: Option<EventTime>,
    fx: Effects,
    polled: Vec<(EventTime, TimerKey)>,
    due: BinaryHeap<Reverse<(EventTime, TimerKey)>>,
    pub stats: ReplayStats,
}

impl<W: Write> Replayer<W> {
    pub fn new(engine: Engine, topics: TopicMap, dedupe_window_ms: i64, out: W) -> Self {
        Replayer {
            engine,
            topics,
            out,
            ids: HashMap::new(),
            contacts: Vec::new(),
            wheel: TimerWheel::default(),
            dedupe: MemDedupe::new(dedupe_window_ms),
            clock: None,
            fx: Effects::default(),
            polled: Vec::new(),
            due: BinaryHeap::new(),
            stats: ReplayStats::default(),
        }
    }

    pub fn clock(&self) -> Option<EventTime> {
        self.clock
    }

    /// Decodes one line's record; the caller reports the error as a reject.
    pub fn decode(&self, line: &str) -> Result<(Event, String), DecodeError> {
        let rec = parse_line(line)?;
        let kind = self
            .topics
            .kind_of(&rec.topic)
            .ok_or_else(|| DecodeError::UnknownTopic(rec.topic.to_string()))?;
        let event = decode(kind, rec.key.as_deref().map(str::as_bytes), &rec.payload)?;
        Ok((event, rec.topic.into_owned()))
    }

    /// Processes one input line (blank lines are the caller's to skip).
    pub fn line(&mut self, line: &str) -> io::Result<Result<(), DecodeError>> {
        self.stats.lines += 1;
        match self.decode(line) {
            Ok((event, topic)) => self.event(&event, &topic).map(Ok),
            Err(e) => {
                self.stats.rejected += 1;
                Ok(Err(e))
            }
        }
    }

    /// Advances the clock to the event's time and applies it.
    pub fn event(&mut self, event: &Event, topic: &str) -> io::Result<()> {
        let now = self
            .clock
            .map_or(event.occurred_at, |c| c.max(event.occurred_at));
        self.advance(now)?;
        if self.dedupe.seen_before(&event.contact.0, &event.id.0, now) {
            self.stats.duplicates += 1;
            return Ok(());
        }
        self.stats.events += 1;
        let idx = match self.ids.get(&event.contact.0) {
            Some(&i) => i,
            None => {
                let i = self.contacts.len() as u32;
                self.ids.insert(event.contact.0.clone(), i);
                self.contacts
                    .push((event.contact.clone(), self.engine.new_contact()));
                i
            }
        };
        self.fx.clear();
        let (_, state) = &mut self.contacts[idx as usize];
        self.engine
            .apply_event(state, event, topic, now, &mut self.fx);
        for t in &self.fx.timers {
            let key = (idx, t.model as u16);
            match t.due {
                Some(due) => self.wheel.insert(key, due),
                None => {
                    self.wheel.cancel(&key);
                }
            }
        }
        self.emit(idx)
    }

    /// Moves the clock to `to`, firing every timer due at or before it in
    /// (due, contact, model) order.
    pub fn advance(&mut self, to: EventTime) -> io::Result<()> {
        if self.clock.is_some_and(|c| c >= to) {
            return Ok(());
        }
        self.polled.clear();
        self.wheel.poll(to, &mut self.polled);
        self.due.extend(self.polled.drain(..).map(Reverse));
        while let Some(Reverse((at, key))) = self.due.pop() {
            self.stats.timers_fired += 1;
            self.fx.clear();
            let (_, state) = &mut self.contacts[key.0 as usize];
            self.engine.fire(state, key.1 as usize, at, &mut self.fx);
            for t in &self.fx.timers {
                match t.due {
                    Some(due) if due <= to => {
                        self.due.push(Reverse((due, (key.0, t.model as u16))))
                    }
                    Some(due) => self.wheel.insert((key.0, t.model as u16), due),
                    None => {}
                }
            }
            self.emit(key.0)?;
        }
        self.clock = Some(to);
        Ok(())
    }

    fn emit(&mut self, idx: u32) -> io::Result<()> {
        let contact = &self.contacts[idx as usize].0;
        for change in &self.fx.changes {
            self.stats.changes += 1;
            serde_json::to_writer(&mut self.out, &self.engine.output(&contact.0, change))?;
            self.out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Writes one score line per contact and model at the current clock,
    /// sorted by contact id then model name.
    pub fn write_scores(&self, out: &mut impl Write) -> io::Result<()> {
        let Some(now) = self.clock else { return Ok(()) };
        let mut order: Vec<&(ContactId, ContactState)> = self.contacts.iter().collect();
        order.sort_by(|a, b| a.0.cmp(&b.0));
        let models = &self.engine.rules().models;
        let mut by_name: Vec<usize> = (0..models.len()).collect();
        by_name.sort_by(|a, b| models[*a].name.cmp(&models[*b].name));
        for (contact, state) in order {
            for &m in &by_name {
                let c = self.engine.components(state, m, now);
                let line = ScoreLine {
                    contact_id: &contact.0,
                    model: &models[m].name,
                    score: round2(c.score),
                    fit: round2(c.fit),
                    engagement: round2(c.engagement),
                    penalty: round2(c.penalty),
                    tier: &models[m].tiers[state.models[m].tier].name,
                };
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    pub fn contacts(&self) -> usize {
        self.contacts.len()
    }

    pub fn timers(&self) -> usize {
        self.wheel.len()
    }

    pub fn into_output(self) -> W {
        self.out
    }
}

/// Prints a progress line to stderr every few seconds.
pub struct Progress {
    started: Instant,
    last: Instant,
    every: Duration,
}

impl Default for Progress {
    fn default() -> Self {
        let now = Instant::now();
        Progress {
            started: now,
            last: now,
            every: Duration::from_secs(3),
        }
    }
}

impl Progress {
    pub fn tick(&mut self, stats: &ReplayStats) {
        if stats.lines % 65_536 != 0 || self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!(
            "replay: {} lines in {:.0}s ({:.0} lines/s), {} rejected, {} duplicates, {} tier changes",
            stats.lines,
            secs,
            stats.lines as f64 / secs,
            stats.rejected,
            stats.duplicates,
            stats.changes
        );
    }
}

/// Feeds every line of `input` to the replayer, reporting rejects to `rejects`.
pub fn replay_lines<W: Write>(
    replayer: &mut Replayer<W>,
    input: impl BufRead,
    rejects: &mut impl Write,
    progress: &mut Progress,
) -> io::Result<()> {
    let mut line_no = 0u64;
    for line in input.split(b'\n') {
        let line = line?;
        line_no += 1;
        let text = match std::str::from_utf8(&line) {
            Ok(t) => t.trim_end_matches('\r'),
            Err(e) => {
                replayer.stats.lines += 1;
                replayer.stats.rejected += 1;
                write_reject(
                    rejects,
                    line_no,
                    &DecodeError::InvalidJson(format!("line is not UTF-8: {e}")),
                )?;
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        if let Err(e) = replayer.line(text)? {
            write_reject(rejects, line_no, &e)?;
        }
        progress.tick(&replayer.stats);
    }
    Ok(())
}

fn write_reject(out: &mut impl Write, line: u64, e: &DecodeError) -> io::Result<()> {
    serde_json::to_writer(
        &mut *out,
        &RejectLine {
            line,
            reason: e.reason(),
            detail: e.to_string(),
        },
    )?;
    out.write_all(b"\n")
}
