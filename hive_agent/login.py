"""Is this agent's Claude Code logged in? Ask the CLI's own state, offline."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping

import anyio

from hive_share.models import LoginReport

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 15.0
CREDENTIALS_MAX = 64 * 1024
"""Bytes of Claude Code's credentials file read for its expiry."""


def credentials_expiry(env: Mapping[str, str]) -> float | None:
    """When the login in Claude Code's credentials file stops working by itself (unix
    seconds): its OAuth token's `expiresAt`, but only when the file holds no refresh token,
    since with one Claude Code renews the token itself. None when credentials come from the
    environment, when there is no such file, or when it says nothing of the kind."""
    if env.get("ANTHROPIC_API_KEY") or env.get("CLAUDE_CODE_OAUTH_TOKEN"):
        return None
    config = env.get("CLAUDE_CONFIG_DIR") or os.path.join(env.get("HOME", "/"), ".claude")
    try:
        fd = os.open(os.path.join(config, ".credentials.json"), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        raw = f.read(CREDENTIALS_MAX + 1)
    try:
        data = json.loads(raw) if len(raw) <= CREDENTIALS_MAX else None
    except ValueError:
        return None
    oauth = data.get("claudeAiOauth") if isinstance(data, dict) else None
    if not isinstance(oauth, dict) or oauth.get("refreshToken"):
        return None
    expires = oauth.get("expiresAt")
    if isinstance(expires, bool) or not isinstance(expires, int | float) or expires <= 0:
        return None
    return float(expires) / 1000  # milliseconds in the file


def why_not_runnable(claude_bin: str, env: Mapping[str, str]) -> str:
    """Why `claude_bin` cannot be run (looked up on the env's PATH), or "" when it can."""
    if shutil.which(claude_bin, path=env.get("PATH", os.defpath)) is not None:
        return ""
    if os.sep in claude_bin:
        return f"{claude_bin} does not exist or is not executable"
    return f"{claude_bin} is not on PATH"


async def probe(claude_bin: str, env: Mapping[str, str]) -> tuple[LoginReport, str]:
    """`claude auth status`: exit 0 logged in, 1 not. An API key in the env counts as logged in."""
    missing = why_not_runnable(claude_bin, env)
    if missing:
        return "claude_missing", missing
    if env.get("ANTHROPIC_API_KEY") or env.get("CLAUDE_CODE_OAUTH_TOKEN"):
        return "logged_in", "credentials from the environment"
    try:
        proc = await anyio.open_process(
            [claude_bin, "auth", "status"],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as exc:
        return "claude_missing", f"cannot run {claude_bin}: {exc.strerror}"
    assert proc.stdout is not None
    out = b""
    async with proc:  # on the way out: pipes closed, the process killed if still there, reaped
        with anyio.move_on_after(PROBE_TIMEOUT) as waiting:
            async for chunk in proc.stdout:
                out += chunk
            await proc.wait()
        if waiting.cancelled_caught:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            return "needs_login", f"`claude auth status` did not answer in {PROBE_TIMEOUT:.0f}s"
    text = out.decode("utf-8", errors="replace").strip()
    if proc.returncode == 0:
        return "logged_in", ""
    return "needs_login", text[:500] or "not logged in"
