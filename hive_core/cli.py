"""The `hive-core` command line: `serve`, and one request on the admin socket per other command.

The client commands run on the standard library alone: argparse, one blocking
socket (`hive_share.blocking`) and the wire schema stored from the models
(`hive_share.schema`), which checks each request before it is sent, so a bad
value names its option, and each answer when it arrives. Typer, asyncio and
pydantic each cost several interpreter starts to import, and `hive-core list`
should cost about one (docs/benchmarks.md, `cli_list_p50`). `serve` imports the
daemon, and with it everything else, only when it runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NoReturn, cast

from hive_core import __version__, render
from hive_core.run_dir import client_run_dir, host_socket
from hive_share import blocking, schema
from hive_share.names import InvalidName, validate_agent_name, validate_principal

PROG = "hive-core"
SEND_ATTEMPTS = 5


class CliError(Exception):
    """Ends the command with `hive-core: <message>` on stderr and exit `status`."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def fail(message: str) -> NoReturn:
    raise CliError(message)


def _name(name: str) -> str:
    try:
        return validate_agent_name(name)
    except InvalidName as exc:
        fail(str(exc))


def request(args: argparse.Namespace, **fields: Any) -> dict[str, Any]:
    """A host-socket request from command-line values, checked against the wire schema;
    a bad value is reported under the option (or argument) it came from."""
    given = {k: v for k, v in fields.items() if v is not None}
    try:
        checked: dict[str, Any] = schema.check("host_request", given)
    except schema.SchemaError as exc:
        field = str(exc.path[0]) if exc.path else "request"
        fail(f"{args.labels.get(field, field)}: {exc.message}")
    return checked


def _cli_name() -> str:
    """How to name the CLI in hints: `./dev` sets HIVE_CLI_NAME (docs/settings.md)."""
    return os.environ.get("HIVE_CLI_NAME") or PROG


def call(
    args: argparse.Namespace, req: dict[str, Any], expect: str, attempts: int = 1
) -> dict[str, Any]:
    """Send `req` on `host.sock`; a dropped connection is retried up to `attempts` times."""
    path = host_socket(client_run_dir(args.run_dir))
    for attempt in range(attempts):
        try:
            return blocking.call(path, req, expect)
        except blocking.NotRunning as exc:
            fail(f"hive-core is not running ({exc}); start it with `{_cli_name()} serve`")
        except blocking.RemoteError as exc:
            fail(f"{exc.message} [{exc.code}]")
        except blocking.ConnectionLost as exc:
            if attempt + 1 == attempts:
                fail(str(exc))
            time.sleep(min(0.2 * 2**attempt, 2.0))
        except blocking.ClientError as exc:
            fail(str(exc))
    raise AssertionError("unreachable: the last attempt fails or returns")


def records(items: list[dict[str, Any]]) -> list[Any]:
    """Checked wire records as attribute namespaces: what `render` reads (`r.name`)."""
    return [SimpleNamespace(**item) for item in items]


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=True))


def _detail(args: argparse.Namespace, **fields: Any) -> None:
    """One lifecycle request whose answer is a `done` line."""
    print(call(args, request(args, **fields), "done")["detail"])


