"""Floors the bench measures itself, without hive-core: socket round trips, sqlite commits.

- `blocking_floor_rtt`: blocking unix sockets echoing raw bytes between two processes
  (no event loop, no JSON).
- `echo_rtt`: an asyncio server echoing JSON lines to one kept-open asyncio client.
- `sqlite_commits`: one WAL insert+commit with `synchronous=FULL` and `NORMAL`, interleaved.

Every function returns per-operation latencies in seconds, warm-up excluded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

PAYLOAD = {"cmd": "send", "to": "b1", "body": "hello", "idempotency_key": "0" * 32}
"""About the size of a real send request."""


def _warmup(rounds: int) -> int:
    return max(10, rounds // 10)


_ECHO_CHILD = """
import socket, sys
listener = socket.socket(fileno=int(sys.argv[1]))
conn, _ = listener.accept()
listener.close()
while data := conn.recv(65536):
    conn.sendall(data)
"""
"""The floor's echo server: a separate process, so no GIL is shared with the client."""


def blocking_floor_rtt(path: Path, rounds: int) -> list[float]:
    """Round trips of one line over a blocking unix socket to an echo process."""
    line = json.dumps(PAYLOAD).encode() + b"\n"
    samples: list[float] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        fd = listener.fileno()
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _ECHO_CHILD, str(fd)], pass_fds=(fd,)
        )
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(str(path))  # queued in the backlog until the child accepts
                for i in range(_warmup(rounds) + rounds):
                    start = time.perf_counter()
                    client.sendall(line)
                    got = client.recv(65536)
                    while not got.endswith(b"\n"):
                        got += client.recv(65536)
                    elapsed = time.perf_counter() - start
                    if i >= _warmup(rounds):
                        samples.append(elapsed)
            child.wait(5.0)  # it exits when the client closes
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    path.unlink(missing_ok=True)
    return samples


async def _echo_json(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            value = json.loads(line)
            writer.write(json.dumps(value, separators=(",", ":")).encode() + b"\n")
            await writer.drain()
    finally:
        writer.close()


async def echo_rtt(path: Path, rounds: int) -> list[float]:
    """Round trips of one JSON line (encode, send, echo-server decode+encode, receive, decode)."""
    server = await asyncio.start_unix_server(_echo_json, path=str(path))
    samples: list[float] = []
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            for i in range(_warmup(rounds) + rounds):
                start = time.perf_counter()
                writer.write(json.dumps(PAYLOAD, separators=(",", ":")).encode() + b"\n")
                await writer.drain()
                json.loads(await reader.readline())
                elapsed = time.perf_counter() - start
                if i >= _warmup(rounds):
                    samples.append(elapsed)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    return samples


def _open_wal(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    return conn


def _commit_one(conn: sqlite3.Connection, body: str) -> float:
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO t (body) VALUES (?)", (body,))
    conn.execute("COMMIT")
    return time.perf_counter() - start


def sqlite_commits(directory: Path, rounds: int) -> tuple[list[float], list[float]]:
    """`(full, normal)` latencies of one insert+commit each, alternating so drift hits both."""
    full_conn = _open_wal(directory / "full.sqlite", "FULL")
    normal_conn = _open_wal(directory / "normal.sqlite", "NORMAL")
    full: list[float] = []
    normal: list[float] = []
    try:
        for i in range(_warmup(rounds) + rounds):
            body = f"message {i}"
            f = _commit_one(full_conn, body)
            n = _commit_one(normal_conn, body)
            if i >= _warmup(rounds):
                full.append(f)
                normal.append(n)
    finally:
        full_conn.close()
        normal_conn.close()
    return full, normal
