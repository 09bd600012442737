//! `leadscore replay`: the scoring engine over a JSON-lines file (SPEC §6).
//!
//! The clock is the largest `occurred_at` seen; before each event it advances,
//! firing due timers in time order; tier changes go to the output in `at`
//! order. Memory is constant in the file size (the file is streamed); it grows
//! with contacts, not with events per contact.

mod index;
pub mod input;
mod lines;
mod prefetch;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use compact_str::CompactString;
use std::io::{self, BufRead, Write};

pub use input::{parse_line, Lines, Record};
pub use lines::{write_score_lines, Progress, RejectLine, ReplayStats, ScoreLine};

use crate::cache::prefetch_bytes;
use crate::dedupe::RecentIds;
use crate::event::{decode, DecodeError, Event, TopicMap};
use crate::scoring::{ContactState, Effects, Engine, UrlMatches};
use crate::time::EventTime;
use crate::timer::{DenseIndex, TimerWheel};
use index::{ContactIndex, LookedUp};
use lines::write_reject;
use prefetch::{prefetch_cap_times, prefetch_deep, prefetch_heap, Parts};

type TimerKey = (u32, u16);

/// One contact of the replay.
struct Slot {
    /// Inline up to 24 bytes: comparing it costs no extra cache miss.
    name: CompactString,
    state: ContactState,
    seen: RecentIds,
}

/// Replays records through the engine, writing tier changes to `out`.
pub struct Replayer<W: Write> {
    engine: Engine,
    topics: TopicMap,
    out: W,
    /// Contact numbers by the digest of the contact id.
    ids: ContactIndex,
    contacts: Vec<Slot>,
    /// Keys are dense (contact number, model): a flat index, no hashing.
    wheel: TimerWheel<TimerKey, DenseIndex>,
    dedupe_window_ms: i64,
    clock: Option<EventTime>,
    fx: Effects,
    polled: Vec<(EventTime, TimerKey)>,
    /// Whose the batch's tier changes are: (contact, end of its changes in
    /// `fx.changes`), in order. The changes stay where the engine put them
    /// until the batch's end writes them.
    owners: Vec<(u32, u32)>,
    /// Decoded lines not applied yet (see [`Self::run`]); the first
    /// `batch.len()` of them have been looked up, and `batch_caps` holds,
    /// per line and model, the capped rules it matches.
    window: Vec<(u64, Result<Event, DecodeError>)>,
    batch: Vec<LookedUp>,
    batch_caps: Vec<u64>,
    due: BinaryHeap<Reverse<(EventTime, TimerKey)>>,
    pub stats: ReplayStats,
}

impl<W: Write> Replayer<W> {
    pub fn new(engine: Engine, topics: TopicMap, dedupe_window_ms: i64, out: W) -> Self {
        let models = engine.rules().models.len();
        Replayer {
            engine,
            topics,
            out,
            ids: ContactIndex::default(),
            contacts: Vec::new(),
            wheel: TimerWheel::with_index(EventTime::MIN, DenseIndex::new(models)),
            dedupe_window_ms,
            clock: None,
            fx: Effects::default(),
            polled: Vec::new(),
            owners: Vec::new(),
            window: Vec::with_capacity(BATCH + AHEAD),
            batch: Vec::new(),
            batch_caps: Vec::new(),
            due: BinaryHeap::new(),
            stats: ReplayStats::default(),
        }
    }

    /// Decodes one line's record; the caller reports the error as a reject.
    pub fn decode(&self, line: &str) -> Result<Event, DecodeError> {
        let rec = parse_line(line)?;
        let kind = self
            .topics
            .kind_of(&rec.topic)
            .ok_or_else(|| DecodeError::UnknownTopic(rec.topic.to_string()))?;
        decode(kind, rec.key.as_deref().map(str::as_bytes), &rec.payload)
    }

    /// Queues a decoded line. Every `BATCH` lines, the queue is applied
    /// in order up to its last `AHEAD` lines (see `run`).
    pub fn push(
        &mut self,
        line_no: u64,
        item: Result<Event, DecodeError>,
        rejects: &mut impl Write,
    ) -> io::Result<()> {
        self.window.push((line_no, item));
        if self.window.len() >= self.batch.len() + BATCH {
            self.run(rejects, false)?;
        }
        Ok(())
    }

    /// Applies every queued line and writes the tier changes.
    pub fn drain(&mut self, rejects: &mut impl Write) -> io::Result<()> {
        self.run(rejects, true)
    }

