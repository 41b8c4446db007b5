# The manager's container: the harness runs as hive-mind and talks to hive-core on
# /run/hive/manager.sock. The manager edits the agents' proposed repos with git and asks
# hive-core to deploy commits from them. Those repos are the host's
# <state>/agents/<name>/proposed; the backend bind-mounts them where `whoami`'s
# config_root says (<config_root>/<name>/proposed), with each agent's applied repo beside
# it read-only (the working copies' `applied` remote); never an agent's state. Repos that
# appear while the container runs are bound into it then (`machinectl bind`). The meta
# flake, which says what every agent's container is built from, is at /meta, read-only.
{ pkgs, ... }:

{
  imports = [ ./harness-base.nix ];

  hyperhive.role = "manager";

  environment.systemPackages = [ pkgs.git ];
}
