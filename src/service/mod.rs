//! `leadscore run`: the live service (SPEC §7).
//!
//! One processing thread owns the consumer, the processor (and through it
//! the RocksDB store) and the producer. It polls records, decodes them,
//! batches them (`batch.max_events` / `batch.max_wait`; in event-clock mode
//! after merging the input topics by `occurred_at`), applies each batch in
//! one state write together with the offsets consumed, then hands the
//! outbox entries to the idempotent producer and deletes them from the
//! outbox once acknowledged. Rebalance callbacks run inside `poll` on this
//! thread, so they never block the tokio runtime. A stop request finishes
//! the batch, drains the outbox and commits.

pub mod bench;
pub mod embedded;
pub mod http_load;
pub mod kafka;
pub mod merge;
pub mod produce;
pub mod scores;
pub mod sink;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use prometheus::IntCounter;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::BaseProducer;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, error, info, info_span, warn};

use crate::config::{ClockMode, Config};
use crate::event::{EventKind, TopicMap};
use crate::http::{router, Shared};
use crate::processor::{Decoded, InputRecord, ProcessStats, Processor, ProcessorSettings};
use crate::rules::RuleSet;
use crate::scoring::Engine;
use crate::state::{DedupeExpiry, RocksStateStore};
use crate::time::EventTime;

use kafka::{ConsumerCtx, ProducerCtx, Rebalance};
use merge::Merger;
use sink::{Sink, SinkStats};

/// How long shutdown waits for the broker to acknowledge pending output.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);
/// How far ahead the timer wheel is filled from the timer index.
const TIMER_HORIZON_MS: i64 = 3_600_000;
/// How often a progress line is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Counts at exit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub consumed: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub tier_changes: u64,
    pub published: u64,
    /// Outbox entries still unacknowledged at exit (published on next start).
    pub outbox_left: usize,
    /// From the first record received to the last batch applied.
    pub busy_ms: u64,
}

/// The wall clock as an event time.
pub fn wall_now() -> EventTime {
    EventTime::from_millis(chrono::Utc::now().timestamp_millis())
}

/// The topic map of the configured input topics.
pub fn topic_map(config: &Config) -> TopicMap {
    let t = &config.topics;
    TopicMap::new(&t.page_visits, &t.email, &t.forms, &t.purchases)
}

pub fn processor_settings(config: &Config) -> ProcessorSettings {
    let event_clock = config.clock == ClockMode::Event;
    ProcessorSettings {
        topics: topic_map(config),
        output_topic: config.topics.output.clone(),
        dead_letter_topic: config.topics.dead_letter.clone(),
        max_clock_skew_ms: (!event_clock).then_some(config.max_clock_skew.as_millis() as i64),
        dedupe_window_ms: config.dedupe_window.as_millis() as i64,
        timer_horizon_ms: TIMER_HORIZON_MS,
        event_clock,
    }
}

/// `leadscore run`: starts the embedded broker when none is configured,
/// stops on SIGTERM/SIGINT (or after `idle_exit` without input), and runs
/// the service on a blocking thread of a tokio runtime. `on_start` gets the
/// bootstrap servers once known and the stop flag (demo feeds traffic and
/// stops the service with them).
pub fn serve(
    config: Config,
    rules: RuleSet,
    idle_exit: Option<Duration>,
    on_start: impl FnOnce(&str, Arc<AtomicBool>),
) -> anyhow::Result<RunReport> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let stop = Arc::new(AtomicBool::new(false));
    runtime.spawn(stop_on_signal(stop.clone()));
    let shared = Arc::new(Shared::new(config.clock == ClockMode::Event));
    if !config.http.listen.is_empty() {
        runtime.block_on(start_http(&config.http.listen, shared.clone()))?;
    }
    let embedded = if config.embedded_broker() {
        let topics = config.topics.keyed().map(|(_, name)| name.clone());
        let broker = embedded::EmbeddedBroker::start(&topics, embedded::PARTITIONS)?;
        print_embedded_banner(broker.bootstrap(), &topics);
        Some(broker)
    } else {
        None
    };
    let brokers = embedded
        .as_ref()
        .map_or(config.kafka.brokers.clone(), |b| b.bootstrap().to_string());
    on_start(&brokers, stop.clone());
    let report = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || run(&config, rules, &brokers, &stop, idle_exit, shared))
            .await
            .context("the processing thread panicked")?
    });
    drop(embedded);
    report
}

