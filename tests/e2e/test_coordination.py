"""Questions, open threads, send throttling and the limits on open questions and pending
reminders over the real sockets and CLI.

The test plays the agents (`spawn_idle`): their harnesses are stopped, so nothing
else reads their inboxes. Waits are long-polls (`recv` with `wait_seconds`), bounded.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any, TypeVar

import pytest

from hive_share import helper
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient, RemoteError
from hive_share.models import Message, Question, Reminder, WireModel
from tests.e2e.hive import Hive
from tests.e2e.raw import RawConn

E = TypeVar("E", helper.QuestionAsked, helper.QuestionAnswered, helper.ReminderDue)

TICK_WAIT = 15.0
"""Bound for anything the 5-second coordination tick delivers."""


def ask(
    question: str,
    to: str | None = None,
    options: list[str] | None = None,
    ttl_seconds: float | None = None,
) -> rq.Ask:
    return rq.Ask(cmd="ask", question=question, to=to, options=options, ttl_seconds=ttl_seconds)


def answer(question_id: int, text: str) -> rq.AnswerQuestion:
    return rq.AnswerQuestion(cmd="answer", id=question_id, answer=text)


def remind(
    message: str, in_seconds: float | None = None, file_path: str | None = None
) -> rq.Remind:
    return rq.Remind(cmd="remind", message=message, in_seconds=in_seconds, file_path=file_path)


async def asked(client: HiveClient, req: rq.Ask) -> Question:
    return (await client.call(req, rs.QuestionResult)).question


async def answered(client: HiveClient, req: rq.AnswerQuestion) -> Question:
    return (await client.call(req, rs.QuestionResult)).question


async def reminded(client: HiveClient, req: rq.Remind) -> Reminder:
    return (await client.call(req, rs.ReminderResult)).reminder


async def refused(client: HiveClient, req: WireModel, code: str) -> str:
    """Make a request that must fail with `code`; returns the error message."""
    with pytest.raises(RemoteError) as caught:
        await client.call(req, rs.QuestionResult)
    assert caught.value.code == code, caught.value.message
    return caught.value.message


async def take(client: HiveClient, wait: float) -> list[Message]:
    """Receive (and acknowledge) whatever is in this principal's inbox, waiting up to `wait`."""
    got = await client.call(rq.Recv(cmd="recv", wait_seconds=wait), rs.Messages)
    if got.messages:
        await client.call(rq.Ack(cmd="ack", ids=[m.id for m in got.messages]), rs.Acked)
    return list(got.messages)


async def next_events(client: HiveClient, count: int) -> list[helper.HelperEvent]:
    """Exactly the next `count` inbox items, each a helper event from `hive` (bounded)."""
    found: list[helper.HelperEvent] = []
    async with asyncio.timeout(TICK_WAIT + 5):
        while len(found) < count:
            for m in await take(client, TICK_WAIT):
                assert m.sender == helper.HIVE_SENDER and m.event is not None, m
                assert m.body == helper.summary(m.event)
                found.append(m.event)
    assert len(found) == count, found
    return found


async def take_events(client: HiveClient, kind: type[E], count: int) -> list[E]:
    """Exactly the next `count` inbox items, each a helper event of `kind`."""
    found = []
    for event in await next_events(client, count):
        assert isinstance(event, kind), event
        found.append(event)
    return found


def cli_json(hive: Hive, *args: str) -> list[dict[str, Any]]:
    result = hive.cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    value: list[dict[str, Any]] = json.loads(result.stdout)
    return value


# -- questions: who may answer what -------------------------------------------------------


