//! Wiring of each command: read inputs, call the library, map failures to
//! exit codes (2: invalid rules or arguments, 1: I/O failure).

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{Cli, Command, GenArgs, ProduceArgs, ReplayArgs, RunArgs, ScoresArgs};
use crate::config::Config;
use crate::event::{wire::decode_wire, TopicMap};
use crate::gen::{generate, GenOptions};
use crate::replay::{parse_line, replay_lines, Lines, Progress, Replayer};
use crate::rules::{summary, RuleSet, RulesError};
use crate::scoring::Engine;

/// Runs one command and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::CheckRules { file } => check_rules(&file),
        Command::Replay(args) => replay(&args),
        Command::Gen(args) => report_io(gen(&args)),
        Command::Run(args) => run_service(&args),
        Command::Demo(args) => crate::demo::run(&args),
        Command::Produce(args) => report_io(produce(&args)),
        Command::Scores(args) => scores(&args),
        Command::BenchConsume {
            brokers,
            topics,
            expect,
        } => report_io(
            crate::service::bench::raw_consume(&brokers, &topics, expect, &[]).map(|(n, secs)| {
                println!(
                    "{{\"records\": {n}, \"seconds\": {secs:.3}, \"per_second\": {:.0}}}",
                    n as f64 / secs.max(1e-9)
                );
            }),
        ),
        Command::BenchHttp {
            address,
            rps,
            ids,
            metrics_every,
        } => report_io((|| {
            let text = std::fs::read_to_string(&ids)
                .with_context(|| format!("reading {}", ids.display()))?;
            let ids: Vec<String> = text.lines().map(str::to_string).collect();
            let report = crate::service::http_load::run(&address, rps, &ids, metrics_every)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        })()),
        Command::BenchFillState {
            config,
            contacts,
            days,
        } => match load_service_config(Some(&config)) {
            Ok((config, rules)) => report_io(
                crate::service::bench::fill_state(&config, rules, contacts, days)
                    .map(|(c, t)| println!("{{\"contacts\": {c}, \"timers\": {t}}}")),
            ),
            Err(code) => code,
        },
        Command::BenchLatency {
            brokers,
            input,
            output,
            rate,
            seconds,
            warmup_seconds,
            linger_ms,
        } => {
            let pace = crate::service::bench::Pace {
                rate,
                seconds,
                warmup_seconds,
                linger_ms,
            };
            report_io(
                crate::service::bench::latency(&brokers, &input, &output, pace).map(|lat| {
                    let q = |ms: &[f64], p: f64| {
                        ms.get(((ms.len() as f64 - 1.0) * p).round() as usize)
                            .copied()
                            .unwrap_or(f64::NAN)
                    };
                    let tail = &lat.from_publish_ms;
                    println!(
                        "{{\"changes\": {}, \"missing\": {}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}, \"max_ms\": {:.1}, \
                         \"from_publish_p50_ms\": {:.0}, \"from_publish_p99_ms\": {:.0}}}",
                        lat.ms.len(),
                        lat.missing,
                        q(&lat.ms, 0.5),
                        q(&lat.ms, 0.99),
                        q(&lat.ms, 1.0),
                        q(tail, 0.5),
                        q(tail, 0.99),
                    );
                }),
            )
        }
    }
}

