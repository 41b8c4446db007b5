"""The Nix files: every one parses; the host module and the package evaluate with nixpkgs'
lib alone (stub option declarations in stubs.nix, a stub pkgs and nixpkgs in eval.nix), and
what they produce is what hive-core reads. test_nix_containers.py evaluates the container
templates with the helpers here.

`nix-instantiate` (Debian's nix-bin) is needed for all of it, and the evaluations need a
nixpkgs `lib/` tree named by HIVE_TEST_NIXPKGS_LIB; each skips without its tool. Evaluation
runs in restricted mode against a dummy store: nothing is fetched or built.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from hive_core import config_repos
from hive_core.settings import Settings
from hive_share import build

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TIMEOUT = 60.0

BACKEND_SETTINGS = {"HIVE_HYPERHIVE_FLAKE"}
"""Set by the host module for hive-core's nixos backend, which reads it."""


def _nix_instantiate() -> str:
    found = shutil.which("nix-instantiate")
    if found is None:
        pytest.skip("nix-instantiate is not installed (Debian's nix-bin; ./dev test installs it)")
    return found


def _nixpkgs_lib() -> Path:
    value = os.environ.get("HIVE_TEST_NIXPKGS_LIB")
    if not value:
        pytest.skip("HIVE_TEST_NIXPKGS_LIB is not set (a nixpkgs lib/ directory)")
    path = Path(value).resolve()
    if not (path / "default.nix").is_file():
        pytest.skip(f"HIVE_TEST_NIXPKGS_LIB={value} holds no nixpkgs lib (no default.nix)")
    return path


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if proc.returncode != 0:
        raise NixError(proc.stderr.strip())
    return proc.stdout


class NixError(Exception):
    """nix-instantiate failed; the message is its stderr."""


def nix_path(path: Path) -> str:
    """A Nix path expression for `path`, whatever characters it holds."""
    return f"(/. + {json.dumps(str(path))})"


def nix_eval(expr: str, *allowed: Path) -> Any:
    """Evaluate `expr` with `e` bound to eval.nix's helpers; strictly, as JSON, restricted to
    the repository, the nixpkgs lib and `allowed`."""
    lib = _nixpkgs_lib()
    argv = [_nix_instantiate(), "--store", "dummy://", "--eval", "--strict", "--json"]
    argv += ["--option", "restrict-eval", "true", "-I", f"lib={lib}", "-I", f"root={ROOT}"]
    for i, path in enumerate(allowed):
        argv += ["-I", f"allowed{i}={path}"]
    args = f"{{ lib = import {nix_path(lib)}; root = {nix_path(ROOT)}; }}"
    helpers = f"import {nix_path(HERE / 'eval.nix')} {args}"
    argv += ["-E", f"let e = {helpers}; in {expr}"]
    return json.loads(_run(argv))


def nix_files() -> list[Path]:
    skip = {".git", ".venv", ".tools", "node_modules"}
    return sorted(p for p in ROOT.rglob("*.nix") if not skip & set(p.relative_to(ROOT).parts))


# -- parsing ------------------------------------------------------------------


def test_every_nix_file_parses() -> None:
    nix = _nix_instantiate()
    files = nix_files()
    names = {str(p.relative_to(ROOT)) for p in files}
    assert {
        "flake.nix",
        "nix/package.nix",
        "nix/modules/hive-core.nix",
        "nix/templates/harness-base.nix",
        "nix/templates/agent-base.nix",
        "nix/templates/manager.nix",
        "hive_core/templates/agent/agent.nix",
        "hive_core/templates/agent/flake.nix",
        "tests/nix/stubs.nix",
        "tests/nix/eval.nix",
    } <= names
    for path in files:
        _run([nix, "--store", "dummy://", "--parse", str(path)])


def test_the_agent_template_ships_its_nix_files() -> None:
    assert {"agent.toml", "agent.nix", "flake.nix"} <= set(config_repos.template_files())


# -- the host module ----------------------------------------------------------

HOST_OUT = """{
  service = c.systemd.services.hive-core or null;
  firewall = c.networking.firewall.allowedTCPPorts;
  ranges = c.networking.firewall.allowedTCPPortRanges;
  groups = builtins.attrNames c.users.groups;
  tmpfiles = c.systemd.tmpfiles.rules;
}"""


