"""The manager's turn, with the real claude CLI, proposes a config change; the operator
approves it; the agent's next turn runs on the new model."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hive_share import helper
from hive_share import requests as rq
from hive_share import responses as rs
from tests.e2e.turns import hive_with, operator_send, turns_done
from tests.fake_anthropic import Reply, Seen, text, tool_use
from tests.git import git as _git

NEW_MODEL = "claude-deployed-model-7"
SHA = re.compile(r"\b[0-9a-f]{40}\b")


async def test_the_manager_proposes_a_model_change_that_the_operator_deploys() -> None:
    proposed: list[Path] = []

    def script(seen: Seen) -> Reply:
        if seen.agent() != "hm1nd":
            return text("working")
        results = json.dumps(seen.last_tool_results())
        if "Queued approval" in results:
            return text("Proposed; waiting for the operator.")
        if (found := SHA.search(results)) is not None:
            return tool_use(
                "mcp__hyperhive__request_apply_commit", {"agent": "bob", "commit": found.group(0)}
            )
        if "move bob" not in seen.last_user_text():
            return text("nothing to do")
        command = (
            f"cd {proposed[0]} && printf 'model = \"{NEW_MODEL}\"\\n' > agent.toml && "
            "git -c user.name=hm1nd -c user.email=hm1nd@hive commit -qam 'bob: new model' && "
            "git rev-parse HEAD"
        )
        return tool_use("Bash", {"command": command, "description": "commit bob's model"})

    with hive_with(script) as (hive, fake):
        assert hive.cli("spawn", "bob").returncode == 0
        proposed.append(hive.state_dir / "agents" / "bob" / "proposed")
        await operator_send(hive, "hm1nd", "please move bob to the new model")
        await turns_done(hive, "hm1nd", 1)

        pending = json.loads(hive.cli("pending", "--json").stdout)
        assert len(pending) == 1, pending
        approval = pending[0]
        assert approval["kind"] == "apply_commit" and approval["agent"] == "bob"
        assert f'+model = "{NEW_MODEL}"' in approval["diff"]
        sha = approval["commit"]
        assert sha == _git(proposed[0], "rev-parse", "HEAD")

        done = hive.cli("approve", str(approval["id"]))
        assert done.returncode == 0, done.stderr
        applied = hive.state_dir / "agents" / "bob" / "applied"
        assert _git(applied, "rev-parse", "main") == sha
        tags = _git(applied, "tag", "--list").split()
        assert sorted(tags) == [f"deployed/{approval['id']}", f"proposal/{approval['id']}"]

        await operator_send(hive, "bob", "hello on the new config")
        await turns_done(hive, "bob", 1)
        assert fake.requests_of("bob")[-1].body["model"] == NEW_MODEL

        await turns_done(hive, "hm1nd", 2)  # the resolution woke the manager
        async with hive.client() as host:
            await host.call(rq.Ping(cmd="ping"), rs.Pong)
        last = fake.requests_of("hm1nd")[-1].last_user_text()
        assert "approval_resolved" in last and "deployed" in last
        assert helper.HIVE_SENDER in last
