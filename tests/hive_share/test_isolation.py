from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import hive_share

REPO = Path(hive_share.__file__).resolve().parent.parent

# Imports every submodule of hive_share in a fresh interpreter and reports the
# top-level modules that appeared because of it.
PROBE = """
import importlib, json, pkgutil, sys
before = set(sys.modules)
import hive_share
subs = sorted(m.name for m in pkgutil.iter_modules(hive_share.__path__))
for name in subs:
    importlib.import_module("hive_share." + name)
added = sorted({m.split(".")[0] for m in set(sys.modules) - before})
print(json.dumps({"submodules": subs, "added": added}))
"""

FORBIDDEN = {
    "hive_core",
    "hive_agent",
    "hive_front",
    "fastapi",
    "starlette",
    "sse_starlette",
    "uvicorn",
    "mcp",
    "typer",
    "click",
    "anyio",
    "aiosqlite",
    "git",
    "orjson",
    "uvloop",
    "httpx",
}


def _normalize(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _dependency_closure(dist: str) -> set[str]:
    """`dist` and every distribution it requires (extras excluded), normalized."""
    seen: set[str] = set()
    todo = [dist]
    while todo:
        name = _normalize(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for req in metadata.requires(name) or []:
            if "extra ==" in req:
                continue
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
            assert match is not None, req
            todo.append(match.group(0))
    return seen


def _probe() -> dict[str, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, list[str]] = json.loads(proc.stdout)
    return result


def test_hive_share_imports_alone_without_daemon_harness_or_web_packages() -> None:
    result = _probe()
    assert {"models", "names", "framing", "requests", "responses", "events", "client"} <= set(
        result["submodules"]
    )
    assert "hive_share" in result["added"]
    assert FORBIDDEN & set(result["added"]) == set()


def test_hive_share_pulls_in_nothing_but_the_stdlib_and_pydantic() -> None:
    allowed = _dependency_closure("pydantic")
    owners = metadata.packages_distributions()
    strays = []
    for module in _probe()["added"]:
        if module == "hive_share" or module in sys.stdlib_module_names:
            continue
        if module.startswith("_sysconfigdata"):  # the stdlib's generated build config
            continue
        dists = {_normalize(d) for d in owners.get(module, [])}
        if not dists or not dists <= allowed:
            strays.append(module)
    assert strays == []
