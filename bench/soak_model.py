"""The soak's scripted model: a script for `tests/fake_anthropic.py` that plays every
agent's model at once.

Each turn (a request whose last user message is a wake prompt) is planned when its first
request arrives: zero or more tool calls drawn at random (a send to another agent, a reply
to the operator, a question to the operator, a reminder, a file written with `Write`), then
a closing text. The replies of a turn wait `TURN_SECONDS` in all, split at random between
them. Every body, question, reminder and file carries a nonce (`soak-<12 hex>`) so it can be
traced through the hive.

What the model sees is recorded: each wake prompt's items (`Show`), the sends it made and
the ids hive-core acknowledged them with, the questions and reminders it set, the files it
wrote. The script runs on the fake's server thread; `snapshot()` copies the records under a
lock for the runner's thread.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hive_share.names import MANAGER_NAME
from tests.fake_anthropic import Reply, Seen, text, tool_use

NONCE = re.compile(r"soak-[0-9a-f]{12}")
ITEM = re.compile(r"^## Item (\d+) of (\d+): message (\d+)(: event from hive-core)?$", re.M)
EVENT = re.compile(r"^Event: (\w+)$", re.M)
EVENT_ID = re.compile(r"^id: (\d+)$", re.M)
SENT = re.compile(r"Sent to (\S+) \(message (\d+)\)")
ASKED = re.compile(r"Asked question (\d+) to the operator")
REMINDED = re.compile(r"Reminder (\d+) set for")

TURN_SECONDS = (0.5, 5.0)
"""A turn's replies wait this long in all (uniform), before the CLI's own time."""
P_SEND_AGENT = 0.3
"""Chance that a turn sends to another agent: with the question and reminder below, each
turn starts 0.48 more turns on average, so chains die out."""
P_SEND_OPERATOR = 0.35
P_ASK = 0.08
P_REMIND = 0.1
P_WRITE = 0.3
REMIND_SECONDS = (2, 8)
"""A reminder's `in_seconds`; hive-core fires it at its next 5 s tick after that."""
WARMUP_DELAY = 0.2

Mode = Literal["warmup", "load", "drain"]
Step = Literal["send_agent", "send_operator", "ask", "remind", "write"]


def nonce() -> str:
    return f"soak-{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Item:
    """One item of a wake prompt."""

    msg_id: int
    event: str = ""
    """The helper event's kind (`question_answered`, `reminder_due`, …); "" for a message."""
    event_id: int = 0
    """The question's or reminder's id of a helper event."""
    nonces: tuple[str, ...] = ()


@dataclass(frozen=True)
class Show:
    """A wake prompt that reached the model: the first request of one claude run."""

    agent: str
    at: float
    turn: int
    """The model's own turn number (one per claude run that sent its prompt)."""
    items: tuple[Item, ...]


@dataclass
class AgentSend:
    nonce: str
    sender: str
    to: str
    at: float
    msg_id: int | None = None
    """Set once the tool's result, `Sent to … (message N).`, reached the model."""


@dataclass(frozen=True)
class Asked:
    qid: int
    asker: str
    nonce: str
    at: float


@dataclass(frozen=True)
class Reminded:
    rid: int
    agent: str
    nonce: str
    at: float


@dataclass
class _Turn:
    number: int
    agent: str
    steps: list[Step]
    delays: list[float]
    last: tuple[Step, str] | None = None
    """The step whose result the next request carries, with its nonce."""


@dataclass
class Records:
    """Everything the model saw and did; `SoakModel.snapshot()` returns a copy."""

    shows: list[Show] = field(default_factory=list)
    finished: dict[int, float] = field(default_factory=dict)
    """Turn number → when its closing reply was served."""
    sends: dict[str, AgentSend] = field(default_factory=dict)
    asked: dict[int, Asked] = field(default_factory=dict)
    reminded: dict[int, Reminded] = field(default_factory=dict)
    writes_ok: int = 0
    writes_failed: int = 0
    tool_errors: int = 0
    requests: int = 0


