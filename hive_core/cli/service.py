"""Running hive-core itself: `serve` (the daemon in the foreground) and `systemd-unit` (a
unit that runs it). Both import what they need when they run: `serve` the settings model
and the daemon, `systemd-unit` the unit's template."""

import os
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from hive_core.cli.common import RunDir, fail, labels

app = typer.Typer()


def _setting(flag: str, metavar: str, what: str, **more: Any) -> Any:
    """A serve option that overrides one setting (named in `what`'s `env`)."""
    return typer.Option(flag, metavar=metavar, help=what, show_default=False, **more)


StateDir = Annotated[
    Path | None, _setting("--state-dir", "PATH", "Durable state directory (env HIVE_STATE_DIR).")
]
Backend = Annotated[
    str | None,
    _setting(
        "--backend",
        "[local|nixos]",
        "Container backend (env HIVE_BACKEND).",
        click_type=click.Choice(["local", "nixos"]),
    ),
]
DashboardHost = Annotated[
    str | None,
    _setting("--dashboard-host", "HOST", "Dashboard bind address (env HIVE_DASHBOARD_HOST)."),
]
DashboardPort = Annotated[
    int | None,
    _setting("--dashboard-port", "N", "Dashboard port, 0 = any free (env HIVE_DASHBOARD_PORT)."),
]
DashboardAllowedHosts = Annotated[
    str | None,
    _setting(
        "--dashboard-allowed-hosts",
        "NAMES",
        "Comma-separated host names the dashboard answers to beyond loopback; required "
        "with a non-loopback --dashboard-host (env HIVE_DASHBOARD_ALLOWED_HOSTS).",
    ),
]
OperatorPronouns = Annotated[
    str | None,
    _setting(
        "--operator-pronouns", "TEXT", "Pronouns for the operator (env HIVE_OPERATOR_PRONOUNS)."
    ),
]


@app.command("serve")
def serve(
    run_dir: RunDir = None,
    state_dir: StateDir = None,
    backend: Backend = None,
    dashboard_host: DashboardHost = None,
    dashboard_port: DashboardPort = None,
    dashboard_allowed_hosts: DashboardAllowedHosts = None,
    operator_pronouns: OperatorPronouns = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run the daemon in the foreground until SIGTERM or Ctrl-C."""
    given = {
        "run_dir": run_dir,
        "state_dir": state_dir,
        "backend": backend,
        "dashboard_host": dashboard_host,
        "dashboard_port": dashboard_port,
        "dashboard_allowed_hosts": dashboard_allowed_hosts,
        "operator_pronouns": operator_pronouns,
    }
    _run_daemon({k: v for k, v in given.items() if v is not None}, verbose)


def _run_daemon(overrides: dict[str, Any], verbose: bool) -> None:
    """Settings from the environment and `overrides` (a bad one named by its flag, or its
    variable), logging, then the daemon until it stops."""
    import logging

    from pydantic import ValidationError

    from hive_core import db, journal
    from hive_core.errors import StartupError
    from hive_core.settings import Settings

    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        where = labels().get(field) if field in overrides else f"HIVE_{field.upper()}"
        fail(f"bad setting {where}: {err['msg']}")
    journal.configure(os.environ, logging.DEBUG if verbose else logging.INFO)
    # The database's check reads the whole file (a big hive's slowest start step): begun
    # here, it runs while the daemon's modules are imported.
    checked = db.start_quick_check(settings.db_path)
    from hive_core.daemon import run_forever

    try:
        run_forever(settings, dict(os.environ), checked)
    except* StartupError as group:
        fail(f"cannot start: {group.exceptions[0]}")


@app.command("systemd-unit")
def systemd_unit(
    user: Annotated[
        bool, typer.Option("--user", help="A unit for `systemctl --user` instead.")
    ] = False,
) -> None:
    """Print a systemd unit that runs this hive-core's `serve` (a system unit, or --user)."""
    from hive_core import unit_file  # only here: no other command needs it

    try:
        print(unit_file.render(unit_file.this_hive_core(), user=user), end="")
    except unit_file.UnitError as exc:
        fail(str(exc))
