"""Notifications: `notify status` (each URL, masked, with its last success and failure) and
`notify test` (a test message to every URL now)."""

from typing import Annotated

import click
import typer

from hive_core import render
from hive_core.cli.common import AsJson, CliError, RunDir, call, emit_json, records, request

app = typer.Typer()


@app.command("notify")
def notify(
    action: Annotated[
        str,
        typer.Argument(
            metavar="status|test",
            help="status: each URL and how its deliveries went; test: send a test to each.",
            click_type=click.Choice(["status", "test"]),
        ),
    ],
    as_json: AsJson = False,
    run_dir: RunDir = None,
) -> None:
    """Where the attention list is sent (HIVE_NOTIFY_URLS): `status` shows each URL, its
    credentials masked, with its last success, last failure and queue; `test` sends a test
    notification to every URL now and exits 1 unless all of them took it."""
    if action == "status":
        targets = call(run_dir, request(cmd="notify_status"), "notify_targets")["targets"]
        if as_json:
            emit_json(targets)
        else:
            print(render.notify_targets(records(targets)))
        return
    outcomes = call(run_dir, request(cmd="notify_test"), "notify_tested")["outcomes"]
    if as_json:
        emit_json(outcomes)
    else:
        print(render.notify_outcomes(records(outcomes)))
    if not all(o["ok"] for o in outcomes):
        raise CliError("a notification URL did not take the test")
