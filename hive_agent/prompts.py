"""The role prompt and claude settings shipped with the harness."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from hive_share.names import MANAGER_NAME

PROMPT_FILE = "hyperhive-prompt.md"


def _read(name: str) -> str:
    return resources.files("hive_agent").joinpath("prompts", name).read_text(encoding="utf-8")


def render_role_prompt(role: str, name: str, pronouns: str) -> str:
    """The role prompt with the agent's name and the operator's pronouns substituted."""
    template = _read("manager.md" if role == "manager" else "agent.md")
    return (
        template.replace("{{name}}", name)
        .replace("{{pronouns}}", pronouns)
        .replace("{{manager}}", MANAGER_NAME)
    )


def write_role_prompt(state_dir: Path, role: str, name: str, pronouns: str) -> Path:
    """Write the rendered prompt for `--append-system-prompt-file`; returns its path."""
    path = state_dir / PROMPT_FILE
    write_if_changed(path, render_role_prompt(role, name, pronouns))
    return path


def write_if_changed(path: Path, text: str, mode: int = 0o666) -> None:
    """Replace `path` atomically with `text` (a new file gets `mode`), unless it already
    holds exactly that (`mode` is masked by the umask)."""
    data = text.encode("utf-8")
    try:
        same = path.read_bytes() == data
    except FileNotFoundError:
        same = False
    if same:
        return
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)  # left by a write cut short, perhaps with another mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def settings_path() -> Path:
    """The `--settings` file, straight from the installed package."""
    return Path(str(resources.files("hive_agent").joinpath("prompts", "claude-settings.json")))
