"""Daemon settings: `HIVE_*` environment variables and CLI flags, read once at the edge."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hive_core.run_dir import default_run_dir, host_socket

SOCKET_PATH_MAX = 107
"""`sun_path` holds 108 bytes including the terminating NUL."""

LONGEST_SOCKET_SUFFIX = "/agents/" + "x" * 9 + "/harness.sock"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hyperhive"


class Settings(BaseSettings):
    """Every setting of hive-core. Services get this object; none reads the environment."""

    model_config = SettingsConfigDict(env_prefix="HIVE_", frozen=True, extra="ignore")

    state_dir: Path = Field(default_factory=default_state_dir)
    """Durable state: hive.sqlite, per-agent repos and state dirs."""
    run_dir: Path = Field(default_factory=default_run_dir)
    """Sockets. Keep it short: unix socket paths are limited to 107 bytes."""
    backend: Literal["local", "nixos"] = "local"
    """Container backend."""
    dashboard_host: str = "127.0.0.1"
    """Dashboard bind address."""
    dashboard_port: int = Field(default=7357, ge=0, le=65535)
    """Dashboard port; 0 picks a free one and writes it to `<run>/dashboard.port`."""
    operator_pronouns: str = "she/her"
    """Substituted into the agents' role prompts."""
    cli_name: str = "hive-core"
    """How the start-up banner's hint names the CLI (`./dev` sets `./dev`)."""

    @field_validator("state_dir", "run_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("operator_pronouns")
    @classmethod
    def _pronouns(cls, value: str) -> str:
        if not value.strip() or len(value) > 40 or not value.isprintable():
            raise ValueError("operator pronouns must be 1-40 printable characters, e.g. 'she/her'")
        return value

    @field_validator("cli_name")
    @classmethod
    def _cli_name(cls, value: str) -> str:
        if not value.strip() or len(value) > 200 or not value.isprintable():
            raise ValueError("the CLI name must be 1-200 printable characters, e.g. './dev'")
        return value

    def check_socket_paths(self) -> None:
        """Refuse a run dir whose longest socket path would not fit in `sun_path`.

        Raises:
            ValueError: naming the run dir and the byte count.
        """
        longest = len(os.fsencode(str(self.run_dir) + LONGEST_SOCKET_SUFFIX))
        if longest > SOCKET_PATH_MAX:
            raise ValueError(
                f"run dir {self.run_dir} is too long: agent socket paths would be {longest} bytes "
                f"(the limit is {SOCKET_PATH_MAX}); set HIVE_RUN_DIR to a shorter path"
            )

    @property
    def db_path(self) -> Path:
        return self.state_dir / "hive.sqlite"

    @property
    def agents_dir(self) -> Path:
        return self.state_dir / "agents"

    @property
    def host_socket(self) -> Path:
        return host_socket(self.run_dir)

    @property
    def manager_socket(self) -> Path:
        return self.run_dir / "manager.sock"

    def agent_run_dir(self, name: str) -> Path:
        return self.run_dir / "agents" / name

    def agent_socket(self, name: str) -> Path:
        return self.agent_run_dir(name) / "agent.sock"

    def harness_socket(self, name: str) -> Path:
        return self.agent_run_dir(name) / "harness.sock"
