"""The exception tree of hive-core. Each socket turns these into wire errors in one place.

HiveError                 .code is the stable wire code
├── InvalidRequest        invalid_request
├── UnknownAgent          unknown_agent
├── AlreadyExists         exists
├── NotFound              not_found
├── Forbidden             forbidden
├── Conflict              conflict
├── PortCollision         port_collision
├── BackendError          backend
├── ShuttingDown          shutting_down
├── Busy                  busy
└── StorageError          storage
StartupError              the daemon cannot start (bad database, socket in use, ...)
"""

from __future__ import annotations

from typing import ClassVar

from hive_share.responses import ErrorCode


class HiveError(Exception):
    """A request failed in a way the caller should be told about."""

    code: ClassVar[ErrorCode] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(HiveError):
    code: ClassVar[ErrorCode] = "invalid_request"


class UnknownAgent(HiveError):
    code: ClassVar[ErrorCode] = "unknown_agent"


class AlreadyExists(HiveError):
    code: ClassVar[ErrorCode] = "exists"


class NotFound(HiveError):
    code: ClassVar[ErrorCode] = "not_found"


class Forbidden(HiveError):
    """The caller may not do this (e.g. answer a question addressed to someone else)."""

    code: ClassVar[ErrorCode] = "forbidden"


class Conflict(HiveError):
    code: ClassVar[ErrorCode] = "conflict"


class PortCollision(HiveError):
    code: ClassVar[ErrorCode] = "port_collision"


class BackendError(HiveError):
    code: ClassVar[ErrorCode] = "backend"


class ShuttingDown(HiveError):
    code: ClassVar[ErrorCode] = "shutting_down"


class Busy(HiveError):
    code: ClassVar[ErrorCode] = "busy"


class StorageError(HiveError):
    code: ClassVar[ErrorCode] = "storage"


class Unreachable(HiveError):
    """Another host of the hive, or the hive's directory, cannot be reached now."""

    code: ClassVar[ErrorCode] = "unreachable"


class StartupError(Exception):
    """hive-core refuses to start; the message says what to fix."""
