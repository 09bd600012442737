//! `leadscore produce`: writes replay-format lines (`{"topic","key","value"}`
//! or kcat `-J` envelopes) to Kafka, keyed by contact, so that a file that
//! replays is also a stream the service can consume. Lines that are not
//! envelopes are reported and skipped.

use std::io::BufRead;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use serde::Deserialize;

use super::kafka::{client_error, log_librdkafka};
use super::throttle::Throttle;
use crate::replay::{parse_line, Lines};

/// Counts of a produce run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProduceReport {
    pub produced: u64,
    pub skipped: u64,
}

#[derive(Deserialize)]
struct ContactOnly {
    contact_id: Option<String>,
}

/// Produces every line of `input` to `brokers`; the key is the line's `key`,
/// else the payload's `contact_id` (so a contact's events share a partition).
pub fn produce_lines(brokers: &str, input: impl BufRead) -> anyhow::Result<ProduceReport> {
    let producer: BaseProducer<ProduceCtx> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .create_with_context(ProduceCtx::default())
        .context("creating the Kafka producer")?;
    let mut report = ProduceReport::default();
    let mut last_progress = Instant::now();
    let mut lines = Lines::new(input);
    let mut n = 0u64;
    while let Some(line) = lines.next_line().context("reading input")? {
        n += 1;
        let rec = match line.map(str::trim) {
            Ok("") => continue,
            Ok(text) => parse_line(text),
            Err(e) => Err(e),
        };
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                eprintln!("line {n}: skipped: {e}");
                report.skipped += 1;
                continue;
            }
        };
        let key: Option<String> = rec.key.as_deref().map(str::to_string).or_else(|| {
            serde_json::from_slice::<ContactOnly>(&rec.payload)
                .ok()
                .and_then(|c| c.contact_id)
        });
        let sent = loop {
            let mut record = BaseRecord::to(&rec.topic).payload(rec.payload.as_ref());
            if let Some(k) = &key {
                record = record.key(k.as_str());
            }
            match producer.send(record) {
                Ok(()) => break true,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(10));
                }
                // A bad record, like a bad line: reported, and the rest go on.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    eprintln!("line {n}: skipped: larger than the producer's message.max.bytes");
                    break false;
                }
                Err((e, _)) => return Err(e).with_context(|| format!("line {n}")),
            }
        };
        if !sent {
            report.skipped += 1;
            continue;
        }
        report.produced += 1;
        producer.poll(Duration::ZERO);
        if last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            eprintln!("produce: {} records", report.produced);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("waiting for the broker to acknowledge")?;
    let failed = producer.context().failed();
    if let Some((count, first)) = failed {
        anyhow::bail!(
            "{count} of {} records were not delivered (the first: {first})",
            report.produced
        );
    }
    Ok(report)
}

/// The producer's callbacks: librdkafka's log and errors, and the records
/// the broker did not take, so that none is lost without a word.
#[derive(Default)]
struct ProduceCtx {
    quiet: Throttle,
    /// Records not delivered, and the first one's error.
    failed: Mutex<(u64, Option<String>)>,
}

impl ProduceCtx {
    fn failed(&self) -> Option<(u64, String)> {
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        match &*failed {
            (0, _) => None,
            (n, first) => Some((*n, first.clone().unwrap_or_default())),
        }
    }
}

impl ClientContext for ProduceCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_librdkafka(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&self.quiet, &error, reason);
    }
}

impl ProducerContext for ProduceCtx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.0 += 1;
            failed.1.get_or_insert_with(|| e.to_string());
        }
    }
}
