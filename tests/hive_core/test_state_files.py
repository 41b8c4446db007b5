"""Reading `/state/...` files of one agent: only regular files inside its own state dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hive_core.errors import InvalidRequest
from hive_core.state_files import MAX_PAYLOAD, parse_state_path, read_state_file

SECRET = "outside secret"

REFUSED = [
    "/etc/passwd",
    "/state",
    "/state/",
    "/state/../x",
    "/state/a/../b",
    "/state//x",
    "/state/./x",
    "/state/x/",
    "/state/x/.",
    "/state/x/..",
    "state/x",
    "state",
    "",
    "/",
    "//state/x",
    "/statex",
    "/state-x/y",
    "/proc/self/environ",
    "/proc/self/root/state/x",
    "\x00",
    "/state/x\x00",
    "/state/x\x00y",
    "/state/../../bob/state/x",
    "/state/../../../etc/passwd",
]


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    return tmp_path / "agents"


@pytest.fixture
def state(agents_dir: Path) -> Path:
    """alice's state dir, which she sees as /state."""
    path = agents_dir / "alice" / "state"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside every state dir holding a file alice must never see."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret").write_text(SECRET)
    return path


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records every `os.read` the module makes (and still performs it)."""
    calls: list[int] = []
    real_read = os.read

    def spy(fd: int, n: int) -> bytes:
        calls.append(fd)
        return real_read(fd, n)

    monkeypatch.setattr("hive_core.state_files.os.read", spy)
    return calls


# --- parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("/state/x", ("x",)),
        ("/state/notes/todo.md", ("notes", "todo.md")),
        ("/state/a/b/c/d", ("a", "b", "c", "d")),
        ("/state/.hidden", (".hidden",)),
        ("/state/..x", ("..x",)),
        ("/state/x..", ("x..",)),
        ("/state/with space", ("with space",)),
        ("/state/state", ("state",)),
        ("/state/café", ("café",)),
    ],
)
def test_accepted_paths_split_into_their_components(path: str, parts: tuple[str, ...]) -> None:
    assert parse_state_path(path) == parts


@pytest.mark.parametrize("path", REFUSED)
def test_refused_paths(path: str) -> None:
    with pytest.raises(InvalidRequest, match="file_path"):
        parse_state_path(path)


@pytest.mark.parametrize("path", REFUSED)
def test_reading_a_refused_path_raises_before_touching_disk(
    agents_dir: Path, state: Path, reads: list[int], path: str
) -> None:
    with pytest.raises(InvalidRequest, match="file_path"):
        read_state_file(agents_dir, "alice", path)
    assert reads == []


def test_the_error_quotes_a_long_path_only_in_part() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_state_path("/etc/" + "x" * 5000)
    assert len(info.value.message) < 200


# --- reading ------------------------------------------------------------------------


def test_a_file_in_the_state_dir_is_read(agents_dir: Path, state: Path) -> None:
    (state / "notes").mkdir()
    (state / "notes" / "todo.md").write_text("- ship it\n")
    assert read_state_file(agents_dir, "alice", "/state/notes/todo.md") == (
        "- ship it\n",
        "/state/notes/todo.md: 10 bytes",
    )


def test_an_empty_file_is_read_as_empty(agents_dir: Path, state: Path) -> None:
    (state / "empty").write_bytes(b"")
    assert read_state_file(agents_dir, "alice", "/state/empty") == ("", "/state/empty: 0 bytes")


def test_bytes_that_are_not_utf8_are_replaced(agents_dir: Path, state: Path) -> None:
    (state / "bin").write_bytes(b"ok\xff\xfe")
    content, note = read_state_file(agents_dir, "alice", "/state/bin")
    assert content == "ok\ufffd\ufffd"
    assert note == "/state/bin: 4 bytes"


def test_exactly_the_limit_is_read(agents_dir: Path, state: Path) -> None:
    data = b"a" * (MAX_PAYLOAD - 1) + b"\n"
    (state / "big").write_bytes(data)
    content, note = read_state_file(agents_dir, "alice", "/state/big")
    assert content == data.decode()
    assert note == f"/state/big: {MAX_PAYLOAD} bytes"
    assert MAX_PAYLOAD == 64 * 1024


def test_one_byte_over_the_limit_is_not_attached(
    agents_dir: Path, state: Path, reads: list[int]
) -> None:
    (state / "big").write_bytes(b"a" * (MAX_PAYLOAD + 1))
    content, note = read_state_file(agents_dir, "alice", "/state/big")
    assert content is None
    assert "at most" in note
    assert str(MAX_PAYLOAD + 1) in note
    assert reads == []


@pytest.mark.parametrize("path", ["/state/nope", "/state/dir/nope", "/state/nodir/x"])
def test_a_missing_file_is_noted(agents_dir: Path, state: Path, path: str) -> None:
    (state / "dir").mkdir()
    content, note = read_state_file(agents_dir, "alice", path)
    assert content is None
    assert note == f"{path} did not exist when the reminder fired"


def test_an_agent_without_a_state_dir_gets_a_note(agents_dir: Path, state: Path) -> None:
    content, note = read_state_file(agents_dir, "carol", "/state/x")
    assert content is None
    assert "did not exist" in note


@pytest.mark.timeout(5)
def test_a_fifo_is_not_a_regular_file_and_does_not_block(
    agents_dir: Path, state: Path, reads: list[int]
) -> None:
    os.mkfifo(state / "pipe")
    assert read_state_file(agents_dir, "alice", "/state/pipe") == (
        None,
        "/state/pipe is not a regular file",
    )
    assert reads == []


def test_a_directory_is_not_a_regular_file(agents_dir: Path, state: Path) -> None:
    (state / "sub").mkdir()
    assert read_state_file(agents_dir, "alice", "/state/sub") == (
        None,
        "/state/sub is not a regular file",
    )


def test_a_file_used_as_a_directory_is_refused(agents_dir: Path, state: Path) -> None:
    (state / "plain").write_text("x")
    content, note = read_state_file(agents_dir, "alice", "/state/plain/x")
    assert content is None
    assert "non-directory" in note


# --- symlinks are never followed -----------------------------------------------------


def _assert_symlink_refused(result: tuple[str | None, str], reads: list[int]) -> None:
    content, note = result
    assert content is None
    assert "symlink" in note
    assert "not followed" in note
    assert SECRET not in note
    assert reads == [], "something was read through a symlink"


def test_a_file_symlink_to_outside_is_not_followed(
    agents_dir: Path, state: Path, outside: Path, reads: list[int]
) -> None:
    (state / "leak").symlink_to(outside / "secret")
    _assert_symlink_refused(read_state_file(agents_dir, "alice", "/state/leak"), reads)


def test_a_relative_file_symlink_to_outside_is_not_followed(
    agents_dir: Path, state: Path, outside: Path, reads: list[int]
) -> None:
    (state / "leak").symlink_to(Path("../../../outside/secret"))
    assert (state / "leak").read_text() == SECRET  # the link does lead there
    _assert_symlink_refused(read_state_file(agents_dir, "alice", "/state/leak"), reads)


def test_a_directory_symlink_to_outside_is_not_followed(
    agents_dir: Path, state: Path, outside: Path, reads: list[int]
) -> None:
    (state / "out").symlink_to(outside, target_is_directory=True)
    _assert_symlink_refused(read_state_file(agents_dir, "alice", "/state/out/secret"), reads)


def test_a_nested_directory_symlink_is_not_followed(
    agents_dir: Path, state: Path, outside: Path, reads: list[int]
) -> None:
    (state / "a").mkdir()
    (state / "a" / "b").symlink_to(outside, target_is_directory=True)
    _assert_symlink_refused(read_state_file(agents_dir, "alice", "/state/a/b/secret"), reads)


def test_a_symlink_within_the_state_dir_is_not_followed_either(
    agents_dir: Path, state: Path, reads: list[int]
) -> None:
    (state / "real").write_text("fine")
    (state / "alias").symlink_to(state / "real")
    _assert_symlink_refused(read_state_file(agents_dir, "alice", "/state/alias"), reads)


def test_a_symlink_to_another_agents_state_is_not_followed(
    agents_dir: Path, state: Path, reads: list[int]
) -> None:
    bob_state = agents_dir / "bob" / "state"
    bob_state.mkdir(parents=True)
    (bob_state / "x").write_text(SECRET)
    (state / "peer").symlink_to(Path("../../bob/state"), target_is_directory=True)
    _assert_symlink_refused(read_state_file(agents_dir, "alice", "/state/peer/x"), reads)


def test_an_agent_dir_that_is_a_symlink_is_refused(
    agents_dir: Path, tmp_path: Path, reads: list[int]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "state").mkdir(parents=True)
    (elsewhere / "state" / "x").write_text(SECRET)
    agents_dir.mkdir()
    (agents_dir / "alice").symlink_to(elsewhere, target_is_directory=True)
    _assert_symlink_refused(read_state_file(agents_dir, "alice", "/state/x"), reads)


def test_a_state_dir_that_is_a_symlink_is_refused(
    agents_dir: Path, outside: Path, reads: list[int]
) -> None:
    (agents_dir / "alice").mkdir(parents=True)
    (agents_dir / "alice" / "state").symlink_to(outside, target_is_directory=True)
    _assert_symlink_refused(read_state_file(agents_dir, "alice", "/state/secret"), reads)


def test_another_agents_files_are_reached_only_as_that_agent(agents_dir: Path, state: Path) -> None:
    bob_state = agents_dir / "bob" / "state"
    bob_state.mkdir(parents=True)
    (bob_state / "x").write_text("bob's")
    with pytest.raises(InvalidRequest):
        read_state_file(agents_dir, "alice", "/state/../../bob/state/x")
    content, _ = read_state_file(agents_dir, "alice", "/state/x")
    assert content is None
    assert read_state_file(agents_dir, "bob", "/state/x")[0] == "bob's"


# --- resources ----------------------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_no_file_descriptor_is_left_open(agents_dir: Path, state: Path, outside: Path) -> None:
    (state / "ok").write_text("fine")
    (state / "big").write_bytes(b"a" * (MAX_PAYLOAD + 1))
    (state / "leak").symlink_to(outside / "secret")
    (state / "sub").mkdir()
    os.mkfifo(state / "pipe")
    paths = ["/state/ok", "/state/big", "/state/leak", "/state/sub", "/state/pipe", "/state/no"]
    before = _open_fds()
    for _ in range(3):
        for path in paths:
            read_state_file(agents_dir, "alice", path)
    assert _open_fds() == before


def test_a_hard_link_to_another_agents_file_is_not_read(
    agents_dir: Path, state: Path, outside: Path
) -> None:
    os.link(outside / "secret", state / "leak")
    content, note = read_state_file(agents_dir, "alice", "/state/leak")
    assert content is None
    assert "2 hard links" in note
    assert SECRET not in note


def test_a_file_with_one_link_is_read(agents_dir: Path, state: Path) -> None:
    (state / "mine").write_text("mine")
    assert read_state_file(agents_dir, "alice", "/state/mine")[0] == "mine"
