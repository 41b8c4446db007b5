"""The nixos backend end to end, against recording shims of `nixos-container`, `nix`,
`machinectl` and `journalctl` (tests/e2e/nixos_shims.py): the exact argv of each lifecycle
call, the agents' repos bound into the manager's container, a hive-core restart, the
migration, the journal as the log source, and `update`."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hive_share import requests as rq
from hive_share import responses as rs
from tests.e2e.hive import Hive, short_tmp
from tests.e2e.nixos_shims import Shims, reached_socket
from tests.e2e.test_deploy_crash import REAL_GIT, SHIM
from tests.git import git as _git


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


SHOW_PID = ["systemctl", "show", "--property=MainPID", "--value", "hive-agent.service"]


class _Hive(Hive):
    @property
    def manager_sock(self) -> Path:
        """In the manager's socket dir, which its container binds as /run/hive."""
        return self.run_dir / "agents" / "hm1nd" / "manager.sock"


class NixosHive:
    """A hive on the nixos backend, its shims, and a git that stops where the test says."""

    def __init__(self, root: Path) -> None:
        assert REAL_GIT is not None
        self.root = root
        self.git_armed = root / "git-armed.json"
        shim = root / "git"
        shim.write_text(SHIM.format(python=sys.executable, armed=str(self.git_armed),
                                    reached=str(root / "reached"), git=REAL_GIT))  # fmt: skip
        shim.chmod(0o755)
        self.reached = reached_socket(root)
        self.hive = _Hive(root, {"HIVE_GIT": str(shim), "HIVE_NIXOS_STATUS_INTERVAL": "3600"})
        # The meta flake names the dashboard's port: the same one across restarts.
        self.hive.extra_env["HIVE_DASHBOARD_PORT"] = str(_free_port())
        self.shims = Shims.install(root, self.hive.state_dir, self.hive.run_dir, self.hive.env)
        self.hive.extra_env.update(self.shims.settings_env())
        if shutil.which("nix-instantiate"):
            self.hive.extra_env["HIVE_NIX_INSTANTIATE"] = str(shutil.which("nix-instantiate"))

    @property
    def meta(self) -> Path:
        return self.hive.state_dir / "meta"

    def meta_head(self) -> str:
        return _git(self.meta, "rev-parse", "HEAD")

    def nc(self) -> list[list[str]]:
        return self.shims.calls("nixos-container")

    def arm_git(self, words: list[str], skip: int) -> None:
        self.git_armed.write_text(json.dumps({"words": words, "skip": skip}))

    def wait_reached(self) -> int:
        try:
            return int(self.reached.recv(64))
        except TimeoutError:
            raise AssertionError("the armed call never ran") from None

    def close(self) -> None:
        self.hive.close()
        self.shims.stop_all()
        self.reached.close()


@pytest.fixture
def nixos() -> Iterator[NixosHive]:
    root = short_tmp()
    n = NixosHive(root)
    try:
        n.hive.start()
        yield n
    finally:
        n.close()
        shutil.rmtree(root, ignore_errors=True)


def _ok(got: subprocess.CompletedProcess[str]) -> str:
    assert got.returncode == 0, got.stderr
    return got.stdout


def _row(hive: Hive, name: str) -> dict[str, object]:
    rows = {a["name"]: a for a in json.loads(_ok(hive.cli("list", "--json")))}
    row: dict[str, object] = rows[name]
    return row


