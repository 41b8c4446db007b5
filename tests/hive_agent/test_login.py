"""The login probe tells a missing Claude Code apart from a missing login, and reads when a
login that cannot renew itself expires."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def _credentials(config: Path, oauth: object) -> dict[str, str]:
    config.mkdir(parents=True, exist_ok=True)
    (config / ".credentials.json").write_text(json.dumps({"claudeAiOauth": oauth}))
    return {"CLAUDE_CONFIG_DIR": str(config), "PATH": "/usr/bin"}


def test_a_login_that_cannot_renew_itself_reports_its_expiry(tmp_path: Path) -> None:
    env = _credentials(tmp_path / "c", {"accessToken": "t", "expiresAt": 1_900_000_000_000})
    assert login.credentials_expiry(env) == 1_900_000_000.0


def test_a_login_with_a_refresh_token_or_from_the_environment_has_no_expiry(
    tmp_path: Path,
) -> None:
    oauth = {"accessToken": "t", "refreshToken": "r", "expiresAt": 1_900_000_000_000}
    env = _credentials(tmp_path / "c", oauth)
    assert login.credentials_expiry(env) is None  # Claude Code renews it itself
    env = _credentials(tmp_path / "d", {"accessToken": "t", "expiresAt": 1_900_000_000_000})
    assert login.credentials_expiry({**env, "ANTHROPIC_API_KEY": "k"}) is None


@pytest.mark.parametrize(
    "content", ["not json", "[]", '{"claudeAiOauth": {"expiresAt": "soon"}}', "{}"]
)
def test_credentials_that_say_nothing_usable_give_no_expiry(tmp_path: Path, content: str) -> None:
    (tmp_path / ".credentials.json").write_text(content)
    assert login.credentials_expiry({"CLAUDE_CONFIG_DIR": str(tmp_path)}) is None
    assert login.credentials_expiry({"CLAUDE_CONFIG_DIR": str(tmp_path / "none")}) is None
