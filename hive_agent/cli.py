"""Entry points of `hive-agent` and `hive-mind`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pydantic import ValidationError

from hive_agent.settings import HarnessSettings


def run(role: str, argv: list[str]) -> int:
    prog = "hive-mind" if role == "manager" else "hive-agent"
    parser = argparse.ArgumentParser(prog=prog, description=f"The hyperhive {role} harness.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="Run the harness (started by hive-core's container backend).")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s {prog}: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = HarnessSettings()
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        print(
            f"{prog}: bad setting HIVE_{str(err['loc'][0]).upper()}: {err['msg']}", file=sys.stderr
        )
        return 2
    if args.command == "serve":
        from hive_agent.serve import die_with_parent, serve

        if settings.parent_pid is not None:
            die_with_parent(settings.parent_pid)
        asyncio.run(serve(settings))
    return 0


def agent_main() -> None:
    sys.exit(run("agent", sys.argv[1:]))


def mind_main() -> None:
    sys.exit(run("manager", sys.argv[1:]))
