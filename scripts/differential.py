#!/usr/bin/env python3
"""Random rules and events through `leadscore replay` and through scripts/oracle.py,
compared with the conformance checker's tolerances (scores ±0.02, `at` ±1 s).

usage: scripts/differential.py BINARY [--cases N] [--seed S] [--dense] [--exact] [--wire] [--exact-at] [--keep DIR]

Each case draws a rules file (decay of either kind or none, hysteresis, clamps,
inactivity steps, fit rules of every op, engagement rules with caps, per-item caps,
expiry, non-decaying and negative points) and a few hundred events over a few
contacts (late ones, duplicates, forms whose fields change and clear; `--dense`:
hundreds over one or two, so that caps and expiries pile up; `--exact`: whole points,
mostly not decaying, and even thresholds, so that scores land on them; `--wire`: the
input in every form replay takes, kcat `-J` envelopes, lines without a key, offsets
other than `Z`, from none to nine fraction digits, blank lines and rejected ones). A failing
case is written to DIR (default /tmp/differential) with the command that replays
it; the exit status is the number of failing cases (capped at 100).
"""
import argparse
import datetime as dt
import importlib.util
import json
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import oracle  # noqa: E402

CHECK = os.path.join(HERE, "..", "..", "shared", "conformance", "check.py")
if not os.path.exists(CHECK):
    CHECK = os.path.join(HERE, "..", "tests", "conformance", "check.py")

URLS = ["https://acme.io/pricing", "https://acme.io/Pricing/enterprise", "https://acme.io/docs/api",
        "https://acme.io/careers", "https://acme.io/blog/x", "https://acme.io/"]
FIELDS = {
    "title": ["CEO", "cto", "Engineer", "vp", "", None],
    "budget": [500, 1000, "2500", "abc", 1000.5, None],
    "email": ["a@gmail.com", "B@ACME.IO", "c@gmail.COM", None],
    "trial": [True, False, "TRUE", "false", None],
    "size": ["11-50", "1000+", 250, None],
}


