from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.e2e.hive import Hive, short_tmp


@pytest.fixture
def hive() -> Iterator[Hive]:
    """A running daemon in its own temp dirs, stopped and removed afterwards."""
    root = short_tmp()
    h = Hive(root)
    try:
        h.start()
        yield h
    finally:
        h.close()
        shutil.rmtree(root, ignore_errors=True)


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
