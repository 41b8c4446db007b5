"""A NATS user's NKey: a seed file this host logs in with (`HIVE_NATS_NKEY_SEED`), and the
public key the server's `users` list names (`hive-core nats-nkey`). No NATS import."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import nkeys

SEED_BYTES = 32


def public_key(seed_file: Path) -> str:
    """The public key (`U…`) of the user seed in `seed_file`; a new seed is written there
    first (0600, never over a file) when there is none.

    Raises:
        OSError: the file cannot be read or made.
        ValueError: it holds no user NKey seed.
    """
    try:
        seed = seed_file.read_bytes().strip()
    except FileNotFoundError:
        seed = nkeys.encode_seed(secrets.token_bytes(SEED_BYTES), nkeys.PREFIX_BYTE_USER)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(seed_file, flags, 0o600), "wb") as f:
            f.write(seed + b"\n")
    if not seed.startswith(b"SU"):
        raise ValueError("not a NATS user's NKey seed (one line starting with SU)")
    try:
        key: bytes = nkeys.from_seed(bytearray(seed)).public_key
    except nkeys.NkeysError:
        raise ValueError("not a valid NKey seed") from None
    return key.decode()
