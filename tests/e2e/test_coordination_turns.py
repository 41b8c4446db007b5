"""Questions through the real Claude Code CLI: the model asks and answers with MCP tools, and
the outcome wakes the asker's next turn as a question_answered event."""

from __future__ import annotations

import json
import re

from tests.e2e.turns import hive_with, operator_send, turns_done
from tests.fake_anthropic import Reply, Seen, text, tool_use

EVENT_ID = re.compile(r"^id: (\d+)$", re.MULTILINE)


def wake_text(seen: Seen) -> str:
    """Every text block of the newest user message (the wake prompt of a turn's first call)."""
    users = [m for m in seen.body.get("messages", []) if m.get("role") == "user"]
    if not users:
        return ""
    content = users[-1].get("content")
    if isinstance(content, str):
        return content
    return "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text")


def woken_by(seen: Seen, kind: str) -> bool:
    return not seen.last_tool_results() and f"Event: {kind}" in wake_text(seen)


def results_text(seen: Seen) -> str:
    return json.dumps(seen.last_tool_results())


def ask_operator_script(seen: Seen) -> Reply:
    """alice asks the operator and ends her turn; the answer wakes her again."""
    if seen.agent() != "alice":
        return text("ok")
    if seen.last_tool_results():
        return text("asked; waiting for the operator")
    if woken_by(seen, "question_answered"):
        return text("shipping")
    return tool_use("mcp__hyperhive__ask", {"question": "ship it?", "options": ["yes", "no"]})


async def test_a_question_to_the_operator_is_answered_on_the_cli_and_wakes_the_asker() -> None:
    with hive_with(ask_operator_script) as (hive, fake):
        assert hive.cli("spawn", "alice").returncode == 0
        await operator_send(hive, "alice", "ask me before you ship")
        await turns_done(hive, "alice", 1)
        first = fake.requests_of("alice")
        assert "mcp__hyperhive__ask" in first[0].tool_names()
        assert "Asked question 1 to the operator." in results_text(first[1])
        listed = json.loads(hive.cli("questions", "--json").stdout)
        assert [(q["id"], q["asker"], q["question"], q["options"]) for q in listed] == [
            (1, "alice", "ship it?", ["yes", "no"])
        ]
        wrong = hive.cli("answer", "1", "maybe")
        assert wrong.returncode == 1 and "[invalid_request]" in wrong.stderr
        done = hive.cli("answer", "1", "yes")
        assert done.returncode == 0, done.stderr
        assert "answered question 1 (asked by alice)" in done.stdout
        await turns_done(hive, "alice", 2)
        (woken,) = [s for s in fake.requests_of("alice") if woken_by(s, "question_answered")]
        prompt = wake_text(woken)
        assert "From: " not in prompt and "event from hive-core" in prompt
        for line in ("id: 1", "outcome: answered", "answerer: operator"):
            assert re.search(rf"^{line}$", prompt, re.MULTILINE), (line, prompt)
        assert re.search(r"answer \(untrusted text.*\n<<<BODY-\w+\nyes\nBODY-", prompt), prompt
        assert "ship it?" in prompt
        assert json.loads(hive.cli("questions", "--json").stdout) == []


def peer_script(seen: Seen) -> Reply:
    """alice asks bob; bob answers from the question_asked event; alice hears the answer."""
    who = seen.agent()
    if who not in ("alice", "bob") or seen.last_tool_results():
        return text("ok")
    if who == "bob":
        match = EVENT_ID.search(wake_text(seen))
        if not woken_by(seen, "question_asked") or match is None:
            return text("nothing to answer")
        return tool_use("mcp__hyperhive__answer", {"id": int(match[1]), "answer": "go ahead"})
    if woken_by(seen, "question_answered"):
        return text("deploying")
    return tool_use("mcp__hyperhive__ask", {"question": "may I deploy?", "to": "bob"})