async def test_only_the_addressee_or_the_operator_may_answer_and_only_once(hive: Hive) -> None:
    assert hive.cli("stop", "hm1nd").returncode == 0  # the test plays the manager too
    hive.spawn_idle("alice", "bob", "carol")
    async with (
        hive.client(hive.agent_sock("alice")) as alice,
        hive.client(hive.agent_sock("bob")) as bob,
        hive.client(hive.agent_sock("carol")) as carol,
        hive.client(hive.manager_sock) as manager,
        hive.client() as operator,
    ):
        to_op = await asked(alice, ask("ship it?", options=["yes", "no"]))
        assert (to_op.asker, to_op.target, to_op.status) == ("alice", None, "pending")
        assert "addressed to the operator" in await refused(
            bob, answer(to_op.id, "yes"), "forbidden"
        )
        await refused(manager, answer(to_op.id, "yes"), "forbidden")
        await refused(alice, answer(to_op.id, "yes"), "forbidden")  # not even the asker
        msg = await refused(operator, answer(to_op.id, "maybe"), "invalid_request")
        assert "yes, no" in msg
        done = await answered(operator, answer(to_op.id, "yes"))
        assert (done.status, done.answer, done.answerer) == ("answered", "yes", "operator")
        assert "already answered" in await refused(operator, answer(to_op.id, "no"), "conflict")

        to_bob = await asked(alice, ask("may I deploy?", to="bob"))
        await refused(carol, answer(to_bob.id, "no"), "forbidden")
        await refused(alice, answer(to_bob.id, "yes"), "forbidden")
        done = await answered(bob, answer(to_bob.id, "go ahead"))
        assert (done.status, done.answer, done.answerer) == ("answered", "go ahead", "bob")
        await refused(bob, answer(to_bob.id, "again"), "conflict")
        await refused(operator, answer(to_bob.id, "override"), "conflict")

        overridden = await asked(alice, ask("tabs or spaces?", to="bob"))
        done = await answered(operator, answer(overridden.id, "spaces"))
        assert (done.answer, done.answerer) == ("spaces", "operator")
        await refused(bob, answer(overridden.id, "tabs"), "conflict")

        withdrawn = await asked(alice, ask("lunch?"))
        await operator.call(
            rq.CancelQuestion(cmd="cancel_question", id=withdrawn.id), rs.QuestionResult
        )
        assert "already cancelled" in await refused(
            operator, answer(withdrawn.id, "no"), "conflict"
        )
        await refused(
            operator, rq.CancelQuestion(cmd="cancel_question", id=withdrawn.id), "conflict"
        )
        await refused(operator, answer(9999, "x"), "not_found")
        await refused(bob, answer(9999, "x"), "not_found")
        await refused(operator, rq.CancelQuestion(cmd="cancel_question", id=9999), "not_found")

        assert "yourself" in await refused(alice, ask("me?", to="alice"), "invalid_request")
        await refused(manager, ask("me?", to="hm1nd"), "invalid_request")
        assert "ghost" in await refused(alice, ask("you?", to="ghost"), "unknown_agent")

        # The manager asks and answers like an agent does.
        from_manager = await asked(manager, ask("status?", to="carol"))
        done = await answered(carol, answer(from_manager.id, "green"))
        assert (done.asker, done.answerer) == ("hm1nd", "carol")
        to_manager = await asked(carol, ask("more work?", to="hm1nd"))
        await refused(bob, answer(to_manager.id, "no"), "forbidden")
        done = await answered(manager, answer(to_manager.id, "yes"))
        assert done.answerer == "hm1nd"

        # `questions` lists the operator's pending questions only, not agent-to-agent ones.
        pending_op = await asked(bob, ask("more disk?"))
        review = await asked(carol, ask("review my patch?", to="alice"))
        listed = await operator.call(rq.Questions(cmd="questions"), rs.QuestionsResult)
        assert [q.id for q in listed.questions] == [pending_op.id]
        shown = cli_json(hive, "questions")
        assert [(q["id"], q["asker"], q["question"]) for q in shown] == [
            (pending_op.id, "bob", "more disk?")
        ]

        # Every asker heard how each of its questions ended, in order; alice was also asked.
        outcomes: list[tuple[int, str, str | None, str]] = []
        for e in await next_events(alice, 5):
            if isinstance(e, helper.QuestionAnswered):
                outcomes.append((e.id, e.outcome, e.answer, e.answerer))
            else:
                assert isinstance(e, helper.QuestionAsked), e
                outcomes.append((e.id, "asked", e.question, e.asker))
        assert outcomes == [
            (to_op.id, "answered", "yes", "operator"),
            (to_bob.id, "answered", "go ahead", "bob"),
            (overridden.id, "answered", "spaces", "operator"),
            (withdrawn.id, "cancelled", None, "operator"),
            (review.id, "asked", "review my patch?", "carol"),
        ]
        asked_carol, answered_carol = await next_events(carol, 2)
        assert isinstance(asked_carol, helper.QuestionAsked)
        assert (asked_carol.id, asked_carol.asker) == (from_manager.id, "hm1nd")
        assert isinstance(answered_carol, helper.QuestionAnswered)
        assert (answered_carol.id, answered_carol.answerer) == (to_manager.id, "hm1nd")
        answered_manager, asked_manager = await next_events(manager, 2)
        assert isinstance(answered_manager, helper.QuestionAnswered)
        assert (answered_manager.id, answered_manager.answer) == (from_manager.id, "green")
        assert isinstance(asked_manager, helper.QuestionAsked)
        assert (asked_manager.id, asked_manager.asker) == (to_manager.id, "carol")
        # Addressees were told: bob of alice's two questions, and that the operator
        # settled the second one for him (he answered the first himself: no news).
        asked_1, asked_2, settled = await next_events(bob, 3)
        assert isinstance(asked_1, helper.QuestionAsked)
        assert isinstance(asked_2, helper.QuestionAsked)
        assert [(e.id, e.asker, e.question) for e in (asked_1, asked_2)] == [
            (to_bob.id, "alice", "may I deploy?"),
            (overridden.id, "alice", "tabs or spaces?"),
        ]
        assert isinstance(settled, helper.QuestionAnswered)
        assert (settled.id, settled.answer, settled.answerer) == (
            overridden.id, "spaces", "operator",
        )  # fmt: skip
        assert await take(bob, 0) == []
        assert await take(alice, 0) == []


