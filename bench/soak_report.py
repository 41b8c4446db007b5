"""The soak's figures from what a run collected, its pass/fail lines, and the report files
(`soak-report.json`, `soak-report.md`; the plot is `soak_plot.py`'s)."""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.soak_account import (
    Delivery,
    account,
    growth_pct,
    pct,
    retry_windows,
    wake_latencies,
    window_median,
)
from bench.soak_run import Collected
from hive_agent.classify import RETRYABLE

WAKE_P99_S = 2.0
STATE_P99_MS = 100.0
LAG_P99_MS = 250.0
GROWTH_PCT = 10.0
BACK_S = 10.0
BASE_AT = 300.0
"""Memory and descriptors are compared from minute 5 of the load (or the end of its first
third, when that comes first) to its end."""


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    target: str
    ok: bool

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.value} (target: {self.target})"


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _shows(c: Collected) -> dict[int, list[float]]:
    shows: dict[int, list[float]] = defaultdict(list)
    for s in c.records.shows:
        for item in s.items:
            if not item.event:
                shows[item.msg_id].append(s.at)
    return shows


def _delivery(c: Collected, shows: dict[int, list[float]]) -> Delivery:
    confirmed = {s.msg_id for s in c.sends if s.msg_id is not None}
    confirmed |= {s.msg_id for s in c.records.sends.values() if s.msg_id is not None}
    cuts: dict[str, list[float]] = defaultdict(list)
    for f in c.faults:
        if f.ok and f.kind == "kill_harness":
            cuts[f.agent].append(f.at)
    cuts["*"] = [r.at for r in c.restarts]
    return account(c.stored, confirmed, shows, c.turns, cuts, set(c.reads))


def wake_samples(c: Collected) -> dict[int, float]:
    """Message id → send → turn start, for the paced load's messages to idle agents (those
    sent while the burst's turns ran are the burst's)."""
    skip = {s.msg_id for s in c.sends if s.phase != "load" and s.msg_id is not None}
    burst = (c.phases.get("burst", 0.0), c.phases.get("burst_end", 0.0))
    skip |= {m.id for m in c.stored if burst[0] <= m.sent_at <= burst[1]}
    return wake_latencies(c.watch.frames, retry_windows(c.turns, RETRYABLE), skip)


def _slowest(c: Collected, wake: dict[int, float], start: float, n: int = 10) -> list[Any]:
    """The `n` slowest sends → turn start, with the recipient's turn states in between."""
    by_id = {m.id: m for m in c.stored}
    out: list[Any] = []
    for i, took in sorted(wake.items(), key=lambda kv: -kv[1])[:n]:
        m = by_id.get(i)
        if m is None:
            continue
        states = [
            f.turn_state
            for f in c.watch.frames
            if f.kind == "state"
            and f.agent == m.recipient
            and m.sent_at <= f.at <= m.sent_at + took
        ]
        at = round(m.sent_at - start, 1)
        out.append(
            {"id": i, "from": m.sender, "to": m.recipient, "at_s": at, "wake_s": round(took, 3),
             "states": states}
        )  # fmt: skip
    return out


def _wake(c: Collected, shows: dict[int, list[float]]) -> dict[str, Any]:
    wake = wake_samples(c)
    sent_at = {m.id: m.sent_at for m in c.stored}
    model = [min(shows[i]) - sent_at[i] for i in wake if shows.get(i) and i in sent_at]
    values = list(wake.values())
    return {
        "wake_samples": len(values),
        "wake_p50_s": _r(pct(values, 50)),
        "wake_p99_s": _r(pct(values, 99)),
        "wake_max_s": _r(max(values) if values else None),
        "wake_model_p50_s": _r(pct(model, 50)),
        "wake_model_p99_s": _r(pct(model, 99)),
    }


