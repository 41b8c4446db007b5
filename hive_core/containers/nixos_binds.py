"""What the nixos backend's containers see of the host: bind mounts written into each
container's conf file (`EXTRA_NSPAWN_FLAGS`, read when it starts): every agent its state
dir at `/state` and its socket dir at `/run/hive`; the manager also the meta flake
read-only at `/meta` and every agent's config repos at their host paths, with those that
appear while it runs bound into it live (`machinectl bind`).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import anyio

from hive_core.containers import nixtools
from hive_core.containers.backend import AgentSpec
from hive_core.containers.nixtools import Tools
from hive_core.errors import BackendError
from hive_core.git import SEARCH_PATH
from hive_core.settings import Settings
from hive_share.names import MANAGER_NAME, validate_agent_name

logger = logging.getLogger(__name__)

PREFIX = "h-"
BIND_TIMEOUT = 60.0
"""Seconds one `machinectl bind` may take."""
STATE_DIR_IN_CONTAINER = "/state"
SOCKET_DIR_IN_CONTAINER = "/run/hive"
META_IN_CONTAINER = "/meta"
"""Where the manager's container has the meta flake, read-only."""
FLAGS_KEY = "EXTRA_NSPAWN_FLAGS="
ODD_CHARACTERS = "\"'\\$`:"
"""Characters a bound path may not hold: they cannot be written into the conf line."""


def container(name: str) -> str:
    """The container of agent `name`: `h-<name>`."""
    return PREFIX + validate_agent_name(name)


@dataclass(frozen=True)
class Bind:
    """One bind mount of a host path into a container."""

    source: Path
    target: str
    read_only: bool = False

    @property
    def flag(self) -> str:
        """As `systemd-nspawn` takes it (the target left out when it is the source)."""
        kind = "--bind-ro" if self.read_only else "--bind"
        same = self.target == str(self.source)
        return f"{kind}={self.source}" + ("" if same else f":{self.target}")


def _check_paths(paths: list[Path]) -> None:
    """Raises: BackendError (a path that cannot be written into a conf file's flags)."""
    for path in paths:
        if any(c.isspace() or c in ODD_CHARACTERS for c in str(path)):
            raise BackendError(f"{path} cannot be bound into a container (odd characters)")


