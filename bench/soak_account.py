"""The soak's bookkeeping, pure: what became of every message, the send → turn-start
latencies from the event stream, percentiles and growth. docs/benchmarks.md ("Soak")
defines each figure."""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bench.stats import percentile

COMPLETED = frozenset({"success", "max_turns", "prompt_too_long"})
"""Turn endings after which the harness acknowledges the turn's items. A `cancelled` ending
is left out: the soak never cancels, so it is a harness stopping mid-turn, whose items
come back after the restart."""
OPERATOR = "operator"
NOT_STARTED = frozenset({"idle", "waiting"})
"""Turn states before a turn starts: `waiting` is a turn held by turn admission."""


@dataclass(frozen=True)
class Stored:
    """A message row of hive.sqlite that carries a soak nonce."""

    id: int
    sender: str
    recipient: str
    nonce: str
    sent_at: float
    delivered_at: float | None


@dataclass(frozen=True)
class HarnessTurn:
    """One turn as its harness recorded it (hyperhive-events.sqlite)."""

    agent: str
    turn_id: str
    started: float
    ended: float | None
    """None: the harness never recorded its end (it was killed first)."""
    result: str | None
    ids: tuple[int, ...]


@dataclass(frozen=True)
class Duplicate:
    id: int
    recipient: str
    shown: tuple[float, ...]
    why: str


@dataclass
class Delivery:
    sent: int = 0
    """Messages acknowledged to their sender with an id."""
    unconfirmed: int = 0
    """Stored by hive-core, but the sender never saw the id (its claude or hive-core went
    down in between); still followed, never counted as sent."""
    delivered: int = 0
    handled: int = 0
    lost: list[int] = field(default_factory=list)
    duplicated: list[Duplicate] = field(default_factory=list)
    redelivered: list[int] = field(default_factory=list)
    """Shown again after a completed turn whose acknowledgement a fault cut off."""
    retried: int = 0
    """Messages shown again because the turn that showed them did not complete."""


def _last_before(times: Sequence[float], t: float) -> float | None:
    at = bisect.bisect_left(times, t)
    return times[at - 1] if at else None


def _classify(
    m: Stored,
    shown: Sequence[float],
    completed_ends: Sequence[float],
    faults: Sequence[float],
) -> tuple[str, str]:
    """('duplicated' | 'redelivered' | 'retried' | 'once', why) for a message shown `shown`."""
    worst, why = "once", ""
    for s in shown[1:]:
        if m.delivered_at is not None and s > m.delivered_at:
            return "duplicated", f"shown at {s:.3f}, after its ack at {m.delivered_at:.3f}"
        end = _last_before(completed_ends, s)
        if end is None:
            worst = "retried" if worst == "once" else worst
            continue
        fault = _last_before(faults, s)
        if fault is not None and fault > end:
            worst, why = "redelivered", f"a fault at {fault:.3f} cut its ack"
        else:
            return "duplicated", f"shown at {s:.3f}, after a turn that completed at {end:.3f}"
    return worst, why


def account(
    stored: Iterable[Stored],
    confirmed: set[int],
    shows: Mapping[int, Sequence[float]],
    turns: Iterable[HarnessTurn],
    faults: Mapping[str, Sequence[float]],
    operator_reads: set[int],
) -> Delivery:
    """What became of each stored message.

    `confirmed`: ids acknowledged to their sender. `shows`: id → when the recipient's model
    was shown it (each claude run's first request). `faults`: agent → when its harness was
    killed or stopped, with `*` for hive-core's restarts. `operator_reads`: ids the
    operator's inbox returned.
    """
    ends: dict[int, list[float]] = defaultdict(list)
    for t in turns:
        if t.result in COMPLETED and t.ended is not None:
            for i in t.ids:
                ends[i].append(t.ended)
    out = Delivery()
    seen: set[int] = set()
    for m in stored:
        seen.add(m.id)
        is_sent = m.id in confirmed
        out.sent += is_sent
        out.unconfirmed += not is_sent
        if m.recipient == OPERATOR:
            handled = m.id in operator_reads
            out.delivered += handled
            out.handled += handled
        else:
            shown = sorted(shows.get(m.id, ()))
            handled = bool(shown) and m.delivered_at is not None
            out.delivered += bool(shown)
            out.handled += handled
            fault_times = sorted([*faults.get(m.recipient, ()), *faults.get("*", ())])
            kind, why = _classify(m, shown, sorted(ends.get(m.id, ())), fault_times)
            if kind == "duplicated":
                out.duplicated.append(Duplicate(m.id, m.recipient, tuple(shown), why))
            elif kind == "redelivered":
                out.redelivered.append(m.id)
            elif kind == "retried":
                out.retried += 1
        if is_sent and not handled:
            out.lost.append(m.id)
    missing = sorted(confirmed - seen)  # acknowledged, yet not in the database at all
    out.sent += len(missing)
    out.lost += missing
    return out


