"""The container backend `hive-core serve` runs (HIVE_BACKEND), and the nixos backend's
start-up: the meta flake opened (what a crash left cleared, re-rendered, the one-time
migration) and a stale locked `hyperhive` input told to the overseers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio

from hive_core import lifecycle, meta
from hive_core.containers.backend import ContainerBackend
from hive_core.containers.local import LocalBackend
from hive_core.containers.nixos import NixosBackend
from hive_core.containers.nixtools import Tools
from hive_core.errors import HiveError, StartupError
from hive_core.notices import tell_overseer
from hive_core.services import Services
from hive_core.settings import Settings
from hive_share import build
from hive_share.helper import NeedsUpdate

logger = logging.getLogger(__name__)


def make_backend(
    settings: Settings, env: Mapping[str, str], services: list[Services]
) -> ContainerBackend:
    """The backend HIVE_BACKEND names; `services` holds the wired services once they exist.
    Raises: StartupError (nixos: a tool or HIVE_HYPERHIVE_FLAKE is missing)."""
    if settings.backend == "nixos":
        if not settings.hyperhive_flake.strip():
            raise StartupError(
                "HIVE_BACKEND=nixos needs HIVE_HYPERHIVE_FLAKE: the flake reference of "
                "hyperhive (e.g. github:owner/hyperhive or path:/etc/hyperhive)"
            )
        try:
            tools = Tools.resolve(settings, env)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        return NixosBackend(
            settings,
            tools,
            roster=lambda: meta.roster(services[0]),
            params=lambda: meta.params_of(settings, services[0].dashboard_url),
        )

    def on_exit(name: str, pid: int, code: int, expected: bool) -> None:
        lifecycle.on_exit(services[0], name, pid, code, expected)

    return LocalBackend(env, on_exit)


async def open_nixos(backend: NixosBackend, settings: Settings) -> None:
    """Meta at start-up: clear what a crash left, re-render from the agents (a deploy a
    crash finished, a new hyperhive input), and the one-time migration of a state dir
    that has agents but no meta. Stale containers are rebuilt when they start. Failures
    are logged: spawn and start report them again."""
    try:
        await backend.open()
        if settings.skip_meta_migration:
            return
        moved = await backend.migrate()
        if moved:
            logger.info("moved %s onto the meta flake", ", ".join(moved))
    except HiveError as exc:
        logger.error("the meta flake is not usable: %s", exc.message)


async def tell_stale_lock(s: Services, backend: NixosBackend) -> None:
    """At start-up: when meta's locked `hyperhive` input holds other code than hive-core
    runs, every container built from it would run that code, so the overseer hears
    `needs_update` for each agent (`update` moves the input). Not told when it cannot be
    known (`meta.lock_news`); a failure is logged."""
    try:
        news = await backend.lock_news(await anyio.to_thread.run_sync(build.running_digest))
    except HiveError as exc:
        logger.error("could not check meta's hyperhive input: %s", exc.message)
        return
    if news is None:
        return
    logger.warning("%s", news)
    for record in s.registry.all():
        await tell_overseer(s, record.name, NeedsUpdate(agent=record.name, detail=news))
