"""What every client command shares: the error that ends a command, the request checked
against the wire schema, one call on the admin socket, and the parameters most commands take.

Standard library, typer and click only: the socket is `hive_share.blocking`'s and the
check `hive_share.schema`'s, so a client command never imports pydantic or asyncio.
"""

import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, NoReturn

import click
import typer

from hive_core.run_dir import client_run_dir, host_socket
from hive_share import blocking, schema
from hive_share.names import InvalidName, validate_agent_name

PROG = "hive-core"


class CliError(Exception):
    """Ends the command with `hive-core: <message>` on stderr and exit `status`."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def fail(message: str) -> NoReturn:
    raise CliError(message)


def cli_name() -> str:
    """How to name the CLI in hints: `./dev` sets HIVE_CLI_NAME (docs/settings.md)."""
    return os.environ.get("HIVE_CLI_NAME") or PROG


def agent_name(name: str) -> str:
    """`name` if it is a valid agent name; else the command fails with the validator's
    message before anything is sent."""
    try:
        return validate_agent_name(name)
    except InvalidName as exc:
        fail(str(exc))


def labels() -> dict[str, str]:
    """How an error names each parameter of the running command, by its Python name (which
    is its wire field's): an option by its longest flag, an argument by its metavar."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return {}
    found: dict[str, str] = {}
    for param in ctx.command.params:
        if isinstance(param, click.Option):
            found[param.name] = max(param.opts, key=len)
        else:
            found[param.name] = param.human_readable_name
    return found


def request(**fields: Any) -> dict[str, Any]:
    """A host-socket request from command-line values, checked against the wire schema;
    a bad value is reported under the option (or argument) it came from."""
    given = {k: v for k, v in fields.items() if v is not None}
    try:
        checked: dict[str, Any] = schema.check("host_request", given)
    except schema.SchemaError as exc:
        field = str(exc.path[0]) if exc.path else "request"
        fail(f"{labels().get(field, field)}: {exc.message}")
    return checked


def call(
    run_dir: Path | None, req: dict[str, Any], expect: str, attempts: int = 1
) -> dict[str, Any]:
    """Send `req` on `host.sock`; a dropped connection is retried up to `attempts` times."""
    path = host_socket(client_run_dir(run_dir))
    for attempt in range(attempts):
        try:
            return blocking.call(path, req, expect)
        except blocking.NotRunning as exc:
            fail(f"hive-core is not running ({exc}); start it with `{cli_name()} serve`")
        except blocking.RemoteError as exc:
            fail(f"{exc.message} [{exc.code}]")
        except blocking.ConnectionLost as exc:
            if attempt + 1 == attempts:
                fail(str(exc))
            time.sleep(min(0.2 * 2**attempt, 2.0))
        except blocking.ClientError as exc:
            fail(str(exc))
    raise AssertionError("unreachable: the last attempt fails or returns")


def detail(run_dir: Path | None, **fields: Any) -> None:
    """One request whose answer is a `done` line, printed."""
    print(call(run_dir, request(**fields), "done")["detail"])


def records(items: list[dict[str, Any]]) -> list[Any]:
    """Checked wire records as attribute namespaces: what `render` reads (`r.name`)."""
    return [SimpleNamespace(**item) for item in items]


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=True))


def terminal_width() -> int | None:
    """The columns a table must fit: `$COLUMNS` when set, else the terminal's when stdout is
    one; None (no limit) when it goes to a pipe or a file."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


GAP = 2
"""Spaces between two columns (render.table's)."""


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def fit(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int | None,
    steps: Sequence[tuple[str, int | None]],
) -> tuple[list[str], list[list[str]]]:
    """A table cut to `width` columns (None: as it is). Each step, in order, while it is
    too wide: `(column, n)` cuts that column's cells (with `…`) to no less than `n`
    characters (nor its header's), `(column, None)` leaves the column out; room left over
    then goes back to the cut columns, the first step's first. Columns no step names are
    never touched."""
    keep = list(headers)
    widths = {h: max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)}

    def total() -> int:
        return sum(widths[h] for h in keep) + GAP * (len(keep) - 1)

    natural = dict(widths)
    for column, least in steps:
        over = total() - width if width is not None else 0
        if over <= 0:
            break
        if column not in keep:
            continue
        if least is None:
            keep.remove(column)
        else:
            floor = max(least, len(column))
            widths[column] = min(widths[column], max(floor, widths[column] - over))
    for column, _ in steps:  # room a column left out made goes back to the cut ones
        spare = width - total() if width is not None else 0
        if spare > 0 and column in keep:
            widths[column] = min(natural[column], widths[column] + spare)
    at = [headers.index(h) for h in keep]
    return keep, [[cut(row[i], widths[headers[i]]) for i in at] for row in rows]


# -- parameters most commands share ----------------------------------------------------------

RunDir = Annotated[
    Path | None,
    typer.Option(
        "--run-dir",
        metavar="PATH",
        help="Socket directory of the daemon (env HIVE_RUN_DIR).",
        show_default=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
Agent = Annotated[str, typer.Argument(metavar="NAME", help="Agent name.", show_default=False)]
ApprovalId = Annotated[int, typer.Argument(metavar="ID", help="Approval id.", show_default=False)]
QuestionId = Annotated[int, typer.Argument(metavar="ID", help="Question id.", show_default=False)]
HeldBy = Annotated[
    str | None,
    typer.Option(
        "--host",
        metavar="HOST",
        help="The host holding it, in a hive across hosts (the HOST column of `pending` and "
        "`questions`); it is decided there.",
        show_default=False,
    ),
]

TAKES_NEGATIVE_NUMBERS = {"ignore_unknown_options": True}
"""Context settings of a command with an ID argument: `-3` is that ID (refused by the
schema, naming ID), not an unknown option."""
