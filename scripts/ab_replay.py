#!/usr/bin/env python3
"""A/B of replay binaries on one file: alternates decode-only and a full
replay with each binary (the allocator and the decoder are in the binary too), pinned to core 0, N rounds, and
prints the best and median CPU time (user + sys, from wait4) of each.

    python3 scripts/ab_replay.py 6 /tmp/leadscore-before target/release/leadscore \
        [--events bench-data/events-1000000-100000.jsonl] [--rules examples/rules.toml]

Compare best-of-N only: on a noisy machine medians run well above the best.
"""
import argparse, os, subprocess


def cpu_seconds(args):
    p = subprocess.Popen(["taskset", "-c", "0"] + args, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        raise SystemExit(f"{args[0]} failed with status {status}")
    return ru.ru_utime + ru.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rounds", type=int)
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--events", default="bench-data/events-1000000-100000.jsonl")
    ap.add_argument("--rules", default="examples/rules.toml")
    a = ap.parse_args()
    runs = []
    for b in a.binaries:
        runs += [(b + " decode-only", [b, "replay", "--decode-only"]), (b, [b, "replay"])]
    times = {name: [] for name, _ in runs}
    for _ in range(a.rounds):
        for name, args in runs:
            times[name].append(cpu_seconds(args + ["--rules", a.rules, "--events", a.events]))
    for b in a.binaries:
        floor = min(times[b + " decode-only"])
        for name in (b + " decode-only", b):
            t = sorted(times[name])
            print(f"{name}: best {t[0]:.3f} s, median {t[len(t) // 2]:.3f} s, "
                  f"its decode-only best / best {floor / t[0]:.3f}")


if __name__ == "__main__":
    main()
