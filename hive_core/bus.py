"""The in-process dashboard event bus: monotonic `seq`, bounded queue per subscriber.

A subscriber whose queue fills is cut off with a `resync` frame instead of
slowing the publisher or growing memory. A `resync` is a control frame: its `seq` is
`CONTROL_SEQ`, which no event ever has, so it is never mistaken for one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hive_share.events import DashboardEvent, Frame, Resync

DEFAULT_QUEUE = 1024
CONTROL_SEQ = 0
"""The `seq` of a control frame (`resync`): events count from 1."""


def _resync() -> Frame:
    return Frame(seq=CONTROL_SEQ, event=Resync())


class Subscription:
    """One subscriber's view of the bus; iterate to receive frames."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Frame] = asyncio.Queue(maxsize)
        self.overflowed = False

    def _offer(self, frame: Frame) -> None:
        if self.overflowed:
            return
        if self._queue.full():
            self.overflowed = True
            # Make room for the marker so the reader learns why it stopped.
            self._queue.get_nowait()
            self._queue.put_nowait(_resync())
            self._bus.unsubscribe(self)
            return
        self._queue.put_nowait(frame)

    def cut(self) -> None:
        """End this subscription with a `resync` frame now (the server is stopping)."""
        if not self.overflowed:
            self.overflowed = True
            if self._queue.full():
                self._queue.get_nowait()
            self._queue.put_nowait(_resync())
            self._bus.unsubscribe(self)

    async def get(self) -> Frame:
        return await self._queue.get()

    def ready(self) -> list[Frame]:
        """The frames queued for this subscriber, in order, taken without waiting."""
        frames = []
        while not self._queue.empty():
            frames.append(self._queue.get_nowait())
        return frames

    def close(self) -> None:
        self._bus.unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[Frame]:
        while True:
            frame = await self.get()
            yield frame
            if isinstance(frame.event, Resync):
                return


class EventBus:
    """Publish `DashboardEvent`s to every subscriber, in order, with a `seq`."""

    def __init__(self) -> None:
        self.seq = 0
        self._subscribers: set[Subscription] = set()

    def publish(self, event: DashboardEvent) -> int:
        """Stamp the next `seq` on `event` and queue it for every subscriber."""
        self.seq += 1
        frame = Frame(seq=self.seq, event=event)
        for sub in list(self._subscribers):
            sub._offer(frame)
        return self.seq

    def subscribe(self, maxsize: int = DEFAULT_QUEUE) -> Subscription:
        sub = Subscription(self, maxsize)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    @property
    def watched(self) -> bool:
        """Whether anyone subscribes: an event nobody would get need not be built."""
        return bool(self._subscribers)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
