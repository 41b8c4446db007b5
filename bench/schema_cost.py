"""What the hive's schema of messages costs a commit, against the floor broker's, with
nothing else in the way.

Two databases in WAL mode with `synchronous=FULL`, one made by the hive's migrations and
one with the floor broker's schema, each first filled with delivered messages; then, in
random order between the two, batches of sends (each with its idempotency key, to as many
agents as the broker lines use) committed at once, and the acks of those sends committed
at once. The same statements run on both: the schema, its indexes above all, is what
differs. Each figure is the median time of a batch, with the floor's beside it.

`python -m bench.schema_cost [--quick]`
"""

from __future__ import annotations

import argparse
import random
import secrets
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from bench import floor_broker, report
from hive_core.migrations import MIGRATIONS

AGENTS = 50
BATCH = 50
"""Sends in one commit, and acks in the next: about what 50 senders queue behind a commit."""
FILL = 20_000
"""Delivered messages in each database before the timed batches."""


def open_db(path: Path, statements: list[str]) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    for statement in statements:
        conn.execute(statement)
    return conn


def sends(conn: sqlite3.Connection, agents: list[str], count: int) -> tuple[float, list[int]]:
    """One commit of `count` sends; its seconds and the new ids."""
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    ids = []
    for i in range(count):
        cur = conn.execute(
            "INSERT INTO messages (sender, recipient, body, idempotency_key, sent_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                agents[i % len(agents)],
                random.choice(agents),
                "a message of forty characters.....",
                secrets.token_hex(16),
                time.time(),
            ),
        )
        ids.append(int(cur.lastrowid or 0))
    conn.execute("COMMIT")
    return time.perf_counter() - started, ids


def acks(conn: sqlite3.Connection, ids: list[int]) -> float:
    """One commit marking `ids` delivered; its seconds."""
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    marks = ",".join("?" * len(ids))
    conn.execute(
        f"UPDATE messages SET delivered_at = ? WHERE id IN ({marks}) AND delivered_at IS NULL",
        (time.time(), *ids),
    )
    conn.execute("COMMIT")
    return time.perf_counter() - started


def measure(rounds: int) -> dict[str, dict[str, list[float]]]:
    agents = [f"f{i}" for i in range(AGENTS)]
    schemas = {
        "hive": [s for step in MIGRATIONS for s in step],
        "floor": [s.strip() for s in floor_broker.SCHEMA.split(";") if s.strip()],
    }
    times: dict[str, dict[str, list[float]]] = {k: {"send": [], "ack": []} for k in schemas}
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="hb") as tmp:
        conns = {k: open_db(Path(tmp) / f"{k}.sqlite", s) for k, s in schemas.items()}
        for conn in conns.values():
            for _ in range(FILL // 200):
                _, ids = sends(conn, agents, 200)
                acks(conn, ids)
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for n in range(rounds):
            for name in random.sample(list(conns), len(conns)):
                conn = conns[name]
                took, ids = sends(conn, agents, BATCH)
                times[name]["send"].append(took)
                times[name]["ack"].append(acks(conn, ids))
                if n % 50 == 49:  # as hive-core's checkpoints keep the WAL bounded
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for conn in conns.values():
            conn.close()
    return times


def run(rounds: int) -> None:
    times = measure(rounds)
    med = statistics.median
    for what in ("send", "ack"):
        report.emit(
            report.latency(
                f"schema_{what}_batch_of_{BATCH}_p50",
                med(times["hive"][what]),
                med(times["floor"][what]),
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.schema_cost", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer batches")
    args = parser.parse_args(argv)
    run(60 if args.quick else 300)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
