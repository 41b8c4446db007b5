from __future__ import annotations

import asyncio
import math

import pytest

from hive_share import framing
from hive_share.framing import MAX_LINE, READER_LIMIT, FrameError, FrameTooLong


def _reader(*chunks: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=READER_LIMIT)
    for chunk in chunks:
        reader.feed_data(chunk)
    if eof:
        reader.feed_eof()
    return reader


def test_decode_returns_the_object_of_a_line() -> None:
    assert framing.decode(b'{"cmd":"send","to":"bob","n":1.5,"s":"\xc3\xa9"}') == {
        "cmd": "send",
        "to": "bob",
        "n": 1.5,
        "s": "é",
    }


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_decode_refuses_non_finite_constants(token: bytes) -> None:
    with pytest.raises(FrameError, match="non-finite"):
        framing.decode(b'{"wait_seconds":' + token + b"}")


@pytest.mark.parametrize("number", [b"1e400", b"-1e400"])
def test_decode_refuses_a_number_that_overflows_to_infinity(number: bytes) -> None:
    # json.loads turns an out-of-range number into float('inf') without calling
    # parse_constant, so a guard on the NaN/Infinity tokens alone lets it through.
    with pytest.raises(FrameError):
        framing.decode(b'{"wait_seconds":' + number + b"}")


@pytest.mark.parametrize(
    "line",
    [b"[]", b"[1,2]", b'"text"', b"1", b"null", b"true"],
)
def test_decode_refuses_json_that_is_not_an_object(line: bytes) -> None:
    with pytest.raises(FrameError, match="expected a JSON object"):
        framing.decode(line)


@pytest.mark.parametrize("line", [b'{"a":"\xff"}', b'{"a":"\xc3"}', b"\xed\xa0\x80"])
def test_decode_refuses_invalid_utf8(line: bytes) -> None:
    with pytest.raises(FrameError, match="UTF-8"):
        framing.decode(line)


@pytest.mark.parametrize("line", [b"", b"{", b'{"a":}', b"{'a':1}", b'{"a":1}{"b":2}', b"cmd"])
def test_decode_refuses_malformed_json(line: bytes) -> None:
    with pytest.raises(FrameError, match="malformed JSON"):
        framing.decode(line)


def test_decode_refuses_deeply_nested_json_without_crashing() -> None:
    with pytest.raises(FrameError):
        framing.decode(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_decode_refuses_a_line_over_the_limit() -> None:
    line = b'{"a":"' + b"x" * MAX_LINE + b'"}'
    with pytest.raises(FrameTooLong):
        framing.decode(line)


def test_decode_accepts_a_line_of_exactly_the_limit() -> None:
    line = b'{"a":"' + b"x" * (MAX_LINE - 8) + b'"}'
    assert len(line) == MAX_LINE
    assert len(framing.decode(line)["a"]) == MAX_LINE - 8


def test_frame_too_long_is_a_frame_error() -> None:
    assert issubclass(FrameTooLong, FrameError)


def test_encode_writes_one_compact_utf8_line() -> None:
    line = framing.encode({"body": "日本\nline", "n": 1})
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert line == '{"body":"日本\\nline","n":1}\n'.encode()
    assert framing.decode(line[:-1]) == {"body": "日本\nline", "n": 1}


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_encode_refuses_non_finite_numbers(value: float) -> None:
    with pytest.raises(ValueError):
        framing.encode({"x": value})


async def test_read_line_returns_each_line_then_none_at_a_clean_end() -> None:
    reader = _reader(b'{"a":1}\n{"b"', b":2}\n")
    assert await framing.read_line(reader) == b'{"a":1}'
    assert await framing.read_line(reader) == b'{"b":2}'
    assert await framing.read_line(reader) is None


async def test_read_line_waits_for_the_rest_of_a_line() -> None:
    reader = _reader(b'{"a"', eof=False)
    task = asyncio.create_task(framing.read_line(reader))
    reader.feed_data(b":1}\n")
    async with asyncio.timeout(5):
        assert await task == b'{"a":1}'


async def test_read_line_refuses_a_partial_line_at_end_of_stream() -> None:
    reader = _reader(b'{"a":1}\n{"b":')
    assert await framing.read_line(reader) == b'{"a":1}'
    with pytest.raises(FrameError, match="middle of a line") as info:
        await framing.read_line(reader)
    assert not isinstance(info.value, FrameTooLong)


async def test_read_line_accepts_a_line_of_exactly_the_limit() -> None:
    reader = _reader(b"x" * MAX_LINE + b"\n")
    line = await framing.read_line(reader)
    assert line is not None
    assert len(line) == MAX_LINE


async def test_read_line_refuses_a_line_over_one_mebibyte() -> None:
    reader = _reader(b"x" * (MAX_LINE + 1) + b"\n")
    with pytest.raises(FrameTooLong):
        await framing.read_line(reader)


async def test_read_line_refuses_an_endless_line_without_waiting_for_its_end() -> None:
    reader = _reader(b"x" * (2 * MAX_LINE), eof=False)
    async with asyncio.timeout(5):
        with pytest.raises(FrameTooLong):
            await framing.read_line(reader)


@pytest.mark.parametrize(
    "number",
    [b"9" * 5000, b"1" * 4301, b"9223372036854775808", b"-9223372036854775809", b"1" + b"0" * 19],
)
def test_decode_refuses_integers_outside_the_64_bit_range(number: bytes) -> None:
    with pytest.raises(FrameError, match="64-bit range"):
        framing.decode(b'{"id":' + number + b"}")


@pytest.mark.parametrize("number", [9223372036854775807, -9223372036854775808, 0, -1])
def test_decode_accepts_integers_inside_the_64_bit_range(number: int) -> None:
    assert framing.decode(b'{"id":%d}' % number) == {"id": number}
