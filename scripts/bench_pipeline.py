#!/usr/bin/env python3
"""Pipeline benchmark against a real broker (Tansu, SQLite storage, 127.0.0.1).

In one run, on the same topics:
  1. raw:      a bare rdkafka consumer reads the input topics (the floor);
  2. pipeline: `leadscore run` consumes, scores, writes RocksDB and publishes,
               stopping once idle (`--idle-exit`); its rate is records over the
               time from the first record received to the last batch applied;
  0. latency:  first, on topics of its own; a fresh service; events produced at a steady rate, each timed from
               send to the arrival of the tier change it causes (p50/p99).
Peak RSS of the pipeline process comes from wait4().

    python3 scripts/bench_pipeline.py [--events 300000] [--contacts 30000]
        [--binary target/release/leadscore] [--rate 2000] [--seconds 20]
"""
import argparse, json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time

INPUTS = ["page-visits", "email-clicks", "form-submissions", "purchases"]


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def wait_port(port, proc, limit=30):
    end = time.time() + limit
    while time.time() < end:
        if proc.poll() is not None:
            sys.exit("tansu exited")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.1)
    sys.exit("tansu did not start")


def start_tansu(tansu_bin, work, topics, partitions=4):
    """Starts Tansu (SQLite storage in `work`) on a free 127.0.0.1 port and
    creates `topics` (names, or (name, partitions) pairs); returns (process,
    bootstrap address)."""
    port = free_port(); brokers = f"127.0.0.1:{port}"
    tansu = subprocess.Popen([tansu_bin, "broker", "--listener-url", f"tcp://{brokers}",
                              "--advertised-listener-url", f"tcp://{brokers}",
                              "--storage-engine", "sqlite://tansu.db"], cwd=work,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, tansu)
        for t in topics:
            t, n = t if isinstance(t, tuple) else (t, partitions)
            subprocess.run([tansu_bin, "topic", "create", "--broker", f"tcp://{brokers}", t,
                            "--partitions", str(n)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except BaseException:
        tansu.terminate(); tansu.wait()
        raise
    return tansu, brokers


def config(path, brokers, state, group, consumer=None, topics="", producer=None):
    """Writes a service config; `consumer` and `producer` add librdkafka properties."""
    consumer = {"fetch.wait.max.ms": "10", "fetch.queue.backoff.ms": "10", **(consumer or {})}
    lines = lambda props: "\n".join(f'"{k}" = "{v}"' for k, v in props.items())
    with open(path, "w") as f:
        f.write(f'''rules = "{os.path.abspath("examples/rules.toml")}"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
[kafka.consumer]
{lines(consumer)}
[kafka.producer]
{lines(producer or {})}
[topics]
page_visits = "{topics}page-visits"
email = "{topics}email-clicks"
forms = "{topics}form-submissions"
purchases = "{topics}purchases"
output = "{topics}lead-score-events"
dead_letter = "{topics}lead-score-dlq"
[state]
dir = "{state}"
[http]
listen = "127.0.0.1:0"
''')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--contacts", type=int, default=30_000)
    ap.add_argument("--binary", default=os.environ.get("LEADSCORE_BIN", "target/release/leadscore"))
    ap.add_argument("--tansu", default=shutil.which("tansu") or os.path.expanduser("~/.cargo/bin/tansu"))
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--state-contacts", type=int, default=1_000_000,
                    help="contacts in state for the start-up and RSS phase (0: skip)")
    ap.add_argument("--warmup-seconds", type=int, default=3,
                    help="paced traffic before the timed latency run, not timed")
    ap.add_argument("--set", action="append", default=[], metavar="consumer|producer:KEY=VALUE",
                    help="a librdkafka property for the latency phase's service (repeatable)")
    # Tansu's SQLite engine serves a fetch partition by partition (~1.7 ms
    # each here), so the service's fetch cycle grows with the partitions of
    # its four input topics; 2,000 events/s need only one.
    ap.add_argument("--latency-partitions", type=int, default=1,
                    help="partitions of each latency-phase topic")
    ap.add_argument("--latency-only", action="store_true", help="run the latency phase only")
    a = ap.parse_args()
    # The latency phase's service starts at the end of its topics: only the
    # paced traffic is measured.
    props = {"consumer": {"auto.offset.reset": "latest"}, "producer": {}}
    for item in a.set:
        side, _, kv = item.partition(":")
        k, eq, v = kv.partition("=")
        if side not in props or not eq:
            ap.error(f"--set {item}: expected consumer:KEY=VALUE or producer:KEY=VALUE")
        props[side][k] = v
    bin_ = os.path.abspath(a.binary)
    work = tempfile.mkdtemp(prefix="leadscore-bench-")
    names = INPUTS + ["lead-score-events", "lead-score-dlq"]
    tansu, brokers = start_tansu(a.tansu, work, names + [("lat-" + n, a.latency_partitions) for n in names])
    try:
        # Latency first, on topics of its own, while the broker's storage is small
        # (Tansu's SQLite engine slows down as it fills).
        cfg2 = os.path.join(work, "latency.toml")
        config(cfg2, brokers, os.path.join(work, "state2"), "bench-latency-svc", props["consumer"],
               topics="lat-", producer=props["producer"])
        log2 = os.path.join(work, "latency.log")
        svc = subprocess.Popen([bin_, "run", "--config", cfg2], stdout=subprocess.DEVNULL,
                               stderr=open(log2, "w"), env={**os.environ, "NO_COLOR": "1"})
        end = time.time() + 60
        while "ready" not in open(log2).read():
            if time.time() > end or svc.poll() is not None:
                sys.exit("latency service not ready:\n" + open(log2).read()[-3000:])
            time.sleep(0.1)
        lat = json.loads(subprocess.run([bin_, "bench-latency", "--brokers", brokers, "--rate", str(a.rate),
                                         "--seconds", str(a.seconds), "--warmup-seconds", str(a.warmup_seconds),
                                         "--input", "lat-form-submissions",
                                         "--output", "lat-lead-score-events"], check=True, capture_output=True,
                                        text=True).stdout)
        svc.send_signal(signal.SIGTERM); svc.wait(60)
        # The broker's own produce → consume round trip at the same rate (no leadscore).
        floor = json.loads(subprocess.run([bin_, "bench-latency", "--brokers", brokers, "--rate", str(a.rate),
                                           "--seconds", str(a.seconds), "--warmup-seconds", str(a.warmup_seconds),
                                           "--input", "lat-purchases", "--output",
                                           "lat-purchases"], check=True, capture_output=True, text=True).stdout)
        if a.latency_only:
            print(json.dumps({"latency_at_rate": {"rate": a.rate, "seconds": a.seconds, "partitions": a.latency_partitions, **lat},
                              "broker_round_trip_at_rate": floor}, indent=2))
            return
        events = os.path.join(work, "events.jsonl")
        subprocess.run([bin_, "gen", "--events", str(a.events), "--contacts", str(a.contacts),
                        "--late-percent", "0", "--out", events], check=True)
        t0 = time.time()
        subprocess.run([bin_, "produce", "--brokers", brokers, "--file", events], check=True,
                       stderr=subprocess.DEVNULL)
        print(f"produced {a.events} events in {time.time() - t0:.1f}s", file=sys.stderr)

        raw = json.loads(subprocess.run([bin_, "bench-consume", "--brokers", brokers, "--topics",
                                         ",".join(INPUTS), "--expect", str(a.events)],
                                        check=True, capture_output=True, text=True).stdout)

        cfg = os.path.join(work, "pipeline.toml")
        config(cfg, brokers, os.path.join(work, "state"), "bench-pipeline")
        log = open(os.path.join(work, "pipeline.log"), "w")
        p = subprocess.Popen([bin_, "run", "--config", cfg, "--idle-exit", "3s"],
                             stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "NO_COLOR": "1"})
        _, status, usage = os.wait4(p.pid, 0)
        text = open(log.name).read()
        m = re.search(r"consumed: (\d+),.*busy_ms: (\d+)", text)
        if status != 0 or not m:
            sys.exit("pipeline run failed:\n" + text[-3000:])
        consumed, busy_ms = int(m.group(1)), int(m.group(2))
        pipeline = {"records": consumed, "seconds": busy_ms / 1000, "per_second": round(consumed / (busy_ms / 1000)),
                    "peak_rss_mib": round(usage.ru_maxrss / 1024)}

        state = None
        if a.state_contacts:
            cfg3 = os.path.join(work, "state.toml")
            config(cfg3, brokers, os.path.join(work, "state3"), "bench-state")
            t0 = time.time()
            fill = json.loads(subprocess.run([bin_, "bench-fill-state", "--config", cfg3, "--contacts",
                                              str(a.state_contacts)], check=True, capture_output=True,
                                             text=True).stdout)
            fill_s = time.time() - t0
            log3 = os.path.join(work, "state.log")
            t0 = time.time()
            svc = subprocess.Popen([bin_, "run", "--config", cfg3, "--idle-exit", "3s"], stdout=subprocess.DEVNULL,
                                   stderr=open(log3, "w"), env={**os.environ, "NO_COLOR": "1"})
            ready_s = None
            while ready_s is None and svc.poll() is None:
                if "ready" in open(log3).read():
                    ready_s = time.time() - t0
                time.sleep(0.01)
            _, status, usage = os.wait4(svc.pid, 0)
            m = re.search(r"consumed: (\d+)", open(log3).read())
            state = {**fill, "fill_seconds": round(fill_s, 1), "start_to_ready_seconds": round(ready_s or -1, 2),
                     "then_consumed": int(m.group(1)) if m else None,
                     "peak_rss_mib": round(usage.ru_maxrss / 1024)}
        result = {"events": a.events, "contacts": a.contacts, "raw_consume": raw, "pipeline": pipeline,
                  "ratio": round(pipeline["per_second"] / raw["per_second"], 2),
                  "latency_at_rate": {"rate": a.rate, "seconds": a.seconds, "partitions": a.latency_partitions, **lat},
                  "broker_round_trip_at_rate": floor,
                  "state_phase": state}
        print(json.dumps(result, indent=2))
    finally:
        tansu.terminate(); tansu.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
