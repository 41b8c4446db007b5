"""The soak's scripted model: wake prompts parsed as the harness renders them, a planned
turn played out step by step, and what it records."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from bench.soak_model import Asked, SoakModel, Step, parse_items, wake_text
from hive_agent.wake import render_wake
from hive_share.helper import QuestionAnswered, ReminderDue
from hive_share.models import Message
from tests.fake_anthropic import Seen

AGENTS = ["s00", "s01", "s02"]
NONCE_C = "soak-cccccccccccc"


def message(i: int, body: str, event: Any = None) -> Message:
    sender = "hive" if event is not None else "operator"
    return Message(id=i, sender=sender, recipient="s00", body=body, sent_at=1e9, event=event)


def test_items_are_read_back_from_a_rendered_wake_prompt() -> None:
    prompt = render_wake([
        message(7, "soak load soak-0123456789ab from the operator to s00"),
        message(9, "question 3 was answered", QuestionAnswered(
            id=3, question="soak question soak-aaaaaaaaaaaa?", outcome="answered",
            answer="soak answer soak-bbbbbbbbbbbb", answerer="operator")),
        message(11, "reminder 4 is due", ReminderDue(id=4, message=f"soak reminder {NONCE_C}")),
    ])  # fmt: skip
    items = parse_items(prompt)
    assert [(i.msg_id, i.event, i.event_id) for i in items] == [
        (7, "", 0), (9, "question_answered", 3), (11, "reminder_due", 4),
    ]  # fmt: skip
    assert items[0].nonces == ("soak-0123456789ab",)
    assert items[1].nonces == ("soak-aaaaaaaaaaaa", "soak-bbbbbbbbbbbb")


def role(agent: str) -> dict[str, Any]:
    return {"type": "text", "text": f"You are **{agent}**, an agent of the hive."}


def first_request(agent: str, prompt: str) -> Seen:
    body = {
        "system": [role(agent)],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>context</system-reminder>"},
            {"type": "text", "text": prompt},
        ]}],
    }  # fmt: skip
    return Seen(body=body, headers={})


def next_request(first: Seen, tool_id: str, result: str, is_error: bool = False) -> Seen:
    messages = [
        *first.body["messages"],
        {"role": "assistant", "content": [{"type": "tool_use", "id": tool_id}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id,
                                      "content": [{"type": "text", "text": result}],
                                      "is_error": is_error}]},
        {"role": "system", "content": "a nudge"},
    ]  # fmt: skip
    return Seen(body={**first.body, "messages": messages}, headers={})


class Scripted(SoakModel):
    """The model with a fixed plan instead of a random one."""

    def __init__(self, plan: list[Step], tmp: Path) -> None:
        super().__init__(AGENTS, tmp, random.Random(1))
        self.fixed = plan
        self.mode = "load"

    def _draw(self) -> list[Step]:
        return list(self.fixed)


def test_a_turn_plays_its_plan_and_records_what_came_back(tmp_path: Path) -> None:
    model = Scripted(["send_agent", "ask", "remind", "write", "send_operator"], tmp_path)
    questions: list[Asked] = []
    model.on_question = questions.append
    seen = first_request("s00", render_wake([message(5, "soak load soak-00000000000a")]))
    assert "You have 1 new item" in wake_text(seen)
    results = [
        "Sent to s02 (message 12).", "Asked question 4 to the operator.",
        "Reminder 2 set for 2026-11-25 04:10:00Z.", "File created successfully at: x",
        "Sent to operator (message 13).",
    ]  # fmt: skip
    reply = model(seen)
    calls = []
    for result in results:
        block = reply.blocks[-1]
        assert block["type"] == "tool_use" and 0 <= reply.delay <= 5
        calls.append((block["name"], block["input"]))
        reply = model(next_request(seen, block["id"], result))
    assert reply.blocks[-1]["type"] == "text" and reply.stop_reason == "end_turn"
    assert [name for name, _ in calls] == [
        "mcp__hyperhive__send", "mcp__hyperhive__ask", "mcp__hyperhive__remind", "Write",
        "mcp__hyperhive__send",
    ]  # fmt: skip
    assert calls[0][1]["to"] in ("s01", "s02") and calls[4][1]["to"] == "operator"
    assert str(calls[3][1]["file_path"]).startswith(str(tmp_path / "agents" / "s00" / "state"))
    rec = model.snapshot()
    (show,) = rec.shows
    assert (show.agent, [i.msg_id for i in show.items]) == ("s00", [5])
    assert show.turn in rec.finished
    assert sorted(s.msg_id or 0 for s in rec.sends.values()) == [12, 13]
    assert list(rec.asked) == [4] and questions == [rec.asked[4]]
    assert list(rec.reminded) == [2] and rec.writes_ok == 1


def test_a_failed_tool_is_counted_and_the_turn_goes_on(tmp_path: Path) -> None:
    model = Scripted(["write"], tmp_path)
    seen = first_request("s01", render_wake([message(5, "soak load soak-00000000000b")]))
    reply = model(seen)
    reply = model(next_request(seen, reply.blocks[-1]["id"], "no such dir", is_error=True))
    rec = model.snapshot()
    assert reply.stop_reason == "end_turn" and (rec.writes_failed, rec.tool_errors) == (1, 1)


def test_drain_and_the_manager_plan_nothing(tmp_path: Path) -> None:
    model = Scripted(["send_agent"], tmp_path)
    manager = model(first_request("hm1nd", render_wake([message(5, "s01 crashed")])))
    model.mode = "drain"
    drained = model(first_request("s01", render_wake([message(6, "soak load soak-00000000000c")])))
    assert manager.stop_reason == drained.stop_reason == "end_turn"
    assert sorted(model.mid_turn(0.1)) == ["hm1nd", "s01"]  # both wait out their replies


def test_requests_that_are_no_wake_are_answered_plainly(tmp_path: Path) -> None:
    model = Scripted(["send_agent"], tmp_path)
    unknown = next_request(first_request("s01", "hello"), "toolu_9999", "whatever")
    assert model(unknown).blocks[-1]["text"] == "ok"
    assert model(Seen(body={"messages": []}, headers={})).stop_reason == "end_turn"
    assert model.snapshot().shows == []
