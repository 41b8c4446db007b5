"""Config as code: a commit the manager proposes becomes an approval with its diff, and an
approved one is deployed in phases (prepare → build → finalize, or abort); the build is
the backend's (`nix build` of the agent's system on the nixos backend, nothing on local).

Every step leaves a tag in the agent's core-owned `applied/` repo on the proposed
commit: `proposal/<id>` when queued, then `deployed/<id>`, `failed/<id>` (annotated
with the error) or `denied/<id>` (annotated with the reason); a tag is never moved.
Only a deploy that got through prepare and build moves `applied/main`.

What a commit may hold is bounded (`MAX_FILE`, `MAX_FILES`, `MAX_TREE`, `MAX_DIFF`) and
checked from `git ls-tree` sizes before any content is read.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from hive_core import config_repos, git
from hive_core.errors import BackendError, InvalidRequest, NotFound, UnknownAgent
from hive_core.git import GitError, Repo, TooMuchOutput
from hive_core.services import Services
from hive_core.specs import spec_for
from hive_share import agent_config
from hive_share import responses as rs
from hive_share.models import Approval, ApprovalStatus

logger = logging.getLogger(__name__)

MAX_DIFF = 256 * 1024
"""Bytes of unified diff one proposal may carry; the operator must be able to read it."""
MAX_FILE = 1024 * 1024
"""Bytes one file of a config commit may hold."""
MAX_FILES = 1000
"""Files one config commit may hold."""
MAX_TREE = 16 * 1024 * 1024
"""Bytes all the files of one config commit may hold together."""
REGULAR = {"100644", "100755"}
"""The git modes of a regular file; a config commit holds nothing else (no symbolic link,
no submodule)."""
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

Bundle = tuple[Path, str]
"""A git bundle file holding a proposed commit, and the one ref in it to fetch."""


def applied_repo(s: Services, agent: str) -> Repo:
    return Repo.at(s.settings.agents_dir / agent / "applied")


async def propose(
    s: Services, agent: str, commit: str, requester: str, bundle: Bundle | None = None
) -> Approval:
    """Fetch `commit` from the agent's `proposed/` (or from `bundle`, as the manager of
    another host sent it) and queue it for the operator.

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
    source, want = (cwd / agent / "proposed", commit) if bundle is None else bundle
    try:
        await git.run(applied, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                      "--", str(source), want, cwd=cwd)  # fmt: skip
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
    try:
        _check_size(await tree(applied, sha, cwd), sha)
    except Refused as exc:
        raise InvalidRequest(str(exc)) from None
    try:
        diff = await unified_diff(applied, base, sha, cwd)
    except TooMuchOutput:
        raise InvalidRequest(
            f"commit {sha[:12]} changes more than {MAX_DIFF} bytes of diff; at most that "
            "much can be reviewed"
        ) from None
    if not diff:
        raise InvalidRequest(f"commit {sha[:12]} changes nothing from the deployed {base[:12]}")
    approval = await s.approvals.add("apply_commit", agent, requester, commit=sha, diff=diff)
    try:
        await git.run(applied, "tag", f"proposal/{approval.id}", sha, cwd=cwd)
    except GitError as exc:
        await s.approvals.resolve(approval.id, "failed", f"could not tag it: {exc.message}")
        raise
    logger.info("%s proposed %s for %s (approval %d)", requester, sha[:12], agent, approval.id)
    return approval


async def unified_diff(repo: Repo, base: str, sha: str, cwd: Path) -> str:
    """The diff the operator reviews, with the repo's own attributes neutralised (a
    `-diff` in the commit's `.gitattributes` would hide a file's change).

    Raises:
        TooMuchOutput: it is longer than `MAX_DIFF`.
    """
    await anyio.to_thread.run_sync(config_repos.neutralize_attributes, repo)
    _, out = await git.run(repo, "diff", "--no-ext-diff", "--no-textconv", "--no-color",
                           base, sha, "--", cwd=cwd, max_output=MAX_DIFF)  # fmt: skip
    return out.decode("utf-8", errors="replace")


class Refused(ValueError):
    """A config commit is not deployable as it is; the message says why."""


@dataclass(frozen=True)
class Entry:
    """One file of a commit's tree, as `git ls-tree -r -l` lists it."""

    mode: str
    kind: str
    oid: str
    size: int | None
    path: str