class Binds:
    """The bind mounts of every container, and the live binds into the manager's."""

    def __init__(self, settings: Settings, tools: Tools) -> None:
        self._settings = settings
        self._tools = tools
        self._machinectl_path: str | None = None
        """Found at its first use ("" when missing)."""
        self._bind_failed: set[str] = set()
        """What `share_with_manager` could not bind last time (told once, then quieter)."""

    def flags(self, spec: AgentSpec) -> list[str]:
        """The container's bind mounts as `systemd-nspawn` flags: its state dir at `/state`
        and its socket dir at `/run/hive`; the manager also gets the meta flake read-only at
        `/meta` and, at the host's own paths, every agent's `proposed/` read-write and
        `applied/` read-only (the working copies' `applied` remote), other hosts' agents'
        too (`<state>/remote`), as they are when it
        starts (`share_with_manager` adds those that appear while it runs).

        Raises: BackendError (a path that cannot be written into the conf file).
        """
        _check_paths([spec.state_dir, spec.socket.parent])
        flags = [f"--bind={spec.state_dir}:{STATE_DIR_IN_CONTAINER}",
                 f"--bind={spec.socket.parent}:{SOCKET_DIR_IN_CONTAINER}"]  # fmt: skip
        if spec.role == "manager":
            flags += [bind.flag for _, group in self._manager_views() for bind in group]
        return flags

    def write(self, spec: AgentSpec) -> None:
        """Write `spec`'s bind mounts into its container's conf file, for its next start."""
        self._write_flags(spec.name, self.flags(spec))

    def _manager_views(self) -> list[tuple[str, list[Bind]]]:
        """What the manager's container sees beyond its own dirs, in groups bound together:
        the meta flake (`meta`), then each agent dir with config repos, in name order, then
        each working copy of another host's agent (`applied/` read-only, then `proposed/`
        read-write, at their host paths).

        Raises: BackendError (a path with odd characters).
        """
        meta_dir = self._settings.meta_dir
        views = [("meta", [Bind(meta_dir, META_IN_CONTAINER, read_only=True)])]
        for root in (self._settings.agents_dir, self._settings.remote_config_dir):
            for entry in sorted(root.iterdir()) if root.is_dir() else []:
                if entry.is_symlink() or not (entry / "proposed").is_dir():
                    continue
                applied, proposed = entry / "applied", entry / "proposed"
                views.append((entry.name, [Bind(applied, str(applied), read_only=True),
                                           Bind(proposed, str(proposed))]))  # fmt: skip
        _check_paths([bind.source for _, group in views for bind in group])
        return views

    def _conf(self, name: str) -> Path:
        return self._settings.nixos_containers_conf / f"{container(name)}.conf"

    def _flags(self, name: str) -> list[str]:
        """The bind flags in `name`'s conf file: what its container started with (plus what
        `share_with_manager` bound since)."""
        try:
            lines = self._conf(name).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        line = next((entry for entry in lines if entry.startswith(FLAGS_KEY)), FLAGS_KEY)
        return line[len(FLAGS_KEY) :].strip('"').split()

    def _write_flags(self, name: str, flags: list[str]) -> None:
        """Imperative containers take bind mounts only from `EXTRA_NSPAWN_FLAGS` in their
        conf file (read when the container starts); the rest of the file is kept."""
        conf = self._conf(name)
        line = f'{FLAGS_KEY}"{" ".join(flags)}"'
        try:
            old = conf.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            old = []
        kept = [entry for entry in old if not entry.startswith(FLAGS_KEY)]
        if [*kept, line] == old:
            return
        tmp = conf.with_suffix(".tmp")
        tmp.write_text("\n".join([*kept, line]) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o644)
        tmp.replace(conf)

    async def share_with_manager(self) -> list[str]:
        """Bind into the running manager's container what it lacks of `_manager_views`, and
        record it in its conf line. Returns the groups bound (agent names, `meta`). The
        caller holds the manager's lifecycle lock and knows it runs.

        Never raises: a failure is logged, and retried at the next call.
        """
        try:
            have = set(self._flags(MANAGER_NAME))
            missing = [(name, group) for name, group in self._manager_views()
                       if not {bind.flag for bind in group} <= have]  # fmt: skip
        except (OSError, BackendError) as exc:
            logger.warning("could not list what the manager's container sees: %s", exc)
            return []
        tool = self._machinectl() if missing else None
        if tool is None:
            return []
        bound = [name for name, group in missing if await self._bind_live(tool, name, group)]
        added = [bind.flag for name, group in missing if name in bound for bind in group]
        if added:
            flags = self._flags(MANAGER_NAME)
            wanted = flags + [f for f in added if f not in flags]
            await anyio.to_thread.run_sync(self._write_flags, MANAGER_NAME, wanted)
            logger.info("bound %s into the running %s", ", ".join(bound),
                        container(MANAGER_NAME))  # fmt: skip
        return bound

    async def _bind_live(self, tool: str, name: str, group: list[Bind]) -> bool:
        """`machinectl bind` each of `group` into the running manager's container. Returns
        whether all were bound; a failure is a warning the first time, then quieter."""
        for bind in group:
            read_only = ["--read-only"] if bind.read_only else []
            argv = [tool, "bind", "--mkdir", *read_only, container(MANAGER_NAME),
                    str(bind.source), bind.target]  # fmt: skip
            try:
                await nixtools.run(argv, self._tools.env, BIND_TIMEOUT)
            except BackendError as exc:
                level = logging.DEBUG if name in self._bind_failed else logging.WARNING
                self._bind_failed.add(name)
                logger.log(level, "could not bind %s into %s (retried; its next start "
                           "binds it): %s", bind.source, container(MANAGER_NAME),
                           exc.message)  # fmt: skip
                return False
        self._bind_failed.discard(name)
        return True

    def _machinectl(self) -> str | None:
        """systemd's `machinectl`: beside `nixos-container` (both live in the system's
        profile on NixOS), else on the fixed PATH; None (logged once) when missing."""
        if self._machinectl_path is None:
            beside = Path(self._tools.nixos_container).parent / "machinectl"
            if beside.is_file() and os.access(beside, os.X_OK):
                self._machinectl_path = str(beside)
            else:
                found = shutil.which("machinectl", path=SEARCH_PATH)
                if found is None:
                    logger.warning("machinectl is neither beside %s nor on %s: the manager "
                                   "sees new config repos only after its next restart",
                                   self._tools.nixos_container, SEARCH_PATH)  # fmt: skip
                self._machinectl_path = found or ""
        return self._machinectl_path or None