def host(settings: str) -> Any:
    """The host module (through the flake's nixosModules.default) with `settings` as the
    value of services.hive-core."""
    expr = f"""let c = e.evalModules [
      e.flake.outputs.nixosModules.default
      {{ services.hive-core = {settings}; }}
    ]; in {HOST_OUT}"""
    return nix_eval(expr)


def test_the_host_module_does_nothing_unless_enabled() -> None:
    out = host("{ }")
    assert out == {"service": None, "firewall": [], "ranges": [], "groups": [], "tmpfiles": []}


def test_the_host_module_with_defaults_runs_hive_core_as_a_notify_service() -> None:
    out = host("{ enable = true; }")
    service = out["service"]
    config = service["serviceConfig"]
    package = nix_eval("(e.flakeWith [ ]).outputs.packages.x86_64-linux.default.outPath")
    assert package.endswith("-hyperhive-0.1.0")
    assert config["ExecStart"] == f"{package}/bin/hive-core serve"
    assert config["Type"] == "notify"
    assert config["NotifyAccess"] == "main"
    assert config["WatchdogSec"] == "30s"
    assert config["Restart"] == "on-failure"
    assert config["RestartSec"]
    assert config["StateDirectory"] == "hyperhive"
    assert config["RuntimeDirectory"] == "hyperhive"
    assert config["RuntimeDirectoryMode"] == "0700"
    assert config["RuntimeDirectoryPreserve"] == "yes"
    assert config["ProtectSystem"] is True  # not strict: nixos-container writes /etc
    assert "RestrictNamespaces" not in config  # nixos-container run enters containers
    assert service["wantedBy"] == ["multi-user.target"]
    assert service["after"] == ["network.target"]
    assert [p.rsplit("-", 1)[-1] for p in service["path"]] == ["container", "git", "nix"]
    env = service["environment"]
    assert env == {
        "HIVE_STATE_DIR": "/var/lib/hyperhive",
        "HIVE_RUN_DIR": "/run/hyperhive",
        "HIVE_BACKEND": "nixos",
        "HIVE_DASHBOARD_HOST": "127.0.0.1",
        "HIVE_DASHBOARD_PORT": "7357",
        "HIVE_DASHBOARD_ALLOWED_HOSTS": "",
        "HIVE_AGENT_PORT_BASE": "42000",
        "HIVE_OPERATOR_PRONOUNS": "she/her",
        "HIVE_GIT": env["HIVE_GIT"],
        "HIVE_HYPERHIVE_FLAKE": "path:/nix/store/00000000000000000000000000000000-source",
        "NIX_REMOTE": "daemon",
    }
    assert re.fullmatch(r"/nix/store/[0-9a-f]{32}-git/bin/git", env["HIVE_GIT"])
    assert out["firewall"] == []
    assert out["groups"] == ["hyperhive"]
    assert out["tmpfiles"] == []


def test_the_host_module_with_every_option_set() -> None:
    out = host(
        """{
          enable = true;
          package = e.drv "hyperhive-custom";
          hyperhiveFlake = "github:example/hyperhive";
          stateDir = "/srv/hive";
          runDir = "/run/hh";
          dashboard = {
            host = "0.0.0.0";
            port = 8080;
            allowedHosts = [ "hive.example.net" "10.0.0.2" ];
            openFirewall = true;
          };
          agentPortBase = 43000;
          operatorPronouns = "they/them";
          adminGroup = "hive-admins";
          notify = {
            urlsFile = "/run/secrets/hive-notify";
            hiveName = "lab";
            publicUrl = "https://hive.example.net";
            renudgeMinutes = 45;
            quietHours = "22-7";
            linkHours = 12;
          };
        }"""
    )
    service = out["service"]
    config = service["serviceConfig"]
    assert re.fullmatch(r"/nix/store/[0-9a-f]{32}-hyperhive-custom/bin/hive-core serve",
                        config["ExecStart"])  # fmt: skip
    env = service["environment"]
    assert env["HIVE_STATE_DIR"] == "/srv/hive"
    assert env["HIVE_RUN_DIR"] == "/run/hh"
    assert env["HIVE_DASHBOARD_HOST"] == "0.0.0.0"
    assert env["HIVE_DASHBOARD_PORT"] == "8080"
    assert env["HIVE_DASHBOARD_ALLOWED_HOSTS"] == "hive.example.net,10.0.0.2"
    assert env["HIVE_AGENT_PORT_BASE"] == "43000"
    assert env["HIVE_OPERATOR_PRONOUNS"] == "they/them"
    assert env["HIVE_HYPERHIVE_FLAKE"] == "github:example/hyperhive"
    assert env["HIVE_NOTIFY_URLS_FILE"] == "/run/secrets/hive-notify"  # not copied to the store
    assert env["HIVE_NOTIFY_HIVE_NAME"] == "lab"
    assert env["HIVE_PUBLIC_URL"] == "https://hive.example.net"
    assert env["HIVE_NOTIFY_RENUDGE_MINUTES"] == "45"
    assert (env["HIVE_NOTIFY_QUIET_HOURS"], env["HIVE_NOTIFY_LINK_HOURS"]) == ("22-7", "12")
    # Directories other than the defaults come from tmpfiles, not State/RuntimeDirectory.
    assert "StateDirectory" not in config
    assert "RuntimeDirectory" not in config
    assert sorted(out["tmpfiles"]) == [
        "d /run/hh 0700 root root - -",
        "d /srv/hive 0700 root root - -",
    ]
    assert out["firewall"] == [8080]
    assert out["ranges"] == [{"from": 43000, "to": 43999}]  # the agents' pages too
    assert out["groups"] == ["hive-admins"]


