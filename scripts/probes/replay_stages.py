#!/usr/bin/env python3
"""Runs a build with scripts/probes/replay_stages.patch applied: the floor,
each STOP_AT stage and the whole replay, alternating, pinned to core 0, and
prints each one's best and median CPU time (user + system) and peak RSS.

    python3 scripts/probes/replay_stages.py BIN ROUNDS [EVENTS_FILE]
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    binary, rounds = sys.argv[1], int(sys.argv[2])
    events = sys.argv[3] if len(sys.argv) > 3 else os.path.join(ROOT, "bench-data", "events-1000000-100000.jsonl")
    rules = os.path.join(ROOT, "examples", "rules.toml")
    runs = [("floor", None)] + [(f"stop {k}", str(k)) for k in range(1, 8)] + [("full", None)]
    res = {name: [] for name, _ in runs}
    for _ in range(rounds):
        for name, stop in runs:
            env = {k: v for k, v in os.environ.items() if k != "STOP_AT"}
            if stop:
                env["STOP_AT"] = stop
            args = ["taskset", "-c", "0", binary, "replay"]
            args += ["--decode-only"] if name == "floor" else []
            args += ["--rules", rules, "--events", events]
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            _, status, usage = os.wait4(proc.pid, 0)
            if status != 0:
                sys.exit(f"failed: {' '.join(args)}")
            res[name].append((usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024))
    for name, _ in runs:
        cpu = sorted(t for t, _ in res[name])
        print(f"{name:8s} best {cpu[0]:.3f} s  median {cpu[len(cpu) // 2]:.3f} s  peak RSS {res[name][0][1]} MiB")


if __name__ == "__main__":
    main()