fn report_io(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_rules(path: &Path) -> Result<RuleSet, ExitCode> {
    RuleSet::load(path).map_err(|e| {
        match &e {
            RulesError::Io { .. } => eprintln!("error: {e}"),
            RulesError::Invalid { path, errors } => {
                for err in errors {
                    eprintln!("{path}: {err}");
                }
                eprintln!("{path}: {} error(s)", errors.len());
            }
        }
        ExitCode::from(2)
    })
}

fn check_rules(path: &Path) -> ExitCode {
    match load_rules(path) {
        Ok(rules) => {
            print!("{}: ok\n{}", path.display(), summary(&rules));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn replay(args: &ReplayArgs) -> ExitCode {
    let rules = match load_rules(&args.rules) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = if args.decode_only {
        decode_only(args)
    } else {
        replay_file(args, rules)
    };
    report_io(result)
}

/// An input file, or standard input for `-` (read as a file too, so that
/// replay's loop is the same code either way).
fn open(path: &Path) -> anyhow::Result<BufReader<File>> {
    let file = if path.as_os_str() == "-" {
        let stdin = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("cannot read standard input")?;
        File::from(stdin)
    } else {
        File::open(path).with_context(|| format!("cannot open {}", path.display()))?
    };
    Ok(BufReader::with_capacity(1 << 20, file))
}

/// An output: a new file, or standard output (`-`, `/dev/stdout`) or error
/// (`/dev/stderr`) written through. Opened again, they would be a second
/// descriptor, which on a file writes over what the first one wrote.
fn create(path: &Path) -> anyhow::Result<Box<dyn Write>> {
    if path.as_os_str() == "-" || path == Path::new("/dev/stdout") {
        return Ok(Box::new(BufWriter::new(io::stdout().lock())));
    }
    if path == Path::new("/dev/stderr") {
        return Ok(Box::new(io::stderr().lock()));
    }
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Box::new(BufWriter::with_capacity(1 << 16, file)))
}

fn replay_file(args: &ReplayArgs, rules: RuleSet) -> anyhow::Result<()> {
    let input = open(&args.events)?;
    let mut rejects = create(
        args.rejects_out
            .as_deref()
            .unwrap_or(Path::new("/dev/stderr")),
    )?;
    // Created now, written last: an output that cannot be made fails at once,
    // not after the whole replay.
    let mut scores = args.scores_out.as_deref().map(create).transpose()?;
    let stdout = BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let topics = match &args.config {
        Some(path) => crate::service::topic_map(
            &Config::load(Some(path), std::env::vars()).map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        None => TopicMap::default(),
    };
    let engine = Engine::new(rules, args.dedupe_window);
    let mut replayer = Replayer::new(engine, topics, args.dedupe_window, stdout);
    let mut progress = Progress::default();
    replay_lines(&mut replayer, input, &mut rejects, &mut progress)
        .with_context(|| format!("replaying {}", args.events.display()))?;
    if let Some(until) = args.until {
        replayer.advance(until).context("writing output")?;
    }
    rejects.flush().context("writing rejects")?;
    if let Some(out) = &mut scores {
        // The tier changes first, should the scores go to standard output too.
        replayer.flush_output().context("writing output")?;
        replayer
            .write_scores(out)
            .and_then(|_| out.flush())
            .context("writing scores")?;
    }
    let s = replayer.stats;
    let (contacts, timers) = (replayer.contacts(), replayer.timers());
    replayer.finish().context("writing output")?;
    if args.rejects_out.is_some() {
        eprintln!(
            "replay: {} lines, {} events, {} rejected, {} duplicates skipped, {} contacts, {} tier changes, {} timers fired, {} timer updates, {} pending",
            s.lines, s.events, s.rejected, s.duplicates, contacts, s.changes, s.timers_fired, s.timer_updates, timers
        );
    }
    Ok(())
}

/// Reads and decodes every line into the wire types, nothing more.
fn decode_only(args: &ReplayArgs) -> anyhow::Result<()> {
    let mut lines = Lines::new(open(&args.events)?);
    let (mut ok, mut bad) = (0u64, 0u64);
    while let Some(line) = lines.next_line().context("reading events")? {
        let decoded = match line {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => parse_line(text)
                .ok()
                .and_then(|r| decode_wire(&r.payload).ok())
                .is_some(),
            Err(_) => false,
        };
        if decoded {
            ok += 1;
        } else {
            bad += 1;
        }
    }
    eprintln!("decode-only: {ok} decoded, {bad} undecodable");
    Ok(())
}

fn gen(args: &GenArgs) -> anyhow::Result<()> {
    let opts = GenOptions {
        events: args.events,
        contacts: args.contacts,
        days: args.days,
        seed: args.seed,
        start: args.start,
        late_percent: args.late_percent,
    };
    match &args.out {
        Some(p) => {
            let mut out = create(p)?;
            generate(&opts, &mut out)
                .and_then(|_| out.flush())
                .with_context(|| format!("writing {}", p.display()))
        }
        None => {
            let mut out = BufWriter::new(io::stdout().lock());
            generate(&opts, &mut out)
                .and_then(|_| out.flush())
                .context("writing events")
        }
    }
}

/// The example rules bundled into the binary: `run` with no configuration uses them.
pub const BUNDLED_RULES: &str = include_str!("../examples/rules.toml");

/// The configuration and rules of `run`/`scores`/`demo`; exit code 2 when invalid.
pub fn load_service_config(path: Option<&Path>) -> Result<(Config, RuleSet), ExitCode> {
    let config = Config::load(path, std::env::vars()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    let rules_given = path.is_some() || std::env::var_os("LEADSCORE__RULES").is_some();
    let rules = if rules_given {
        load_rules(&config.rules)?
    } else {
        RuleSet::parse(BUNDLED_RULES).map_err(|errors| {
            for e in errors {
                eprintln!("bundled rules: {e}");
            }
            ExitCode::from(2)
        })?
    };
    Ok((config, rules))
}

fn run_service(args: &RunArgs) -> ExitCode {
    let (config, rules) = match load_service_config(args.config.as_deref()) {
        Ok(x) => x,
        Err(code) => return code,
    };
    report_io(crate::service::serve(config, rules, args.idle_exit, |_, _| Vec::new()).map(|_| ()))
}

fn produce(args: &ProduceArgs) -> anyhow::Result<()> {
    let report = match &args.file {
        Some(p) => crate::service::produce::produce_lines(&args.brokers, open(p)?)?,
        None => crate::service::produce::produce_lines(&args.brokers, io::stdin().lock())?,
    };
    eprintln!(
        "produce: {} records, {} lines skipped",
        report.produced, report.skipped
    );
    Ok(())
}

fn scores(args: &ScoresArgs) -> ExitCode {
    let (config, rules) = match load_service_config(args.config.as_deref()) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let result = (|| -> anyhow::Result<()> {
        let store = crate::state::RocksStateStore::open(&config.state.dir, config.memory_budget())
            .with_context(|| format!("opening state in {}", config.state.dir.display()))?;
        crate::service::adopt_rules(&store, &rules, &config.state.dir, false)?;
        let engine = Engine::new(rules, config.dedupe_window.as_millis() as i64);
        let mut out = BufWriter::new(io::stdout().lock());
        crate::service::scores::write_scores(&store, &engine, &mut out)?;
        out.flush().context("writing scores")
    })();
    report_io(result)
}
