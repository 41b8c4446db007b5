"""The in-process dashboard event bus: monotonic `seq`, bounded queue per subscriber.

A subscriber whose queue fills is cut off with a `resync` frame instead of
slowing the publisher or growing memory. A `resync` is a control frame: its `seq` is
`CONTROL_SEQ`, which no event ever has, so it is never mistaken for one.

Every message sent, leased and delivered is published here, so a subscription's queue is a
plain deque and one future its reader parks on (an `asyncio.Queue` costs a dozen Python
calls per frame on each side), and a subscriber names the events it wants (`kinds`, `where`):
the bus queues only those, so a burst of messages wakes only the subscribers that follow
messages (the dashboard's snapshot and streams, the stuck watch).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection

from hive_share.events import DashboardEvent, Frame, Resync

DEFAULT_QUEUE = 1024
CONTROL_SEQ = 0
"""The `seq` of a control frame (`resync`): events count from 1."""


def _resync() -> Frame:
    return Frame(seq=CONTROL_SEQ, event=Resync())


class Subscription:
    """One subscriber's view of the bus; iterate to receive frames (one reader at a time).

    `maxsize` frames at most wait for the reader (no bound when it is 0 or less)."""

    def __init__(
        self,
        bus: EventBus,
        maxsize: int,
        kinds: frozenset[str] | None,
        where: Callable[[DashboardEvent], bool] | None,
    ) -> None:
        self._bus = bus
        self._kinds = kinds
        self._where = where
        self._frames: deque[Frame] = deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        """The reader's, while it waits for a frame."""
        self.overflowed = False

    def _full(self) -> bool:
        return 0 < self._maxsize <= len(self._frames)

    def _put(self, frame: Frame) -> None:
        self._frames.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _overflow(self) -> None:
        self.overflowed = True
        # Make room for the marker so the reader learns why it stopped.
        self._frames.popleft()
        self._put(_resync())
        self._bus.unsubscribe(self)

    def cut(self) -> None:
        """End this subscription with a `resync` frame now (the server is stopping)."""
        if not self.overflowed:
            self.overflowed = True
            if self._full():
                self._frames.popleft()
            self._put(_resync())
            self._bus.unsubscribe(self)

    async def get(self) -> Frame:
        """The next frame; waits for one only when none is queued."""
        while not self._frames:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._frames.popleft()

    def ready(self) -> list[Frame]:
        """The frames queued for this subscriber, in order, taken without waiting."""
        frames = list(self._frames)
        self._frames.clear()
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
        frame = Frame.model_construct(seq=self.seq, event=event)  # both typed already
        # One subscriber's `_full` and `_put` inlined: this runs for every subscriber of
        # every message.
        kind = event.kind
        for sub in tuple(self._subscribers):  # an overflowing one leaves the set
            if sub._kinds is not None and kind not in sub._kinds:
                continue
            if sub._where is not None and not sub._where(event):
                continue
            frames = sub._frames
            if 0 < sub._maxsize <= len(frames):
                sub._overflow()
                continue
            frames.append(frame)
            waiter = sub._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        return self.seq

    def subscribe(
        self,
        maxsize: int = DEFAULT_QUEUE,
        kinds: Collection[str] | None = None,
        where: Callable[[DashboardEvent], bool] | None = None,
    ) -> Subscription:
        """A subscription to the events whose `kind` is in `kinds` (all when None) and for
        which `where` holds (all when None); a `resync` reaches every subscription."""
        sub = Subscription(self, maxsize, None if kinds is None else frozenset(kinds), where)
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
