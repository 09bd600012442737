//! Measurement helpers behind hidden commands, used by
//! `scripts/bench_pipeline.py`: the raw consume rate of the input topics by
//! a bare rdkafka consumer (the floor the pipeline is compared with), and
//! produce → tier-change latency at a steady rate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::event::output::{Cause, TierChanged};
use crate::time::EventTime;

/// Reads `topics` from the beginning with the service's fetch settings
/// until `expect` records arrived; returns (records, seconds from the first
/// record to the last).
pub fn raw_consume(
    brokers: &str,
    topics: &[String],
    expect: u64,
    extra: &[(String, String)],
) -> anyhow::Result<(u64, f64)> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-raw-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "20")
        .set("fetch.queue.backoff.ms", "20");
    for (k, v) in extra {
        cfg.set(k, v);
    }
    let consumer: BaseConsumer = cfg.create()?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names)?;
    let (mut n, mut first, mut bytes) = (0u64, None, 0usize);
    let deadline = Instant::now() + Duration::from_secs(600);
    while n < expect {
        anyhow::ensure!(Instant::now() < deadline, "only {n} of {expect} records");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            bytes += m.payload().map_or(0, <[u8]>::len);
            n += 1;
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    std::hint::black_box(bytes);
    Ok((n, secs))
}

/// A paced load for [`latency`].
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Events per second.
    pub rate: u64,
    /// Seconds of timed traffic.
    pub seconds: u64,
    /// Seconds of the same traffic before, not timed: connections, fetch
    /// sessions and producer ids settle (steady state is what is measured).
    pub warmup_seconds: u64,
    /// The load producer's `linger.ms`.
    pub linger_ms: u64,
}

/// What [`latency`] measured.
#[derive(Debug)]
pub struct Latencies {
    /// Milliseconds from send to arrival, sorted.
    pub ms: Vec<f64>,
    /// Of those, the part after the tier change was handed to the service's
    /// producer (its record's create time; whole milliseconds), sorted.
    pub from_publish_ms: Vec<f64>,
    /// Timed events whose tier change never arrived.
    pub missing: usize,
}

/// Produce → tier-change latency: sends `pace.rate` events per second: one
/// in ten a demo request of a fresh contact on `input` (which moves it from
/// cold to warm under the example rules), the others blog visits on the
/// matching page-visits topic (no change); after the warm-up, times each demo
/// request from its send to the arrival of the tier change it caused on
/// `output` (with `output` equal to `input`: of the event itself, the
/// broker's own round trip).
pub fn latency(brokers: &str, input: &str, output: &str, pace: Pace) -> anyhow::Result<Latencies> {
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-latency-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .set("fetch.queue.backoff.ms", "5")
        .create()?;
    // The reader starts at the current end of every output partition, fixed
    // before any traffic: nothing sent later can be skipped.
    let timeout = Duration::from_secs(30);
    let metadata = consumer.fetch_metadata(Some(output), timeout)?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .filter(|&n| n > 0)
        .with_context(|| format!("topic `{output}` has no partitions"))?;
    let mut start = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        let (_, high) = consumer.fetch_watermarks(output, p, timeout)?;
        start.add_partition_offset(output, p, Offset::Offset(high))?;
    }
    consumer.assign(&start)?;
    let reader = {
        let (sent, done) = (sent.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut lat, mut tail) = (Vec::new(), Vec::new());
            while !done.load(Ordering::Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) else {
                    continue;
                };
                let now = Instant::now();
                let Some(payload) = m.payload() else { continue };
                // A tier change names its cause; with `output` = `input` (the
                // broker's own round trip) the record is the event itself.
                let id = match serde_json::from_slice::<TierChanged>(payload) {
                    Ok(TierChanged {
                        cause: Cause::Event { event_id, .. },
                        ..
                    }) => event_id.into(),
                    Ok(_) => continue,
                    Err(_) => match serde_json::from_slice::<serde_json::Value>(payload) {
                        Ok(v) => v["event_id"].as_str().unwrap_or_default().to_string(),
                        Err(_) => continue,
                    },
                };
                if let Some(t) = sent.lock().unwrap().remove(&id) {
                    lat.push((now - t).as_secs_f64() * 1000.0);
                    if let Some(created) = m.timestamp().to_millis() {
                        let wall = chrono::Utc::now().timestamp_millis();
                        tail.push((wall - created) as f64);
                    }
                }
            }
            (lat, tail)
        })
    };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", pace.linger_ms.to_string())
        .create()?;
    let started = Instant::now();
    let warmup = pace.rate * pace.warmup_seconds;
    let total = warmup + pace.rate * pace.seconds;
    // With `output` = `input` (the broker's round trip) every event is timed.
    let echo = input == output;
    let visits = input.replace("form-submissions", "page-visits");
    let run = format!("{}", std::process::id());
    for n in 0..total {
        let due = started + Duration::from_secs_f64(n as f64 / pace.rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait); // pacing the load, not synchronisation
        }
        let at = EventTime::from_millis(chrono::Utc::now().timestamp_millis()).to_rfc3339();
        let id = format!("lat-{run}-{n}");
        // One event in ten is a demo request of a new contact (a tier change,
        // timed after the warm-up); the others are blog visits of known
        // contacts (no change).
        let (topic, contact, payload) = if echo || n % 10 == 0 {
            let contact = format!("lat-{run}-c{n}");
            let payload = format!(
                r#"{{"event_id":"{id}","contact_id":"{contact}","occurred_at":"{at}","form_id":"demo","fields":{{}}}}"#
            );
            if n >= warmup {
                sent.lock().unwrap().insert(id, Instant::now());
            }
            (input, contact, payload)
        } else {
            let contact = format!("lat-{run}-c{}", n / 10 * 10);
            let payload = format!(
                r#"{{"event_id":"{id}","contact_id":"{contact}","occurred_at":"{at}","url":"https://app.example/blog/decay-scoring"}}"#
            );
            (visits.as_str(), contact, payload)
        };
        let record = BaseRecord::to(topic).key(&contact).payload(&payload);
        if let Err((e, _)) = producer.send(record) {
            anyhow::bail!("produce: {e}");
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30))?;
    // Give the last changes time to arrive.
    let tail = Instant::now();
    while !sent.lock().unwrap().is_empty() && tail.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    done.store(true, Ordering::Relaxed);
    let (mut ms, mut from_publish_ms) = reader.join().ok().context("latency reader panicked")?;
    ms.sort_by(f64::total_cmp);
    from_publish_ms.sort_by(f64::total_cmp);
    // What the reader never matched is still waiting in `sent`.
    let missing = sent.lock().unwrap().len();
    Ok(Latencies {
        missing,
        ms,
        from_publish_ms,
    })
}

