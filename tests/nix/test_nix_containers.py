"""The container templates and the agent's config flake, evaluated with nixpkgs' lib alone as
the meta flake puts them together: what an agent's and the manager's containers run, the
environment and files the harness reads, the options' types, the template's examples and
inputs, and the root flake's outputs. Evaluation goes through test_nix_files.py's nix_eval
(restricted, a dummy store, skipped without nix-instantiate or HIVE_TEST_NIXPKGS_LIB)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from hive_agent.settings import HarnessSettings
from hive_share import agent_config
from hive_share.agent_config import McpServer
from tests.nix.test_nix_files import ROOT, NixError, nix_eval, nix_path

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
