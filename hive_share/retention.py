"""How long an agent's own history files keep their rows: shared by the harness, which
prunes them hourly while it runs, and hive-core, which sweeps the files of agents whose
harness does not run (`hive_core/events_vacuum.py`). Standard library only."""

from __future__ import annotations

from dataclasses import dataclass

DAY = 24 * 3600


@dataclass(frozen=True)
class Retention:
    """One table of one sqlite file in the agent's state dir, pruned by the age of a
    timestamp column (seconds since the epoch)."""

    file: str
    table: str
    column: str
    keep_seconds: float

    @property
    def delete(self) -> str:
        """The statement that prunes it; its one parameter is the cut-off time."""
        return f"DELETE FROM {self.table} WHERE {self.column} < ?"


EVENTS = Retention("hyperhive-events.sqlite", "events", "ts", 7 * DAY)
"""The live-event history (`hive_agent/history.py`): a week."""
TURNS = Retention("hyperhive-turn-stats.sqlite", "turns", "ended_at", 90 * DAY)
"""One row per turn (`hive_agent/turn_stats.py`): 90 days."""
PRUNED = (EVENTS, TURNS)
