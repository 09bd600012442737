//! `leadscore produce`: writes replay-format lines (`{"topic","key","value"}`
//! or kcat `-J` envelopes) to Kafka, keyed by contact, so that a file that
//! replays is also a stream the service can consume. Lines that are not
//! envelopes are reported and skipped.

use std::io::BufRead;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde::Deserialize;

use super::kafka::LoggingCtx;
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
    let producer: BaseProducer<LoggingCtx> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .create_with_context(LoggingCtx::default())
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
        loop {
            let mut record = BaseRecord::to(&rec.topic).payload(rec.payload.as_ref());
            if let Some(k) = &key {
                record = record.key(k.as_str());
            }
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e).with_context(|| format!("line {n}")),
            }
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
    Ok(report)
}