def rules_text(r, exact=False):
    out = []
    for mi in range(r.choice([1, 1, 2])):
        decay = r.choice(["", "decay = { percent_per_day = %s }" % r.choice([0.5, 2, 10]),
                          "decay = { half_life_days = %s }" % r.choice([3, 14, 45])])
        tiers = sorted(r.sample(range(5, 60), 2))
        if exact:
            # Whole points, thresholds they add up to: ties on every tier rule.
            decay = r.choice(["", "decay = { half_life_days = %s }" % r.choice([3, 14])])
            tiers = sorted(r.sample(range(2, 30, 2), 2))
        lines = ["[[model]]", f'name = "m{mi}"', decay]
        if r.random() < 0.5:
            lines.append(f"hysteresis = {r.choice([1, 3, 5])}")
        if r.random() < 0.3:
            lines.append(f"score_range = [{r.choice([-50, -10, 0])}, {r.choice([40, 100])}]")
        lines.append('tiers = [{ name = "cold" }, { name = "warm", min = %d }, { name = "hot", min = %d }]' % tuple(tiers))
        if r.random() < 0.6:
            steps = sorted(r.sample([3, 7, 10, 21, 30], r.choice([1, 2])))
            pts = sorted(r.sample([-2, -5, -10, -20], len(steps)), reverse=True)
            lines.append("inactivity_penalties = [" + ", ".join(
                f"{{ after_days = {d}, points = {p} }}" for d, p in zip(steps, pts)) + "]")
        n = 0

        def rule(body):
            nonlocal n
            n += 1
            lines.append(f'[[model.rule]]\nid = "r{n}"\n{body}')

        for _ in range(r.randint(0, 3)):
            field = r.choice(list(FIELDS))
            op = r.choice(["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "starts_with",
                           "ends_with", "exists", "missing"])
            if op in ("exists", "missing"):
                value = ""
            elif op in ("in", "not_in"):
                value = "value = " + json.dumps(r.sample(["ceo", "vp", "1000", "true", "250"], 2))
            elif op in ("gt", "gte", "lt", "lte"):
                value = f"value = {r.choice([100, 1000, 2000])}"
            elif op in ("contains", "starts_with", "ends_with"):
                value = "value = " + json.dumps(r.choice(["gmail", "@gmail.com", "c", ["o", "x"], "1000"]))
            else:
                value = "value = " + json.dumps(r.choice(["ceo", "CTO", "1000", "true", "11-50"]))
            fit = r.choice([2, 4, 6, -2]) if exact else r.choice([3, 5, 8, -4, 12])
            rule(f'when = "field"\nfield = "{field}"\nop = "{op}"\n{value}\npoints = {fit}')
        for _ in range(r.randint(2, 7)):
            when = r.choice(["page_visit", "page_visit", "email_open", "email_click", "email_unsubscribe",
                             "form_submit", "purchase"])
            points = r.choice([2, 4, 6, -2, -4]) if exact else r.choice([1, 2, 4, 7.5, 10, 15, 25, -8, -25])
            body = [f'when = "{when}"', f"points = {points}"]
            if when == "page_visit" and r.random() < 0.7:
                body.append(f'url = "{r.choice(["*/pricing*", "*/docs/*", "*careers*", "*ACME.io/?"])}"')
            if when == "email_click" and r.random() < 0.3:
                body.append('link_url = "*offer*"')
            if when.startswith("email") and r.random() < 0.3:
                body.append('email_id = "news-*"')
            if when == "form_submit" and r.random() < 0.6:
                body.append(f'form_id = "{r.choice(["webinar*", "demo", "signup"])}"')
            if when == "purchase" and r.random() < 0.5:
                body.append(f"min_amount = {r.choice([0, 100, 999.5])}")
            if r.random() < 0.4:
                body.append(f"max_times = {r.choice([1, 2, 3])}")
                if r.random() < 0.6:
                    body.append(f"window_days = {r.choice([1, 3, 7, 30])}")
                if r.random() < 0.4:
                    body.append("per_item = true")
            if r.random() < 0.4:
                body.append(f"expires_after_days = {r.choice([1, 2, 5, 14, 30])}")
            if r.random() < (0.7 if exact else 0.25):
                body.append("decays = false")
            rule("\n".join(body))
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def stamp_text(r, when, wire):
    """`when` (ms) as RFC 3339: UTC with milliseconds, or with `wire` in any form that
    names the same millisecond (another offset, fewer digits, or more digits below the
    millisecond, which are truncated)."""
    off = dt.timedelta(minutes=r.choice([0, 0, 60, 120, -300, 330, -570])) if wire else dt.timedelta(0)
    stamp = dt.datetime.fromtimestamp(int(when) // 1000, dt.timezone(off))
    base = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    zone = ("Z" if r.random() < 0.5 else "+00:00") if not off else stamp.strftime("%z")[:3] + ":" + stamp.strftime("%z")[3:]
    frac = int(when) % 1000
    if not wire:
        return f"{base}.{frac:03d}Z"
    digits = r.choice([0, 1, 2, 3, 3, 6, 9])
    if digits == 0 and frac == 0:
        return base + zone
    if digits in (1, 2) and frac % 10 ** (3 - digits) == 0:
        return f"{base}.{frac // 10 ** (3 - digits):0{digits}d}{zone}"
    if digits > 3:
        return f"{base}.{frac:03d}{r.randrange(10 ** (digits - 3)):0{digits - 3}d}{zone}"
    return f"{base}.{frac:03d}{zone}"


REJECTS = [
    "{not json",
    '{"topic": "page-visits", "value": {"event_id": "x", "occurred_at": "2026-03-01T00:00:00Z", "url": "u"}}',
    '{"topic": "tweets", "value": {"event_id": "x", "contact_id": "c-0", "occurred_at": "2026-03-01T00:00:00Z"}}',
    '{"topic": "page-visits", "key": "c-9", "value": {"event_id": "x", "contact_id": "c-0", '
    '"occurred_at": "2026-03-01T00:00:00Z", "url": "u"}}',
    '{"topic": "purchases", "value": {"event_id": "x", "contact_id": "c-0", '
    '"occurred_at": "2026-03-01T00:00:00Z", "product_id": "pro", "amount": -1}}',
    '{"topic": "email-clicks", "value": {"event_id": "x", "contact_id": "c-0", '
    '"occurred_at": "2026-03-01T00:00:00Z", "email_id": "news-1", "action": "forward"}}',
    '{"topic": "page-visits", "value": {"event_id": "x", "contact_id": "c-0", '
    '"occurred_at": "2026-03-01 00:00:00", "url": "u"}}',
    '{"topic": "page-visits", "payload": "{\\"event_id\\": \\"\\", \\"contact_id\\": \\"c-0\\"}"}',
]


def encode(r, topic, key, v, n, wire):
    """One input line: `{"topic", "key", "value"}`, or with `wire` sometimes without its
    key or as kcat's `-J` envelope (the event as a string in `payload`)."""
    if not wire or r.random() < 0.5:
        rec = {"topic": topic, "key": key, "value": v}
        if wire and r.random() < 0.3:
            del rec["key"]
        return json.dumps(rec)
    return json.dumps({"topic": topic, "partition": r.randrange(4), "offset": n, "tstype": "create",
                       "ts": 1772323200000 + n, "broker": 1, "key": key if r.random() < 0.8 else None,
                       "payload": json.dumps(v)})


def events(r, dense=False, wire=False):
    start = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc).timestamp() * 1000
    contacts = [f"c-{i}" for i in range(r.randint(1, 2) if dense else r.randint(2, 8))]
    # Half the cases on whole hours: events then meet expiries (whole days
    # later), inactivity steps and each other on the same millisecond.
    snap = 3_600_000 if r.random() < 0.5 else 60_000 if dense else 1
    t, lines, ids = start, [], []
    for n in range(r.randint(100, 400) if dense else r.randint(30, 250)):
        t += r.expovariate(1 / (r.choice([0.5, 2, 8]) * 3_600_000))
        when = t - (r.random() * 3 * 86_400_000 if r.random() < 0.1 else 0)
        when = when // snap * snap
        c = r.choice(contacts)
        text = stamp_text(r, when, wire)
        if ids and r.random() < 0.05:
            lines.append(r.choice(ids))
            continue
        if wire and r.random() < 0.04:
            lines.append(r.choice(REJECTS) if r.random() < 0.75 else "")
            continue
        v = {"event_id": f"e-{n}", "contact_id": c, "occurred_at": text}
        topic = r.choice(["page-visits", "page-visits", "email-clicks", "form-submissions", "purchases"])
        if topic == "page-visits":
            v["url"] = r.choice(URLS)
        elif topic == "email-clicks":
            v["email_id"] = r.choice(["news-1", "news-2", "promo"])
            action = r.choice([None, "open", "click", "unsubscribe", "open"])
            if action:
                v["action"] = action
            if r.random() < 0.5:
                v["link_url"] = r.choice(["https://x/offer", "https://x/other"])
        elif topic == "form-submissions":
            v["form_id"] = r.choice(["webinar-1", "webinar-2", "demo", "signup"])
            if r.random() < 0.7:
                v["fields"] = {k: r.choice(vals) for k, vals in r.sample(sorted(FIELDS.items()), 2)}
        else:
            v["product_id"] = r.choice(["pro", "enterprise"])
            if r.random() < 0.8:
                v["amount"] = r.choice([0, 99, 100, 999.5, 5000])
        line = encode(r, topic, c, v, n, wire)
        ids.append(line)
        lines.append(line)
    until = t + r.choice([0, 1, 10, 40]) * 86_400_000
    stamp = dt.datetime.fromtimestamp(int(until) / 1000, dt.timezone.utc)
    return lines, stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(until) % 1000:03d}Z"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--cases", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dense", action="store_true")
    ap.add_argument("--exact", action="store_true", help="whole points and thresholds: ties everywhere")
    ap.add_argument("--wire", action="store_true", help="envelopes, offsets, fraction digits, rejects")
    ap.add_argument("--exact-at", action="store_true",
                    help="tier changes' `at` to the millisecond (the conformance checker allows 1 s)")
    ap.add_argument("--keep", default="/tmp/differential")
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("check", CHECK)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    if args.exact_at:
        check.AT_TOL_S = 0.0005
    failed = 0
    for case in range(args.seed, args.seed + args.cases):
        r = random.Random(case)
        d = os.path.join(args.keep, f"case-{case}")
        os.makedirs(d, exist_ok=True)
        rules, (lines, until) = rules_text(r, args.exact), events(r, args.dense, args.wire)
        paths = {k: os.path.join(d, k) for k in ("rules.toml", "events.jsonl", "until", "expected.jsonl",
                                                  "expected_scores.jsonl", "scores.jsonl")}
        open(paths["rules.toml"], "w").write(rules)
        open(paths["events.jsonl"], "w").write("\n".join(lines) + "\n")
        open(paths["until"], "w").write(until + "\n")
        dedupe_days = r.choice([30, 30, 7, 1])
        o = oracle.Oracle(rules, dedupe_days)
        for line in lines:
            value = oracle.valid(line)
            if value is not None:
                o.apply(*value)
        o.advance(oracle.ms(until))
        expected = sorted(o.out, key=lambda e: oracle.ms(e["at"]))
        p = subprocess.run([args.binary, "replay", "--rules", paths["rules.toml"], "--events",
                            paths["events.jsonl"], "--until", until, "--scores-out", paths["scores.jsonl"],
                            "--dedupe-window", f"{dedupe_days}d"],
                           capture_output=True, text=True)
        if p.returncode != 0:
            errs = [f"exit {p.returncode}: {p.stderr[:300]}"]
        else:
            got = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
            errs = check.compare_events(expected, got)
            errs += check.compare_scores(o.scores(), check.read_jsonl(paths["scores.jsonl"]))
        if errs:
            failed += 1
            with open(paths["expected.jsonl"], "w") as f:
                f.writelines(json.dumps(e) + "\n" for e in expected)
            with open(paths["expected_scores.jsonl"], "w") as f:
                f.writelines(json.dumps(e) + "\n" for e in o.scores())
            print(f"case {case}: " + " | ".join(errs)[:600])
        else:
            for p in paths.values():
                if os.path.exists(p):
                    os.remove(p)
            os.rmdir(d)
    print(f"{args.cases - failed}/{args.cases} cases agree")
    sys.exit(min(failed, 100))


if __name__ == "__main__":
    main()