async def test_an_agent_asks_a_peer_whose_model_answers_with_the_answer_tool() -> None:
    with hive_with(peer_script) as (hive, fake):
        for name in ("alice", "bob"):
            assert hive.cli("spawn", name).returncode == 0
        await operator_send(hive, "alice", "check with bob before deploying")
        await turns_done(hive, "alice", 2)
        await turns_done(hive, "bob", 1)
        alice = fake.requests_of("alice")
        assert "Asked question 1 to bob." in results_text(alice[1])
        bob = fake.requests_of("bob")
        asked = wake_text(bob[0])
        assert "Event: question_asked" in asked
        assert re.search(r"^asker: alice$", asked, re.MULTILINE), asked
        assert "may I deploy?" in asked
        assert "Answered question 1." in results_text(bob[1])
        (woken,) = [s for s in alice if woken_by(s, "question_answered")]
        prompt = wake_text(woken)
        for line in ("id: 1", "outcome: answered", "answerer: bob"):
            assert re.search(rf"^{line}$", prompt, re.MULTILINE), (line, prompt)
        assert "\ngo ahead\n" in prompt
        # Agent-to-agent questions never reach the operator's list.
        assert json.loads(hive.cli("questions", "--json").stdout) == []


def last_tool_called(seen: Seen) -> str:
    """The name of the tool in the newest assistant message, or ''."""
    for message in reversed(seen.body.get("messages", [])):
        if message.get("role") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, list):
            names = [str(b.get("name")) for b in content if b.get("type") == "tool_use"]
            return names[-1] if names else ""
        return ""
    return ""


def reminder_script(seen: Seen) -> Reply:
    """alice sets a reminder with a file, checks her loose ends; the reminder wakes her and
    she reads its payload, then tries to cancel the already delivered reminder."""
    if seen.agent() != "alice":
        return text("ok")
    if seen.last_tool_results():
        match last_tool_called(seen):
            case "mcp__hyperhive__remind":
                return tool_use("mcp__hyperhive__get_open_threads", {})
            case "mcp__hyperhive__list_reminders":
                return tool_use("mcp__hyperhive__cancel_reminder", {"id": 1})
            case _:
                return text("noted")
    if woken_by(seen, "reminder_due"):
        match = EVENT_ID.search(wake_text(seen))
        assert match is not None
        return tool_use("mcp__hyperhive__list_reminders", {"id": int(match[1])})
    return tool_use(
        "mcp__hyperhive__remind",
        {"message": "review the todo list", "in_seconds": 1, "file_path": "/state/notes/todo.md"},
    )


async def test_a_reminder_set_with_the_tool_wakes_the_agent_which_reads_its_payload() -> None:
    with hive_with(reminder_script) as (hive, fake):
        assert hive.cli("spawn", "alice").returncode == 0
        notes = hive.state_dir / "agents" / "alice" / "state" / "notes"
        notes.mkdir()
        (notes / "todo.md").write_text("1. water the plants\n")
        await operator_send(hive, "alice", "remind yourself about the todo list")
        await turns_done(hive, "alice", 2)
        requests = fake.requests_of("alice")
        assert "Reminder 1 set for " in results_text(requests[1])
        # Pending, unless the 5 s tick fired it before the model's next call: both are right.
        assert re.search(r"\b[01] pending reminders", results_text(requests[2]))
        (woken,) = [s for s in requests if woken_by(s, "reminder_due")]
        prompt = wake_text(woken)
        for line in ("id: 1", "payload_bytes: 20"):
            assert re.search(rf"^{line}$", prompt, re.MULTILINE), (line, prompt)
        assert "review the todo list" in prompt and "/state/notes/todo.md: 20 bytes" in prompt
        after = requests[requests.index(woken) + 1 :]
        listed = results_text(after[0])
        assert "reminder 1 (delivered" in listed and "1. water the plants" in listed
        (refusal,) = after[1].last_tool_results()
        assert refusal["is_error"] is True and "already delivered" in json.dumps(refusal)
        shown = json.loads(hive.cli("reminders", "alice", "--json").stdout)
        assert [(r["id"], r["status"]) for r in shown] == [(1, "delivered")]
