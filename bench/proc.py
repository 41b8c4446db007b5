"""What `/proc` says about a process: CPU time, resident memory, descendants."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads, not its children).

    Raises:
        FileNotFoundError / ProcessLookupError: the process is gone.
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name start at field 3 (state).
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """`VmRSS` of process `pid` from `/proc/<pid>/status`.

    Raises:
        RuntimeError: the status has no `VmRSS` line (a zombie).
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # in kB
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


def children(pid: int) -> list[int]:
    """The direct children of `pid`, from every thread's `children` list."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue  # the thread ended meanwhile
    return found


def total_cpu(pids: list[int]) -> float:
    """The summed CPU seconds of `pids`; a process that has ended counts 0."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total