/// Binds the HTTP port (failing start-up if it cannot) and serves it on the runtime.
async fn start_http(listen: &str, shared: Arc<Shared>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("http.listen: cannot listen on {listen}"))?;
    let address = listener.local_addr().context("http.listen")?;
    info!(%address, "HTTP: /metrics /livez /readyz /v1/contacts/{{id}}");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(shared)).await {
            error!("HTTP server stopped: {e}");
        }
    });
    Ok(())
}

async fn stop_on_signal(stop: Arc<AtomicBool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    stop.store(true, Ordering::Relaxed);
}

fn print_embedded_banner(bootstrap: &str, topics: &[String; 6]) {
    println!("leadscore: no kafka.brokers configured; embedded Kafka broker at {bootstrap}");
    println!(
        "  input topics: {} ({} partitions each); output: {}; dead letters: {}",
        topics[..4].join(", "),
        embedded::PARTITIONS,
        topics[4],
        topics[5]
    );
    println!(
        "  produce events:  leadscore produce --brokers {bootstrap} --file examples/events.jsonl"
    );
    println!(
        "  or with kcat:    kcat -P -b {bootstrap} -t {} -k c-1  (one JSON event per line)",
        topics[0]
    );
    println!(
        "  read tier changes: kcat -C -b {bootstrap} -t {}",
        topics[4]
    );
}

/// Runs the service against `brokers` until `stop` is set (or, with
/// `idle_exit`, until no input arrived for that long).
pub fn run(
    config: &Config,
    rules: RuleSet,
    brokers: &str,
    stop: &AtomicBool,
    idle_exit: Option<Duration>,
    shared: Arc<Shared>,
) -> anyhow::Result<RunReport> {
    let settings = processor_settings(config);
    let watermark = Arc::new(AtomicI64::new(i64::MIN));
    let expiry = DedupeExpiry {
        window_ms: settings.dedupe_window_ms,
        watermark: watermark.clone(),
    };
    let store = Arc::new(
        RocksStateStore::open_with(&config.state.dir, config.memory_budget(), Some(expiry))
            .with_context(|| format!("opening state in {}", config.state.dir.display()))?,
    );
    let topics = settings.topics.clone();
    let engine = Engine::new(rules, settings.dedupe_window_ms);
    shared.set_state(store.clone(), engine.clone());
    let processor = Processor::new(engine, store.clone(), settings);

    let ctx = ConsumerCtx::new(store.clone()).with_lag(shared.metrics.consumer_lag.clone());
    let consumer: BaseConsumer<ConsumerCtx<RocksStateStore>> =
        kafka::consumer_config(config, brokers)
            .create_with_context(ctx)
            .context("creating the Kafka consumer")?;
    let inputs: Vec<String> = EventKind::ALL
        .iter()
        .map(|k| topics.topic_of(*k).to_string())
        .collect();
    let names: Vec<&str> = inputs.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .context("subscribing to the input topics")?;
    let producer: BaseProducer<ProducerCtx> = kafka::producer_config(config, brokers)
        .create_with_context(ProducerCtx::default())
        .context("creating the Kafka producer")?;
    info!(
        brokers,
        group = %config.kafka.group_id,
        clock = ?config.clock,
        state = %config.state.dir.display(),
        "consuming {}",
        inputs.join(", ")
    );

    let consumed = inputs
        .iter()
        .map(|t| {
            let counter = shared
                .metrics
                .events_consumed
                .with_label_values(&[t.as_str()]);
            (t.clone(), counter)
        })
        .collect();
    let mut service = Service {
        config,
        shared,
        consumed,
        last_stats: ProcessStats::default(),
        last_sink: SinkStats::default(),
        first_received: None,
        processor,
        consumer,
        sink: Sink::new(producer),
        merger: (config.clock == ClockMode::Event)
            .then(|| Merger::new(inputs.clone(), config.max_task_idle)),
        batch: Vec::new(),
        batch_started: None,
        paused: Vec::new(),
        last_input: Instant::now(),
        watermark,
        busy: None,
    };
    service.run(stop, idle_exit)
}

