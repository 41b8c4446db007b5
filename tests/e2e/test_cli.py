"""Every `hive-core` command against a real daemon, through the real CLI entry point."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from hive_agent.history import EventHistory
from hive_core import __version__
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.live import Text
from tests.e2e.hive import Hive, wait_until_dead
from tests.git import git


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def agents(hive: Hive) -> dict[str, dict[str, object]]:
    return {a["name"]: a for a in json.loads(ok(hive.cli("list", "--json")))}


def test_spawn_list_send_kill_and_purge_round_trip(hive: Hive) -> None:
    assert "spawned alice" in ok(hive.cli("spawn", "alice"))
    table = ok(hive.cli("list"))
    assert any(line.split()[:3] == ["alice", "agent", "running"] for line in table.splitlines())
    listed = agents(hive)
    assert listed["alice"]["state"] == "running" and listed["alice"]["alive"] is True
    assert listed["hm1nd"]["role"] == "manager"
    pid = listed["alice"]["pid"]
    assert isinstance(pid, int)

    assert "sent message" in ok(hive.cli("send", "alice", "hi"))
    assert "killed alice" in ok(hive.cli("kill", "alice"))
    assert agents(hive)["alice"]["state"] == "stopped"
    assert not os.path.exists(f"/proc/{pid}")

    assert "purged" in ok(hive.cli("destroy", "--purge", "alice"))
    assert "alice" not in agents(hive)
    assert not (hive.state_dir / "agents" / "alice").exists()


LONG_STATUS = "bisecting the flaky test in tests/e2e/test_turns.py, round 7 of 12\x1b[31m"


def test_list_fits_the_terminal_and_wide_shows_everything(hive: Hive) -> None:
    hive.spawn_idle("jo")
    ok(hive.cli("spawn", "alice"))

    async def set_status() -> None:
        async with hive.client(hive.agent_sock("alice")) as alice:
            await alice.call(rq.SetStatus(cmd="set_status", status=LONG_STATUS), rs.Done)

    asyncio.run(set_status())

    def listed(*args: str, columns: str | None = None) -> list[str]:
        env = {k: v for k, v in hive.env.items() if k != "COLUMNS"}
        if columns is not None:
            env["COLUMNS"] = columns
        done = subprocess.run(
            [sys.executable, "-m", "hive_core", "list", *args], env=env, capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip
        return ok(done).splitlines()

    shown = "bisecting the flaky test in tests/e2e/test_turns.py, round 7 of 12\\x1b[31m"
    wide = listed("--wide", columns="60")
    assert wide[0].split() == [
        "NAME", "ROLE", "STATE", "TURN", "PID", "UPTIME", "WEB", "PORT", "HARNESS", "LOGIN",
        "MODEL", "DEPLOYED", "STATUS",
    ]  # fmt: skip
    alice = next(line for line in wide if line.startswith("alice "))
    assert alice.endswith(shown) and alice[wide[0].index("TURN") :].startswith("idle ")

    def but_uptime(lines: list[str]) -> list[list[str]]:
        return [[w for i, w in enumerate(line.split()) if i != 5] for line in lines]

    assert but_uptime(listed()) == but_uptime(wide)  # a pipe is not cut

    for columns in ("120", "80", "60"):
        table = listed(columns=columns)
        assert max(len(line) for line in table) <= int(columns), (columns, table)
        header = table[0].split()
        assert {"NAME", "STATE", "TURN", "HARNESS", "STATUS"} <= set(header), header
        alice = next(line for line in table if line.startswith("alice "))
        status = alice[table[0].index("STATUS") :]
        assert status.endswith("…") and shown.startswith(status[:-1]), status
        jo = next(line for line in table if line.startswith("jo "))
        assert jo[table[0].index("STATE") :].split()[0] == "stopped" and jo.endswith("-")
    assert "DEPLOYED" in listed(columns="200")[0] and "DEPLOYED" not in listed(columns="80")[0]

    (row,) = [a for a in json.loads(ok(hive.cli("list", "--json"))) if a["name"] == "alice"]
    assert row["status"] == LONG_STATUS


def test_stop_start_restart_and_rebuild_change_the_process(hive: Hive) -> None:
    ok(hive.cli("spawn", "bob"))
    first = agents(hive)["bob"]["pid"]
    assert "stopped bob" in ok(hive.cli("stop", "bob"))
    assert agents(hive)["bob"]["state"] == "stopped"
    assert "started bob" in ok(hive.cli("start", "bob"))
    second = agents(hive)["bob"]["pid"]
    assert "restarted bob" in ok(hive.cli("restart", "bob"))
    third = agents(hive)["bob"]["pid"]
    assert "rebuilt bob" in ok(hive.cli("rebuild", "bob"))
    fourth = agents(hive)["bob"]["pid"]
    pids = [first, second, third, fourth]
    assert len(set(pids)) == 4, pids
    assert agents(hive)["bob"]["alive"] is True


def test_destroy_keeps_a_tombstone_until_purged(hive: Hive) -> None:
    ok(hive.cli("spawn", "carol"))
    (hive.state_dir / "agents" / "carol" / "state" / "notes.md").write_text("remember")
    assert "tombstone kept" in ok(hive.cli("destroy", "carol"))
    assert agents(hive)["carol"]["state"] == "tombstone"
    assert "already destroyed" in refused(hive.cli("destroy", "carol"))
    # Spawning the name again revives the tombstone with its state.
    ok(hive.cli("spawn", "carol"))
    notes = hive.state_dir / "agents" / "carol" / "state" / "notes.md"
    assert notes.read_text() == "remember"
    ok(hive.cli("destroy", "carol"))
    assert "purged the tombstone" in ok(hive.cli("destroy", "--purge", "carol"))
    assert "no agent or tombstone" in refused(hive.cli("destroy", "carol"))


def test_request_spawn_pending_approve_and_deny(hive: Hive) -> None:
    assert "queued approval 1" in ok(hive.cli("request-spawn", "dave"))
    ok(hive.cli("request-spawn", "erin"))
    assert "already pending" in refused(hive.cli("request-spawn", "dave"))
    pending = json.loads(ok(hive.cli("pending", "--json")))
    assert [(p["id"], p["agent"], p["requester"]) for p in pending] == [
        (1, "dave", "operator"),
        (2, "erin", "operator"),
    ]
    assert "dave" in ok(hive.cli("pending"))
    assert "spawned dave" in ok(hive.cli("approve", "1"))
    assert "denied 2" in ok(hive.cli("deny", "2", "--reason", "not now"))
    assert agents(hive)["dave"]["state"] == "running"
    assert "erin" not in agents(hive)
    assert "no pending approvals" in ok(hive.cli("pending"))
    assert "already approved" in refused(hive.cli("approve", "1"))
    assert "already denied" in refused(hive.cli("deny", "2"))
    assert "no approval with id 99" in refused(hive.cli("approve", "99"))
    one_host = "host: this hive runs on one host (no HIVE_NATS_URL)"
    assert one_host in refused(hive.cli("approve", "1", "--host", "beta"))
    assert one_host in refused(hive.cli("answer", "1", "yes", "--host", "beta"))


async def test_inbox_shows_agent_messages_with_control_bytes_escaped(hive: Hive) -> None:
    ok(hive.cli("spawn", "frank"))
    async with hive.client(hive.agent_sock("frank")) as frank:
        body = "alert\x1b[2J\u202eevil\nline2"
        await frank.call(rq.Send(cmd="send", to="operator", body=body), rs.Sent)
    out = ok(hive.cli("inbox"))
    assert "\x1b" not in out and "\u202e" not in out
    assert "alert\\x1b[2J\\u202eevil\\x0aline2" in out
    assert "frank" in out
    listed = json.loads(ok(hive.cli("inbox", "--json")))
    assert [(m["sender"], m["body"]) for m in listed] == [("frank", body)]
    assert listed[0]["delivered_at"] is not None


def test_send_reads_stdin_and_refuses_unknown_and_empty(hive: Hive) -> None:
    ok(hive.cli("spawn", "gina"))
    assert "sent message 1 to gina" in ok(hive.cli("send", "gina", "-", stdin="from stdin"))
    assert "no agent named 'nobody1'" in refused(hive.cli("send", "nobody1", "hi"))
    assert "empty" in refused(hive.cli("send", "gina", "-", stdin=""))
    assert "yourself" in refused(hive.cli("send", "operator", "hi"))


def test_every_command_fails_cleanly_when_the_daemon_is_down(hive: Hive) -> None:
    assert hive.stop() == 0
    for args in (
        ["list"],
        ["list", "--json"],
        ["pending"],
        ["inbox"],
        ["spawn", "zed"],
        ["request-spawn", "zed"],
        ["start", "zed"],
        ["stop", "zed"],
        ["kill", "zed"],
        ["restart", "zed"],
        ["rebuild", "zed"],
        ["destroy", "zed"],
        ["approve", "1"],
        ["deny", "1"],
        ["send", "zed", "hi"],
    ):
        assert "not running" in refused(hive.cli(*args)), args


def test_serve_refuses_a_second_daemon_on_the_same_sockets(hive: Hive) -> None:
    result = hive.cli("serve", "--state-dir", str(hive.root / "other-state"))
    assert result.returncode == 1
    assert "already listening" in result.stderr
    assert agents(hive)["hm1nd"]["state"] == "running"


def test_shell_completion_is_offered_and_answers_a_tab_press() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_")}
    result = subprocess.run(
        [sys.executable, "-m", "hive_core", "--show-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "_HIVE_CORE_COMPLETE=complete_bash" in result.stdout
    tab = {**env, "_HIVE_CORE_COMPLETE": "complete_bash", "COMP_WORDS": "hive-core pen"}
    result = subprocess.run(
        [sys.executable, "-m", "hive_core"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**tab, "COMP_CWORD": "1"},
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "pending\n", "")


def piped_to_head(hive: Hive, *args: str) -> tuple[str, int, str]:
    """`hive-core ARGS | head -1`: head's output, then hive-core's exit status and stderr.

    The tests give hive-core more to print than a pipe holds, so it still writes when head
    has exited."""
    cli = subprocess.Popen(
        [sys.executable, "-m", "hive_core", *args],
        env=hive.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert cli.stdout is not None
    head = subprocess.Popen(["head", "-1"], stdin=cli.stdout, stdout=subprocess.PIPE, text=True)
    cli.stdout.close()  # head holds the only reading end: when it exits, the pipe is closed
    first, _ = head.communicate(timeout=60)
    _, err = cli.communicate(timeout=60)
    return first, cli.returncode, err


async def test_show_cut_short_by_head_ends_quietly(hive: Hive) -> None:
    hive.spawn_idle("kit")
    proposed = hive.state_dir / "agents" / "kit" / "proposed"
    with (proposed / "agent.toml").open("a") as toml:
        toml.writelines(f"# note {i}: {'x' * 80}\n" for i in range(2000))
    git(proposed, "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qam", "notes")
    async with hive.client(hive.manager_sock) as manager:
        req = rq.RequestApplyCommit(
            cmd="request_apply_commit", agent="kit", commit=git(proposed, "rev-parse", "HEAD")
        )
        approval = (await manager.call(req, rs.ApprovalResult)).approval
    assert piped_to_head(hive, "show", str(approval.id)) == (
        f"approval {approval.id}: apply_commit kit\n",
        141,
        "",
    )


async def test_logs_cut_short_by_head_ends_quietly(hive: Hive) -> None:
    hive.spawn_idle("kit")
    state = hive.state_dir / "agents" / "kit"
    history = await EventHistory.open(state / "state")
    try:
        for i in range(300):
            await history.publish(Text(text=f"text {i}: {'x' * 1000}"), "t1")
    finally:
        await history.close()
    with (state / "harness.log").open("a") as log:
        log.writelines(f"line {i}: {'y' * 120}\n" for i in range(1500))
    ok(hive.cli("start", "kit"))

    # The harness adds lines and events of its own when it starts: the first shown may be one.
    first, status, err = piped_to_head(hive, "logs", "kit", "-n", "1000")
    assert (first.count("\n"), status, err) == (1, 141, "")
    first, status, err = piped_to_head(hive, "logs", "kit", "--raw", "-n", "1500")
    assert (first.count("\n"), status, err) == (1, 141, "")


@pytest.mark.parametrize("args", [["hive_core", "--version"], ["hive_agent", "agent", "--help"]])
def test_a_closed_stdout_ends_quietly_when_what_is_buffered_is_flushed(args: list[str]) -> None:
    # Buffered, as stdout into a pipe is by default: the output is written at the end.
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, "-m", *args],
            env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (141, "")


async def test_killed_agent_process_is_gone_and_restart_brings_it_back(hive: Hive) -> None:
    ok(hive.cli("spawn", "hank"))
    pid = agents(hive)["hank"]["pid"]
    assert isinstance(pid, int)
    ok(hive.cli("kill", "hank"))
    await wait_until_dead(pid)
    ok(hive.cli("start", "hank"))
    assert agents(hive)["hank"]["alive"] is True


def bare_cli(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """`hive-core ARGS` with no daemon: its run dir does not exist."""
    return subprocess.run(
        [sys.executable, "-m", "hive_core", *args],
        env={**os.environ, "HIVE_RUN_DIR": "/nonexistent/hive", **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_prints_the_package_version() -> None:
    result = bare_cli("--version")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        f"hive-core {__version__}\n",
        "",
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["inbox", "--wait", "181"], "--wait: must be ≤ 180"),
        (["inbox", "--wait", "-1"], "--wait: must be ≥ 0"),
        (["inbox", "--limit", "0"], "--limit: must be ≥ 1"),
        (["inbox", "--limit", "1001"], "--limit: must be ≤ 1000"),
        (["inbox", "--before", "0"], "--before: must be > 0"),
        (["inbox", "--after", "-1"], "--after: must be ≥ 0"),
        (["inbox", "--after", str(2**63)], "--after: must be ≤ 9223372036854775807"),
        (["approve", "0"], "ID: must be > 0"),
        (["deny", str(2**63)], "ID: must be ≤ 9223372036854775807"),
        (["deny", "1", "--reason", "r" * 4097], "--reason: must be at most 4096 characters"),
        (["answer", "0", "yes"], "ID: must be > 0"),
        (["answer", "1", ""], "TEXT: must be at least 1 character"),
        (["cancel-question", "-3"], "ID: must be > 0"),
        (["approve", "1", "--host", "Beta"], "--host: must match"),
        (["serve", "--dashboard-port", "70000"], "bad setting --dashboard-port: "),
        (["serve", "--operator-pronouns", " "], "bad setting --operator-pronouns: "),
    ],
)
def test_an_out_of_range_value_is_refused_naming_its_option(args: list[str], error: str) -> None:
    assert refused(bare_cli(*args)).startswith(f"hive-core: {error}")


def test_a_too_long_body_and_a_bad_setting_from_the_environment_are_named() -> None:
    body = "x" * (rq.MAX_BODY + 1)
    assert refused(bare_cli("send", "alice", "-", stdin=body)) == (
        f"hive-core: BODY: must be at most {rq.MAX_BODY} characters"
    )
    bad = bare_cli("serve", HIVE_DASHBOARD_PORT="70000", HIVE_STATE_DIR="/nonexistent/state")
    assert refused(bad).startswith("hive-core: bad setting HIVE_DASHBOARD_PORT: ")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["inbox", "--wait", "nan"], "Invalid value for '--wait': not a finite number: 'nan'"),
        (["inbox", "--wait", "soon"], "Invalid value for '--wait': not a number: 'soon'"),
        (["inbox", "--limit", "many"], "Invalid value for '--limit': 'many' is not a valid"),
        (["approve", "first"], "Invalid value for 'ID': 'first' is not a valid integer"),
        (["serve", "--backend", "podman"], "Invalid value for '--backend': 'podman' is not one"),
        (["list", "--everything"], "No such option '--everything'"),
        (["launch"], "No such command 'launch'"),
        (["show"], "Missing argument 'ID'"),
    ],
)
def test_a_value_of_the_wrong_kind_is_a_usage_error_naming_its_option(
    args: list[str], error: str
) -> None:
    result = bare_cli(*args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Usage: hive-core")
    assert result.stderr.strip().splitlines()[-1].startswith(f"hive-core: {error}")


def test_no_command_prints_the_help_as_a_usage_error() -> None:
    result = bare_cli()
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("Usage: hive-core [OPTIONS] COMMAND")
    assert "  spawn " in result.stderr and "--show-completion [SHELL]" in result.stderr


async def test_inbox_wait_shows_only_new_messages_and_exits_1_when_none_came(hive: Hive) -> None:
    hive.spawn_idle("ivy")
    assert refused(hive.cli("inbox", "--wait", "0.2")) == "hive-core: no new message within 0.2s"
    async with hive.client(hive.agent_sock("ivy")) as ivy:
        one = (await ivy.call(rq.Send(cmd="send", to="operator", body="one"), rs.Sent)).id
        shown = ok(hive.cli("inbox", "--wait", "5"))
        assert "one" in shown
        # Shown once, so not new again; a plain `inbox` still lists it.
        assert "no new message" in refused(hive.cli("inbox", "--wait", "0.2"))
        assert "one" in ok(hive.cli("inbox"))

        two = (await ivy.call(rq.Send(cmd="send", to="operator", body="two"), rs.Sent)).id
        listed = json.loads(ok(hive.cli("inbox", "--after", str(one), "--json")))
        assert [m["body"] for m in listed] == ["two"]
        quiet = hive.cli("inbox", "--after", str(two), "--wait", "0.2", "--json")
        assert quiet.returncode == 1 and json.loads(quiet.stdout) == []

        follower = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "hive_core", "inbox", "--after", str(two), "--wait", "60"],
            env=hive.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        await ivy.call(rq.Send(cmd="send", to="operator", body="three"), rs.Sent)
        async with asyncio.timeout(30):
            out, err = (s.decode() for s in await follower.communicate())
    assert follower.returncode == 0, err
    assert "three" in out and "two" not in out and "one" not in out


# The client commands import none of these: each costs an interpreter start or more
# (docs/benchmarks.md, cli_list_vs_bare_typer_p50). typer and click are the CLI's own.
HEAVY_MODULES = {
    "asyncio", "pydantic", "pydantic_core", "pydantic_settings", "rich",
    "fastapi", "starlette", "uvicorn", "mcp", "uvloop", "sqlite3", "hive_agent",
    "hive_core.daemon", "hive_core.settings", "hive_share.models", "hive_share.requests",
}  # fmt: skip
IMPORT_PROBE = """
import json, sys
from hive_core.cli import main
codes = [main(args) for args in json.loads(sys.argv[1])]
print(json.dumps({"codes": codes, "modules": sorted(sys.modules)}))
"""


def test_the_client_commands_import_no_pydantic_asyncio_or_web_stack(hive: Hive) -> None:
    hive.spawn_idle("jo")
    commands = [
        ["list"], ["list", "--json"], ["pending"], ["inbox"], ["inbox", "--json"],
        ["questions"], ["reminders"], ["send", "jo", "hi"], ["stop", "jo"],
        ["--show-completion", "bash"], ["--version"], ["--help"], ["inbox", "--limit", "0"],
        ["inbox", "--wait", "nan"],
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, json.dumps(commands)],
        env=hive.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["codes"] == [0] * 12 + [1, 2], result.stderr
    loaded = {m for m in probe["modules"] if m in HEAVY_MODULES or m.split(".")[0] in HEAVY_MODULES}
    assert loaded == set()


def test_the_banner_names_the_cli_as_hive_cli_name_says(idle_hive: Hive) -> None:
    idle_hive.extra_env["HIVE_CLI_NAME"] = "./dev"
    idle_hive.start()
    assert idle_hive.stop() == 0  # READY=1 goes out just before the banner; exit flushes it
    assert "try, from another shell:  ./dev spawn alice && ./dev list" in idle_hive.log()
    assert "start it with `./dev serve`" in refused(
        idle_hive.cli("list", "--run-dir", "/nonexistent")
    )