def test_the_host_module_joins_the_hive_over_nats_without_needing_it_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = host(
        """{ enable = true;
             federation = {
               enable = true;
               natsUrl = [ "tls://nats1.example.net:4222" "tls://nats2.example.net:4222" ];
               credentialsFile = "/run/secrets/hive-alpha.creds";
               hiveId = "acme";
               hostId = "alpha";
               tlsCaFile = "/etc/ssl/nats-ca.pem";
               replicas = 3;
               capacity = 40;
             }; }"""
    )["service"]
    env = service["environment"]
    assert env["HIVE_NATS_URL"] == "tls://nats1.example.net:4222,tls://nats2.example.net:4222"
    assert env["HIVE_NATS_CREDS"] == "/run/secrets/hive-alpha.creds"  # not in the store
    assert (env["HIVE_HIVE_ID"], env["HIVE_HOST_ID"]) == ("acme", "alpha")
    assert env["HIVE_NATS_TLS_CA"] == "/etc/ssl/nats-ca.pem"
    assert (env["HIVE_NATS_REPLICAS"], env["HIVE_HOST_CAPACITY"]) == ("3", "40")
    assert service["after"] == ["network.target", "network-online.target"]
    assert service["wants"] == ["network-online.target"]
    assert "requires" not in service or "nats.service" not in service["requires"]
    nkey = host(
        """{ enable = true;
             federation = {
               enable = true;
               natsUrl = [ "nats://127.0.0.1:4222" ];
               nkeySeedFile = "/run/secrets/hive-alpha.nk";
             }; }"""
    )["service"]["environment"]
    assert nkey["HIVE_NATS_NKEY_SEED"] == "/run/secrets/hive-alpha.nk"
    assert "HIVE_NATS_CREDS" not in nkey
    off = host("{ enable = true; }")["service"]
    assert not any(k.startswith("HIVE_NATS") for k in off["environment"])
    assert off["wants"] == []
    for name in [n for n in os.environ if n.startswith("HIVE_")]:
        monkeypatch.delenv(name)
    for name in [n for n in env if n.startswith("HIVE_NATS") or n.startswith("HIVE_HOST")]:
        monkeypatch.setenv(name, env[name])
    settings = Settings(hive_id=env["HIVE_HIVE_ID"])
    assert settings.federated and settings.host_id == "alpha" and settings.host_capacity == 40


@pytest.mark.parametrize(
    ("federation", "error"),
    [
        ('{ enable = true; natsUrl = [ "http://nats.example.net" ]; }', "natsUrl"),
        ('{ enable = true; hostId = "Alpha.Example"; }', "hostId"),
        ("{ enable = true; replicas = 7; }", "replicas"),
    ],
)
def test_the_federation_options_refuse_ill_typed_values(federation: str, error: str) -> None:
    with pytest.raises(NixError, match=re.escape(error)):
        host(f"{{ enable = true; federation = {federation}; }}")


def test_the_firewall_stays_closed_on_a_public_dashboard_unless_asked() -> None:
    out = host(
        '{ enable = true; dashboard = { host = "0.0.0.0"; allowedHosts = [ "h.example" ]; }; }'
    )
    assert out["firewall"] == [] and out["ranges"] == []


