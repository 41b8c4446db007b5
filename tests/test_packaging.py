"""pyproject.toml declares what the code imports, and nothing it does not."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hive_share", "hive_core", "hive_agent", "hive_front")


def _dist_name(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, f"cannot read a distribution name from {requirement!r}"
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def _imported_top_levels() -> set[str]:
    found: set[str] = set()
    pattern = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.MULTILINE)
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            found |= set(pattern.findall(source.read_text(encoding="utf-8")))
    return found


def test_every_declared_dependency_is_imported_by_the_code() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_dist_name(r) for r in project["dependencies"]}
    imported_dists = {
        _dist_name(dist)
        for module, dists in importlib.metadata.packages_distributions().items()
        if module in _imported_top_levels()
        for dist in dists
    }
    unused = sorted(declared - imported_dists)
    assert not unused, f"declared in pyproject.toml but never imported by {PACKAGES}: {unused}"


def test_the_license_is_an_spdx_expression() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT", "project.license must be an SPDX string, not a table"
    assert (ROOT / "LICENSE").is_file()
