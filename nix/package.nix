# hyperhive as a Python application: hive-core, hive-agent and hive-mind.
# Called by the root flake.nix with nixpkgs' callPackage.
{ lib, python3Packages }:

let
  project = (lib.importTOML ../pyproject.toml).project;

  # Only what the wheel is built from (no bytecode a checkout may hold); tests, docs and
  # tooling stay out of the store path.
  sourceFiles = lib.fileset.difference (lib.fileset.unions [
    ../pyproject.toml
    ../README.md
    ../LICENSE
    ../hive_share
    ../hive_core
    ../hive_agent
    ../hive_front
  ]) (lib.fileset.fileFilter (file: file.hasExt "pyc") ../.);
in
python3Packages.buildPythonApplication {
  pname = project.name;
  inherit (project) version;
  pyproject = true;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = sourceFiles;
  };

  # pyproject.toml's [build-system] requires.
  build-system = [ python3Packages.setuptools ];

  # pyproject.toml's [project] dependencies (tests/nix checks that the lists agree).
  dependencies = with python3Packages; [
    pydantic
    pydantic-settings
    fastapi
    uvicorn
    sse-starlette
    mcp
    aiosqlite
    uvloop
    anyio
    apprise
    typer
    click
    nats-py
    nkeys
  ];

  # The build id (hive_share/build.py): the digest of this source's packages, computed once
  # here and read by hive-core and the harness, which report and compare it, instead of
  # hashing their installed files at run time.
  postInstall = ''
    ${python3Packages.python.interpreter} -I hive_share/build.py . \
      "$out/${python3Packages.python.sitePackages}/hive_share"
  '';

  # The test suite needs the Claude Code CLI, chromium and a network-free fake API; it runs
  # from a checkout (./dev test), not in the build sandbox.
  doCheck = false;
  # The daemon and the harness import every runtime dependency between them.
  pythonImportsCheck = [
    "hive_core.daemon"
    "hive_agent.serve"
    "hive_agent.web"
  ];

  meta = {
    description = project.description;
    license = lib.licenses.mit;
    mainProgram = "hive-core";
    platforms = lib.platforms.linux;
  };
}
