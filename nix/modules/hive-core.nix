# The host side of hyperhive: hive-core as the systemd service `hive-core`, running each
# agent in its own nixos-container (HIVE_BACKEND=nixos).
#
# The flake's nixosModules.default imports this file and defaults `package` (and
# `hyperhiveFlake`) to the flake's own; imported on its own, set them.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) mkOption types;
  cfg = config.services.hive-core;
  defaultStateDir = "/var/lib/hyperhive";
  defaultRunDir = "/run/hyperhive";
in
{
  options.services.hive-core = {
    enable = lib.mkEnableOption "hive-core, the hyperhive daemon";

    package = mkOption {
      type = types.package;
      description = "The hyperhive package (hive-core, hive-agent, hive-mind).";
    };

    hyperhiveFlake = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "github:example/hyperhive";
      description = ''
        The flake reference of hyperhive that the agents' containers are built from
        (HIVE_HYPERHIVE_FLAKE, the meta flake's `hyperhive` input). The flake's module sets
        it to its own source; null leaves hive-core's default.
      '';
    };

    stateDir = mkOption {
      type = types.str;
      default = defaultStateDir;
      description = "Durable state: hive.sqlite, the meta flake, each agent's repos and state.";
    };

    runDir = mkOption {
      type = types.str;
      default = defaultRunDir;
      description = ''
        Sockets (host.sock, each agent's socket dir). Keep it short: the longest socket path
        under it must fit in 107 bytes, so at most 77 bytes.
      '';
    };

    dashboard = {
      host = mkOption {
        type = types.str;
        default = "127.0.0.1";
        description = "Dashboard bind address; beyond loopback it needs allowedHosts.";
      };
      port = mkOption {
        type = types.port;
        default = 7357;
        description = "Dashboard port.";
      };
      allowedHosts = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "hive.example.net" ];
        description = "Host names browsers use to reach the dashboard beyond loopback.";
      };
      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Open the dashboard's port and the agents' page ports (agentPortBase and the 999
          after it) in the firewall: agent pages listen where the dashboard does.
        '';
      };
    };

    agentPortBase = mkOption {
      type = types.ints.between 1024 64536;
      default = 42000;
      description = "The first of the 1000 ports the agents' pages get theirs from.";
    };

    operatorPronouns = mkOption {
      type = types.str;
      default = "she/her";
      description = "The operator's pronouns, substituted into the agents' role prompts.";
    };

    notify = {
      urlsFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/secrets/hive-notify-urls";
        description = ''
          A file of Apprise URLs the attention list is sent to (HIVE_NOTIFY_URLS_FILE), read
          by hive-core at start. A string, not a path, so its secrets never enter the Nix
          store: keep the file 0600, from a secrets manager.
        '';
      };
      hiveName = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "How notifications name this hive (HIVE_NOTIFY_HIVE_NAME; default the host name).";
      };
      publicUrl = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "https://hive.example.net";
        description = "The dashboard's address as your devices reach it, for notification links (HIVE_PUBLIC_URL).";
      };
      quietHours = mkOption {
        type = types.nullOr (types.strMatching "[0-9]{1,2}-[0-9]{1,2}");
        default = null;
        example = "22-7";
        description = "Local hours in which only urgent items are sent; the rest wait for a digest (HIVE_NOTIFY_QUIET_HOURS).";
      };
      linkHours = mkOption {
        type = types.nullOr types.ints.positive;
        default = null;
        description = "How long a notification's one-tap link works (HIVE_NOTIFY_LINK_HOURS; default 24).";
      };
      renudgeMinutes = mkOption {
        type = types.nullOr types.ints.positive;
        default = null;
        description = "Send a still-open approval or question again once it is this old (HIVE_NOTIFY_RENUDGE_MINUTES; default 30).";
      };
    };

    federation = {
      enable = lib.mkEnableOption "joining the hive's other hosts over NATS JetStream (docs/multihost.md)";
      natsUrl = mkOption {
        type = types.listOf (types.strMatching "(nats|tls)://.+");
        default = [ ];
        example = [
          "tls://nats1.example.net:4222"
          "tls://nats2.example.net:4222"
          "tls://nats3.example.net:4222"
        ];
        description = "The NATS servers (HIVE_NATS_URL); TLS beyond loopback.";
      };
      credentialsFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/secrets/hive-alpha.creds";
        description = ''
          This host's NATS credentials file (HIVE_NATS_CREDS). A string, not a path, so the
          secret never enters the Nix store.
        '';
      };
      nkeySeedFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "/run/secrets/hive-alpha.nk";
        description = ''
          This host's NATS user NKey seed file (HIVE_NATS_NKEY_SEED), instead of a
          credentials file; `hive-core nats-nkey FILE` makes one and prints the public key
          for the server's users. A string, not a path, so the secret never enters the Nix
          store.
        '';
      };
      hiveId = mkOption {
        type = types.strMatching "[a-z0-9][a-z0-9-]{0,31}";
        default = "hive";
        description = "The hive's id, the same on every host (HIVE_HIVE_ID).";
      };
      hostId = mkOption {
        type = types.nullOr (types.strMatching "[a-z0-9][a-z0-9-]{0,31}");
        default = null;
        description = "This host's id in the hive (HIVE_HOST_ID; default the short host name).";
      };
      tlsCaFile = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "The CA of the NATS servers' certificates (HIVE_NATS_TLS_CA).";
      };
      replicas = mkOption {
        type = types.ints.between 1 5;
        default = 3;
        description = "Copies JetStream keeps of the hive's stream and buckets (HIVE_NATS_REPLICAS).";
      };
      capacity = mkOption {
        type = types.ints.between 0 10000;
        default = 30;
        description = "Agents this host takes (HIVE_HOST_CAPACITY).";
      };
    };

    adminGroup = mkOption {
      type = types.str;
      default = "hyperhive";
      description = ''
        A group created for the hive's operators. hive-core keeps its sockets 0600 to root
        for now, so membership does not yet grant access to host.sock; use sudo.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    users.groups.${cfg.adminGroup} = { };

    networking.firewall.allowedTCPPorts = lib.optional cfg.dashboard.openFirewall cfg.dashboard.port;
    networking.firewall.allowedTCPPortRanges = lib.optional cfg.dashboard.openFirewall {
      from = cfg.agentPortBase;
      to = cfg.agentPortBase + 999;
    };

    # The default dirs come from StateDirectory/RuntimeDirectory below; other ones from here.
    systemd.tmpfiles.rules =
      lib.optional (cfg.stateDir != defaultStateDir) "d ${cfg.stateDir} 0700 root root - -"
      ++ lib.optional (cfg.runDir != defaultRunDir) "d ${cfg.runDir} 0700 root root - -";

    systemd.services.hive-core = {
      description = "hyperhive: hive-core";
      wantedBy = [ "multi-user.target" ];
      # NATS is never required: hive-core serves its own agents without it and keeps
      # trying the servers; when they run here, it starts after them.
      after = [
        "network.target"
      ]
      ++ lib.optionals cfg.federation.enable (
        [ "network-online.target" ]
        ++ lib.optional (config.services ? nats && config.services.nats.enable) "nats.service"
      );
      wants = lib.optional cfg.federation.enable "network-online.target";
      # The tools hive-core runs: nixos-container, git (also named by HIVE_GIT, since
      # hive-core looks git up on a fixed PATH), nix.
      path = [
        pkgs.nixos-container
        pkgs.git
        config.nix.package
      ];
      environment = {
        HIVE_STATE_DIR = cfg.stateDir;
        HIVE_RUN_DIR = cfg.runDir;
        HIVE_BACKEND = "nixos";
        HIVE_DASHBOARD_HOST = cfg.dashboard.host;
        HIVE_DASHBOARD_PORT = toString cfg.dashboard.port;
        HIVE_DASHBOARD_ALLOWED_HOSTS = lib.concatStringsSep "," cfg.dashboard.allowedHosts;
        HIVE_AGENT_PORT_BASE = toString cfg.agentPortBase;
        HIVE_OPERATOR_PRONOUNS = cfg.operatorPronouns;
        HIVE_GIT = "${pkgs.git}/bin/git";
        # Builds go to the nix daemon, outside this unit's sandbox.
        NIX_REMOTE = "daemon";
      }
      // lib.optionalAttrs (cfg.hyperhiveFlake != null) {
        HIVE_HYPERHIVE_FLAKE = cfg.hyperhiveFlake;
      }
      // lib.optionalAttrs (cfg.notify.urlsFile != null) {
        HIVE_NOTIFY_URLS_FILE = cfg.notify.urlsFile;
      }
      // lib.optionalAttrs (cfg.notify.hiveName != null) {
        HIVE_NOTIFY_HIVE_NAME = cfg.notify.hiveName;
      }
      // lib.optionalAttrs (cfg.notify.publicUrl != null) {
        HIVE_PUBLIC_URL = cfg.notify.publicUrl;
      }
      // lib.optionalAttrs (cfg.notify.quietHours != null) {
        HIVE_NOTIFY_QUIET_HOURS = cfg.notify.quietHours;
      }
      // lib.optionalAttrs (cfg.notify.linkHours != null) {
        HIVE_NOTIFY_LINK_HOURS = toString cfg.notify.linkHours;
      }
      // lib.optionalAttrs (cfg.notify.renudgeMinutes != null) {
        HIVE_NOTIFY_RENUDGE_MINUTES = toString cfg.notify.renudgeMinutes;
      }
      // lib.optionalAttrs cfg.federation.enable (
        {
          HIVE_NATS_URL = lib.concatStringsSep "," cfg.federation.natsUrl;
          HIVE_HIVE_ID = cfg.federation.hiveId;
          HIVE_NATS_REPLICAS = toString cfg.federation.replicas;
          HIVE_HOST_CAPACITY = toString cfg.federation.capacity;
        }
        // lib.optionalAttrs (cfg.federation.hostId != null) {
          HIVE_HOST_ID = cfg.federation.hostId;
        }
        // lib.optionalAttrs (cfg.federation.credentialsFile != null) {
          HIVE_NATS_CREDS = cfg.federation.credentialsFile;
        }
        // lib.optionalAttrs (cfg.federation.nkeySeedFile != null) {
          HIVE_NATS_NKEY_SEED = cfg.federation.nkeySeedFile;
        }
        // lib.optionalAttrs (cfg.federation.tlsCaFile != null) {
          HIVE_NATS_TLS_CA = cfg.federation.tlsCaFile;
        }
      );
      serviceConfig = {
        Type = "notify";
        NotifyAccess = "main";
        ExecStart = "${cfg.package}/bin/hive-core serve";
        WatchdogSec = "30s";
        Restart = "on-failure";
        RestartSec = "5s";
        # The drain stops the agents' containers; give it time before SIGKILL.
        TimeoutStopSec = "120s";
        UMask = "0077";
      }
      // lib.optionalAttrs (cfg.stateDir == defaultStateDir) {
        StateDirectory = "hyperhive";
        StateDirectoryMode = "0700";
      }
      // lib.optionalAttrs (cfg.runDir == defaultRunDir) {
        RuntimeDirectory = "hyperhive";
        # Kept across restarts: the running containers have the agents' socket dirs under
        # it bind-mounted, and a new directory would not reach them.
        RuntimeDirectoryPreserve = "yes";
      }
      // {
        RuntimeDirectoryMode = "0700";

        # Hardening that leaves nixos-container working. It runs as root (containers need
        # it), creates and removes /etc/nixos-containers/<name>.conf and
        # /var/lib/nixos-containers/<name>, sets per-container profiles under /nix/var/nix,
        # talks to the nix daemon and systemd (container@<name>.service), and enters
        # containers (nixos-container run: setns, which needs CAP_SYS_ADMIN and no
        # RestrictNamespaces). So ProtectSystem=full (read-only /etc) or strict, a
        # CapabilityBoundingSet and RestrictNamespaces would break it; ProtectHome would hide
        # /root, where nix run as root keeps its caches; ProtectClock and PrivateDevices
        # would put a device allow-list on commands run inside containers through
        # nixos-container run. What remains is safe:
        ProtectSystem = true; # /usr and /boot read-only; /etc, /var and /nix writable
        PrivateTmp = true;
        NoNewPrivileges = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        RestrictRealtime = true;
        LockPersonality = true;
        # Unix sockets (its own, the nix daemon, systemd), the dashboard, and netlink for
        # the container tools.
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
          "AF_NETLINK"
        ];
      };
    };
  };
}
