# A sub-agent's container: the harness (hive-agent) with its options. The meta flake adds
# the agent's own module (its applied repo's flake, agent.nix) and the hyperhive.* values.
{ ... }:

{
  imports = [ ./harness-base.nix ];

  hyperhive.role = "agent";
}