def wake_text(seen: Seen) -> str:
    """The text of a turn's wake prompt, or "" when this request continues a turn (its
    last user message holds tool results) or is no turn at all."""
    messages = [m for m in seen.body.get("messages", []) if m.get("role") != "system"]
    if not messages or messages[-1].get("role") != "user":
        return ""
    content = messages[-1].get("content")
    if isinstance(content, str):
        body = content
    elif any(b.get("type") == "tool_result" for b in content):
        return ""
    else:
        body = "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
    return body if "new item" in body and "## Item " in body else ""


def parse_items(prompt: str) -> list[Item]:
    """The items of a wake prompt (`## Item n of N: message <id>` sections)."""
    heads = list(ITEM.finditer(prompt))
    items: list[Item] = []
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(prompt)
        section = prompt[head.end() : end]
        event, event_id = "", 0
        if head.group(4):
            kind, ident = EVENT.search(section), EVENT_ID.search(section)
            event = kind.group(1) if kind else "?"
            event_id = int(ident.group(1)) if ident else 0
        found = tuple(dict.fromkeys(NONCE.findall(section)))
        items.append(Item(int(head.group(3)), event, event_id, found))
    return items


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    return json.dumps(content)


class SoakModel:
    """The script: `FakeAnthropic(model)`; `mode` and the callbacks are set by the runner."""

    def __init__(self, agents: Sequence[str], state_dir: Path, rng: random.Random) -> None:
        self.agents = list(agents)
        self.state_dir = state_dir
        self.rng = rng
        self.mode: Mode = "warmup"
        self.on_change: Callable[[], None] = lambda: None
        """Called (on the fake's thread) after anything was recorded."""
        self.on_question: Callable[[Asked], None] = lambda asked: None
        """Called (on the fake's thread) when the model learns a question's id."""
        self.clear_seen: Callable[[], None] = lambda: None
        """Drops the fake's own list of requests, which would grow for the whole run."""
        self._lock = threading.Lock()
        self._records = Records()
        self._turns = 0
        self._pending: dict[str, _Turn] = {}
        """tool_use id → the turn waiting for its result."""
        self._busy_until: dict[str, float] = {}
        """Agent → until when its claude waits for a reply of ours (it is mid-turn)."""

    # -- what the runner reads ---------------------------------------------------

    def snapshot(self) -> Records:
        with self._lock:
            r = self._records
            return Records(
                list(r.shows), dict(r.finished),
                {k: AgentSend(**vars(v)) for k, v in r.sends.items()},
                dict(r.asked), dict(r.reminded),
                r.writes_ok, r.writes_failed, r.tool_errors, r.requests,
            )  # fmt: skip

    def mid_turn(self, margin: float) -> list[str]:
        """Agents whose claude waits on a reply for at least `margin` more seconds."""
        now = time.time()
        with self._lock:
            return [a for a, until in self._busy_until.items() if until - now >= margin]

    # -- the script ----------------------------------------------------------------

    def __call__(self, seen: Seen) -> Reply:
        self.clear_seen()
        agent = seen.agent()
        with self._lock:
            self._records.requests += 1
            if agent is None or seen.is_compaction():
                return text("<summary>soak</summary>")
            prompt = wake_text(seen)
            if prompt:
                reply = self._start(agent, prompt)
            else:
                reply = self._go_on(agent, seen.last_tool_results())
            self._busy_until[agent] = time.time() + reply.delay
        self.on_change()
        return reply

    def _start(self, agent: str, prompt: str) -> Reply:
        self._turns += 1
        now = time.time()
        items = tuple(parse_items(prompt))
        self._records.shows.append(Show(agent, now, self._turns, items))
        steps = self._plan(agent)
        total = self.rng.uniform(*TURN_SECONDS) if self.mode != "warmup" else WARMUP_DELAY
        weights = [self.rng.random() + 0.1 for _ in range(len(steps) + 1)]
        delays = [total * w / sum(weights) for w in weights]
        turn = _Turn(self._turns, agent, steps, delays)
        return self._next(turn)

    def _plan(self, agent: str) -> list[Step]:
        if self.mode != "load" or agent == MANAGER_NAME:
            return []
        return self._draw()

    def _draw(self) -> list[Step]:
        """A turn's tool calls, each drawn with its chance, in a random order."""
        chances: list[tuple[Step, float]] = [
            ("send_agent", P_SEND_AGENT), ("send_operator", P_SEND_OPERATOR),
            ("ask", P_ASK), ("remind", P_REMIND), ("write", P_WRITE),
        ]  # fmt: skip
        steps = [step for step, p in chances if self.rng.random() < p]
        self.rng.shuffle(steps)
        return steps

    def _next(self, turn: _Turn) -> Reply:
        """The turn's next reply: its next tool call, else the closing text."""
        delay = turn.delays.pop(0) if turn.delays else 0.0
        if not turn.steps:
            self._records.finished[turn.number] = time.time()
            reply = text(f"done ({turn.agent}, turn {turn.number})")
            reply.delay = delay
            return reply
        step = turn.steps.pop(0)
        reply, mark = self._tool(turn.agent, step)
        reply.delay = delay
        turn.last = (step, mark)
        self._pending[str(reply.blocks[-1]["id"])] = turn
        return reply

    def _tool(self, agent: str, step: Step) -> tuple[Reply, str]:
        mark = nonce()
        if step == "send_agent":
            to = self.rng.choice([a for a in self.agents if a != agent] or [MANAGER_NAME])
            self._records.sends[mark] = AgentSend(mark, agent, to, time.time())
            body = f"soak message {mark} from {agent} to {to}"
            return tool_use("mcp__hyperhive__send", {"to": to, "body": body}), mark
        if step == "send_operator":
            self._records.sends[mark] = AgentSend(mark, agent, "operator", time.time())
            body = f"soak reply {mark} from {agent} to the operator"
            return tool_use("mcp__hyperhive__send", {"to": "operator", "body": body}), mark
        if step == "ask":
            question = f"soak question {mark} from {agent}: go on?"
            return tool_use("mcp__hyperhive__ask", {"question": question}), mark
        if step == "remind":
            seconds = self.rng.randint(*REMIND_SECONDS)
            message = f"soak reminder {mark} for {agent}"
            return tool_use(
                "mcp__hyperhive__remind", {"message": message, "in_seconds": seconds}
            ), mark
        path = self.state_dir / "agents" / agent / "state" / f"{mark}.txt"
        return tool_use("Write", {"file_path": str(path), "content": f"{mark}\n"}), mark

    def _go_on(self, agent: str, results: list[dict[str, Any]]) -> Reply:
        turn = self._pending.pop(str(results[-1].get("tool_use_id")), None) if results else None
        if turn is None:  # not a turn of ours (a retry of a request we never planned)
            return text("ok")
        assert turn.last is not None
        step, mark = turn.last
        result = results[-1]
        said = _result_text(result)
        if result.get("is_error"):
            self._records.tool_errors += 1
            if step == "write":
                self._records.writes_failed += 1
        else:
            self._learn(agent, step, mark, said)
        return self._next(turn)

    def _learn(self, agent: str, step: Step, mark: str, said: str) -> None:
        now = time.time()
        if step in ("send_agent", "send_operator"):
            sent = SENT.search(said)
            if sent is not None:
                self._records.sends[mark].msg_id = int(sent.group(2))
        elif step == "ask":
            asked = ASKED.search(said)
            if asked is not None:
                record = Asked(int(asked.group(1)), agent, mark, now)
                self._records.asked[record.qid] = record
                self.on_question(record)
        elif step == "remind":
            reminded = REMINDED.search(said)
            if reminded is not None:
                rid = int(reminded.group(1))
                self._records.reminded[rid] = Reminded(rid, agent, mark, now)
        else:
            self._records.writes_ok += 1
