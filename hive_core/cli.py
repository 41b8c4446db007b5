"""The `hive-core` command line: `serve`, and thin calls on the admin socket for the rest."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from hive_core import render
from hive_core.settings import Settings
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import (
    ClientError,
    ConnectionLost,
    HiveClient,
    NotRunning,
    RemoteError,
    new_idempotency_key,
)
from hive_share.models import WireModel, dump
from hive_share.names import InvalidName, validate_agent_name, validate_principal

R = TypeVar("R", bound=WireModel)

app = typer.Typer(
    name="hive-core",
    help="Run and steer a hive of Claude Code agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

RunDir = Annotated[
    Path | None,
    typer.Option("--run-dir", help="Socket directory of the daemon (env HIVE_RUN_DIR)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
NameArg = Annotated[str, typer.Argument(help="Agent name.", show_default=False)]

SEND_ATTEMPTS = 5


def fail(message: str) -> NoReturn:
    typer.echo(f"hive-core: {render.clean(message)}", err=True)
    raise typer.Exit(1)


def _settings(run_dir: Path | None) -> Settings:
    try:
        return Settings(run_dir=run_dir) if run_dir is not None else Settings()
    except ValidationError as exc:
        fail(f"bad setting: {exc.errors(include_url=False)[0]['msg']}")


def build(model: type[R], **fields: Any) -> R:
    """A request from command-line values; a bad value ends with a one-line error."""
    try:
        return model(**fields)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        fail(f"{'.'.join(str(p) for p in err['loc']) or 'argument'}: {err['msg']}")


def _name(name: str) -> str:
    try:
        return validate_agent_name(name)
    except InvalidName as exc:
        fail(str(exc))


async def _call(path: Path, req: WireModel, expect: type[R], attempts: int = 1) -> R:
    last: ClientError | None = None
    for attempt in range(attempts):
        try:
            async with HiveClient(path) as client:
                return await client.call(req, expect)
        except ConnectionLost as exc:
            last = exc
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
    assert last is not None
    raise last


def call(run_dir: Path | None, req: WireModel, expect: type[R], attempts: int = 1) -> R:
    path = _settings(run_dir).host_socket
    try:
        return asyncio.run(_call(path, req, expect, attempts))
    except NotRunning as exc:
        fail(f"hive-core is not running ({exc}); start it with `hive-core serve`")
    except RemoteError as exc:
        fail(f"{exc.message} [{exc.code}]")
    except ClientError as exc:
        fail(str(exc))


def emit_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=True))


@app.command()
def serve(
    run_dir: RunDir = None,
    state_dir: Annotated[
        Path | None, typer.Option(help="Durable state directory (env HIVE_STATE_DIR).")
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="Container backend: local or nixos (env HIVE_BACKEND).")
    ] = None,
    dashboard_host: Annotated[
        str | None, typer.Option(help="Dashboard bind address (env HIVE_DASHBOARD_HOST).")
    ] = None,
    dashboard_port: Annotated[
        int | None, typer.Option(help="Dashboard port, 0 = any free (env HIVE_DASHBOARD_PORT).")
    ] = None,
    dashboard_allowed_hosts: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated host names the dashboard answers to beyond loopback; "
            "required with a non-loopback --dashboard-host (env HIVE_DASHBOARD_ALLOWED_HOSTS)."
        ),
    ] = None,
    operator_pronouns: Annotated[
        str | None, typer.Option(help="Pronouns for the operator (env HIVE_OPERATOR_PRONOUNS).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the daemon in the foreground until SIGTERM or Ctrl-C."""
    import logging

    from hive_core.daemon import run_forever
    from hive_core.errors import StartupError

    overrides: dict[str, Any] = {
        k: v
        for k, v in dict(
            run_dir=run_dir,
            state_dir=state_dir,
            backend=backend,
            dashboard_host=dashboard_host,
            dashboard_port=dashboard_port,
            dashboard_allowed_hosts=dashboard_allowed_hosts,
            operator_pronouns=operator_pronouns,
        ).items()
        if v is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        fail(f"bad setting {'.'.join(map(str, err['loc']))}: {err['msg']}")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        run_forever(settings, dict(os.environ))
    except* StartupError as group:
        fail(f"cannot start: {group.exceptions[0]}")


@app.command()
def spawn(name: NameArg, run_dir: RunDir = None) -> None:
    """Create and start an agent now (the operator needs no approval)."""
    typer.echo(call(run_dir, rq.Spawn(cmd="spawn", name=_name(name)), rs.Done).detail)


@app.command("request-spawn")
def request_spawn(name: NameArg, run_dir: RunDir = None) -> None:
    """Queue a spawn for approval (as the manager would)."""
    resp = call(run_dir, rq.RequestSpawn(cmd="request_spawn", name=_name(name)), rs.ApprovalResult)
    typer.echo(f"queued approval {resp.approval.id}: spawn {resp.approval.agent}")


@app.command()
def start(name: NameArg, run_dir: RunDir = None) -> None:
    """Start a stopped agent."""
    typer.echo(call(run_dir, rq.Start(cmd="start", name=_name(name)), rs.Done).detail)


@app.command()
def stop(name: NameArg, run_dir: RunDir = None) -> None:
    """Stop an agent gracefully (SIGTERM, then SIGKILL after 10 s)."""
    typer.echo(call(run_dir, rq.Stop(cmd="stop", name=_name(name)), rs.Done).detail)


@app.command()
def kill(name: NameArg, run_dir: RunDir = None) -> None:
    """Stop an agent at once."""
    typer.echo(call(run_dir, rq.Kill(cmd="kill", name=_name(name)), rs.Done).detail)


@app.command()
def restart(name: NameArg, run_dir: RunDir = None) -> None:
    """Stop and start an agent."""
    typer.echo(call(run_dir, rq.Restart(cmd="restart", name=_name(name)), rs.Done).detail)


@app.command()
def rebuild(name: NameArg, run_dir: RunDir = None) -> None:
    """Re-apply an agent's deployed config and restart it."""
    typer.echo(call(run_dir, rq.Rebuild(cmd="rebuild", name=_name(name)), rs.Done).detail)


@app.command()
def destroy(
    name: NameArg,
    purge: Annotated[bool, typer.Option("--purge", help="Also delete its state.")] = False,
    run_dir: RunDir = None,
) -> None:
    """Stop and remove an agent, keeping its state as a tombstone unless --purge."""
    req = rq.Destroy(cmd="destroy", name=_name(name), purge=purge)
    typer.echo(call(run_dir, req, rs.Done).detail)


@app.command("list")
def list_(run_dir: RunDir = None, as_json: Json = False) -> None:
    """Agents and tombstones."""
    resp = call(run_dir, rq.List(cmd="list"), rs.Agents)
    if as_json:
        emit_json([dump(a) for a in resp.agents])
    else:
        typer.echo(render.agents(resp.agents))


@app.command()
def pending(run_dir: RunDir = None, as_json: Json = False) -> None:
    """Approvals waiting for the operator."""
    resp = call(run_dir, rq.Pending(cmd="pending"), rs.Approvals)
    if as_json:
        emit_json([dump(a) for a in resp.approvals])
    else:
        typer.echo(render.approvals(resp.approvals))


@app.command()
def approve(
    approval_id: Annotated[int, typer.Argument(metavar="ID", help="Approval id.")],
    run_dir: RunDir = None,
) -> None:
    """Approve a pending request and carry it out."""
    typer.echo(call(run_dir, build(rq.Approve, cmd="approve", id=approval_id), rs.Done).detail)


@app.command()
def deny(
    approval_id: Annotated[int, typer.Argument(metavar="ID", help="Approval id.")],
    reason: Annotated[str, typer.Option("--reason", help="Recorded with the denial.")] = "",
    run_dir: RunDir = None,
) -> None:
    """Deny a pending request."""
    req = build(rq.Deny, cmd="deny", id=approval_id, reason=reason)
    typer.echo(call(run_dir, req, rs.Done).detail)


@app.command()
def send(
    to: Annotated[
        str, typer.Argument(help="Agent name (the manager is hm1nd).", show_default=False)
    ],
    body: Annotated[str, typer.Argument(help="Message text; - reads stdin.", show_default=False)],
    run_dir: RunDir = None,
) -> None:
    """Send a message as the operator; acknowledged once it is on disk."""
    try:
        validate_principal(to)
    except InvalidName as exc:
        fail(str(exc))
    text = sys.stdin.read() if body == "-" else body
    if not text:
        fail("message body is empty")
    if len(text) > rq.MAX_BODY:
        fail(f"message body is {len(text)} characters; at most {rq.MAX_BODY} allowed")
    try:
        req = rq.Send(cmd="send", to=to, body=text, idempotency_key=new_idempotency_key())
    except ValidationError as exc:
        fail(f"message body refused: {exc.errors(include_url=False)[0]['msg']}")
    resp = call(run_dir, req, rs.Sent, attempts=SEND_ATTEMPTS)
    typer.echo(f"sent message {resp.id} to {to}")


@app.command()
def inbox(
    limit: Annotated[int, typer.Option(help="How many of the newest messages.")] = 50,
    wait: Annotated[float, typer.Option(help="Seconds to wait for an unread message.")] = 0.0,
    before: Annotated[
        int | None, typer.Option(help="Page back: only messages with an id below this one.")
    ] = None,
    run_dir: RunDir = None,
    as_json: Json = False,
) -> None:
    """The operator's messages, oldest first; shown ones are marked read."""
    try:
        req = rq.Inbox(cmd="inbox", limit=limit, wait_seconds=wait, before=before)
    except ValidationError as exc:
        fail(exc.errors(include_url=False)[0]["msg"])
    resp = call(run_dir, req, rs.Messages)
    if as_json:
        emit_json([dump(m) for m in resp.messages])
    else:
        typer.echo(render.messages(resp.messages))


@app.command()
def questions(run_dir: RunDir = None, as_json: Json = False) -> None:
    """Pending questions addressed to the operator."""
    resp = call(run_dir, rq.Questions(cmd="questions"), rs.QuestionsResult)
    if as_json:
        emit_json([dump(q) for q in resp.questions])
    else:
        typer.echo(render.questions(resp.questions))


@app.command()
def answer(
    question_id: Annotated[int, typer.Argument(metavar="ID", help="Question id.")],
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The answer.", show_default=False)],
    run_dir: RunDir = None,
) -> None:
    """Answer a question as the operator (any question: the operator may override)."""
    try:
        req = rq.AnswerQuestion(cmd="answer", id=question_id, answer=text)
    except ValidationError as exc:
        fail(exc.errors(include_url=False)[0]["msg"])
    resp = call(run_dir, req, rs.QuestionResult)
    typer.echo(f"answered question {resp.question.id} (asked by {resp.question.asker})")


@app.command("cancel-question")
def cancel_question(
    question_id: Annotated[int, typer.Argument(metavar="ID", help="Question id.")],
    run_dir: RunDir = None,
) -> None:
    """Withdraw a pending question; its asker is told."""
    resp = call(
        run_dir, build(rq.CancelQuestion, cmd="cancel_question", id=question_id), rs.QuestionResult
    )
    typer.echo(f"cancelled question {resp.question.id} (asked by {resp.question.asker})")


@app.command()
def reminders(
    agent: Annotated[str | None, typer.Argument(help="Only this agent's.")] = None,
    run_dir: RunDir = None,
    as_json: Json = False,
) -> None:
    """Pending and recently delivered reminders, hive-wide or of one agent."""
    req = rq.ListReminders(cmd="list_reminders", agent=_name(agent) if agent else None)
    resp = call(run_dir, req, rs.RemindersResult)
    if as_json:
        emit_json([dump(r) for r in resp.reminders])
    else:
        typer.echo(render.reminders(resp.reminders))


@app.command("login-link")
def login_link(run_dir: RunDir = None) -> None:
    """Print a one-time dashboard login link (valid for 10 minutes)."""
    typer.echo(call(run_dir, rq.LoginLink(cmd="login_link"), rs.Done).detail)


def main() -> None:
    app()
