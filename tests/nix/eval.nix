# Evaluates hyperhive's Nix files without nixpkgs: the root flake's outputs with a stub
# nixpkgs, and NixOS modules with lib.evalModules over ./stubs.nix and a stub pkgs.
# test_nix_files.py calls it as `import ./eval.nix { lib = import <nixpkgs lib>; root = <repo>; }`.
{ lib, root }:

let
  # A fake derivation: enough for types.package and string interpolation.
  drv = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
  };

  # python3Packages with only `names` (the test passes the ones pyproject.toml's
  # dependencies map to, so package.nix cannot name another), and a buildPythonApplication
  # that keeps its arguments as `attrs`.
  python3Packages =
    names:
    lib.genAttrs names drv
    // {
      buildPythonApplication = attrs: drv "${attrs.pname}-${attrs.version}" // { inherit attrs; };
      python = {
        interpreter = "/nix/store/python3/bin/python3.12";
        sitePackages = "lib/python3.12/site-packages";
      };
    };

  pkgsFor =
    pythonNames:
    let
      python = python3Packages pythonNames;
    in
    lib.genAttrs [
      "nixos-container"
      "git"
      "nix"
      "claude-code"
      "ripgrep"
      "jq"
    ] drv
    // {
      stdenv.hostPlatform.system = "x86_64-linux";
      python3Packages = python;
      callPackage = path: args: import path ({ inherit lib; python3Packages = python; } // args);
    };

  pkgs = pkgsFor [ ];

  # The root flake's outputs, with `self` and a stub nixpkgs.
  flakeWith =
    pythonNames:
    let
      flake = import (root + "/flake.nix");
      outputs = flake.outputs {
        self = outputs // {
          outPath = "/nix/store/00000000000000000000000000000000-source";
        };
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

  # A NixOS configuration's `config`, as far as the stub options go.
  evalModules =
    modules:
    (lib.evalModules {
      modules = [
        ./stubs.nix
        { _module.args.pkgs = pkgs; }
      ]
      ++ modules;
    }).config;

  # An agent's config flake (the template's, or a test's copy), called the way the meta
  # flake's input would be, with `extraInputs` as its inputs.
  agentFlake =
    dir: extraInputs:
    let
      flake = import (dir + "/flake.nix");
      outputs = flake.outputs ({ self = outputs // { outPath = dir; }; } // extraInputs);
    in
    {
      inherit (flake) inputs;
      inherit outputs;
    };
in
{
  inherit
    drv
    pkgs
    evalModules
    flakeWith
    agentFlake
    ;
  flake = flakeWith [ ];
}