    /// Applies the queued lines in order, reporting rejects: all of them when
    /// `last`, else all but the last [`AHEAD`], whose prefetching is under
    /// way and goes on with the next lines. Contacts of the new lines are
    /// looked up together first, and each contact's state is prefetched a
    /// few events before it is needed, so that the cache misses of different
    /// events overlap (with each other, and with decoding the next lines).
    fn run(&mut self, rejects: &mut impl Write, last: bool) -> io::Result<()> {
        // Lines held from the last run already have their candidates.
        let held = self.batch.len();
        let models = self.engine.rules().models.len();
        let mut window = std::mem::take(&mut self.window);
        // Candidates by digest only: the ids are compared (`confirm`) once
        // the slots are in cache, just before each event is applied. The
        // index buckets are prefetched first, so their misses overlap.
        for (_, item) in &window[held..] {
            let line = match item {
                Ok(e) => {
                    let urls = self.engine.url_matches(&e.body);
                    self.engine
                        .capped_matches(&e.body, urls, &mut self.batch_caps);
                    LookedUp {
                        idx: u32::MAX,
                        digest: index::digest(&e.contact.0),
                        kind: Some(e.body.kind()),
                        urls,
                    }
                }
                Err(_) => {
                    self.batch_caps.extend(std::iter::repeat_n(0, models));
                    LookedUp::reject()
                }
            };
            self.ids.prefetch(line.digest);
            self.batch.push(line);
        }
        for (k, (_, item)) in window.iter().enumerate().skip(held) {
            if let Ok(e) = item {
                self.batch[k].idx = self.candidate(self.batch[k].digest, &e.contact.0);
            }
        }
        // Stage 0 below prefetches one slot an event, and stalled on each
        // slot's first line (5 % of replay's time). The new lines' first
        // slot lines, and the line of their timer entries (a contact's sit
        // side by side), touched here back to back, have their misses
        // overlap; stage 0 then finds them in cache or under way. (Not a
        // TLB effect: huge pages changed nothing here.)
        for line in &self.batch[held..] {
            if let Some(slot) = self.contacts.get(line.idx as usize) {
                crate::cache::prefetch(slot as *const Slot);
                self.wheel.prefetch_entry(&(line.idx, 0));
            }
        }
        // Software pipeline: while event i is applied, the slot of event
        // i + AHEAD is fetched, what that slot points to a few events later,
        // and what those parts point to a few events after that. Held lines
        // had their first stages issued in the last run.
        if held == 0 {
            for i in 0..AHEAD {
                for stage in 0..=i / STEP {
                    self.prefetch_stage(stage, i - stage * STEP);
                }
            }
        }
        let end = if last {
            window.len()
        } else {
            window.len().saturating_sub(AHEAD)
        };
        // Read where they lie: a decoded line moved out would be copied.
        for (i, (line_no, item)) in window[..end].iter().enumerate() {
            for stage in 0..STAGES {
                self.prefetch_stage(stage, i + AHEAD - stage * STEP);
            }
            self.stats.lines += 1;
            match item {
                Ok(event) => {
                    let line = self.batch[i];
                    let idx = self.confirm(line.idx, line.digest, &event.contact.0);
                    self.apply(idx, event, line.urls)?
                }
                Err(e) => {
                    self.stats.rejected += 1;
                    write_reject(rejects, *line_no, e)?;
                }
            }
        }
        window.drain(..end);
        self.window = window;
        self.batch.drain(..end);
        self.batch_caps.drain(..end * models);
        self.flush_changes()
    }

    /// One stage of prefetching the state of the batch's `i`th event; each
    /// stage reads only what the stage before brought into the cache.
    fn prefetch_stage(&self, stage: usize, i: usize) {
        let Some(&LookedUp { idx, kind, .. }) = self.batch.get(i) else {
            return;
        };
        let Some(slot) = self.contacts.get(idx as usize) else {
            return;
        };
        if stage == 0 {
            prefetch_bytes((slot as *const Slot).cast(), std::mem::size_of::<Slot>());
            return;
        }
        // Only what the event will read: a page walk costs even when
        // prefetched, so one for a part the event leaves alone is waste.
        let Some(kind) = kind else {
            return;
        };
        let models = self.engine.rules().models.len();
        let parts = Parts::new(&self.engine, kind, &self.batch_caps[i * models..][..models]);
        match stage {
            1 => {
                prefetch_heap(&slot.state, slot.seen.heap(), &parts);
                // A model without a predicted change has no timer to move.
                for (m, ms) in slot.state.models.iter().enumerate() {
                    if parts.model(m) && ms.next.is_some() {
                        self.wheel.prefetch_entry(&(idx, m as u16));
                    }
                }
            }
            2 => prefetch_deep(&slot.state, &parts),
            _ => prefetch_cap_times(&slot.state, &parts),
        }
    }

    /// Advances the clock to the event's time and applies it.
    fn apply(&mut self, idx: u32, event: &Event, urls: UrlMatches) -> io::Result<()> {
        let now = self
            .clock
            .map_or(event.occurred_at, |c| c.max(event.occurred_at));
        self.advance_clock(now)?;
        let topic = self.topics.topic_of(event.body.kind());
        let slot = &mut self.contacts[idx as usize];
        if slot
            .seen
            .seen_before(&event.id.0, now, self.dedupe_window_ms)
        {
            self.stats.duplicates += 1;
            return Ok(());
        }
        self.stats.events += 1;
        self.fx.timers.clear();
        self.engine
            .apply_matched(&mut slot.state, event, urls, topic, now, &mut self.fx);
        self.stats.timer_updates += self.fx.timers.len() as u64;
        for t in &self.fx.timers {
            let key = (idx, t.model as u16);
            match t.due {
                Some(due) => self.wheel.insert(key, due),
                None => {
                    self.wheel.cancel(&key);
                }
            }
        }
        self.emit(idx);
        Ok(())
    }

