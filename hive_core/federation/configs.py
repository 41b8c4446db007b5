"""Config repos across hosts, through the hive's config store (a JetStream object store of
git bundles, `names.config_bucket`).

- **Sharing.** Each host puts a bundle of every one of its agents' `applied/main` into the
  store as `<host>/<agent>` whenever that commit moved (a spawn, a deploy, a roll back: it
  looks at every approval's ending and agent change, and once the link is up), and names
  the commit and the bundle's digest in the agent's directory entry.
- **The manager's working copy.** `request_init_config` of another host's agent makes
  `<state>/remote/<agent>/applied`, a bare mirror of that bundle, and `proposed/`, a clone
  of it with the mirror as its remote `applied`, as a local agent has. The mirror follows
  the directory: an entry of the agent naming another commit fetches the bundle again.
- **Proposing.** `request_apply_commit` of such an agent fetches the commit from
  `proposed/` into the mirror, bundles it, puts the bundle as `<host>/proposals/<nonce>`
  and asks the agent's host to queue it. That host fetches it into the agent's `applied/`
  and queues it as its own proposal (the same checks, the same approval); the bundle is
  deleted once it answered.

Any host may write any object of the store, so none is taken on its own word: a mirror
takes a bundle only when its digest is the one in its host's directory entry, and a host
takes a proposal only when its digest is the one in the request, which came on the
proposing host's own subject.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import nats.errors
import nats.js.errors
from nats.js.api import ObjectMeta
from pydantic import ValidationError

from hive_core import agent_info, approval_flow, config_repos, deploys, git
from hive_core.errors import BackendError, HiveError, InvalidRequest, NotFound, Unreachable
from hive_core.federation import names
from hive_core.federation.directory import Directory
from hive_core.federation.link import Link
from hive_core.federation.names import PROPOSAL_OBJECT, AgentEntry, ConfigRef, ProposedCommit
from hive_core.federation.view import RemoteView
from hive_core.git import GitError, Repo
from hive_core.services import Services
from hive_share import events
from hive_share import responses as rs
from hive_share.base import WireModel
from hive_share.names import OPERATOR
from hive_share.responses import Error

logger = logging.getLogger(__name__)

RETRY = 2.0
"""Seconds before this host's configs are shared again after a failure."""
INCOMING = ".incoming"
"""Under the remote dir: bundles on their way into a repo (not an agent name)."""
RESHARE = 300.0
"""Seconds between two looks at this host's shared configs when nothing moved one (an
object written over by another host is put again)."""
SHARE_NOW_WAIT = 10.0
"""Seconds an approval's ending waits for its config to be shared before it is told."""
MAX_BUNDLE = 64 * 1024 * 1024
"""Bytes of one bundle read from git."""

NATS_ERRORS = (nats.errors.Error, TimeoutError)


