//! The harness of the service tests: a broker (librdkafka's mock cluster or
//! the real one named by `LEADSCORE_TEST_BROKER`) with the service's topics,
//! a service configuration, the binary as a child process, and bounded
//! waits on what it does (never fixed sleeps).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use leadscore::replay::parse_line;
use leadscore::service::embedded::EmbeddedBroker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::TopicPartitionList;
use serde_json::Value;

pub const PARTITIONS: i32 = 4;
pub const INPUTS: [&str; 4] = [
    "page-visits",
    "email-clicks",
    "form-submissions",
    "purchases",
];
pub const DEADLINE: Duration = Duration::from_secs(120);
pub const REAL_BROKER: &str = "LEADSCORE_TEST_BROKER";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_leadscore")
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A record read back: key, payload, headers.
pub type Received = (Option<String>, Vec<u8>, Vec<(String, String)>);

/// The value of a received record's header `name`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut found = headers.iter().filter(|(n, _)| n == name);
    found.next().map(|(_, v)| v.as_str())
}

/// A broker with this test's topics: the mock cluster, or the real one with
/// topic names unique to the test.
pub struct Broker {
    pub bootstrap: String,
    pub prefix: String,
    pub _mock: Option<EmbeddedBroker>,
}

impl Broker {
    pub fn mock() -> Broker {
        let names: Vec<String> = INPUTS
            .iter()
            .chain(&["lead-score-events", "lead-score-dlq"])
            .map(|s| s.to_string())
            .collect();
        let mock = EmbeddedBroker::start(&names, PARTITIONS).unwrap();
        Broker {
            bootstrap: mock.bootstrap().to_string(),
            prefix: String::new(),
            _mock: Some(mock),
        }
    }

    pub fn real() -> Broker {
        static N: AtomicU32 = AtomicU32::new(0);
        let bootstrap = std::env::var(REAL_BROKER).expect("LEADSCORE_TEST_BROKER");
        let prefix = format!(
            "t{}-{}-",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        let names: Vec<String> = INPUTS
            .iter()
            .chain(&["lead-score-events", "lead-score-dlq"])
            .map(|s| format!("{prefix}{s}"))
            .collect();
        let topics: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic::new(n, PARTITIONS, TopicReplication::Fixed(1)))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for r in rt
            .block_on(admin.create_topics(&topics, &AdminOptions::new()))
            .unwrap()
        {
            r.unwrap();
        }
        Broker {
            bootstrap,
            prefix,
            _mock: None,
        }
    }

    /// Mock cluster only: takes the broker down, or brings it back.
    pub fn set_reachable(&self, up: bool) {
        let mock = self._mock.as_ref().expect("the mock cluster");
        mock.set_reachable(up).unwrap();
    }

    /// Mock cluster only: the broker refuses `topic` to clients (or, with
    /// `false`, takes it again).
    pub fn refuse_topic(&self, topic: &str, refuse: bool) {
        use rdkafka::types::RDKafkaRespErr;
        let mock = self._mock.as_ref().expect("the mock cluster");
        let error = if refuse {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED
        } else {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR
        };
        mock.set_topic_error(topic, error).unwrap();
    }

    pub fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Produces replay-format lines; a line that is not an envelope goes
    /// to page-visits as raw bytes. Partition = a hash of the contact.
    pub fn produce(&self, lines: &[String]) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        for line in lines {
            let (topic, key, payload) = match parse_line(line) {
                Ok(r) => {
                    let v: Value = serde_json::from_slice(&r.payload).unwrap_or(Value::Null);
                    let key = r
                        .key
                        .map(|k| k.into_owned())
                        .or_else(|| v["contact_id"].as_str().map(str::to_string));
                    (r.topic.into_owned(), key, r.payload.into_owned())
                }
                Err(_) => ("page-visits".into(), None, line.as_bytes().to_vec()),
            };
            let topic = self.topic(&topic);
            let partition = key.as_deref().map_or(0, partition_of);
            let mut record = BaseRecord::to(&topic)
                .payload(&payload)
                .partition(partition);
            if let Some(k) = &key {
                record = record.key(k.as_str());
            }
            producer.send(record).map_err(|(e, _)| e).unwrap();
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(60)).unwrap();
    }

    /// Every record now in `topic`, as (key, payload, headers), read up to
    /// the high watermarks.
    pub fn read_all(&self, topic: &str) -> Vec<Received> {
        let topic = self.topic(topic);
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", "test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for p in 0..PARTITIONS {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p, Duration::from_secs(10))
                .unwrap();
            if high > low {
                tpl.add_partition_offset(&topic, p, rdkafka::Offset::Offset(low))
                    .unwrap();
                ends.insert(p, high);
            }
        }
        let mut out = Vec::new();
        if ends.is_empty() {
            return out;
        }
        consumer.assign(&tpl).unwrap();
        let started = Instant::now();
        while !ends.is_empty() {
            assert!(started.elapsed() < DEADLINE, "reading {topic} timed out");
            let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let msg = msg.unwrap();
            let headers = msg
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| {
                            (
                                x.key.to_string(),
                                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                msg.payload().unwrap_or_default().to_vec(),
                headers,
            ));
            if ends.get(&msg.partition()) == Some(&(msg.offset() + 1)) {
                ends.remove(&msg.partition());
            }
        }
        out
    }

    /// Records in `topic` now (sum of high watermarks).
    pub fn count(&self, topic: &str) -> i64 {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .unwrap();
        (0..PARTITIONS)
            .map(|p| {
                consumer
                    .fetch_watermarks(&self.topic(topic), p, Duration::from_secs(10))
                    .map_or(0, |(_, h)| h)
            })
            .sum()
    }
}