def _coordination(c: Collected) -> dict[str, Any]:
    shown = {(s.agent, i.event, i.event_id) for s in c.records.shows for i in s.items}
    answered = [a for a in c.answers if a.ok]
    reached = [a for a in answered if (a.asker, "question_answered", a.qid) in shown]
    fired = [r for r in c.records.reminded.values() if (r.agent, "reminder_due", r.rid) in shown]
    return {
        "questions_asked": len(c.records.asked),
        "questions_answered": len(answered),
        "questions_reached": len(reached),
        "questions_unreached": sorted(a.qid for a in answered if a not in reached),
        "answers_via_cli": sum(1 for a in answered if a.via == "cli"),
        "reminders_set": len(c.records.reminded),
        "reminders_shown": len(fired),
        "writes_ok": c.records.writes_ok,
        "writes_failed": c.records.writes_failed,
        "files_written": c.written,
        "tool_errors": c.records.tool_errors,
    }


def _burst(
    c: Collected, shows: dict[int, list[float]], states: list[tuple[float, float]]
) -> dict[str, Any]:
    start = c.phases.get("burst")
    ids = [s.msg_id for s in c.sends if s.phase == "burst" and s.msg_id is not None]
    firsts = [min(shows[i]) for i in ids if shows.get(i)]
    if start is None or not firsts or not c.burst_ends:
        return {"burst_first_s": None, "burst_all_s": None, "burst_state_p99_ms": None}
    end = max(c.burst_ends.values())
    during = [v for t, v in states if start <= t <= end]
    return {
        "burst_first_s": _r(min(firsts) - start),
        "burst_all_s": _r(end - start),
        "burst_state_p50_ms": _ms(pct(during, 50)),
        "burst_state_p99_ms": _ms(pct(during, 99)),
        "burst_state_samples": len(during),
    }


def _resources(c: Collected, start: float, end: float) -> dict[str, Any]:
    s = c.series
    length = end - start
    half = min(15.0, length / 12)
    base_at = start + min(BASE_AT, length / 3)
    base, last = (base_at - half, base_at + half), (end - 2 * half, end)
    harness = [h for h in s.harness_rss_mb if start <= h[0] <= end]
    cpu = [v for t, v in s.cpu_pct if start <= t <= end]
    return {
        "daemon_rss_growth_pct": _r(growth_pct(s.rss_mb, base, last), 1),
        "daemon_fds_growth_pct": _r(growth_pct(s.fds, base, last), 1),
        "daemon_rss_mb": {
            "base": _r(window_median(s.rss_mb, *base), 1),
            "end": _r(window_median(s.rss_mb, *last), 1),
            "max": _r(max((v for _, v in s.rss_mb), default=None), 1),
        },
        "daemon_fds": {
            "base": window_median(s.fds, *base),
            "end": window_median(s.fds, *last),
            "max": max((v for _, v in s.fds), default=None),
        },
        "growth_windows_s": [round(w - start, 1) for w in (*base, *last)],
        "daemon_cpu_pct_mean": _r(statistics.fmean(cpu) if cpu else None, 1),
        "harness_rss_mb": {
            "median": _r(statistics.median(h[1] for h in harness) if harness else None, 1),
            "max": _r(max((h[2] for h in harness), default=None), 1),
        },
    }


