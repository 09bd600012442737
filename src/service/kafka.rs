//! librdkafka adapters: client settings, the consumer context that resumes
//! partitions from the offsets in the state store, and the producer context
//! that reports deliveries. Callbacks run inside `poll` on the processing
//! thread, never on the tokio runtime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::IntGaugeVec;
use serde::Deserialize;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::throttle::Throttle;
use crate::config::Config;
use crate::state::StateStore;

/// Settings of the consumer; `kafka.consumer` entries override them.
pub fn consumer_config(config: &Config, brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", &config.kafka.group_id)
        // Offsets live in the state store; Kafka gets them for lag only.
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Co-partitioned input topics: partition N of every topic together.
        .set("partition.assignment.strategy", "range")
        // Brokers that hold a fetch for the full wait (Tansu) would add
        // 500 ms of latency at librdkafka's default.
        .set("fetch.wait.max.ms", "20")
        .set("fetch.queue.backoff.ms", "20")
        // Consumer lag for /metrics.
        .set("statistics.interval.ms", "5000");
    for (k, v) in &config.kafka.consumer {
        c.set(k, v);
    }
    c
}

/// Settings of the producer; `kafka.producer` entries override them.
pub fn producer_config(config: &Config, brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        // Retries keep order and never duplicate within a session.
        .set("enable.idempotence", "true")
        // Never give up on a message while the broker is away: it stays in
        // the outbox until acknowledged.
        .set("message.timeout.ms", "0")
        .set("linger.ms", "5");
    for (k, v) in &config.kafka.producer {
        c.set(k, v);
    }
    c
}

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// The largest record the producer may send: its `message.max.bytes`, as
/// `kafka.producer` sets it or librdkafka's default (a value librdkafka
/// refuses stops the service when the producer is made, before this counts).
pub fn max_message_bytes(config: &Config) -> usize {
    let set = config.kafka.producer.get("message.max.bytes");
    set.and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
}

fn log_librdkafka(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => error!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Warning => warn!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => info!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Debug => debug!(facility, "librdkafka: {message}"),
    }
}

/// librdkafka keeps reconnecting on its own: say so (once per period of
/// each error, as an outage repeats them every few milliseconds), don't exit.
fn client_error(quiet: &Throttle, error: &KafkaError, reason: &str) {
    if let Some(more) = quiet.admit(&error.to_string()) {
        warn!(%error, "kafka: {reason} (retrying with backoff){more}");
    }
}

/// A partition change seen by the consumer, handled by the processing loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    Assigned(Vec<u32>),
    Revoked(Vec<u32>),
    /// The offsets could not be read from the store: stop.
    Failed(String),
}

/// Consumer callbacks: on assignment, every input topic-partition starts
/// at the offset stored with the state it produced.
pub struct ConsumerCtx<S: StateStore> {
    store: Arc<S>,
    events: Mutex<Vec<Rebalance>>,
    /// Where consumer lag from librdkafka's statistics goes.
    lag: Option<IntGaugeVec>,
    quiet: Throttle,
}

impl<S: StateStore> ConsumerCtx<S> {
    pub fn new(store: Arc<S>) -> Self {
        ConsumerCtx {
            store,
            events: Mutex::new(Vec::new()),
            lag: None,
            quiet: Throttle::default(),
        }
    }

    /// Reports each topic-partition's consumer lag (from librdkafka's
    /// statistics, every `statistics.interval.ms`) into `gauge`.
    pub fn with_lag(mut self, gauge: IntGaugeVec) -> Self {
        self.lag = Some(gauge);
        self
    }

    /// A consume error, which librdkafka also reports through `error` while
    /// it retries: logged as repeated warnings are.
    pub fn consume_error(&self, error: &KafkaError) {
        if let Some(more) = self.quiet.admit(&format!("consume: {error}")) {
            warn!("consume: {error} (retrying){more}");
        }
    }

