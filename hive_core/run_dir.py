"""Where the daemon's sockets are: the run dir's default, and the run dir as the CLI finds it.

Standard library only: the CLI's client commands read `HIVE_RUN_DIR` here instead
of building `Settings` (pydantic-settings alone costs several interpreter starts).
`Settings.run_dir` has the same default and reads the same variable the same way,
case-insensitively like pydantic-settings (tests/hive_core/test_settings.py checks).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "HIVE_RUN_DIR"
SYSTEM_RUN_DIR = Path("/run/hyperhive")
"""A system unit's `RuntimeDirectory=hyperhive` (`hive-core systemd-unit`)."""


def systemd_directory(variable: str) -> Path | None:
    """The first of the colon-separated paths systemd put in `variable`
    (`STATE_DIRECTORY`, `RUNTIME_DIRECTORY`), if any."""
    first = os.environ.get(variable, "").split(":")[0]
    return Path(first) if first else None


def default_run_dir() -> Path:
    """`$RUNTIME_DIRECTORY` (systemd's), else `$XDG_RUNTIME_DIR/hyperhive`, else
    `/tmp/hyperhive-<uid>`."""
    given = systemd_directory("RUNTIME_DIRECTORY")
    if given is not None:
        return given
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "hyperhive"
    return Path(f"/tmp/hyperhive-{os.getuid()}")


def run_dir(override: Path | None = None) -> Path:
    """`override` (a `--run-dir`), else `HIVE_RUN_DIR`, else the default; made absolute."""
    if override is None:
        # pydantic-settings lower-cases the environment's names; the last of a clash wins.
        found = {k.lower(): v for k, v in os.environ.items()}.get(ENV_VAR.lower())
        override = Path(found) if found is not None else default_run_dir()
    return override.expanduser().absolute()


def client_run_dir(override: Path | None = None, system: Path = SYSTEM_RUN_DIR) -> Path:
    """The run dir a client command talks to: `run_dir(override)`, except that with
    neither `override` nor `HIVE_RUN_DIR`, a system unit's `system` run dir is used when
    the default has no `host.sock` and it has one (root's shell reaches the system daemon
    without setting anything)."""
    chosen = run_dir(override)
    explicit = override is not None or ENV_VAR.lower() in {k.lower() for k in os.environ}
    if explicit or host_socket(chosen).exists():
        return chosen
    return system if host_socket(system).exists() else chosen


def host_socket(directory: Path) -> Path:
    """The admin socket under a run dir (`Settings.host_socket`)."""
    return directory / "host.sock"