# -- the commands ----------------------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """Run the daemon in the foreground until SIGTERM or Ctrl-C."""
    import logging

    from pydantic import ValidationError

    from hive_core import db, journal
    from hive_core.errors import StartupError
    from hive_core.settings import Settings

    flags = (
        "run_dir", "state_dir", "backend", "dashboard_host", "dashboard_port",
        "dashboard_allowed_hosts",
    )  # fmt: skip
    given = {f: getattr(args, f) for f in (*flags, "operator_pronouns")}
    overrides = {k: v for k, v in given.items() if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        where = args.labels.get(field) if field in overrides else f"HIVE_{field.upper()}"
        fail(f"bad setting {where}: {err['msg']}")
    journal.configure(os.environ, logging.DEBUG if args.verbose else logging.INFO)
    # The database's check reads the whole file (a big hive's slowest start step): begun
    # here, it runs while the daemon's modules are imported.
    checked = db.start_quick_check(settings.db_path)
    from hive_core.daemon import run_forever

    try:
        run_forever(settings, dict(os.environ), checked)
    except* StartupError as group:
        fail(f"cannot start: {group.exceptions[0]}")


def spawn(args: argparse.Namespace) -> None:
    """Create and start an agent now (the operator needs no approval)."""
    _detail(args, cmd="spawn", name=_name(args.name))


def request_spawn(args: argparse.Namespace) -> None:
    """Queue a spawn for approval (as the manager would)."""
    resp = call(args, request(args, cmd="request_spawn", name=_name(args.name)), "approval")
    print(f"queued approval {resp['approval']['id']}: spawn {resp['approval']['agent']}")


def start(args: argparse.Namespace) -> None:
    """Start a stopped agent."""
    _detail(args, cmd="start", name=_name(args.name))


def stop(args: argparse.Namespace) -> None:
    """Stop an agent gracefully (SIGTERM, then SIGKILL after 10 s)."""
    _detail(args, cmd="stop", name=_name(args.name))


def kill(args: argparse.Namespace) -> None:
    """Stop an agent at once."""
    _detail(args, cmd="kill", name=_name(args.name))


def restart(args: argparse.Namespace) -> None:
    """Stop and start an agent."""
    _detail(args, cmd="restart", name=_name(args.name))


def rebuild(args: argparse.Namespace) -> None:
    """Re-apply an agent's deployed config and restart it."""
    _detail(args, cmd="rebuild", name=_name(args.name))


def destroy(args: argparse.Namespace) -> None:
    """Stop and remove an agent, keeping its state as a tombstone unless --purge."""
    _detail(args, cmd="destroy", name=_name(args.name), purge=args.purge)


def list_(args: argparse.Namespace) -> None:
    """Agents and tombstones."""
    agents = call(args, request(args, cmd="list"), "agents")["agents"]
    if args.as_json:
        emit_json(agents)
    else:
        print(render.agents(records(agents)))


def _relay(args: argparse.Namespace, **control: Any) -> None:
    _detail(args, cmd="relay", name=_name(args.name), request=control)


def cancel(args: argparse.Namespace) -> None:
    """Cancel an agent's running turn: messages its model already received count as handled
    (its next turn is told), messages it never received stay queued for a later turn."""
    _relay(args, cmd="cancel")


def new_session(args: argparse.Namespace) -> None:
    """Start the agent's next turn in a fresh claude session (no --continue)."""
    _relay(args, cmd="new_session")


def compact(args: argparse.Namespace) -> None:
    """Compact the agent's session before its next turn."""
    _relay(args, cmd="compact")


MODEL_CHOICES = ("opus", "sonnet", "haiku")


def model(args: argparse.Namespace) -> None:
    """Switch the agent's model from its next turn on; without MODEL, show it and the choices."""
    if args.model is not None:
        _relay(args, cmd="set_model", model=args.model)
        return
    name = _name(args.name)
    agents = call(args, request(args, cmd="list"), "agents")["agents"]
    row = next((a for a in agents if a["name"] == name), None)
    if row is None or row["state"] in ("tombstone", "prepared"):
        fail(f"no agent named {name!r}; `{_cli_name()} list` shows who exists")
    current = row.get("model") or "not reported yet (it reports when it starts)"
    print(f"{name}: {render.clean(current)}")
    print(f"choices: {', '.join(MODEL_CHOICES)}, or a full model id (claude-sonnet-4-5, …)")


def threads(args: argparse.Namespace) -> None:
    """Open threads: pending approvals and unanswered questions, hive-wide or for one agent."""
    got = call(args, request(args, cmd="get_open_threads"), "open_threads")
    approvals, questions = got["approvals"], got["questions"]
    if args.agent is not None:
        name = _name(args.agent)
        approvals = [a for a in approvals if name in (a["agent"], a["requester"])]
        questions = [q for q in questions if name in (q["asker"], q["target"])]
    if args.as_json:
        emit_json({"approvals": approvals, "questions": questions})
        return
    print(render.approvals(records(approvals)))
    print()
    print(render.questions(records(questions)))
    if args.agent is None:
        print(f"\npending reminders: {got['pending_reminders']}")


def logs(args: argparse.Namespace) -> None:
    """An agent's turns as they happened (-f: as they happen); --raw: its harness log."""
    name = _name(args.name)
    if args.raw:
        _raw_log(args, name)
        return
    if not 1 <= args.lines <= 1000:
        fail(f"bad value for --lines: {args.lines} (1 to 1000)")
    after, limit, waiting = 0, args.lines, False
    while True:
        control: dict[str, Any] = {"cmd": "events", "after": after, "limit": limit}
        if waiting:
            control["wait_seconds"] = FOLLOW_WAIT
        req = request(args, cmd="relay", name=name, request=control)
        events = call(args, req, "events")["events"]
        for row in events:
            print(json.dumps(row) if args.as_json else render.turn_event(row), flush=True)
        if events:
            after = events[-1]["seq"]  # 0 stays "none seen": the next answer is all new
        if not args.follow:
            return
        limit, waiting = 1000, True


FOLLOW_WAIT = 8.0
RAW_FOLLOW_INTERVAL = 0.5


def _raw_log(args: argparse.Namespace, name: str) -> None:
    got = call(args, request(args, cmd="harness_log", name=name, lines=args.lines), "log")
    for line in got["lines"]:
        print(render.clean(line), flush=True)
    while args.follow:
        time.sleep(RAW_FOLLOW_INTERVAL)  # a file has no long-poll: check it twice a second
        req = request(args, cmd="harness_log", name=name, offset=got["offset"])
        got = call(args, req, "log")
        for line in got["lines"]:
            print(render.clean(line), flush=True)


def login(args: argparse.Namespace) -> None:
    """Log the agent's Claude Code in: its `claude auth login`, relayed to this terminal."""
    name = _name(args.name)
    _relay(args, cmd="login_start")
    offset, asked = 0, False
    try:
        while True:
            control = {"cmd": "login_status", "after": offset, "wait_seconds": FOLLOW_WAIT}
            got = call(args, request(args, cmd="relay", name=name, request=control), "login")
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
                code = _read_code()
                _relay(args, cmd="login_code", code=code)
    except KeyboardInterrupt:
        _relay(args, cmd="login_cancel")
        raise


def _read_code() -> str:
    print()
    code = sys.stdin.readline().strip()
    if not code:
        fail("no code given; run the login again")
    return code


def pending(args: argparse.Namespace) -> None:
    """Approvals waiting for the operator."""
    approvals = call(args, request(args, cmd="pending"), "approvals")["approvals"]
    if args.as_json:
        emit_json(approvals)
    else:
        print(render.approvals(records(approvals)))


def update(args: argparse.Namespace) -> None:
    """Queue a rebuild of every agent whose harness runs another hyperhive version."""
    got = call(args, request(args, cmd="update"), "approval")["approval"]
    print(f"queued approval {got['id']}: update; `{_cli_name()} approve {got['id']}` runs it")


def show(args: argparse.Namespace) -> None:
    """One approval whole: a proposed config change with its diff."""
    got = call(args, request(args, cmd="show_approval", id=args.id), "approval")["approval"]
    if args.as_json:
        emit_json(got)
    else:
        print(render.approval(records([got])[0], colour=sys.stdout.isatty()))


def approve(args: argparse.Namespace) -> None:
    """Approve a pending request and carry it out."""
    _detail(args, cmd="approve", id=args.id)


def deny(args: argparse.Namespace) -> None:
    """Deny a pending request."""
    _detail(args, cmd="deny", id=args.id, reason=args.reason)


def send(args: argparse.Namespace) -> None:
    """Send a message as the operator; acknowledged once it is on disk."""
    try:
        validate_principal(args.to)
    except InvalidName as exc:
        fail(str(exc))
    text = sys.stdin.read() if args.body == "-" else args.body
    if not text:
        fail("message body is empty")
    key = blocking.new_idempotency_key()
    req = request(args, cmd="send", to=args.to, body=text, idempotency_key=key)
    resp = call(args, req, "sent", attempts=SEND_ATTEMPTS)
    print(f"sent message {resp['id']} to {args.to}")


def inbox(args: argparse.Namespace) -> None:
    """The operator's messages, oldest first; shown ones are marked read.

    With --wait, only new ones (unread, or above --after); exit 1 when none came in time.
    """
    req = request(
        args,
        cmd="inbox",
        limit=args.limit,
        wait_seconds=args.wait_seconds,
        before=args.before,
        after=args.after,
    )
    messages = call(args, req, "messages")["messages"]
    if args.wait_seconds is not None and args.after is None:
        # Shown messages are marked read: the unread ones are those not shown before.
        messages = [m for m in messages if m["delivered_at"] is None]
    if args.as_json:
        emit_json(messages)
    elif messages or args.wait_seconds is None:
        print(render.messages(records(messages)))
    if args.wait_seconds is not None and not messages:
        raise CliError(f"no new message within {args.wait_seconds:g}s")


def questions(args: argparse.Namespace) -> None:
    """Pending questions addressed to the operator."""
    found = call(args, request(args, cmd="questions"), "questions")["questions"]
    if args.as_json:
        emit_json(found)
    else:
        print(render.questions(records(found)))


def answer(args: argparse.Namespace) -> None:
    """Answer a question as the operator (any question: the operator may override)."""
    req = request(args, cmd="answer", id=args.id, answer=args.answer)
    question = call(args, req, "question")["question"]
    print(f"answered question {question['id']} (asked by {question['asker']})")


def cancel_question(args: argparse.Namespace) -> None:
    """Withdraw a pending question; its asker is told."""
    question = call(args, request(args, cmd="cancel_question", id=args.id), "question")["question"]
    print(f"cancelled question {question['id']} (asked by {question['asker']})")


def reminders(args: argparse.Namespace) -> None:
    """Pending and recently delivered reminders, hive-wide or of one agent."""
    agent = _name(args.agent) if args.agent else None
    found = call(args, request(args, cmd="list_reminders", agent=agent), "reminders")["reminders"]
    if args.as_json:
        emit_json(found)
    else:
        print(render.reminders(records(found)))


def login_link(args: argparse.Namespace) -> None:
    """Print a one-time login link (valid for 10 minutes): the dashboard's, or NAME's page."""
    name = _name(args.name) if args.name is not None else None
    _detail(args, cmd="login_link", name=name)


def systemd_unit(args: argparse.Namespace) -> None:
    """Print a systemd unit that runs this hive-core's `serve` (a system unit, or --user)."""
    from hive_core import unit_file  # only here: no other command needs it

    try:
        print(unit_file.render(unit_file.this_hive_core(), user=args.user), end="")
    except unit_file.UnitError as exc:
        fail(str(exc))


# -- the parser ------------------------------------------------------------------------------


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


class _Unused:
    """Stands in for the sub-parser of a command this run does not parse: what is added
    to it is dropped. Building all of them costs a one-line command like `list` a fifth of
    its run time (argparse builds a help formatter per option)."""

    def add_argument(self, *args: object, **kwargs: object) -> None:
        return None

    def set_defaults(self, **kwargs: object) -> None:
        return None


class _Commands:
    """Adds one sub-parser per command, with the options most of them share; with `only`,
    just that command's."""

    def __init__(self, parser: argparse.ArgumentParser, only: str | None) -> None:
        self.group = parser.add_subparsers(metavar="COMMAND", title="commands")
        self.parsers: dict[str, argparse.ArgumentParser] = {}
        self.only = only

    def add(self, name: str, func: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
        if self.only is not None and name != self.only:
            return cast(argparse.ArgumentParser, _Unused())
        doc = (func.__doc__ or "").strip()
        sub = self.group.add_parser(name, help=doc.split("\n")[0], description=doc)
        sub.set_defaults(func=func)
        self.parsers[name] = sub
        return sub

    def client(
        self, name: str, func: Callable[[argparse.Namespace], None], *, agent: bool = False
    ) -> argparse.ArgumentParser:
        """A command that talks to the daemon: `--run-dir`, and optionally a NAME."""
        sub = self.add(name, func)
        if agent:
            sub.add_argument("name", metavar="NAME", help="Agent name.")
        _run_dir_option(sub)
        return sub


def _run_dir_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--run-dir",
        type=Path,
        metavar="PATH",
        help="Socket directory of the daemon (env HIVE_RUN_DIR).",
    )


def _json_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--json", dest="as_json", action="store_true", help="Print JSON instead of a table."
    )


