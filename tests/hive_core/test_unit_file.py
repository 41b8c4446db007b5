"""`hive-core systemd-unit [--user]`: the unit's directives, and `systemd-analyze verify`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hive_core.containers.local import STOP_TIMEOUT
from hive_core.daemon import DRAIN_TIMEOUT
from hive_core.unit_file import UnitError, exec_line, quote, render
from tests.e2e.test_cli import HEAVY_MODULES

CONSOLE_SCRIPT = Path(sys.executable).parent / "hive-core"
SYSTEM_ONLY = (
    "StateDirectory=hyperhive",
    "RuntimeDirectory=hyperhive",
    "RuntimeDirectoryMode=0700",
    "PrivateTmp=yes",
    "ProtectSystem=strict",
)


def unit(*args: str, via: list[str] | None = None) -> str:
    """What `hive-core systemd-unit ARGS` prints, run as `via` (default `python -m`)."""
    result = subprocess.run(
        [*(via or [sys.executable, "-m", "hive_core"]), "systemd-unit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def directives(text: str) -> dict[str, list[str]]:
    """`Key=value` lines of a unit, by key (comments and sections left out)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def verify(text: str, tmp_path: Path, *, user: bool) -> None:
    """`systemd-analyze [--user] verify` on the unit, saved as hyperhive.service."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    path = tmp_path / "hyperhive.service"
    path.write_text(text)
    env = dict(os.environ)
    argv = [analyze, "verify", str(path)]
    if user:
        # --user verify builds a user manager's unit paths from $XDG_RUNTIME_DIR, which a
        # test run (root in CI, no login session) may lack: give it a private one of its own.
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        argv.insert(1, "--user")
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "hyperhive.service" not in result.stderr, result.stderr


def test_the_system_unit_runs_this_hive_core_serve_under_notify_and_verifies(
    tmp_path: Path,
) -> None:
    text = unit()
    d = directives(text)
    assert d["ExecStart"] == [f"{sys.executable} -m hive_core serve"]
    for key, value in {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30s",
        "Restart": "on-failure",
        "RestartSec": "5s",
        "KillMode": "mixed",
        "TimeoutStopSec": "45s",
        "StateDirectory": "hyperhive",
        "RuntimeDirectory": "hyperhive",
        "RuntimeDirectoryMode": "0700",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectSystem": "strict",
        "WantedBy": "multi-user.target",
    }.items():
        assert d[key] == [value], key
    assert d["Description"] and "ReadWritePaths" not in d and "User" not in d
    verify(text, tmp_path, user=False)


def test_the_user_unit_has_no_root_only_directives_and_verifies(tmp_path: Path) -> None:
    text = unit("--user")
    d = directives(text)
    assert d["ExecStart"] == [f"{sys.executable} -m hive_core serve"]
    assert d["Type"] == ["notify"] and d["WatchdogSec"] == ["30s"]
    assert d["KillMode"] == ["mixed"] and d["WantedBy"] == ["default.target"]
    for line in SYSTEM_ONLY:
        assert line not in text
    assert not [k for k in d if k.startswith(("Protect", "Private", "Restrict"))]
    verify(text, tmp_path, user=True)


@pytest.mark.skipif(not CONSOLE_SCRIPT.is_file(), reason="no hive-core console script here")
def test_run_as_the_console_script_it_names_the_script(tmp_path: Path) -> None:
    assert directives(unit(via=[str(CONSOLE_SCRIPT)]))["ExecStart"] == [f"{CONSOLE_SCRIPT} serve"]


@pytest.mark.skipif(not CONSOLE_SCRIPT.is_file(), reason="no hive-core console script here")
def test_a_path_with_spaces_and_specifier_characters_is_quoted_for_systemd(
    tmp_path: Path,
) -> None:
    odd = tmp_path / "my 100% $hive" / "hive-core"
    odd.parent.mkdir()
    odd.symlink_to(CONSOLE_SCRIPT)
    text = unit(via=[str(odd)])
    quoted = f'"{str(odd).replace("%", "%%")}" serve'
    assert directives(text)["ExecStart"] == [quoted]
    verify(text, tmp_path, user=False)  # systemd finds the executable it names


@pytest.mark.parametrize(
    ("word", "written"),
    [
        ("/usr/bin/hive-core", "/usr/bin/hive-core"),
        ("/opt/my hive/hive-core", '"/opt/my hive/hive-core"'),
        ("/opt/100%/bin", "/opt/100%%/bin"),
        ("$HOME", "$$HOME"),
        ('/opt/a"b', '"/opt/a\\"b"'),
        ("/opt/a\\b", '"/opt/a\\\\b"'),
        ("/opt/it's", '"/opt/it\'s"'),
        (";", '";"'),
    ],
)
def test_words_are_quoted_as_systemd_reads_them(word: str, written: str) -> None:
    assert quote(word) == written
    assert exec_line(["/bin/x", word]) == f"/bin/x {written}"


def test_the_command_is_never_expanded_so_its_dollars_stay() -> None:
    assert exec_line(["/opt/$x/hive-core", "$x"]) == "/opt/$x/hive-core $$x"


@pytest.mark.parametrize("word", ["", "/opt/a\nb", "/opt/\x7f", "/opt/\tx"])
def test_a_word_systemd_cannot_hold_is_refused(word: str) -> None:
    with pytest.raises(UnitError):
        exec_line(["/usr/bin/hive-core", word])


def test_the_stop_timeout_is_above_the_drains_bound() -> None:
    stop = directives(render(["/usr/bin/hive-core"], user=False))["TimeoutStopSec"][0]
    # Requests get DRAIN_TIMEOUT, then each harness STOP_TIMEOUT before its SIGKILL, then
    # the dashboard DRAIN_TIMEOUT again.
    assert int(stop.removesuffix("s")) > 2 * DRAIN_TIMEOUT + STOP_TIMEOUT


def test_the_command_imports_no_pydantic_asyncio_or_daemon() -> None:
    probe = (
        "import json, sys\nfrom hive_core.cli import main\n"
        "code = main(['systemd-unit'])\n"
        "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    probed = json.loads(result.stdout.strip().splitlines()[-1])
    assert probed["code"] == 1, "python -c is no console script, and no -m hive_core"
    assert "cannot tell where this hive-core is" in result.stderr
    modules = set(probed["modules"])
    assert {m for m in modules if m.split(".")[0] in HEAVY_MODULES or m in HEAVY_MODULES} == set()
    assert "hive_core.unit_file" in modules
