"""Agents' lifecycle: spawn, request-spawn, start, stop, kill, restart, rebuild, destroy,
list, hosts, nats-permissions, and login-link (a one-time link to the dashboard or an
agent's page)."""

from pathlib import Path
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
    fail,
    fit,
    records,
    request,
    terminal_width,
)

app = typer.Typer()

OnHost = Annotated[
    str | None,
    typer.Option(
        "--host",
        metavar="HOST",
        help="On this host of the hive (default: the one with the most free places).",
        show_default=False,
    ),
]


@app.command("spawn")
def spawn(name: Agent, host: OnHost = None, run_dir: RunDir = None) -> None:
    """Create and start an agent now (the operator needs no approval)."""
    if host is None:
        detail(run_dir, cmd="spawn", name=agent_name(name))
    else:
        detail(run_dir, cmd="spawn", name=agent_name(name), host=host)


@app.command("request-spawn")
def request_spawn(name: Agent, host: OnHost = None, run_dir: RunDir = None) -> None:
    """Queue a spawn for approval (as the manager would); in a hive across hosts the
    approval is that host's."""
    req = request(cmd="request_spawn", name=agent_name(name), host=host)
    approval = call(run_dir, req, "approval")["approval"]
    where = f" on host {approval['host']}" if approval.get("host") else ""
    print(f"queued approval {approval['id']}{where}: spawn {approval['agent']}")


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
    host: Annotated[
        str | None,
        typer.Option(
            "--host", metavar="HOST", help="Only the agents of this host.", show_default=False
        ),
    ] = None,
    run_dir: RunDir = None,
) -> None:
    """Agents and tombstones (and, when the hive spans hosts, every host's agents), fitted
    to the terminal's width."""
    agents = call(run_dir, request(cmd="list"), "agents")["agents"]
    spans_hosts = any(a.get("host") for a in agents)
    if host is not None:
        if not spans_hosts and agents:
            fail("--host: this hive runs on one host (hive-core has no HIVE_NATS_URL)")
        agents = [a for a in agents if a.get("host") == host]
    if as_json:
        emit_json(agents)
        return
    if not agents:
        print("no agents" if host is None else f"no agents on host {host}")
        return
    cells = render.agent_cells(records(agents), hosts=spans_hosts)
    width = None if wide else terminal_width()
    headers, rows = fit(render.agent_columns(spans_hosts), cells, width, LIST_FIT)
    print(render.table(headers, rows))


@app.command("hosts")
def hosts(as_json: AsJson = False, run_dir: RunDir = None) -> None:
    """The hive's hosts: this one with its NATS link and forwarding counts, and every other
    one it heard from, with the time since its last heartbeat."""
    answer = call(run_dir, request(cmd="hosts"), "hosts")
    if as_json:
        emit_json(answer)
        return
    if not answer["federated"]:
        print("this hive runs on one host (hive-core has no HIVE_NATS_URL)")
        return
    print(render.hosts(records(answer["hosts"])))


@app.command("login-link")
def login_link(
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="That agent's page.", show_default=False)
    ] = None,
    run_dir: RunDir = None,
) -> None:
    """Print a one-time login link (valid for 10 minutes): the dashboard's, or NAME's page."""
    detail(run_dir, cmd="login_link", name=agent_name(name) if name is not None else None)


@app.command("nats-nkey")
def nats_nkey(
    seed_file: Annotated[
        Path,
        typer.Argument(
            help="The seed file: read when it exists, else made (0600).", show_default=False
        ),
    ],
) -> None:
    """Print the public key of a NATS user's NKey seed file, making a new seed there first
    when there is no such file: the key goes in the server's `users` (`nkey: U…`), the file
    in HIVE_NATS_NKEY_SEED (docs/multihost.md)."""
    from hive_core.federation.nkey import public_key

    try:
        print(public_key(seed_file))
    except (OSError, ValueError) as exc:
        fail(f"{seed_file}: {exc}")


@app.command("nats-permissions")
def nats_permissions(
    hive: Annotated[
        str, typer.Option("--hive", envvar="HIVE_HIVE_ID", help="The hive's id.")
    ] = "hive",
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            envvar="HIVE_HOST_ID",
            help="The host's id (default: this machine's short host name).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Print the NATS permissions a host's user needs, and no more (docs/multihost.md), as
    the `permissions` block of a nats-server user."""
    import json

    from hive_core.federation.names import permissions
    from hive_core.settings import FEDERATION_ID, default_host_id

    host = host or default_host_id()
    for what, value in (("--hive", hive), ("--host", host)):
        if not FEDERATION_ID.fullmatch(value):
            fail(f"{what}: {value[:40]!r} is not 1-32 of a-z, 0-9 and '-'")
    publish, subscribe = permissions(hive, host)
    block = {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}
    print(json.dumps({**block, "allow_responses": True}))  # answers to the other hosts