class Configs:
    def __init__(
        self,
        s: Services,
        link: Link,
        view: RemoteView,
        directory: Directory,
        ask: Callable[[str, dict[str, Any]], Awaitable[WireModel]],
    ) -> None:
        self._s = s
        self._link = link
        self._view = view
        self._directory = directory
        self._ask = ask
        """Runs a request on another host (`Rpc.call`)."""
        self.shared: dict[str, ConfigRef] = {}
        """This host's agents' configs as last put into the store."""
        self._share = anyio.Event()
        self._stale: dict[str, AgentEntry] = {}
        """Other hosts' agents whose mirror here is behind their entry."""
        self._follow = anyio.Event()

    @property
    def root(self) -> Path:
        return self._s.settings.remote_config_dir

    def ref(self, name: str) -> ConfigRef | None:
        return self.shared.get(name)

    def poke(self) -> None:
        """Look again at which of this host's agents' configs moved."""
        self._share.set()

    def noticed(self, event: WireModel) -> None:
        """Look again after what can move a config: an approval's ending (a deploy), an
        agent gone, or one of this host's agents not shared yet (a spawn)."""
        if isinstance(event, events.ApprovalResolved | events.ContainerRemoved) or (
            isinstance(event, events.ContainerStateChanged)
            and event.agent.host == self._link.host
            and event.agent.name not in self.shared
        ):
            self._share.set()

    # -- sharing this host's ---------------------------------------------------------------

    async def share(self) -> None:
        """Put each of this host's agents' configs into the store whenever its commit moved,
        and take out those of agents no longer here; until cancelled."""
        await self._link.up()
        await self._sweep()
        self._share.set()
        while True:
            with anyio.move_on_after(RESHARE):
                await self._share.wait()
            self._share = anyio.Event()
            failed = False
            for record in self._s.registry.all():
                try:
                    if await self._share_one(record.name):
                        await self._on_shared(record.name)
                except (HiveError, *NATS_ERRORS) as exc:
                    logger.warning("could not share the config of %s: %s", record.name, exc)
                    failed = True
            for name in [n for n in self.shared if self._s.registry.find(n) is None]:
                try:
                    await self._link.configs.delete(names.config_object(self._link.host, name))
                except nats.js.errors.ObjectNotFoundError:
                    pass
                except NATS_ERRORS as exc:
                    logger.warning("could not take the config of %s out: %s", name, exc)
                    failed = True
                    continue
                del self.shared[name]
            if failed:  # the link went meanwhile: again in a moment
                await anyio.sleep(RETRY)
                self._share.set()

    async def _sweep(self) -> None:
        """Take out the configs this host put into the store for agents it no longer has
        (destroyed while it was away from NATS, or just before a restart: which ones were
        shared is kept in memory only); what fails is logged and left."""
        try:
            objects = await self._link.configs.list(ignore_deletes=True)
        except nats.js.errors.NotFoundError:
            return  # an empty store
        except NATS_ERRORS as exc:
            logger.warning("could not list the config store: %s", exc)
            return
        for info in objects:
            host_name, _, agent = (info.name or "").partition("/")
            if host_name != self._link.host or not agent or "/" in agent:
                continue  # another host's, or a proposal
            if self._s.registry.find(agent) is not None:
                continue
            try:
                await self._link.configs.delete(info.name)
                logger.info("took out the config of %s, no longer on this host", agent)
            except nats.js.errors.ObjectNotFoundError:
                pass
            except NATS_ERRORS as exc:
                logger.warning("could not take the config of %s out: %s", agent, exc)

    async def share_now(self, name: str) -> None:
        """Share `name`'s config now if it moved (a deploy ended), its entry too; what
        fails is logged and left to `share`."""
        try:
            with anyio.fail_after(SHARE_NOW_WAIT):
                if await self._share_one(name):
                    await self._on_shared(name)
        except (HiveError, *NATS_ERRORS) as exc:
            logger.warning("could not share the config of %s now: %s", name, exc)
            self._share.set()

    async def _on_shared(self, name: str) -> None:
        """An agent's config went into the store: its entry names it now."""
        record = self._s.registry.find(name)
        if record is not None:
            await self._directory.publish(agent_info.info(self._s, record))

    async def _share_one(self, name: str) -> bool:
        """Put `name`'s config if its commit moved since, or the store holds another bundle
        under its name than the one shared; whether it did."""
        cwd = self._s.settings.agents_dir
        key = names.config_object(self._link.host, name)
        async with self._s.lock(name):  # a deploy moves main under this lock
            applied = deploys.applied_repo(self._s, name)
            sha = await config_repos.head(applied, cwd)
            have = self.shared.get(name)
            if sha is None:
                return False
            if have is not None and have.commit == sha and await self._holds(key, have.digest):
                return False
            _, bundle = await git.run(
                applied, "bundle", "create", "--quiet", "-", config_repos.MAIN,
                cwd=cwd, max_output=MAX_BUNDLE,
            )  # fmt: skip
        info = await self._link.configs.put(key, bundle, ObjectMeta(name=key, description=sha))
        self.shared[name] = ConfigRef(commit=sha, digest=info.digest or "")
        logger.info("shared the config of %s at %s", name, sha[:12])
        return True

    async def _holds(self, key: str, digest: str) -> bool:
        """Whether the store's object `key` is still the bundle of digest `digest` (another
        host may have written over it)."""
        try:
            info = await self._link.configs.get_info(key)
        except nats.js.errors.ObjectNotFoundError:
            return False
        return info.digest == digest

    # -- other hosts' agents: the manager's working copies ----------------------------------

    def seen(self, entry: AgentEntry) -> None:
        """Another host's agent's entry came: bring its mirror here up to date, if there is
        one and it is behind."""
        if entry.config is None or not (self.root / entry.name / "applied").is_dir():
            return
        self._stale[entry.name] = entry
        self._follow.set()

    async def follow(self) -> None:
        """Keep the mirrors here at their entries' commits, until cancelled."""
        while True:
            await self._follow.wait()
            self._follow = anyio.Event()
            stale, self._stale = self._stale, {}
            for entry in stale.values():
                try:
                    await self._mirror(entry)
                except (HiveError, *NATS_ERRORS) as exc:  # its next entry tries again
                    logger.warning("could not follow the config of %s: %s", entry.name, exc)

    async def catch_up(self, host: str, name: str) -> None:
        """Bring the mirror here of `host`'s agent `name` to the config its directory entry
        names now, if there is a mirror (before the manager hears a deploy of it ended);
        what fails is logged."""
        if not (self.root / name / "applied").is_dir():
            return
        try:
            with anyio.fail_after(SHARE_NOW_WAIT):
                entry = await self._directory.entry(host, name)
                if entry is not None:
                    await self._mirror(entry)
        except (HiveError, *NATS_ERRORS) as exc:
            logger.warning("could not follow the config of %s: %s", name, exc)

    def _remote(self, name: str) -> AgentEntry:
        entry = self._view.agents.get(name)
        if entry is None:
            raise NotFound(f"no agent {name!r} on another host")
        return entry

    async def working_copy(self, name: str) -> rs.ConfigRepos:
        """The manager's working copy of another host's agent `name`, made (or its mirror
        brought up to date) now.

        Raises:
            NotFound: no such agent elsewhere, or its host has not shared its config yet.
            Unreachable: NATS is away.
            BackendError: git failed, or the store's bundle is not the one its host named.
        """
        entry = self._remote(name)
        sha = await self._mirror(entry)
        agent_dir = self.root / name
        seeded = False
        async with self._s.lock(name):
            if await config_repos.head(Repo.at(agent_dir / "proposed"), self.root) is None:
                await config_repos.clone_proposed(agent_dir, self.root)
                seeded = True
        return rs.ConfigRepos(
            agent=name, proposed=str(agent_dir / "proposed"), applied_commit=sha, seeded=seeded
        )

    async def _mirror(self, entry: AgentEntry) -> str:
        """Fetch `entry`'s shared config into its mirror here, unless it is there; the
        commit."""
        ref = entry.config
        if ref is None:
            raise NotFound(
                f"host {entry.host} has not shared the config of {entry.name} yet; "
                "try again once its link is up"
            )
        mirror = Repo(git_dir=self.root / entry.name / "applied")
        async with self._s.lock(entry.name):
            if await config_repos.head(mirror, self.root) == ref.commit:
                return ref.commit
            key = names.config_object(entry.host, entry.name)
            data = await self._get(key, ref.digest, f"host {entry.host}'s directory entry")
            await anyio.to_thread.run_sync(self._make_dirs, entry.name)
            if not mirror.git_dir.is_dir():
                await git.run(None, "init", "--quiet", "--bare", "--initial-branch=main",
                              "--", str(mirror.git_dir), cwd=self.root)  # fmt: skip
            async with self._bundle_file(data) as path:
                await git.run(mirror, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                              "--", str(path), f"+{config_repos.MAIN}:{config_repos.MAIN}",
                              cwd=self.root)  # fmt: skip
            if (now := await config_repos.head(mirror, self.root)) != ref.commit:
                raise BackendError(f"the bundle of {entry.name} holds {now}, not {ref.commit}")
        logger.info("the config of %s (host %s) is at %s", entry.name, entry.host, ref.commit[:12])
        return ref.commit

    async def _get(self, key: str, digest: str, named_by: str) -> bytes:
        """Object `key` of the store, if its digest is `digest`."""
        if self._link.state != "up":
            raise Unreachable(
                f"the config store is out of reach (NATS link {self._link.state}); try again "
                "once `hive-core hosts` shows the link up"
            )
        try:
            got = await self._link.configs.get(key)
        except nats.js.errors.ObjectNotFoundError:
            raise NotFound(f"no {key} in the config store") from None
        except nats.js.errors.DigestMismatchError:
            raise BackendError(f"{key} in the config store is damaged") from None
        if got.info.digest != digest:
            raise BackendError(f"{key} in the config store is not the bundle {named_by} names")
        return bytes(got.data or b"")

    def _make_dirs(self, name: str) -> None:
        for path in (self.root, self.root / INCOMING, self.root / name):
            path.mkdir(mode=0o700, exist_ok=True)

    @contextlib.asynccontextmanager
    async def _bundle_file(self, data: bytes) -> AsyncIterator[Path]:
        def write() -> Path:
            self._make_dirs(INCOMING)
            fd, path = tempfile.mkstemp(suffix=".bundle", dir=self.root / INCOMING)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return Path(path)

        path = await anyio.to_thread.run_sync(write)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    # -- proposing: from the manager's host to the agent's -----------------------------------

    async def propose(self, name: str, commit: str, requester: str) -> WireModel:
        """Ship commit `commit` of the working copy of another host's agent `name` to that
        host, to be queued there for the operator; its answer (an `Error` too).

        Raises:
            InvalidRequest: not a commit id, or not in the working copy.
            NotFound: no working copy here (`request_init_config` makes it).
            Unreachable: NATS or the agent's host is away.
        """
        if not deploys.COMMIT.match(commit):
            raise InvalidRequest(
                f"commit {commit[:80]!r} is not a full commit id (git rev-parse HEAD prints one)"
            )
        entry = self._remote(name)
        mirror = Repo(git_dir=self.root / name / "applied")
        proposed = self.root / name / "proposed"
        if await config_repos.head(mirror, self.root) is None:
            raise NotFound(
                f"{name} runs on host {entry.host}; request_init_config({name!r}) first, "
                "for its working copy here"
            )
        nonce = secrets.token_hex(16)
        ref = f"refs/proposals/{nonce}"
        async with self._s.lock(name):
            try:
                await git.run(mirror, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                              "--", str(proposed), f"+{commit}:{ref}", cwd=self.root)  # fmt: skip
            except GitError as exc:
                raise InvalidRequest(
                    f"commit {commit} is not in {name}'s proposed repo: {exc}"
                ) from None
            try:
                _, bundle = await git.run(mirror, "bundle", "create", "--quiet", "-", ref,
                                          cwd=self.root, max_output=MAX_BUNDLE)  # fmt: skip
            finally:
                await git.run(mirror, "update-ref", "-d", ref, cwd=self.root, check=False)
        key = f"{self._link.host}/proposals/{nonce}"
        if self._link.state != "up":
            raise Unreachable(
                f"host {entry.host} is out of reach (NATS link {self._link.state}); try again "
                "once `hive-core hosts` shows the link up"
            )
        try:
            info = await self._link.configs.put(key, bundle)
        except NATS_ERRORS as exc:
            raise Unreachable(f"could not put the commit into the config store: {exc}") from exc
        asked = ProposedCommit(host=entry.host, agent=name, commit=commit, requester=requester,
                               bundle=key, ref=ref, digest=info.digest or "")  # fmt: skip
        try:
            return await self._ask(entry.host, asked.model_dump())
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await self._link.configs.delete(key)
                except NATS_ERRORS as exc:  # left in the store; harmless, but said
                    logger.warning("could not take %s out of the config store: %s", key, exc)

    async def receive(self, origin: str, request: dict[str, Any]) -> WireModel:
        """A commit another host's manager proposes for an agent of this host: fetched from
        its bundle into the agent's `applied/` and queued as a proposal here."""
        try:
            asked = ProposedCommit.model_validate(request)
        except ValidationError as exc:
            return Error(code="malformed", error=f"request_apply_commit: {exc.errors()[0]['msg']}")
        found = PROPOSAL_OBJECT.match(asked.bundle)
        if found is None or found["host"] != origin:
            why = f"{asked.bundle} is not a proposal of host {origin}"
            return Error(code="forbidden", error=why)
        who = asked.requester
        if who != OPERATOR and self._view.host_of(who) != origin:
            return Error(code="forbidden", error=f"{who} is not an agent of host {origin}")
        logger.info("host %s asks: request_apply_commit %s to %s for %s", origin,
                    asked.commit[:12], asked.agent, who)  # fmt: skip
        if self._s.registry.find(asked.agent) is None:
            return Error(code="unknown_agent", error=f"no agent {asked.agent!r} on host "
                         f"{self._link.host}")  # fmt: skip
        try:
            data = await self._get(asked.bundle, asked.digest, f"host {origin}'s request")
            async with self._bundle_file(data) as path:
                approval = await approval_flow.request_apply_commit(
                    self._s, asked.agent, asked.commit, who, (path, asked.ref)
                )
        except HiveError as exc:
            return Error(code=exc.code, error=exc.message)
        return rs.ApprovalResult(approval=approval)
