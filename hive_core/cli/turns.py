"""Turn controls, each relayed by hive-core to an agent's harness: cancel, new-session,
compact, model, logs (its turns, or its harness log) and login (its Claude Code login)."""

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hive_core import render
from hive_core.cli.common import (
    Agent,
    AsJson,
    RunDir,
    agent_name,
    call,
    cli_name,
    detail,
    fail,
    request,
)

MODEL_CHOICES = ("opus", "sonnet", "haiku")
FOLLOW_WAIT = 8.0
"""Seconds each long-poll of `logs -f` and `login` waits on the harness."""
RAW_FOLLOW_INTERVAL = 0.5

app = typer.Typer()


def relay(run_dir: Path | None, name: str, **control: Any) -> None:
    """Hand one control to agent `name`'s harness and print its `done` line."""
    detail(run_dir, cmd="relay", name=agent_name(name), request=control)


@app.command("cancel")
def cancel(name: Agent, run_dir: RunDir = None) -> None:
    """Cancel an agent's running turn: messages its model already received count as handled
    (its next turn is told), messages it never received stay queued for a later turn."""
    relay(run_dir, name, cmd="cancel")


@app.command("new-session")
def new_session(name: Agent, run_dir: RunDir = None) -> None:
    """Start the agent's next turn in a fresh claude session (no --continue)."""
    relay(run_dir, name, cmd="new_session")


@app.command("compact")
def compact(name: Agent, run_dir: RunDir = None) -> None:
    """Compact the agent's session before its next turn."""
    relay(run_dir, name, cmd="compact")


@app.command("model")
def model(
    name: Agent,
    model: Annotated[
        str | None,
        typer.Argument(metavar="MODEL", help="The model to switch to.", show_default=False),
    ] = None,
    run_dir: RunDir = None,
) -> None:
    """Switch the agent's model from its next turn on; without MODEL, show it and the choices."""
    if model is not None:
        relay(run_dir, name, cmd="set_model", model=model)
        return
    name = agent_name(name)
    agents = call(run_dir, request(cmd="list"), "agents")["agents"]
    row = next((a for a in agents if a["name"] == name), None)
    if row is None or row["state"] in ("tombstone", "prepared"):
        fail(f"no agent named {name!r}; `{cli_name()} list` shows who exists")
    current = row.get("model") or "not reported yet (it reports when it starts)"
    print(f"{name}: {render.clean(current)}")
    print(f"choices: {', '.join(MODEL_CHOICES)}, or a full model id (claude-sonnet-4-5, …)")


@app.command("logs")
def logs(
    name: Agent,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new ones.")] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", metavar="N", help="How many of the newest first.")
    ] = 50,
    raw: Annotated[bool, typer.Option("--raw", help="Its harness log instead.")] = False,
    as_json: AsJson = False,
    run_dir: RunDir = None,
) -> None:
    """An agent's turns as they happened (-f: as they happen); --raw: its harness log."""
    name = agent_name(name)
    if raw:
        _raw_log(run_dir, name, lines, follow)
        return
    if not 1 <= lines <= 1000:
        fail(f"bad value for --lines: {lines} (1 to 1000)")
    after, limit, waiting = 0, lines, False
    while True:
        control: dict[str, Any] = {"cmd": "events", "after": after, "limit": limit}
        if waiting:
            control["wait_seconds"] = FOLLOW_WAIT
        req = request(cmd="relay", name=name, request=control)
        events = call(run_dir, req, "events")["events"]
        for row in events:
            print(json.dumps(row) if as_json else render.turn_event(row), flush=True)
        if events:
            after = events[-1]["seq"]  # 0 stays "none seen": the next answer is all new
        if not follow:
            return
        limit, waiting = 1000, True


def _raw_log(run_dir: Path | None, name: str, lines: int, follow: bool) -> None:
    got = call(run_dir, request(cmd="harness_log", name=name, lines=lines), "log")
    for line in got["lines"]:
        print(render.clean(line), flush=True)
    while follow:
        time.sleep(RAW_FOLLOW_INTERVAL)  # a file has no long-poll: check it twice a second
        req = request(cmd="harness_log", name=name, offset=got["offset"])
        got = call(run_dir, req, "log")
        for line in got["lines"]:
            print(render.clean(line), flush=True)


@app.command("login")
def login(name: Agent, run_dir: RunDir = None) -> None:
    """Log the agent's Claude Code in: its `claude auth login`, relayed to this terminal."""
    name = agent_name(name)
    relay(run_dir, name, cmd="login_start")
    try:
        _follow_login(run_dir, name)
    except KeyboardInterrupt:
        relay(run_dir, name, cmd="login_cancel")
        raise


def _follow_login(run_dir: Path | None, name: str) -> None:
    """Print the login's output as it comes, hand it the code when it asks, and end when
    the CLI's login ends: logged in, or the command fails."""
    offset, asked = 0, False
    while True:
        control = {"cmd": "login_status", "after": offset, "wait_seconds": FOLLOW_WAIT}
        got = call(run_dir, request(cmd="relay", name=name, request=control), "login")
        if got["output"]:
            shown = "\n".join(render.clean(part) for part in got["output"].split("\n"))
            print(shown, end="", flush=True)
        offset = got["offset"]
        if got["state"] != "running":
            print()
            if got["state"] != "logged_in":
                fail(f"{name} is not logged in: the login {got['state']}")
            print(f"{name} is logged in")
            return
        if got["waiting_for_code"] and not asked:
            asked = True
            relay(run_dir, name, cmd="login_code", code=_read_code())


def _read_code() -> str:
    print()
    code = sys.stdin.readline().strip()
    if not code:
        fail("no code given; run the login again")
    return code
