"""The meta flake's rendering: a golden file for two agents (an agent and the manager),
its parse by `nix-instantiate --parse`, hostile strings, and what makes a container stale."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from hive_core.meta import MetaAgent, Params, fingerprint, nix_str, render

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "meta-flake.nix"
PARAMS = Params(
    hyperhive_flake="github:example/hyperhive",
    system="x86_64-linux",
    agents_dir=Path("/var/lib/hyperhive/agents"),
    dashboard_port=7357,
    operator_pronouns="she/her",
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
