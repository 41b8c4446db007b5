"""The agent's model choice, persisted in its state dir so it survives restarts."""

from __future__ import annotations

import os
import re
from pathlib import Path

MODEL_FILE = "hyperhive-model"
DEFAULT_MODEL = "opus"
_VALID = re.compile(r"[A-Za-z0-9._:\[\]-]{1,100}")


class InvalidModel(ValueError):
    pass


def validate_model(model: str) -> str:
    """Raises: InvalidModel."""
    if not _VALID.fullmatch(model):
        raise InvalidModel(
            f"model {model[:40]!r} must be 1-100 characters of letters, digits and ._:-[]"
        )
    return model


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

    def set(self, model: str) -> None:
        """Persist atomically. Raises: InvalidModel."""
        validate_model(model)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(model + "\n", encoding="utf-8")
        os.replace(tmp, self._path)
