"""Running git on the per-agent config repos, hardened against the repos' own contents.

An agent (the manager) can write to `proposed/` and so to anything git reads
from it: hooks, `.git/config`, `.gitattributes`. Every git command hive-core
runs goes through `run`, which:

- ignores the system and global config, and `HOME`;
- turns off hooks, `core.fsmonitor`, external diff and textconv, pagers and
  credential helpers by command-line config (which outranks a repo's own);
- names the repo with `--git-dir` / `--work-tree` and runs with a neutral cwd,
  never inside the repo, so no `.git` discovery happens;
- takes an argv list (never a shell), a timeout and a cap on the output it keeps
  (a blob of a hostile commit can be hundreds of MiB; callers that read one check its
  size first and cap the read);
- runs git so that it dies with hive-core and holds `hive.lock` while it runs: a next
  hive-core cannot start, and so reconcile, while a git of the previous one may still
  write (`hold`).

Only core-owned repos (`applied/`, staging checkouts) are ever written by a
command run here; `proposed/` is only read, as the source of a fetch.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hive_core.errors import BackendError
from hive_core.proc import OutputTooLarge, communicate

GIT_TIMEOUT = 30.0
GIT_MAX_OUTPUT = 8 * 1024 * 1024
"""Bytes of output a git command may print unless its caller allows fewer."""
SEARCH_PATH = os.defpath + ":/run/current-system/sw/bin"
"""Where git (and what it runs itself) is looked up: fixed, not the daemon's PATH."""
_binary = "git"
_held: tuple[int, ...] = ()
IDENTITY = ("hive-core", "hive-core@localhost")

HARDENING = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.untrackedCache=false",
    "-c", "diff.external=",
    "-c", "core.pager=cat",
    "-c", "core.askPass=",
    "-c", "credential.helper=",
    "-c", "core.sshCommand=false",
    "-c", "protocol.allow=never",
    "-c", "protocol.file.allow=always",
    "-c", "safe.directory=*",
    "-c", "init.defaultBranch=main",
    "-c", "advice.detachedHead=false",
    "-c", "gc.auto=0",
    "-c", f"user.name={IDENTITY[0]}",
    "-c", f"user.email={IDENTITY[1]}",
)  # fmt: skip
"""Command-line config: it outranks the repo's `.git/config`, so a hostile repo cannot
re-enable what is turned off here."""


def git_env() -> dict[str, str]:
    """A clean environment: no user or system config, no prompts, a fixed locale."""
    return {
        "PATH": SEARCH_PATH,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
        "HOME": "/nonexistent",
        "LC_ALL": "C",
    }


def use(binary: str) -> str:
    """Run `binary` as git from now on (`HIVE_GIT`); returns the path it resolves to.

    Raises:
        ValueError: it is not an executable file, or not on `SEARCH_PATH`.
    """
    global _binary
    found = shutil.which(binary, path=SEARCH_PATH)
    if found is None:
        where = "is not an executable file" if os.sep in binary else f"is not on {SEARCH_PATH}"
        raise ValueError(f"git ({binary}) {where}; install git or set HIVE_GIT to its path")
    _binary = found
    return found


def hold(fd: int) -> None:
    """Pass `fd` (the state dir's lock) to every git from now on."""
    global _held
    _held = (fd,)


class GitError(BackendError):
    """A git command failed or timed out; the message quotes its output."""


class TooMuchOutput(GitError):
    """A git command printed more than it may; `head` is what came before the cap."""

    def __init__(self, message: str, head: bytes) -> None:
        super().__init__(message)
        self.head = head


@dataclass(frozen=True)
class Repo:
    """A repo by its directories; nothing here ever becomes a cwd."""

    git_dir: Path
    work_tree: Path | None = None

    @classmethod
    def at(cls, path: Path) -> Repo:
        """A non-bare repo whose work tree is `path`."""
        return cls(path / ".git", path)


async def run(
    repo: Repo | None,
    *args: str,
    cwd: Path,
    stdin: bytes | None = None,
    limit: float = GIT_TIMEOUT,
    check: bool = True,
    max_output: int = GIT_MAX_OUTPUT,
) -> tuple[int, bytes]:
    """Run one git command on `repo` and return (exit code, stdout).

    `cwd` must be a core-owned directory outside every agent-writable repo; `limit`
    bounds the run in seconds, `max_output` the bytes of stdout.

    Raises:
        TooMuchOutput: it printed more than `max_output` bytes (it was killed).
        GitError: it timed out, or exited non-zero while `check` is set.
    """
    argv = [_binary, *HARDENING]
    if repo is not None:
        argv.append(f"--git-dir={repo.git_dir}")
        if repo.work_tree is not None:
            argv.append(f"--work-tree={repo.work_tree}")
    argv += args
    try:
        code, out, err = await communicate(
            argv, env=git_env(), cwd=cwd, stdin=stdin, limit=limit, max_output=max_output,
            pass_fds=_held,
        )  # fmt: skip
    except TimeoutError:
        raise GitError(f"git {args[0]} timed out after {limit:.0f}s") from None
    except OutputTooLarge as exc:
        raise TooMuchOutput(
            f"git {args[0]} printed more than {max_output} bytes", exc.head
        ) from None
    if check and code != 0:
        text = err.decode("utf-8", errors="replace").strip() or out.decode(errors="replace")
        raise GitError(f"git {args[0]} failed ({code}): {text.strip()[:2000]}")
    return code, out
