"""The approval queue: pending, show, approve, deny, and update (queues a rebuild of every
agent whose harness runs another hyperhive version)."""

import sys
from typing import Annotated

import typer

from hive_core import render
from hive_core.cli.common import (
    TAKES_NEGATIVE_NUMBERS,
    ApprovalId,
    AsJson,
    HeldBy,
    RunDir,
    call,
    cli_name,
    detail,
    emit_json,
    records,
    request,
)

app = typer.Typer()


@app.command("pending")
def pending(as_json: AsJson = False, run_dir: RunDir = None) -> None:
    """Approvals waiting for the operator."""
    approvals = call(run_dir, request(cmd="pending"), "approvals")["approvals"]
    if as_json:
        emit_json(approvals)
    else:
        print(render.approvals(records(approvals)))


@app.command("attention")
def attention(as_json: AsJson = False, run_dir: RunDir = None) -> None:
    """What needs the operator or signals trouble, most urgent first; exits 1 when the
    list is not empty (for scripts and monitoring), 0 when it is."""
    items = call(run_dir, request(cmd="attention"), "attention")["items"]
    if as_json:
        emit_json(items)
    else:
        print(render.attention(records(items)))
    if items:
        raise typer.Exit(1)


@app.command("update")
def update(run_dir: RunDir = None) -> None:
    """Queue a rebuild of every agent whose harness runs another hyperhive version."""
    got = call(run_dir, request(cmd="update"), "approval")["approval"]
    print(f"queued approval {got['id']}: update; `{cli_name()} approve {got['id']}` runs it")


@app.command("show", context_settings=TAKES_NEGATIVE_NUMBERS)
def show(
    id: ApprovalId, host: HeldBy = None, as_json: AsJson = False, run_dir: RunDir = None
) -> None:
    """One approval whole: a proposed config change with its diff."""
    got = call(run_dir, request(cmd="show_approval", id=id, host=host), "approval")["approval"]
    if as_json:
        emit_json(got)
    else:
        print(render.approval(records([got])[0], colour=sys.stdout.isatty()))


@app.command("approve", context_settings=TAKES_NEGATIVE_NUMBERS)
def approve(id: ApprovalId, host: HeldBy = None, run_dir: RunDir = None) -> None:
    """Approve a pending request and carry it out (on the host holding it)."""
    detail(run_dir, cmd="approve", id=id, host=host)


@app.command("deny", context_settings=TAKES_NEGATIVE_NUMBERS)
def deny(
    id: ApprovalId,
    reason: Annotated[
        str, typer.Option("--reason", help="Recorded with the denial.", show_default=False)
    ] = "",
    host: HeldBy = None,
    run_dir: RunDir = None,
) -> None:
    """Deny a pending request."""
    detail(run_dir, cmd="deny", id=id, reason=reason, host=host)
