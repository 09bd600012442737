//! Command line (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::time::EventTime;

#[derive(Debug, Parser)]
#[command(
    name = "leadscore",
    version,
    about = "Real-time lead scoring: exact decay, persistent timers, tier-change events"
)]
pub struct Cli {
    /// Log format on stderr (filter with RUST_LOG, e.g. `info,leadscore=debug`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line, with the fields of its spans.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score a JSON-lines file of events with the same engine as the service (no Kafka).
    Replay(ReplayArgs),
    /// Validate a rules file: print a summary (exit 0) or every error (exit 2).
    CheckRules {
        /// The rules file (TOML).
        file: PathBuf,
    },
    /// Generate a synthetic event file for replay or benchmarks.
    Gen(GenArgs),
    /// Run the service. Without --config: an embedded broker and the bundled example rules.
    Run(RunArgs),
    /// Run the service on an embedded broker, feed it synthetic visitors and print tier changes.
    Demo(DemoArgs),
    /// Produce a replay-format file (or stdin) to Kafka, keyed by contact.
    Produce(ProduceArgs),
    /// Print the scores in a stopped service's state directory (replay's --scores-out format).
    Scores(ScoresArgs),
    /// Benchmark helper: raw consume rate of topics by a bare consumer.
    #[command(hide = true)]
    BenchConsume {
        #[arg(long)]
        brokers: String,
        /// Comma-separated topics.
        #[arg(long, value_delimiter = ',')]
        topics: Vec<String>,
        #[arg(long)]
        expect: u64,
    },
    /// Benchmark helper: a steady HTTP load (contacts and /metrics) until the service stops.
    #[command(hide = true)]
    BenchHttp {
        #[arg(long)]
        address: String,
        #[arg(long, default_value_t = 200)]
        rps: u32,
        /// File with one contact id per line.
        #[arg(long)]
        ids: PathBuf,
        /// Every N-th request scrapes /metrics (0: never).
        #[arg(long, default_value_t = 10)]
        metrics_every: u64,
    },
    /// Benchmark helper: fill a state directory with N contacts (one event each).
    #[command(hide = true)]
    BenchFillState {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        contacts: u64,
        #[arg(long, default_value_t = 20.0)]
        days: f64,
    },
    /// Benchmark helper: produce → tier-change latency at a steady rate.
    #[command(hide = true)]
    BenchLatency {
        #[arg(long)]
        brokers: String,
        #[arg(long, default_value = "form-submissions")]
        input: String,
        #[arg(long, default_value = "lead-score-events")]
        output: String,
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Seconds of the same load before the timed part, not timed.
        #[arg(long, default_value_t = 3)]
        warmup_seconds: u64,
        /// The load producer's linger.ms (how it batches).
        #[arg(long, default_value_t = 5)]
        linger_ms: u64,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Service configuration (TOML); every key can be overridden by LEADSCORE__SECTION__KEY.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Exit (as on SIGTERM) once no input has arrived for this long while
    /// the broker answers — for backfills with clock = "event".
    #[arg(long, value_parser = parse_duration)]
    pub idle_exit: Option<std::time::Duration>,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Visitors to simulate.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub contacts: u64,
    /// Events per second of wall time.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: u64,
    /// Simulated time per wall-clock second (the demo runs on the event clock).
    #[arg(long, default_value = "12h", value_parser = parse_duration)]
    pub speed: std::time::Duration,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// State directory (default: a fresh temporary one).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Bootstrap servers.
    #[arg(long)]
    pub brokers: String,
    /// Input file (default: stdin).
    #[arg(long)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ScoresArgs {
    /// The service's configuration (for the state directory, rules and topics).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Rules file (TOML).
    #[arg(long)]
    pub rules: PathBuf,
    /// Events file: one `{"topic","key","value"}` object or kcat `-J` envelope per line
    /// (`-`: standard input).
    #[arg(long)]
    pub events: PathBuf,
    /// After the last event, advance the clock to this instant (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<EventTime>,
    /// Write final scores (one line per contact and model) to this file
    /// (`-`: standard output, after the tier changes).
    #[arg(long)]
    pub scores_out: Option<PathBuf>,
    /// Write rejected lines here instead of stderr.
    #[arg(long)]
    pub rejects_out: Option<PathBuf>,
    /// How long an event id is remembered for dedupe (e.g. `30d`, `12h`).
    #[arg(long, default_value = "30d", value_parser = parse_duration_ms)]
    pub dedupe_window: i64,
    /// Take topic names (and so topic → kind) from this service configuration.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Only read and decode the input (no scoring): the throughput floor.
    #[arg(long, hide = true)]
    pub decode_only: bool,
}

#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Number of events.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Number of distinct contacts.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub contacts: u64,
    /// Days the events span.
    #[arg(long, default_value_t = 90.0, value_parser = parse_span_days)]
    pub days: f64,
    /// Random seed (the same seed gives the same file).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First event time (RFC 3339).
    #[arg(long, default_value = "2026-01-05T08:00:00Z", value_parser = parse_time)]
    pub start: EventTime,
    /// Percentage of events that arrive late (up to two days).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub late_percent: u32,
    /// Output file (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Longest span `gen` writes: its events stay within four-digit years.
const MAX_SPAN_DAYS: f64 = 100_000.0;

fn parse_span_days(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(d) if (0.0..=MAX_SPAN_DAYS).contains(&d) => Ok(d),
        _ => Err(format!(
            "`{s}` is not a number of days from 0 to {MAX_SPAN_DAYS}"
        )),
    }
}

fn parse_time(s: &str) -> Result<EventTime, String> {
    EventTime::parse_rfc3339(s)
        .ok_or_else(|| format!("`{s}` is not an RFC 3339 timestamp with offset"))
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration: {e}"))
}

/// Parses a humantime duration (`30d`, `5m`, `1s`) into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    parse_duration(s).map(|d| d.as_millis().min(i64::MAX as u128) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parses(args: &[&str]) -> bool {
        Cli::try_parse_from(["leadscore"].iter().chain(args)).is_ok()
    }

    #[test]
    fn gen_and_demo_refuse_what_they_cannot_make() {
        assert!(parses(&[
            "gen",
            "--events",
            "5",
            "--contacts",
            "1",
            "--days",
            "0"
        ]));
        for bad in [
            &["gen", "--contacts", "0"][..],
            &["gen", "--days=-1"],
            &["gen", "--days", "NaN"],
            &["gen", "--days", "inf"],
            &["gen", "--days", "100001"],
            &["demo", "--contacts", "0"],
            &["demo", "--rate", "0"],
        ] {
            assert!(!parses(bad), "{bad:?}");
        }
    }
}