async def tree(repo: Repo, sha: str, cwd: Path) -> list[Entry]:
    """Every file of `sha`'s tree, read without any of their contents.

    Raises:
        Refused: it lists more than the output cap allows (far more than `MAX_FILES`).
        GitError.
    """
    try:
        _, out = await git.run(repo, "ls-tree", "-r", "-l", "-z", "--full-tree", sha, cwd=cwd)
    except TooMuchOutput:
        raise Refused(f"commit {sha[:12]} holds more than {MAX_FILES} files") from None
    entries = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, raw = record.partition(b"\t")
        mode, kind, oid, size = meta.decode("ascii").split()
        path = raw.decode("utf-8", errors="backslashreplace")
        entries.append(Entry(mode, kind, oid, int(size) if size.isdigit() else None, path))
    return entries


def _check_size(entries: list[Entry], sha: str) -> None:
    """Raises: Refused (too many files, a file or all of them too big)."""
    if len(entries) > MAX_FILES:
        raise Refused(f"commit {sha[:12]} holds {len(entries)} files; at most {MAX_FILES}")
    total = 0
    for entry in entries:
        size = entry.size or 0
        if size > MAX_FILE:
            raise Refused(
                f"{entry.path!r} in commit {sha[:12]} is {_mib(size)}; a config file may "
                f"hold at most {_mib(MAX_FILE)}"
            )
        total += size
    if total > MAX_TREE:
        raise Refused(
            f"the files of commit {sha[:12]} hold {_mib(total)}; at most {_mib(MAX_TREE)}"
        )


def _check_shape(entries: list[Entry], sha: str) -> None:
    """Raises: Refused (a symbolic link, a submodule or any other non-regular entry)."""
    what = {"120000": "a symbolic link", "160000": "a submodule"}
    for entry in entries:
        if entry.mode not in REGULAR or entry.kind != "blob":
            raise Refused(
                f"{entry.path!r} in commit {sha[:12]} is {what.get(entry.mode, 'not a file')}; "
                "a config commit holds regular files only"
            )


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


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
        await _prepare(s, applied, name, sha)
        if base is not None:  # what is deployed moved since the proposal: never go back
            code, _ = await git.run(applied, "merge-base", "--is-ancestor", base, sha,
                                    cwd=cwd, check=False)  # fmt: skip
            if code != 0:
                raise BackendError(f"the deployed config moved to {base[:12]} meanwhile")
        if (record := s.registry.find(name)) is not None:
            await s.backend.build(spec_for(s, record), sha)  # moves nothing
    except (BackendError, agent_config.ConfigError, Refused) as exc:
        message = exc.message if isinstance(exc, BackendError) else str(exc)
        await _tag(applied, f"failed/{approval.id}", sha, message, cwd)
        raise BackendError(f"deploy of {sha[:12]} to {name} failed: {message}") from None
    except Exception as exc:  # a defect; what the manager wrote must still end as failed
        logger.exception("preparing approval %d failed unexpectedly", approval.id)
        message = f"{type(exc).__name__}: {exc}"
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


async def _prepare(s: Services, applied: Repo, name: str, sha: str) -> None:
    """Check exactly the tree a deploy would check out: its files' kinds and sizes, then
    `agent.toml` read as a blob from the commit (no checkout, no archive: nothing in the
    commit's `.gitattributes` applies), with the schema the harness uses.

    Raises:
        Refused, ConfigError, BackendError.
    """
    cwd = s.settings.agents_dir
    await anyio.to_thread.run_sync(shutil.rmtree, cwd / name / "staging", True)  # older versions'
    entries = await tree(applied, sha, cwd)
    _check_size(entries, sha)
    _check_shape(entries, sha)
    where = f"agent.toml at {sha[:12]}"
    text = ""
    if (toml := next((e for e in entries if e.path == "agent.toml"), None)) is not None:
        _, blob = await git.run(applied, "cat-file", "blob", toml.oid, cwd=cwd,
                                max_output=MAX_FILE)  # fmt: skip
        try:
            text = blob.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise agent_config.ConfigError(
                f"{where}: not UTF-8 text (byte {exc.start} is {blob[exc.start]:#04x})"
            ) from None
    config = agent_config.parse(text, where)
    for key, server in config.mcp_servers.items():
        problem = _not_runnable(server.command, config.env)
        if problem:
            raise BackendError(f"mcp_servers.{key}: {problem}")


def _not_runnable(command: str, env: dict[str, str]) -> str:
    """Why `command` (absolute, or a bare name: the schema allows nothing else) would not
    start, looked up as the agent looks it up: on its `[env]` PATH, else the one it
    inherits."""
    if os.path.isabs(command):
        if shutil.which(command) is None:
            return f"command {command} does not exist or is not executable"
        return ""
    path = env.get("PATH", os.environ.get("PATH", os.defpath))
    if shutil.which(command, path=path) is None:
        return f"command {command} is not on PATH ({path})"
    return ""


