//! Service configuration (SPEC §7): a TOML file, every key overridable by a
//! `LEADSCORE__SECTION__KEY` environment variable, validated once at start
//! with errors that name the key. Loaded once and passed down; nothing deeper
//! reads the environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Rules file, relative to the config file's folder.
    pub rules: PathBuf,
    /// `wall`: timers fire on the wall clock; `event`: each partition's clock
    /// follows event time (backfills), as in `replay`.
    pub clock: ClockMode,
    /// Event clock: how long an empty topic-partition may hold back the merge.
    #[serde(with = "humantime_serde")]
    pub max_task_idle: Duration,
    /// Events dated further than this ahead of the clock are dead-lettered.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// How long an event id is remembered per contact for dedupe.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    pub state: StateConfig,
    pub http: HttpConfig,
    pub batch: BatchConfig,
}

/// Which clock drives scoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    Wall,
    Event,
}

/// Brokers and client settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers; empty starts the embedded broker (mock cluster).
    pub brokers: String,
    /// Consumer group id.
    pub group_id: String,
    /// Extra librdkafka consumer properties, passed through as given
    /// (numbers and booleans as their text).
    #[serde(deserialize_with = "properties")]
    pub consumer: BTreeMap<String, String>,
    /// Extra librdkafka producer properties, passed through as given.
    #[serde(deserialize_with = "properties")]
    pub producer: BTreeMap<String, String>,
}

/// librdkafka properties: values are strings to librdkafka, but TOML users
/// write `"linger.ms" = 5`, so numbers and booleans are taken as their text.
fn properties<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<String, toml::Value>::deserialize(d)?;
    map.into_iter()
        .map(|(k, v)| {
            let text = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "`{k}` must be a string, number or boolean, not {}",
                        other.type_str()
                    )))
                }
            };
            Ok((k, text))
        })
        .collect()
}

/// Topic names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Page visits (input).
    pub page_visits: String,
    /// Email opens, clicks and unsubscribes (input).
    pub email: String,
    /// Form submissions (input).
    pub forms: String,
    /// Purchases (input).
    pub purchases: String,
    /// Tier changes (output, key = contact_id).
    pub output: String,
    /// Rejected records with their reason (output).
    pub dead_letter: String,
}

/// Local state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// RocksDB directory.
    pub dir: PathBuf,
    /// Block cache plus write buffers, e.g. `256MiB`.
    pub memory_budget: String,
}

/// The HTTP side port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address for /metrics, /livez, /readyz and /v1/contacts.
    pub listen: String,
}

/// How input is grouped into one state write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most events in one write batch.
    pub max_events: usize,
    /// Longest a batch waits to fill before it is written.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rules: PathBuf::from("rules.toml"),
            clock: ClockMode::Wall,
            max_task_idle: Duration::from_secs(1),
            max_clock_skew: Duration::from_secs(300),
            dedupe_window: Duration::from_secs(30 * 86_400),
            kafka: KafkaConfig::default(),
            topics: TopicsConfig::default(),
            state: StateConfig::default(),
            http: HttpConfig::default(),
            batch: BatchConfig::default(),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            group_id: "leadscore".into(),
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
        }
    }
}

impl TopicsConfig {
    /// Every topic with its configuration key: the four inputs, then output
    /// and dead letters.
    pub fn keyed(&self) -> [(&'static str, &String); 6] {
        [
            ("topics.page_visits", &self.page_visits),
            ("topics.email", &self.email),
            ("topics.forms", &self.forms),
            ("topics.purchases", &self.purchases),
            ("topics.output", &self.output),
            ("topics.dead_letter", &self.dead_letter),
        ]
    }
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            page_visits: "page-visits".into(),
            email: "email-clicks".into(),
            forms: "form-submissions".into(),
            purchases: "purchases".into(),
            output: "lead-score-events".into(),
            dead_letter: "lead-score-dlq".into(),
        }
    }
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: PathBuf::from("./leadscore-data"),
            memory_budget: "256MiB".into(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 1000,
            max_wait: Duration::from_millis(20),
        }
    }
}

/// Why the configuration could not be used; each names the key or variable.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{source_name}: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl Config {
    /// Reads `path` (or the defaults when `None`), applies `LEADSCORE__…`
    /// overrides from `env`, resolves the rules path against the file's
    /// folder and validates the result.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (mut table, source_name) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read {
                    path: p.display().to_string(),
                    reason: e.to_string(),
                })?;
                let table: toml::Table =
                    text.parse()
                        .map_err(|e: toml::de::Error| ConfigError::Parse {
                            source_name: p.display().to_string(),
                            message: e.to_string(),
                        })?;
                (table, p.display().to_string())
            }
            None => (toml::Table::new(), "defaults".to_string()),
        };
        let from_env = env::apply_env(&mut table, env)?;
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                // A key set by an environment variable is named by it.
                let set_by = |k: &str| key == k || key.starts_with(&format!("{k}."));
                let source_name = match from_env.iter().find(|(k, _)| set_by(k)) {
                    Some((_, var)) => var.clone(),
                    None => source_name,
                };
                let message = e.inner().message().trim();
                ConfigError::Parse {
                    message: match key.as_str() {
                        "." | "" => message.to_string(),
                        _ => format!("{key}: {message}"),
                    },
                    source_name,
                }
            })?;
        if let Some(dir) = path.and_then(Path::parent) {
            if config.rules.is_relative() {
                config.rules = dir.join(&config.rules);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| {
            Err(ConfigError::Invalid {
                key: key.into(),
                message,
            })
        };
        if self.kafka.group_id.trim().is_empty() {
            return invalid("kafka.group_id", "must not be empty".into());
        }
        let topics = self.topics.keyed();
        for (i, (key, name)) in topics.iter().enumerate() {
            if name.is_empty()
                || name.len() > 249
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return invalid(key, format!("`{name}` is not a valid Kafka topic name"));
            }
            if let Some((other, _)) = topics[..i].iter().find(|(_, n)| n == name) {
                return invalid(
                    key,
                    format!("`{name}` is also {other}; every topic must be distinct"),
                );
            }
        }
        if !self.http.listen.is_empty() && self.http.listen.parse::<SocketAddr>().is_err() {
            return invalid(
                "http.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:9464",
                    self.http.listen
                ),
            );
        }
        if let Err(message) = parse_bytes(&self.state.memory_budget) {
            return invalid("state.memory_budget", message);
        }
        if self.memory_budget() < 16 << 20 {
            return invalid("state.memory_budget", "must be at least 16MiB".into());
        }
        if self.batch.max_events == 0 {
            return invalid("batch.max_events", "must be at least 1".into());
        }
        if self.dedupe_window.is_zero() {
            return invalid("dedupe_window", "must be longer than 0s".into());
        }
        Ok(())
    }

    /// `state.memory_budget` in bytes (validated).
    pub fn memory_budget(&self) -> u64 {
        parse_bytes(&self.state.memory_budget).unwrap_or(256 << 20)
    }

    /// True when no brokers are configured: use the embedded broker.
    pub fn embedded_broker(&self) -> bool {
        self.kafka.brokers.trim().is_empty()
    }
}

/// Parses `256MiB`, `1GiB`, `512KB`, `1048576` into bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 256MiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

mod env;

#[cfg(test)]
mod tests;
