"""Commits a hostile manager could propose: each ends `failed/<id>` with a readable reason
(or is refused when proposed, when it is too big to review), the agent keeps running its
old config, and hive-core's memory does not grow with what the commit holds.

The commits are made with git's plumbing in the manager's `proposed/` repo, so that no
attribute, filter or link is resolved while they are written.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hive_share import helper
from hive_share.client import RemoteError
from tests.e2e.hive import Hive, running_hive
from tests.e2e.test_deploys import (
    _annotation,
    _applied,
    _listed,
    _manager_inbox,
    _propose,
    _tags,
)
from tests.git import git as _git

File = tuple[str, bytes]
"""(git mode, content) of one tree entry."""
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def bob() -> Iterator[Hive]:
    with running_hive() as hive:
        assert hive.cli("stop", "hm1nd").returncode == 0  # the tests read its inbox
        assert hive.cli("spawn", "bob").returncode == 0
        yield hive


def _proposed(hive: Hive) -> Path:
    return hive.state_dir / "agents" / "bob" / "proposed"


def _hostile(hive: Hive, files: dict[str, File], streamed: dict[str, str] | None = None) -> str:
    """A commit on top of what bob runs with `files` added or replaced as they are; each of
    `streamed` is a shell pipeline whose output becomes that file."""
    proposed = _proposed(hive)
    base = _git(_applied(hive, "bob"), "rev-parse", "main")
    env = {"GIT_INDEX_FILE": str(proposed / ".git" / "hostile-index"), "PATH": "/usr/bin:/bin"}

    def git(*args: str, data: bytes | None = None) -> str:
        done = subprocess.run(["git", "-C", str(proposed), *args], input=data, env=env,
                              capture_output=True, check=True, timeout=60)  # fmt: skip
        return done.stdout.decode().strip()

    git("read-tree", base)
    for path, (mode, data) in files.items():
        oid = git("hash-object", "-w", "--no-filters", "--stdin", data=data)
        git("update-index", "--add", "--cacheinfo", f"{mode},{oid},{path}")
    for path, pipeline in (streamed or {}).items():
        done = subprocess.run(
            f"{pipeline} | git -C {proposed} hash-object -w --no-filters --stdin",
            shell=True, env=env, capture_output=True, check=True, timeout=120,
        )  # fmt: skip
        oid = done.stdout.decode().strip()
        git("update-index", "--add", "--cacheinfo", f"100644,{oid},{path}")
    tree = git("write-tree")
    commit = git("-c", "user.name=m", "-c", "user.email=m@x", "commit-tree", tree, "-p", base,
                 "-m", "hostile")  # fmt: skip
    git("update-ref", "refs/heads/main", commit)
    return commit


def _peak_rss(hive: Hive) -> int:
    """hive-core's peak resident memory so far, in bytes."""
    assert hive.proc is not None
    for line in Path(f"/proc/{hive.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


REGULAR = "100644"
LINK = "120000"
DEEP = 5000

FAILING: dict[str, tuple[dict[str, File], str]] = {
    "export-ignore hides an invalid agent.toml": (
        {
            ".gitattributes": (REGULAR, b"agent.toml export-ignore\n"),
            "agent.toml": (REGULAR, b"bogus = 1\n"),
        },
        "bogus: Extra inputs are not permitted",
    ),
    "export-subst makes a valid model of an invalid one": (
        {
            ".gitattributes": (REGULAR, b"agent.toml export-subst\n"),
            "agent.toml": (REGULAR, b'model = "$Format:%h$"\n'),
        },
        "model: model '$Format:%h$' is not one Claude Code can run",
    ),
    "agent.toml is a symbolic link out of the repo": (
        {"agent.toml": (LINK, b"/etc/hostname")},
        "'agent.toml' in commit",
    ),
    "a directory is a symbolic link out of the repo": (
        {"conf": (LINK, b"/etc")},
        "'conf' in commit",
    ),
    "agent.toml is nested too deeply for the parser": (
        {"agent.toml": (REGULAR, b"a = " + b"[" * DEEP + b"]" * DEEP + b"\n")},
        "nested too deeply",
    ),
    "agent.toml is not UTF-8": (
        {"agent.toml": (REGULAR, b'model = "\xff\xfe"\n')},
        "not UTF-8 text",
    ),
    "an MCP server's command is a relative path": (
        {"agent.toml": (REGULAR, b'[mcp_servers.tool]\ncommand = "./tool.sh"\n')},
        "'./tool.sh' is a relative path",
    ),
}


@pytest.mark.parametrize("case", list(FAILING))
async def test_a_hostile_commit_ends_failed_with_a_reason_and_moves_nothing(
    bob: Hive, case: str
) -> None:
    hive = bob
    files, reason = FAILING[case]
    initial = _git(_applied(hive, "bob"), "rev-parse", "main")
    before = _listed(hive, "bob")
    peak = _peak_rss(hive)
    sha = _hostile(hive, files)
    approval = await _propose(hive, "bob", sha)

    failed = hive.cli("approve", str(approval.id))

    assert failed.returncode == 1 and reason in failed.stderr, failed.stderr
    shown = json.loads(hive.cli("show", str(approval.id), "--json").stdout)
    assert shown["status"] == "failed" and reason in shown["reason"]
    assert _tags(hive, "bob")[f"failed/{approval.id}"] == sha
    assert reason in _annotation(hive, "bob", f"failed/{approval.id}")
    assert f"deployed/{approval.id}" not in _tags(hive, "bob")
    assert _git(_applied(hive, "bob"), "rev-parse", "main") == initial
    assert _git(_applied(hive, "bob"), "status", "--porcelain") == ""
    after = _listed(hive, "bob")
    assert (after["pid"], after["deployed_commit"]) == (before["pid"], initial)
    (told,) = await _manager_inbox(hive)
    assert isinstance(told.event, helper.ApprovalResolved)
    assert (told.event.id, told.event.status) == (approval.id, "failed")
    assert _peak_rss(hive) - peak < 50 * MiB
    assert "Traceback" not in hive.log()


@pytest.mark.parametrize(
    ("pipeline", "size"),
    [
        ("head -c 400M /dev/zero", "400.0 MiB"),  # 0.4 MB in git, 400 MiB read whole
        ("yes 0123456789012345678901234567890123456789 | head -c 80M", "80.0 MiB"),
    ],
    ids=["zeros", "text"],
)
async def test_a_commit_with_a_huge_file_is_refused_before_it_is_read(
    bob: Hive, pipeline: str, size: str
) -> None:
    hive = bob
    peak = _peak_rss(hive)
    sha = _hostile(hive, {}, streamed={"big": pipeline})

    with pytest.raises(RemoteError) as info:
        await _propose(hive, "bob", sha)

    assert info.value.code == "invalid_request"
    assert f"'big' in commit {sha[:12]} is {size}; a config file may hold at most 1.0 MiB" in (
        info.value.message
    )
    assert json.loads(hive.cli("pending", "--json").stdout) == []
    assert _peak_rss(hive) - peak < 50 * MiB


async def test_the_commit_own_attributes_change_neither_the_review_nor_the_checkout(
    bob: Hive,
) -> None:
    hive = bob
    toml = b'# $Id$\nmodel = "claude-attributes"\n'
    sha = _hostile(
        hive,
        {
            ".gitattributes": (REGULAR, b"agent.toml -diff ident eol=crlf export-ignore\n"),
            "agent.toml": (REGULAR, toml),
        },
    )
    approval = await _propose(hive, "bob", sha)
    assert approval.diff is not None and '+model = "claude-attributes"' in approval.diff

    done = hive.cli("approve", str(approval.id))

    assert done.returncode == 0, done.stderr
    assert (_applied(hive, "bob") / "agent.toml").read_bytes() == toml
    assert _listed(hive, "bob")["deployed_commit"] == sha
    (told,) = await _manager_inbox(hive)
    assert isinstance(told.event, helper.ApprovalResolved) and told.event.status == "approved"
