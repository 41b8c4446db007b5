# This agent's config as a flake: only a NixOS module. hive-core's meta flake takes this
# repo as an input and adds nixosModules.default to the agent's container.
{
  description = "A hyperhive agent's container configuration";

  # No inputs by default. To use a package from another flake in agent.nix:
  #   inputs.matrix-mcp.url = "github:example/matrix-mcp";
  # then refer to it as flakeInputs.matrix-mcp in agent.nix.
  inputs = { };

  outputs = inputs: {
    nixosModules.default = {
      imports = [ ./agent.nix ];
      _module.args.flakeInputs = inputs;
    };
  };
}
