{
  description = "hyperhive: a swarm of long-lived Claude Code agents, each in a NixOS container";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The flake's own package as a module default, for the host and the containers.
      ownPackage = pkgs: self.packages.${pkgs.stdenv.hostPlatform.system}.default;
    in
    {
      packages = forSystems (pkgs: {
        default = pkgs.callPackage ./nix/package.nix { };
      });

      nixosModules = {
        # The host: services.hive-core.
        default =
          { lib, pkgs, ... }:
          {
            imports = [ ./nix/modules/hive-core.nix ];
            services.hive-core.package = lib.mkDefault (ownPackage pkgs);
            services.hive-core.hyperhiveFlake = lib.mkDefault "path:${self}";
          };

        # An agent's container (the meta flake adds the agent's module and hyperhive.*).
        agentBase =
          { lib, pkgs, ... }:
          {
            imports = [ ./nix/templates/agent-base.nix ];
            hyperhive.package = lib.mkDefault (ownPackage pkgs);
          };

        # The manager's container.
        manager =
          { lib, pkgs, ... }:
          {
            imports = [ ./nix/templates/manager.nix ];
            hyperhive.package = lib.mkDefault (ownPackage pkgs);
          };
      };

      lib.templates = {
        harnessBase = ./nix/templates/harness-base.nix;
        agentBase = ./nix/templates/agent-base.nix;
        manager = ./nix/templates/manager.nix;
        agentConfig = ./hive_core/templates/agent;
      };

      templates.agent = {
        path = ./hive_core/templates/agent;
        description = "A hyperhive agent's config repo: agent.toml, agent.nix, flake.nix";
      };
    };
}