def _id_argument(sub: argparse.ArgumentParser, what: str) -> None:
    sub.add_argument("id", metavar="ID", type=int, help=f"{what} id.")


def _serve_options(sub: argparse.ArgumentParser) -> None:
    _run_dir_option(sub)
    add = sub.add_argument
    add(
        "--state-dir",
        type=Path,
        metavar="PATH",
        help="Durable state directory (env HIVE_STATE_DIR).",
    )
    add("--backend", choices=["local", "nixos"], help="Container backend (env HIVE_BACKEND).")
    add("--dashboard-host", help="Dashboard bind address (env HIVE_DASHBOARD_HOST).")
    add(
        "--dashboard-port", type=int, help="Dashboard port, 0 = any free (env HIVE_DASHBOARD_PORT)."
    )
    add(
        "--dashboard-allowed-hosts",
        help="Comma-separated host names the dashboard answers to beyond loopback; required "
        "with a non-loopback --dashboard-host (env HIVE_DASHBOARD_ALLOWED_HOSTS).",
    )
    add("--operator-pronouns", help="Pronouns for the operator (env HIVE_OPERATOR_PRONOUNS).")
    add("--verbose", "-v", action="store_true", help="Debug logging.")


def _inbox_options(sub: argparse.ArgumentParser) -> None:
    add = sub.add_argument
    add("--limit", type=int, metavar="N", help="How many messages (default 50, at most 1000).")
    add(
        "--wait",
        dest="wait_seconds",
        type=_finite,
        metavar="SECONDS",
        help="Wait up to SECONDS (at most 180) for a new message; show only new ones; "
        "exit 1 if none came.",
    )
    add("--before", type=int, metavar="ID", help="Page back: only messages below this id.")
    add("--after", type=int, metavar="ID", help="Only messages above this id (the last shown).")


