"""SIGKILL a live hive-core at each git step of a deploy and of a roll back, then restart it:
every approval ends in one state, and the tags, `applied/main` and the record agree.

hive-core runs git through `HIVE_GIT`; here that is a shim which passes every call to
the real git, except the armed one: that one takes `index.lock` (as a git killed in the
middle of a write leaves it), tells the test its pid, and waits to be killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.hive import Hive, short_tmp
from tests.e2e.test_deploys import _applied, _commit, _propose, _tags
from tests.git import git as _git

REAL_GIT = shutil.which("git")
REACH_TIMEOUT = 30.0

SHIM = """#!{python}
import json, os, signal, socket, sys
args = sys.argv[1:]
verb = [a for a in args if not a.startswith("-") and "=" not in a]
armed = {armed!r}
try:
    with open(armed) as f:
        want = json.load(f)
except FileNotFoundError:
    want = None
line = " ".join(args)
if want is not None and all(word in line for word in want["words"]):
    want["skip"] -= 1
    if want["skip"] < 0:
        os.unlink(armed)
        git_dir = next(a.split("=", 1)[1] for a in args if a.startswith("--git-dir="))
        open(os.path.join(git_dir, "index.lock"), "w").close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.sendto(str(os.getpid()).encode(), {reached!r})
        signal.pause()
    with open(armed, "w") as f:
        json.dump(want, f)
os.execv({git!r}, [{git!r}, *args])
"""


class Crashable:
    """A hive whose git stops where the test says, and the socket it reports on; `shim` is
    the git's script (a template with `python`, `armed`, `reached` and `git`)."""

    def __init__(self, root: Path, shim: str = SHIM) -> None:
        assert REAL_GIT is not None
        self.armed = root / "armed.json"
        reached = root / "reached"
        self.reached = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.reached.bind(str(reached))
        self.reached.settimeout(REACH_TIMEOUT)
        path = root / "git"
        values = {"python": sys.executable, "armed": str(self.armed), "reached": str(reached)}
        path.write_text(shim.format(git=REAL_GIT, **values))
        path.chmod(0o755)
        self.hive = Hive(root, {"HIVE_GIT": str(path)})

    def arm(self, words: list[str], skip: int) -> None:
        self.armed.write_text(json.dumps({"words": words, "skip": skip}))

    def wait_reached(self) -> int:
        try:
            return int(self.reached.recv(64))
        except TimeoutError:
            raise AssertionError(f"git never ran {self.armed.read_text()}") from None


@pytest.fixture
def crashable() -> Iterator[Crashable]:
    root = short_tmp()
    c = Crashable(root)
    try:
        c.hive.start()
        yield c
    finally:
        c.hive.close()
        c.reached.close()
        shutil.rmtree(root, ignore_errors=True)


def _approval(hive: Hive, approval_id: int) -> dict[str, object]:
    shown = hive.cli("show", str(approval_id), "--json")
    assert shown.returncode == 0, shown.stderr
    got: dict[str, object] = json.loads(shown.stdout)
    return got


def _row(hive: Hive, name: str) -> dict[str, object]:
    rows = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
    row: dict[str, object] = rows[name]
    return row


def _consistent(hive: Hive, approval_id: int, sha: str, initial: str) -> str:
    """Check that the approval, its tags, `applied/main` and the record agree; return the
    approval's status."""
    status = _approval(hive, approval_id)["status"]
    tags = _tags(hive, "bob")
    main = _git(_applied(hive, "bob"), "rev-parse", "main")
    ends = {t.split("/")[0] for t in tags if t.endswith(f"/{approval_id}")} - {"proposal"}
    expected = {"pending": (set(), initial), "approved": ({"deployed"}, sha),
                "failed": ({"failed"}, initial)}  # fmt: skip
    assert status in expected, status
    assert (ends, main) == expected[str(status)], (status, tags, main)
    row = _row(hive, "bob")
    assert (row["deployed_commit"], row["state"]) == (main, "running")
    assert not (_applied(hive, "bob") / ".git" / "index.lock").exists()
    assert _git(_applied(hive, "bob"), "status", "--porcelain") == ""
    return str(status)


def _crash_during_approve(c: Crashable, approval_id: int, words: list[str], skip: int) -> None:
    hive = c.hive
    c.arm(words, skip)
    approve = subprocess.Popen(
        [sys.executable, "-m", "hive_core", "approve", str(approval_id)],
        env=hive.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        git_pid = c.wait_reached()
        hive.kill9()
        with contextlib.suppress(ProcessLookupError):  # it dies with the daemon
            os.kill(git_pid, signal.SIGKILL)
    finally:
        approve.wait(timeout=30)
    hive.start()


DEPLOY_STEPS = [
    (["ls-tree"], 0),  # prepare: the tree's files and sizes
    (["cat-file", "blob"], 0),  # prepare: agent.toml
    (["merge-base", "--is-ancestor"], 0),  # the check after prepare
    (["tag", "deployed/"], 0),  # finalize: the tag
    (["reset", "--hard"], 0),  # finalize: main moves
    (["clean"], 0),  # finalize: the files
]


async def test_a_deploy_killed_at_each_git_step_ends_consistent(crashable: Crashable) -> None:
    hive = crashable.hive
    assert hive.cli("spawn", "bob").returncode == 0
    for i, (words, skip) in enumerate(DEPLOY_STEPS):
        initial = _git(_applied(hive, "bob"), "rev-parse", "main")
        sha = _commit(hive, "bob", f'model = "claude-after-crash-{i}"\n')
        approval = await _propose(hive, "bob", sha)

        await asyncio.to_thread(_crash_during_approve, crashable, approval.id, words, skip)

        status = _consistent(hive, approval.id, sha, initial)
        if status == "pending":  # never finalized: approving it again deploys it
            done = hive.cli("approve", str(approval.id))
            assert done.returncode == 0, done.stderr
            assert _consistent(hive, approval.id, sha, initial) == "approved"
        else:
            assert status == "approved", words


ROLL_BACK_STEPS = [
    (["tag", "failed/"], 0),  # the failed tag, naming where to go back to
    (["reset", "--hard"], 1),  # main goes back (the first reset was the deploy's)
    (["tag", "--delete", "deployed/"], 0),  # the deployed tag goes
]


async def test_a_roll_back_killed_at_each_git_step_ends_failed_and_back(
    crashable: Crashable,
) -> None:
    hive = crashable.hive
    assert hive.cli("spawn", "bob").returncode == 0
    initial = _git(_applied(hive, "bob"), "rev-parse", "main")
    for i, (words, skip) in enumerate(ROLL_BACK_STEPS):
        never_up = f'# attempt {i}\n[mcp_servers.mute]\ncommand = "true"\n'  # runs, says nothing
        sha = _commit(hive, "bob", never_up)
        approval = await _propose(hive, "bob", sha)

        await asyncio.to_thread(_crash_during_approve, crashable, approval.id, words, skip)

        assert _consistent(hive, approval.id, sha, initial) == "failed", words
        assert "mute" not in (_applied(hive, "bob") / "agent.toml").read_text()
