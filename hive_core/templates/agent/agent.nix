# This agent's NixOS configuration, inside its container (nixos backend). Edit it in the
# agent's `proposed` repo, commit, and ask hive-core to deploy the commit; the operator
# approves the diff, and the container is rebuilt with it. agent.toml (model, env, MCP
# servers) applies on both backends; this file only on NixOS.
#
# `flakeInputs` are this repo's flake inputs (flake.nix), e.g. a flake that packages an
# MCP server.
{
  config,
  lib,
  pkgs,
  flakeInputs,
  ...
}:

{
  # Programs on the agent's PATH (its tools run them).
  environment.systemPackages = with pkgs; [
    # ripgrep
    # jq
  ];

  # Extra MCP servers, merged with agent.toml's (a key defined in both is refused).
  # `allowedTools` patterns become mcp__<key>__<pattern>.
  # hyperhive.extraMcpServers.matrix = {
  #   command = "${flakeInputs.matrix-mcp.packages.${pkgs.stdenv.hostPlatform.system}.default}/bin/matrix-mcp";
  #   args = [ "--stdio" ];
  #   env = { TOKEN_FILE = "/state/matrix.token"; };
  #   allowedTools = [ "*" ];
  # };
}
