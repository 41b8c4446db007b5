"""Entry points of `hive-agent` and `hive-mind`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from pydantic import ValidationError

from hive_agent.settings import HarnessSettings

STDOUT_CLOSED = 141
"""The exit status when stdout closes before all is shown (`hive-agent --help | head -1`):
the shell's for a command ended by SIGPIPE (128 + 13), but without the traceback."""


def run(role: str, argv: list[str]) -> int:
    try:
        try:
            return _run(role, argv)
        finally:  # on --help's SystemExit too: what is still buffered fails here, not at exit
            sys.stdout.flush()
    except BrokenPipeError:
        # stdout becomes /dev/null, so the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return STDOUT_CLOSED


def _run(role: str, argv: list[str]) -> int:
    prog = "hive-mind" if role == "manager" else "hive-agent"
    parser = argparse.ArgumentParser(prog=prog, description=f"The hyperhive {role} harness.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="Run the harness (started by hive-core's container backend).")
    sub.add_parser("mcp", help="The stdio MCP endpoint claude launches (relays to the harness).")
    args = parser.parse_args(argv)
    if args.command == "mcp":
        from hive_agent.relay import main as relay_main

        return relay_main()
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
        asyncio.run(serve(settings, dict(os.environ)))
        # Everything is closed by now. Skip the interpreter's teardown of every loaded module
        # (the web stack's included): with many agents stopping at once on a small machine
        # it costs more than the stop itself.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def agent_main() -> None:
    if sys.argv[1:2] == ["mcp"]:  # skip argparse and pydantic on claude's per-turn path
        from hive_agent.relay import main as relay_main

        sys.exit(relay_main())
    sys.exit(run("agent", sys.argv[1:]))


def mind_main() -> None:
    if sys.argv[1:2] == ["mcp"]:
        from hive_agent.relay import main as relay_main

        sys.exit(relay_main())
    sys.exit(run("manager", sys.argv[1:]))
