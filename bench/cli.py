"""`hive-core list` as an operator runs it, against the bench's daemon, and `python -c pass`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.broker import BenchError
from bench.daemon import Daemon


def _command() -> list[str]:
    """The installed `hive-core` script next to this interpreter, else `python -m hive_core`."""
    script = Path(sys.executable).parent / "hive-core"
    if script.exists():
        return [str(script), "list"]
    return [sys.executable, "-m", "hive_core", "list"]


def _wall(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    return time.perf_counter() - started, done


def list_and_floor(daemon: Daemon, rounds: int) -> tuple[list[float], list[float]]:
    """Wall times, spawn to exit, of `hive-core list` and of `python -c pass`, interleaved so
    drift hits both; one warm-up round of each is dropped.

    Raises:
        BenchError: `list` failed or did not list the manager.
    """
    env, command = {**os.environ, "HIVE_RUN_DIR": str(daemon.run_dir)}, _command()
    listed: list[float] = []
    floor: list[float] = []
    for _ in range(rounds + 1):
        floor.append(_wall([sys.executable, "-c", "pass"], env)[0])
        took, done = _wall(command, env)
        if done.returncode != 0 or "hm1nd" not in done.stdout:
            raise BenchError(f"`hive-core list` failed ({done.returncode}): {done.stderr.strip()}")
        listed.append(took)
    return listed[1:], floor[1:]
