"""The build id: which code a hive-core or a harness runs, finer than the release version.

hive-core compares the id each harness reports in `alive` with its own, and tells the
overseer (`needs_update`) about a harness started from other code: an older build, or a
checkout edited since. The id is `<release>+<digest>`, the digest the start of a SHA-256
over the source files of the four packages (their paths and contents; bytecode left out),
so two processes agree exactly when they run the same files.

A Nix build computes the digest once, from its source tree, and writes it beside this
module (`build-stamp`, see nix/package.nix); a checkout, an editable install or a plain
wheel install hashes its files at the first call instead (a few milliseconds). Either way
it is computed on demand, never at import, and cached for the life of the process.

Standard library only: the Nix build runs this file as a script (`python -I build.py
SOURCE_ROOT DEST_DIR`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

PACKAGES = ("hive_share", "hive_core", "hive_agent", "hive_front")
"""The directories hashed, under the root that holds them (a checkout, site-packages, a
flake's source)."""
STAMP = "build-stamp"
"""The digest a Nix build wrote, in the installed `hive_share/`."""
DIGEST_CHARS = 16
SKIPPED_DIRS = frozenset({"__pycache__"})


def _files(root: Path) -> list[str]:
    """The hashed files' paths relative to `root`, with `/`, in a fixed order."""
    found = []
    for package in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(root / package):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
            base = Path(dirpath).relative_to(root).as_posix()
            found += [f"{base}/{name}" for name in filenames
                      if not name.endswith(".pyc") and name != STAMP]  # fmt: skip
    return sorted(found)


def source_digest(root: Path) -> str:
    """The digest of the packages under `root`: each file's relative path, size and
    contents, in path order. Raises: OSError (a file could not be read)."""
    digest = hashlib.sha256()
    for relative in _files(root):
        data = (root / relative).read_bytes()
        digest.update(f"{relative}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:DIGEST_CHARS]


def read_stamp(directory: Path) -> str | None:
    """The digest a build wrote into `directory`, when it holds a well-formed one."""
    try:
        text = (directory / STAMP).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    ok = len(text) == DIGEST_CHARS and all(c in "0123456789abcdef" for c in text)
    return text if ok else None


@functools.cache
def running_digest() -> str:
    """The digest of the code this process runs: the build's stamp, else its files'."""
    here = Path(__file__).resolve().parent
    return read_stamp(here) or source_digest(here.parent)


def version(release: str) -> str:
    """`<release>+<digest>`: what a harness reports in `alive` and hive-core compares."""
    return f"{release}+{running_digest()}"


def write_stamp(source_root: Path, dest: Path) -> str:
    """Write the digest of `source_root`'s packages to `dest/build-stamp`; returns it."""
    digest = source_digest(source_root)
    (dest / STAMP).write_text(digest + "\n", encoding="ascii")
    return digest


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: build.py SOURCE_ROOT DEST_DIR (the installed hive_share/)", file=sys.stderr)
        return 2
    digest = write_stamp(Path(argv[0]), Path(argv[1]))
    print(f"build stamp {digest} written to {Path(argv[1]) / STAMP}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
