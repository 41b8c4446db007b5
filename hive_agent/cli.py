"""Entry points of `hive-agent` and `hive-mind`: one typer app each, with `serve` and `mcp`.

`mcp` is what claude starts on every turn, so its path skips typer altogether
(`agent_main`, `mind_main`, and `python -m hive_agent`); the app, and pydantic and
asyncio with the harness, are imported only for the commands that need them. A bare
`serve` (how every backend starts a harness) skips typer too: the harness would keep
typer and click in memory for its whole life only to read one word.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click

PROGS = {"agent": "hive-agent", "manager": "hive-mind"}
USAGE = 2
STDOUT_CLOSED = 141
"""The exit status when stdout closes before all is shown (`hive-agent --help | head -1`):
the shell's for a command ended by SIGPIPE (128 + 13), but without the traceback."""


def run(role: str, argv: Sequence[str]) -> int:
    """Run one command of the `role` ("agent" or "manager") harness; returns the exit
    status (0 done, 2 usage error or bad setting, 141 stdout closed early)."""
    try:
        try:
            return _run(role, list(argv))
        finally:  # on --help too: what is still buffered fails here, not at exit
            sys.stdout.flush()
    except BrokenPipeError:
        # stdout becomes /dev/null, so the interpreter's last flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return STDOUT_CLOSED


def build(role: str) -> click.Group:
    """The click group typer makes of the `role` harness's app."""
    import click
    import typer
    import typer.main

    prog = PROGS[role]
    app = typer.Typer(
        name=prog,
        help=f"The hyperhive {role} harness.",
        add_completion=False,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )

    @app.command("serve")
    def serve() -> None:
        """Run the harness (started by hive-core's container backend)."""
        raise typer.Exit(_serve(prog))

    @app.command("mcp")
    def mcp() -> None:
        """The stdio MCP endpoint claude launches (relays to the harness)."""
        from hive_agent.relay import main as relay_main

        raise typer.Exit(relay_main())

    group = typer.main.get_command(app)
    assert isinstance(group, click.Group)
    return group


def _run(role: str, args: list[str]) -> int:
    prog = PROGS[role]
    if args == ["serve"]:  # what the backends run; `serve --help` and the rest take typer
        return _serve(prog)
    import click

    group = build(role)
    try:
        with group.make_context(prog, args) as ctx:
            group.invoke(ctx)
    except click.exceptions.Exit as done:  # --help, and each command's status
        return done.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        print(exc.format_message(), file=sys.stderr)
        return USAGE
    except click.UsageError as exc:
        if exc.ctx is not None:
            print(exc.ctx.get_usage(), file=sys.stderr)
            print(f"Try '{exc.ctx.command_path} --help' for help.", file=sys.stderr)
        print(f"{prog}: {exc.format_message()}", file=sys.stderr)
        return USAGE
    return 0


def _serve(prog: str) -> int:
    """The harness until SIGTERM: settings from the environment (a bad one is status 2),
    then the event loop (anyio on its asyncio backend); never returns when it ran."""
    import logging

    import anyio
    from pydantic import ValidationError

    from hive_agent.settings import HarnessSettings

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
        return USAGE
    from hive_agent.serve import die_with_parent, serve
    from hive_share.blocking import NotRunning

    if settings.parent_pid is not None:
        die_with_parent(settings.parent_pid)
    if settings.nice:
        os.nice(settings.nice)  # claude inherits it: turn work yields to hive-core
    try:
        anyio.run(serve, settings, dict(os.environ), backend="asyncio")
    except BaseExceptionGroup as group:  # hive-core never answered: say so, no traceback
        unreachable, rest = group.split(NotRunning)
        if unreachable is None or rest is not None:
            raise
        print(f"{prog}: {unreachable.exceptions[0]}", file=sys.stderr)
        return 1
    # Everything is closed by now. Skip the interpreter's teardown of every loaded module
    # (the web stack's included): with many agents stopping at once on a small machine
    # it costs more than the stop itself.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _relay_if_mcp() -> None:
    """`mcp` runs the standard-library relay at once: no typer, no pydantic."""
    if sys.argv[1:2] == ["mcp"]:
        from hive_agent.relay import main as relay_main

        sys.exit(relay_main())


def agent_main() -> None:
    _relay_if_mcp()
    sys.exit(run("agent", sys.argv[1:]))


def mind_main() -> None:
    _relay_if_mcp()
    sys.exit(run("manager", sys.argv[1:]))
