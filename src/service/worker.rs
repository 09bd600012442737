//! The processing thread of `leadscore run`: poll, batch, apply in one state
//! write, publish the outbox, follow rebalances, and stop cleanly.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus::IntCounter;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, info_span, warn};

use super::kafka::{ConsumerCtx, Rebalance};
use super::merge::{self, Merger};
use super::sink::{Sink, SinkStats};
use super::{wall_now, RunReport, DRAIN_LIMIT, PROGRESS_EVERY};
use crate::config::Config;
use crate::http::Shared;
use crate::processor::{Decoded, InputRecord, ProcessStats, Processor};
use crate::state::RocksStateStore;
use crate::time::EventTime;

pub(super) struct Service<'c> {
    pub(super) config: &'c Config,
    /// What the HTTP side reads: health, partitions, metrics.
    pub(super) shared: Arc<Shared>,
    /// `leadscore_events_consumed_total` of each input topic.
    pub(super) consumed: Vec<(String, IntCounter)>,
    /// Counts already exported as metrics.
    pub(super) last_stats: ProcessStats,
    pub(super) last_sink: SinkStats,
    /// When the first record not yet committed was received.
    pub(super) first_received: Option<Instant>,
    pub(super) processor: Processor<RocksStateStore>,
    pub(super) consumer: BaseConsumer<ConsumerCtx<RocksStateStore>>,
    pub(super) sink: Sink,
    pub(super) merger: Option<Merger>,
    pub(super) batch: Vec<Decoded>,
    pub(super) batch_started: Option<Instant>,
    /// Topic-partitions paused because the merge holds too many of their records.
    pub(super) paused: Vec<(String, u32)>,
    /// When a record last arrived (or partitions were last assigned).
    pub(super) last_input: Instant,
    /// The lowest partition clock, for expiring remembered event ids.
    pub(super) watermark: Arc<AtomicI64>,
    /// First record received, last batch applied.
    pub(super) busy: Option<(Instant, Instant)>,
}

/// How long `--idle-exit` waits for the broker's answer before it counts
/// the broker as gone.
const BROKER_ANSWER_WITHIN: Duration = Duration::from_secs(2);