def test_every_lifecycle_call_is_one_exact_argv(nixos: NixosHive) -> None:
    hive, meta = nixos.hive, str(nixos.meta)
    assert ["create", "h-hm1nd", "--flake", f"{meta}#hm1nd"] in nixos.nc()  # at start-up
    nixos.shims.clear_calls()

    _ok(hive.cli("spawn", "bob"))
    assert nixos.nc() == [
        ["list"],
        ["create", "h-bob", "--flake", f"{meta}#bob"],
        ["status", "h-bob"],
        ["start", "h-bob"],
        ["run", "h-bob", "--", *SHOW_PID],
    ]
    conf = (nixos.shims.conf / "h-bob.conf").read_text()
    state, sockets = hive.state_dir / "agents" / "bob" / "state", hive.run_dir / "agents" / "bob"
    assert f'EXTRA_NSPAWN_FLAGS="--bind={state}:/state --bind={sockets}:/run/hive"' in conf
    assert "PRIVATE_NETWORK=0" in conf  # what nixos-container wrote stays
    row = _row(hive, "bob")
    assert (row["state"], row["alive"]) == ("running", True)
    flake = (nixos.meta / "flake.nix").read_text()
    assert '"bob" = nixpkgs.lib.nixosSystem' in flake
    assert f"rev={row['deployed_commit']}" in flake

    for command, expected in [
        (["stop", "bob"], [["stop", "h-bob"]]),
        (["start", "bob"],
         [["list"], ["status", "h-bob"], ["start", "h-bob"], ["run", "h-bob", "--", *SHOW_PID]]),
        (["kill", "bob"], [["stop", "h-bob"]]),
        (["start", "bob"],
         [["list"], ["status", "h-bob"], ["start", "h-bob"], ["run", "h-bob", "--", *SHOW_PID]]),
        (["restart", "bob"],
         [["stop", "h-bob"], ["list"], ["status", "h-bob"], ["start", "h-bob"],
          ["run", "h-bob", "--", *SHOW_PID]]),
        (["destroy", "bob"],
         [["stop", "h-bob"], ["list"], ["status", "h-bob"], ["destroy", "h-bob"]]),
    ]:  # fmt: skip
        nixos.shims.clear_calls()
        _ok(hive.cli(*command))
        assert nixos.nc() == expected, command
    assert '"bob"' not in (nixos.meta / "flake.nix").read_text()
    assert _git(nixos.meta, "log", "-1", "--format=%s") == "remove bob"
    assert nixos.shims.containers() == ["h-hm1nd"]


def _manager_flags(nixos: NixosHive) -> list[str]:
    conf = (nixos.shims.conf / "h-hm1nd.conf").read_text().splitlines()
    flags = next(line for line in conf if line.startswith("EXTRA_NSPAWN_FLAGS="))
    return flags.split("=", 1)[1].strip('"').split()


def _repo_flags(hive: Hive, name: str, root: str = "agents") -> list[str]:
    agent = hive.state_dir / root / name
    return [f"--bind-ro={agent / 'applied'}", f"--bind={agent / 'proposed'}"]


def _live_binds(hive: Hive, name: str) -> list[list[str]]:
    """The `machinectl` calls that bind `name`'s repos into the running manager."""
    agent = hive.state_dir / "agents" / name
    applied, proposed = str(agent / "applied"), str(agent / "proposed")
    return [["bind", "--mkdir", "--read-only", "h-hm1nd", applied, applied],
            ["bind", "--mkdir", "h-hm1nd", proposed, proposed]]  # fmt: skip


def test_the_manager_gets_the_working_copies_bound_at_their_host_paths(nixos: NixosHive) -> None:
    hive = nixos.hive
    _ok(hive.cli("spawn", "bob"))
    for repo in ("applied", "proposed"):  # another host's agent's, as a hive of hosts has
        (hive.state_dir / "remote" / "tess" / repo).mkdir(parents=True)
    _ok(hive.cli("restart", "hm1nd"))  # the binds are written before a container starts
    agents = hive.state_dir / "agents"
    assert _manager_flags(nixos) == [
        f"--bind={agents / 'hm1nd' / 'state'}:/state",
        f"--bind={hive.run_dir / 'agents' / 'hm1nd'}:/run/hive",
        f"--bind-ro={nixos.meta}:/meta",
        *_repo_flags(hive, "bob"),
        *_repo_flags(hive, "hm1nd"),
        *_repo_flags(hive, "tess", root="remote"),
    ]
    bob = (nixos.shims.conf / "h-bob.conf").read_text()
    assert "proposed" not in bob and str(agents / "hm1nd") not in bob and "/meta" not in bob


