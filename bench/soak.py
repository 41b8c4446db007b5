"""`python -m bench.soak [--agents N] [--minutes M] [--quick] [--out DIR]`: a hive of real
harnesses and real claude processes on a scripted fake API, under a paced load and faults,
watched through the dashboard; writes soak-report.json, soak-report.md and soak.png and
prints one PASS/FAIL line per target (docs/benchmarks.md, "Soak").

Exit status: 0 when every line passes, 1 when one fails, 2 when the run itself broke.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
from pathlib import Path

from bench import real_turn, suite
from bench.daemon import DaemonError
from bench.report import note
from bench.soak_hive import SoakError
from bench.soak_plot import plot
from bench.soak_report import checks, figures, write_json, write_markdown
from bench.soak_run import Config, Run
from hive_share.client import ClientError

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench" / "out" / "soak"
FULL = (40, 20.0)
QUICK = (8, 2.0)
DRAIN_BOUND = {True: 60.0, False: 180.0}
"""Seconds the drain may take, --quick and not."""


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--agents", type=int, help=f"agents to run (default {FULL[0]})")
    parser.add_argument("--minutes", type=float, help=f"minutes of load (default {FULL[1]:g})")
    quick = f"{QUICK[0]} agents for {QUICK[1]:g} minutes (about 3 minutes in all)"
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the report goes")
    parser.add_argument("--seed", type=int, help="the random seed (default: a fresh one)")
    parser.add_argument("--keep", action="store_true", help="keep the hive's temp dir")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    agents, minutes = QUICK if args.quick else FULL
    cfg = Config(
        agents=args.agents or agents,
        minutes=args.minutes or minutes,
        seed=args.seed if args.seed is not None else random.randrange(1 << 31),
        drain_bound=DRAIN_BOUND[args.quick],
    )
    claude = real_turn.claude_bin()
    if claude is None:
        note(f"no Claude Code CLI at ${real_turn.CLAUDE_BIN_ENV} or {real_turn.PINNED_CLAUDE} "
             "(./dev soak installs it)")  # fmt: skip
        return 2
    suite.compile_bytecode()
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="hs"))
    note(f"soak: {cfg.agents} agents, {cfg.minutes:g} minutes, seed {cfg.seed}, in {root}")
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("daemon*.log"):
        old.unlink()
    try:
        collected = asyncio.run(Run(cfg, root, claude).run())
    except (SoakError, DaemonError, ClientError, TimeoutError) as exc:
        note(f"soak failed: {type(exc).__name__}: {exc}; its files are kept in {root}")
        return 2
    finally:
        for log in root.glob("daemon*.log"):  # one per daemon: daemon-1.log before the restart
            shutil.copyfile(log, args.out / log.name)
    if args.keep:
        note(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    found = figures(collected)
    lines = checks(found)
    write_json(args.out / "soak-report.json", found, lines)
    write_markdown(args.out / "soak-report.md", found, lines)
    plot(collected, args.out / "soak.png")
    for line in lines:
        print(line.line(), flush=True)
    note(f"report in {args.out}")
    return 0 if all(c.ok for c in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
