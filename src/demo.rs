//! `leadscore demo`: the service on an embedded broker, fed by simulated
//! visitors, printing tier changes as they are published.
//!
//! The demo runs on the event clock with simulated time (`--speed` of it
//! per wall-clock second), so decay and inactivity show within minutes.
//! Visitors take turns being interested: at any simulated moment about a
//! fifth of them browse pricing and docs, open and click emails, book demos
//! and buy; the others have gone quiet and their scores decay.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::app::load_service_config;
use crate::cli::DemoArgs;
use crate::config::ClockMode;
use crate::event::output::TierChanged;
use crate::gen::event_line;
use crate::replay::parse_line;
use crate::service::{serve, wall_now};
use crate::time::EventTime;

pub fn run(args: &DemoArgs) -> ExitCode {
    let (mut config, rules) = match load_service_config(None) {
        Ok(x) => x,
        Err(code) => return code,
    };
    config.kafka.brokers.clear();
    config.clock = ClockMode::Event;
    // Traffic is continuous on every topic: release merged records promptly.
    config.max_task_idle = Duration::from_millis(200);
    let temporary = args.state_dir.is_none();
    config.state.dir = args.state_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("leadscore-demo-{}", std::process::id()))
    });
    let output_topic = config.topics.output.clone();
    let state_dir = config.state.dir.clone();
    let (contacts, rate, speed, duration) = (
        args.contacts.max(1),
        args.rate.max(1),
        args.speed,
        args.duration,
    );
    println!(
        "demo: {contacts} visitors, {rate} events/s, {} of simulated time per second; Ctrl-C to stop",
        humantime::format_duration(speed)
    );
    let result = serve(config, rules, None, move |brokers, stop| {
        let (b1, b2, s1, s2) = (brokers.to_string(), brokers.to_string(), stop.clone(), stop);
        let traffic = std::thread::spawn(move || {
            if let Err(e) = visitors(&b1, contacts, rate, speed, duration, &s1) {
                eprintln!("demo traffic: {e:#}");
            }
            s1.store(true, Ordering::Relaxed);
        });
        let printer = std::thread::spawn(move || {
            if let Err(e) = print_changes(&b2, &output_topic, &s2) {
                eprintln!("demo printer: {e:#}");
            }
        });
        vec![traffic, printer]
    });
    if temporary {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    match result {
        Ok(report) => {
            println!(
                "demo: {} events, {} tier changes published",
                report.consumed, report.published
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Produces simulated visitor traffic until `stop` (or `duration`).
fn visitors(
    brokers: &str,
    contacts: u64,
    rate: u64,
    speed: Duration,
    duration: Option<Duration>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()?;
    let mut rng = fastrand::Rng::with_seed(7);
    let started = Instant::now();
    let sim_start = wall_now();
    let per_event = Duration::from_secs(1) / rate as u32;
    let sim_per_ms = speed.as_millis() as f64 / 1000.0;
    let mut line = String::new();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| started.elapsed() < d) {
        let elapsed = started.elapsed();
        let at = sim_start.plus_millis((elapsed.as_millis() as f64 * sim_per_ms) as i64);
        let contact = interested_visitor(&mut rng, contacts, at);
        line.clear();
        event_line(&mut rng, n, &contact, at, &mut line);
        if let Ok(rec) = parse_line(&line) {
            let record = BaseRecord::to(&rec.topic)
                .key(contact.as_str())
                .payload(rec.payload.as_ref());
            if let Err((e, _)) = producer.send(record) {
                eprintln!("demo traffic: {e}");
            }
        }
        producer.poll(Duration::ZERO);
        n += 1;
        let next = per_event * (n as u32).min(u32::MAX / 2);
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            std::thread::sleep(wait.min(Duration::from_millis(100)));
        }
    }
    producer.flush(Duration::from_secs(5))?;
    Ok(())
}

/// A visitor interested at simulated time `at`: each has their turn, about
/// one simulated day in five.
fn interested_visitor(rng: &mut fastrand::Rng, contacts: u64, at: EventTime) -> String {
    let day = (at.millis() / 86_400_000) as u64;
    loop {
        let c = rng.u64(0..contacts);
        if (c.wrapping_mul(2_654_435_761) >> 7).wrapping_add(day) % 5 == 0 || contacts < 5 {
            return format!("c-{c:06}");
        }
    }
}

/// Prints each tier change from the output topic as it arrives.
fn print_changes(brokers: &str, topic: &str, stop: &AtomicBool) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "leadscore-demo-printer")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut out = std::io::stdout();
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let Some(change) = msg
            .payload()
            .and_then(|p| serde_json::from_slice::<TierChanged>(p).ok())
        else {
            continue;
        };
        let cause = match &change.cause {
            crate::event::output::Cause::Event { topic, .. } => format!("event on {topic}"),
            crate::event::output::Cause::Decay => "decay".into(),
            crate::event::output::Cause::Expiry { rule } => format!("expiry of {rule}"),
            crate::event::output::Cause::Inactivity => "inactivity".into(),
        };
        let _ = writeln!(
            out,
            "{}  {:<9} {:<10} {:>9} -> {:<9} score {:>6.2}  ({cause})",
            change.at,
            change.contact_id,
            change.model,
            change.from_tier,
            change.to_tier,
            change.score
        );
    }
    Ok(())
}
