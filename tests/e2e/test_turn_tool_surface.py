"""What a real turn offers the model: the captured request's `tools` array.

Claude Code's own messaging, scheduling, team and worktree tools reach nobody
in a hive; they must not be offered, and our tools must all be there.
"""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.turns import hive_with, operator_send, turns_done
from tests.fake_anthropic import Reply, Seen, text

BYPASSING = {
    # messaging, teams, sub-agents: nobody in the hive receives these
    "SendMessage", "ListAgents", "Agent", "Task", "TaskStop", "Workflow",
    # scheduling: nothing wakes a `claude -p` process once its turn ended
    "CronCreate", "CronDelete", "CronList", "ScheduleWakeup", "Monitor",
    # worktrees, skills, review UI, MCP resources
    "EnterWorktree", "ExitWorktree", "Skill", "ReportFindings",
    "ListMcpResourcesTool", "ReadMcpResourceTool", "ReadMcpResourceDirTool",
}  # fmt: skip
BUILTINS = {
    "Bash", "Read", "Write", "Edit", "Glob", "Grep", "NotebookEdit", "WebFetch", "WebSearch",
}  # fmt: skip
AGENT_TOOLS = {
    "send", "recv", "set_status", "whoami", "ask", "answer", "remind",
    "list_reminders", "cancel_reminder", "get_open_threads",
}  # fmt: skip
MANAGER_TOOLS = AGENT_TOOLS | {
    "list", "hive_status", "request_spawn", "request_init_config", "request_apply_commit",
    "update",
    "start", "kill", "restart", "rebuild",
}  # fmt: skip
TOOLS_BUDGET = 40_000
"""Bytes of tool definitions per request (the CLI sends them on every call): was 66,941."""


def answer_ok(seen: Seen) -> Reply:
    return text("ok")


def tool_sizes(tools: list[dict[str, Any]]) -> str:
    return ", ".join(f"{t['name']} {len(json.dumps(t))}" for t in tools)


async def test_a_turn_offers_our_tools_and_only_the_builtins_that_work_in_a_hive() -> None:
    with hive_with(answer_ok) as (hive, fake):
        assert hive.cli("spawn", "alice").returncode == 0
        for name in ("alice", "hm1nd"):
            await operator_send(hive, name, "hello")
            await turns_done(hive, name, 1)
        for name, ours in (("alice", AGENT_TOOLS), ("hm1nd", MANAGER_TOOLS)):
            tools: list[dict[str, Any]] = fake.requests_of(name)[0].body["tools"]
            names = {t["name"] for t in tools}
            assert not names & BYPASSING, tool_sizes(tools)
            assert names == BUILTINS | {f"mcp__hyperhive__{tool}" for tool in ours}, names
            assert len(json.dumps(tools)) <= TOOLS_BUDGET, tool_sizes(tools)
