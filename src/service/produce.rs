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

use super::kafka::{Delivery, ProducerCtx};
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
    let producer: BaseProducer<ProducerCtx> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .create_with_context(ProducerCtx::default())
        .context("creating the Kafka producer")?;
    let mut report = ProduceReport::default();
    let mut undelivered = Undelivered::default();
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
            // The line number comes back with the delivery report.
            let mut record = BaseRecord::with_opaque_to(&rec.topic, Box::new((0, n)))
                .payload(rec.payload.as_ref());
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
        undelivered.count(&producer);
        if last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            eprintln!("produce: {} records", report.produced);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("waiting for the broker to acknowledge")?;
    undelivered.count(&producer);
    if let Some((line, e)) = undelivered.first {
        anyhow::bail!(
            "{} of {} records were not delivered (the first: line {line}: {e})",
            undelivered.records,
            report.produced
        );
    }
    Ok(report)
}

/// Records the broker did not take, so that none is lost without a word.
#[derive(Default)]
struct Undelivered {
    records: u64,
    /// The first one's line and error.
    first: Option<(u64, String)>,
    acks: Vec<Delivery>,
}

impl Undelivered {
    /// Takes the delivery reports the producer has served.
    fn count(&mut self, producer: &BaseProducer<ProducerCtx>) {
        producer.context().take_acks(&mut self.acks);
        for ((_, line), outcome) in self.acks.drain(..) {
            if let Err(e) = outcome {
                self.records += 1;
                self.first.get_or_insert((line, e));
            }
        }
    }
}
