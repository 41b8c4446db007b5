"""Acknowledged means durable: SIGKILL mid-burst, restart, retries with the same keys."""

from __future__ import annotations

import asyncio
import random
import sqlite3

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import ConnectionLost, HiveClient, NotRunning
from tests.e2e.hive import Hive

PER_SENDER = 150
RETRY_BOUND = 60.0


class Progress:
    """Counts acknowledged sends; lets the killer wait for the n-th without polling."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Condition()

    async def bump(self) -> None:
        async with self._changed:
            self.count += 1
            self._changed.notify_all()

    async def reach(self, n: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.count >= n)


async def _send_all(
    who: str, path_of: dict[str, str], up: asyncio.Event, progress: Progress
) -> list[int]:
    ids: list[int] = []
    client = HiveClient(path_of[who])
    try:
        for i in range(PER_SENDER):
            req = rq.Send(cmd="send", to="carol", body=f"{who}-{i}", idempotency_key=f"{who}-{i}")
            async with asyncio.timeout(RETRY_BOUND):
                while True:
                    try:
                        resp = await client.call(req, rs.Sent)
                        break
                    except (ConnectionLost, NotRunning):
                        await client.close()
                        await up.wait()
            ids.append(resp.id)
            await progress.bump()
    finally:
        await client.close()
    return ids


async def test_sigkill_mid_burst_loses_and_duplicates_nothing(hive: Hive) -> None:
    hive.spawn_idle("alice", "bob", "carol")
    paths = {
        "operator": str(hive.host_sock),
        "alice": str(hive.agent_sock("alice")),
        "bob": str(hive.agent_sock("bob")),
        "hm1nd": str(hive.manager_sock),
    }
    up = asyncio.Event()
    up.set()
    progress = Progress()
    kill_after = random.randrange(20, PER_SENDER * len(paths) // 2)
    reached = asyncio.Event()

    async def killer() -> None:
        await progress.reach(kill_after)
        up.clear()
        hive.kill9()
        reached.set()
        await asyncio.to_thread(hive.start)
        up.set()

    senders = [_send_all(who, paths, up, progress) for who in paths]
    async with asyncio.timeout(240):
        kill_task = asyncio.create_task(killer())
        results = await asyncio.gather(*senders)
        await kill_task
    assert reached.is_set()
    assert "removed stale socket" in hive.log(), "the restart did not follow a crash"

    db = sqlite3.connect(hive.state_dir / "hive.sqlite")
    rows = db.execute(
        "SELECT id, sender, body FROM messages WHERE recipient = 'carol' ORDER BY id"
    ).fetchall()
    db.close()
    assert len(rows) == PER_SENDER * len(paths), "lost or duplicated messages"
    for (who, _), ids in zip(paths.items(), results, strict=True):
        mine = [(row_id, body) for row_id, sender, body in rows if sender == who]
        assert [body for _, body in mine] == [f"{who}-{i}" for i in range(PER_SENDER)]
        assert [row_id for row_id, _ in mine] == ids, f"acknowledged ids differ for {who}"