struct Service<'c> {
    config: &'c Config,
    /// What the HTTP side reads: health, partitions, metrics.
    shared: Arc<Shared>,
    /// `leadscore_events_consumed_total` of each input topic.
    consumed: Vec<(String, IntCounter)>,
    /// Counts already exported as metrics.
    last_stats: ProcessStats,
    last_sink: SinkStats,
    /// When the first record not yet committed was received.
    first_received: Option<Instant>,
    processor: Processor<RocksStateStore>,
    consumer: BaseConsumer<ConsumerCtx<RocksStateStore>>,
    sink: Sink,
    merger: Option<Merger>,
    batch: Vec<Decoded>,
    batch_started: Option<Instant>,
    /// Topic-partitions paused because the merge holds too many of their records.
    paused: Vec<(String, u32)>,
    /// When a record last arrived (or partitions were last assigned).
    last_input: Instant,
    /// The lowest partition clock, for expiring remembered event ids.
    watermark: Arc<AtomicI64>,
    /// First record received, last batch applied.
    busy: Option<(Instant, Instant)>,
}

impl Service<'_> {
    fn run(&mut self, stop: &AtomicBool, idle_exit: Option<Duration>) -> anyhow::Result<RunReport> {
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
                Some(Err(e)) => warn!("consume: {e} (retrying)"),
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

    /// Caught up: partitions held, nothing arrived for `idle`, nothing pending.
    fn idle_for(&self, idle: Duration) -> bool {
        !self.processor.assigned().is_empty()
            && self.last_input.elapsed() >= idle
            && self.batch.is_empty()
            && self.merger.as_ref().is_none_or(Merger::is_empty)
            && self.sink.pending() == 0
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

    /// After a rebalance: count it, publish the partitions held and readiness.
    fn rebalanced(&self, kind: &str, ready: bool) {
        self.shared
            .metrics
            .rebalances
            .with_label_values(&[kind])
            .inc();
        self.publish_partitions();
        self.shared.set_ready(ready);
    }

    /// Event ages of a batch about to be applied; returns its records per
    /// input topic (in the order of `consumed`).
    fn observe_batch(&self, batch: &[Decoded]) -> [u64; EventKind::ALL.len()] {
        let wall = wall_now().millis();
        let mut counts = [0u64; EventKind::ALL.len()];
        let age = &self.shared.metrics.event_age;
        for (rec, event) in batch {
            if let Some(i) = self.consumed.iter().position(|(t, _)| *t == rec.topic) {
                counts[i] += 1;
            }
            match event {
                Ok(e) => age.observe((wall - e.occurred_at.millis()) as f64 / 1000.0),
                Err(e) => debug!(
                    topic = %rec.topic,
                    partition = rec.partition,
                    offset = rec.offset,
                    reason = e.reason(),
                    "dead letter: {e}"
                ),
            }
        }
        counts
    }

    /// Exports what the processor counted since the last call, the timer
    /// firing delays and the partition clocks.
    fn export_counts(&mut self) {
        let m = &self.shared.metrics;
        m.record_stats(
            self.processor.engine().rules(),
            &mut self.last_stats,
            &self.processor.stats,
        );
        for delay_ms in self.processor.take_timer_delays() {
            m.timer_delay.observe(delay_ms.max(0) as f64 / 1000.0);
        }
        m.timers_loaded.set(self.processor.timers_loaded() as i64);
        self.publish_partitions();
    }

    fn export_sink(&mut self) {
        let m = &self.shared.metrics;
        let now = self.sink.stats;
        m.published
            .inc_by(now.published.saturating_sub(self.last_sink.published));
        m.publish_failures
            .inc_by(now.failures.saturating_sub(self.last_sink.failures));
        self.last_sink = now;
        m.outbox_pending.set(self.sink.pending() as i64);
    }

    /// The partitions held and their clocks, for the contact API.
    fn publish_partitions(&self) {
        let held = self.processor.assigned();
        self.shared.set_partitions(
            held.into_iter()
                .filter_map(|p| self.processor.clock(p).map(|c| (p, c))),
        );
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
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
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