    /// The index of a contact whose id may be `name` (digest `d`), created
    /// if no contact's digest can be `d`. The caller must [`Self::confirm`]
    /// it: another id may share (part of) the digest.
    fn candidate(&mut self, d: u64, name: &str) -> u32 {
        match self.ids.first(d) {
            Some(i) => i,
            None => self.new_slot(d, name.into()),
        }
    }

    /// The index of contact `name` (digest `d`), given its [`Self::candidate`].
    fn confirm(&mut self, candidate: u32, d: u64, name: &str) -> u32 {
        if self.contacts[candidate as usize].name == name {
            return candidate;
        }
        let found = self
            .ids
            .matching(d)
            .find(|&i| self.contacts[i as usize].name == name);
        match found {
            Some(i) => i,
            None => self.new_slot(d, name.into()),
        }
    }

    fn new_slot(&mut self, d: u64, name: CompactString) -> u32 {
        self.contacts.push(Slot {
            name,
            state: self.engine.new_contact(),
            seen: RecentIds::default(),
        });
        let n = self.ids.push(d);
        debug_assert_eq!(n as usize + 1, self.contacts.len());
        n
    }

    /// Moves the clock to `to`, firing every timer due at or before it in
    /// (due, contact, model) order.
    pub fn advance(&mut self, to: EventTime) -> io::Result<()> {
        self.advance_clock(to)?;
        self.flush_changes()
    }

    /// [`Self::advance`], leaving the tier changes queued.
    fn advance_clock(&mut self, to: EventTime) -> io::Result<()> {
        if self.clock.is_some_and(|c| c >= to) {
            return Ok(());
        }
        self.polled.clear();
        self.wheel.poll(to, &mut self.polled);
        self.due.extend(self.polled.drain(..).map(Reverse));
        while let Some(Reverse((at, key))) = self.due.pop() {
            self.stats.timers_fired += 1;
            self.fx.timers.clear();
            let state = &mut self.contacts[key.0 as usize].state;
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
            self.emit(key.0);
        }
        self.clock = Some(to);
        Ok(())
    }

    /// Queues the step's tier changes; [`Self::flush_changes`] writes them.
    fn emit(&mut self, idx: u32) {
        let end = self.fx.changes.len() as u32;
        let start = self.owners.last().map_or(0, |&(_, end)| end);
        if end > start {
            self.stats.changes += u64::from(end - start);
            self.owners.push((idx, end));
        }
    }

    /// Writes the queued tier changes, in the order they happened. Done once
    /// a batch, as a stage of its own (the output code stays in cache).
    fn flush_changes(&mut self) -> io::Result<()> {
        let mut start = 0;
        for &(idx, end) in &self.owners {
            let contact = &self.contacts[idx as usize].name;
            for change in &self.fx.changes[start..end as usize] {
                self.engine
                    .published(contact, change)
                    .write_json(&mut self.out, None)?;
                self.out.write_all(b"\n")?;
            }
            start = end as usize;
        }
        self.owners.clear();
        self.fx.changes.clear();
        Ok(())
    }

    pub fn contacts(&self) -> usize {
        self.contacts.len()
    }

    pub fn timers(&self) -> usize {
        self.wheel.len()
    }

    /// Writes the queued tier changes and flushes the output.
    pub fn flush_output(&mut self) -> io::Result<()> {
        self.flush_changes()?;
        self.out.flush()
    }

    /// Flushes the output; the replayer's state is left to process exit,
    /// which frees it faster than dropping it piece by piece.
    pub fn finish(self) -> io::Result<()> {
        let mut this = std::mem::ManuallyDrop::new(self);
        this.flush_changes()?;
        this.out.flush()
    }
}

/// Lines decoded ahead of scoring (see [`Replayer::batch`]).
pub(crate) const BATCH: usize = 64;
/// How many events ahead of the one applied its contact's slot is prefetched.
const AHEAD: usize = STEP * (STAGES - 1);
/// Events between one prefetch stage and the next.
const STEP: usize = 3;
/// Prefetch stages: the slot, what it points to, what those parts point to,
/// and the cap ledgers' times (see [`Replayer::prefetch_stage`]).
const STAGES: usize = 4;

/// Feeds every line of `input` to the replayer, reporting rejects to `rejects`.
pub fn replay_lines<W: Write>(
    replayer: &mut Replayer<W>,
    input: impl BufRead,
    rejects: &mut impl Write,
    progress: &mut Progress,
) -> io::Result<()> {
    let mut line_no = 0u64;
    let mut lines = Lines::new(input);
    while let Some(line) = lines.next_line()? {
        line_no += 1;
        let decoded = match line {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => replayer.decode(text.trim_end_matches('\r')),
            Err(e) => Err(e),
        };
        replayer.push(line_no, decoded, rejects)?;
        if line_no % BATCH as u64 == 0 {
            progress.tick(&replayer.stats);
        }
    }
    replayer.drain(rejects)
}

#[cfg(test)]
mod tests;
