"""Web ports: the hash first, then the next free port, deterministically."""

from __future__ import annotations

from hive_core.ports import PORT_BASE, PORT_RANGE, agent_web_port, hashed_port


def test_a_free_hashed_port_is_the_agents_port() -> None:
    assert agent_web_port("alice", {hashed_port("bob")} - {hashed_port("alice")}) == hashed_port(
        "alice"
    )


def test_a_taken_port_moves_to_the_next_free_one_upwards() -> None:
    first = hashed_port("alice")
    taken = {first, first + 1} if first + 2 < PORT_BASE + PORT_RANGE else {first}
    got = agent_web_port("alice", taken)
    assert got not in taken
    assert got == (first + len(taken) - PORT_BASE) % PORT_RANGE + PORT_BASE
    assert agent_web_port("alice", taken) == got  # the same answer every time


def test_the_probe_wraps_around_the_end_of_the_range() -> None:
    first = hashed_port("alice")
    taken = set(range(first, PORT_BASE + PORT_RANGE))
    assert agent_web_port("alice", taken) == PORT_BASE


def test_a_full_range_has_no_port() -> None:
    assert agent_web_port("alice", set(range(PORT_BASE, PORT_BASE + PORT_RANGE))) is None


def test_thirty_eight_agents_all_get_distinct_ports() -> None:
    taken: set[int] = set()
    for i in range(38 * 10):
        port = agent_web_port(f"a{i}", taken)
        assert port is not None and port not in taken
        taken.add(port)


def test_a_moved_base_moves_the_whole_range() -> None:
    moved = agent_web_port("alice", (), 50000)
    assert moved == hashed_port("alice") - PORT_BASE + 50000
    assert agent_web_port("alice", set(range(50000, 50000 + PORT_RANGE)), 50000) is None
