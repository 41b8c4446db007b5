"""Turning database rows into wire models: a row that does not decode is an error naming it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def decode(
    model: type[M],
    table: str,
    row: sqlite3.Row,
    adjust: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> M:
    """`row` as a `model`, after `adjust` (e.g. parsing a JSON column).

    Raises:
        ValueError: naming the table and the row id; a bad row is never skipped.
    """
    try:
        data = dict(row)
        return model.model_validate(adjust(data) if adjust else data)
    except ValueError as exc:
        raise ValueError(f"{table} row id={row['id']} does not decode: {exc}") from exc
