"""The stored wire schema matches the models, and its checker agrees with pydantic."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from hive_share import schema
from hive_share.models import WireModel, dump
from hive_share.requests import HOST_REQUEST, HostRequest, variants
from hive_share.responses import RESPONSE, Response
from tests.hive_share.test_wire_models import SAMPLES

HOST_SAMPLES = [SAMPLES[model] for model in variants(HostRequest)]
RESPONSE_SAMPLES = [SAMPLES[model] for model in variants(Response)]

# Checked by Python validators, which JSON Schema cannot carry: the server still runs them.
VALIDATOR_FIELDS = {"name", "to", "agent", "body"}

MUTATIONS: list[Any] = [
    True, False, None, 0, -1, 1, 1.5, 2**63 - 1, 2**63, -(2**63) - 1, "", "5", "x" * 5000,
    [], [1], {}, {"a": 1}, 181, 180.0, 1000, 1001, 4096, "spawn",
]  # fmt: skip


def test_the_stored_schema_is_what_the_models_generate() -> None:
    stored = schema.SCHEMA_FILE.read_text(encoding="utf-8")
    assert stored == schema.render(schema.generate()), (
        "hive_share/wire-schema.json is stale: run `python -m hive_share.schema` and commit it"
    )


@pytest.mark.parametrize("sample", HOST_SAMPLES, ids=lambda s: type(s).__name__)
def test_every_host_request_sample_passes_unchanged(sample: WireModel) -> None:
    assert schema.check("host_request", dump(sample)) == dump(sample)


@pytest.mark.parametrize("sample", RESPONSE_SAMPLES, ids=lambda s: type(s).__name__)
def test_every_response_sample_passes_unchanged(sample: WireModel) -> None:
    assert schema.check("response", dump(sample)) == dump(sample)


def _pydantic_accepts(raw: dict[str, Any]) -> bool:
    try:
        HOST_REQUEST.validate_python(raw)  # as hive_core.sockets.server does
    except ValidationError:
        return False
    return True


def _schema_accepts(raw: dict[str, Any]) -> bool:
    try:
        schema.check("host_request", raw)
    except schema.SchemaError:
        return False
    return True


def _mutants() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for sample in HOST_SAMPLES:
        raw = dump(sample)
        for field in raw:
            if field == "cmd":
                continue
            for value in MUTATIONS:
                found.append((field, {**raw, field: value}))
            without = {k: v for k, v in raw.items() if k != field}
            found.append((field, without))
        found.append(("extra", {**raw, "extra": 1}))
    return found


def test_the_checker_accepts_and_refuses_what_the_models_do() -> None:
    disagree = []
    for field, raw in _mutants():
        by_schema, by_models = _schema_accepts(raw), _pydantic_accepts(raw)
        if by_schema == by_models:
            continue
        if field in VALIDATOR_FIELDS and by_schema and not by_models:
            continue  # a name or body only the Python validator refuses
        disagree.append((raw, "schema" if by_schema else "models"))
    assert disagree == [], f"accepted by one side only: {disagree[:5]}"


@pytest.mark.parametrize(
    ("raw", "path", "message"),
    [
        ({"cmd": "inbox", "wait_seconds": 181}, ("wait_seconds",), "must be ≤ 180"),
        ({"cmd": "inbox", "wait_seconds": -1}, ("wait_seconds",), "must be ≥ 0"),
        ({"cmd": "inbox", "limit": 0}, ("limit",), "must be ≥ 1"),
        ({"cmd": "inbox", "before": 0}, ("before",), "must be > 0"),
        ({"cmd": "inbox", "before": "3"}, ("before",), "must be an integer or null"),
        ({"cmd": "approve", "id": 2**63}, ("id",), "must be ≤ 9223372036854775807"),
        ({"cmd": "approve", "id": True}, ("id",), "must be an integer"),
        ({"cmd": "deny", "id": 1, "reason": "r" * 4097}, ("reason",), "must be at most 4096"),
        ({"cmd": "answer", "id": 1, "answer": ""}, ("answer",), "must be at least 1 character"),
        ({"cmd": "approve"}, ("id",), "is required"),
        ({"cmd": "list", "as": "hm1nd"}, ("as",), "is not a known field"),
        ({"cmd": "shell"}, ("cmd",), "must be one of: answer, approve"),
    ],
)
def test_a_refusal_names_the_field_and_the_bound(
    raw: dict[str, Any], path: tuple[str, ...], message: str
) -> None:
    with pytest.raises(schema.SchemaError) as info:
        schema.check("host_request", raw)
    assert info.value.path == path
    assert info.value.message.startswith(message), info.value.message


def test_absent_fields_get_their_defaults_as_pydantic_fills_them() -> None:
    raw = {
        "ok": True,
        "result": "agents",
        "agents": [{"name": "a", "role": "agent", "state": "stopped"}],
    }
    checked = schema.check("response", raw)
    assert checked == dump(RESPONSE.validate_python(raw))
    assert checked["agents"][0]["alive"] is False and checked["agents"][0]["login"] == "unknown"


@pytest.mark.parametrize(
    "raw",
    [
        {"ok": True, "result": "agents", "agents": [{"name": "a", "role": "boss", "state": "x"}]},
        {"ok": True, "result": "agents", "agents": "none"},
        {"ok": True, "result": "sent", "id": 1.5},
        {"ok": True, "result": "sent", "id": 1, "duplicate": 0},
        {"ok": True, "result": "nothing"},
        {"ok": False, "result": "error", "code": "made_up", "error": "x"},
    ],
)
def test_answers_the_models_refuse_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RESPONSE.validate_python(raw)
    with pytest.raises(schema.SchemaError):
        schema.check("response", raw)
