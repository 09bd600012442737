//! What `replay` reports besides tier changes: a progress line on stderr, and
//! the `--rejects-out` and `--scores-out` lines out (SPEC §6).

use std::io::{self, Write};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Replayer, Slot, BATCH};
use crate::event::output::round2;
use crate::event::DecodeError;
use crate::scoring::{ContactState, Engine};
use crate::time::EventTime;

/// Counts reported at the end of a replay.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayStats {
    pub lines: u64,
    pub events: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub changes: u64,
    pub timers_fired: u64,
    pub timer_updates: u64,
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
        if stats.lines % 65_536 >= BATCH as u64 || self.last.elapsed() < self.every {
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

pub(super) fn write_reject(out: &mut impl Write, line: u64, e: &DecodeError) -> io::Result<()> {
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

/// Writes the `--scores-out` lines of one contact at `now`, models by name.
pub fn write_score_lines(
    engine: &Engine,
    contact: &str,
    state: &ContactState,
    now: EventTime,
    out: &mut impl Write,
) -> io::Result<()> {
    let models = &engine.rules().models;
    let mut by_name: Vec<usize> = (0..models.len()).collect();
    by_name.sort_by(|a, b| models[*a].name.cmp(&models[*b].name));
    for m in by_name {
        let c = engine.components(state, m, now);
        let line = ScoreLine {
            contact_id: contact,
            model: &models[m].name,
            score: round2(c.score),
            fit: round2(c.fit),
            engagement: round2(c.engagement),
            penalty: round2(c.penalty),
            tier: &models[m].tiers[state.models[m].tier as usize].name,
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

impl<W: Write> Replayer<W> {
    /// Writes one score line per contact and model at the current clock,
    /// sorted by contact id then model name.
    pub fn write_scores(&self, out: &mut impl Write) -> io::Result<()> {
        let Some(now) = self.clock else { return Ok(()) };
        let mut order: Vec<&Slot> = self.contacts.iter().collect();
        order.sort_by(|a, b| a.name.cmp(&b.name));
        for Slot {
            name: contact,
            state,
            ..
        } in order
        {
            write_score_lines(&self.engine, contact, state, now, out)?;
        }
        Ok(())
    }
}
