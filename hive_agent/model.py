"""The agent's model choice, persisted in its state dir so it survives restarts."""

from __future__ import annotations

import os
from pathlib import Path

from hive_share import agent_config
from hive_share.models import ModelSource

MODEL_FILE = "hyperhive-model"
DEFAULT_MODEL = "opus"


class InvalidModel(ValueError):
    pass


def validate_model(model: str) -> str:
    """An alias Claude Code resolves or a `claude-…` id (`agent_config.check_model`).

    Raises: InvalidModel.
    """
    try:
        return agent_config.check_model(model)
    except ValueError as exc:
        raise InvalidModel(str(exc)) from None


class ModelStore:
    def __init__(self, state_dir: Path, default: str = DEFAULT_MODEL) -> None:
        self._path = state_dir / MODEL_FILE
        self._default = default

    def get(self, default: str | None = None) -> str:
        """The chosen model, else `default` (agent.toml's), else the built-in default."""
        try:
            text = self._path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return default or self._default
        try:
            return validate_model(text)
        except InvalidModel as exc:
            raise InvalidModel(f"{self._path}: {exc}") from None

    def source(self, default: str | None = None) -> ModelSource:
        """Where `get(default)` takes its model from: the choice made at run time wins over
        agent.toml's `default`, which wins over the built-in one."""
        if self._path.exists():
            return "override"
        return "agent.toml" if default else "default"

    def set(self, model: str) -> None:
        """Persist atomically. Raises: InvalidModel."""
        validate_model(model)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(model + "\n", encoding="utf-8")
        os.replace(tmp, self._path)
