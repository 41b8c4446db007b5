"""What the dashboard reads besides the snapshot (snapshot.py): the message flow's pages,
an agent's log and config."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from hive_core import deploys, harness_log, message_reads
from hive_core.errors import BackendError
from hive_core.services import Services
from hive_share.models import Message, WireModel, dump
from hive_share.responses import Error, LogLines

logger = logging.getLogger(__name__)

Operator = Callable[[dict[str, Any]], Awaitable[WireModel]]
"""Runs one host-socket request as the operator and returns its response."""

FLOW_PAGE = 100
"""Messages in the snapshot's flow, and in one page of backfill."""
INBOX_PAGE = 50
"""The operator's newest messages in the snapshot."""
LOG_LINES_MAX = harness_log.LINES_MAX
LOG_FOLLOW_INTERVAL = 0.5
"""How often a followed log file is checked for growth (server side; the page never polls)."""
REMOTE_LOG_INTERVAL = 1.0
"""How often another host's agent's followed log is read on its host."""


def flow_item(s: Services, message: Message) -> dict[str, Any]:
    return {**dump(message), "state": s.broker.flow_state(message)}


async def history(s: Services, before: int | None, after: int | None, limit: int) -> dict[str, Any]:
    """A page of the flow: the `limit` messages before id `before` (and whether older ones
    exist), or with `after` the `limit` after that id (and whether newer ones exist)."""
    if after is not None:
        flow, more = await message_reads.flow_after(s.db, limit, after)
    else:
        flow, more = await s.broker.flow(limit, before)
    return {"messages": [flow_item(s, m) for m in flow], "more": more}


async def log_tail(s: Services, name: str, lines: int) -> dict[str, Any]:
    """The last `lines` lines of `name`'s harness log. Raises: UnknownAgent, NotFound."""
    got = await harness_log.tail(s, name, lines)
    return {"lines": got.lines, "truncated": got.truncated}


async def log_follow(s: Services, name: str, lines: int) -> AsyncIterator[list[str]]:
    """The tail, then every line appended; starts over when the log is rotated.

    Raises (before the first item): UnknownAgent, NotFound.
    """
    got = await harness_log.tail(s, name, lines)
    yield got.lines
    offset, partial = got.offset, b""
    while True:
        await anyio.sleep(LOG_FOLLOW_INTERVAL)
        try:
            data, offset = await harness_log.read_from(s, name, offset)
        except BackendError as exc:  # the journal did not answer this time
            logger.warning("reading the log of %s: %s", name, exc.message)
            continue
        if not data:
            continue
        data = partial + data
        cut = data.rfind(b"\n") + 1
        partial = data[cut:]
        if cut:
            yield harness_log.lines_of(data[:cut])


async def deployed_config(s: Services, name: str) -> dict[str, Any]:
    """The files of `name`'s deployed config commit. Raises: UnknownAgent."""
    got = await deploys.deployed_files(s, name)
    return {"commit": got.commit, "files": got.files}


async def remote_log_follow(
    operator: Operator, name: str, first: LogLines
) -> AsyncIterator[list[str]]:
    """Another host's agent's log: its tail (`first`, read there), then what was appended,
    read on its host every `REMOTE_LOG_INTERVAL` (as `logs --raw -f` reads it)."""
    yield first.lines
    offset = first.offset
    while True:
        await anyio.sleep(REMOTE_LOG_INTERVAL)
        got = await operator({"cmd": "harness_log", "name": name, "offset": offset})
        if isinstance(got, Error):  # its host or NATS away this time: read again later
            logger.debug("reading the log of %s on its host: %s", name, got.error)
            continue
        assert isinstance(got, LogLines)
        offset = got.offset
        if got.lines:
            yield got.lines
