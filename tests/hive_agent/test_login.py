"""The login probe tells a missing Claude Code apart from a missing login."""

from __future__ import annotations

from pathlib import Path

from hive_agent import login


async def test_a_claude_that_does_not_exist_is_claude_missing(tmp_path: Path) -> None:
    state, detail = await login.probe(str(tmp_path / "claude"), {"ANTHROPIC_API_KEY": "k"})
    assert state == "claude_missing"
    assert "does not exist or is not executable" in detail


async def test_a_claude_not_on_path_is_claude_missing(tmp_path: Path) -> None:
    state, detail = await login.probe("claude", {"PATH": str(tmp_path)})
    assert (state, detail) == ("claude_missing", "claude is not on PATH")


async def test_a_claude_that_is_not_executable_is_claude_missing(tmp_path: Path) -> None:
    script = tmp_path / "claude"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    assert (await login.probe(str(script), {}))[0] == "claude_missing"


async def test_a_runnable_claude_without_a_login_needs_one(tmp_path: Path) -> None:
    script = tmp_path / "claude"
    script.write_text("#!/bin/sh\necho 'Not logged in'\nexit 1\n")
    script.chmod(0o755)
    assert await login.probe(str(script), {"PATH": "/usr/bin:/bin"}) == (
        "needs_login",
        "Not logged in",
    )


async def test_credentials_in_the_environment_count_once_claude_runs(tmp_path: Path) -> None:
    script = tmp_path / "claude"
    script.write_text("#!/bin/sh\nexit 1\n")
    script.chmod(0o755)
    state, _ = await login.probe(str(script), {"CLAUDE_CODE_OAUTH_TOKEN": "t"})
    assert state == "logged_in"
