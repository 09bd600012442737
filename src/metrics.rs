//! Every Prometheus metric the service exports, defined in one place.
//!
//! Names follow `leadscore_<noun>_<unit|total>`; labels come from small
//! fixed sets (topic, partition, reason, model, tier, cause), never a contact
//! id. The processing thread updates counters once per batch from the
//! processor's running counts ([`Metrics::record_stats`]); gauges read from
//! RocksDB are refreshed when `/metrics` is scraped. Nothing here may import
//! rdkafka or rocksdb: callers pass plain numbers.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::processor::ProcessStats;
use crate::rules::RuleSet;

pub struct Metrics {
    registry: Registry,
    pub events_consumed: IntCounterVec,
    pub events_rejected: IntCounterVec,
    pub duplicates: IntCounter,
    pub tier_changes: IntCounterVec,
    pub processing_duration: Histogram,
    pub event_age: Histogram,
    pub consumer_lag: IntGaugeVec,
    pub outbox_pending: IntGauge,
    pub published: IntCounter,
    pub publish_failures: IntCounter,
    pub timers_pending: IntGauge,
    pub timers_loaded: IntGauge,
    pub timers_fired: IntCounter,
    pub timer_delay: Histogram,
    pub contacts: IntGauge,
    pub rocksdb_live_data: IntGauge,
    pub rocksdb_block_cache: IntGauge,
    pub rebalances: IntCounterVec,
    pub partitions_assigned: IntGauge,
    pub ready: IntGauge,
}

/// Every metric name, for checks that dashboards and alerts use only these.
pub const NAMES: &[&str] = &[
    "leadscore_events_consumed_total",
    "leadscore_events_rejected_total",
    "leadscore_duplicates_skipped_total",
    "leadscore_tier_changes_total",
    "leadscore_processing_duration_seconds",
    "leadscore_event_age_seconds",
    "leadscore_consumer_lag_messages",
    "leadscore_outbox_pending_messages",
    "leadscore_published_messages_total",
    "leadscore_publish_failures_total",
    "leadscore_timers_pending",
    "leadscore_timers_loaded",
    "leadscore_timers_fired_total",
    "leadscore_timer_delay_seconds",
    "leadscore_contacts",
    "leadscore_rocksdb_live_data_size_bytes",
    "leadscore_rocksdb_block_cache_usage_bytes",
    "leadscore_rebalances_total",
    "leadscore_partitions_assigned",
    "leadscore_ready",
    "leadscore_build_info",
];

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric name");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric name");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric name");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric name");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    let h = Histogram::with_opts(opts).expect("valid metric name");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

impl Metrics {
    /// All metrics, registered; `build_info` carries the crate version.
    pub fn new() -> Metrics {
        let r = Registry::new();
        gauge_vec(
            &r,
            "leadscore_build_info",
            "Build information; always 1.",
            &["version"],
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            r.register(Box::new(process)).expect("registered once");
        }
        let latency = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let age = [
            0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0, 21600.0, 86400.0,
        ];
        let m = Metrics {
            events_consumed: counter_vec(
                &r,
                "leadscore_events_consumed_total",
                "Input records consumed and applied, by topic (accepted, rejected and duplicates).",
                &["topic"],
            ),
            events_rejected: counter_vec(
                &r,
                "leadscore_events_rejected_total",
                "Input records sent to the dead-letter topic, by topic and reason.",
                &["topic", "reason"],
            ),
            duplicates: counter(
                &r,
                "leadscore_duplicates_skipped_total",
                "Input events skipped because their event_id was already scored.",
            ),
            tier_changes: counter_vec(
                &r,
                "leadscore_tier_changes_total",
                "Tier changes written to the outbox, by model, tiers and cause.",
                &["model", "from", "to", "cause"],
            ),
            processing_duration: histogram(
                &r,
                "leadscore_processing_duration_seconds",
                "From the first record of a batch received to the batch committed to the state store.",
                &latency,
            ),
            event_age: histogram(
                &r,
                "leadscore_event_age_seconds",
                "Wall clock minus occurred_at when an event is scored.",
                &age,
            ),
            consumer_lag: gauge_vec(
                &r,
                "leadscore_consumer_lag_messages",
                "Records behind the end of each input topic-partition (librdkafka statistics).",
                &["topic", "partition"],
            ),
            outbox_pending: gauge(
                &r,
                "leadscore_outbox_pending_messages",
                "Output and dead-letter records written but not yet acknowledged by the broker.",
            ),
            published: counter(
                &r,
                "leadscore_published_messages_total",
                "Outbox records acknowledged by the broker.",
            ),
            publish_failures: counter(
                &r,
                "leadscore_publish_failures_total",
                "Outbox records the broker refused or failed to take (each is sent again).",
            ),
            timers_pending: gauge(
                &r,
                "leadscore_timers_pending",
                "Timers in the persisted index (RocksDB estimate).",
            ),
            timers_loaded: gauge(
                &r,
                "leadscore_timers_loaded",
                "Timers held in the in-memory wheels (the near future).",
            ),
            timers_fired: counter(
                &r,
                "leadscore_timers_fired_total",
                "Timers fired (a tier change or a re-prediction).",
            ),
            timer_delay: histogram(
                &r,
                "leadscore_timer_delay_seconds",
                "Wall clock minus a timer's due instant when it fires (wall clock mode).",
                &latency,
            ),
            contacts: gauge(
                &r,
                "leadscore_contacts",
                "Contacts in the state store (RocksDB estimate).",
            ),
            rocksdb_live_data: gauge(
                &r,
                "leadscore_rocksdb_live_data_size_bytes",
                "RocksDB estimated live data size, all column families.",
            ),
            rocksdb_block_cache: gauge(
                &r,
                "leadscore_rocksdb_block_cache_usage_bytes",
                "RocksDB shared block cache usage.",
            ),
            rebalances: counter_vec(
                &r,
                "leadscore_rebalances_total",
                "Consumer group rebalances, by kind (assigned, revoked).",
                &["kind"],
            ),
            partitions_assigned: gauge(
                &r,
                "leadscore_partitions_assigned",
                "Partitions this instance holds.",
            ),
            ready: gauge(
                &r,
                "leadscore_ready",
                "1 once partitions are assigned and their state and timers loaded.",
            ),
            registry: r,
        };
        for kind in ["assigned", "revoked"] {
            m.rebalances.with_label_values(&[kind]);
        }
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// Adds what the processor counted since `last` (then `last` = `now`).
    pub fn record_stats(&self, rules: &RuleSet, last: &mut ProcessStats, now: &ProcessStats) {
        self.duplicates
            .inc_by(now.duplicates.saturating_sub(last.duplicates));
        self.timers_fired
            .inc_by(now.timers_fired.saturating_sub(last.timers_fired));
        for ((topic, reason), n) in &now.rejected {
            let before = last
                .rejected
                .get(&(topic.clone(), *reason))
                .copied()
                .unwrap_or(0);
            if *n > before {
                self.events_rejected
                    .with_label_values(&[topic.as_str(), reason])
                    .inc_by(n - before);
            }
        }
        for (labels, n) in &now.changes {
            let before = last.changes.get(labels).copied().unwrap_or(0);
            if *n > before {
                let (m, from, to, cause) = *labels;
                let Some(model) = rules.models.get(m as usize) else {
                    continue;
                };
                let tier = |i: u16| model.tiers.get(i as usize).map_or("", |t| t.name.as_str());
                self.tier_changes
                    .with_label_values(&[model.name.as_str(), tier(from), tier(to), cause])
                    .inc_by(n - before);
            }
        }
        last.clone_from(now);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
