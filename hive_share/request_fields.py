"""The limits and field types the wire's requests share: a message body's size, the longest
long-poll, row ids, idempotency keys, a question's size, a file under an agent's /state."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field

from hive_share.framing import INT64_MAX

MAX_BODY = 256 * 1024
"""Most characters in a message body."""
MAX_BODY_JSON = 512 * 1024
"""Most bytes a body may take once JSON-escaped, so any one message fits in a 1 MiB line."""
JSON_BYTES_PER_CHAR = 6
"""The most bytes one character takes in JSON: a control character escaped as `\\u0001`."""
MAX_WAIT_SECONDS = 180.0
RELAY_WAIT_SECONDS = 8.0
"""The longest wait a relayed long-poll may ask for (the relay itself allows 10 s)."""
MAX_QUESTION = 8 * 1024
Id = Annotated[int, Field(gt=0, le=INT64_MAX)]
"""A row id: positive and within SQLite's 64-bit integers."""
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")]
HostId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
"""A host of a hive that spans hosts (`HIVE_HOST_ID`)."""
StateFilePath = Annotated[str, Field(min_length=8, max_length=1024, pattern=r"^/state/[^\x00]+$")]


def fits_json(body: str) -> str:
    """`body`, when it takes at most MAX_BODY_JSON bytes as JSON."""
    if JSON_BYTES_PER_CHAR * len(body) + 2 <= MAX_BODY_JSON:
        return body  # fits however it is escaped: no need to encode it
    size = len(json.dumps(body, ensure_ascii=False).encode("utf-8"))
    if size > MAX_BODY_JSON:
        raise ValueError(f"body takes {size} bytes as JSON; at most {MAX_BODY_JSON} allowed")
    return body
