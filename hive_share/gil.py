"""Keep an event loop answering while a thread runs a long stretch of Python (an import).

A thread holding the GIL gives it up only every switch interval (5 ms by default), and
the loop thread waits that long for every step it takes; an import of a web stack or an
SDK is hundreds of milliseconds of such stretches. While `responsive()` is held, the
interval is `SHORT_SWITCH_INTERVAL`, so the loop's answers wait a fraction of a
millisecond instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

SHORT_SWITCH_INTERVAL = 0.0005
"""Seconds; CPython's default is 0.005."""


class _Holders:
    """Who wants the short interval now (used from one loop thread; they may overlap)."""

    count = 0
    before = 0.0


@contextlib.contextmanager
def responsive() -> Iterator[None]:
    """Shorten the GIL switch interval until the last overlapping holder is done."""
    if _Holders.count == 0:
        _Holders.before = sys.getswitchinterval()
        sys.setswitchinterval(SHORT_SWITCH_INTERVAL)
    _Holders.count += 1
    try:
        yield
    finally:
        _Holders.count -= 1
        if _Holders.count == 0:
            sys.setswitchinterval(_Holders.before)


async def import_off_loop(name: str) -> ModuleType:
    """Import module `name` in a thread, the loop answering meanwhile."""
    with responsive():
        return await asyncio.to_thread(importlib.import_module, name)