async def test_ask_refuses_reserved_or_malformed_targets_and_bad_options(hive: Hive) -> None:
    hive.spawn_idle("alice")
    conn = await RawConn.open(hive.agent_sock("alice"))
    try:
        for to, code in [("operator", "invalid_name"), ("hive", "invalid_name"),
                         ("../bob", "invalid_name"), ("Bob", "invalid_name")]:  # fmt: skip
            reply = await conn.ask_json({"cmd": "ask", "question": "hi?", "to": to})
            assert reply is not None and reply["code"] == code, (to, reply)
        bad_fields: list[dict[str, Any]] = [
            {"options": ["only one"]},
            {"options": ["a", ""]},
            {"ttl_seconds": 0},
            {"question": ""},
        ]
        for bad in bad_fields:
            reply = await conn.ask_json({"cmd": "ask", "question": "hi?", **bad})
            assert reply is not None and reply["code"] == "invalid_request", (bad, reply)
    finally:
        await conn.close()
    assert cli_json(hive, "questions") == []


async def test_an_operator_cancel_and_a_ttl_expiry_reach_the_asker(hive: Hive) -> None:
    hive.spawn_idle("alice", "bob")
    async with (
        hive.client(hive.agent_sock("alice")) as alice,
        hive.client(hive.agent_sock("bob")) as bob,
    ):
        question = await asked(alice, ask("can I have root?"))
        result = hive.cli("cancel-question", str(question.id))
        assert result.returncode == 0, result.stderr
        assert f"cancelled question {question.id} (asked by alice)" in result.stdout
        (told,) = await take_events(alice, helper.QuestionAnswered, 1)
        assert (told.id, told.question, told.outcome, told.answer, told.answerer) == (
            question.id, "can I have root?", "cancelled", None, "operator",
        )  # fmt: skip
        again = hive.cli("cancel-question", str(question.id))
        assert again.returncode == 1 and "[conflict]" in again.stderr

        short = await asked(alice, ask("quick one?", to="bob", ttl_seconds=1))
        assert short.expires_at is not None and short.expires_at == pytest.approx(
            short.created_at + 1
        )
        patient = await asked(alice, ask("slow one?", ttl_seconds=3600))
        (expired,) = await take_events(alice, helper.QuestionAnswered, 1)
        assert (expired.id, expired.outcome, expired.answer, expired.answerer) == (
            short.id, "expired", None, "watchdog",
        )  # fmt: skip
        heard, gone = await next_events(bob, 2)  # the target hears of the expiry too
        assert isinstance(heard, helper.QuestionAsked)
        assert (heard.id, heard.expires_at) == (short.id, short.expires_at)
        assert isinstance(gone, helper.QuestionAnswered)
        assert (gone.id, gone.outcome, gone.answerer) == (short.id, "expired", "watchdog")
        assert "already expired" in await refused(bob, answer(short.id, "too late"), "conflict")
        # The long-lived question is untouched and still the operator's to answer.
        assert [q["id"] for q in cli_json(hive, "questions")] == [patient.id]


