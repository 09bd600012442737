#!/usr/bin/env python3
"""A slow, direct model of SPEC §2–6 for differential tests of `leadscore replay`.

usage: scripts/oracle.py RULES EVENTS UNTIL OUT_EVENTS OUT_SCORES

It keeps every contribution, sums them afresh whenever it needs a score, and
finds each time-driven tier change by bisection over milliseconds on the
stretches where the score is monotone (between expiries and inactivity steps).
Sums are exact (math.fsum over the terms). It shares no code or arithmetic
with the engine, so where both agree within
check.py's tolerances the engine's running sums, predictions and timer wheel
did what the spec says. It handles valid input lines only.
"""
import datetime as dt
import json
import math
import re
import sys
import tomllib

DAY = 86_400_000


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def ms(text):
    """Milliseconds since the epoch; digits beyond milliseconds are truncated
    (README, "Timestamps"). An instant without an offset is not RFC 3339."""
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"no offset: {text}")
    return (t - EPOCH) // dt.timedelta(milliseconds=1)


def rfc3339(t):
    d = dt.datetime.fromtimestamp(t / 1000, dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t % 1000:03d}Z"


def glob(pattern, text):
    if text is None:
        return False
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, text, re.IGNORECASE | re.DOTALL) is not None


def number(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            x = float(v.strip())
        except ValueError:
            return None
        return x if math.isfinite(x) else None
    return None


def norm(v):
    """A value as the comparisons of SPEC §3 see it."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return ("b", v.strip().lower() == "true")
    n = number(v)
    if n is not None:
        return ("n", n)
    return ("s", str(v).lower())


def as_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def holds(rule, value):
    op, want = rule["op"], rule.get("value")
    absent = value is None or value == ""
    if op == "missing":
        return absent
    if absent:
        return False
    if op == "exists":
        return True
    if op in ("eq", "ne"):
        same = norm(value) == norm(want)
        return same if op == "eq" else not same
    if op in ("in", "not_in"):
        any_same = any(norm(value) == norm(w) for w in want)
        return any_same if op == "in" else not any_same
    if op in ("gt", "gte", "lt", "lte"):
        a, b = number(value), number(want)
        if a is None or b is None:
            return False
        return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]
    text = as_text(value).lower()
    wants = want if isinstance(want, list) else [want]
    test = {"contains": lambda w: w in text, "starts_with": text.startswith, "ends_with": text.endswith}[op]
    return any(test(str(w).lower()) for w in wants)


KIND = {"page-visits": "page_visit", "email-clicks": "email", "form-submissions": "form", "purchases": "purchase"}


def matches(rule, kind, ev):
    """The rule's item if it scores this event, else None (False for no item needed)."""
    when = rule["when"]
    if when == "page_visit":
        ok, item = kind == "page_visit", ev.get("url")
        ok = ok and ("url" not in rule or glob(rule["url"], ev.get("url")))
    elif when.startswith("email_"):
        action = ev.get("action") or "click"
        ok, item = kind == "email" and when == "email_" + action, ev.get("email_id")
        ok = ok and ("email_id" not in rule or glob(rule["email_id"], ev.get("email_id")))
        ok = ok and ("link_url" not in rule or glob(rule["link_url"], ev.get("link_url")))
    elif when == "form_submit":
        ok, item = kind == "form", ev.get("form_id")
        ok = ok and ("form_id" not in rule or glob(rule["form_id"], ev.get("form_id")))
    elif when == "purchase":
        ok, item = kind == "purchase", ev.get("product_id")
        ok = ok and ("product_id" not in rule or glob(rule["product_id"], ev.get("product_id")))
        if ok and "min_amount" in rule:
            ok = ev.get("amount") is not None and ev["amount"] >= rule["min_amount"]
    else:
        return None
    return item if ok else None


class Model:
    def __init__(self, m):
        self.name = m["name"]
        decay = m.get("decay") or {}
        if "percent_per_day" in decay:
            self.ln_f = math.log1p(-decay["percent_per_day"] / 100)
        elif "half_life_days" in decay:
            self.ln_f = math.log(0.5) / decay["half_life_days"]
        else:
            self.ln_f = 0.0
        self.h = m.get("hysteresis", 0)
        self.range = m.get("score_range")
        self.tiers = m["tiers"]
        self.penalties = sorted(m.get("inactivity_penalties", []), key=lambda p: p["after_days"])
        rules = m.get("rule", [])
        self.fit = [r for r in rules if r["when"] == "field"]
        self.engagement = [r for r in rules if r["when"] != "field"]

    def move(self, tier, score):
        """The tier that `tier` moves to at `score`, or None."""
        mins = [t.get("min", -math.inf) for t in self.tiers]
        up = [i for i in range(tier + 1, len(mins)) if mins[i] <= score]
        if up:
            return max(up)
        if tier > 0 and score < mins[tier] - self.h:
            return max(i for i in range(tier) if i == 0 or score >= mins[i] - self.h)
        return None


class Contact:
    def __init__(self, name, models):
        self.name = name
        self.profile = {}  # field -> (occurred_at, value)
        self.last_activity = None
        self.contribs = [[] for _ in models]  # (t, points, expires, decays, rule_id)
        self.scored = [{} for _ in models]  # (rule id, item or None) -> scored times
        self.swept = [{} for _ in models]  # rule id -> clock of the last sweep of its items
        self.tier = [0 for _ in models]
        self.seen = {}  # event_id -> clock when seen

    def parts(self, mi, model, t, before=False):
        """Fit, engagement, penalty and score at t, each summed exactly (math.fsum) from
        the terms: only the terms themselves are rounded."""
        fit = math.fsum(r["points"] for r in model.fit if holds(r, self.profile.get(r["field"], (0, None))[1]))
        terms = []
        for (ct, pts, exp, decays, _) in self.contribs[mi]:
            if exp is not None and (t > exp if before else t >= exp):
                continue
            age = max(t - ct, 0) / DAY
            terms.append(pts * math.exp(model.ln_f * age) if decays else pts)
        eng = math.fsum(terms)
        pen = 0.0
        if self.last_activity is not None:
            idle = t - self.last_activity
            for p in model.penalties:
                after = p["after_days"] * DAY
                if (after < idle) if before else (after <= idle):
                    pen = p["points"]
        raw = math.fsum([fit, pen] + terms)
        score = raw if model.range is None else min(max(raw, model.range[0]), model.range[1])
        return fit, eng, pen, score

    def score(self, mi, model, t, before=False):
        return self.parts(mi, model, t, before)[3]

    def breakpoints(self, mi, model, lo, hi):
        """Instants in (lo, hi] where the score may jump: (t, cause)."""
        out = {}
        for (_, _, exp, _, _) in self.contribs[mi]:
            if exp is not None and lo < exp <= hi:
                out[exp] = "expiry"
        if self.last_activity is not None:
            for p in model.penalties:
                b = self.last_activity + round(p["after_days"] * DAY)
                if lo < b <= hi:
                    out.setdefault(b, "inactivity")
        return sorted(out.items())


class Oracle:
    def __init__(self, rules_text, dedupe_days=30):
        self.models = [Model(m) for m in tomllib.loads(rules_text)["model"]]
        self.dedupe = dedupe_days * DAY
        self.contacts = {}
        self.order = []
        self.clock = None
        self.out = []

    def change(self, c, mi, frm, to, score, prev, at, cause):
        m = self.models[mi]
        self.out.append({"type": "tier_changed", "contact_id": c.name, "model": m.name,
                         "from_tier": m.tiers[frm]["name"], "to_tier": m.tiers[to]["name"],
                         "direction": "up" if to > frm else "down", "score": round(score, 2),
                         "previous_score": round(prev, 2), "at": rfc3339(at), "cause": cause,
                         "event_id": f"{c.name}/{m.name}/{at}/{frm}/{to}"})

    def drift(self, c, mi, lo, hi):
        """Time-driven changes of contact c, model mi, in (lo, hi]."""
        model = self.models[mi]
        start = lo
        for b, cause in self.breakpoints_with_end(c, mi, model, lo, hi):
            # The open stretch (start, b): monotone, no jumps.
            while True:
                end = b - 1 if cause else b
                if end <= start:
                    break
                tier = c.tier[mi]
                if model.move(tier, c.score(mi, model, end)) is None:
                    break
                a, z = start, end  # move(a) false, move(z) true
                while z - a > 1:
                    mid = (a + z) // 2
                    if model.move(tier, c.score(mi, model, mid)) is None:
                        a = mid
                    else:
                        z = mid
                s = c.score(mi, model, z)
                to = model.move(tier, s)
                self.change(c, mi, tier, to, s, c.score(mi, model, z, before=True), z, {"kind": "decay"})
                c.tier[mi] = to
                start = z
            if cause:
                s = c.score(mi, model, b)
                to = model.move(c.tier[mi], s)
                if to is not None:
                    kind = {"kind": cause}
                    if cause == "expiry":
                        ids = [r for (ct, _, exp, _, r) in c.contribs[mi] if exp == b]
                        kind["rule"] = ids[0]
                    self.change(c, mi, c.tier[mi], to, s, c.score(mi, model, b, before=True), b, kind)
                    c.tier[mi] = to
            start = b

    def breakpoints_with_end(self, c, mi, model, lo, hi):
        pts = c.breakpoints(mi, model, lo, hi)
        if not pts or pts[-1][0] != hi:
            pts.append((hi, None))
        return pts

    def advance(self, to):
        if self.clock is None or to <= self.clock:
            self.clock = to if self.clock is None else self.clock
            return
        for name in self.order:
            c = self.contacts[name]
            for mi in range(len(self.models)):
                self.drift(c, mi, self.clock, to)
        self.clock = to

    def apply(self, topic, ev):
        kind = KIND[topic]
        t = ms(ev["occurred_at"])
        now = t if self.clock is None else max(self.clock, t)
        self.advance(now)
        name = ev["contact_id"]
        c = self.contacts.get(name)
        if c is None:
            c = self.contacts[name] = Contact(name, self.models)
            self.order.append(name)
        seen = c.seen.get(ev["event_id"])
        if seen is not None and now - seen < self.dedupe:
            return
        c.seen[ev["event_id"]] = now
        before = [c.score(mi, m, now) for mi, m in enumerate(self.models)]
        if kind == "form":
            for k, v in (ev.get("fields") or {}).items():
                old = c.profile.get(k)
                if old is None or t >= old[0]:
                    c.profile[k] = (t, v)
        c.last_activity = t if c.last_activity is None else max(c.last_activity, t)
        for mi, m in enumerate(self.models):
            for r in m.engagement:
                item = matches(r, kind, ev)
                if item is None:
                    continue
                if "max_times" in r:
                    key = (r["id"], item if r.get("per_item") else None)
                    times = c.scored[mi].setdefault(key, [])
                    window = r.get("window_days")
                    past = [s for s in times if s <= t and (window is None or s > t - window * DAY)]
                    if len(past) >= r["max_times"]:
                        continue
                    times.append(t)
                    times.sort()
                    # What a cap keeps (README, "Caps and late events"): a lifetime cap its
                    # `max_times` earliest times; a windowed one, times newer than
                    # clock - window - dedupe window (exact for events up to that late).
                    # A per-item cap also drops, at most once a window, the items with
                    # nothing newer than that.
                    if window is None:
                        del times[r["max_times"]:]
                    else:
                        horizon = now - round(window * DAY) - self.dedupe
                        times[:] = [s for s in times if s > horizon]
                        items = [k for k in c.scored[mi] if k[0] == r["id"]]
                        swept = c.swept[mi].get(r["id"])
                        if r.get("per_item") and len(items) > 1 and (
                                swept is None or now - swept >= round(window * DAY)):
                            for k in items:
                                if not c.scored[mi][k] or c.scored[mi][k][-1] <= horizon:
                                    del c.scored[mi][k]
                            c.swept[mi][r["id"]] = now
                exp = t + round(r["expires_after_days"] * DAY) if "expires_after_days" in r else None
                if exp is not None and exp <= now:
                    continue
                decays = r.get("decays", True) and m.ln_f != 0.0
                c.contribs[mi].append((t, r["points"], exp, decays, r["id"]))
            after = c.score(mi, m, now)
            to = m.move(c.tier[mi], after)
            if to is not None:
                self.change(c, mi, c.tier[mi], to, after, before[mi], now,
                            {"kind": "event", "topic": topic, "event_id": ev["event_id"]})
                c.tier[mi] = to

    def scores(self):
        rows = []
        for name in sorted(self.contacts):
            c = self.contacts[name]
            for mi, m in sorted(enumerate(self.models), key=lambda x: x[1].name):
                fit, eng, pen, score = c.parts(mi, m, self.clock)
                rows.append({"contact_id": name, "model": m.name, "score": round(score, 2), "fit": round(fit, 2),
                             "engagement": round(eng, 2), "penalty": round(pen, 2),
                             "tier": m.tiers[c.tier[mi]]["name"]})
        return rows


REQUIRED = {"page-visits": "url", "email-clicks": "email_id", "form-submissions": "form_id",
            "purchases": "product_id"}


def valid(line):
    """(topic, event) of a line the engine accepts; None for the rest (roughly: rejects are
    not what this model is for)."""
    try:
        rec = json.loads(line)
        value = rec.get("value") or json.loads(rec["payload"])
        topic = rec["topic"]
        ms(value["occurred_at"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if topic not in KIND or not isinstance(value, dict):
        return None
    for f in ("event_id", "contact_id", REQUIRED[topic]):
        if not isinstance(value.get(f), str) or not value[f]:
            return None
    if rec.get("key") is not None and rec["key"] != value["contact_id"]:
        return None
    if value.get("action") not in (None, "open", "click", "unsubscribe"):
        return None
    amount = value.get("amount")
    if amount is not None and (not isinstance(amount, (int, float)) or amount < 0):
        return None
    return topic, value


def main():
    rules, events, until, out_events, out_scores = sys.argv[1:6]
    o = Oracle(open(rules).read())
    for line in open(events):
        value = valid(line)
        if value is not None:
            o.apply(*value)
    if until:
        o.advance(ms(until))
    with open(out_events, "w") as f:
        for e in sorted(o.out, key=lambda e: ms(e["at"])):
            f.write(json.dumps(e) + "\n")
    with open(out_scores, "w") as f:
        for r in o.scores():
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
