from __future__ import annotations

import asyncio
import json

from hive_core.bus import EventBus, Subscription
from hive_core.dashboard.streams import event_frames
from hive_share.events import ContainerRemoved, Frame, Resync


async def _ready_frame(sub: Subscription) -> Frame | None:
    """The frame already queued for `sub`, or None; never waits for a new one."""
    try:
        # A zero timeout cancels the get only if it has to suspend, i.e. the queue is empty.
        async with asyncio.timeout(0):
            return await sub.get()
    except TimeoutError:
        return None


async def _collect(sub: Subscription) -> list[Frame]:
    frames = []
    async with asyncio.timeout(5):
        async for frame in sub:
            frames.append(frame)
    return frames


def _event(i: int) -> ContainerRemoved:
    return ContainerRemoved(name=f"a{i}")


def test_seq_increases_by_one_with_every_publish() -> None:
    bus = EventBus()
    seqs = [bus.publish(_event(i)) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert bus.seq == 5


async def test_a_subscriber_receives_frames_in_order_with_their_seq() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    for i in range(3):
        bus.publish(_event(i))
    async with asyncio.timeout(5):
        frames = [await sub.get() for _ in range(3)]
    assert [f.seq for f in frames] == [1, 2, 3]
    assert [f.event for f in frames] == [_event(0), _event(1), _event(2)]


async def test_a_subscriber_that_falls_behind_is_cut_off_with_resync_and_others_get_all() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=3)
    fast = bus.subscribe(maxsize=100)
    received: list[Frame] = []

    for i in range(10):
        bus.publish(_event(i))
        frame = await _ready_frame(fast)
        assert frame is not None
        received.append(frame)

    assert [f.seq for f in received] == list(range(1, 11))
    assert [f.event for f in received] == [_event(i) for i in range(10)]
    assert slow.overflowed
    assert not fast.overflowed
    assert bus.subscriber_count == 1

    slow_frames = await _collect(slow)
    assert isinstance(slow_frames[-1].event, Resync)
    assert len(slow_frames) <= 3
    before_resync = [f.seq for f in slow_frames[:-1]]
    assert before_resync == sorted(before_resync)
    assert set(before_resync) <= {1, 2, 3}
    assert await _ready_frame(slow) is None


async def test_a_cut_off_subscriber_gets_nothing_after_its_resync() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=1)
    bus.publish(_event(0))
    bus.publish(_event(1))
    resync = await _ready_frame(slow)
    assert resync is not None
    assert isinstance(resync.event, Resync)
    bus.publish(_event(2))
    assert await _ready_frame(slow) is None


async def test_unsubscribed_subscribers_receive_nothing() -> None:
    bus = EventBus()
    gone = bus.subscribe()
    kept = bus.subscribe()
    gone.close()
    assert bus.subscriber_count == 1

    bus.publish(_event(0))

    assert await _ready_frame(gone) is None
    frame = await _ready_frame(kept)
    assert frame is not None
    assert frame.event == _event(0)


async def test_a_resync_frame_never_carries_an_events_seq() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxsize=1)
    stopped = bus.subscribe()
    seqs = {bus.publish(_event(i)) for i in range(3)}
    stopped.cut()

    slow_frames, stopped_frames = await _collect(slow), await _collect(stopped)

    assert [f.seq for f in stopped_frames[:-1]] == [1, 2, 3]
    for frames in (slow_frames, stopped_frames):
        assert isinstance(frames[-1].event, Resync)
        assert frames[-1].seq == 0 and frames[-1].seq not in seqs


async def test_a_cut_subscribers_resync_reaches_it_alone_on_the_stream() -> None:
    bus = EventBus()
    slow, healthy = bus.subscribe(maxsize=1), bus.subscribe()
    streams = {slow, healthy}
    bus.publish(_event(0))
    bus.publish(_event(1))  # no room for it: `slow` is cut off

    async with asyncio.timeout(5):
        slow_sent = [event async for event in event_frames(slow, streams)]
        healthy_stream = event_frames(healthy, streams)
        healthy_sent = [await anext(healthy_stream) for _ in range(2)]
        await healthy_stream.aclose()

    assert [(e.id, json.loads(str(e.data))) for e in healthy_sent] == [
        ("1", {"seq": 1, "event": _event(0).model_dump()}),
        ("2", {"seq": 2, "event": _event(1).model_dump()}),
    ]
    assert [(e.id, json.loads(str(e.data))) for e in slow_sent] == [
        (None, {"seq": 0, "event": {"kind": "resync"}})
    ]
    assert streams == set() and bus.subscriber_count == 0


def test_a_subscriber_gets_only_the_kinds_and_events_it_names() -> None:
    bus = EventBus()
    removed = bus.subscribe(kinds=("container_removed",))
    odd = bus.subscribe(where=lambda e: isinstance(e, ContainerRemoved) and e.name[-1] in "13")
    everything = bus.subscribe()
    bus.publish(_event(1))
    bus.publish(Resync())
    bus.publish(_event(2))
    bus.publish(_event(3))
    assert [f.seq for f in removed.ready()] == [1, 3, 4]
    assert [f.seq for f in odd.ready()] == [1, 4]
    assert [f.seq for f in everything.ready()] == [1, 2, 3, 4]


def test_only_wanted_events_fill_a_filtered_queue() -> None:
    bus = EventBus()
    sub = bus.subscribe(maxsize=2, kinds=("resync",))
    for i in range(10):
        bus.publish(_event(i))
    assert not sub.overflowed
    assert sub.ready() == []