# -- open threads -------------------------------------------------------------------------


async def test_open_threads_are_per_agent_for_agents_and_hive_wide_otherwise(hive: Hive) -> None:
    assert hive.cli("stop", "hm1nd").returncode == 0
    hive.spawn_idle("alice", "bob", "carol")
    async with (
        hive.client(hive.agent_sock("alice")) as alice,
        hive.client(hive.agent_sock("bob")) as bob,
        hive.client(hive.agent_sock("carol")) as carol,
        hive.client(hive.manager_sock) as manager,
        hive.client() as operator,
    ):
        spawn = (
            await manager.call(
                rq.RequestSpawn(cmd="request_spawn", name="newbie"), rs.ApprovalResult
            )
        ).approval
        mine = await asked(alice, ask("ship it?"))
        owed = await asked(bob, ask("ready?", to="alice"))
        elsewhere = await asked(carol, ask("lunch?", to="bob"))
        await reminded(alice, remind("later", 3600))
        await reminded(carol, remind("later", 3600))
        await reminded(carol, remind("much later", 7200))

        async def threads(client: HiveClient) -> tuple[list[int], list[int], int]:
            got = await client.call(rq.GetOpenThreads(cmd="get_open_threads"), rs.OpenThreads)
            return (
                [a.id for a in got.approvals],
                [q.id for q in got.questions],
                got.pending_reminders,
            )

        assert await threads(alice) == ([], [mine.id, owed.id], 1)
        assert await threads(bob) == ([], [owed.id, elsewhere.id], 0)
        assert await threads(carol) == ([], [elsewhere.id], 2)
        everything = ([spawn.id], [mine.id, owed.id, elsewhere.id], 3)
        assert await threads(manager) == everything
        assert await threads(operator) == everything

        await answered(alice, answer(owed.id, "yes"))
        assert await threads(alice) == ([], [mine.id], 1)
        assert await threads(bob) == ([], [elsewhere.id], 0)
        await answered(operator, answer(mine.id, "no"))
        assert await threads(alice) == ([], [], 1)
        assert hive.cli("deny", str(spawn.id)).returncode == 0
        assert await threads(operator) == ([], [elsewhere.id], 3)
        assert await threads(manager) == ([], [elsewhere.id], 3)


# -- flooding -----------------------------------------------------------------------------


async def test_a_flooding_sender_gets_busy_while_another_sender_is_not_slowed(hive: Hive) -> None:
    hive.spawn_idle("alice", "bob", "carol")
    started = asyncio.Event()
    results: list[str] = []
    first_busy: list[str] = []
    finished = asyncio.Event()
    during: list[int] = []  # alice's send count when carol began and when she was done

    def spam(n: int) -> rq.Send:
        return rq.Send(cmd="send", to="bob", body=f"spam {n}", idempotency_key=f"spam-{n}")

    async def flood() -> float:
        t0 = time.monotonic()
        async with hive.client(hive.agent_sock("alice")) as alice:
            n = 0
            while n < 1500 or not finished.is_set():
                assert n < 50_000, "carol never finished"
                try:
                    await alice.call(spam(n), rs.Sent)
                    results.append("ok")
                except RemoteError as exc:
                    results.append(exc.code)
                    if not first_busy:
                        first_busy.append(exc.message)
                        started.set()
                n += 1
        return time.monotonic() - t0

    async def steady() -> list[float]:
        latencies = []
        async with hive.client(hive.agent_sock("carol")) as carol:
            await asyncio.wait_for(started.wait(), 60)
            during.append(len(results))
            for n in range(20):
                t0 = time.perf_counter()
                await carol.call(rq.Send(cmd="send", to="bob", body=f"real {n}"), rs.Sent)
                latencies.append(time.perf_counter() - t0)
            during.append(len(results))
        finished.set()
        return latencies

    async with asyncio.TaskGroup() as tg:
        flooding = tg.create_task(flood())
        measuring = tg.create_task(steady())
    elapsed, latencies = flooding.result(), measuring.result()
    assert set(results) == {"ok", "busy"}
    oks = results.count("ok")
    refill = 20 * elapsed + 1  # tokens earned back at 20/s while the flood ran
    assert 200 <= results.index("busy") <= 200 + refill  # a burst of 200, then refusals
    assert 200 <= oks <= 200 + refill, (oks, elapsed)  # and no more than the sustained rate
    assert "slow down" in first_busy[0] and "20 messages/s" in first_busy[0]
    assert during[0] < during[1]  # alice kept flooding all the while carol sent
    assert len(latencies) == 20  # every one of carol's sends succeeded
    assert statistics.median(latencies) < 0.05, latencies
    # The refused messages were not stored: bob's inbox holds exactly the accepted ones.
    async with hive.client(hive.agent_sock("bob")) as bob:
        got = await bob.call(rq.Recv(cmd="recv", max=1000), rs.Messages)
    senders = [m.sender for m in got.messages]
    assert (senders.count("alice"), senders.count("carol")) == (oks, 20)
    # A retry of a stored send is answered as a duplicate even while alice is throttled.
    async with hive.client(hive.agent_sock("alice")) as alice:
        again = await alice.call(spam(0), rs.Sent)
    assert (again.id, again.duplicate) == (got.messages[0].id, True)


