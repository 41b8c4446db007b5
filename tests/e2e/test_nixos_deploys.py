"""Deploys on the nixos backend end to end, against the recording shims of
tests/e2e/nixos_shims.py and a git that stops where the test says: a deploy builds through the
meta flake, commits meta and moves the container (a stopped one stays stopped), a failed
`nix build` moves nothing, one that does not come up is moved back, and a SIGKILL at every step
of a deploy ends consistent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys

from tests.e2e.hive import Hive
from tests.e2e.test_deploys import _applied, _commit, _propose, _tags
from tests.e2e.test_nixos_backend import NixosHive, _ok, _row, nixos
from tests.git import git as _git

__all__ = ["nixos"]  # the fixture, from the nixos backend's tests


def _approval(hive: Hive, approval_id: int) -> dict[str, object]:
    got: dict[str, object] = json.loads(_ok(hive.cli("show", str(approval_id), "--json")))
    return got


async def test_a_failed_nix_build_fails_the_deploy_and_moves_nothing(nixos: NixosHive) -> None:
    hive = nixos.hive
    _ok(hive.cli("spawn", "bob"))
    initial = _git(_applied(hive, "bob"), "rev-parse", "main")
    meta_before = nixos.meta_head()
    flake_before = (nixos.meta / "flake.nix").read_text()
    sha = _commit(hive, "bob", 'model = "claude-sonnet-4-5"\n')
    approval = await _propose(hive, "bob", sha)
    why = "error: attribute 'hive-mcp' missing\n       at /nix/store/x-source/agent.nix:3:5"
    nixos.shims.reply("nix", ["build"], code=1, stderr="evaluating…\n" + why + "\n")
    nixos.shims.clear_calls()

    got = hive.cli("approve", str(approval.id))

    assert got.returncode != 0
    assert "attribute 'hive-mcp' missing" in got.stderr
    shown = _approval(hive, approval.id)
    assert shown["status"] == "failed"
    assert "attribute 'hive-mcp' missing" in str(shown["reason"])
    note = _git(_applied(hive, "bob"), "tag", "--list", "--format=%(contents)",
                f"failed/{approval.id}")  # fmt: skip
    assert "nix build failed (1)" in note and "agent.nix:3:5" in note
    assert f"deployed/{approval.id}" not in _tags(hive, "bob")
    assert _git(_applied(hive, "bob"), "rev-parse", "main") == initial
    assert _row(hive, "bob")["deployed_commit"] == initial
    assert nixos.meta_head() == meta_before
    assert (nixos.meta / "flake.nix").read_text() == flake_before
    assert _git(nixos.meta, "status", "--porcelain") == ""
    build = [c for c in nixos.shims.calls("nix") if "build" in c]
    target = f"{nixos.meta}#nixosConfigurations.bob.config.system.build.toplevel"
    assert build == [["--extra-experimental-features", "nix-command flakes", "build", target,
                      "--no-link"]]  # fmt: skip
    assert nixos.nc() == []  # the container was not touched
    assert f"rev={initial}" in nixos.shims.built("bob")
    assert _row(hive, "bob")["alive"] is True


async def test_a_deploy_builds_commits_meta_and_moves_the_container(nixos: NixosHive) -> None:
    hive = nixos.hive
    _ok(hive.cli("spawn", "bob"))
    meta_before = nixos.meta_head()
    sha = _commit(hive, "bob", 'model = "claude-sonnet-4-5"\n')
    approval = await _propose(hive, "bob", sha)
    nixos.shims.clear_calls()

    _ok(hive.cli("approve", str(approval.id)))

    assert _approval(hive, approval.id)["status"] == "approved"
    assert _git(nixos.meta, "rev-list", "--count", f"{meta_before}..HEAD") == "1"
    assert _git(nixos.meta, "log", "-1", "--format=%s") == f"deploy {sha[:12]} to bob"
    assert f"rev={sha}" in (nixos.meta / "flake.nix").read_text()
    assert nixos.nc()[:2] == [["stop", "h-bob"], ["list"]]
    assert ["update", "h-bob", "--flake", f"{nixos.meta}#bob"] in nixos.nc()
    assert f"rev={sha}" in nixos.shims.built("bob")
    row = _row(hive, "bob")
    assert (row["deployed_commit"], row["alive"]) == (sha, True)


async def test_a_deploy_to_a_stopped_agent_moves_its_container_and_leaves_it_stopped(
    nixos: NixosHive,
) -> None:
    hive = nixos.hive
    _ok(hive.cli("spawn", "bob"))
    _ok(hive.cli("stop", "bob"))
    sha = _commit(hive, "bob", 'model = "claude-sonnet-4-5"\n')
    approval = await _propose(hive, "bob", sha)
    nixos.shims.clear_calls()

    _ok(hive.cli("approve", str(approval.id)))

    assert nixos.nc() == [["list"], ["update", "h-bob", "--flake", f"{nixos.meta}#bob"]]
    assert f"rev={sha}" in nixos.shims.built("bob")
    assert _row(hive, "bob")["state"] == "stopped"


async def test_a_deploy_that_does_not_come_up_moves_meta_and_the_container_back(
    nixos: NixosHive,
) -> None:
    hive = nixos.hive
    _ok(hive.cli("spawn", "bob"))
    initial = _git(_applied(hive, "bob"), "rev-parse", "main")
    never_up = '[mcp_servers.mute]\ncommand = "true"\n'  # runs, says nothing
    sha = _commit(hive, "bob", never_up)
    approval = await _propose(hive, "bob", sha)

    got = hive.cli("approve", str(approval.id))

    assert got.returncode != 0 and "rolled back" in got.stderr
    assert _approval(hive, approval.id)["status"] == "failed"
    assert _git(_applied(hive, "bob"), "rev-parse", "main") == initial
    flake = (nixos.meta / "flake.nix").read_text()
    assert f"rev={initial}" in flake and f"rev={sha}" not in flake
    assert f"rev={initial}" in nixos.shims.built("bob")
    messages = _git(nixos.meta, "log", "-2", "--format=%s").splitlines()
    assert messages == ["sync with the agents at the start of bob", f"deploy {sha[:12]} to bob"]
    assert _row(hive, "bob")["alive"] is True


def _consistent(n: NixosHive, approval_id: int, sha: str, initial: str) -> str:
    """The approval, the tags, `applied/main`, the record, meta and the container agree;
    returns the approval's status."""
    hive = n.hive
    status = str(_approval(hive, approval_id)["status"])
    ends = {t.split("/")[0] for t in _tags(hive, "bob") if t.endswith(f"/{approval_id}")}
    main = _git(_applied(hive, "bob"), "rev-parse", "main")
    expected = {"pending": (set(), initial), "approved": ({"deployed"}, sha),
                "failed": ({"failed"}, initial)}  # fmt: skip
    assert status in expected, status
    assert (ends - {"proposal"}, main) == expected[status], (status, ends, main)
    row = _row(hive, "bob")
    assert (row["deployed_commit"], row["state"], row["alive"]) == (main, "running", True)
    assert f"rev={main}" in (n.meta / "flake.nix").read_text()
    assert _git(n.meta, "status", "--porcelain") == ""
    assert not (n.meta / ".git" / "index.lock").exists()
    assert f"rev={main}" in n.shims.built("bob")
    return status


