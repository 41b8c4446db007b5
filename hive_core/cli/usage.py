"""What the agents' turns cost: `usage`, per agent over the budget windows."""

from typing import Annotated

import click
import typer

from hive_core import render
from hive_core.cli.common import AsJson, RunDir, agent_name, call, emit_json, records, request

app = typer.Typer()

Window = Annotated[
    str | None,
    typer.Option(
        "--window",
        metavar="[5h|7d]",
        help="Only this window (default: both).",
        click_type=click.Choice(["5h", "7d"]),
        show_default=False,
    ),
]


@app.command("usage")
def usage(
    agent: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Only this agent.", show_default=False)
    ] = None,
    window: Window = None,
    as_json: AsJson = False,
    run_dir: RunDir = None,
) -> None:
    """Tokens and dollars each agent spent over the last 5 hours and 7 days, against its
    budget; without NAME, every agent and the hive's total (`*`)."""
    req = request(cmd="usage", agent=agent_name(agent) if agent else None, window=window)
    rows = call(run_dir, req, "usage")["usage"]
    if as_json:
        emit_json(rows)
    else:
        print(render.usage(records(rows)))