def test_hive_core_accepts_the_environment_the_module_sets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = host(
        """{ enable = true; stateDir = "/srv/hive"; dashboard.port = 8080;
             dashboard.allowedHosts = [ "Hive.Example.net" ]; dashboard.host = "0.0.0.0";
             operatorPronouns = "they/them"; }"""
    )["service"]["environment"]
    hive = {k for k in env if k.startswith("HIVE_")}
    fields = {f"HIVE_{name.upper()}" for name in Settings.model_fields}
    assert hive - fields <= BACKEND_SETTINGS, "the module sets a setting hive-core lacks"
    for name in [n for n in os.environ if n.startswith("HIVE_")]:
        monkeypatch.delenv(name)
    for name in hive:
        monkeypatch.setenv(name, env[name])
    settings = Settings()
    assert settings.state_dir == Path("/srv/hive")
    assert settings.run_dir == Path("/run/hyperhive")
    assert settings.backend == "nixos"
    assert settings.dashboard_host == "0.0.0.0"
    assert settings.dashboard_port == 8080
    assert settings.dashboard_allowed_hosts == ("hive.example.net",)
    assert settings.operator_pronouns == "they/them"
    assert Path(settings.git).name == "git"


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ("{ enable = true; dashboard.port = 70000; }", "dashboard.port"),
        ('{ enable = true; dashboard.allowedHosts = "h.example"; }', "allowedHosts"),
        ('{ enable = true; dashboard.openFirewall = "yes"; }', "openFirewall"),
    ],
)
def test_the_host_module_refuses_ill_typed_values(settings: str, error: str) -> None:
    with pytest.raises(NixError, match=re.escape(error)):
        host(settings)


# -- the package --------------------------------------------------------------


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _nixpkgs_name(requirement: str) -> str:
    """nixpkgs' python3Packages attribute of a requirement: its normalised name."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name is not None, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def test_the_package_builds_the_pyproject_with_its_dependencies() -> None:
    project = _pyproject()
    runtime = sorted(_nixpkgs_name(r) for r in project["project"]["dependencies"])
    build = sorted(_nixpkgs_name(r) for r in project["build-system"]["requires"])
    names = " ".join(json.dumps(n) for n in runtime + build)
    out = nix_eval(
        f"""let p = (e.flakeWith [ {names} ]).outputs.packages; a = p.x86_64-linux.default.attrs;
        in {{
          inherit (a) pname version pyproject;
          dependencies = map (d: d.name) a.dependencies;
          build = map (d: d.name) a.build-system;
          same = p.aarch64-linux.default.attrs.pname;
        }}"""
    )
    assert out["pname"] == project["project"]["name"] == out["same"]
    assert out["version"] == project["project"]["version"]
    assert out["pyproject"] is True
    assert sorted(out["dependencies"]) == runtime
    assert sorted(out["build"]) == build


def test_the_package_source_holds_what_the_wheel_is_built_from() -> None:
    """The source set names only files that exist (lib.fileset refuses a missing one) and
    every package setuptools finds. (Debian's nix is too old for lib.fileset, so this reads
    the list rather than evaluating it.)"""
    text = (ROOT / "nix" / "package.nix").read_text(encoding="utf-8")
    start = text.index("lib.fileset.unions [")
    block = text[start : text.index("]", start)]
    entries = re.findall(r"\.\./(\S+)", block)
    for entry in entries:
        assert (ROOT / entry).exists(), entry
    packages = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= set(entries)
    assert {"pyproject.toml", "README.md", "LICENSE"} <= set(entries)


def test_the_package_stamps_its_build_id_from_its_source(tmp_path: Path) -> None:
    """The install step writes the source's digest into the installed hive_share/, which
    hive-core and the harness then read instead of hashing their files (hive_share/build.py).
    Run here as the build runs it: in the source root, with the stub interpreter replaced by
    this one."""
    script = nix_eval("(e.flakeWith [ ]).outputs.packages.x86_64-linux.default.attrs.postInstall")
    site = "lib/python3.12/site-packages"
    assert f"$out/{site}/hive_share" in script
    out = tmp_path / "out"
    (out / site / "hive_share").mkdir(parents=True)
    script = script.replace("/nix/store/python3/bin/python3.12", sys.executable)
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, check=True,
                   env={**os.environ, "out": str(out)}, timeout=TIMEOUT)  # fmt: skip
    stamp = out / site / "hive_share" / build.STAMP
    assert stamp.read_text().strip() == build.source_digest(ROOT)
