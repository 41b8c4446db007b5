"""The manager proposes a change to its own config: flagged for the operator, then deployed."""

from __future__ import annotations

from hive_share.names import MANAGER_NAME
from tests.e2e.dashboard import session
from tests.e2e.hive import Hive
from tests.e2e.test_deploys import _commit, _listed, _propose

OWN = f"{MANAGER_NAME} proposes a change to its own config"


async def test_the_managers_own_config_change_is_flagged_and_deploys(hive: Hive) -> None:
    assert hive.cli("spawn", "bob").returncode == 0
    bob = await _propose(hive, "bob", _commit(hive, "bob", 'model = "claude-bob"\n'))
    assert bob.requester == MANAGER_NAME
    sha = _commit(hive, MANAGER_NAME, 'model = "claude-self-1"\n', "own model")
    own = await _propose(hive, MANAGER_NAME, sha)
    assert (own.kind, own.agent, own.requester) == ("apply_commit", MANAGER_NAME, MANAGER_NAME)

    table = hive.cli("pending")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines()[1:]}
    assert OWN in rows[str(own.id)] and f"({sha[:12]})" in rows[str(own.id)]
    assert "own config" not in rows[str(bob.id)]

    shown = hive.cli("show", str(own.id))
    assert shown.returncode == 0, shown.stderr
    assert OWN in shown.stdout.splitlines()[:4]
    other = hive.cli("show", str(bob.id))
    assert other.returncode == 0 and "own config" not in other.stdout

    async with session(hive) as client:
        got = await client.get("/api/state")
        assert got.status_code == 200
        cards = {a["id"]: a for a in got.json()["approvals"]}
        assert cards[own.id]["agent"] == cards[own.id]["requester"] == MANAGER_NAME
        assert cards[bob.id]["agent"] != cards[bob.id]["requester"]

    done = hive.cli("approve", str(own.id))
    assert done.returncode == 0, done.stderr
    row = _listed(hive, MANAGER_NAME)
    assert (row["deployed_commit"], row["state"]) == (sha, "running")