async def test_the_running_manager_sees_new_agents_repos_without_a_restart(
    nixos: NixosHive,
) -> None:
    """An agent spawned, or a config prepared, while the manager runs: its repos are bound
    into the manager's container at once, and recorded in its conf for the next start."""
    hive = nixos.hive
    before = _manager_flags(nixos)
    assert f"--bind-ro={nixos.meta}:/meta" in before
    nixos.shims.clear_calls()
    _ok(hive.cli("spawn", "bob"))
    assert nixos.shims.calls("machinectl") == _live_binds(hive, "bob")
    assert ["stop", "h-hm1nd"] not in nixos.nc()  # no restart of the manager
    assert _manager_flags(nixos) == [*before, *_repo_flags(hive, "bob")]

    nixos.shims.clear_calls()
    async with hive.client(hive.manager_sock) as manager:
        await manager.call(rq.RequestInitConfig(cmd="request_init_config", name="carol"),
                           rs.ConfigRepos)  # fmt: skip
    assert nixos.shims.calls("machinectl") == _live_binds(hive, "carol")
    assert _manager_flags(nixos) == [*before, *_repo_flags(hive, "bob"),
                                     *_repo_flags(hive, "carol")]  # fmt: skip

    nixos.shims.clear_calls()
    _ok(hive.cli("restart", "bob"))  # everything is bound already: nothing to do
    assert nixos.shims.calls("machinectl") == []

    # A manager container started before /meta was bound (an older hive-core) gets it too.
    conf = nixos.shims.conf / "h-hm1nd.conf"
    conf.write_text(conf.read_text().replace(f" --bind-ro={nixos.meta}:/meta", ""))
    async with hive.client(hive.manager_sock) as manager:
        await manager.call(rq.RequestInitConfig(cmd="request_init_config", name="carol"),
                           rs.ConfigRepos)  # fmt: skip
    assert nixos.shims.calls("machinectl") == [
        ["bind", "--mkdir", "--read-only", "h-hm1nd", str(nixos.meta), "/meta"]
    ]
    assert f"--bind-ro={nixos.meta}:/meta" in _manager_flags(nixos)


async def test_a_failed_live_bind_is_retried_and_not_recorded(nixos: NixosHive) -> None:
    hive = nixos.hive
    before = _manager_flags(nixos)
    nixos.shims.reply("machinectl", ["bind"], code=1, stderr="Failed to bind mount")
    _ok(hive.cli("spawn", "bob"))  # the spawn itself does not fail
    assert _manager_flags(nixos) == before
    nixos.shims.clear_replies()
    nixos.shims.clear_calls()
    async with hive.client(hive.manager_sock) as manager:
        await manager.call(rq.RequestInitConfig(cmd="request_init_config", name="bob"),
                           rs.ConfigRepos)  # fmt: skip
    assert nixos.shims.calls("machinectl") == _live_binds(hive, "bob")
    assert _manager_flags(nixos) == [*before, *_repo_flags(hive, "bob")]


def test_a_hive_core_restart_restarts_each_harness_in_its_running_container(
    nixos: NixosHive,
) -> None:
    hive = nixos.hive
    _ok(hive.cli("spawn", "bob"))
    hive.stop()
    nixos.shims.clear_calls()
    hive.start()
    calls = nixos.nc()
    assert ["run", "h-bob", "--", "systemctl", "restart", "hive-agent.service"] in calls
    assert ["start", "h-bob"] not in calls  # the container kept running
    assert _row(hive, "bob")["alive"] is True


def test_the_migration_registers_existing_agents_once(nixos: NixosHive) -> None:
    hive = nixos.hive
    _ok(hive.cli("spawn", "bob"))
    hive.stop()
    shutil.rmtree(nixos.meta)  # a state dir from before the meta flake: containers, no meta
    (hive.state_dir / "nixos-containers.json").unlink()
    nixos.shims.clear_calls()

    hive.start()

    assert sorted(c for c in nixos.nc() if c[0] == "update") == [
        ["update", "h-bob", "--flake", f"{nixos.meta}#bob"],
        ["update", "h-hm1nd", "--flake", f"{nixos.meta}#hm1nd"],
    ]
    flake = (nixos.meta / "flake.nix").read_text()
    assert '"bob" = nixpkgs.lib.nixosSystem' in flake and '"hm1nd" = nixpkgs' in flake
    head = nixos.meta_head()
    for marker_kept in (True, False):
        if not marker_kept:
            (nixos.meta / ".git" / ".migrated").unlink()
        hive.stop()
        nixos.shims.clear_calls()
        hive.start()
        assert [c for c in nixos.nc() if c[0] in ("create", "update", "destroy")] == []
        assert nixos.meta_head() == head
        assert _row(hive, "bob")["alive"] is True