    /// The partition changes since the last call.
    pub fn take_events(&self) -> Vec<Rebalance> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push(&self, event: Rebalance) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }

    fn partitions(tpl: &TopicPartitionList) -> Vec<u32> {
        let mut ps: Vec<u32> = tpl
            .elements()
            .iter()
            .filter_map(|e| u32::try_from(e.partition()).ok())
            .collect();
        ps.sort_unstable();
        ps.dedup();
        ps
    }

    /// Sets each topic-partition's start to its stored offset.
    fn resume_points(&self, tpl: &mut TopicPartitionList) -> Result<(), String> {
        let targets: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for (topic, partition) in targets {
            let p = u32::try_from(partition).map_err(|_| format!("partition {partition}"))?;
            let stored = self
                .store
                .offset(p, &topic)
                .map_err(|e| format!("{topic}/{partition}: {e}"))?;
            if let Some(next) = stored {
                tpl.set_partition_offset(&topic, partition, Offset::Offset(next))
                    .map_err(|e| format!("{topic}/{partition}: {e}"))?;
            }
        }
        Ok(())
    }
}

impl<S: StateStore> ClientContext for ConsumerCtx<S> {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&self.quiet, &error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        let Some(gauge) = &self.lag else { return };
        match serde_json::from_slice::<LagStats>(statistics) {
            Ok(stats) => {
                gauge.reset();
                for (topic, t) in &stats.topics {
                    for (partition, p) in &t.partitions {
                        // "-1" is librdkafka's internal unassigned partition;
                        // a negative lag is not known yet.
                        if partition.starts_with('-') || p.consumer_lag < 0 {
                            continue;
                        }
                        gauge
                            .with_label_values(&[topic.as_str(), partition.as_str()])
                            .set(p.consumer_lag);
                    }
                }
            }
            Err(e) => warn!("librdkafka statistics: {e}"),
        }
    }
}

/// The part of librdkafka's statistics JSON read for consumer lag.
#[derive(Debug, Deserialize)]
struct LagStats {
    #[serde(default)]
    topics: HashMap<String, LagTopic>,
}

#[derive(Debug, Deserialize)]
struct LagTopic {
    #[serde(default)]
    partitions: HashMap<String, LagPartition>,
}

#[derive(Debug, Deserialize)]
struct LagPartition {
    #[serde(default = "unknown_lag")]
    consumer_lag: i64,
}

fn unknown_lag() -> i64 {
    -1
}

impl<S: StateStore> ConsumerContext for ConsumerCtx<S> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let span = tracing::info_span!("rebalance");
        let _enter = span.enter();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = self.resume_points(tpl) {
                    error!("cannot read stored offsets: {e}");
                    self.push(Rebalance::Failed(e));
                    return;
                }
                let partitions = Self::partitions(tpl);
                info!(?partitions, "assigned");
                if let Err(e) = consumer.assign(tpl) {
                    error!("assign failed: {e}");
                }
                self.push(Rebalance::Assigned(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions = Self::partitions(tpl);
                info!(?partitions, "revoked");
                self.push(Rebalance::Revoked(partitions));
                if let Err(e) = consumer.unassign() {
                    error!("unassign failed: {e}");
                }
            }
            other => {
                error!(?other, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }
}

/// One acknowledged (or failed) record, by the id it was sent with: an
/// outbox entry's (partition, seq), or `produce`'s (0, line number).
pub type Delivery = ((u32, u64), Result<(), String>);

/// Producer callbacks: deliveries are queued for the sender to take.
#[derive(Default)]
pub struct ProducerCtx {
    acks: Mutex<Vec<Delivery>>,
    quiet: Throttle,
}

impl ProducerCtx {
    pub fn take_acks(&self, into: &mut Vec<Delivery>) {
        into.append(&mut self.acks.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl ClientContext for ProducerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&self.quiet, &error, reason);
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = Box<(u32, u64)>;

    fn delivery(&self, result: &DeliveryResult<'_>, id: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.to_string()),
        };
        self.acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((*id, outcome));
    }
}
