"""`hive-core list` as an operator runs it, against the bench's daemon, beside two floors:
`python -c pass` and a bare typer app with one command that prints a line."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.broker import BenchError
from bench.daemon import Daemon

BARE_TYPER_APP = '''\
import typer

app = typer.Typer()


@app.command()
def hello() -> None:
    """Print one line."""
    print("hello")


app()
'''
"""The least any typer CLI costs: typer imported, one command built, parsed and run."""


@dataclass(frozen=True)
class CliTimes:
    """Wall times in seconds, spawn to exit, one per round of each."""

    listed: list[float]
    """`hive-core list`."""
    python: list[float]
    """`python -c pass`."""
    typer: list[float]
    """The bare typer app."""


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


def _bare_typer(env: dict[str, str], script: Path) -> float:
    """One run of the bare typer app.

    Raises:
        BenchError: it did not print its line (typer missing or broken).
    """
    took, done = _wall([sys.executable, str(script)], env)
    if done.returncode != 0 or done.stdout != "hello\n":
        raise BenchError(f"the bare typer app failed ({done.returncode}): {done.stderr.strip()}")
    return took


def list_and_floors(daemon: Daemon, rounds: int) -> CliTimes:
    """`hive-core list`, `python -c pass` and the bare typer app, interleaved so drift hits
    all three; one warm-up round of each is dropped.

    Raises:
        BenchError: `list` failed or did not list the manager, or the typer app failed.
    """
    env, command = {**os.environ, "HIVE_RUN_DIR": str(daemon.run_dir)}, _command()
    times = CliTimes([], [], [])
    with tempfile.TemporaryDirectory(prefix="hb-typer") as tmp:
        script = Path(tmp) / "bare_typer.py"
        script.write_text(BARE_TYPER_APP, encoding="utf-8")
        for _ in range(rounds + 1):
            times.python.append(_wall([sys.executable, "-c", "pass"], env)[0])
            times.typer.append(_bare_typer(env, script))
            took, done = _wall(command, env)
            if done.returncode != 0 or "hm1nd" not in done.stdout:
                raise BenchError(
                    f"`hive-core list` failed ({done.returncode}): {done.stderr.strip()}"
                )
            times.listed.append(took)
    return CliTimes(times.listed[1:], times.python[1:], times.typer[1:])