async def _go_back(s: Services, name: str, previous: str) -> None:
    await reset_to(s, name, previous)
    if s.registry.find(name) is not None:
        await s.registry.set_deployed(name, previous)


async def reset_to(s: Services, name: str, sha: str) -> None:
    """Put `applied/` (main, index and files) back exactly at `sha`. Raises: GitError."""
    applied, cwd = applied_repo(s, name), s.settings.agents_dir
    # The commit's own .gitattributes must not make the files differ from its blobs.
    await anyio.to_thread.run_sync(config_repos.neutralize_attributes, applied)
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
    """After a crash, make every approval a restart interrupted agree with what it left:
    an `apply_commit` tagged `deployed/` is finished (main, record) and left to verify once
    the agents are restored; one tagged `failed/` or `denied/` is resolved as such; one
    with neither was never finalized and goes back to `pending`. A spawn whose agent
    exists is approved; any other interrupted approval goes back to `pending`."""
    done = Reconciled()
    for approval in await s.approvals.pending():
        try:
            commit = approval.kind == "apply_commit" and approval.commit is not None
            if commit and await _reconcile_one(s, approval, done):
                continue
            if approval.status != "in_progress":
                continue
            if approval.kind == "spawn" and s.registry.find(approval.agent) is not None:
                reason = f"spawned {approval.agent} (finished after a restart)"
                resolved = await s.approvals.resolve(approval.id, "approved", reason,
                                                     was=("in_progress",))  # fmt: skip
                done.resolved.append(resolved)
                continue
            logger.warning("approval %d was interrupted before it changed anything; it is "
                           "pending again", approval.id)  # fmt: skip
            await s.approvals.reopen(approval.id)
        except (BackendError, ValueError) as exc:
            message = exc.message if isinstance(exc, BackendError) else str(exc)
            logger.error("could not reconcile approval %d: %s", approval.id, message)
    return done


async def _reconcile_one(s: Services, approval: Approval, done: Reconciled) -> bool:
    """Finish what an `apply_commit`'s tags say; False when it has no ending tag."""
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
            return True
        reason = note.split("\n\n")[0]
        if (back := ROLLED_BACK.search(note)) is not None:  # a roll back to finish
            await _go_back(s, name, back.group(1))
            await git.run(applied, "tag", "--delete", f"deployed/{approval.id}",
                          cwd=cwd, check=False)  # fmt: skip
        resolved = await s.approvals.resolve(approval.id, status, reason,
                                             was=("in_progress", "pending"))  # fmt: skip
        done.resolved.append(resolved)
        return True
    return False


async def tag_denied(s: Services, approval: Approval, reason: str) -> None:
    """Record a denied proposal as `denied/<id>`, annotated with the reason."""
    if approval.commit is None:
        return
    applied = applied_repo(s, approval.agent)
    note = reason or "denied without a reason"
    await _tag(applied, f"denied/{approval.id}", approval.commit, note, s.settings.agents_dir)


async def _tag(repo: Repo, tag: str, sha: str, message: str, cwd: Path) -> None:
    """Write an annotated tag; never over one that exists (that is an error: a tag
    records an ending, and an approval ends once)."""
    await git.run(repo, "tag", "--annotate", "--file=-", tag, sha,
                  cwd=cwd, stdin=message.encode())  # fmt: skip


CONFIG_FILES_MAX = 50
"""Files of a deployed config shown at most (`deployed_files`)."""
CONFIG_FILE_MAX = 64 * 1024
"""Bytes of each shown at most."""


async def deployed_files(s: Services, name: str) -> rs.ConfigFiles:
    """The files of `name`'s deployed config commit (at most `CONFIG_FILES_MAX`, each cut
    at `CONFIG_FILE_MAX` bytes): the dashboard's config view. Raises: UnknownAgent."""
    record = s.registry.find(name)
    if record is None:
        raise UnknownAgent(f"no agent named {name!r}")
    files: dict[str, str] = {}
    sha = record.deployed_commit
    if sha is not None:
        applied = applied_repo(s, name)
        cwd = s.settings.agents_dir
        for entry in (await tree(applied, sha, cwd))[:CONFIG_FILES_MAX]:
            if entry.kind != "blob":
                continue
            try:
                _, blob = await git.run(applied, "cat-file", "blob", entry.oid, cwd=cwd,
                                        max_output=CONFIG_FILE_MAX)  # fmt: skip
            except git.TooMuchOutput as exc:
                blob = exc.head
            text = blob.decode("utf-8", errors="replace")
            cut = entry.size is not None and entry.size > CONFIG_FILE_MAX
            files[entry.path] = text + ("\n… (cut)" if cut else "")
    return rs.ConfigFiles(commit=sha, files=files)
