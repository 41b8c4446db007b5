"""Reading `journalctl -o json` output for an agent's log on the nixos backend: every entry
shown, and what is not an entry said, not silently dropped."""

from __future__ import annotations

import json
import logging

import pytest

from hive_core.containers.nixos import parse_journal


def test_entries_are_read_and_lines_that_are_not_entries_are_counted_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = json.dumps({"__REALTIME_TIMESTAMP": "1796500000000000", "MESSAGE": "hello"})
    raw = json.dumps({"__REALTIME_TIMESTAMP": "1796500001000000", "MESSAGE": [104, 105]})
    bad = [b"not json", b'{"MESSAGE": "no stamp"}', b'{"__REALTIME_TIMESTAMP": "1e400"}']
    with caplog.at_level(logging.WARNING, logger="hive_core.containers.nixos"):
        entries = parse_journal(b"\n".join([good.encode(), *bad, raw.encode()]))
    assert [text.split(" ", 1)[1] for _, text in entries] == ["hello", "hi"]
    assert [stamp for stamp, _ in entries] == [1796500000000000, 1796500001000000]
    assert "skipped 3 journal lines" in caplog.text
