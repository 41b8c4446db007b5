"""The one agent-name validator every surface calls before touching disk or processes."""

from __future__ import annotations

import re

MAX_NAME_LEN = 9
"""Containers are `h-<name>` and nixos-container names must fit in 11 characters."""

OPERATOR = "operator"
"""The human at the dashboard and CLI; has an inbox like an agent."""

MANAGER_NAME = "hm1nd"
"""The manager agent's name."""

RESERVED = frozenset(
    {
        "operator",
        "hive",
        "core",
        "meta",
        "manager",
        "all",
        "root",
        "admin",
        "system",
        "host",
        "agent",
        "agents",
        "broker",
        "self",
        "nobody",
        "none",
        "null",
        "watchdog",
    }
)

_GRAMMAR = re.compile(r"[a-z][a-z0-9-]*", re.ASCII)


class InvalidName(ValueError):
    """A string that is not a valid agent name; the message says why."""


def validate_agent_name(name: object) -> str:
    """Return `name` if it is a valid agent name.

    Grammar: `^[a-z][a-z0-9-]*$`, no trailing `-`, at most 9 characters, not a
    reserved word. Only ASCII is accepted, so look-alike letters never pass.

    Raises:
        InvalidName: with a message naming the offending value.
    """
    if not isinstance(name, str):
        raise InvalidName(f"agent name must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidName("agent name is empty")
    if len(name) > MAX_NAME_LEN:
        raise InvalidName(
            f"agent name {_shown(name)} is {len(name)} characters; at most {MAX_NAME_LEN} allowed"
        )
    if _GRAMMAR.fullmatch(name) is None:
        raise InvalidName(
            f"agent name {_shown(name)} must be lowercase ASCII letters, digits and '-', "
            "starting with a letter"
        )
    if name.endswith("-"):
        raise InvalidName(f"agent name {_shown(name)} must not end with '-'")
    if name in RESERVED:
        raise InvalidName(f"agent name {_shown(name)} is reserved")
    return name


def _shown(name: str) -> str:
    """`name` as an error message quotes it (checked on every request: built only for a bad
    one)."""
    return ascii(name[:40]) + ("…" if len(name) > 40 else "")


def validate_principal(name: object) -> str:
    """Return `name` if it is an agent name or `operator` (a valid message recipient).

    Raises:
        InvalidName: when it is neither.
    """
    if name == OPERATOR:
        return OPERATOR
    return validate_agent_name(name)
