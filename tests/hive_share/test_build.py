"""The build id: a digest of the packages' source files, from a Nix build's stamp or from
the files themselves, identical for the same code wherever it is installed, and never
computed by the CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hive_agent
import hive_core
from hive_share import build

REPO = Path(build.__file__).resolve().parent.parent


def _copy_packages(dest: Path) -> Path:
    """The four packages as an install would hold them (bytecode left behind)."""
    for package in build.PACKAGES:
        shutil.copytree(REPO / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
    return dest


def _digest_in(site: Path) -> str:
    """The digest a process importing hive_share from `site` reports."""
    code = "from hive_share import build; print(build.running_digest())"
    got = subprocess.run([sys.executable, "-I", "-c", code], cwd=site, capture_output=True,
                         text=True, timeout=30, check=True)  # fmt: skip
    return got.stdout.strip()


def test_both_sides_report_the_release_and_the_digest_of_this_code() -> None:
    digest = build.source_digest(REPO)
    assert len(digest) == build.DIGEST_CHARS and int(digest, 16) >= 0
    assert hive_core.build_version() == f"{hive_core.__version__}+{digest}"
    assert hive_agent.build_version() == hive_core.build_version()


def test_the_digest_follows_the_files_and_ignores_bytecode(tmp_path: Path) -> None:
    site = _copy_packages(tmp_path)
    before = build.source_digest(site)
    assert before == build.source_digest(REPO)
    cache = site / "hive_core" / "__pycache__"
    cache.mkdir()
    (cache / "daemon.cpython-311.pyc").write_bytes(b"\0" * 16)
    (site / "hive_agent" / "stray.pyc").write_bytes(b"\0")
    assert build.source_digest(site) == before
    with (site / "hive_agent" / "turn.py").open("a", encoding="utf-8") as f:
        f.write("\n# a later edit\n")
    assert build.source_digest(site) != before
    (site / "hive_agent" / "turn.py").rename(site / "hive_agent" / "turn2.py")
    assert build.source_digest(site) not in (before, build.source_digest(REPO))


def test_an_installed_copy_without_a_stamp_hashes_its_files(tmp_path: Path) -> None:
    site = _copy_packages(tmp_path)
    assert _digest_in(site) == build.source_digest(REPO)


def test_the_nix_builds_stamp_is_the_source_digest_and_wins_over_the_files(
    tmp_path: Path,
) -> None:
    """nix/package.nix runs build.py as a script after the install: the installed copy then
    reads the stamp (its files are not hashed, so even an edit does not move it)."""
    site = _copy_packages(tmp_path / "site")
    got = subprocess.run([sys.executable, "-I", str(REPO / "hive_share" / "build.py"), ".",
                          str(site / "hive_share")], cwd=REPO, capture_output=True, text=True,
                         timeout=30, check=True)  # fmt: skip
    stamp = (site / "hive_share" / build.STAMP).read_text().strip()
    assert stamp == build.source_digest(REPO) and stamp in got.stdout
    assert build.source_digest(site) == stamp  # the stamp is not part of what is hashed
    (site / "hive_core" / "cli.py").write_text("# not what was built\n")
    assert _digest_in(site) == stamp


@pytest.mark.parametrize("text", ["", "not hex at all!!", "0123", "g" * build.DIGEST_CHARS])
def test_a_malformed_stamp_is_ignored(tmp_path: Path, text: str) -> None:
    (tmp_path / build.STAMP).write_text(text)
    assert build.read_stamp(tmp_path) is None
    (tmp_path / build.STAMP).write_text("0123456789abcdef\n")
    assert build.read_stamp(tmp_path) == "0123456789abcdef"


@pytest.mark.parametrize(
    "code",
    [
        "import hive_core.cli",
        "import hive_core.cli; hive_core.cli.main(['--version'])",
        "import hive_agent.__main__",
    ],
)
def test_the_cli_never_hashes_the_source(code: str) -> None:
    """`hive-core --version` and the other client commands stay fast: nothing imports the
    build module, let alone hashes, before the daemon or the harness asks for the id."""
    probe = f"""
import sys
try:
    {code}
except SystemExit:
    pass
print("hive_share.build" in sys.modules)
"""
    got = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                         text=True, timeout=30, check=True)  # fmt: skip
    assert got.stdout.strip().splitlines()[-1] == "False", got.stdout + got.stderr
