"""Long-poll wake-ups, and at-least-once delivery when a receiver dies mid-reply."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from hive_share import requests as rq
from hive_share import responses as rs
from tests.e2e.hive import Hive

RECEIVER = """
import json, signal, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(json.dumps({"cmd": "recv", "wait_seconds": 0}).encode() + b"\\n")
s.recv(1, socket.MSG_PEEK)  # the reply is in our buffer now, and stays unread
print("replied", flush=True)
signal.pause()
"""


async def test_blocked_recv_wakes_when_a_message_lands(hive: Hive) -> None:
    hive.spawn_idle("alice")
    async with hive.client(hive.agent_sock("alice")) as alice, hive.client() as op:
        waiting = asyncio.create_task(
            alice.call(rq.Recv(cmd="recv", wait_seconds=120), rs.Messages)
        )
        # The recv is parked: nothing to hand out yet.
        done, _ = await asyncio.wait({waiting}, timeout=0.3)
        assert not done
        sent_at = time.monotonic()
        sent = await op.call(rq.Send(cmd="send", to="alice", body="wake up"), rs.Sent)
        async with asyncio.timeout(5):
            got = await waiting
        woke_after = time.monotonic() - sent_at
    assert [(m.id, m.sender, m.body) for m in got.messages] == [(sent.id, "operator", "wake up")]
    # Far below the 120 s wait: the send woke it.
    assert woke_after < 2.0


async def test_recv_times_out_empty_after_its_wait(hive: Hive) -> None:
    hive.spawn_idle("alice")
    async with hive.client(hive.agent_sock("alice")) as alice:
        got = await alice.call(rq.Recv(cmd="recv", wait_seconds=0.2), rs.Messages)
    assert got.messages == []


async def test_receiver_killed_before_reading_the_reply_loses_nothing(hive: Hive) -> None:
    hive.spawn_idle("alice")
    async with hive.client() as op:
        sent = await op.call(rq.Send(cmd="send", to="alice", body="precious"), rs.Sent)
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RECEIVER, str(hive.agent_sock("alice")), stdout=subprocess.PIPE
    )
    try:
        assert receiver.stdout is not None
        async with asyncio.timeout(15):
            assert (await receiver.stdout.readline()).strip() == b"replied"
        async with hive.client(hive.agent_sock("alice")) as other:
            # Handed to the receiver, not yet acknowledged: leased, so not handed out twice.
            got = await other.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
            assert got.messages == []
            receiver.kill()
            await receiver.wait()
            async with asyncio.timeout(10):
                again = await other.call(rq.Recv(cmd="recv", wait_seconds=10), rs.Messages)
            assert [(m.id, m.body) for m in again.messages] == [(sent.id, "precious")]
            acked = await other.call(rq.Ack(cmd="ack", ids=[sent.id]), rs.Acked)
            assert acked.count == 1
            after = await other.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
            assert after.messages == []
    finally:
        if receiver.returncode is None:
            receiver.kill()
            await receiver.wait()