# -- send → turn start, from the event stream ------------------------------------------


@dataclass(frozen=True)
class Frame:
    """What the stream's first client kept of one frame, in arrival order."""

    epoch: int
    """Which daemon (1, then 2 after the restart): `seq` starts again at each."""
    seq: int
    at: float
    kind: str
    """`sent` or `state` (container_state_changed)."""
    agent: str
    """The recipient of a `sent`, the agent of a `state`."""
    msg_id: int = 0
    sender: str = ""
    sent_at: float = 0.0
    state: str = ""
    turn_state: str | None = None


def _within(windows: Sequence[tuple[float, float]], t: float) -> bool:
    return any(start <= t <= end for start, end in windows)


def wake_latencies(
    frames: Iterable[Frame],
    excluded: Mapping[str, Sequence[tuple[float, float]]],
    skip: set[int],
) -> dict[int, float]:
    """Message id → seconds from its `sent_at` until its recipient's turn started (its turn
    state neither `idle` nor `waiting`) on the stream, for messages sent to an agent that
    was running and idle then.

    Left out: helper events, ids in `skip`, messages sent inside one of the recipient's
    `excluded` windows (a failed turn waiting out its retry looks idle but is not
    listening), and any whose wake a daemon restart or a stop hid.
    """
    last: dict[str, tuple[str, str | None]] = {}
    pending: dict[str, list[Frame]] = defaultdict(list)
    epoch = 0
    found: dict[int, float] = {}
    for f in frames:
        if f.epoch != epoch:
            epoch, last, pending = f.epoch, {}, defaultdict(list)
        if f.kind == "sent":
            state = last.get(f.agent)
            if state == ("running", "idle") and f.sender != "hive" and f.msg_id not in skip:
                pending[f.agent].append(f)
            continue
        last[f.agent] = (f.state, f.turn_state)
        if f.state != "running":
            pending.pop(f.agent, None)
        elif f.turn_state is not None and f.turn_state not in NOT_STARTED:
            for sent in pending.pop(f.agent, []):
                if not _within(excluded.get(f.agent, ()), sent.sent_at):
                    found[sent.msg_id] = max(0.0, f.at - sent.sent_at)
    return found


def retry_windows(
    turns: Iterable[HarnessTurn], retryable: Collection[str]
) -> dict[str, list[tuple[float, float]]]:
    """Per agent, from each retryable turn end to that agent's next turn start: the harness
    looks idle then, but holds its items until the retry."""
    by_agent: dict[str, list[HarnessTurn]] = defaultdict(list)
    for t in turns:
        by_agent[t.agent].append(t)
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for agent, mine in by_agent.items():
        mine.sort(key=lambda t: t.started)
        for this, after in zip(mine, [*mine[1:], None], strict=True):
            if this.result in retryable and this.ended is not None:
                out[agent].append((this.ended, after.started if after else float("inf")))
    return out


# -- figures ---------------------------------------------------------------------------


def pct(samples: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile, None without samples."""
    return percentile(samples, q) if samples else None


def window_median(samples: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    inside = [v for t, v in samples if start <= t <= end]
    return statistics.median(inside) if inside else None


def growth_pct(
    samples: Sequence[tuple[float, float]],
    base: tuple[float, float],
    end: tuple[float, float],
) -> float | None:
    """% change of the median of `samples` (time, value) within the window `end` against
    the median within the window `base`; None when either window is empty."""
    before = window_median(samples, *base)
    after = window_median(samples, *end)
    if before is None or after is None or before <= 0:
        return None
    return 100 * (after - before) / before
