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


def default_run_dir() -> Path:
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


def host_socket(directory: Path) -> Path:
    """The admin socket under a run dir (`Settings.host_socket`)."""
    return directory / "host.sock"
