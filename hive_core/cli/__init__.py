"""The `hive-core` command line: `serve`, and one request on the admin socket per other command.

A typer app (`app.py`) whose commands live by concern beside it: `service` (serve,
systemd-unit), `lifecycle`, `approvals`, `messages` and `turns`. The client commands
run on typer and the standard library alone: one blocking socket (`hive_share.blocking`)
and the wire schema stored from the models (`hive_share.schema`), which checks each
request before it is sent, so a bad value names its option, and each answer when it
arrives. pydantic and asyncio each cost several interpreter starts to import, and
`hive-core list` should cost about what a bare typer app does (docs/benchmarks.md,
`cli_list_vs_bare_typer_p50`). `serve` imports the daemon, and with it everything else,
only when it runs.
"""

from hive_core.cli.app import build, main

__all__ = ["build", "main"]
