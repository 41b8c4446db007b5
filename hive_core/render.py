"""Human-readable CLI output: tables, ages, and control bytes escaped.

The CLI hands in its answer's records as attribute namespaces checked against the
wire schema (`hive_share.schema`), not as the models: the models are for typing only,
so printing a table imports no pydantic.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hive_share.models import (
        AgentInfo,
        AgentUsage,
        Approval,
        AttentionItem,
        HostInfo,
        Message,
        NotifyOutcome,
        NotifyTarget,
        Question,
        Reminder,
    )

_UNSAFE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def clean(text: str, limit: int | None = None) -> str:
    """Escape control, format (bidi, zero-width) and unassigned characters as `\\xNN`/`\\uNNNN`."""
    out = []
    for ch in text:
        if unicodedata.category(ch) in _UNSAFE:
            code = ord(ch)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            elif code <= 0xFFFF:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
        else:
            out.append(ch)
    result = "".join(out)
    if limit is not None and len(result) > limit:
        result = result[: limit - 1] + "…"
    return result


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


AGENT_COLUMNS = [
    "NAME", "ROLE", "STATE", "TURN", "PID", "UPTIME", "WEB PORT", "HARNESS", "LOGIN", "MODEL",
    "DEPLOYED", "STATUS",
]  # fmt: skip


HOST_COLUMN = "HOST"
"""After NAME, when the hive spans hosts (`agent_columns(hosts=True)`)."""


def agent_columns(hosts: bool) -> list[str]:
    return [AGENT_COLUMNS[0], HOST_COLUMN, *AGENT_COLUMNS[1:]] if hosts else AGENT_COLUMNS


def agent_cells(rows: Sequence[AgentInfo], hosts: bool = False) -> list[list[str]]:
    """`list`'s cells, one row per agent, in `agent_columns(hosts)`' order."""
    return [
        [
            r.name,
            *([r.host or "-"] if hosts else []),
            r.role,
            r.state,
            clean(r.turn_state) if r.turn_state else "-",
            str(r.pid) if r.pid else "-",
            duration(r.uptime_seconds),
            str(r.web_port) if r.web_port else "-",
            harness_of(r),
            login_of(r),
            model_of(r),
            (r.deployed_commit or "-")[:12],
            clean(r.status) if r.status else "-",
        ]
        for r in rows
    ]


def agents(rows: Sequence[AgentInfo]) -> str:
    if not rows:
        return "no agents"
    return table(AGENT_COLUMNS, agent_cells(rows))


def harness_of(r: AgentInfo) -> str:
    """`alive`, `not answering`, with the stuck signals active for it: `alive, stuck:
    repetition`."""
    if r.state != "running" or r.pid is None:  # not running, or another host's agent
        return "-"
    said = "alive" if r.alive else "not answering"
    if r.stuck:
        said += ", stuck: " + " ".join(k.removeprefix("stuck_") for k in r.stuck)
    return said


def login_of(r: AgentInfo) -> str:
    """The login state and since when (`needs_login 12m00s`), or when it expires."""
    if r.state != "running" or r.pid is None:
        return "-"
    now = time.time()
    if r.login == "logged_in" and r.login_expires_at is not None:
        return f"logged_in, expires in {duration(max(r.login_expires_at - now, 0))}"
    if r.login_since is not None and r.login != "logged_in":
        return f"{r.login} {duration(max(now - r.login_since, 0))}"
    return r.login


MODEL_FROM = {"override": "set at run time", "agent.toml": "agent.toml", "default": "default"}


def model_of(r: AgentInfo) -> str:
    """`sonnet (agent.toml)`: the model the next turn runs, and where it comes from."""
    if r.model is None:
        return "-"
    source = MODEL_FROM.get(r.model_source or "", "")
    return f"{clean(r.model)} ({source})" if source else clean(r.model)


def attention(rows: Sequence[AttentionItem], now: float | None = None) -> str:
    """The attention list as a table, in its order (most urgent first)."""
    if not rows:
        return "nothing needs attention"
    now = time.time() if now is None else now
    return table(
        ["SEVERITY", "KIND", "AGENT", "AGE", "SUMMARY", "TO RESOLVE"],
        [
            [i.severity, i.kind, clean(i.agent or "-"), duration(now - i.since),
             clean(i.summary), clean(i.action)]
            for i in rows
        ],
    )  # fmt: skip


def approvals(rows: Sequence[Approval], now: float | None = None) -> str:
    if not rows:
        return "no pending approvals"
    # `rows` are the approvals that have not ended: pending, or approved and under way.
    now = time.time() if now is None else now
    table_rows = [
        [str(a.id), a.kind, a.agent, a.requester, duration(now - a.created_at), _change(a)]
        for a in rows
    ]
    return _with_hosts(["ID", "KIND", "AGENT", "REQUESTER", "AGE", "CHANGE"], table_rows, rows)


def _with_hosts(headers: list[str], cells: list[list[str]], rows: Sequence[Any]) -> str:
    """`table`, with a HOST column after the id when the items come from a hive across
    hosts (each has its host then)."""
    if not any(getattr(r, "host", None) for r in rows):
        return table(headers, cells)
    hosts = [clean(getattr(r, "host", None) or "-") for r in rows]
    return table(
        [headers[0], "HOST", *headers[1:]],
        [[row[0], host, *row[1:]] for row, host in zip(cells, hosts, strict=True)],
    )


def _change(a: Approval) -> str:
    parts = [
        clean(a.reason, 100) if a.kind == "budget" and a.reason else diff_stat(a.diff, a.commit)
    ]
    if own := own_config(a):
        parts.append(own)
    if a.status == "in_progress":
        parts.append("approved, being carried out")
    return "; ".join(parts)


def own_config(a: Approval) -> str | None:
    """`hm1nd proposes a change to its own config` when the requester is the agent changed."""
    if a.kind == "apply_commit" and a.agent == a.requester:
        return f"{clean(a.agent)} proposes a change to its own config"
    return None


def diff_stat(diff: str | None, commit: str | None) -> str:
    """`3 files, +12 -4 (4b8e1f0a9c2d)` for a proposal; `-` for anything else."""
    if diff is None:
        return "-"
    lines = diff.splitlines()
    files = sum(line.startswith("diff --git ") for line in lines)
    added = sum(line.startswith("+") and not line.startswith("+++") for line in lines)
    removed = sum(line.startswith("-") and not line.startswith("---") for line in lines)
    noun = "file" if files == 1 else "files"
    return f"{files} {noun}, +{added} -{removed} ({(commit or '')[:12]})"


_COLOURS = {"+": "\x1b[32m", "-": "\x1b[31m", "@": "\x1b[36m"}
_RESET = "\x1b[0m"


def approval(a: Approval, colour: bool) -> str:
    """One approval whole; a diff with every hidden character made visible and flagged."""
    head = [
        f"approval {a.id}: {a.kind} {a.agent}",
        f"requested by {a.requester}, {a.status}",
    ]
    if own := own_config(a):
        head.append(own)
    if a.reason:
        head.append(f"reason: {clean(a.reason)}")
    if a.commit:
        head.append(f"commit: {a.commit}")
    if a.diff is None:
        return "\n".join(head)
    shown, hidden = [], 0
    for line in a.diff.splitlines():
        safe = clean(line)
        hidden += safe != line
        if colour and line[:1] in _COLOURS and not line.startswith(("+++", "---")):
            safe = _COLOURS[line[:1]] + safe + _RESET
        shown.append(safe)
    if hidden:
        head.append(
            f"WARNING: {hidden} diff lines hold invisible or bidirectional-control "
            "characters, shown as \\uNNNN escapes"
        )
    return "\n".join([*head, "", *shown])


def usage(rows: Sequence[AgentUsage]) -> str:
    """What each agent spent per window against its limits (`hive-core usage`)."""
    if not rows:
        return "no usage"
    return table(
        ["AGENT", "WINDOW", "TURNS", "TOKENS", "LIMIT", "USED", "COST", "LIMIT $", "STATE",
         "CACHE READ"],
        [
            [clean(u.agent), u.window, f"{u.turns:,}", f"{u.tokens:,}",
             "-" if u.limit_tokens is None else f"{u.limit_tokens:,}", _used(u),
             f"${u.cost_usd:,.2f}", "-" if u.limit_usd is None else f"${u.limit_usd:,.2f}",
             u.state, f"{u.cache_read_input_tokens:,}"]
            for u in rows
        ],
    )  # fmt: skip


def notify_targets(rows: Sequence[NotifyTarget], now: float | None = None) -> str:
    """Each notification URL and how its deliveries went (`hive-core notify status`)."""
    if not rows:
        return "no notification URLs (set HIVE_NOTIFY_URLS)"
    now = time.time() if now is None else now

    def ago(at: float | None) -> str:
        return "-" if at is None else f"{duration(now - at)} ago"

    return table(
        ["URL", "GETS", "SENT", "LAST OK", "LAST FAILURE", "QUEUED", "DROPPED", "ERROR"],
        [
            [clean(t.url, 60), t.severity + ("" if t.kinds is None else " " + ",".join(t.kinds)),
             str(t.sent), ago(t.last_ok_at),
             ago(t.last_error_at) + (" (failing)" if t.failing else ""),
             str(t.queued), str(t.dropped), clean(t.last_error or "-", 80)]
            for t in rows
        ],
    )  # fmt: skip


def notify_outcomes(rows: Sequence[NotifyOutcome]) -> str:
    """What each URL did with `hive-core notify test`."""
    return "\n".join(
        f"{clean(o.url, 80)}: " + ("sent" if o.ok else f"failed: {clean(o.error or '?', 200)}")
        for o in rows
    )


def _used(u: AgentUsage) -> str:
    """The share of its nearest limit an agent spent: `62%`, or `-` without a limit."""
    shares = []
    if u.limit_tokens:
        shares.append(u.tokens / u.limit_tokens)
    if u.limit_usd:
        shares.append(u.cost_usd / u.limit_usd)
    return f"{max(shares) * 100:.0f}%" if shares else "-"


def questions(rows: Sequence[Question], now: float | None = None) -> str:
    if not rows:
        return "no pending questions"
    now = time.time() if now is None else now
    cells = [
        [str(q.id), q.asker, duration(now - q.created_at),
         clean(" | ".join(q.options), 40) if q.options else "-", clean(q.question, 160)]
        for q in rows
    ]  # fmt: skip
    return _with_hosts(["ID", "FROM", "AGE", "OPTIONS", "QUESTION"], cells, rows)


def reminders(rows: Sequence[Reminder], now: float | None = None) -> str:
    if not rows:
        return "no reminders"
    now = time.time() if now is None else now

    def due(r: Reminder) -> str:
        delta = r.due_at - now
        return f"in {duration(delta)}" if delta >= 0 else f"{duration(-delta)} ago"

    return table(
        ["ID", "AGENT", "STATUS", "DUE", "FILE", "MESSAGE"],
        [
            [str(r.id), r.agent, r.status, due(r), clean(r.file_path or "-", 40),
             clean(r.message, 120)]
            for r in rows
        ],
    )  # fmt: skip


def messages(rows: Sequence[Message], now: float | None = None) -> str:
    if not rows:
        return "inbox is empty"
    now = time.time() if now is None else now
    return table(
        ["ID", "FROM", "AGE", "BODY"],
        [[str(m.id), m.sender, duration(now - m.sent_at), clean(m.body, 200)] for m in rows],
    )


def _summary(value: object, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return clean(" ".join(text.split()), limit)


def _tool_line(event: dict[str, Any]) -> str:
    args = event.get("input") or {}
    key = next((k for k in TOOL_KEYS if k in args), None)
    shown = _summary(args[key]) if key else _summary(args)
    return f"→ {clean(str(event.get('name')), 80)} {shown}"


TOOL_KEYS = ("command", "file_path", "path", "pattern", "url", "to", "query", "description")
"""The argument that best names what a tool call does, in order of preference."""


def turn_event(row: dict[str, Any]) -> str:
    """One stored turn event as one readable line (or a few, for assistant text)."""
    event: dict[str, Any] = row.get("event") or {}
    stamp = time.strftime("%H:%M:%S", time.localtime(float(row.get("ts") or 0)))
    kind = event.get("kind")
    if kind == "turn_started":
        woke = ", ".join(clean(str(w), 40) for w in event.get("wake_from") or []) or "-"
        fresh = ", new session" if event.get("new_session") else ""
        turn, model = clean(str(event.get("turn_id"))), clean(str(event.get("model")))
        text = f"── turn {turn} (woken by {woke}; {model}{fresh})"
    elif kind == "turn_ended":
        seconds = int(event.get("duration_ms") or 0) / 1000
        detail = f": {clean(str(event.get('detail')), 200)}" if event.get("detail") else ""
        text = f"── turn ended {event.get('result')} in {seconds:.1f}s{detail}"
    elif kind == "text":
        text = clean(str(event.get("text")), 2000)
    elif kind == "tool_use":
        text = _tool_line(event)
    elif kind == "tool_result":
        mark = "✗" if event.get("is_error") else "←"
        text = f"{mark} {_summary(event.get('content'), 160)}"
    elif kind == "note":
        text = f"! {clean(str(event.get('text')), 500)}"
    elif kind == "token_usage_changed":
        usage = event.get("usage") or {}
        text = (f"tokens: context {event.get('context_tokens')}, in {usage.get('input_tokens')}, "
                f"out {usage.get('output_tokens')}")  # fmt: skip
    elif kind in ("status_changed", "model_changed", "turn_state_changed"):
        value = event.get("status", event.get("model", event.get("state")))
        text = f"{kind.removesuffix('_changed').replace('_', ' ')}: {clean(str(value), 200)}"
    else:
        text = f"{clean(str(kind), 40)} {_summary(event, 200)}"
    return f"{stamp} {text}"


HOST_COLUMNS = ["HOST", "LINK", "LAST SEEN", "AGENTS", "CAPACITY", "FORWARDS", "DASHBOARD"]


def hosts(rows: Sequence[HostInfo]) -> str:
    """`hosts`: the answering host first (its link, and its forwards: pending, forwarded,
    received, refused), then the others with the time since their last heartbeat."""
    cells = []
    for h in rows:
        if h.this:
            link: str = h.link or "-"
            if h.link_error and h.link != "up":
                link += f" ({clean(h.link_error)[:60]})"
            forwards = f"{h.pending_forwards} pending, {h.forwarded} out, {h.received} in"
            if h.refused:
                forwards += f", {h.refused} refused"
            seen = "this host"
        else:
            link, forwards, seen = "-", "-", f"{duration(h.last_seen_seconds)} ago"
        cells.append(
            [h.host, link, seen, str(h.agents), str(h.capacity), forwards, h.dashboard_url or "-"]
        )
    return table(HOST_COLUMNS, cells)
