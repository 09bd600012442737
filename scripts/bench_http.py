#!/usr/bin/env python3
"""What serving HTTP costs the pipeline, against a real broker (Tansu, 127.0.0.1).

The same input (generated, produced once) is consumed by `leadscore run`
several times, each run with a consumer group and state directory of its
own, alternating: without HTTP load, then with a steady load on
`/v1/contacts/{id}` and `/metrics` (default 200 requests/s in all, one in ten a
scrape, over a keep-alive connection, from `leadscore bench-http`: a paced
client in Rust, so the load tool itself takes little CPU). Each run's rate is records over
the time from the first record received to the last batch applied (the
service's exit report). The result is the ratio of the loaded to the
unloaded rate, medians over the runs, and the request latencies.

    python3 scripts/bench_http.py [--binary target/debug/leadscore]
        [--events 300000] [--contacts 30000] [--rps 200] [--rounds 2]
"""
import argparse, json, os, re, shutil, signal, subprocess, sys, tempfile, time

from bench_pipeline import INPUTS, config, start_tansu


def http_address(log_path, proc, limit=60):
    end = time.time() + limit
    while time.time() < end:
        m = re.search(r"address=(127\.0\.0\.1:\d+)", open(log_path).read())
        if m:
            return m.group(1)
        if proc.poll() is not None:
            sys.exit("service exited:\n" + open(log_path).read()[-3000:])
        time.sleep(0.05)
    sys.exit("no HTTP address in the log")


def run_once(bin_, brokers, work, name, load_rps, ids_file):
    cfg = os.path.join(work, f"{name}.toml")
    config(cfg, brokers, os.path.join(work, f"state-{name}"), f"bench-http-{name}")
    log_path = os.path.join(work, f"{name}.log")
    proc = subprocess.Popen([bin_, "run", "--config", cfg, "--idle-exit", "3s"], stdout=subprocess.DEVNULL,
                            stderr=open(log_path, "w"), env={**os.environ, "NO_COLOR": "1"})
    load = None
    if load_rps:
        address = http_address(log_path, proc)
        load = subprocess.Popen([bin_, "bench-http", "--address", address, "--rps", str(load_rps),
                                 "--ids", ids_file], stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    text = open(log_path).read()
    m = re.search(r"consumed: (\d+),.*busy_ms: (\d+)", text)
    if status != 0 or not m:
        sys.exit(f"{name} failed:\n" + text[-3000:])
    consumed, busy_ms = int(m.group(1)), int(m.group(2))
    out = {"run": name, "records": consumed, "per_second": round(consumed / (busy_ms / 1000)),
           "service_cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2)}
    if load:
        report = load.stdout.read()
        _, _, lusage = os.wait4(load.pid, 0)
        out["http"] = json.loads(report)
        secs = out["http"]["seconds"]
        out["http"]["achieved_rps"] = round(out["http"]["requests"] / secs)
        out["http"]["load_tool_cpu_share"] = round((lusage.ru_utime + lusage.ru_stime) / secs, 3)
    print(json.dumps(out), file=sys.stderr)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--contacts", type=int, default=30_000)
    ap.add_argument("--binary", default=os.environ.get("LEADSCORE_BIN", "target/debug/leadscore"))
    ap.add_argument("--tansu", default=shutil.which("tansu") or os.path.expanduser("~/.cargo/bin/tansu"))
    ap.add_argument("--rps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    bin_ = os.path.abspath(a.binary)
    work = tempfile.mkdtemp(prefix="leadscore-bench-http-")
    tansu, brokers = start_tansu(a.tansu, work, INPUTS + ["lead-score-events", "lead-score-dlq"])
    try:
        events = os.path.join(work, "events.jsonl")
        subprocess.run([bin_, "gen", "--events", str(a.events), "--contacts", str(a.contacts),
                        "--late-percent", "0", "--out", events], check=True)
        subprocess.run([bin_, "produce", "--brokers", brokers, "--file", events], check=True,
                       stderr=subprocess.DEVNULL)
        ids_file = os.path.join(work, "ids.txt")
        with open(ids_file, "w") as f:
            f.write("\n".join(sorted({json.loads(l)["key"] for l in open(events)})) + "\n")
        runs = []
        for r in range(a.rounds):
            runs.append(run_once(bin_, brokers, work, f"quiet{r}", 0, ids_file))
            runs.append(run_once(bin_, brokers, work, f"loaded{r}", a.rps, ids_file))
        quiet = sorted(x["per_second"] for x in runs if "http" not in x)
        loaded = sorted(x["per_second"] for x in runs if "http" in x)
        med = lambda xs: xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2
        result = {"events": a.events, "contacts": a.contacts, "rps": a.rps, "runs": runs,
                  "quiet_median_per_second": med(quiet), "loaded_median_per_second": med(loaded),
                  "loaded_over_quiet": round(med(loaded) / med(quiet), 3)}
        print(json.dumps(result, indent=2))
    finally:
        tansu.send_signal(signal.SIGTERM); tansu.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