def _crash_during_approve(n: NixosHive, approval_id: int) -> None:
    hive = n.hive
    approve = subprocess.Popen(
        [sys.executable, "-m", "hive_core", "approve", str(approval_id)],
        env=hive.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        pid = n.wait_reached()
        hive.kill9()
        with contextlib.suppress(ProcessLookupError):  # it dies with the daemon
            os.kill(pid, signal.SIGKILL)
    finally:
        approve.wait(timeout=60)
    hive.start()


CRASH_STEPS: list[tuple[str, list[str], int]] = [
    ("nix", ["flake", "lock"], 0),  # build: the staged meta is locked
    ("nix", ["build"], 0),  # build
    ("git", ["commit", "--allow-empty"], 0),  # finalize: the meta commit
    ("nix", ["flake", "lock"], 1),  # finalize: meta locked before its commit
    ("nixos-container", ["stop"], 0),  # finalize: the container stops
    ("nixos-container", ["update"], 0),  # finalize: the container moves
    ("nixos-container", ["start"], 0),  # the agent restarts on it
]


async def test_a_deploy_killed_at_every_step_ends_consistent(nixos: NixosHive) -> None:
    hive = nixos.hive
    _ok(hive.cli("spawn", "bob"))
    for i, (tool, words, skip) in enumerate(CRASH_STEPS):
        initial = _git(_applied(hive, "bob"), "rev-parse", "main")
        sha = _commit(hive, "bob", f'model = "claude-after-crash-{i}"\n')
        approval = await _propose(hive, "bob", sha)
        if tool == "git":
            nixos.arm_git(words, skip)
        else:
            nixos.shims.arm(tool, words, skip)

        await asyncio.to_thread(_crash_during_approve, nixos, approval.id)

        status = _consistent(nixos, approval.id, sha, initial)
        if status == "pending":  # never finalized: approving it again deploys it
            _ok(hive.cli("approve", str(approval.id)))
            assert _consistent(nixos, approval.id, sha, initial) == "approved"
        else:
            assert status == "approved", (tool, words)