impl Service<'_> {
    pub(super) fn run(
        &mut self,
        stop: &AtomicBool,
        idle_exit: Option<Duration>,
    ) -> anyhow::Result<RunReport> {
        let mut last_progress = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            self.shared.beat();
            if idle_exit.is_some_and(|idle| self.idle_for(idle)) {
                info!("no input for the idle-exit time: stopping");
                break;
            }
            if self.sink.backlogged() {
                // The broker is behind: publish before taking more input.
                let done = self.sink.poll(Duration::from_millis(50));
                self.processor.published(&done)?;
                continue;
            }
            // With a batch open, take only what is already fetched: the batch
            // is applied as soon as the local queue runs dry (low latency),
            // and grows up to batch.max_events / max_wait under load.
            let timeout = if self.batch.is_empty() {
                self.poll_timeout()
            } else {
                Duration::ZERO
            };
            let mut drained = true;
            match self.consumer.poll(timeout) {
                Some(Ok(msg)) => {
                    let rec = InputRecord {
                        topic: msg.topic().to_string(),
                        partition: u32::try_from(msg.partition()).unwrap_or_default(),
                        offset: msg.offset(),
                        key: msg.key().map(<[u8]>::to_vec),
                        payload: msg.payload().map(<[u8]>::to_vec),
                    };
                    drop(msg);
                    drained = false;
                    self.last_input = Instant::now();
                    self.busy.get_or_insert((self.last_input, self.last_input));
                    self.first_received.get_or_insert(self.last_input);
                    self.take(rec);
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => self.consumer.context().consume_error(&e),
            }
            self.rebalances()?;
            self.release();
            self.step(drained)?;
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                let s = &self.processor.stats;
                info!(
                    consumed = s.consumed,
                    tier_changes = s.tier_changes,
                    duplicates = s.duplicates,
                    rejected = s.rejected.values().sum::<u64>(),
                    outbox_pending = self.sink.pending(),
                    timers_loaded = self.processor.timers_loaded(),
                    "progress"
                );
            }
        }
        self.shutdown()
    }

    /// Caught up: partitions held, nothing arrived for `idle` while the
    /// broker answered, nothing pending.
    fn idle_for(&mut self, idle: Duration) -> bool {
        let quiet = !self.processor.assigned().is_empty()
            && self.last_input.elapsed() >= idle
            && self.batch.is_empty()
            && self.merger.as_ref().is_none_or(Merger::is_empty)
            && self.sink.pending() == 0;
        if !quiet {
            return false;
        }
        match self.ask_broker() {
            Ok(()) => true,
            Err(e) => {
                // An outage is not the end of the input: wait a whole idle
                // time again, and stop only when the broker answers.
                warn!("no input for the idle-exit time, but the broker does not answer ({e}): waiting for it");
                self.last_input = Instant::now();
                false
            }
        }
    }

    /// One round trip to the leader of a held input partition.
    fn ask_broker(&self) -> Result<(), KafkaError> {
        let held = self.processor.assigned();
        let (Some(partition), Some((topic, _))) = (held.first(), self.consumed.first()) else {
            return Ok(());
        };
        self.consumer
            .fetch_watermarks(topic, *partition as i32, BROKER_ANSWER_WITHIN)
            .map(drop)
    }

    /// A consumed record joins the batch (through the merge with the event clock).
    fn take(&mut self, rec: InputRecord) {
        let now = self
            .processor
            .clock(rec.partition)
            .unwrap_or(EventTime::MIN)
            .max(wall_now());
        let event = self.processor.decode(&rec, now);
        let Some(m) = &mut self.merger else {
            self.push_batch((rec, event));
            return;
        };
        let pause = (m.queued(&rec.topic, rec.partition) + 1 >= merge::PAUSE_AT)
            .then(|| (rec.topic.clone(), rec.partition));
        if let Some(item) = m.push((rec, event)) {
            self.push_batch(item);
        }
        if let Some(key) = pause.filter(|k| !self.paused.contains(k)) {
            self.set_paused(&key.0, key.1, true);
            self.paused.push(key);
        }
    }

    fn push_batch(&mut self, item: Decoded) {
        self.batch.push(item);
        self.batch_started.get_or_insert_with(Instant::now);
    }

    fn set_paused(&self, topic: &str, partition: u32, pause: bool) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition as i32);
        let result = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        if let Err(e) = result {
            warn!(topic, partition, "pause/resume: {e}");
        }
    }

    /// Event clock: moves merged records that may go into the batch.
    fn release(&mut self) {
        let Some(m) = &mut self.merger else { return };
        let before = self.batch.len();
        m.pop_ready(Instant::now(), &mut self.batch);
        if self.batch.len() > before {
            self.batch_started.get_or_insert_with(Instant::now);
        }
        let (merger, paused) = (&*m, std::mem::take(&mut self.paused));
        let (resume, still): (Vec<_>, Vec<_>) = paused
            .into_iter()
            .partition(|(t, p)| merger.queued(t, *p) <= merge::RESUME_AT);
        self.paused = still;
        for (t, p) in resume {
            self.set_paused(&t, p, false);
        }
    }

    fn poll_timeout(&self) -> Duration {
        // Only called with no batch open (see `run`).
        let mut timeout = Duration::from_millis(100);
        if let Some(release) = self.merger.as_ref().and_then(Merger::next_release) {
            timeout = timeout.min(release.saturating_duration_since(Instant::now()));
        }
        if self.merger.is_none() {
            if let Some(due) = self.processor.next_due() {
                let ms = due.millis().saturating_sub(wall_now().millis()).max(0);
                timeout = timeout.min(Duration::from_millis(ms as u64));
            }
        }
        if self.sink.pending() > 0 {
            timeout = timeout.min(Duration::from_millis(10));
        }
        timeout
    }

    /// Applies the batch when full or old enough (or `force`), fires due
    /// timers (wall clock) and serves delivery reports.
    fn step(&mut self, force: bool) -> anyhow::Result<()> {
        let full = self.batch.len() >= self.config.batch.max_events;
        let old = self
            .batch_started
            .is_some_and(|s| s.elapsed() >= self.config.batch.max_wait);
        if !self.batch.is_empty() && (full || old || force) {
            self.apply_batch()?;
        }
        if self.merger.is_none() {
            let now = wall_now();
            if self.processor.next_due().is_some_and(|d| d <= now) {
                let out = self.processor.fire_due(now)?;
                self.sink.send(out);
                self.export_counts();
            }
        }
        let done = self.sink.poll(Duration::ZERO);
        self.processor.published(&done)?;
        self.export_sink();
        if let Some(low) = self.processor.min_clock() {
            self.watermark.store(low.millis(), Ordering::Relaxed);
        }
        Ok(())
    }

    fn apply_batch(&mut self) -> anyhow::Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_started = None;
        let span = info_span!("batch", records = batch.len());
        let _enter = span.enter();
        // Each topic-partition's next offset, for Kafka (lag monitoring only:
        // the store holds the offsets that count). Records of a
        // topic-partition come in offset order, so the last one wins.
        let mut next: Vec<(&str, u32, i64)> = Vec::new();
        for (rec, _) in &batch {
            match next
                .iter_mut()
                .find(|(t, p, _)| *p == rec.partition && *t == rec.topic)
            {
                Some(entry) => entry.2 = rec.offset + 1,
                None => next.push((&rec.topic, rec.partition, rec.offset + 1)),
            }
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in next {
            let _ = tpl.add_partition_offset(topic, partition as i32, Offset::Offset(offset));
        }
        let consumed = self.observe_batch(&batch);
        let out = self
            .processor
            .process_decoded(batch, wall_now())
            .context("applying a batch to the state store")?;
        if let Some((_, last)) = &mut self.busy {
            *last = Instant::now();
        }
        if let Some(first) = self.first_received.take() {
            self.shared
                .metrics
                .processing_duration
                .observe(first.elapsed().as_secs_f64());
        }
        self.sink.send(out);
        self.export_counts();
        // Counted once the batch's outcome (rejects, duplicates, tier
        // changes) is exported too: a scrape that sees these records
        // consumed sees what became of them.
        for ((_, counter), n) in self.consumed.iter().zip(consumed) {
            counter.inc_by(n);
        }
        if let Err(e) = self.consumer.store_offsets(&tpl) {
            warn!("storing offsets for commit: {e}");
        }
        Ok(())
    }

    /// Applies partition changes reported by the consumer callbacks.
    fn rebalances(&mut self) -> anyhow::Result<()> {
        let events = self.consumer.context().take_events();
        if events.is_empty() {
            return Ok(());
        }
        // Records already taken belong to the partitions held until now.
        if !self.batch.is_empty() {
            self.apply_batch()?;
        }
        for event in events {
            match event {
                Rebalance::Assigned(partitions) => {
                    self.last_input = Instant::now();
                    let now = wall_now();
                    for p in partitions {
                        let (_, pending) = self
                            .processor
                            .assign(p, now)
                            .with_context(|| format!("loading partition {p}"))?;
                        if !pending.is_empty() {
                            info!(partition = p, entries = pending.len(), "re-sending outbox");
                        }
                        self.sink.send(pending);
                    }
                    info!(
                        partitions = ?self.processor.assigned(),
                        timers_loaded = self.processor.timers_loaded(),
                        "ready"
                    );
                    self.rebalanced("assigned", true);
                }
                Rebalance::Revoked(partitions) => {
                    for p in partitions {
                        self.processor.revoke(p);
                        if let Some(m) = &mut self.merger {
                            m.drop_partition(p);
                        }
                        self.paused.retain(|(_, x)| *x != p);
                    }
                    self.rebalanced("revoked", false);
                }
                Rebalance::Failed(e) => anyhow::bail!("rebalance: {e}"),
            }
        }
        Ok(())
    }

    fn shutdown(&mut self) -> anyhow::Result<RunReport> {
        info!("stopping: finishing the batch and publishing pending output");
        self.shared.set_ready(false);
        if !self.batch.is_empty() {
            self.apply_batch()?;
        }
        let (done, clean) = self.sink.drain(DRAIN_LIMIT);
        self.processor.published(&done)?;
        if !clean {
            warn!(
                pending = self.sink.pending(),
                "the broker did not acknowledge all output in time; it stays in the outbox and is sent on the next start"
            );
        }
        // Not waited for: a broker outage would hold it until the session
        // times out; the consumer's close sends it if it can.
        match self.consumer.commit_consumer_state(CommitMode::Async) {
            // Nothing new since the last auto-commit.
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            // Nothing is lost: the offsets that count are in the state store.
            Err(e) => warn!("final offset commit to Kafka: {e}"),
        }
        let s = &self.processor.stats;
        let report = RunReport {
            consumed: s.consumed,
            rejected: s.rejected.values().sum(),
            duplicates: s.duplicates,
            tier_changes: s.tier_changes,
            published: self.sink.stats.published,
            outbox_left: self.sink.pending(),
            busy_ms: self
                .busy
                .map_or(0, |(first, last)| (last - first).as_millis() as u64),
        };
        info!(?report, "stopped");
        Ok(report)
    }
}
