"""`python -m bench [multihost] [--quick]`: print one line per benchmark, then a `PASS:` or
`FAIL:` line per goal; exits 1 when a goal was missed (see docs/benchmarks.md). `multihost`
runs only the lines of a hive across hosts (`bench/multihost.py`)."""

from __future__ import annotations

import argparse
import sys

from bench import report, suite
from bench.broker import PHASE_TIMEOUT, BenchError
from bench.daemon import DaemonError
from hive_share.client import ClientError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "what",
        nargs="?",
        choices=["all", "multihost"],
        default="all",
        help="every line (default), or only the multihost lines",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller counts and a shorter idle window (about a minute in all)",
    )
    args = parser.parse_args(argv)
    try:
        if args.what == "multihost":
            from bench import multihost

            multihost.run(multihost.QUICK if args.quick else multihost.FULL)
        else:
            suite.run(suite.QUICK if args.quick else suite.FULL)
    except TimeoutError:
        report.note(f"failed: a phase took longer than {PHASE_TIMEOUT:.0f}s")
        return 1
    except (BenchError, DaemonError, ClientError) as exc:
        report.note(f"failed: {type(exc).__name__}: {exc}")
        return 1
    return 0 if report.verdicts() else 1


if __name__ == "__main__":
    sys.exit(main())
