from __future__ import annotations

import re
from pathlib import Path

import pytest

from hive_agent.model import DEFAULT_MODEL, MODEL_FILE, InvalidModel, ModelStore, validate_model


def test_without_a_choice_the_built_in_default_is_used(tmp_path: Path) -> None:
    assert ModelStore(tmp_path).get() == DEFAULT_MODEL == "opus"


def test_without_a_choice_the_agent_toml_default_wins_over_the_built_in(tmp_path: Path) -> None:
    assert ModelStore(tmp_path).get("sonnet") == "sonnet"


def test_the_stores_own_default_is_used_when_agent_toml_names_none(tmp_path: Path) -> None:
    assert ModelStore(tmp_path, default="haiku").get(None) == "haiku"


def test_a_chosen_model_is_persisted_and_wins_over_every_default(tmp_path: Path) -> None:
    ModelStore(tmp_path).set("claude-opus-4-5[1m]")
    assert (tmp_path / MODEL_FILE).read_text(encoding="utf-8") == "claude-opus-4-5[1m]\n"
    reopened = ModelStore(tmp_path)
    assert reopened.get("sonnet") == "claude-opus-4-5[1m]"
    assert reopened.get() == "claude-opus-4-5[1m]"


def test_setting_again_replaces_the_choice_and_leaves_no_temp_file(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.set("sonnet")
    store.set("us.anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert store.get() == "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_FILE]


@pytest.mark.parametrize(
    "model",
    ["", "a b", "x" * 101, "../etc/passwd", "opus;rm -rf", "opus\n", "ópus", "gpt-4", "claude-"],
)
def test_an_invalid_model_name_is_refused_and_nothing_is_written(
    tmp_path: Path, model: str
) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(InvalidModel):
        store.set(model)
    assert list(tmp_path.iterdir()) == []
    assert store.get() == DEFAULT_MODEL


def test_a_name_of_exactly_100_characters_is_accepted() -> None:
    name = "claude-" + "x" * 89 + "[1m]"
    assert len(name) == 100 and validate_model(name) == name


@pytest.mark.parametrize(
    "model",
    [
        "opus", "sonnet[1m]", "haiku", "default", "claude-sonnet-4-5", "claude-x[1m]",
        "anthropic.claude-haiku-4-5-20251001-v1:0", "claude-opus-4-1@20250805",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3",
    ],
)  # fmt: skip
def test_aliases_and_claude_ids_are_accepted(model: str) -> None:
    assert validate_model(model) == model


def test_a_refusal_says_which_names_are_accepted() -> None:
    with pytest.raises(InvalidModel, match=r"alias \(default, opus, sonnet.*claude-… model id"):
        validate_model("gpt-4")


def test_a_corrupt_model_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / MODEL_FILE
    path.write_text("not a model!\n", encoding="utf-8")
    with pytest.raises(InvalidModel, match=re.escape(str(path))):
        ModelStore(tmp_path).get("sonnet")
