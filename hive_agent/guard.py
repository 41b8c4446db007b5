"""`python -m hive_agent.guard PARENT_PID -- CMD...`: run CMD so it dies with the harness.

claude runs in a process group of its own (so a cancel reaches its MCP servers);
that also takes it out of reach of a kill aimed at the harness's group. The
kernel's parent-death signal closes that gap: set it, then exec. Standard
library only, to keep the per-turn cost at interpreter start-up.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print("usage: python -m hive_agent.guard PARENT_PID -- CMD ...", file=sys.stderr)
        return 2
    parent, argv = int(sys.argv[1]), sys.argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        print(f"guard: prctl failed (errno {ctypes.get_errno()})", file=sys.stderr)
        return 1
    if os.getppid() != parent:  # the harness died before the signal was armed
        return 1
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"guard: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main())
