"""The meta flake (nixos backend): one core-owned git repo at `<state>/meta/` whose
`flake.nix` declares one input per agent (its `applied/` repo at the deployed commit)
and one `nixosConfigurations.<name>` per agent; every container runs `meta#<name>`.

`flake.nix` is rendered by `render` from the agent list alone, so the same agents give
the same text. Meta's git log records only what took effect: a deploy's build renders a
staged `flake.nix`, builds it, and drops it again; the commit comes when the deploy is
finalized. Every meta operation holds one asyncio lock. Git runs through `hive_core.git`.

`lock_news` tells whether the locked `hyperhive` input holds the code hive-core runs: its
source, found in the store from the lock's `narHash`, is hashed as the build id is
(`hive_share.build`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from hive_core import git
from hive_core.containers import nixtools
from hive_core.containers.nixtools import NIX_FEATURES, Tools
from hive_core.errors import BackendError
from hive_core.git import Repo
from hive_core.settings import Settings
from hive_share import build
from hive_share.models import Role

if TYPE_CHECKING:
    from hive_core.services import Services

logger = logging.getLogger(__name__)

LOCK_TIMEOUT = 600.0
"""Seconds one `nix flake lock` / `nix flake update` may take (it may fetch)."""
PARSE_TIMEOUT = 30.0
FILES = ("flake.nix", "flake.lock")
STORE = "/nix/store"
MIGRATED = ".migrated"
"""The marker (in `<state>/meta/.git/`, so no commit carries it) of the one-time migration."""


@dataclass(frozen=True)
class MetaAgent:
    """One agent as the meta flake renders it."""

    name: str
    role: Role
    port: int
    label: str
    commit: str | None
    """The deployed config commit of its `applied/` repo (None: whatever `main` is)."""
    staged: bool = False
    """`commit` is a deploy's, not on `main` yet: nix must fetch every ref to find it."""


@dataclass(frozen=True)
class Params:
    """What the meta flake takes from hive-core's settings."""

    hyperhive_flake: str
    system: str
    agents_dir: Path
    dashboard_port: int
    operator_pronouns: str
    web_host: str = "127.0.0.1"
    """Where each agent's page listens (`HIVE_WEB_HOST`): where the dashboard does."""
    web_allowed_hosts: tuple[str, ...] = ()
    """Host names the pages answer to besides loopback (`HIVE_WEB_ALLOWED_HOSTS`): the
    dashboard's allowed hosts."""


