"""The meta flake's rendering: a golden file for two agents (an agent and the manager),
its parse by `nix-instantiate --parse`, hostile strings, and what makes a container stale."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from hive_core.meta import (
    MetaAgent,
    Params,
    fingerprint,
    lock_news,
    locked_source,
    nix_str,
    params_of,
    render,
    source_path,
)
from hive_core.settings import Settings
from hive_share import build

REPO = Path(build.__file__).resolve().parent.parent

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "meta-flake.nix"
PARAMS = Params(
    hyperhive_flake="github:example/hyperhive",
    system="x86_64-linux",
    agents_dir=Path("/var/lib/hyperhive/agents"),
    dashboard_port=7357,
    operator_pronouns="she/her",
    web_host="0.0.0.0",
    web_allowed_hosts=("hive.example.net", "[2001:db8::7]"),
)
AGENTS = [
    MetaAgent("hm1nd", "manager", 42917, "hm1nd", "b" * 40),
    MetaAgent("alice", "agent", 42123, "alice", "a" * 40),
]
NIX_INSTANTIATE = shutil.which("nix-instantiate")


def _parse(text: str) -> subprocess.CompletedProcess[str]:
    assert NIX_INSTANTIATE is not None
    return subprocess.run([NIX_INSTANTIATE, "--parse", "-"], input=text, capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip


def test_two_agents_render_as_the_golden_file() -> None:
    text = render(AGENTS, PARAMS)
    assert text == GOLDEN.read_text(), (
        f"the rendered meta flake differs from {GOLDEN}; if the change is meant, write "
        "render(AGENTS, PARAMS) there"
    )
    assert render(list(reversed(AGENTS)), PARAMS) == text  # order does not matter


@pytest.mark.skipif(NIX_INSTANTIATE is None, reason="nix-instantiate is not installed")
def test_the_golden_file_parses() -> None:
    got = _parse(GOLDEN.read_text())
    assert got.returncode == 0, got.stderr
    assert "nixosConfigurations" in got.stdout


@pytest.mark.skipif(NIX_INSTANTIATE is None, reason="nix-instantiate is not installed")
def test_hostile_strings_stay_strings() -> None:
    hostile = 'x"; evil = ${builtins.abort "boom"}; y = "\\'
    params = Params(hostile, "x86_64-linux", Path('/s p"ace/${a}'), 1, hostile)
    text = render(AGENTS, params)
    got = _parse(text)
    assert got.returncode == 0, got.stderr
    assert "evil =" not in got.stdout.replace(nix_str(hostile), "")
    assert nix_str("${x}") == '"\\${x}"'


def test_a_container_is_stale_when_its_inputs_or_identity_move() -> None:
    alice = AGENTS[1]
    lock = {"nodes": {"root": {"inputs": {"hyperhive": "hyperhive", "agent-alice": "a"}},
                      "hyperhive": {"locked": {"rev": "1"}}, "a": {"locked": {"rev": "x"}}},
            "root": "root", "version": 7}  # fmt: skip
    before = fingerprint(alice, PARAMS, json.dumps(lock))
    assert fingerprint(alice, PARAMS, json.dumps(lock)) == before
    lock["nodes"]["hyperhive"]["locked"]["rev"] = "2"  # type: ignore[index]
    assert fingerprint(alice, PARAMS, json.dumps(lock)) != before
    moved = MetaAgent("alice", "agent", 42123, "alice", "c" * 40)
    assert fingerprint(moved, PARAMS, json.dumps(lock)) != fingerprint(
        alice, PARAMS, json.dumps(lock)
    )
    other_port = Params(**{**PARAMS.__dict__, "dashboard_port": 8000})
    assert fingerprint(alice, other_port, "") != fingerprint(alice, PARAMS, "")


def test_the_pages_listen_where_the_dashboard_does() -> None:
    settings = Settings(
        state_dir=Path("/srv/hive"),
        dashboard_host="0.0.0.0",
        dashboard_allowed_hosts=("Hive.Example.NET", "2001:db8::7"),
    )
    params = params_of(settings, "http://hive.example.net:8123/")
    assert (params.web_host, params.web_allowed_hosts) == (
        "0.0.0.0",
        ("hive.example.net", "[2001:db8::7]"),
    )
    assert params.dashboard_port == 8123
    assert params_of(Settings(state_dir=Path("/srv/hive")), None).web_allowed_hosts == ()
    alice = AGENTS[1]
    assert fingerprint(alice, params, "") != fingerprint(
        alice, replace(params, web_allowed_hosts=()), ""
    )


# A NAR hash and the store path nix gives it (`nix-store --print-fixed-path --recursive
# sha256 <hex> source`, checked below where nix-store is installed).
NAR_HEX = "878832cd22b5e038e117b701378558f8a9b6cad7381a0e6d57a9e865d34f85a6"
NAR_SRI = "sha256-" + base64.b64encode(bytes.fromhex(NAR_HEX)).decode()
NAR_PATH = "/nix/store/ms37m6i4z2hfa1lm7a6lch7lw9vcr26l-source"


def _lock(nar_hash: str | None) -> str:
    locked = {"type": "github", "rev": "abc"} | ({"narHash": nar_hash} if nar_hash else {})
    return json.dumps({"nodes": {"root": {"inputs": {"hyperhive": "hyperhive"}},
                                 "hyperhive": {"locked": locked}},
                       "root": "root", "version": 7})  # fmt: skip


def test_a_locked_inputs_source_is_found_from_its_nar_hash() -> None:
    assert str(source_path(NAR_SRI)) == NAR_PATH
    assert locked_source(_lock(NAR_SRI)) == Path(NAR_PATH)
    assert locked_source(_lock(None)) is None
    assert locked_source(_lock("md5-AAAA")) is None
    assert locked_source("not json") is None
    with pytest.raises(ValueError):
        source_path("sha256-tooshort")


NIX_STORE = shutil.which("nix-store")


@pytest.mark.skipif(NIX_STORE is None, reason="nix-store is not installed")
@pytest.mark.parametrize("seed", ["", "a", "hyperhive"])
def test_source_paths_agree_with_nix(seed: str) -> None:
    assert NIX_STORE is not None
    hexdigest = hashlib.sha256(seed.encode()).hexdigest()
    argv = [NIX_STORE, "--print-fixed-path", "--recursive", "sha256", hexdigest, "source"]
    got = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    sri = "sha256-" + base64.b64encode(bytes.fromhex(hexdigest)).decode()
    assert str(source_path(sri)) == got.stdout.strip()


def test_a_lock_on_other_code_than_hive_core_runs_is_news(tmp_path: Path) -> None:
    """Meta's locked `hyperhive` source is hashed like hive-core's own build id: the same
    files are no news, an edited file is, and a source that is not there cannot be told."""
    store = str(tmp_path / "store")
    lock = _lock(NAR_SRI)
    source = source_path(NAR_SRI, store)
    running = build.source_digest(REPO)
    assert lock_news(lock, running, store) is None  # not in the store: cannot be told
    for package in build.PACKAGES:
        shutil.copytree(REPO / package, source / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    assert lock_news(lock, running, store) is None
    with (source / "hive_agent" / "turn.py").open("a", encoding="utf-8") as f:
        f.write("# older code\n")
    news = lock_news(lock, running, store)
    assert news is not None
    assert str(source) in news and running in news and "`update`" in news
    assert lock_news(_lock(None), running, store) is None
