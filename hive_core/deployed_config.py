"""An agent's deployed `agent.toml`, as hive-core reads it for its own limits.

The stuck thresholds (`[stuck]`) and budgets (`[budget]`) hive-core applies to an agent come
from the `agent.toml` in its `applied/` repo, the config the operator approved, never from
what the agent or its harness reports. The file is read fd-relative without following a
link, at most `MAX_BYTES`, and kept until its size or mtime changes.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from hive_share import agent_config
from hive_share.agent_config import AgentConfig

logger = logging.getLogger(__name__)

MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class _Seen:
    stamp: tuple[int, int, int] | None
    config: AgentConfig


class DeployedConfigs:
    """The deployed `agent.toml` of each agent under `agents_dir`, cached by stamp."""

    def __init__(self, agents_dir: Path) -> None:
        self._agents_dir = agents_dir
        self._seen: dict[str, _Seen] = {}

    def get(self, name: str) -> AgentConfig:
        """`name`'s deployed config; the defaults when it has no agent.toml. An unreadable
        or invalid file (edited by hand since its deploy) also gives the defaults, with a
        warning logged once per change of the file."""
        try:
            stamp, text = self._read(name)
        except OSError as exc:
            stamp, text = None, None
            if not isinstance(exc, FileNotFoundError):
                return self._bad(name, None, f"cannot read it: {exc.strerror or exc}")
        seen = self._seen.get(name)
        if seen is not None and seen.stamp == stamp:
            return seen.config
        if text is None:
            config = AgentConfig()
        else:
            try:
                config = agent_config.parse(text, f"{name}'s applied/agent.toml")
            except agent_config.ConfigError as exc:
                return self._bad(name, stamp, str(exc))
        self._seen[name] = _Seen(stamp, config)
        return config

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)

    def _bad(self, name: str, stamp: tuple[int, int, int] | None, why: str) -> AgentConfig:
        seen = self._seen.get(name)
        if seen is None or seen.stamp != stamp or stamp is None:
            logger.warning("%s: using hive-core's defaults for its limits: %s", name, why)
        config = AgentConfig()
        self._seen[name] = _Seen(stamp, config)
        return config

    def _read(self, name: str) -> tuple[tuple[int, int, int] | None, str | None]:
        """The file's stamp and text; raises FileNotFoundError when it does not exist."""
        flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        fds: list[int] = []
        try:
            fd = os.open(self._agents_dir, flags_dir)
            fds.append(fd)
            for component in (name, "applied"):
                fd = os.open(component, flags_dir, dir_fd=fd)
                fds.append(fd)
            fd = os.open("agent.toml", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=fd)  # fmt: skip
            fds.append(fd)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(0, "not a regular file")
            stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
            seen = self._seen.get(name)
            if seen is not None and seen.stamp == stamp:
                return stamp, ""  # unchanged: `get` keeps what it parsed
            if st.st_size > MAX_BYTES:
                raise OSError(0, f"{st.st_size} bytes, over {MAX_BYTES}")
            data = os.read(fd, MAX_BYTES + 1)
        finally:
            for fd in reversed(fds):
                os.close(fd)
        try:
            return stamp, data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise OSError(0, f"not UTF-8: {exc}") from None