/// Fills the state directory of `config` with `contacts` contacts (one
/// synthetic event each, through the processor as the service would apply
/// it, events spread over the last `days`), for start-up and memory
/// measurements. Returns (contacts, pending timers).
pub fn fill_state(
    config: &crate::config::Config,
    rules: crate::rules::RuleSet,
    contacts: u64,
    days: f64,
) -> anyhow::Result<(u64, u64)> {
    use crate::processor::{InputRecord, Processor};
    use crate::state::{RocksStateStore, StateStore};

    let store = Arc::new(RocksStateStore::open(
        &config.state.dir,
        config.memory_budget(),
    )?);
    // Offsets go under topics of their own, so the service still reads the
    // real input topics from their beginning.
    let mut settings = super::processor_settings(config);
    settings.topics = crate::event::TopicMap::new(
        "fill-page-visits",
        "fill-email-clicks",
        "fill-form-submissions",
        "fill-purchases",
    );
    let engine = crate::scoring::Engine::new(rules, settings.dedupe_window_ms);
    let mut processor = Processor::new(engine, store.clone(), settings);
    let now = super::wall_now();
    let partitions = super::embedded::PARTITIONS as u32;
    for p in 0..partitions {
        processor.assign(p, now)?;
    }
    let span = (days * 86_400_000.0) as i64;
    let mut batch = Vec::with_capacity(1000);
    let mut offsets = vec![0i64; partitions as usize];
    for i in 0..contacts {
        let contact = format!("c-{i:06}");
        let at = EventTime::from_millis(
            now.millis() - span + (span as i128 * i as i128 / contacts.max(1) as i128) as i64,
        );
        // A demo request: warm now, and a pending decay back to cold.
        let payload = format!(
            r#"{{"event_id":"fill-{i}","contact_id":"{contact}","occurred_at":"{}","form_id":"demo","fields":{{"title":"cto"}}}}"#,
            at.to_rfc3339()
        );
        let partition = (crate::dedupe::digest(&contact) % u64::from(partitions)) as u32;
        offsets[partition as usize] += 1;
        batch.push(InputRecord {
            topic: "fill-form-submissions".into(),
            partition,
            offset: offsets[partition as usize],
            key: Some(contact.into_bytes()),
            payload: Some(payload.into_bytes()),
        });
        if batch.len() == 1000 || i + 1 == contacts {
            // Applied and published at once: nothing stays in the outbox.
            let out = processor.process(&batch, now)?;
            let done: Vec<(u32, u64)> = out.iter().map(|(p, s, _)| (*p, *s)).collect();
            processor.published(&done)?;
            batch.clear();
        }
        if i % 100_000 == 0 && i > 0 {
            eprintln!("fill: {i} contacts");
        }
    }
    let mut timers = 0;
    for p in 0..partitions {
        timers += store.timers_before(p, EventTime::MAX, usize::MAX)?.len() as u64;
    }
    Ok((contacts, timers))
}
