"""The `nats_cluster` fixture: a started three-node JetStream cluster under `tmp_path`; and
`secured`, the same with a NATS user per host held to the permissions hive-core documents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.multihost.hives import users
from tests.multihost.nats_cluster import NatsCluster


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats") as cluster:
        yield cluster


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats", users=users("a", "b", "c")) as cluster:
        yield cluster
