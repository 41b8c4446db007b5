"""The `hive-core` typer app: its commands gathered from the modules beside this one, the
top-level options, and `main`, which runs one command with the CLI's exit statuses and
error lines.

Only the command that runs is turned into a click command (typer reads each command's
signature and builds its parameters, a cost every command would otherwise pay on every
run); `--help`, completion and a wrong command build them all.
"""

import os
import subprocess
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Annotated

import click
import typer
import typer.main
from typer._completion_classes import completion_init
from typer._completion_shared import Shells, _get_shell_name, get_completion_script, install
from typer.models import CommandInfo

from hive_core import __version__, render
from hive_core.cli.common import PROG, CliError, fail

COMMAND_MODULES = ("service", "lifecycle", "approvals", "messages", "turns", "usage", "notify")
"""The modules under `hive_core.cli` whose typer apps hold the commands, in help order."""
COMPLETE_VAR = "_HIVE_CORE_COMPLETE"
"""Set by the completion scripts when a tab press asks `hive-core` for candidates."""
SHELLS = tuple(shell.value for shell in Shells)
STDOUT_CLOSED = 141
"""The exit status when stdout closes before all is shown (`hive-core show 1 | head -1`):
the shell's for a command ended by SIGPIPE (128 + 13), but without the traceback."""
USAGE = 2


def _version(value: bool) -> None:
    if value:
        print(f"{PROG} {__version__}")
        raise typer.Exit()


def _top(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run and steer a hive of Claude Code agents."""


def commands() -> dict[str, CommandInfo]:
    """Every command's typer registration, by command name."""
    found: dict[str, CommandInfo] = {}
    for module in COMMAND_MODULES:
        app: typer.Typer = import_module(f"hive_core.cli.{module}").app
        found.update((info.name, info) for info in app.registered_commands if info.name)
    return found


def build(only: str | None = None) -> click.Group:
    """The click group typer makes of the app: every command, or with `only` that one."""
    root = typer.Typer(
        name=PROG,
        add_completion=False,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
    )
    root.callback()(_top)
    root.registered_commands = [
        info for name, info in commands().items() if only is None or name == only
    ]
    group = typer.main.get_command(root)
    assert isinstance(group, click.Group)  # a callback makes it a group
    group.params.extend(_completion_options())
    return group


# -- shell completion: typer's scripts and its tab-press handler ------------------------------


def _completion_options() -> list[click.Option]:
    """`--show-completion [SHELL]` and `--install-completion [SHELL]`: typer's own two, but
    taking the shell by name as well (without one, the shell this runs in)."""
    names = ", ".join(SHELLS)
    return [
        click.Option(
            [flag],
            metavar="[SHELL]",
            is_flag=False,
            flag_value="",
            expose_value=False,
            is_eager=True,
            callback=callback,
            shell_complete=lambda ctx, param, word: [s for s in SHELLS if s.startswith(word)],
            help=f"{verb} the completion script for SHELL ({names}; default: this shell).",
        )
        for flag, callback, verb in (
            ("--show-completion", _show_completion, "Print"),
            ("--install-completion", _install_completion, "Install"),
        )
    ]


def _shell(named: str) -> str:
    """The shell named, else the one this runs in (typer's detection), else `$SHELL`'s."""
    known = ", ".join(SHELLS)
    if named:
        if named not in SHELLS:
            fail(f"no completion for {named!r}; name one of {known}")
        return named
    detected = _get_shell_name()
    from_env = os.path.basename(os.environ.get("SHELL", ""))
    for shell in (detected, from_env):
        if shell in SHELLS:
            return shell
    told = f"detected: {detected or 'none'}, SHELL={from_env or '(unset)'}"
    fail(f"cannot tell the shell ({told}); name one of {known}")


def _show_completion(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    print(get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=_shell(value)))
    raise typer.Exit()


def _install_completion(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None or ctx.resilient_parsing:
        return
    shell = _shell(value)
    try:
        shell, path = install(shell=shell, prog_name=PROG, complete_var=COMPLETE_VAR)
    except (OSError, subprocess.SubprocessError) as exc:  # powershell runs the shell itself
        fail(f"cannot install the {shell} completion: {exc}")
    print(f"{shell} completion installed in {path}; it takes effect in a new shell")
    raise typer.Exit()


def _complete() -> int:
    """Answer a tab press: typer's completion for the shell `COMPLETE_VAR` names, from the
    words its script passes in the environment."""
    completion_init()
    try:
        build().main([], prog_name=PROG, complete_var=COMPLETE_VAR)
    except SystemExit as done:  # typer's main always exits when asked to complete
        return done.code if isinstance(done.code, int) else 1


# -- running a command ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 done, 1 refused or failed, 2 usage,
    130 interrupted, 141 stdout closed early)."""
    try:
        status = _run(sys.argv[1:] if argv is None else list(argv))
        sys.stdout.flush()  # what is still buffered fails here, not at the interpreter's exit
    except BrokenPipeError:
        return _stdout_closed()
    return status


def _stdout_closed() -> int:
    """Nothing more can be shown: stdout becomes /dev/null, so the interpreter's last flush
    of what is still buffered does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return STDOUT_CLOSED


def _only(args: list[str]) -> str | None:
    """The command `args` name first, when there is one: the only one to build."""
    first = args[0] if args and not args[0].startswith("-") else None
    return first if first in commands() else None


def _run(args: list[str]) -> int:
    if os.environ.get(COMPLETE_VAR):
        return _complete()
    group = build(_only(args))
    try:
        with group.make_context(PROG, args) as ctx:
            group.invoke(ctx)
    except click.exceptions.Exit as done:  # --help, --version, completion scripts
        return done.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        print(exc.format_message(), file=sys.stderr)
        return USAGE
    except click.UsageError as exc:
        _usage_error(exc)
        return USAGE
    except click.ClickException as exc:
        _error(exc.format_message())
        return exc.exit_code
    except CliError as exc:
        _error(exc.message)
        return exc.status
    except KeyboardInterrupt:
        return 130
    return 0


def _error(message: str) -> None:
    print(f"{PROG}: {render.clean(message)}", file=sys.stderr)


def _usage_error(exc: click.UsageError) -> None:
    """The command's usage line, where to find its help, then the error naming what was
    wrong (an option, an argument, a command)."""
    if exc.ctx is not None:
        print(exc.ctx.get_usage(), file=sys.stderr)
        print(f"Try '{exc.ctx.command_path} --help' for help.", file=sys.stderr)
    _error(exc.format_message())