def _label(action: argparse.Action) -> str:
    """How an error names the option or argument a wire field came from."""
    if action.option_strings:
        return max(action.option_strings, key=len)
    return str(action.metavar or action.dest)


def build_parser(
    only: str | None = None,
) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each command's sub-parser, by command name; with `only`,
    the sub-parser of that command alone (none when it is no command)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run and steer a hive of Claude Code agents."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    for flag, verb in (("--show-completion", "Print"), ("--install-completion", "Install")):
        parser.add_argument(
            flag,
            nargs="?",
            const="",
            metavar="SHELL",
            help=f"{verb} shell completion for SHELL (bash, zsh, fish; default: $SHELL).",
        )
    parser.set_defaults(func=None)
    cmds = _Commands(parser, only)
    _serve_options(cmds.add("serve", serve))
    unit_ = cmds.add("systemd-unit", systemd_unit)
    unit_.add_argument("--user", action="store_true", help="A unit for `systemctl --user` instead.")
    for name, func in (
        ("spawn", spawn),
        ("request-spawn", request_spawn),
        ("start", start),
        ("stop", stop),
        ("kill", kill),
        ("restart", restart),
        ("rebuild", rebuild),
    ):
        cmds.client(name, func, agent=True)
    destroy_ = cmds.client("destroy", destroy, agent=True)
    destroy_.add_argument("--purge", action="store_true", help="Also delete its state.")
    _json_option(cmds.client("list", list_))
    _json_option(cmds.client("pending", pending))
    cmds.client("update", update)
    show_ = cmds.client("show", show)
    _id_argument(show_, "Approval")
    _json_option(show_)
    _id_argument(cmds.client("approve", approve), "Approval")
    deny_ = cmds.client("deny", deny)
    _id_argument(deny_, "Approval")
    deny_.add_argument("--reason", default="", help="Recorded with the denial.")
    send_ = cmds.client("send", send)
    send_.add_argument("to", metavar="TO", help="Agent name (the manager is hm1nd).")
    send_.add_argument("body", metavar="BODY", help="Message text; - reads stdin.")
    inbox_ = cmds.client("inbox", inbox)
    _inbox_options(inbox_)
    _json_option(inbox_)
    _json_option(cmds.client("questions", questions))
    answer_ = cmds.client("answer", answer)
    _id_argument(answer_, "Question")
    answer_.add_argument("answer", metavar="TEXT", help="The answer.")
    _id_argument(cmds.client("cancel-question", cancel_question), "Question")
    reminders_ = cmds.client("reminders", reminders)
    reminders_.add_argument("agent", metavar="AGENT", nargs="?", help="Only this agent's.")
    _json_option(reminders_)
    login_link_ = cmds.client("login-link", login_link)
    login_link_.add_argument("name", metavar="NAME", nargs="?", help="That agent's page.")
    for name, func in (
        ("cancel", cancel),
        ("new-session", new_session),
        ("compact", compact),
    ):
        cmds.client(name, func, agent=True)
    cmds.client("login", login, agent=True)
    model_ = cmds.client("model", model, agent=True)
    model_.add_argument("model", metavar="MODEL", nargs="?", help="The model to switch to.")
    threads_ = cmds.client("threads", threads)
    threads_.add_argument("agent", metavar="NAME", nargs="?", help="Only this agent's.")
    _json_option(threads_)
    logs_ = cmds.client("logs", logs, agent=True)
    logs_.add_argument("-f", "--follow", action="store_true", help="Keep printing new ones.")
    logs_.add_argument(
        "-n", "--lines", type=int, default=50, metavar="N", help="How many first (default 50)."
    )
    logs_.add_argument("--raw", action="store_true", help="Its harness log instead.")
    _json_option(logs_)
    for sub in cmds.parsers.values():
        sub.set_defaults(labels={a.dest: _label(a) for a in sub._actions})
    return parser, cmds.parsers


def _completion(args: argparse.Namespace, commands: dict[str, argparse.ArgumentParser]) -> None:
    from hive_core import completion  # only here: most commands never need it

    try:
        print(completion.run(args, PROG, commands))
    except completion.CompletionError as exc:
        fail(str(exc))


STDOUT_CLOSED = 141
"""The exit status when stdout closes before all is shown (`hive-core show 1 | head -1`):
the shell's for a command ended by SIGPIPE (128 + 13), but without the traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 done, 1 refused or failed, 2 usage,
    141 stdout closed early)."""
    try:
        status = _run(argv)
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


def _run(argv: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    first = argv[0] if argv and not argv[0].startswith("-") else None
    parser, commands = build_parser(first)
    if first not in commands:  # options first, no command or a wrong one: the whole parser
        parser, commands = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a usage error: argparse has printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.show_completion is not None or args.install_completion is not None:
            _completion(args, commands)
            return 0
        if args.func is None:
            parser.print_help(sys.stderr)
            return 2
        args.func(args)
    except CliError as exc:
        print(f"{PROG}: {render.clean(exc.message)}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    return 0