pub fn partition_of(key: &str) -> i32 {
    (xxhash(key) % PARTITIONS as u64) as i32
}

pub fn xxhash(s: &str) -> u64 {
    // FNV-1a: any stable hash does; the service only needs a contact's
    // records of every topic in one partition number.
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// A service configuration in `dir`.
pub fn write_config(
    dir: &Path,
    broker: &Broker,
    clock: &str,
    rules: &Path,
    extra: &str,
) -> PathBuf {
    let path = dir.join("leadscore.toml");
    let text = format!(
        r#"rules = "{rules}"
clock = "{clock}"
max_task_idle = "2s"
[kafka]
brokers = "{brokers}"
group_id = "{prefix}leadscore"
[kafka.consumer]
"fetch.wait.max.ms" = "10"
# A killed instance's partitions are reassigned after this.
"session.timeout.ms" = "6000"
[topics]
page_visits = "{prefix}page-visits"
email = "{prefix}email-clicks"
forms = "{prefix}form-submissions"
purchases = "{prefix}purchases"
output = "{prefix}lead-score-events"
dead_letter = "{prefix}lead-score-dlq"
[state]
dir = "{state}"
memory_budget = "64MiB"
[http]
listen = "127.0.0.1:0"
{extra}
"#,
        rules = rules.display(),
        brokers = broker.bootstrap,
        prefix = broker.prefix,
        state = dir.join("state").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Prints the service log if the test fails.
pub struct ShowLogOnFailure(pub PathBuf);

impl Drop for ShowLogOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.0).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "--- service log (last {} lines) ---\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

pub fn spawn(config: &Path, extra: &[&str], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(bin())
        .args(["run", "--config"])
        .arg(config)
        .args(extra)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits (bounded) for the child to exit; returns its exit code.
pub fn wait_exit(child: &mut Child, limit: Duration, log: &Path) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!(
                "service did not exit within {limit:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until `topic` holds at least `n` records.
pub fn wait_count(broker: &Broker, topic: &str, n: i64, log: &Path) {
    let started = Instant::now();
    while broker.count(topic) < n {
        assert!(
            started.elapsed() < DEADLINE,
            "{topic} never reached {n} records; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until the service log contains `text`.
pub fn wait_log(log: &Path, text: &str) {
    wait_log_lines(log, text, 1);
}

/// How many lines of the log contain `text`.
pub fn log_lines(log: &Path, text: &str) -> usize {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    log.lines().filter(|l| l.contains(text)).count()
}

/// Asserts that lines with `text` came at most `kinds` times per 10 s
/// (the service's throttle of repeated warnings) since `started`.
pub fn assert_throttled(log: &Path, text: &str, kinds: usize, started: Instant) {
    let periods = 1 + started.elapsed().as_secs() as usize / 10;
    let said = log_lines(log, text);
    assert!(
        said <= kinds * periods,
        "{said} lines with `{text}` in {periods} periods of 10 s:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Waits until `n` lines of the log contain `text`.
pub fn wait_log_lines(log: &Path, text: &str, n: usize) {
    let started = Instant::now();
    while log_lines(log, text) < n {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not {n} lines with `{text}` in the log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn sigterm(child: &Child) {
    let rc = unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
}

pub fn run_bin(args: &[&str]) -> String {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `n` generated events over `contacts` contacts in the day before now (so
/// the wall clock scores them as they come), as replay-format lines; the
/// file is written to `dir`.
pub fn recent_events(dir: &Path, n: u32, contacts: u32) -> (PathBuf, Vec<String>) {
    let file = dir.join("events.jsonl");
    let start = chrono::Utc::now().timestamp_millis() - 86_400_000;
    let start = leadscore::time::EventTime::from_millis(start).to_rfc3339();
    run_bin(&[
        "gen",
        "--events",
        &n.to_string(),
        "--contacts",
        &contacts.to_string(),
        "--days",
        "0.9",
        "--start",
        &start,
        "--out",
        file.to_str().unwrap(),
    ]);
    let lines = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    (file, lines)
}
