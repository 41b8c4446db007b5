"""An agent's model and where it comes from: the default, the approved agent.toml, or a
choice made at run time (which wins), as `list`, the dashboard's state and the agent's own
page show it; and a name Claude Code cannot run is refused."""

from __future__ import annotations

import json

from tests.e2e.dashboard import ACT_HEADERS, session, stream
from tests.e2e.hive import Hive
from tests.e2e.test_agent_page_api import agent_session
from tests.e2e.test_deploys import _commit, _propose


def _bob(hive: Hive) -> dict[str, object]:
    rows = {a["name"]: a for a in json.loads(hive.cli("list", "--json").stdout)}
    row: dict[str, object] = rows["bob"]
    return row


async def test_list_and_the_dashboard_say_where_the_model_comes_from(hive: Hive) -> None:
    assert hive.cli("spawn", "bob").returncode == 0
    assert (_bob(hive)["model"], _bob(hive)["model_source"]) == ("opus", "default")

    sha = _commit(hive, "bob", 'model = "claude-sonnet-4-5"\n')
    approval = await _propose(hive, "bob", sha)
    assert hive.cli("approve", str(approval.id)).returncode == 0
    assert (_bob(hive)["model"], _bob(hive)["model_source"]) == ("claude-sonnet-4-5", "agent.toml")
    assert "claude-sonnet-4-5 (agent.toml)" in hive.cli("list").stdout

    async with session(hive) as client, stream(client, "container_state_changed") as frames:
        done = hive.cli("model", "bob", "claude-haiku-4-5")
        assert done.returncode == 0, done.stderr
        await frames.until(
            "container_state_changed", agent__name="bob", agent__model_source="override"
        )
        state = (await client.get("/api/state")).json()
    (bob,) = [a for a in state["agents"] if a["name"] == "bob"]
    assert (bob["model"], bob["model_source"]) == ("claude-haiku-4-5", "override")
    assert "claude-haiku-4-5 (set at run time)" in hive.cli("list").stdout


async def test_a_model_claude_code_cannot_run_is_refused_with_the_accepted_names(
    hive: Hive,
) -> None:
    assert hive.cli("spawn", "bob").returncode == 0
    refused = hive.cli("model", "bob", "gpt-4")
    assert refused.returncode == 1
    assert "not one Claude Code can run" in refused.stderr and "opus" in refused.stderr
    assert _bob(hive)["model"] == "opus"


async def test_a_model_picked_on_the_agents_page_reaches_list_and_the_dashboard(
    hive: Hive,
) -> None:
    assert hive.cli("spawn", "bob").returncode == 0
    async with (
        session(hive) as client,
        stream(client, "container_state_changed") as frames,
        agent_session(hive, "bob") as page,
    ):
        body = json.dumps({"model": "claude-page-2"})
        picked = await page.post("/api/model", content=body, headers=ACT_HEADERS)
        assert picked.status_code == 200, picked.text
        await frames.until(
            "container_state_changed", agent__name="bob", agent__model="claude-page-2"
        )
    assert (_bob(hive)["model"], _bob(hive)["model_source"]) == ("claude-page-2", "override")
