from __future__ import annotations

import dataclasses
import json
import signal
from pathlib import Path

import anyio
import anyio.abc
import pytest

from hive_agent import claude, prompts
from hive_agent.claude import Invocation, _lines


class _Output(anyio.abc.ByteReceiveStream):
    """A process's stdout that has printed `data` and closed: each read gets what it asks
    for, at most."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._data:
            raise anyio.EndOfStream
        chunk, self._data = self._data[:max_bytes], self._data[max_bytes:]
        return chunk

    async def aclose(self) -> None:
        self._data = b""


async def _split(data: bytes) -> list[bytes | None]:
    with anyio.fail_after(5):
        return [line async for line in _lines(_Output(data))]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 64])
async def test_lines_split_across_read_boundaries_come_out_whole(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(claude, "CHUNK", chunk)
    data = b'{"type":"a"}\n\n{"type":"bb","x":"yyyy"}\nshort\n' + b"z" * 20 + b"\n"
    assert await _split(data) == [
        b'{"type":"a"}',
        b"",
        b'{"type":"bb","x":"yyyy"}',
        b"short",
        b"z" * 20,
    ]


async def test_a_final_line_without_newline_is_yielded() -> None:
    assert await _split(b"one\ntwo") == [b"one", b"two"]


async def test_empty_output_yields_no_lines() -> None:
    assert await _split(b"") == []


async def test_a_5_mib_line_arrives_intact() -> None:
    big = bytes(range(256)).replace(b"\n", b"_") * (5 * 1024 * 4)
    assert len(big) == 5 * 1024 * 1024
    assert await _split(b"first\n" + big + b"\nafter\n") == [b"first", big, b"after"]


async def test_a_line_over_the_limit_is_dropped_as_none_and_the_next_line_follows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(claude, "MAX_STREAM_LINE", 1000)
    huge = b"x" * (claude.CHUNK + 5000)
    assert await _split(b"before\n" + huge + b"\nnext\n") == [b"before", None, b"next"]


async def test_a_line_exactly_at_the_limit_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(claude, "MAX_STREAM_LINE", 1000)
    monkeypatch.setattr(claude, "CHUNK", 300)
    assert await _split(b"y" * 1000 + b"\nnext\n") == [b"y" * 1000, b"next"]


async def test_a_line_one_byte_over_the_limit_is_dropped_even_when_read_in_one_piece(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(claude, "MAX_STREAM_LINE", 1000)
    assert await _split(b"x" * 1001 + b"\nnext\n") == [None, b"next"]


async def test_an_oversized_last_line_without_newline_is_reported_as_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(claude, "MAX_STREAM_LINE", 1000)
    monkeypatch.setattr(claude, "CHUNK", 100)
    assert await _split(b"a\n" + b"x" * 5000) == [b"a", None]


def _invocation(
    tmp_path: Path,
    *,
    prompt: str = "You have 1 new item in your inbox.",
    continue_session: bool = False,
    max_turns: int | None = None,
) -> Invocation:
    return Invocation(
        claude_bin="/usr/bin/claude",
        prompt=prompt,
        model="sonnet",
        continue_session=continue_session,
        settings=tmp_path / "settings.json",
        role_prompt=tmp_path / "role.md",
        mcp_config=tmp_path / "mcp.json",
        allowed_tools=["mcp__hyperhive__*", "mcp__matrix__send"],
        cwd=tmp_path,
        env={"HOME": str(tmp_path)},
        max_turns=max_turns,
    )


def _value_after(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, argv
    return argv[argv.index(flag) + 1]


def test_argv_puts_the_prompt_last_after_the_separator(tmp_path: Path) -> None:
    inv = _invocation(tmp_path)
    argv = inv.argv()
    assert argv[0] == "/usr/bin/claude"
    assert argv[-2:] == ["--", inv.prompt]
    assert argv.count("--") == 1


def test_argv_carries_the_model_settings_prompt_files_and_mcp_config(tmp_path: Path) -> None:
    argv = _invocation(tmp_path).argv()
    assert argv[1:5] == ["-p", "--output-format", "stream-json", "--verbose"]
    assert _value_after(argv, "--model") == "sonnet"
    assert _value_after(argv, "--settings") == str(tmp_path / "settings.json")
    assert _value_after(argv, "--append-system-prompt-file") == str(tmp_path / "role.md")
    assert _value_after(argv, "--mcp-config") == str(tmp_path / "mcp.json")


def test_argv_turns_off_the_system_prompt_snapshot(tmp_path: Path) -> None:
    assert _value_after(_invocation(tmp_path).argv(), "--system-prompt-snapshot") == "off"


def test_argv_restricts_mcp_to_our_config(tmp_path: Path) -> None:
    assert _invocation(tmp_path).argv().count("--strict-mcp-config") == 1


def test_argv_continues_the_session_only_when_asked(tmp_path: Path) -> None:
    assert "--continue" not in _invocation(tmp_path).argv()
    assert _invocation(tmp_path, continue_session=True).argv().count("--continue") == 1


def test_argv_caps_turns_only_when_max_turns_is_set(tmp_path: Path) -> None:
    assert "--max-turns" not in _invocation(tmp_path).argv()
    assert _value_after(_invocation(tmp_path, max_turns=7).argv(), "--max-turns") == "7"


def test_argv_lists_the_allowed_tools_right_before_the_separator(tmp_path: Path) -> None:
    argv = _invocation(tmp_path).argv()
    start = argv.index("--allowedTools")
    assert argv[start + 1 : start + 4] == ["mcp__hyperhive__*", "mcp__matrix__send", "--"]


def test_argv_keeps_a_prompt_that_looks_like_a_flag_after_the_separator(tmp_path: Path) -> None:
    prompt = "--dangerously-skip-permissions"
    argv = _invocation(tmp_path, prompt=prompt).argv()
    assert argv[-2:] == ["--", prompt]
    assert argv.count(prompt) == 1


def test_a_prompt_up_to_the_argument_limit_stays_on_the_command_line(tmp_path: Path) -> None:
    prompt = "p" * claude.ARGV_PROMPT_MAX
    inv = _invocation(tmp_path, prompt=prompt)
    assert not inv.prompt_on_stdin
    assert inv.argv()[-2:] == ["--", prompt]


def test_a_prompt_over_the_argument_limit_goes_to_stdin_and_not_into_argv(tmp_path: Path) -> None:
    prompt = "p" * (claude.ARGV_PROMPT_MAX + 1)
    inv = _invocation(tmp_path, prompt=prompt)
    assert inv.prompt_on_stdin
    argv = inv.argv()
    assert prompt not in argv
    assert "--" not in argv
    assert argv[-3:] == ["--allowedTools", "mcp__hyperhive__*", "mcp__matrix__send"]


def test_the_argument_limit_counts_utf8_bytes_not_characters(tmp_path: Path) -> None:
    prompt = "é" * (claude.ARGV_PROMPT_MAX // 2 + 1)
    assert len(prompt) < claude.ARGV_PROMPT_MAX
    inv = _invocation(tmp_path, prompt=prompt)
    assert inv.prompt_on_stdin
    assert prompt not in inv.argv()


def test_the_argument_limit_stays_under_linuxs_128_kib_per_argument() -> None:
    assert claude.ARGV_PROMPT_MAX < 128 * 1024


def test_argv_offers_only_the_chosen_builtins(tmp_path: Path) -> None:
    offered = _value_after(_invocation(tmp_path).argv(), "--tools").split(",")
    assert offered == list(claude.BUILTIN_TOOLS)
    assert not {"SendMessage", "CronCreate", "Agent", "EnterWorktree"} & set(offered)


def test_the_settings_allow_every_builtin_a_turn_offers() -> None:
    allowed = json.loads(prompts.settings_path().read_text())["permissions"]["allow"]
    assert set(claude.BUILTIN_TOOLS) <= set(allowed)
    assert "mcp__hyperhive" in allowed


def test_a_file_with_the_same_content_is_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "prompt.md"
    prompts.write_if_changed(path, "one")
    first = path.stat().st_ino
    prompts.write_if_changed(path, "one")
    assert path.stat().st_ino == first  # not replaced
    prompts.write_if_changed(path, "two")
    assert path.read_text() == "two" and path.stat().st_ino != first
    assert not path.with_suffix(".tmp").exists()


async def test_a_kill_that_comes_while_claude_starts_kills_it_once_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The harness stopping while the process is being created must not fall back to the
    # SIGINT-then-grace path: a claude that ignores SIGINT would hold the stop up.
    monkeypatch.setattr(claude, "CANCEL_GRACE", 600.0)
    stubborn = tmp_path / "claude"
    stubborn.write_text("#!/bin/sh\ntrap '' INT\nexec sleep 600\n")
    stubborn.chmod(0o755)
    inv = dataclasses.replace(_invocation(tmp_path), claude_bin=str(stubborn))
    process = claude.ClaudeProcess(inv)
    process.kill()  # before `run` has a process to signal

    async def sink(event: object) -> None:
        pass

    with anyio.fail_after(30):
        outcome = await process.run(sink)
    assert outcome.cancelled
    assert outcome.returncode == -signal.SIGKILL
