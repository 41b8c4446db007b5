"""Acting on another host's agent: the request goes to that host and runs there.

An operator's request on one agent (`FORWARDED`: its lifecycle, its harness's controls and
events, its log, a login link) naming another host's agent, a decision on an approval or
question another host holds (`DECIDED`: it names that host), or a spawn, a spawn approval
or a config commit placed on another host (`PLACED`), is sent to that host as a NATS request on
`hive.<hive>.rpc.<dest>.<origin>` and run there by its own host-socket dispatch, as the
operator's; its answer comes back whole, an error too. The last token is the asking host,
which NATS permissions let only it publish; a host serves only the verbs in `FORWARDED`, on
agents it runs, and decisions and spawns that name it as their host (a spawn approval for
an agent of the asking host, which hears how it ends, or for its operator). A decision runs
through the same compare-and-set as one taken here, so of two hosts approving one approval,
one carries it out and the other is told it was. Nothing is queued: a host out of reach is
an `unreachable` answer, at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from hive_core.errors import HiveError, Unreachable
from hive_core.federation import names
from hive_core.federation.link import Link
from hive_core.federation.names import DECIDED, FORWARDED
from hive_share import responses as rs
from hive_share.base import WireModel
from hive_share.names import OPERATOR
from hive_share.responses import Error

logger = logging.getLogger(__name__)

PLACED = frozenset({"spawn", "request_spawn", "request_apply_commit"})
"""A spawn, a spawn approval, or a config commit for one of this host's agents, placed on
this host by another."""
RPC_WAIT = 180.0
"""Seconds an asking host waits for the answer: a stop waits out a harness's grace, a
rebuild a build."""

Dispatch = Callable[[dict[str, Any], str | None], Awaitable[WireModel]]
"""Runs a request here as the operator's, or (a name given) as that agent of the asking
host's: the manager's."""
MANAGED = frozenset({"start", "kill", "restart", "rebuild"})
"""The verbs the manager of another host may run on this host's agents, as itself (`by`)."""
RequestSpawn = Callable[[str, str], Awaitable[WireModel]]
"""Queues a spawn approval here: the agent's name and who asked (raises HiveError)."""
Answer = Callable[[int, str, str], Awaitable[WireModel]]
"""Answers a question held here: its id, the answer, and the agent answering (raises
HiveError)."""
Receive = Callable[[str, dict[str, Any]], Awaitable[WireModel]]
"""Queues a config commit another host's manager proposes (`Configs.receive`): the asking
host and the request."""
Spawn = Callable[[Callable[[], Coroutine[Any, Any, None]]], None]
"""Runs a coroutine function as a task of the federation (each request is answered in a
task of its own: a stop waiting out a grace holds up no other request)."""


