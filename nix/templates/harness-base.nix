# What every hyperhive container runs, sub-agent or manager: the harness as the systemd
# service `hive-agent`, the Claude Code CLI, and the `hyperhive.*` options the meta flake
# sets per agent (and the agent's own agent.nix may extend, e.g. extraMcpServers).
#
# Container paths (hive-core's nixos backend bind-mounts the host side):
#   /state      <state>/agents/<name>/state, read-write: the agent's durable state and cwd
#   /run/hive   <run>/agents/<name>, read-write: agent.sock (manager.sock for the manager),
#               served by hive-core; harness.sock and mcp.sock, served by the harness
#   /etc/hyperhive/agent.toml        hyperhive.agentToml (the applied repo's agent.toml)
#   /etc/hyperhive/extra-mcp.json    hyperhive.extraMcpServers as JSON
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) mkOption types;
  cfg = config.hyperhive;

  stateDir = "/state";
  socketDir = "/run/hive";
  coreSocket = if cfg.role == "manager" then "manager.sock" else "agent.sock";
  harness = if cfg.role == "manager" then "hive-mind" else "hive-agent";

  mcpServer = types.submodule {
    options = {
      command = mkOption {
        type = types.str;
        description = "The server's executable (stdio MCP), e.g. a store path.";
      };
      args = mkOption {
        type = types.listOf types.str;
        default = [ ];
        description = "Its arguments.";
      };
      env = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Extra environment for the server.";
      };
      allowedTools = mkOption {
        type = types.listOf (types.strMatching "[A-Za-z0-9_*-]{1,100}");
        default = [ ];
        description = ''
          Tools the agent may call, each becoming `mcp__<key>__<pattern>` (the key with
          every character outside [A-Za-z0-9_-] replaced by `_`).
        '';
      };
    };
  };
in
{
  options.hyperhive = {
    name = mkOption {
      type = types.strMatching "[a-z][a-z0-9-]{0,8}";
      description = "The agent's name (the container is h-<name>).";
    };
    role = mkOption {
      type = types.enum [
        "agent"
        "manager"
      ];
      default = "agent";
      description = "Which harness runs: hive-agent (agent) or hive-mind (manager).";
    };
    port = mkOption {
      type = types.port;
      description = "The agent page's web port (HIVE_WEB_PORT), opened in the firewall.";
    };
    label = mkOption {
      type = types.str;
      default = cfg.name;
      defaultText = lib.literalExpression "config.hyperhive.name";
      description = "Display label of the agent (the harness service's description).";
    };
    dashboardPort = mkOption {
      type = types.port;
      default = 7357;
      description = "hive-core's dashboard port, for the agent page's link back.";
    };
    webHost = mkOption {
      type = types.str;
      default = "127.0.0.1";
      description = ''
        Where the agent page listens (HIVE_WEB_HOST); hive-core sets the dashboard's bind
        address, so the pages listen where the dashboard does.
      '';
    };
    webAllowedHosts = mkOption {
      type = types.listOf (types.strMatching "[^,[:space:]]+");
      default = [ ];
      description = ''
        Host names (no port) the agent page answers to besides loopback
        (HIVE_WEB_ALLOWED_HOSTS, comma-joined); hive-core sets the dashboard's allowed hosts.
      '';
    };
    operatorPronouns = mkOption {
      type = types.str;
      default = "she/her";
      description = "The operator's pronouns, substituted into the role prompt.";
    };
    package = mkOption {
      type = types.package;
      description = "The hyperhive package providing hive-agent and hive-mind.";
    };
    agentToml = mkOption {
      type = types.nullOr types.path;
      default = null;
      description = "The agent's agent.toml, installed as /etc/hyperhive/agent.toml.";
    };
    extraMcpServers = mkOption {
      type = types.attrsOf mcpServer;
      default = { };
      description = ''
        Extra MCP servers, written to /etc/hyperhive/extra-mcp.json and merged by the
        harness with agent.toml's mcp_servers (a key in both is refused).
      '';
    };
  };

  config = {
    environment.systemPackages = [
      pkgs.claude-code
      pkgs.git
      cfg.package
    ];

    environment.etc = {
      "hyperhive/extra-mcp.json".text = builtins.toJSON cfg.extraMcpServers;
    }
    // lib.optionalAttrs (cfg.agentToml != null) {
      "hyperhive/agent.toml".source = cfg.agentToml;
    };

    # The agent page listens on this port, at webHost (loopback unless the dashboard listens
    # beyond it; the dashboard links to it).
    networking.firewall.allowedTCPPorts = [ cfg.port ];

    # Claude Code is unfree: allow exactly it. (nixpkgs.config merges definitions with
    # recursiveUpdate, so an agent.nix that sets its own predicate replaces this one.)
    nixpkgs.config.allowUnfreePredicate = pkg: lib.getName pkg == "claude-code";

    systemd.services.hive-agent = {
      description = "hyperhive harness of ${cfg.label}";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      unitConfig.RequiresMountsFor = [
        stateDir
        socketDir
      ];
      # What the agent's tools run besides its own packages (environment.systemPackages is
      # on PATH through /run/current-system/sw/bin as well).
      path = [
        pkgs.claude-code
        pkgs.git
        "/run/current-system/sw"
      ];
      environment = {
        HIVE_AGENT_NAME = cfg.name;
        HIVE_ROLE = cfg.role;
        HIVE_STATE = stateDir;
        HIVE_SOCKET = "${socketDir}/${coreSocket}";
        HIVE_HARNESS_SOCKET = "${socketDir}/harness.sock";
        HIVE_AGENT_CONFIG = "/etc/hyperhive/agent.toml";
        HIVE_EXTRA_MCP_FILE = "/etc/hyperhive/extra-mcp.json";
        HIVE_WEB_PORT = toString cfg.port;
        HIVE_WEB_HOST = cfg.webHost;
        HIVE_WEB_ALLOWED_HOSTS = lib.concatStringsSep "," cfg.webAllowedHosts;
        # The harness takes only the scheme and the port from it (containers share the
        # host's network).
        HIVE_DASHBOARD_URL = "http://127.0.0.1:${toString cfg.dashboardPort}";
        HIVE_OPERATOR_PRONOUNS = cfg.operatorPronouns;
        HIVE_CLAUDE_BIN = "${pkgs.claude-code}/bin/claude";
        HOME = stateDir;
      };
      serviceConfig = {
        ExecStart = "${cfg.package}/bin/${harness} serve";
        WorkingDirectory = stateDir;
        # hive-core's crash watch restarts a container that stops; a harness that dies
        # inside a running container is restarted here.
        Restart = "on-failure";
        RestartSec = "5s";
        # SIGTERM: the harness cancels a running turn (claude gets SIGINT, then SIGKILL
        # after 5 s) and exits.
        TimeoutStopSec = "30s";
        KillMode = "mixed";
        UMask = "0077";
      };
    };

    system.stateVersion = lib.mkDefault "25.11";
  };
}