def figures(c: Collected) -> dict[str, Any]:
    start = c.phases.get("load", c.phases["start"])
    end = c.phases.get("load_end", c.phases.get("stopped", time.time()))
    shows = _shows(c)
    delivery = _delivery(c, shows)
    clients = c.watch.clients
    states = [x for cl in clients for x in cl.states if start <= x[0] <= end]
    lags = [v for cl in clients for t, v in cl.lags if start <= t <= end]
    state_values = [v for _, v in states]
    kinds = Counter(str(row["result_kind"]) for row in c.stats)
    restart = c.restarts[0] if c.restarts else None
    injected = Counter(f.kind for f in c.faults if f.ok)
    return {
        "agents": c.cfg.agents,
        "minutes": c.cfg.minutes,
        "seed": c.cfg.seed,
        "operator_rate_per_s": c.cfg.rate,
        "sent": delivery.sent,
        "delivered": delivery.delivered,
        "handled": delivery.handled,
        "lost": len(delivery.lost),
        "duplicated": len(delivery.duplicated),
        "redelivered_after_fault": len(delivery.redelivered),
        "retried": delivery.retried,
        "stored_unconfirmed": delivery.unconfirmed,
        "operator_sends_failed": sum(1 for s in c.sends if s.msg_id is None),
        **_wake(c, shows),
        "state_samples": len(state_values),
        "state_errors": sum(cl.state_errors for cl in clients),
        "state_p50_ms": _ms(pct(state_values, 50)),
        "state_p99_ms": _ms(pct(state_values, 99)),
        "stream_lag_samples": len(lags),
        "stream_lag_p50_ms": _ms(pct(lags, 50)),
        "stream_lag_p99_ms": _ms(pct(lags, 99)),
        "stream_resyncs": sum(cl.resyncs for cl in clients),
        "stream_connects": sum(cl.connects for cl in clients),
        "stalled_streams_opened": c.watch.stalled_opened,
        **_burst(c, shows, states),
        **_resources(c, start, end),
        "restart_all_back_s": _r(restart.all_back_s if restart else None),
        "restart_stop_s": _r(restart.stop_s if restart else None),
        "orphans": len(c.leftovers),
        "faults_injected": dict(injected),
        "faults_failed": sum(1 for f in c.faults if not f.ok),
        "turns_total": sum(kinds.values()),
        "turns_by_kind": dict(kinds),
        "turns_failed": sum(n for k, n in kinds.items() if k != "success"),
        "model_turns": len(c.records.shows),
        "model_requests": c.records.requests,
        **_coordination(c),
        "drained": c.drained,
        "phases_s": {k: round(v - c.phases["start"], 1) for k, v in c.phases.items()},
        "details": {
            "lost_ids": delivery.lost[:50],
            "wake_slowest": _slowest(c, wake_samples(c), start),
            "duplicates": [asdict(d) for d in delivery.duplicated[:50]],
            "redelivered_ids": delivery.redelivered[:50],
            "faults": [{**asdict(f), "at_s": round(f.at - start, 1)} for f in c.faults],
            "restarts": [asdict(r) for r in c.restarts],
            "orphans": [asdict(o) for o in c.leftovers],
            "stream_errors": [e for cl in clients for e in cl.errors][:20]
            + c.watch.stalled_errors[:5],
            "notes": c.notes,
        },
    }


def _le(name: str, value: float | None, limit: float, unit: str) -> Check:
    shown = "no samples" if value is None else f"{value:g} {unit}".strip()
    return Check(name, shown, f"≤ {limit:g} {unit}".strip(), value is not None and value <= limit)


def checks(f: dict[str, Any]) -> list[Check]:
    unreached = len(f["questions_unreached"])
    return [
        Check("lost", str(f["lost"]), "0", f["lost"] == 0),
        Check("duplicated", str(f["duplicated"]), "0", f["duplicated"] == 0),
        Check(
            "answers reached their askers",
            f"{f['questions_reached']} of {f['questions_answered']}",
            "all",
            unreached == 0,
        ),
        _le("send → turn start p99 (idle agent)", f["wake_p99_s"], WAKE_P99_S, "s"),
        _le("/api/state p99", f["state_p99_ms"], STATE_P99_MS, "ms"),
        _le("stream lag p99", f["stream_lag_p99_ms"], LAG_P99_MS, "ms"),
        _le("daemon RSS growth", f["daemon_rss_growth_pct"], GROWTH_PCT, "%"),
        _le("daemon fds growth", f["daemon_fds_growth_pct"], GROWTH_PCT, "%"),
        Check("orphan processes", str(f["orphans"]), "0", f["orphans"] == 0),
        _le("all agents back after the restart", f["restart_all_back_s"], BACK_S, "s"),
    ]


