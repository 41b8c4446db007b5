"""What hive-core asks of a running harness for the operator, on its control socket: a
turn control handed on (`relay`), and a one-time link to the agent's own page
(`page_link`), made only when that harness is what listens on the agent's web port.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated

import anyio
from pydantic import Field, TypeAdapter, ValidationError

from hive_core.agent_info import publish_state
from hive_core.dashboard import auth
from hive_core.errors import BackendError, InvalidRequest, UnknownAgent
from hive_core.liveness import harness_call
from hive_core.ports import holds, loopback_listeners, socket_owner
from hive_core.registry import AgentRecord
from hive_core.services import Services
from hive_share import requests as rq
from hive_share import responses as rs

RELAY_TIMEOUT = 10.0
PAGE_WAIT = 10.0
"""How long a login link waits for a harness just started to listen on its web port."""
PAGE_POLL = 0.05

RelayRequest = rq.Cancel | rq.NewSession | rq.SetModel | rq.Compact | rq.Events | rq.LoginControl
Relayed = rs.Done | rs.TurnEvents | rs.LoginProgress
RELAYED: TypeAdapter[Relayed] = TypeAdapter(Annotated[Relayed, Field(discriminator="result")])


async def relay(s: Services, name: str, request: RelayRequest) -> Relayed:
    """Hand a turn control to `name`'s harness and return its answer.

    Raises:
        UnknownAgent: no such agent.
        BackendError: its harness is not running, did not answer, or answered nonsense.
        InvalidRequest: the harness refused it.
    """
    if s.registry.find(name) is None:
        raise UnknownAgent(f"no agent named {name!r}")
    if not s.backend.status(name).running:
        raise BackendError(f"{name} is not running; `hive-core start {name}` first")
    try:
        answer = await harness_call(s.settings.harness_socket(name), request, RELAY_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise BackendError(f"{name}'s harness did not answer {request.cmd}: {exc}") from None
    if answer.get("ok") is not True:
        raise InvalidRequest(f"{name}'s harness refused {request.cmd}: {answer.get('error')}")
    try:
        got = RELAYED.validate_python(answer)
    except ValidationError:
        raise BackendError(f"{name}'s harness answered {request.cmd} with nonsense") from None
    if isinstance(got, rs.Done):
        if isinstance(request, rq.SetModel):
            s.liveness.models[name] = request.model
            publish_state(s, name)
        return rs.Done(detail=f"{name}: {got.detail}")
    return got


async def page_link(s: Services, name: str) -> str:
    """A one-time link to `name`'s own page: hive-core mints the code and hands it to the
    harness, which accepts it once within 10 minutes.

    Raises: UnknownAgent, BackendError (not running, or its harness did not take it).
    """
    record = s.registry.find(name)
    if record is None:
        raise UnknownAgent(f"no agent named {name!r}")
    if not s.backend.status(name).running:
        raise BackendError(f"{name} is not running; its page is served by its harness")
    await _page_listens(s, record)
    code = secrets.token_urlsafe(32)
    send = None
    if s.dashboard_url is not None:  # the page sends the operator's messages through it
        send = await anyio.to_thread.run_sync(auth.send_token, s.settings.state_dir, name)
    request = rq.WebCode(cmd="web_code", code=code, send_token=send)
    try:
        answer = await harness_call(s.settings.harness_socket(name), request, RELAY_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise BackendError(f"{name}'s harness did not take the code: {exc}") from None
    if answer.get("ok") is not True:
        raise BackendError(f"{name}'s harness refused the code: {answer.get('error')}")
    return f"http://127.0.0.1:{record.web_port}/login?code={code}"


async def _page_listens(s: Services, record: AgentRecord) -> None:
    """Whether `record`'s harness is what takes connections at its web port (where agent
    pages listen: the dashboard's address): a
    link there must never hand a login code to another program. A harness just started
    binds its page a moment after it reports alive, so an unbound port is waited for.

    Raises: BackendError (another program listens there, or nothing does).
    """
    name, port = record.name, record.web_port
    try:
        harness = await anyio.to_thread.run_sync(socket_owner, s.settings.harness_socket(name))
    except OSError as exc:
        raise BackendError(f"{name}'s harness did not answer: {exc}") from None
    deadline = time.monotonic() + PAGE_WAIT
    where = s.settings.dashboard_host
    while not (listeners := await anyio.to_thread.run_sync(loopback_listeners, port, where)):
        if time.monotonic() > deadline:
            raise BackendError(f"nothing listens on port {port}, {name}'s web port: its page "
                               "is not served (its log says why)")  # fmt: skip
        await anyio.sleep(PAGE_POLL)
    try:
        ours = await anyio.to_thread.run_sync(holds, harness, listeners)
    except OSError:  # it just exited, or its files are not ours to read: web_code decides
        return
    if not ours:
        raise BackendError(
            f"another program listens on port {port}, not {name}'s harness, so no link "
            f"is made; `hive-core restart {name}` moves {name} to a free port"
        )