def test_the_journal_is_the_harness_log(nixos: NixosHive) -> None:
    hive = nixos.hive
    _ok(hive.cli("spawn", "bob"))
    entries = [
        {"__REALTIME_TIMESTAMP": "1764400000000000", "MESSAGE": "harness of bob starting"},
        {"__REALTIME_TIMESTAMP": "1764400001500000", "MESSAGE": "bob is alive"},
        {"__REALTIME_TIMESTAMP": "1764400002000000", "MESSAGE": [104, 105, 255]},
    ]
    journal = "".join(json.dumps(e) + "\n" for e in entries)
    nixos.shims.reply("journalctl", ["-M", "h-bob"], stdout=journal)
    nixos.shims.clear_calls()

    out = _ok(hive.cli("logs", "bob", "--raw", "-n", "5"))

    assert out.splitlines() == [
        "2025-11-29T07:06:40+00:00 harness of bob starting",
        "2025-11-29T07:06:41+00:00 bob is alive",
        "2025-11-29T07:06:42+00:00 hi\ufffd",
    ]
    assert nixos.shims.calls("journalctl") == [
        ["-M", "h-bob", "-u", "hive-agent.service", "--no-pager", "-o", "json", "-n", "5"]
    ]


def test_a_stopped_containers_journal_is_read_from_its_files(nixos: NixosHive) -> None:
    hive = nixos.hive
    _ok(hive.cli("spawn", "bob"))
    _ok(hive.cli("stop", "bob"))
    entry = {"__REALTIME_TIMESTAMP": "1764400000000000", "MESSAGE": "last words"}
    nixos.shims.reply("journalctl", ["-M"], code=1, stderr="No machine 'h-bob' known\n")
    nixos.shims.reply("journalctl", ["-D"], stdout=json.dumps(entry) + "\n")
    nixos.shims.clear_calls()

    out = _ok(hive.cli("logs", "bob", "--raw", "-n", "3"))

    assert out.splitlines() == ["2025-11-29T07:06:40+00:00 last words"]
    tail = ["-u", "hive-agent.service", "--no-pager", "-o", "json", "-n", "3"]
    assert nixos.shims.calls("journalctl") == [
        ["-M", "h-bob", *tail],
        ["-D", "/var/lib/nixos-containers/h-bob/var/log/journal", *tail],
    ]


async def _line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        return (await proc.stdout.readline()).decode().rstrip("\n")


async def test_a_followed_journal_prints_each_new_entry_once(nixos: NixosHive) -> None:
    hive = nixos.hive
    _ok(hive.cli("spawn", "bob"))
    old = json.dumps({"__REALTIME_TIMESTAMP": "1764400001500000", "MESSAGE": "old"}) + "\n"
    new = json.dumps({"__REALTIME_TIMESTAMP": "1764400001700000", "MESSAGE": "new"}) + "\n"
    nixos.shims.reply("journalctl", ["-n"], stdout=old)
    follow = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hive_core", "logs", "bob", "--raw", "-f",
        env=hive.env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert await _line(follow) == "2025-11-29T07:06:41+00:00 old"
        nixos.shims.reply("journalctl", ["--since"], stdout=old + new)
        assert await _line(follow) == "2025-11-29T07:06:41+00:00 new"
    finally:
        follow.kill()
        await follow.wait()
    since = [c for c in nixos.shims.calls("journalctl") if "--since" in c]
    assert since and since[-1][-2:] == ["--since", "@1764400001"]


async def test_update_moves_the_hyperhive_input_and_rebuilds_what_it_changed(
    nixos: NixosHive,
) -> None:
    hive = nixos.hive
    _ok(hive.cli("spawn", "bob"))
    (nixos.root / "hyperhive-rev").write_text("rev-2\n")
    nixos.shims.clear_calls()

    queued = _ok(hive.cli("update"))
    approval_id = queued.split()[2].rstrip(":")
    _ok(hive.cli("approve", approval_id))

    nix = nixos.shims.calls("nix")
    assert ["--extra-experimental-features", "nix-command flakes", "flake", "update",
            "hyperhive", "--flake", str(nixos.meta)] in nix  # fmt: skip
    assert '"rev": "rev-2"' in (nixos.meta / "flake.lock").read_text()
    assert _git(nixos.meta, "log", "-1", "--format=%s") == "update the hyperhive input"
    updated = sorted(c[1] for c in nixos.nc() if c[0] == "update")
    assert updated == ["h-bob", "h-hm1nd"]
    assert _row(hive, "bob")["alive"] is True