class Rpc:
    def __init__(
        self,
        link: Link,
        runs_here: Callable[[str], bool],
        host_of: Callable[[str], str | None],
        spawn: Spawn,
        request_spawn: RequestSpawn,
        answer: Answer,
        receive: Receive,
    ) -> None:
        self._link = link
        self._runs_here = runs_here
        self._host_of = host_of
        self._spawn = spawn
        self._request_spawn = request_spawn
        self._answer_for = answer
        self._receive = receive
        self.dispatch: Dispatch | None = None
        """The host socket's dispatch as the operator's (set once the sockets exist)."""
        self._sub: Subscription | None = None

    async def serve(self) -> None:
        """Answer the other hosts' requests (after the link is up; again after it came back,
        the client subscribes again by itself)."""
        await self._link.up()
        nc = self._link.nc
        if nc is None:
            return
        subject = names.rpc_filter(self._link.hive, self._link.host)
        self._sub = await nc.subscribe(subject, cb=self._received)

    async def call(self, host: str, request: dict[str, Any]) -> WireModel:
        """Run `request` on `host`, as the operator there; its answer (an `Error` too).

        Raises:
            Unreachable: NATS or the host did not answer within `RPC_WAIT`.
        """
        nc = self._link.nc
        if nc is None or self._link.state != "up":
            raise Unreachable(
                f"host {host} is out of reach (NATS link {self._link.state}); try again "
                "once `hive-core hosts` shows the link up"
            )
        subject = names.rpc_subject(self._link.hive, host, self._link.host)
        try:
            reply = await nc.request(subject, json.dumps(request).encode(), timeout=RPC_WAIT)
        except nats.errors.NoRespondersError:
            raise Unreachable(f"host {host} is not answering (its hive-core is down?)") from None
        except (nats.errors.Error, TimeoutError) as exc:
            raise Unreachable(f"host {host} did not answer: {exc}") from None
        return rs.RESPONSE.validate_json(reply.data)

    async def _received(self, msg: Msg) -> None:
        self._spawn(lambda: self._answer(msg))

    async def _answer(self, msg: Msg) -> None:
        origin = msg.subject.rsplit(".", 1)[-1]
        answer = await self._run(origin, msg.data)
        try:
            await msg.respond(answer.model_dump_json().encode())
        except nats.errors.Error as exc:
            logger.warning("could not answer host %s: %s", origin, exc)

    async def _run(self, origin: str, data: bytes) -> WireModel:
        try:
            request = json.loads(data)
        except ValueError:
            return Error(code="malformed", error="a request from another host must be JSON")
        cmd = request.get("cmd") if isinstance(request, dict) else None
        if cmd not in FORWARDED | DECIDED | PLACED:
            return Error(code="verb_not_allowed", error="other hosts may ask only " + _verbs())
        if (for_agent := self._for_agent(cmd, request)) is not None:
            return await for_agent(origin, request)
        by = request.pop("by", None)
        if (refused := self._refused(origin, cmd, request, by)) is not None:
            return refused
        if self.dispatch is None:
            return Error(code="shutting_down", error=f"host {self._link.host} is starting")
        what = request.get("id") if cmd in DECIDED else request.get("name")
        logger.info("host %s asks: %s %s%s", origin, cmd, what, f" for {by}" if by else "")
        return await self.dispatch(request, by)

    def _refused(
        self, origin: str, cmd: str, request: dict[str, Any], by: object
    ) -> WireModel | None:
        """Why a decision, a spawn or a verb on an agent is not run here, if it is not."""
        name = request.get("name")
        if by is not None and (
            cmd not in MANAGED or not isinstance(by, str) or self._host_of(by) != origin
        ):
            return Error(code="forbidden", error=f"{str(by)[:40]!r} is not an agent of host "
                         f"{origin} that may ask {cmd}")  # fmt: skip
        if cmd in DECIDED:
            if request.get("host") != self._link.host:  # held here, as the asking host saw
                return Error(code="invalid_request", error=f"a decision sent to host "
                             f"{self._link.host} names it as the item's host")  # fmt: skip
        elif cmd == "spawn":
            if request.get("host") != self._link.host:  # placed here by the asking host
                return Error(code="invalid_request", error=f"a spawn sent to host "
                             f"{self._link.host} names it as its host")  # fmt: skip
        elif not isinstance(name, str) or not self._runs_here(name):
            return Error(code="unknown_agent", error=f"no agent {name!r} on host {self._link.host}")
        return None

    def _for_agent(self, cmd: str, request: dict[str, Any]) -> Receive | None:
        """How a request made for an agent of the asking host (or its operator) is run here,
        when it is one."""
        if cmd == "request_spawn":
            return self._queue_spawn
        if cmd == "answer" and "answerer" in request:
            return self._agent_answers
        if cmd == "request_apply_commit":
            return self._queue_commit
        return None

    async def _queue_commit(self, origin: str, request: dict[str, Any]) -> WireModel:
        """A config commit the asking host's manager proposes for an agent of this host."""
        if request.get("host") != self._link.host:
            return Error(code="invalid_request", error=f"a config commit sent to host "
                         f"{self._link.host} names it as its agent's host")  # fmt: skip
        return await self._receive(origin, request)

    async def _queue_spawn(self, origin: str, request: dict[str, Any]) -> WireModel:
        """A spawn approval placed here by another host, for its operator or one of its
        agents (the manager), who hears how it ends."""
        name, requester = request.get("name"), request.get("requester")
        if request.get("host") != self._link.host:
            return Error(code="invalid_request", error=f"a spawn request sent to host "
                         f"{self._link.host} names it as its host")  # fmt: skip
        if not isinstance(name, str) or not isinstance(requester, str):
            return Error(code="malformed", error="request_spawn: name and requester, strings")
        if requester != OPERATOR and self._host_of(requester) != origin:
            return Error(code="forbidden", error=f"{requester} is not an agent of host {origin}")
        logger.info("host %s asks: request_spawn %s for %s", origin, name, requester)
        try:
            return await self._request_spawn(name, requester)
        except HiveError as exc:
            return Error(code=exc.code, error=exc.message)

    async def _agent_answers(self, origin: str, request: dict[str, Any]) -> WireModel:
        """An agent of the asking host answers a question held here (asked of it by an
        agent of this host)."""
        question_id, answer, answerer = (request.get(k) for k in ("id", "answer", "answerer"))
        if request.get("host") != self._link.host:
            return Error(code="invalid_request", error=f"an answer sent to host "
                         f"{self._link.host} names it as the question's host")  # fmt: skip
        if not isinstance(question_id, int) or not isinstance(answer, str):
            return Error(code="malformed", error="answer: an integer id and a string answer")
        if not isinstance(answerer, str) or self._host_of(answerer) != origin:
            return Error(code="forbidden", error=f"{answerer} is not an agent of host {origin}")
        logger.info("host %s asks: answer %s for %s", origin, question_id, answerer)
        try:
            return await self._answer_for(question_id, answer, answerer)
        except HiveError as exc:
            return Error(code=exc.code, error=exc.message)


def _verbs() -> str:
    return ", ".join(sorted(FORWARDED | DECIDED | PLACED))
