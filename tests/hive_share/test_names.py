from __future__ import annotations

import pytest

from hive_share.names import (
    MANAGER_NAME,
    MAX_NAME_LEN,
    OPERATOR,
    RESERVED,
    InvalidName,
    validate_agent_name,
    validate_principal,
)


@pytest.mark.parametrize(
    "name", ["a", "alice", "bob-2", "x1", "a-b-c", "abcdefghi", MANAGER_NAME, "a1-b2"]
)
def test_valid_agent_names_are_returned_unchanged(name: str) -> None:
    assert validate_agent_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("..", id="dotdot"),
        pytest.param(".", id="dot"),
        pytest.param("/", id="slash"),
        pytest.param("a/b", id="path"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("a" * 1000, id="1000-chars"),
        pytest.param("ab-", id="trailing-dash"),
        pytest.param("-ab", id="leading-dash"),
        pytest.param("1ab", id="leading-digit"),
        pytest.param("Alice", id="uppercase"),
        pytest.param("a_b", id="underscore"),
        pytest.param("a b", id="space"),
        pytest.param("alice\n", id="trailing-newline"),
        pytest.param("a;rm -rf", id="shell-separator"),
        pytest.param("$(id)", id="command-substitution"),
        pytest.param("`id`", id="backticks"),
        pytest.param("\u0430lice", id="cyrillic-a"),
        pytest.param("\uff41lice", id="fullwidth-a"),
        pytest.param("al\u0131ce", id="dotless-i"),
        pytest.param("alice\u200b", id="zero-width-space"),
    ],
)
def test_malformed_agent_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        validate_agent_name(name)


@pytest.mark.parametrize("name", sorted(RESERVED))
def test_every_reserved_word_is_refused_as_an_agent_name(name: str) -> None:
    with pytest.raises(InvalidName, match="reserved"):
        validate_agent_name(name)


@pytest.mark.parametrize("value", [None, 5, b"alice", ["alice"]])
def test_non_string_agent_names_are_refused(value: object) -> None:
    with pytest.raises(InvalidName, match="must be a string"):
        validate_agent_name(value)


def test_nine_characters_is_the_longest_accepted_name() -> None:
    assert MAX_NAME_LEN == 9
    assert validate_agent_name("a" * 9) == "a" * 9
    with pytest.raises(InvalidName, match="10 characters"):
        validate_agent_name("a" * 10)


def test_refusal_message_names_the_offending_value_escaped() -> None:
    with pytest.raises(InvalidName) as info:
        validate_agent_name("\u0430lice")
    assert "\\u0430lice" in str(info.value)
    assert "\u0430" not in str(info.value)


def test_refusal_message_of_a_huge_name_is_truncated() -> None:
    with pytest.raises(InvalidName) as info:
        validate_agent_name("a" * 1000)
    assert len(str(info.value)) < 200


def test_principal_accepts_the_operator_and_agents() -> None:
    assert validate_principal(OPERATOR) == "operator"
    assert validate_principal("alice") == "alice"


@pytest.mark.parametrize("value", ["hive", "Operator", "..", "", None])
def test_principal_refuses_anything_else(value: object) -> None:
    with pytest.raises(InvalidName):
        validate_principal(value)
