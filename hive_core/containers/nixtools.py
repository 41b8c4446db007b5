"""The NixOS tools the nixos backend runs: `nixos-container`, `nix`, `journalctl` and
`nix-instantiate`, each found once at start-up on the fixed PATH git uses
(`git.SEARCH_PATH`), never the daemon's own.

Every call is an argv list (never a shell) with a timeout; stdout and stderr are
drained, and a failure raises `BackendError` quoting the end of stderr.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass

from hive_core.errors import BackendError
from hive_core.git import SEARCH_PATH
from hive_core.proc import communicate
from hive_core.settings import Settings

STDERR_TAIL = 2000
"""Characters of stderr a failure message quotes (its end: where nix says what broke)."""
NIX_FEATURES = ("--extra-experimental-features", "nix-command flakes")


def find(binary: str, setting: str) -> str:
    """The path `binary` resolves to on `SEARCH_PATH`.

    Raises:
        ValueError: it is not an executable file, or not on `SEARCH_PATH`.
    """
    found = shutil.which(binary, path=SEARCH_PATH)
    if found is None:
        where = "is not an executable file" if os.sep in binary else f"is not on {SEARCH_PATH}"
        raise ValueError(f"{binary} {where}; set {setting} to its path")
    return found


@dataclass(frozen=True)
class Tools:
    """The resolved binaries and the environment they run with."""

    nixos_container: str
    nix: str
    journalctl: str
    nix_instantiate: str | None
    """None when it is not installed: the spawn preflight then skips the parse."""
    env: Mapping[str, str]

    @classmethod
    def resolve(cls, settings: Settings, env: Mapping[str, str]) -> Tools:
        """Raises: ValueError (a binary is missing)."""
        try:
            parser: str | None = find(settings.nix_instantiate, "HIVE_NIX_INSTANTIATE")
        except ValueError:
            parser = None
        return cls(
            nixos_container=find(settings.nixos_container, "HIVE_NIXOS_CONTAINER"),
            nix=find(settings.nix, "HIVE_NIX"),
            journalctl=find(settings.journalctl, "HIVE_JOURNALCTL"),
            nix_instantiate=parser,
            env=tool_env(env),
        )


def tool_env(env: Mapping[str, str]) -> dict[str, str]:
    """The fixed PATH, a fixed locale, and the daemon's HOME (nix keeps its caches there)."""
    return {"PATH": SEARCH_PATH, "LC_ALL": "C", "HOME": env.get("HOME", "/root")}


@dataclass(frozen=True)
class Result:
    code: int
    out: bytes
    err: bytes


async def run(
    argv: list[str],
    env: Mapping[str, str],
    limit: float,
    *,
    stdin: bytes | None = None,
    check: bool = True,
) -> Result:
    """Run one tool and return its exit code and output.

    Raises:
        BackendError: it could not start, timed out, or exited non-zero while `check`.
    """
    verb = next((a for a in argv[1:] if not a.startswith("-") and a not in NIX_FEATURES), "")
    what = f"{os.path.basename(argv[0])} {verb}".strip()
    try:
        code, out, err = await communicate(argv, env=env, cwd="/", stdin=stdin, limit=limit)
    except OSError as exc:
        raise BackendError(f"could not run {what}: {exc}") from None
    except TimeoutError:
        raise BackendError(f"{what} timed out after {limit:.0f}s") from None
    if check and code != 0:
        raise BackendError(f"{what} failed ({code}): {stderr_tail(err, out)}")
    return Result(code, out, err)


def stderr_tail(err: bytes, out: bytes = b"") -> str:
    text = err.decode("utf-8", errors="replace").strip() or out.decode(errors="replace").strip()
    if len(text) > STDERR_TAIL:
        text = "…" + text[-STDERR_TAIL:]
    return text or "(no output)"