async def test_too_many_open_questions_or_pending_reminders_are_busy(hive: Hive) -> None:
    hive.spawn_idle("alice", "bob")
    async with (
        hive.client(hive.agent_sock("alice")) as alice,
        hive.client(hive.agent_sock("bob")) as bob,
        hive.client() as operator,
    ):
        first = await asked(alice, ask("q 0?"))
        for n in range(1, 20):
            await asked(alice, ask(f"q {n}?", to="bob" if n % 2 else None))
        msg = await refused(alice, ask("one more?"), "busy")
        assert "20 unanswered" in msg
        await asked(bob, ask("mine?"))  # the limit is per asker
        await answered(operator, answer(first.id, "fine"))
        await asked(alice, ask("one more?"))  # an answer frees a slot
        await refused(alice, ask("and another?", to="bob"), "busy")

        ids = [(await reminded(alice, remind(f"r {n}", 3600))).id for n in range(100)]
        with pytest.raises(RemoteError) as caught:
            await alice.call(remind("one too many", 3600), rs.ReminderResult)
        assert caught.value.code == "busy" and "100 pending" in caught.value.message
        await reminded(bob, remind("mine", 3600))
        await alice.call(rq.CancelReminder(cmd="cancel_reminder", id=ids[0]), rs.ReminderResult)
        await reminded(alice, remind("fits again", 3600))
        with pytest.raises(RemoteError) as caught:
            await bob.call(rq.CancelReminder(cmd="cancel_reminder", id=ids[1]), rs.ReminderResult)
        assert caught.value.code == "not_found"  # not bob's to cancel


async def test_questions_of_a_destroyed_asker_are_still_answered_and_expired(hive: Hive) -> None:
    hive.spawn_idle("alice", "bob")
    async with hive.client(hive.agent_sock("alice")) as alice:
        answerable = await asked(alice, ask("still there?", to="bob"))
        expiring = await asked(alice, ask("soon gone?", to="bob", ttl_seconds=1))
        to_op = await asked(alice, ask("anyone?"))
    assert hive.cli("destroy", "alice").returncode == 0
    async with hive.client(hive.agent_sock("bob")) as bob, hive.client() as operator:
        done = await answered(bob, answer(answerable.id, "yes"))
        assert (done.status, done.answerer) == ("answered", "bob")
        first, second, expired = await next_events(bob, 3)
        assert isinstance(first, helper.QuestionAsked)
        assert isinstance(second, helper.QuestionAsked)
        assert [first.id, second.id] == [answerable.id, expiring.id]
        assert isinstance(expired, helper.QuestionAnswered)
        assert (expired.id, expired.outcome) == (expiring.id, "expired")
        done = await answered(operator, answer(to_op.id, "nobody home"))
        assert done.status == "answered"
        threads = await operator.call(rq.GetOpenThreads(cmd="get_open_threads"), rs.OpenThreads)
        assert threads.questions == []
    assert "its asker alice is gone" in hive.log()
