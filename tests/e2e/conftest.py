from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.e2e.hive import Hive, running_hive, short_tmp


@pytest.fixture
def hive() -> Iterator[Hive]:
    """A running daemon in its own temp dirs, stopped and removed afterwards."""
    with running_hive() as h:
        yield h


@pytest.fixture
def idle_hive() -> Iterator[Hive]:
    """Directories for a daemon the test starts itself."""
    root = short_tmp()
    h = Hive(root)
    try:
        yield h
    finally:
        h.close()
        shutil.rmtree(root, ignore_errors=True)
