"""Agents' lifecycle: spawn, request-spawn, start, stop, kill, restart, rebuild, destroy,
list, and login-link (a one-time link to the dashboard or an agent's page)."""

from typing import Annotated

import typer

from hive_core import render
from hive_core.cli.common import (
    Agent,
    AsJson,
    RunDir,
    agent_name,
    call,
    detail,
    emit_json,
    fit,
    records,
    request,
    terminal_width,
)

app = typer.Typer()


@app.command("spawn")
def spawn(name: Agent, run_dir: RunDir = None) -> None:
    """Create and start an agent now (the operator needs no approval)."""
    detail(run_dir, cmd="spawn", name=agent_name(name))


@app.command("request-spawn")
def request_spawn(name: Agent, run_dir: RunDir = None) -> None:
    """Queue a spawn for approval (as the manager would)."""
    req = request(cmd="request_spawn", name=agent_name(name))
    approval = call(run_dir, req, "approval")["approval"]
    print(f"queued approval {approval['id']}: spawn {approval['agent']}")


@app.command("start")
def start(name: Agent, run_dir: RunDir = None) -> None:
    """Start a stopped agent."""
    detail(run_dir, cmd="start", name=agent_name(name))


@app.command("stop")
def stop(name: Agent, run_dir: RunDir = None) -> None:
    """Stop an agent gracefully (SIGTERM, then SIGKILL after 10 s)."""
    detail(run_dir, cmd="stop", name=agent_name(name))


@app.command("kill")
def kill(name: Agent, run_dir: RunDir = None) -> None:
    """Stop an agent at once."""
    detail(run_dir, cmd="kill", name=agent_name(name))


@app.command("restart")
def restart(name: Agent, run_dir: RunDir = None) -> None:
    """Stop and start an agent."""
    detail(run_dir, cmd="restart", name=agent_name(name))


@app.command("rebuild")
def rebuild(name: Agent, run_dir: RunDir = None) -> None:
    """Re-apply an agent's deployed config and restart it."""
    detail(run_dir, cmd="rebuild", name=agent_name(name))


@app.command("destroy")
def destroy(
    name: Agent,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete its state.")] = False,
    run_dir: RunDir = None,
) -> None:
    """Stop and remove an agent, keeping its state as a tombstone unless --purge."""
    detail(run_dir, cmd="destroy", name=agent_name(name), purge=purge)


LIST_FIT: list[tuple[str, int | None]] = [
    ("STATUS", 32), ("DEPLOYED", None), ("WEB PORT", None), ("PID", None), ("ROLE", None),
    ("MODEL", 14), ("STATUS", 16), ("LOGIN", 12), ("HARNESS", 13), ("UPTIME", None),
    ("MODEL", None), ("LOGIN", None), ("STATUS", 8),
]  # fmt: skip
"""How `list` fits the terminal, step by step until it does: the status cut to 32
characters, then the columns a glance needs least left out, then the rest cut or left out;
NAME, STATE, TURN and HARNESS always stay."""


@app.command("list")
def list_(
    as_json: AsJson = False,
    wide: Annotated[
        bool, typer.Option("--wide", help="Every column, nothing cut, however wide.")
    ] = False,
    run_dir: RunDir = None,
) -> None:
    """Agents and tombstones, fitted to the terminal's width."""
    agents = call(run_dir, request(cmd="list"), "agents")["agents"]
    if as_json:
        emit_json(agents)
        return
    if not agents:
        print("no agents")
        return
    cells = render.agent_cells(records(agents))
    width = None if wide else terminal_width()
    headers, rows = fit(render.AGENT_COLUMNS, cells, width, LIST_FIT)
    print(render.table(headers, rows))


@app.command("login-link")
def login_link(
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="That agent's page.", show_default=False)
    ] = None,
    run_dir: RunDir = None,
) -> None:
    """Print a one-time login link (valid for 10 minutes): the dashboard's, or NAME's page."""
    detail(run_dir, cmd="login_link", name=agent_name(name) if name is not None else None)
