"""Shell completion: the bash script completes for real; install writes where shells look."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hive_core.cli import build_parser, main


def show(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(["--show-completion", *args]) == 0
    out: str = capsys.readouterr().out
    return out


def complete_in_bash(script: str, words: list[str]) -> list[str]:
    """COMPREPLY after a tab on the last of `words` (the bash function run by bash itself)."""
    line = " ".join(f"'{w}'" for w in words)
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
        '_hive_core_complete; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [w for w in result.stdout.splitlines() if w]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["hive-core", "sp"], ["spawn"]),
        (["hive-core", "re"], ["request-spawn", "restart", "rebuild", "reminders"]),
        (["hive-core", "inbox", "--a"], ["--after"]),
        (["hive-core", "destroy", "alice", "--p"], ["--purge"]),
        (["hive-core", "serve", "--backend", ""], ["local", "nixos"]),
        (["hive-core", "--show-completion", ""], ["bash", "zsh", "fish"]),
        (["hive-core", "list", "--run-dir", ""], []),  # a path: bash completes file names
        (["hive-core", "--ver"], ["--version"]),
    ],
)
def test_the_bash_script_completes_commands_options_and_choices(
    capsys: pytest.CaptureFixture[str], words: list[str], expected: list[str]
) -> None:
    assert complete_in_bash(show(capsys, "bash"), words) == expected


def test_every_command_is_offered_in_every_shell(capsys: pytest.CaptureFixture[str]) -> None:
    _, commands = build_parser()
    top = complete_in_bash(show(capsys, "bash"), ["hive-core", ""])
    assert set(commands) <= set(top)
    for shell in ("zsh", "fish"):
        script = show(capsys, shell)
        missing = [c for c in commands if f"{c}" not in script]
        assert missing == [], shell
    assert show(capsys, "zsh").startswith("#compdef hive-core\n")
    assert "complete -c hive-core -n __fish_use_subcommand -a spawn" in show(capsys, "fish")


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_the_zsh_and_fish_scripts_parse(capsys: pytest.CaptureFixture[str], shell: str) -> None:
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} is not installed")
    check = [binary, "-n"] if shell == "zsh" else [binary, "--no-execute"]
    subprocess.run([*check], input=show(capsys, shell), text=True, timeout=30, check=True)


def test_the_shell_defaults_to_the_users_and_an_unknown_one_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHELL", "/usr/bin/fish")
    assert show(capsys).startswith("# hive-core completion for fish")
    monkeypatch.setenv("SHELL", "/bin/tcsh")
    assert main(["--show-completion"]) == 1
    assert "cannot tell the shell from SHELL=tcsh" in capsys.readouterr().err
    assert main(["--install-completion", "tcsh"]) == 1
    assert (
        "hive-core: no completion for 'tcsh'; name one of bash, zsh, fish"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("shell", "script", "rc"),
    [
        ("bash", ".bash_completions/hive-core.sh", ".bashrc"),
        ("zsh", ".zfunc/hive-core.zsh", ".zshrc"),
        ("fish", ".config/fish/completions/hive-core.fish", None),
    ],
)
def test_install_writes_the_script_and_sources_it_once(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    shell: str,
    script: str,
    rc: str | None,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    if rc is not None:
        (tmp_path / rc).write_text("alias ll='ls -l'")  # no trailing newline
    for _ in range(2):
        assert main(["--install-completion", shell]) == 0
    assert f"{shell} completion installed in {tmp_path / script}" in capsys.readouterr().out
    assert (tmp_path / script).read_text() == show(capsys, shell)
    if rc is not None:
        lines = (tmp_path / rc).read_text().splitlines()
        assert lines == ["alias ll='ls -l'", f"source {tmp_path / script}"]