def write_json(path: Path, f: dict[str, Any], lines: list[Check]) -> None:
    doc = {**f, "checks": [asdict(c) for c in lines], "pass": all(c.ok for c in lines)}
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def write_markdown(path: Path, f: dict[str, Any], lines: list[Check]) -> None:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = [
        "# Soak report", "",
        f"{f['agents']} agents, {f['minutes']:g} minutes of load, seed {f['seed']}, {when}. "
        "Definitions: docs/benchmarks.md, section \"Soak\".", "",
        _row("", "line", "value", "target"), _row("---", "---", "---", "---"),
        *(_row("PASS" if c.ok else "**FAIL**", c.name, c.value, c.target) for c in lines), "",
        "![daemon and stream over time](soak.png)", "",
        "## Messages", "",
        f"- sent {f['sent']}, delivered {f['delivered']}, handled {f['handled']}, "
        f"lost {f['lost']}, duplicated {f['duplicated']}",
        f"- shown again after a fault cut the ack: {f['redelivered_after_fault']}; "
        f"shown again after an unfinished turn: {f['retried']}",
        f"- stored but never acknowledged to the sender: {f['stored_unconfirmed']}; "
        f"operator sends that failed: {f['operator_sends_failed']}",
        f"- questions asked {f['questions_asked']}, answered {f['questions_answered']} "
        f"({f['answers_via_cli']} on the CLI), reached {f['questions_reached']}; reminders set "
        f"{f['reminders_set']}, shown {f['reminders_shown']}; files written {f['files_written']}",
        "", "## Latency", "",
        f"- send → turn start (idle agents, {f['wake_samples']} sends): p50 {f['wake_p50_s']} s, "
        f"p99 {f['wake_p99_s']} s, max {f['wake_max_s']} s; to the model's first request: "
        f"p50 {f['wake_model_p50_s']} s, p99 {f['wake_model_p99_s']} s; the slowest (s into "
        "the load, seconds, the recipient's turn states meanwhile): "
        + "; ".join(
            f"{w['at_s']}: {w['wake_s']} ({', '.join(map(str, w['states']))})"
            for w in f["details"]["wake_slowest"][:5]
        ),
        f"- /api/state ({f['state_samples']} fetches, {f['state_errors']} failed): "
        f"p50 {f['state_p50_ms']} ms, p99 {f['state_p99_ms']} ms",
        f"- stream lag ({f['stream_lag_samples']} frames): p50 {f['stream_lag_p50_ms']} ms, "
        f"p99 {f['stream_lag_p99_ms']} ms; {f['stream_resyncs']} resyncs, "
        f"{f['stalled_streams_opened']} stalled streams opened",
        f"- burst: first turn at the model {f['burst_first_s']} s, every burst turn ended "
        f"{f['burst_all_s']} s; /api/state p99 during it {f['burst_state_p99_ms']} ms",
        "", "## Resources", "",
        f"- daemon RSS {f['daemon_rss_mb']} MiB, growth {f['daemon_rss_growth_pct']} %",
        f"- daemon fds {f['daemon_fds']}, growth {f['daemon_fds_growth_pct']} % "
        f"(windows, s into the load: {f['growth_windows_s']})",
        f"- daemon CPU mean {f['daemon_cpu_pct_mean']} % of a core; "
        f"harness RSS {f['harness_rss_mb']} MiB",
        f"- restart: stopped in {f['restart_stop_s']} s, every agent back "
        f"{f['restart_all_back_s']} s after the new start; orphans after the run: {f['orphans']}",
        "", "## Turns and faults", "",
        f"- turns {f['turns_total']} by kind {f['turns_by_kind']}; the model saw "
        f"{f['model_turns']} prompts in {f['model_requests']} requests",
        f"- faults {f['faults_injected']}, {f['faults_failed']} could not be injected", "",
        _row("s", "fault", "agent", "detail"), _row("---", "---", "---", "---"),
        *(_row(x["at_s"], x["kind"] + ("" if x["ok"] else " (failed)"), x["agent"], x["detail"])
          for x in f["details"]["faults"]),
        "",
    ]  # fmt: skip
    if f["details"]["notes"]:
        out += ["## Notes", "", *(f"- {n}" for n in f["details"]["notes"]), ""]
    path.write_text("\n".join(out))
