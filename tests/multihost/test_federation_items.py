"""The operator's approvals and questions across hosts: each host's show on every host, and
are decided on the host holding them, once."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from hive_share import helper
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from hive_share.responses import Error
from tests.e2e.dashboard import session, stream
from tests.multihost.hives import HOSTS, Hosts, hosts_of
from tests.multihost.nats_cluster import NatsCluster

ITEM_EVENTS = "approval_added,approval_resolved,question_added,question_resolved,attention_changed"


@pytest.fixture
def hosts(nats_cluster: NatsCluster) -> Iterator[Hosts]:
    with hosts_of(nats_cluster) as joined:
        yield joined


def ok(hosts: Hosts, host: str, *args: str) -> str:
    result = hosts[host].cli(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(hosts: Hosts, host: str, *args: str) -> str:
    result = hosts[host].cli(*args)
    assert result.returncode == 1, result.stdout
    return result.stderr


async def test_an_approval_is_seen_everywhere_and_carried_out_once_on_its_host(
    hosts: Hosts,
) -> None:
    async with (
        session(hosts["a"]) as on_a,
        session(hosts["c"]) as on_c,
        stream(on_a, ITEM_EVENTS) as seen_a,
        stream(on_c, ITEM_EVENTS) as seen_c,
    ):
        queued = ok(hosts, "b", "request-spawn", "bob", "--host", "b")
        found = re.search(r"queued approval (\d+)", queued)
        assert found is not None, queued
        approval = found[1]
        for frames in (seen_a, seen_c):
            frame = await frames.until("approval_added", approval__host="b")
            assert frame["event"]["approval"]["id"] == int(approval)
            assert frame["event"]["approval"]["agent"] == "bob"
        pending = json.loads(ok(hosts, "a", "pending", "--json"))
        assert [(p["id"], p["host"], p["kind"]) for p in pending] == [(int(approval), "b", "spawn")]
        table = ok(hosts, "c", "pending")
        assert table.splitlines()[0].split()[:3] == ["ID", "HOST", "KIND"]
        assert table.splitlines()[1].split()[:4] == [approval, "b", "spawn", "bob"]
        state = (await on_a.get("/api/state")).json()
        assert [(x["id"], x["host"]) for x in state["approvals"]] == [(int(approval), "b")]
        await seen_a.until("attention_changed")  # the list follows the mirrored approval
        needs = json.loads(hosts["a"].cli("attention", "--json").stdout)
        assert [(i["key"], i["summary"], i["action"]) for i in needs] == [
            (
                f"approval:b:{approval}",
                f"approval {approval} on b: spawn bob",
                f"hive-core show {approval} --host b; "
                f"hive-core approve {approval} --host b or deny {approval} --host b",
            )
        ]

        done = ok(hosts, "a", "approve", approval, "--host", "b")
        assert done.strip() == f"approved {approval}: spawned bob"
        assert "bob" in hosts.local_agents("b")
        again = refused(hosts, "c", "approve", approval, "--host", "b")
        assert f"approval {approval} is already approved" in again
        for frames in (seen_a, seen_c):
            frame = await frames.until("approval_resolved", approval__host="b")
            assert frame["event"]["approval"]["status"] == "approved"
        assert json.loads(ok(hosts, "c", "pending", "--json")) == []
        assert "no approval with id 999" in refused(hosts, "a", "approve", "999", "--host", "b")
        assert "no host 'zz'" in refused(hosts, "a", "deny", approval, "--host", "zz")


async def test_a_question_to_the_operator_is_answered_from_another_host(hosts: Hosts) -> None:
    hosts.spawn_idle("b", "bea")
    async with (
        session(hosts["a"]) as on_a,
        stream(on_a, ITEM_EVENTS) as seen_a,
        HiveClient(hosts["b"].agent_sock("bea")) as bea,
    ):
        asked = await bea.call(
            rq.Ask(cmd="ask", question="ship it?", options=["yes", "no"]), rs.QuestionResult
        )
        question = asked.question.id
        frame = await seen_a.until("question_added", question__host="b")
        assert frame["event"]["question"]["id"] == question
        listed = json.loads(ok(hosts, "a", "questions", "--json"))
        assert [(q["id"], q["host"], q["asker"]) for q in listed] == [(question, "b", "bea")]
        too_free = refused(hosts, "a", "answer", str(question), "maybe", "--host", "b")
        assert "yes" in too_free and "no" in too_free  # b's check of the options
        ok(hosts, "a", "answer", str(question), "yes", "--host", "b")
        await seen_a.until("question_resolved", question__host="b")
        told = await bea.call(rq.Recv(cmd="recv", wait_seconds=20), rs.Messages)
        (news,) = told.messages
        assert isinstance(news.event, helper.QuestionAnswered), news
        assert (news.event.answer, news.event.answerer) == ("yes", "operator")
        again = await bea.request(
            rq.AnswerQuestion(cmd="answer", id=question, answer="yes", host="b")
        )
        assert isinstance(again, Error) and again.code == "forbidden"  # the operator's
    assert json.loads(ok(hosts, "b", "questions", "--json")) == []


async def test_the_managers_spawn_request_is_queued_and_answered_across_hosts(
    hosts: Hosts,
) -> None:
    manager = next(h for h in HOSTS if "hm1nd" in hosts.local_agents(h))
    there, third = (h for h in HOSTS if h != manager)
    ok(hosts, manager, "stop", "hm1nd")  # the test reads the manager's inbox
    async with HiveClient(hosts[manager].manager_sock) as hm1nd:
        asked = rq.RequestSpawn(cmd="request_spawn", name="cara", host=there)
        approval = (await hm1nd.call(asked, rs.ApprovalResult)).approval
        assert (approval.host, approval.agent, approval.requester) == (there, "cara", "hm1nd")
        pending = json.loads(ok(hosts, there, "pending", "--json"))
        assert [(p["id"], p["host"], p["requester"]) for p in pending] == [
            (approval.id, there, "hm1nd")
        ]
        done = ok(hosts, third, "approve", str(approval.id), "--host", there)
        assert done.strip() == f"approved {approval.id}: spawned cara"
        assert "cara" in hosts.local_agents(there)
        told = await hm1nd.call(rq.Recv(cmd="recv", wait_seconds=20), rs.Messages)
        (news,) = told.messages
        assert news.sender == "hive" and isinstance(news.event, helper.ApprovalResolved)
        assert (news.event.id, news.event.host, news.event.status) == (
            approval.id,
            there,
            "approved",
        )
        nowhere = await hm1nd.request(rq.RequestSpawn(cmd="request_spawn", name="dot", host="zz"))
        assert isinstance(nowhere, Error) and nowhere.code == "not_found"


async def test_an_agents_message_to_the_operator_shows_on_every_host(hosts: Hosts) -> None:
    hosts.spawn_idle("b", "bea")
    long = "from b: " + "x" * 3000
    async with (
        session(hosts["a"]) as on_a,
        stream(on_a, "remote_inbox,attention_changed") as seen_a,
        HiveClient(hosts["b"].agent_sock("bea")) as bea,
    ):
        await bea.call(rq.Send(cmd="send", to="operator", body=long), rs.Sent)
        frame = await seen_a.until("remote_inbox", host="b", inbox__unread=1)
        (shown,) = frame["event"]["inbox"]["recent"]
        assert shown["sender"] == "bea" and shown["body"].endswith(" … (cut)")
        state = (await on_a.get("/api/state")).json()
        assert [(m["host"], m["sender"]) for m in state["inbox"]] == [("b", "bea")]
        while "inbox:b" not in {i["key"] for i in frame["event"].get("items", [])}:
            frame = await seen_a.until("attention_changed")
        (item,) = [i for i in frame["event"]["items"] if i["key"] == "inbox:b"]
        assert item["summary"] == "1 unread message to the operator on b"
        assert item["action"] == "hive-core inbox --host b"
        (read,) = json.loads(ok(hosts, "a", "inbox", "--host", "b", "--json"))
        assert (read["sender"], read["body"]) == ("bea", long)  # whole, read on b
        await seen_a.until("remote_inbox", host="b", inbox__unread=0)
    assert json.loads(ok(hosts, "b", "inbox", "--json"))[0]["delivered_at"] is not None


async def test_an_agent_asks_another_hosts_agent_and_hears_its_answer(hosts: Hosts) -> None:
    hosts.spawn_idle("a", "ada")
    hosts.spawn_idle("b", "bea")
    hosts.settled(3)
    async with (
        HiveClient(hosts["a"].agent_sock("ada")) as ada,
        HiveClient(hosts["b"].agent_sock("bea")) as bea,
    ):
        ask = rq.Ask(cmd="ask", question="which branch?", to="bea", options=["main", "dev"])
        asked = (await ada.call(ask, rs.QuestionResult)).question
        got = await bea.call(rq.Recv(cmd="recv", wait_seconds=20), rs.Messages)
        (news,) = got.messages
        assert news.sender == "hive" and isinstance(news.event, helper.QuestionAsked)
        assert (news.event.id, news.event.asker, news.event.host) == (asked.id, "ada", "a")
        assert news.body == f"ada (on host a) asks you question {asked.id}"
        await bea.call(rq.Ack(cmd="ack", ids=[news.id]), rs.Acked)
        here = await bea.request(rq.AnswerQuestion(cmd="answer", id=asked.id, answer="main"))
        assert isinstance(here, Error) and here.code == "not_found"  # held on a, not on b
        answered = rq.AnswerQuestion(cmd="answer", id=asked.id, answer="main", host="a")
        done = (await bea.call(answered, rs.QuestionResult)).question
        assert (done.status, done.answer, done.answerer) == ("answered", "main", "bea")
        told = await ada.call(rq.Recv(cmd="recv", wait_seconds=20), rs.Messages)
        (answer,) = told.messages
        assert isinstance(answer.event, helper.QuestionAnswered)
        assert (answer.event.answer, answer.event.answerer) == ("main", "bea")
