//! What the processing thread exports as it goes: metrics for batches,
//! timers, the outbox and rebalances, and the partitions held for the
//! contact API.

use tracing::debug;

use super::wall_now;
use super::worker::Service;
use crate::event::EventKind;
use crate::processor::Decoded;

impl Service<'_> {
    /// After a rebalance: count it, publish the partitions held and readiness.
    pub(super) fn rebalanced(&self, kind: &str, ready: bool) {
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
    pub(super) fn observe_batch(&self, batch: &[Decoded]) -> [u64; EventKind::ALL.len()] {
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
    pub(super) fn export_counts(&mut self) {
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

    pub(super) fn export_sink(&mut self) {
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
    pub(super) fn publish_partitions(&self) {
        let held = self.processor.assigned();
        self.shared.set_partitions(
            held.into_iter()
                .filter_map(|p| self.processor.clock(p).map(|c| (p, c))),
        );
    }
}
