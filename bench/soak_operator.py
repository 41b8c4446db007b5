"""The soak's operator: sends to the agents (the paced load, the burst), reads its own inbox
as it fills (a long-polled `inbox` follow), and answers the agents' questions after a
random delay, through the CLI or the host socket in turn."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bench.soak_faults import run_cli
from bench.soak_hive import SoakHive
from bench.soak_model import Asked, nonce
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import ClientError, HiveClient, RemoteError, new_idempotency_key

Phase = Literal["warmup", "burst", "load"]
ANSWER_AFTER = (1.0, 6.0)
"""Seconds the operator takes to answer a question (uniform)."""
ANSWER_TRIES = 5
FOLLOW_WAIT = 30.0
SEND_TIMEOUT = 30.0
ERROR_PAUSE = 0.5
"""After a failed request while hive-core is up, the operator tries again after this."""


@dataclass
class OpSend:
    nonce: str
    to: str
    phase: Phase
    at: float
    """Just before the request was written."""
    acked_at: float | None = None
    msg_id: int | None = None
    error: str = ""


@dataclass
class Answer:
    qid: int
    asker: str
    nonce: str
    at: float
    via: str
    ok: bool
    detail: str = ""


class Operator:
    def __init__(self, hive: SoakHive, rng: random.Random) -> None:
        self.hive = hive
        self.rng = rng
        self.sends: dict[str, OpSend] = {}
        self.answers: dict[int, Answer] = {}
        self.reads: dict[int, float] = {}
        """Message id → when the operator's inbox returned it."""
        self.on_read: Callable[[], None] = lambda: None
        self._answering: set[asyncio.Task[None]] = set()
        self._cli_next = True

    async def send(self, to: str, phase: Phase) -> OpSend:
        """One send on its own connection (bounded); an error is recorded, not raised."""
        mark = nonce()
        body = f"soak {phase} {mark} from the operator to {to}"
        record = OpSend(mark, to, phase, time.time())
        self.sends[mark] = record
        req = rq.Send(cmd="send", to=to, body=body, idempotency_key=new_idempotency_key())
        try:
            async with asyncio.timeout(SEND_TIMEOUT), HiveClient(self.hive.host_socket) as c:
                got = await c.call(req, rs.Sent)
        except (ClientError, TimeoutError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            return record
        record.acked_at, record.msg_id = time.time(), got.id
        return record

    async def load(self, agents: list[str], rate: float, until: float) -> None:
        """Poisson sends (`rate` per second, hive-wide) to random agents until `until`;
        paused while hive-core is down."""
        while True:
            await asyncio.sleep(self.rng.expovariate(rate))  # the load's pace
            if time.time() >= until:
                return
            if not self.hive.up.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, until - time.time())):
                        await self.hive.up.wait()
                continue
            await self.send(self.rng.choice(agents), "load")

    async def follow(self) -> None:
        """Read the operator's inbox as it fills, until cancelled."""
        after = 0
        while True:
            await self.hive.up.wait()
            try:
                async with HiveClient(self.hive.host_socket) as c:
                    while True:
                        req = rq.Inbox(
                            cmd="inbox", after=after, wait_seconds=FOLLOW_WAIT, limit=1000
                        )
                        async with asyncio.timeout(FOLLOW_WAIT + SEND_TIMEOUT):
                            got = await c.call(req, rs.Messages)
                        now = time.time()
                        for m in got.messages:
                            self.reads.setdefault(m.id, now)
                            after = max(after, m.id)
                        if got.messages:
                            self.on_read()
            except (ClientError, TimeoutError):
                if self.hive.up.is_set():  # hive-core is up: try again shortly
                    await asyncio.sleep(ERROR_PAUSE)

    def question(self, asked: Asked) -> None:
        """Answer `asked` after a random delay (on the runner's loop)."""
        task = asyncio.get_running_loop().create_task(self._answer(asked), name=str(asked.qid))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer(self, asked: Asked, delay: bool = True) -> None:
        if delay:
            await asyncio.sleep(self.rng.uniform(*ANSWER_AFTER))  # the operator's pace
        if asked.qid in self.answers:  # answered meanwhile (the drain answers what is open)
            return
        mark = nonce()
        text = f"soak answer {mark} to question {asked.qid}"
        self._cli_next = not self._cli_next
        via = "cli" if self._cli_next else "socket"
        for _ in range(ANSWER_TRIES):
            await self.hive.up.wait()
            ok, detail = await self._one_answer(asked.qid, text, via)
            if ok or "already" in detail:  # a retry of an answer that was taken: answered
                self.answers[asked.qid] = Answer(asked.qid, asked.asker, mark, time.time(), via,
                                                 True, detail)  # fmt: skip
                return
            if self.hive.up.is_set():
                await asyncio.sleep(ERROR_PAUSE)  # a retry's pause
        self.answers[asked.qid] = Answer(asked.qid, asked.asker, mark, time.time(), via, False,
                                         "gave up")  # fmt: skip

    async def _one_answer(self, qid: int, text: str, via: str) -> tuple[bool, str]:
        if via == "cli":
            code, out = await run_cli(self.hive, "answer", str(qid), text)
            return code == 0, out.strip()[-300:]
        try:
            await self.hive.call(rq.AnswerQuestion(cmd="answer", id=qid, answer=text),
                                 rs.QuestionResult)  # fmt: skip
        except RemoteError as exc:
            return False, str(exc)
        except (ClientError, TimeoutError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, ""

    async def answer_pending(self, asked: dict[int, Asked]) -> None:
        """Answer at once every question to the operator still pending (those whose asker's
        claude died before it saw the question's id included), and wait for the answers
        already on their way."""
        got = await self.hive.call(rq.Questions(cmd="questions"), rs.QuestionsResult)
        for q in got.questions:
            if q.id not in self.answers and all(t.get_name() != str(q.id) for t in self._answering):
                mark = asked.get(q.id) or Asked(q.id, q.asker, "", q.created_at)
                await self._answer(mark, delay=False)
        if self._answering:
            async with asyncio.timeout(ANSWER_AFTER[1] + 60):
                await asyncio.gather(*self._answering, return_exceptions=True)
