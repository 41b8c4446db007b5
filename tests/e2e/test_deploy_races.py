"""Races on one approval, driven with a git that the test holds at a chosen step: a deny
during the deploy, a second approve, a rebuild, a SIGTERM and a SIGKILL of hive-core.
Each ends in exactly one state: the approval's status, its tags, `applied/main`, the
record and what the requester was told agree.

hive-core runs git through `HIVE_GIT`; here that is a shim which passes every call to the
real git, except the armed one: that one tells the test its pid and waits for SIGUSR1
before it goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hive_share import helper
from tests.e2e.browser import Shots, browser, open_dashboard, problems
from tests.e2e.hive import EXIT_TIMEOUT, Hive, short_tmp, wait_until_dead
from tests.e2e.test_deploy_crash import Crashable, _approval, _row
from tests.e2e.test_deploys import _annotation, _applied, _commit, _manager_inbox, _propose, _tags
from tests.git import git as _git

SHIM = """#!{python}
import json, os, signal, socket, sys
args = sys.argv[1:]
armed = {armed!r}
try:
    with open(armed) as f:
        want = json.load(f)
except FileNotFoundError:
    want = None
if want is not None and all(word in " ".join(args) for word in want):
    os.unlink(armed)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(str(os.getpid()).encode(), {reached!r})
    signal.sigwait([signal.SIGUSR1])
os.execv({git!r}, [{git!r}, *args])
"""


class Held(Crashable):
    """A hive whose git waits where the test says, until the test lets it go on."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, SHIM)
        self.children: list[subprocess.Popen[str]] = []

    def hold(self, *words: str) -> None:
        self.armed.write_text(json.dumps(list(words)))

    def cli_in_background(self, *args: str) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, "-m", "hive_core", *args], env=self.hive.env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self.children.append(child)
        return child


@pytest.fixture
def held() -> Iterator[Held]:
    root = short_tmp()
    h = Held(root)
    try:
        h.hive.start()
        assert h.hive.cli("stop", "hm1nd").returncode == 0  # the tests read its inbox
        assert h.hive.cli("spawn", "bob").returncode == 0
        yield h
    finally:
        for child in h.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.communicate(timeout=EXIT_TIMEOUT)
        h.hive.close()
        h.reached.close()
        shutil.rmtree(root, ignore_errors=True)


def _release(pid: int) -> None:
    os.kill(pid, signal.SIGUSR1)


