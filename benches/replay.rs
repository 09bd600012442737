//! In-memory companion of `scripts/bench_replay.py`: decode-only vs full
//! replay over the same generated lines (no file I/O), and the timer wheel.
//! `cargo bench --bench replay`; the file-based figures in BENCHMARKS.md come
//! from the script, which also measures peak RSS.

use std::hint::black_box;
use std::io;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use leadscore::event::wire::decode_wire;
use leadscore::event::TopicMap;
use leadscore::gen::{generate, GenOptions};
use leadscore::replay::{parse_line, replay_lines, Progress, Replayer};
use leadscore::rules::RuleSet;
use leadscore::scoring::Engine;
use leadscore::time::EventTime;
use leadscore::timer::TimerWheel;

const EVENTS: u64 = 100_000;

fn events() -> Vec<u8> {
    let opts = GenOptions {
        events: EVENTS,
        contacts: 10_000,
        days: 30.0,
        seed: 1,
        start: EventTime::parse_rfc3339("2026-01-05T08:00:00Z").unwrap(),
        late_percent: 3,
    };
    let mut out = Vec::new();
    generate(&opts, &mut out).unwrap();
    out
}

fn replay(c: &mut Criterion) {
    let input = events();
    let rules_text = include_str!("../examples/rules.toml");
    let rules = RuleSet::parse(rules_text).unwrap();
    let mut group = c.benchmark_group("replay-100k");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.bench_function("decode-only", |b| {
        b.iter(|| {
            let mut ok = 0u64;
            for line in input.split(|b| *b == b'\n') {
                let text = std::str::from_utf8(line).unwrap();
                if let Ok(rec) = parse_line(text) {
                    ok += u64::from(decode_wire(&rec.payload).is_ok());
                }
            }
            black_box(ok)
        })
    });
    group.bench_function("replay", |b| {
        b.iter_batched(
            || {
                Replayer::new(
                    Engine::new(rules.clone(), 30 * 86_400_000),
                    TopicMap::default(),
                    30 * 86_400_000,
                    io::sink(),
                )
            },
            |mut r| {
                replay_lines(
                    &mut r,
                    &input[..],
                    &mut io::sink(),
                    &mut Progress::default(),
                )
                .unwrap();
                black_box(r.stats)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn wheel(c: &mut Criterion) {
    let mut group = c.benchmark_group("timer-wheel");
    group.throughput(Throughput::Elements(1_000_000));
    group.sample_size(10);
    group.bench_function("insert-1m-then-poll", |b| {
        b.iter(|| {
            let mut w: TimerWheel<u32> = TimerWheel::new(EventTime::from_millis(0));
            let mut x = 0x9E37_79B9u64;
            for k in 0..1_000_000u32 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                w.insert(k, EventTime::from_millis((x >> 30) as i64 % 8_000_000_000));
            }
            let mut out = Vec::new();
            w.poll(EventTime::from_millis(8_000_000_000), &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, replay, wheel);
criterion_main!(benches);
