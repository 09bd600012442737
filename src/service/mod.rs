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
mod telemetry;
mod throttle;
mod worker;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::BaseProducer;
use tracing::{error, info, warn};

use crate::config::{ClockMode, Config};
use crate::event::{EventKind, TopicMap};
use crate::http::{router, Shared};
use crate::processor::{ProcessStats, Processor, ProcessorSettings};
use crate::rules::{Layout, RuleSet};
use crate::scoring::Engine;
use crate::state::{Batch, DedupeExpiry, RocksStateStore, StateStore};
use crate::time::EventTime;

use kafka::{ConsumerCtx, ProducerCtx};
use merge::Merger;
use sink::{Sink, SinkStats};
use worker::Service;

/// How long shutdown waits for the broker to acknowledge pending output.
const DRAIN_LIMIT: Duration = Duration::from_secs(20);
/// How long shutdown waits for the Kafka clients to close, after the drain:
/// together within a 30 s grace period (Kubernetes' default).
const CLOSE_LIMIT: Duration = Duration::from_secs(5);
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
        max_message_bytes: kafka::max_message_bytes(config),
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
/// stops the service with them); the threads it returns are told to stop
/// and joined once the service has, before the embedded broker goes, so
/// that their Kafka clients close while it still answers.
pub fn serve(
    config: Config,
    rules: RuleSet,
    idle_exit: Option<Duration>,
    on_start: impl FnOnce(&str, Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>>,
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
    let helpers = on_start(&brokers, stop.clone());
    let stopped = stop.clone();
    let report = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || run(&config, rules, &brokers, &stop, idle_exit, shared))
            .await
            .context("the processing thread panicked")?
    });
    stopped.store(true, Ordering::Relaxed);
    for helper in helpers {
        // A helper that panicked has said so on stderr; the service's report stands.
        let _ = helper.join();
    }
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

/// Checks that `rules` read the state in `dir` as it was written: state
/// refers to models, tiers and engagement rules by position (see
/// [`Layout`]). With `record`, notes the rules' layout for the next start.
pub fn adopt_rules(
    store: &impl StateStore,
    rules: &RuleSet,
    dir: &Path,
    record: bool,
) -> anyhow::Result<()> {
    let layout = Layout::of(rules);
    let stored = store
        .rules_layout()
        .with_context(|| format!("reading state in {}", dir.display()))?;
    if let Some(why) = stored.as_ref().and_then(|old| old.incompatibility(&layout)) {
        anyhow::bail!(
            "the rules do not fit the state in {}: {why}. The state refers to models, tiers \
             and engagement rules by position: put the old ones back where they were (new \
             engagement rules may follow a model's last one), or start with an empty state \
             directory",
            dir.display()
        );
    }
    if record && stored.as_ref() != Some(&layout) {
        let mut batch = Batch::default();
        batch.put_rules_layout(&layout);
        store
            .commit(batch)
            .with_context(|| format!("writing state in {}", dir.display()))?;
    }
    Ok(())
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
    adopt_rules(&*store, &rules, &config.state.dir, true)?;
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
    let report = service.run(stop, idle_exit);
    close_clients(service);
    report
}

/// Closes the Kafka clients, waiting at most [`CLOSE_LIMIT`]: a consumer
/// leaving its group waits for a coordinator that an outage may have taken
/// away, and a stop must still end in bounded time. What they may still
/// hold is not needed: the final offset commit is for lag monitoring (the
/// offsets that count are in the state store), and the outbox keeps output.
fn close_clients(service: Service<'_>) {
    let Service { consumer, sink, .. } = service;
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let closing = std::thread::Builder::new()
        .name("kafka-close".into())
        .spawn(move || {
            drop(consumer);
            drop(sink);
            let _ = closed_tx.send(());
        });
    if closing.is_ok() && closed_rx.recv_timeout(CLOSE_LIMIT).is_err() {
        warn!(
            "the Kafka clients did not close within {}s (is the broker unreachable?); leaving them",
            CLOSE_LIMIT.as_secs()
        );
    }
}
