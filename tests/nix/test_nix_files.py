"""The Nix files: every one parses; the host module, the container templates, the package
and the agent config template evaluate with nixpkgs' lib alone (stub option declarations in
stubs.nix, a stub pkgs and nixpkgs in eval.nix), and what they produce is what hive-core
and the harness read.

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

from hive_agent.settings import HarnessSettings
from hive_core import config_repos
from hive_core.settings import Settings
from hive_share import agent_config, build
from hive_share.agent_config import McpServer

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


# -- the container templates --------------------------------------------------

CONTAINER_OUT = """{
  services = c.systemd.services;
  etc = c.environment.etc;
  firewall = c.networking.firewall.allowedTCPPorts;
  packages = c.environment.systemPackages;
  stateVersion = c.system.stateVersion;
  unfree = map c.nixpkgs.config.allowUnfreePredicate [
    { pname = "claude-code"; }
    { pname = "vscode"; }
  ];
}"""


def container(base: str, identity: str, agent_dir: Path | None = None, inputs: str = "{ }") -> Any:
    """A container's configuration as the meta flake builds it: the flake's `base` module,
    the agent's config flake (the template unless `agent_dir`) and the identity values."""
    directory = agent_dir or ROOT / "hive_core" / "templates" / "agent"
    allowed = [agent_dir] if agent_dir else []
    expr = f"""let
      agent = e.agentFlake {nix_path(directory)} {inputs};
      c = e.evalModules [
        e.flake.outputs.nixosModules.{base}
        agent.outputs.nixosModules.default
        {{ boot.isContainer = true; hyperhive = {identity}; }}
      ];
    in {CONTAINER_OUT}"""
    return nix_eval(expr, *allowed)


ALICE = """{
  name = "alice"; role = "agent"; port = 42017; label = "Alice the tester";
  dashboardPort = 7400; operatorPronouns = "they/them";
  webHost = "0.0.0.0"; webAllowedHosts = [ "hive.example.net" "[2001:db8::7]" ];
  package = e.drv "hyperhive-test";
  agentToml = "/nix/store/00000000000000000000000000000000-source/agent.toml";
  extraMcpServers = {
    "matrix.chat" = {
      command = "/nix/store/11111111111111111111111111111111-matrix/bin/matrix-mcp";
      args = [ "--stdio" ];
      env = { TOKEN_FILE = "/state/matrix.token"; };
      allowedTools = [ "send" "read_*" ];
    };
    bare.command = "bare-mcp";
  };
}"""


