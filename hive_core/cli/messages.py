"""Messages and coordination as the operator: send, inbox, questions, answer,
cancel-question, reminders and threads."""

import math
import sys
from typing import Annotated

import typer

from hive_core import render
from hive_core.cli.common import (
    TAKES_NEGATIVE_NUMBERS,
    AsJson,
    CliError,
    HeldBy,
    QuestionId,
    RunDir,
    agent_name,
    call,
    emit_json,
    fail,
    records,
    request,
)
from hive_share import blocking
from hive_share.names import InvalidName, validate_principal

SEND_ATTEMPTS = 5

app = typer.Typer()


@app.command("send")
def send(
    to: Annotated[
        str,
        typer.Argument(metavar="TO", help="Agent name (the manager is hm1nd).", show_default=False),
    ],
    body: Annotated[
        str, typer.Argument(metavar="BODY", help="Message text; - reads stdin.", show_default=False)
    ],
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
    key = blocking.new_idempotency_key()
    req = request(cmd="send", to=to, body=text, idempotency_key=key)
    resp = call(run_dir, req, "sent", attempts=SEND_ATTEMPTS)
    print(f"sent message {resp['id']} to {to}")


def finite(text: str) -> float:
    """A `--wait` value: a finite number of seconds (the range is the schema's to check)."""
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise typer.BadParameter(f"not a finite number: {text!r}")
    return value


Limit = Annotated[
    int | None,
    typer.Option(
        "--limit",
        metavar="N",
        help="How many messages (default 50, at most 1000).",
        show_default=False,
    ),
]
Wait = Annotated[
    float | None,
    typer.Option(
        "--wait",
        metavar="SECONDS",
        parser=finite,
        help="Wait up to SECONDS (at most 180) for a new message; show only new ones; "
        "exit 1 if none came.",
        show_default=False,
    ),
]
Before = Annotated[
    int | None,
    typer.Option(
        "--before",
        metavar="ID",
        help="Page back: only messages below this id.",
        show_default=False,
    ),
]
After = Annotated[
    int | None,
    typer.Option(
        "--after",
        metavar="ID",
        help="Only messages above this id (the last shown).",
        show_default=False,
    ),
]


@app.command("inbox")
def inbox(
    limit: Limit = None,
    wait_seconds: Wait = None,
    before: Before = None,
    after: After = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            metavar="HOST",
            help="Another host's operator inbox, in a hive across hosts: read (and marked "
            "read) there.",
            show_default=False,
        ),
    ] = None,
    as_json: AsJson = False,
    run_dir: RunDir = None,
) -> None:
    """The operator's messages, oldest first; shown ones are marked read.

    With --wait, only new ones (unread, or above --after); exit 1 when none came in time.
    """
    req = request(
        cmd="inbox", limit=limit, wait_seconds=wait_seconds, before=before, after=after, host=host
    )
    messages = call(run_dir, req, "messages")["messages"]
    if wait_seconds is not None and after is None:
        # Shown messages are marked read: the unread ones are those not shown before.
        messages = [m for m in messages if m["delivered_at"] is None]
    if as_json:
        emit_json(messages)
    elif messages or wait_seconds is None:
        print(render.messages(records(messages)))
    if wait_seconds is not None and not messages:
        raise CliError(f"no new message within {wait_seconds:g}s")


@app.command("questions")
def questions(as_json: AsJson = False, run_dir: RunDir = None) -> None:
    """Pending questions addressed to the operator."""
    found = call(run_dir, request(cmd="questions"), "questions")["questions"]
    if as_json:
        emit_json(found)
    else:
        print(render.questions(records(found)))


@app.command("answer", context_settings=TAKES_NEGATIVE_NUMBERS)
def answer_question(
    id: QuestionId,
    answer: Annotated[str, typer.Argument(metavar="TEXT", help="The answer.", show_default=False)],
    host: HeldBy = None,
    run_dir: RunDir = None,
) -> None:
    """Answer a question as the operator (any question: the operator may override)."""
    req = request(cmd="answer", id=id, answer=answer, host=host)
    question = call(run_dir, req, "question")["question"]
    print(f"answered question {question['id']} (asked by {question['asker']})")


@app.command("cancel-question", context_settings=TAKES_NEGATIVE_NUMBERS)
def cancel_question(id: QuestionId, host: HeldBy = None, run_dir: RunDir = None) -> None:
    """Withdraw a pending question; its asker is told."""
    req = request(cmd="cancel_question", id=id, host=host)
    question = call(run_dir, req, "question")["question"]
    print(f"cancelled question {question['id']} (asked by {question['asker']})")


OneAgent = Annotated[
    str | None, typer.Argument(metavar="NAME", help="Only this agent's.", show_default=False)
]


@app.command("reminders")
def reminders(
    agent: Annotated[
        str | None, typer.Argument(metavar="AGENT", help="Only this agent's.", show_default=False)
    ] = None,
    as_json: AsJson = False,
    run_dir: RunDir = None,
) -> None:
    """Pending and recently delivered reminders, hive-wide or of one agent."""
    req = request(cmd="list_reminders", agent=agent_name(agent) if agent else None)
    found = call(run_dir, req, "reminders")["reminders"]
    if as_json:
        emit_json(found)
    else:
        print(render.reminders(records(found)))


@app.command("threads")
def threads(agent: OneAgent = None, as_json: AsJson = False, run_dir: RunDir = None) -> None:
    """Open threads: pending approvals and unanswered questions, hive-wide or for one agent."""
    got = call(run_dir, request(cmd="get_open_threads"), "open_threads")
    approvals, questions = got["approvals"], got["questions"]
    if agent is not None:
        name = agent_name(agent)
        approvals = [a for a in approvals if name in (a["agent"], a["requester"])]
        questions = [q for q in questions if name in (q["asker"], q["target"])]
    if as_json:
        emit_json({"approvals": approvals, "questions": questions})
        return
    print(render.approvals(records(approvals)))
    print()
    print(render.questions(records(questions)))
    if agent is None:
        print(f"\npending reminders: {got['pending_reminders']}")
