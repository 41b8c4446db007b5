"""`hive-core systemd-unit`: a systemd unit that runs this installation's `hive-core serve`.

Standard library only (a client command). The system unit runs as root with
`StateDirectory=`/`RuntimeDirectory=` (`/var/lib/hyperhive`, `/run/hyperhive`,
read by `serve` from `$STATE_DIRECTORY`/`$RUNTIME_DIRECTORY`) and a sandbox that
still lets the local backend run its harnesses; the `--user` unit keeps the XDG
defaults the CLI also looks in.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence

WATCHDOG = "30s"
"""`WatchdogSec=`: the daemon pings every half of it from its event loop."""
STOP_TIMEOUT = "45s"
"""`TimeoutStopSec=`: above the drain's bound (requests 5 s, then each harness SIGTERM and
SIGKILL after 10 s, then the dashboard 5 s; tests/hive_core/test_unit_file.py checks)."""
START_TIMEOUT = "2min"
"""`TimeoutStartSec=`: agents are restored (30 s each to come alive, in parallel), then the
manager, before `READY=1`."""

_UNSAFE = re.compile(r"[\s\"'\\;]")


class UnitError(Exception):
    """The command line cannot be written into a unit."""


def quote(word: str, *, command: bool = False) -> str:
    """One `ExecStart=` word as systemd reads it back: `%` doubled (specifiers), and `$`
    too unless it is the `command` (which systemd never expands), and in double quotes
    with `\\` and `"` escaped if it holds a space, a quote, a backslash or a `;`.

    Raises:
        UnitError: it holds a control character or is empty.
    """
    if not word or any(ord(c) < 0x20 or ord(c) == 0x7F for c in word):
        raise UnitError(f"cannot write {word!r} into a unit: empty or a control character")
    word = word.replace("%", "%%")
    if not command:
        word = word.replace("$", "$$")
    if not _UNSAFE.search(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_line(argv: Sequence[str]) -> str:
    """`argv` as an `ExecStart=` value. Raises: UnitError."""
    command, *args = argv
    return " ".join([quote(command, command=True), *(quote(word) for word in args)])


def this_hive_core() -> list[str]:
    """How to run this `hive-core`: `python -m hive_core` when run that way, else the
    console script's absolute path.

    Raises:
        UnitError: the script cannot be found.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "hive_core.__main__":
        return [os.path.abspath(sys.executable), "-m", "hive_core"]
    script = sys.argv[0] if sys.argv else ""
    if script and os.sep not in script:
        script = shutil.which(script) or ""
    if not script or not os.path.isfile(script):
        raise UnitError(f"cannot tell where this hive-core is (argv[0] {sys.argv[:1]!r})")
    return [os.path.abspath(script)]


def render(argv: Sequence[str], *, user: bool) -> str:
    """The unit for `argv` (`this_hive_core()`), with `serve` added. Raises: UnitError."""
    kind, flag = ("user", " --user") if user else ("system", "")
    lines = [
        f"# hive-core as a {kind} service; written by `hive-core systemd-unit{flag}`.",
        "[Unit]",
        "Description=hyperhive: a hive of Claude Code agents (hive-core)",
        *([] if user else ["After=network.target"]),
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_line([*argv, 'serve'])}",
        f"WatchdogSec={WATCHDOG}",
        "Restart=on-failure",
        "RestartSec=5s",
        f"TimeoutStartSec={START_TIMEOUT}",
        f"TimeoutStopSec={STOP_TIMEOUT}",
        "# SIGTERM to hive-core alone: it stops each harness itself; what is left is killed.",
        "KillMode=mixed",
        "UMask=0077",
        "NoNewPrivileges=yes",
    ]
    if user:
        lines += [
            "# State and sockets: $XDG_STATE_HOME/hyperhive (~/.local/state/hyperhive) and",
            "# $XDG_RUNTIME_DIR/hyperhive, where `hive-core list` looks.",
        ]
    else:
        lines += [
            "StateDirectory=hyperhive",
            "StateDirectoryMode=0700",
            "RuntimeDirectory=hyperhive",
            "RuntimeDirectoryMode=0700",
            "PrivateTmp=yes",
            "ProtectSystem=strict",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "ProtectHostname=yes",
            "RestrictSUIDSGID=yes",
            "RestrictRealtime=yes",
            "LockPersonality=yes",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        ]
    lines += [
        "",
        "[Install]",
        f"WantedBy={'default.target' if user else 'multi-user.target'}",
    ]
    return "\n".join(lines) + "\n"