def test_an_agents_container_runs_hive_agent_with_the_contracts_paths(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = container("agentBase", ALICE)
    service = out["services"]["hive-agent"]
    assert re.fullmatch(r"/nix/store/[0-9a-f]{32}-hyperhive-test/bin/hive-agent serve",
                        service["serviceConfig"]["ExecStart"])  # fmt: skip
    assert service["serviceConfig"]["WorkingDirectory"] == "/state"
    assert service["wantedBy"] == ["multi-user.target"]
    assert service["unitConfig"]["RequiresMountsFor"] == ["/state", "/run/hive"]
    assert service["description"] == "hyperhive harness of Alice the tester"
    env = service["environment"]
    assert {k: v for k, v in env.items() if k != "HIVE_CLAUDE_BIN"} == {
        "HIVE_AGENT_NAME": "alice",
        "HIVE_ROLE": "agent",
        "HIVE_STATE": "/state",
        "HIVE_SOCKET": "/run/hive/agent.sock",
        "HIVE_HARNESS_SOCKET": "/run/hive/harness.sock",
        "HIVE_AGENT_CONFIG": "/etc/hyperhive/agent.toml",
        "HIVE_EXTRA_MCP_FILE": "/etc/hyperhive/extra-mcp.json",
        "HIVE_WEB_PORT": "42017",
        "HIVE_WEB_HOST": "0.0.0.0",
        "HIVE_WEB_ALLOWED_HOSTS": "hive.example.net,[2001:db8::7]",
        "HIVE_DASHBOARD_URL": "http://127.0.0.1:7400",
        "HIVE_OPERATOR_PRONOUNS": "they/them",
        "HOME": "/state",
    }
    assert re.fullmatch(r"/nix/store/[0-9a-f]{32}-claude-code/bin/claude", env["HIVE_CLAUDE_BIN"])
    assert out["firewall"] == [42017]
    assert out["etc"]["hyperhive/agent.toml"] == {
        "source": "/nix/store/00000000000000000000000000000000-source/agent.toml"
    }
    assert any(p.endswith("-claude-code") for p in out["packages"])
    assert out["unfree"] == [True, False]  # claude-code is the one unfree package allowed
    assert out["stateVersion"]

    # The harness reads exactly these settings.
    hive = {k for k in env if k.startswith("HIVE_")}
    assert hive <= {f"HIVE_{name.upper()}" for name in HarnessSettings.model_fields}
    for name in [n for n in os.environ if n.startswith("HIVE_")]:
        monkeypatch.delenv(name)
    for name in hive:
        monkeypatch.setenv(name, env[name])
    settings = HarnessSettings()
    assert settings.agent_name == "alice"
    assert settings.socket == Path("/run/hive/agent.sock")
    assert settings.harness_socket == Path("/run/hive/harness.sock")
    assert settings.state == Path("/state")
    assert settings.web_port == 42017
    assert settings.web_host == "0.0.0.0"
    assert settings.web_allowed_hosts == ("hive.example.net", "[2001:db8::7]")
    assert settings.dashboard_url == "http://127.0.0.1:7400"
    assert settings.agent_config == Path("/etc/hyperhive/agent.toml")
    assert settings.extra_mcp_file == Path("/etc/hyperhive/extra-mcp.json")


def test_extra_mcp_servers_become_the_json_the_harness_loads(tmp_path: Path) -> None:
    out = container("agentBase", ALICE)
    text = out["etc"]["hyperhive/extra-mcp.json"]["text"]
    assert json.loads(text) == {
        "matrix.chat": {
            "command": "/nix/store/11111111111111111111111111111111-matrix/bin/matrix-mcp",
            "args": ["--stdio"],
            "env": {"TOKEN_FILE": "/state/matrix.token"},
            "allowedTools": ["send", "read_*"],
        },
        "bare": {"command": "bare-mcp", "args": [], "env": {}, "allowedTools": []},
    }
    extra = tmp_path / "extra-mcp.json"
    extra.write_text(text, encoding="utf-8")
    toml = tmp_path / "agent.toml"
    toml.write_text('[mcp_servers.notes]\ncommand = "notes"\n', encoding="utf-8")
    config = agent_config.load(toml, extra)
    assert config.mcp_servers == {
        "notes": McpServer(command="notes"),
        "matrix.chat": McpServer(
            command="/nix/store/11111111111111111111111111111111-matrix/bin/matrix-mcp",
            args=["--stdio"],
            env={"TOKEN_FILE": "/state/matrix.token"},
            allowed_tools=["send", "read_*"],
        ),
        "bare": McpServer(command="bare-mcp"),
    }
    assert agent_config.allowed_patterns(config) == [
        "mcp__matrix_chat__send",
        "mcp__matrix_chat__read_*",
    ]


def test_without_extra_servers_the_file_is_an_empty_object_and_no_agent_toml_is_installed() -> None:
    out = container("agentBase", '{ name = "bob"; port = 42000; package = e.drv "hh"; }')
    assert json.loads(out["etc"]["hyperhive/extra-mcp.json"]["text"]) == {}
    assert "hyperhive/agent.toml" not in out["etc"]
    env = out["services"]["hive-agent"]["environment"]
    assert env["HIVE_OPERATOR_PRONOUNS"] == "she/her"
    assert env["HIVE_DASHBOARD_URL"] == "http://127.0.0.1:7357"
    assert (env["HIVE_WEB_HOST"], env["HIVE_WEB_ALLOWED_HOSTS"]) == ("127.0.0.1", "")
    assert agent_config.parse_extra(out["etc"]["hyperhive/extra-mcp.json"]["text"], "x") == {}


def test_the_managers_container_runs_hive_mind_on_manager_sock() -> None:
    out = container(
        "manager", '{ name = "hm1nd"; role = "manager"; port = 42999; package = e.drv "hh"; }'
    )
    service = out["services"]["hive-agent"]
    assert service["serviceConfig"]["ExecStart"].endswith("-hh/bin/hive-mind serve")
    assert service["environment"]["HIVE_ROLE"] == "manager"
    assert service["environment"]["HIVE_SOCKET"] == "/run/hive/manager.sock"
    assert any(p.endswith("-git") for p in out["packages"])


def test_the_flakes_modules_default_the_package_to_its_own() -> None:
    out = container("agentBase", '{ name = "bob"; port = 42000; }')
    package = nix_eval("(e.flakeWith [ ]).outputs.packages.x86_64-linux.default.outPath")
    assert out["services"]["hive-agent"]["serviceConfig"]["ExecStart"] == (
        f"{package}/bin/hive-agent serve"
    )


@pytest.mark.parametrize(
    ("identity", "error"),
    [
        ('{ name = "Alice"; port = 1; package = e.drv "hh"; }', "hyperhive.name"),
        ('{ name = "a234567890"; port = 1; package = e.drv "hh"; }', "hyperhive.name"),
        ('{ name = "a"; port = 1; role = "boss"; package = e.drv "hh"; }', "hyperhive.role"),
        ('{ name = "a"; port = 70000; package = e.drv "hh"; }', "hyperhive.port"),
        (
            '{ name = "a"; port = 1; package = e.drv "hh"; webAllowedHosts = [ "a,b" ]; }',
            "hyperhive.webAllowedHosts",
        ),
        (
            '{ name = "a"; port = 1; package = e.drv "hh"; webAllowedHosts = "a"; }',
            "hyperhive.webAllowedHosts",
        ),
        (
            '{ name = "a"; port = 1; package = e.drv "hh"; extraMcpServers.x.cmd = "y"; }',
            "cmd",
        ),
        (
            '{ name = "a"; port = 1; package = e.drv "hh";'
            ' extraMcpServers.x = { command = "y"; allowedTools = [ "a b" ]; }; }',
            "allowedTools",
        ),
    ],
)
def test_the_container_options_refuse_ill_typed_values(identity: str, error: str) -> None:
    with pytest.raises(NixError, match=re.escape(error)):
        container("agentBase", identity)


# -- the agent's own config flake ---------------------------------------------


def _uncomment_examples(text: str) -> str:
    """agent.nix with its commented examples switched on."""
    return re.sub(r"^(\s*)# (?=hyperhive\.|  |};|ripgrep|jq)", r"\1", text, flags=re.MULTILINE)


def test_the_templates_examples_work_with_a_flake_input(tmp_path: Path) -> None:
    template = ROOT / "hive_core" / "templates" / "agent"
    agent_dir = tmp_path / "applied"
    agent_dir.mkdir()
    shutil.copy(template / "flake.nix", agent_dir / "flake.nix")
    text = _uncomment_examples((template / "agent.nix").read_text(encoding="utf-8"))
    assert "# hyperhive" not in text
    (agent_dir / "agent.nix").write_text(text, encoding="utf-8")
    matrix = '{ matrix-mcp.packages.x86_64-linux.default = e.drv "matrix-mcp"; }'
    out = container("agentBase", '{ name = "carol"; port = 42003; package = e.drv "hh"; }',
                    agent_dir, matrix)  # fmt: skip
    extra = agent_config.parse_extra(out["etc"]["hyperhive/extra-mcp.json"]["text"], "x")
    assert list(extra) == ["matrix"]
    assert re.fullmatch(r"/nix/store/[0-9a-f]{32}-matrix-mcp/bin/matrix-mcp",
                        extra["matrix"].command)  # fmt: skip
    assert extra["matrix"].allowed_tools == ["*"]
    assert any(p.endswith("-ripgrep") for p in out["packages"])


def test_the_templates_flake_has_no_inputs_and_forwards_them_to_agent_nix() -> None:
    out = nix_eval(
        f"""let a = e.agentFlake {nix_path(ROOT / "hive_core" / "templates" / "agent")} {{ }};
            m = a.outputs.nixosModules.default;
        in {{
          inputs = a.inputs;
          imports = map toString m.imports;
          forwarded = builtins.attrNames m._module.args.flakeInputs;
        }}"""
    )
    assert out["inputs"] == {}
    assert [Path(p).name for p in out["imports"]] == ["agent.nix"]
    assert out["forwarded"] == ["self"]


def test_the_root_flake_exposes_the_contracts_outputs() -> None:
    out = nix_eval(
        """let o = e.flake.outputs; in {
          inputs = e.flake.inputs.nixpkgs.url;
          modules = builtins.attrNames o.nixosModules;
          packages = builtins.mapAttrs (_: builtins.attrNames) o.packages;
          templates = map toString (builtins.attrValues o.lib.templates);
          agent = toString o.templates.agent.path;
        }"""
    )
    assert out["inputs"] == "github:NixOS/nixpkgs/nixos-unstable"
    assert out["modules"] == ["agentBase", "default", "manager"]
    assert out["packages"] == {"aarch64-linux": ["default"], "x86_64-linux": ["default"]}
    assert all(Path(p).exists() for p in out["templates"])
    assert Path(out["agent"]) == ROOT / "hive_core" / "templates" / "agent"
