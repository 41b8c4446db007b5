# Evaluates hyperhive's Nix files without nixpkgs: the root flake's outputs with a stub
# nixpkgs, and NixOS modules with lib.evalModules over ./stubs.nix and a stub pkgs.
# Called by test_nix_files.py as `import ./eval.nix { lib = import <nixpkgs-lib>; root = <repo>; }`.
{ lib, root }:

let
  # A fake derivation: enough for types.package and string interpolation.
  drv = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
  };

  # python3Packages: only the names pyproject.toml's dependencies map to (the test passes
  # them), so package.nix cannot name another one.
  python3Packages = names: lib.genAttrs names drv // {
    buildPythonApplication = attrs: drv "${attrs.pname}-${attrs.version}" // { inherit attrs; };
  };

  pkgsFor = pythonNames: lib.genAttrs [
    "nixos-container"
    "git"
    "nix"
    "claude-code"
    "coreutils"
    "ripgrep"
    "jq"
  ] drv // {
    stdenv.hostPlatform.system = "x86_64-linux";
    python3Packages = python3Packages pythonNames;
    callPackage = path: args: import path ({ inherit lib; python3Packages = python3Packages pythonNames; } // args);
  };

  pkgs = pkgsFor [ ];

  flakeWith = pythonNames:
    let
      flake = import (root + "/flake.nix");
      outputs = flake.outputs {
        self = outputs // { outPath = "/nix/store/00000000000000000000000000000000-source"; };
        nixpkgs = {
          inherit lib;
          legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: pkgsFor pythonNames);
        };
      };
    in
    {
      inherit (flake) inputs;
      inherit outputs;
    };

  evalModules = modules:
    (lib.evalModules {
      modules = [ ./stubs.nix { _module.args.pkgs = pkgs; } ] ++ modules;
    }).config;
in
{
  inherit drv pkgs evalModules flakeWith;
  flake = flakeWith [ ];
  # The agent template's flake, called the way the meta flake's input would be.
  agentFlake = dir: extraInputs:
    let
      flake = import (dir + "/flake.nix");
      outputs = flake.outputs ({ self = outputs // { outPath = dir; }; } // extraInputs);
    in
    {
      inherit (flake) inputs;
      inherit outputs;
    };
}
