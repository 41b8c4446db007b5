"""Config as code: a commit the manager proposes becomes an approval with its diff, and an
approved one is deployed in phases (prepare → build → finalize, or abort); the build is
the backend's (`nix build` of the agent's system on the nixos backend, nothing on local).

Every step leaves a tag in the agent's core-owned `applied/` repo on the proposed
commit: `proposal/<id>` when queued, then `deployed/<id>`, `failed/<id>` (annotated
with the error) or `denied/<id>` (annotated with the reason). Only a deploy that got
through prepare and build moves `applied/main`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from hive_core import config_repos, git
from hive_core.errors import BackendError, InvalidRequest, NotFound
from hive_core.git import GitError, Repo
from hive_core.services import Services
from hive_core.specs import spec_for
from hive_share import agent_config
from hive_share.models import Approval, ApprovalStatus

logger = logging.getLogger(__name__)

MAX_DIFF = 256 * 1024
"""Bytes of unified diff one proposal may carry; the operator must be able to read it."""
ENDINGS: tuple[tuple[str, ApprovalStatus], ...] = (
    ("failed", "failed"),
    ("denied", "denied"),
    ("deployed", "approved"),
)
"""The tag that ends a proposal, and the approval status it means. `failed/` comes first:
beside a `deployed/` tag it means a roll back was under way."""
ROLLED_BACK = re.compile(r"^rolled back to ([0-9a-f]{40}|[0-9a-f]{64})$", re.MULTILINE)
DEPLOYED_OVER = re.compile(r"^deployed over ([0-9a-f]{40}|[0-9a-f]{64})$", re.MULTILINE)
COMMIT = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})$")


def applied_repo(s: Services, agent: str) -> Repo:
    return Repo.at(s.settings.agents_dir / agent / "applied")


async def propose(s: Services, agent: str, commit: str, requester: str) -> Approval:
    """Fetch `commit` from the agent's `proposed/` and queue it for the operator.

    Raises:
        NotFound: the agent has no config repos.
        InvalidRequest: no such commit, not built on what is deployed, or no change.
        Conflict: a proposal for this agent is already pending.
    """
    if not COMMIT.match(commit):
        raise InvalidRequest(
            f"commit {commit[:80]!r} is not a full commit id (git rev-parse HEAD prints one)"
        )
    cwd = s.settings.agents_dir
    applied = applied_repo(s, agent)
    base = await config_repos.head(applied, cwd)
    if base is None:
        raise NotFound(f"{agent} has no config repos; request_init_config({agent!r}) first")
    proposed = cwd / agent / "proposed"
    try:
        await git.run(applied, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                      "--", str(proposed), commit, cwd=cwd)  # fmt: skip
        _, out = await git.run(applied, "rev-parse", "--verify", f"{commit}^{{commit}}", cwd=cwd)
    except GitError as exc:
        raise InvalidRequest(f"commit {commit} is not in {agent}'s proposed repo: {exc}") from None
    sha = out.decode().strip()
    code, _ = await git.run(applied, "merge-base", "--is-ancestor", base, sha, cwd=cwd, check=False)
    if code != 0:
        raise InvalidRequest(
            f"commit {sha[:12]} does not build on the deployed commit {base[:12]}: rebase it "
            "onto applied/main (git pull --rebase applied main) and propose the new commit"
        )
    diff = await unified_diff(applied, base, sha, cwd)
    if not diff:
        raise InvalidRequest(f"commit {sha[:12]} changes nothing from the deployed {base[:12]}")
    if len(diff.encode()) > MAX_DIFF:
        raise InvalidRequest(
            f"commit {sha[:12]} changes {len(diff.encode())} bytes of diff; at most {MAX_DIFF} "
            "can be reviewed"
        )
    approval = await s.approvals.add("apply_commit", agent, requester, commit=sha, diff=diff)
    await git.run(applied, "tag", f"proposal/{approval.id}", sha, cwd=cwd)
    logger.info("%s proposed %s for %s (approval %d)", requester, sha[:12], agent, approval.id)
    return approval


async def unified_diff(repo: Repo, base: str, sha: str, cwd: Path) -> str:
    _, out = await git.run(repo, "diff", "--no-ext-diff", "--no-textconv", "--no-color",
                           base, sha, "--", cwd=cwd)  # fmt: skip
    return out.decode("utf-8", errors="replace")


async def deploy(s: Services, approval: Approval) -> str | None:
    """Prepare, build and finalize `approval`'s commit; abort with a `failed/<id>` tag.
    Returns the commit deployed before, for a roll back.

    The caller holds the agent's lock. Raises: BackendError (the deploy failed and was
    tagged; `applied/main` and the running agent are unchanged).
    """
    assert approval.commit is not None
    name, sha, cwd = approval.agent, approval.commit, s.settings.agents_dir
    applied = applied_repo(s, name)
    base = await config_repos.head(applied, cwd)
    try:
        staging = await _prepare(s, applied, name, sha)
        if base is not None:  # what is deployed moved since the proposal: never go back
            code, _ = await git.run(applied, "merge-base", "--is-ancestor", base, sha,
                                    cwd=cwd, check=False)  # fmt: skip
            if code != 0:
                raise BackendError(f"the deployed config moved to {base[:12]} meanwhile")
        await asyncio.to_thread(shutil.rmtree, staging)
        if (record := s.registry.find(name)) is not None:
            await s.backend.build(spec_for(s, record), sha)  # moves nothing
    except (BackendError, agent_config.ConfigError) as exc:
        message = exc.message if isinstance(exc, BackendError) else str(exc)
        await _tag(applied, f"failed/{approval.id}", sha, message, cwd)
        raise BackendError(f"deploy of {sha[:12]} to {name} failed: {message}") from None
    # The commit it replaces goes in the tag: a crash before verify ends needs it.
    over = f"\n\ndeployed over {base}" if base is not None else ""
    await _tag(applied, f"deployed/{approval.id}", sha, f"approval {approval.id}{over}", cwd)
    await reset_to(s, name, sha)
    if s.registry.find(name) is not None:
        await s.registry.set_deployed(name, sha)
    logger.info("deployed %s to %s (approval %d)", sha[:12], name, approval.id)
    return base


async def roll_back(s: Services, approval: Approval, previous: str | None, why: str) -> None:
    """Undo a finalized deploy whose agent did not come up: `applied/main` and the record
    go back to `previous`, and the tag `deployed/<id>` becomes `failed/<id>`."""
    assert approval.commit is not None
    name, cwd = approval.agent, s.settings.agents_dir
    applied = applied_repo(s, name)
    # In this order, so that a crash at any point leaves tags that `reconcile` finishes:
    # the failed tag first, naming where to go back to; then main; then the old tag.
    note = why if previous is None else f"{why}\n\nrolled back to {previous}"
    await _tag(applied, f"failed/{approval.id}", approval.commit, note, cwd)
    if previous is not None:
        await _go_back(s, name, previous)
    await git.run(applied, "tag", "--delete", f"deployed/{approval.id}", cwd=cwd)
    logger.error("rolled %s back to %s: %s", name, (previous or "-")[:12], why)


async def _prepare(s: Services, applied: Repo, name: str, sha: str) -> Path:
    """Check out `sha` into a fresh core-owned staging dir and check what would run there.

    Raises:
        BackendError, ConfigError.
    """
    staging = s.settings.agents_dir / name / "staging"
    await asyncio.to_thread(shutil.rmtree, staging, True)
    _, tar = await git.run(applied, "archive", "--format=tar", sha, cwd=s.settings.agents_dir)
    await asyncio.to_thread(_extract, tar, staging)
    toml = staging / "agent.toml"
    text = toml.read_text(encoding="utf-8") if toml.is_file() else ""
    config = agent_config.parse(text, f"agent.toml at {sha[:12]}")
    for key, server in config.mcp_servers.items():
        problem = _not_runnable(server.command, config.env)
        if problem:
            raise BackendError(f"mcp_servers.{key}: {problem}")
    return staging


def _extract(tar: bytes, into: Path) -> None:
    into.mkdir(mode=0o700)
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(into, filter="data")


def _not_runnable(command: str, env: dict[str, str]) -> str:
    path = env.get("PATH", os.environ.get("PATH", os.defpath))
    if shutil.which(command, path=path) is not None:
        return ""
    if os.sep in command:
        return f"command {command} does not exist or is not executable"
    return f"command {command} is not on PATH"


async def _go_back(s: Services, name: str, previous: str) -> None:
    await reset_to(s, name, previous)
    if s.registry.find(name) is not None:
        await s.registry.set_deployed(name, previous)


async def reset_to(s: Services, name: str, sha: str) -> None:
    """Put `applied/` (main, index and files) back exactly at `sha`. Raises: GitError."""
    applied, cwd = applied_repo(s, name), s.settings.agents_dir
    await git.run(applied, "reset", "--quiet", "--hard", sha, cwd=cwd)
    await git.run(applied, "clean", "--quiet", "-d", "--force", "-x", cwd=cwd)


@dataclass(frozen=True)
class Unverified:
    """A deploy finalized before a crash whose agent was never seen to come up on it."""

    approval: Approval
    previous: str | None
    """The commit to roll back to."""


@dataclass
class Reconciled:
    resolved: list[Approval] = field(default_factory=list)
    """Approvals a tag ended; their requesters have not heard."""
    unverified: list[Unverified] = field(default_factory=list)


async def reconcile(s: Services) -> Reconciled:
    """After a crash, make every pending `apply_commit` agree with its tags: a deploy that
    was tagged `deployed/` is finished (main, record) and left to verify once the agents are
    restored; one tagged `failed/` or `denied/` is resolved as such; one with neither was
    never finalized and stays pending."""
    done = Reconciled()
    for approval in await s.approvals.pending():
        if approval.kind != "apply_commit" or approval.commit is None:
            continue
        try:
            await _reconcile_one(s, approval, done)
        except (BackendError, ValueError) as exc:
            message = exc.message if isinstance(exc, BackendError) else str(exc)
            logger.error("could not reconcile approval %d: %s", approval.id, message)
    return done


async def _reconcile_one(s: Services, approval: Approval, done: Reconciled) -> None:
    assert approval.commit is not None
    name, cwd = approval.agent, s.settings.agents_dir
    applied = applied_repo(s, name)
    for end, status in ENDINGS:
        tag = f"{end}/{approval.id}"
        code, out = await git.run(applied, "tag", "--list", "--format=%(contents)", tag,
                                  cwd=cwd, check=False)  # fmt: skip
        if code != 0 or not out.strip():
            continue
        note = out.decode("utf-8", errors="replace").strip()
        logger.warning("approval %d was interrupted; its tag %s says %s", approval.id, tag, status)
        if end == "deployed":
            await _go_back(s, name, approval.commit)  # forward, in fact: finish the deploy
            over = DEPLOYED_OVER.search(note)
            done.unverified.append(Unverified(approval, over.group(1) if over else None))
            return
        reason = note.split("\n\n")[0]
        if (back := ROLLED_BACK.search(note)) is not None:  # a roll back to finish
            await _go_back(s, name, back.group(1))
            await git.run(applied, "tag", "--delete", f"deployed/{approval.id}",
                          cwd=cwd, check=False)  # fmt: skip
        done.resolved.append(await s.approvals.resolve(approval.id, status, reason))
        return


async def tag_denied(s: Services, approval: Approval, reason: str) -> None:
    """Record a denied proposal as `denied/<id>`, annotated with the reason."""
    if approval.commit is None:
        return
    applied = applied_repo(s, approval.agent)
    note = reason or "denied without a reason"
    await _tag(applied, f"denied/{approval.id}", approval.commit, note, s.settings.agents_dir)


async def _tag(repo: Repo, tag: str, sha: str, message: str, cwd: Path) -> None:
    await git.run(repo, "tag", "--annotate", "--force", "--file=-", tag, sha,
                  cwd=cwd, stdin=message.encode())  # fmt: skip
