"""What the dashboard reads besides the snapshot (snapshot.py): the message flow's pages,
an agent's log and config."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio

from hive_core import deploys, git, harness_log, message_reads
from hive_core.errors import BackendError, UnknownAgent
from hive_core.services import Services
from hive_share.models import Message, dump

logger = logging.getLogger(__name__)

FLOW_PAGE = 100
"""Messages in the snapshot's flow, and in one page of backfill."""
INBOX_PAGE = 50
"""The operator's newest messages in the snapshot."""
LOG_LINES_MAX = harness_log.LINES_MAX
LOG_FOLLOW_INTERVAL = 0.5
"""How often a followed log file is checked for growth (server side; the page never polls)."""
CONFIG_FILES_MAX = 50
CONFIG_FILE_MAX = 64 * 1024


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
    record = s.registry.find(name)
    if record is None:
        raise UnknownAgent(f"no agent named {name!r}")
    files: dict[str, str] = {}
    sha = record.deployed_commit
    if sha is not None:
        applied = deploys.applied_repo(s, name)
        cwd = s.settings.agents_dir
        for entry in (await deploys.tree(applied, sha, cwd))[:CONFIG_FILES_MAX]:
            if entry.kind != "blob":
                continue
            try:
                _, blob = await git.run(applied, "cat-file", "blob", entry.oid, cwd=cwd,
                                        max_output=CONFIG_FILE_MAX)  # fmt: skip
            except git.TooMuchOutput as exc:
                blob = exc.head
            text = blob.decode("utf-8", errors="replace")
            cut = entry.size is not None and entry.size > CONFIG_FILE_MAX
            files[entry.path] = text + ("\n… (cut)" if cut else "")
    return {"commit": sha, "files": files}
