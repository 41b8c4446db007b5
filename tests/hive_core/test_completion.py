"""Shell completion is typer's: its scripts, and `hive-core` itself answering each tab press
(`_HIVE_CORE_COMPLETE`); bash, zsh and fish run the scripts for real."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hive_core.cli import app, build, main


def show(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["--show-completion", *args]) == 0
    out: str = capsys.readouterr().out
    return out


def shell(name: str) -> str:
    binary = shutil.which(name)
    if binary is None:
        pytest.skip(f"{name} is not installed")
    return binary


@pytest.fixture
def on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH starts with a `hive-core` that runs this checkout's CLI
    with this interpreter: what the scripts call on a tab press."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "hive-core"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m hive_core "$@"\n')
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}


def tab_in_bash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], line: str
) -> list[str]:
    """The candidates `hive-core` gives bash's completion script for the last word of
    `line` (an empty last word when it ends in a space)."""
    words = line.split()
    monkeypatch.setenv("_HIVE_CORE_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", line)
    monkeypatch.setenv("COMP_CWORD", str(len(words) if line.endswith(" ") else len(words) - 1))
    assert main([]) == 0
    return capsys.readouterr().out.split()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("hive-core sp", ["spawn"]),
        ("hive-core re", ["request-spawn", "restart", "rebuild", "reminders"]),
        ("hive-core inbox --a", ["--after"]),
        ("hive-core destroy alice --p", ["--purge"]),
        ("hive-core serve --backend ", ["local", "nixos"]),
        ("hive-core --show-completion ", list(app.SHELLS)),
        ("hive-core --ver", ["--version"]),
    ],
)
def test_a_tab_press_completes_commands_options_and_choices(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    line: str,
    expected: list[str],
) -> None:
    assert tab_in_bash(monkeypatch, capsys, line) == expected


def test_every_command_is_offered(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    names = list(build().commands)
    assert len(names) == len(app.commands()) > 25
    assert tab_in_bash(monkeypatch, capsys, "hive-core ") == names


def test_bash_runs_the_script_and_completes_a_command_name(
    capsys: pytest.CaptureFixture[str], on_path: dict[str, str]
) -> None:
    program = (
        show(capsys, "bash")
        + "\nCOMP_WORDS=(hive-core sp); COMP_CWORD=1\n"
        + '_hive_core_completion hive-core; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(
        [shell("bash"), "--norc", "--noprofile", "-c", program],
        env=on_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.split() == ["spawn"], result.stderr


def test_zsh_parses_the_script_and_its_function_gets_the_candidates(
    capsys: pytest.CaptureFixture[str], on_path: dict[str, str]
) -> None:
    zsh = shell("zsh")
    script = show(capsys, "zsh")
    assert script.startswith("#compdef hive-core\n")
    subprocess.run([zsh, "-n"], input=script, text=True, timeout=60, check=True)
    # compsys's own functions stand in as stubs: _arguments prints the spec it is handed.
    program = (
        'compdef() { :; }\n_arguments() { print -r -- "$@"; }\n'
        + script
        + "\nwords=(hive-core sp); CURRENT=2; _hive_core_completion"
    )
    result = subprocess.run(
        [zsh, "-f", "-c", program], env=on_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert '"spawn":' in result.stdout and "restart" not in result.stdout


def test_fish_runs_the_script_and_completes_a_command_name(
    capsys: pytest.CaptureFixture[str], on_path: dict[str, str]
) -> None:
    program = show(capsys, "fish") + '\ncomplete -C "hive-core sp"'
    result = subprocess.run(
        [shell("fish"), "--no-config", "-c", program],
        env=on_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["spawn"]


def test_the_shell_defaults_to_the_one_it_runs_in(on_path: dict[str, str]) -> None:
    result = subprocess.run(
        [shell("fish"), "--no-config", "-c", "hive-core --show-completion"],
        env={**on_path, "SHELL": "/bin/bash"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("complete --command hive-core")


def test_without_a_detected_shell_it_is_shells_and_an_unknown_one_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app, "_get_shell_name", lambda: None)
    monkeypatch.setenv("SHELL", "/usr/bin/fish")
    assert show(capsys).startswith("complete --command hive-core")
    monkeypatch.setenv("SHELL", "/bin/tcsh")
    assert main(["--show-completion"]) == 1
    assert capsys.readouterr().err == (
        "hive-core: cannot tell the shell (detected: none, SHELL=tcsh); "
        "name one of bash, zsh, fish, powershell, pwsh\n"
    )
    assert main(["--install-completion", "tcsh"]) == 1
    assert "hive-core: no completion for 'tcsh'; name one of bash" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "script", "rc", "rc_line"),
    [
        ("bash", ".bash_completions/hive-core.sh", ".bashrc", "source '{script}'"),
        ("zsh", ".zfunc/_hive-core", ".zshrc", "fpath+=~/.zfunc; autoload -Uz compinit; compinit"),
        ("fish", ".config/fish/completions/hive-core.fish", None, None),
    ],
)
def test_install_writes_typers_script_where_the_shell_loads_it_once(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
    script: str,
    rc: str | None,
    rc_line: str | None,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    if rc is not None:
        (tmp_path / rc).write_text("alias ll='ls -l'\n")
    for _ in range(2):
        assert main(["--install-completion", name]) == 0
    out = capsys.readouterr().out
    assert f"{name} completion installed in {tmp_path / script}" in out
    assert (tmp_path / script).read_text().strip() == show(capsys, name).strip()
    if rc is not None and rc_line is not None:
        lines = (tmp_path / rc).read_text().splitlines()
        assert lines[0] == "alias ll='ls -l'"
        assert lines.count(rc_line.format(script=tmp_path / script)) == 1
