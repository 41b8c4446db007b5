# The manager's container: the harness runs as hive-mind and talks to hive-core on
# /run/hive/manager.sock. The manager edits the agents' proposed repos with git and asks
# hive-core to deploy commits from them; the backend bind-mounts those repos (the host's
# <state>/agents/<name>/proposed) at the paths hive-core names in its answers.
{ pkgs, ... }:

{
  imports = [ ./harness-base.nix ];

  hyperhive.role = "manager";

  environment.systemPackages = [ pkgs.git ];
}