def nix_str(value: str) -> str:
    """A Nix string literal: `"`, `\\` and `${` escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def nix_list(values: Sequence[str]) -> str:
    """A Nix list of string literals (`[ ]` when empty)."""
    return "[ " + "".join(nix_str(v) + " " for v in values) + "]"


def agent_url(params: Params, agent: MetaAgent) -> str:
    """`git+file://<state>/agents/<n>/applied?ref=main`, pinned to the commit when known
    (a deploy's staged commit is found through its `proposal/` tag: `allRefs`)."""
    path = urllib.parse.quote(str(params.agents_dir / agent.name / "applied"), safe="/")
    query = "ref=main" + (f"&rev={agent.commit}" if agent.commit else "")
    if agent.staged:
        query += "&allRefs=1"
    return f"git+file://{path}?{query}"


def _configuration(agent: MetaAgent, params: Params) -> list[str]:
    base = "manager" if agent.role == "manager" else "agentBase"
    ref = f"inputs.{nix_str('agent-' + agent.name)}"
    return [
        f"      {nix_str(agent.name)} = nixpkgs.lib.nixosSystem {{",
        "        inherit system;",
        "        modules = [",
        f"          hyperhive.nixosModules.{base}",
        f"          {ref}.nixosModules.default",
        "          {",
        "            boot.isContainer = true;",
        "            hyperhive = {",
        f"              name = {nix_str(agent.name)};",
        f"              role = {nix_str(agent.role)};",
        f"              port = {agent.port};",
        f"              label = {nix_str(agent.label)};",
        f"              dashboardPort = {params.dashboard_port};",
        f"              operatorPronouns = {nix_str(params.operator_pronouns)};",
        f"              webHost = {nix_str(params.web_host)};",
        f"              webAllowedHosts = {nix_list(params.web_allowed_hosts)};",
        "              package = hyperhive.packages.${system}.default;",
        f'              agentToml = "${{{ref}}}/agent.toml";',
        "            };",
        "          }",
        "        ];",
        "      };",
    ]


def render(agents: Sequence[MetaAgent], params: Params) -> str:
    """The meta `flake.nix` for `agents` (in name order, whatever order they come in)."""
    ordered = sorted(agents, key=lambda a: a.name)
    lines = [
        "# Generated by hive-core from its agents; every change here is overwritten.",
        "{",
        '  description = "hyperhive agents";',
        "",
        "  inputs = {",
        f"    hyperhive.url = {nix_str(params.hyperhive_flake)};",
        '    nixpkgs.follows = "hyperhive/nixpkgs";',
    ]
    lines += [f"    {nix_str('agent-' + a.name)}.url = {nix_str(agent_url(params, a))};"
              for a in ordered]  # fmt: skip
    lines += [
        "  };",
        "",
        "  outputs = { self, hyperhive, nixpkgs, ... }@inputs:",
        "    let",
        f"      system = {nix_str(params.system)};",
        "    in",
        "    {",
        "      nixosConfigurations = {",
    ]
    for agent in ordered:
        lines += ["  " + line for line in _configuration(agent, params)]
    lines += ["      };", "    };", "}", ""]
    return "\n".join(lines)


def params_of(settings: Settings, dashboard_url: str | None) -> Params:
    port = settings.dashboard_port
    if dashboard_url is not None:  # the port actually bound (0 in the settings picks one)
        with contextlib.suppress(ValueError):
            port = urllib.parse.urlsplit(dashboard_url).port or port
    return Params(
        hyperhive_flake=settings.hyperhive_flake,
        system=settings.nix_system,
        agents_dir=settings.agents_dir,
        dashboard_port=port,
        operator_pronouns=settings.operator_pronouns,
        web_host=settings.dashboard_host,
        web_allowed_hosts=settings.dashboard_allowed_hosts,
    )


def roster(s: Services) -> list[MetaAgent]:
    """Every registered agent, at its deployed commit."""
    return [
        MetaAgent(r.name, r.role, r.web_port, r.name, r.deployed_commit) for r in s.registry.all()
    ]


def _locked(lock_text: str, key: str) -> dict[str, object] | None:
    """The `locked` entry of the root input `key` of a `flake.lock` (None: none)."""
    try:
        lock = json.loads(lock_text)
        nodes = lock["nodes"]
        node = nodes[lock.get("root", "root")]["inputs"][key]
        locked = nodes[node]["locked"] if isinstance(node, str) else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return locked if isinstance(locked, dict) else None


NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"


def _nix32(data: bytes) -> str:
    """Nix's base-32 (its own alphabet, least significant bits first)."""
    chars = []
    for n in range((len(data) * 8 - 1) // 5, -1, -1):
        i, j = divmod(n * 5, 8)
        c = data[i] >> j
        if i + 1 < len(data):
            c |= data[i + 1] << (8 - j)
        chars.append(NIX32[c & 0x1F])
    return "".join(chars)


def source_path(nar_hash: str, store: str = STORE) -> Path:
    """The store path of a flake input's source from its locked `narHash` (SRI `sha256-…`):
    a fixed-output path of the NAR hash, named `source`, as nix stores every input.
    Raises: ValueError (not a sha256 SRI hash)."""
    algo, _, encoded = nar_hash.partition("-")
    digest = base64.b64decode(encoded, validate=True)
    if algo != "sha256" or len(digest) != 32:
        raise ValueError(f"not a sha256 hash: {nar_hash!r}")
    text = f"source:sha256:{digest.hex()}:{store}:source"
    full = hashlib.sha256(text.encode()).digest()
    folded = bytearray(20)
    for i, byte in enumerate(full):
        folded[i % 20] ^= byte
    return Path(store) / f"{_nix32(bytes(folded))}-source"


def locked_source(lock_text: str, store: str = STORE) -> Path | None:
    """Where the source of meta's locked `hyperhive` input is in the store (None: the lock
    names no NAR hash)."""
    locked = _locked(lock_text, "hyperhive")
    nar_hash = locked.get("narHash") if locked else None
    if not isinstance(nar_hash, str):
        return None
    try:
        return source_path(nar_hash, store)
    except ValueError:
        return None


def lock_news(lock_text: str, running: str, store: str = STORE) -> str | None:
    """Why meta's lock is stale, or None: whether the locked `hyperhive` source holds the
    code hive-core runs (`running`, its source digest, `hive_share.build`). None too when
    that cannot be told: no NAR hash in the lock, or its source is not in the store."""
    source = locked_source(lock_text, store)
    if source is None or not (source / "hive_share").is_dir():
        return None
    try:
        theirs = build.source_digest(source)
    except OSError as exc:
        logger.warning("could not read %s, meta's hyperhive input: %s", source, exc)
        return None
    if theirs == running:
        return None
    return (f"meta's hyperhive input ({source}, code {theirs}) is not the code hive-core runs "
            f"({running}): its containers would run it; `update` moves the input")  # fmt: skip


def locked_inputs(lock_text: str, name: str) -> str:
    """The locked `hyperhive` and `agent-<name>` entries of a `flake.lock`, as one string."""
    try:
        lock = json.loads(lock_text)
        nodes = lock["nodes"]
        root = nodes[lock.get("root", "root")]["inputs"]
        picked = {key: nodes[root[key]].get("locked") for key in ("hyperhive", f"agent-{name}")
                  if isinstance(root.get(key), str)}  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""
    return json.dumps(picked, sort_keys=True)


def fingerprint(agent: MetaAgent, params: Params, lock_text: str) -> str:
    """What a container of `agent` must run: its rendered configuration and its locked
    inputs. A container built from another fingerprint is stale."""
    text = "\n".join(_configuration(agent, params))
    text += "\n" + agent_url(params, agent) + "\n" + params.hyperhive_flake + "\n"
    text += locked_inputs(lock_text, agent.name)
    return hashlib.sha256(text.encode()).hexdigest()


class Meta:
    """The meta repo and every operation on it, one at a time."""

    def __init__(self, settings: Settings, tools: Tools) -> None:
        self.dir = settings.meta_dir
        self.repo = Repo.at(self.dir)
        self._cwd = settings.state_dir
        self._tools = tools
        self._build_timeout = settings.nix_build_timeout
        self.lock = asyncio.Lock()

    @property
    def flake(self) -> str:
        """The flake reference nix and nixos-container are given."""
        return str(self.dir)

    def exists(self) -> bool:
        return (self.dir / ".git").is_dir()

    async def open(self) -> bool:
        """Create the repo if missing; otherwise clear a stale `index.lock` and drop what a
        crash left staged. Returns whether the repo was created."""
        async with self.lock:
            created = not self.exists()
            if created:
                self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                await git.run(None, "init", "--quiet", "--initial-branch=main", "--",
                              str(self.dir), cwd=self._cwd)  # fmt: skip
                return True
            lock = self.dir / ".git" / "index.lock"
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
                logger.warning("removed a stale %s left by an interrupted git", lock)
            await self._drop_staged()
            return False

    async def head(self) -> str | None:
        main = "refs/heads/main^{commit}"
        code, out = await git.run(self.repo, "rev-parse", "--verify", "--quiet", main,
                                  cwd=self._cwd, check=False)  # fmt: skip
        return out.decode().strip() if code == 0 else None

    async def committed(self, path: str) -> str:
        """`path` at meta's HEAD ("" when absent)."""
        code, out = await git.run(self.repo, "show", f"HEAD:{path}", cwd=self._cwd, check=False)
        return out.decode("utf-8", errors="replace") if code == 0 else ""

    async def sync(self, agents: Sequence[MetaAgent], params: Params, message: str) -> bool:
        """Render for `agents`, lock, and commit when anything changed. Returns whether a
        commit was made. Raises: BackendError (nix or git failed; nothing is committed)."""
        async with self.lock:
            text = render(agents, params)
            if await self.head() is not None and await self.committed("flake.nix") == text:
                return False
            try:
                await self._stage(text)
                await self._commit(message)
            except BackendError:
                await self._drop_staged()
                raise
            return True

    async def build(
        self, agents: Sequence[MetaAgent], params: Params, name: str, commit: str
    ) -> None:
        """Build `name`'s system with its input at `commit`, then drop the staged change:
        meta's HEAD never moves here.

        Raises: BackendError (the lock or the build failed; the message ends with the
        build's stderr).
        """
        staged = [replace(a, commit=commit, staged=True) if a.name == name else a
                  for a in agents]  # fmt: skip
        async with self.lock:
            try:
                await self._stage(render(staged, params))
                target = f"{self.flake}#nixosConfigurations.{name}.config.system.build.toplevel"
                await nixtools.run([self._tools.nix, *NIX_FEATURES, "build", target, "--no-link"],
                                   self._tools.env, self._build_timeout)  # fmt: skip
            finally:
                await self._drop_staged()

    async def lock_update(self) -> bool:
        """`nix flake update hyperhive` and commit the new lock. Returns whether it moved.
        Raises: BackendError."""
        async with self.lock:
            before = await self.committed("flake.lock")
            try:
                argv = [self._tools.nix, *NIX_FEATURES, "flake", "update", "hyperhive",
                        "--flake", self.flake]  # fmt: skip
                await nixtools.run(argv, self._tools.env, LOCK_TIMEOUT)
                lock = self.dir / "flake.lock"
                after = lock.read_text(encoding="utf-8") if lock.is_file() else ""
                if after == before:
                    return False
                await git.run(self.repo, "add", "--", "flake.lock", cwd=self._cwd)
                await self._commit("update the hyperhive input")
            except BackendError:
                await self._drop_staged()
                raise
            return True

    async def parse(self, agents: Sequence[MetaAgent], params: Params) -> None:
        """Check that the flake rendered for `agents` parses (`nix-instantiate --parse`).
        Raises: BackendError."""
        if self._tools.nix_instantiate is None:
            return
        await nixtools.run([self._tools.nix_instantiate, "--parse", "-"], self._tools.env,
                           PARSE_TIMEOUT, stdin=render(agents, params).encode())  # fmt: skip

    async def lock_text(self) -> str:
        return await self.committed("flake.lock")

    def migrated(self) -> bool:
        return (self.dir / ".git" / MIGRATED).exists()

    def mark_migrated(self) -> None:
        (self.dir / ".git" / MIGRATED).write_text("agents registered in the meta flake\n")

    async def _stage(self, text: str) -> None:
        await anyio.to_thread.run_sync(_write, self.dir / "flake.nix", text)
        await git.run(self.repo, "add", "--", "flake.nix", cwd=self._cwd)
        await nixtools.run([self._tools.nix, *NIX_FEATURES, "flake", "lock", self.flake],
                           self._tools.env, LOCK_TIMEOUT)  # fmt: skip
        if (self.dir / "flake.lock").is_file():
            await git.run(self.repo, "add", "--", "flake.lock", cwd=self._cwd)

    async def _commit(self, message: str) -> None:
        await git.run(self.repo, "commit", "--quiet", "--no-verify", "--allow-empty", "-m",
                      message, cwd=self._cwd)  # fmt: skip

    async def _drop_staged(self) -> None:
        """Back to HEAD exactly (nothing at all before the first commit)."""
        if await self.head() is None:
            await git.run(self.repo, "rm", "--quiet", "--cached", "-r", "--ignore-unmatch",
                          "--", ".", cwd=self._cwd)  # fmt: skip
            for name in FILES:
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / name).unlink()
            return
        await git.run(self.repo, "reset", "--quiet", "--hard", "HEAD", cwd=self._cwd)
        await git.run(self.repo, "clean", "--quiet", "-d", "--force", "-x", cwd=self._cwd)


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