def _finish(child: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = child.communicate(timeout=60)
    return child.returncode, out, err


async def _proposal(hive: Hive, note: str) -> tuple[str, str, int]:
    """(the deployed commit, the proposed one, its approval id)."""
    initial = _git(_applied(hive, "bob"), "rev-parse", "main")
    sha = _commit(hive, "bob", f'model = "claude-{note}"\n')
    approval = await _propose(hive, "bob", sha)
    return initial, sha, approval.id


def _deployed(hive: Hive, approval_id: int, sha: str, initial: str) -> None:
    """The one consistent ending of a deploy that went through."""
    assert _approval(hive, approval_id)["status"] == "approved"
    tags = _tags(hive, "bob")
    ends = {t.split("/")[0] for t in tags if t.endswith(f"/{approval_id}")} - {"proposal"}
    assert ends == {"deployed"}, tags
    assert _annotation(hive, "bob", f"deployed/{approval_id}") == (
        f"approval {approval_id}\n\ndeployed over {initial}"
    )
    assert _git(_applied(hive, "bob"), "rev-parse", "main") == sha
    assert _git(_applied(hive, "bob"), "status", "--porcelain") == ""
    row = _row(hive, "bob")
    assert (row["deployed_commit"], row["state"]) == (sha, "running")
    model = (_applied(hive, "bob") / "agent.toml").read_text().split('"')[1]
    assert row["model"] == model  # what the harness runs is what was deployed


async def _told(hive: Hive) -> list[tuple[int, str]]:
    return [
        (m.event.id, m.event.status)
        for m in await _manager_inbox(hive)
        if isinstance(m.event, helper.ApprovalResolved)
    ]


@pytest.mark.parametrize(
    "step",
    [("ls-tree",), ("tag", "deployed/"), ("reset", "--hard")],
    ids=["prepare", "tag", "reset"],
)
async def test_a_deny_during_a_deploy_is_refused_and_the_deploy_ends_alone(
    held: Held, step: tuple[str, ...]
) -> None:
    hive = held.hive
    initial, sha, approval_id = await _proposal(hive, "deny-race")
    held.hold(*step)
    approve = held.cli_in_background("approve", str(approval_id))
    git_pid = held.wait_reached()

    denied = hive.cli("deny", str(approval_id), "--reason", "changed my mind")
    _release(git_pid)
    code, out, err = _finish(approve)

    assert denied.returncode != 0
    assert f"approval {approval_id} is deploying; deny it after it finishes or roll back" in (
        denied.stderr
    )
    assert code == 0, err
    assert "deployed" in out
    _deployed(hive, approval_id, sha, initial)
    assert await _told(hive) == [(approval_id, "approved")]


async def test_two_approves_of_one_commit_deploy_it_once(held: Held) -> None:
    hive = held.hive
    initial, sha, approval_id = await _proposal(hive, "twice")
    pid = _row(hive, "bob")["pid"]
    held.hold("ls-tree")
    first = held.cli_in_background("approve", str(approval_id))
    git_pid = held.wait_reached()

    second = hive.cli("approve", str(approval_id))
    _release(git_pid)
    code, _, err = _finish(first)

    assert code == 0, err
    assert second.returncode != 0 and f"approval {approval_id} is deploying" in second.stderr
    _deployed(hive, approval_id, sha, initial)
    assert hive.log().count(f"deployed {sha[:12]} to bob (approval {approval_id})") == 1
    assert _row(hive, "bob")["pid"] != pid
    assert await _told(hive) == [(approval_id, "approved")]
    again = hive.cli("approve", str(approval_id))
    assert again.returncode != 0 and "already approved" in again.stderr


async def test_an_approve_and_a_rebuild_of_one_agent_take_turns(held: Held) -> None:
    hive = held.hive
    initial, sha, approval_id = await _proposal(hive, "rebuild-race")
    held.hold("ls-tree")
    approve = held.cli_in_background("approve", str(approval_id))
    git_pid = held.wait_reached()

    rebuild = held.cli_in_background("rebuild", "bob")
    _release(git_pid)
    code, _, err = _finish(approve)
    rebuilt, _, rebuild_err = _finish(rebuild)

    assert code == 0, err
    assert rebuilt == 0, rebuild_err
    _deployed(hive, approval_id, sha, initial)
    assert await _told(hive) == [(approval_id, "approved")]


async def test_a_sigkilled_hive_core_leaves_no_git_to_write_after_the_restart(
    held: Held,
) -> None:
    hive = held.hive
    initial, sha, approval_id = await _proposal(hive, "orphan")
    held.hold("tag", "deployed/")
    approve = held.cli_in_background("approve", str(approval_id))
    git_pid = held.wait_reached()

    hive.kill9()
    await wait_until_dead(git_pid, bound=10.0)  # it dies with hive-core, never released
    _finish(approve)
    hive.start()

    assert _approval(hive, approval_id)["status"] == "pending"  # never finalized
    assert set(_tags(hive, "bob")) == {f"proposal/{approval_id}"}
    assert _git(_applied(hive, "bob"), "rev-parse", "main") == initial
    done = hive.cli("approve", str(approval_id))
    assert done.returncode == 0, done.stderr
    _deployed(hive, approval_id, sha, initial)


async def test_a_sigterm_during_a_held_deploy_stops_soon_and_starts_nothing(held: Held) -> None:
    hive = held.hive
    initial, sha, approval_id = await _proposal(hive, "sigterm")
    held.hold("ls-tree")
    approve = held.cli_in_background("approve", str(approval_id))
    git_pid = held.wait_reached()
    assert hive.proc is not None

    hive.proc.send_signal(signal.SIGTERM)
    hive.wait_for_notify("STOPPING=1")
    _release(git_pid)  # the deploy goes on while hive-core drains
    code = await asyncio.to_thread(hive.proc.wait, EXIT_TIMEOUT)
    answered, _, err = _finish(approve)

    assert code == 0
    assert answered != 0, err  # never "approved" by a hive-core that could not restart bob
    after = hive.log().split("shutting down", 1)[1]
    for word in ("restarting", "crashed", "Traceback"):
        assert word not in after, after

    hive.start()  # the deploy is finished and verified, or was never finalized
    status = _approval(hive, approval_id)["status"]
    if status == "pending":
        assert _git(_applied(hive, "bob"), "rev-parse", "main") == initial
        assert hive.cli("approve", str(approval_id)).returncode == 0
    _deployed(hive, approval_id, sha, initial)
    assert await _told(hive) == [(approval_id, "approved")]


async def test_the_dashboard_shows_an_approval_under_way_without_buttons(
    held: Held, tmp_path: Path
) -> None:
    hive = held.hive
    shots = Shots(tmp_path / "shots")
    manager_proposed = hive.state_dir / "agents" / "hm1nd" / "proposed"
    (manager_proposed / "agent.toml").write_text('model = "claude-manager-own"\n')
    _git(manager_proposed, "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qam", "own")
    own = await _propose(hive, "hm1nd", _git(manager_proposed, "rev-parse", "HEAD"))
    _, _, approval_id = await _proposal(hive, "dashboard")
    async with browser() as b:
        page = await open_dashboard(b, hive)
        own_card = page.locator(f'[data-approval="{own.id}"]')
        await own_card.locator("text=hm1nd proposes a change to its own config").wait_for()
        card = page.locator(f'[data-approval="{approval_id}"]')
        await card.locator('[data-action="approve"]').wait_for()

        held.hold("ls-tree")
        approve = held.cli_in_background("approve", str(approval_id))
        git_pid = held.wait_reached()
        await card.locator("text=approved — deploying…").wait_for()
        assert await card.locator("button").count() == 0
        assert await page.locator("#pending").text_content() == "1 needs you"  # only hm1nd's
        await card.scroll_into_view_if_needed()
        await shots.take(page, "dashboard-approval-under-way")
        _release(git_pid)
        code, _, err = _finish(approve)
        assert code == 0, err
        await card.wait_for(state="detached")
        await own_card.locator('[data-action="deny"]').wait_for()  # still the operator's
        assert problems(page) == []
