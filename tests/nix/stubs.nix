# Declarations of the NixOS options hyperhive's modules set, loose enough to accept any
# well-formed value: the modules are evaluated with nixpkgs' lib.evalModules alone, without
# nixpkgs or NixOS.
{ lib, pkgs, ... }:

let
  inherit (lib) mkOption types;
  loose = default: mkOption {
    type = types.anything;
    inherit default;
  };
  named = mkOption {
    type = types.attrsOf types.anything;
    default = { };
  };
in
{
  options = {
    systemd.services = named;
    systemd.tmpfiles.rules = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    users.groups = named;
    networking.firewall.allowedTCPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };
    networking.firewall.allowedTCPPortRanges = mkOption {
      type = types.listOf (types.attrsOf types.port);
      default = [ ];
    };
    environment.etc = named;
    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };
    nix.package = mkOption {
      type = types.package;
      default = pkgs.nix;
    };
    nixpkgs.config = loose { };
    system.stateVersion = mkOption { type = types.str; };
    boot.isContainer = mkOption {
      type = types.bool;
      default = false;
    };
  };
}
