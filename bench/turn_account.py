"""Where a trivial claude turn's time goes, phase by phase, on one clock.

`python -m bench.turn_account [--rounds N] [--quick] [--json PATH]`: 7 rounds (`--quick` 2)
after a warm-up round, each running in alternating order: hive (an operator `send` to `r0`
→ its harness's `turn_status` says the turn ended); replay (the argv, environment, directory
and niceness the harness gave its claude, captured on its first turn, run by the bench through
the same `setpriv` guard, reaching the harness's warm MCP server); replay0 (the same at
niceness 0); http (the bare command line with only the harness's MCP server, over HTTP as
the harness gives it); floor and bare (`claude_turn_mcp_floor_p50`'s run, a minimal stdio
server of the same tools, and its baseline's).

Wall-clock stamps (`time.time()`, bash's `$EPOCHREALTIME`) come from a bash wrapper named as
the claude binary in every mode, a proxy ("tap") the bench puts in front of hive-core's
`agent.sock` for `r0`, the floor server run under FLOOR_STAMPS, the fake API's script, the
harness's stored events and the stream-json lines the bench reads.
The per-phase medians go to stderr as a table, the totals to stdout as bench lines.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import real_turn, report
from bench.broker import BenchError, spawn_agents
from bench.daemon import Daemon, running_daemon
from bench.turn import describe_server
from hive_agent.claude import BUILTIN_TOOLS, CLAUDE_ENV, MAX_STREAM_LINE, death_guard
from hive_agent.model import DEFAULT_MODEL
from hive_share import live
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient, new_idempotency_key
from tests.fake_anthropic import FakeAnthropic, Reply, Seen, text

ROUNDS = 7
QUICK_ROUNDS = 2
WARMUP = 1
MODES = ("hive", "replay", "replay0", "http", "floor", "bare")
DIFFS = (("hive", "replay"), ("replay", "replay0"), ("replay0", "http"), ("http", "bare"))
"""Neighbouring modes: their differences, phase by phase, add up to hive − bare (floor, a
stdio server, is beside them: what the same tools cost over stdio)."""
AGENT = real_turn.AGENT
BOUND = real_turn.TURN_TIMEOUT
"""Bound on one run, one call, one tap's close."""
HEAD = 4096
"""Bytes of each line a tap keeps: a request's `cmd` / `method` and `id`, an answer's `id`."""

Stamps = dict[str, float]
BOUNDARIES = (
    ("start", "start: the send (hive), the spawn call"), ("sent", "send answered (Sent)"),
    ("slot_asked", "harness woke: turn_slot take"), ("slot_granted", "turn_slot granted"),
    ("turn_started", "turn_started event"), ("thinking", "thinking event"),
    ("spawn", "claude spawned (wrapper)"), ("mcp_up", "MCP server up (the floor)"),
    ("mcp_probe", "server/discover probe answered"), ("mcp_init", "handshake answered"),
    ("mcp_tools_asked", "tools/list asked"), ("mcp_tools", "tools/list answered"),
    ("init", "system/init read (hive: turn_slot started)"), ("api", "first API request read"),
    ("assistant", "assistant line read (hive: text event)"),
    ("mcp_stop", "MCP server stopped (the floor: SIGINT)"), ("exit", "claude exited (wrapper)"),
    ("reaped", "run returned (hive: token_usage event)"),
    ("loose_ends", "get_open_threads answered"), ("turn_ended", "turn_ended event"),
    ("idle", "idle event"), ("status", "turn_status answered at the bench"),
)  # fmt: skip
"""Each run's milestones in the order they come; a phase ends at one and starts at the one
before it that the run has."""

WRAPPER = """#!/bin/bash
printf 'spawn %s\\n' "$EPOCHREALTIME" >> "$BENCH_TURN_LOG"
if [[ $1 == -p && -n $BENCH_TURN_CAPTURE && ! -e $BENCH_TURN_CAPTURE.env ]]; then
    read -r stat < /proc/$$/stat
    printf '%s\\0' "$stat" "$PWD" "$@" > "$BENCH_TURN_CAPTURE.argv"
    env -0 > "$BENCH_TURN_CAPTURE.env"
fi
@CLAUDE@ "$@"
status=$?
printf 'exit %s\\n' "$EPOCHREALTIME" >> "$BENCH_TURN_LOG"
exit $status
"""
MCP_ANSWERS = {"server/discover": "mcp_probe", "initialize": "mcp_init", "tools/list": "mcp_tools"}
"""The MCP answers that are milestones: the first `server/discover` is the CLI's probe (a
server that knows only `initialize` refuses it); a second one is the handshake proper."""
FLOOR_STAMPS = f"""
import json, os, signal, sys, time
floor, log = sys.argv.pop(1), open(sys.argv.pop(), "a", buffering=1)
note = lambda what: log.write(f"{{what}} {{time.time()!r}}\\n")
note("mcp_up")
def stop(*_):
    note("mcp_stop"); signal.signal(signal.SIGINT, signal.SIG_DFL); os.kill(os.getpid(), 2)
def lines(stdin=sys.stdin):
    for line in stdin:
        Out.asked = json.loads(line).get("method")
        if Out.asked == "tools/list":
            note("mcp_tools_asked")
        yield line
    note("mcp_stop")
class Out:
    def write(self, s): self.s = s; sys.__stdout__.write(s)
    def flush(self):
        sys.__stdout__.flush()
        if '"result"' in self.s or self.asked == "server/discover":
            note({MCP_ANSWERS!r}.get(self.asked, "-"))
signal.signal(signal.SIGINT, stop); sys.stdin, sys.stdout = lines(), Out()
exec(compile(open(floor).read(), floor, "exec"), {{"__name__": "__main__"}})
"""
"""Run as `python -I -S -c FLOOR_STAMPS mcp_floor.py DESCRIPTION LOG`: the floor server,
noting in LOG its start, the milestones of its answers and its stop (SIGINT, or stdin
closed)."""

_CMD = re.compile(rb'"cmd"\s*:\s*"([^"]+)"')
_ACTION = re.compile(rb'"action"\s*:\s*"([^"]+)"')
HARNESS_CALLS = {("turn_slot", "take"): ("slot_asked", "slot_granted"),
                 ("turn_slot", "started"): ("init", ""),
                 ("get_open_threads", ""): ("", "loose_ends")}  # fmt: skip
"""The harness's calls on hive-core a turn makes: what its asking and its answer mark."""
EVENTS = {"turn_started": "turn_started", "thinking": "thinking", "text": "assistant",
          "token_usage_changed": "reaped", "turn_ended": "turn_ended", "idle": "idle"}  # fmt: skip
"""The milestone each harness event (or turn state) marks."""


class Tap:
    """A unix-socket proxy in place of `path` (the socket moved aside to `*.real`): every byte
    passed on as it comes, and noted: each accept, when each line ends (`in` toward the
    server, `out` back) and when a client closes."""

    def __init__(self, path: Path) -> None:
        self.path, self.real = path, path.with_name(path.name + ".real")
        self.lines: list[tuple[float, int, str, bytes]] = []
        self.accepts: list[float] = []
        self.closes: list[float] = []
        self._ids = itertools.count()
        self._open: dict[asyncio.Task[None], list[asyncio.StreamWriter]] = {}

    async def __aenter__(self) -> Tap:
        os.rename(self.path, self.real)
        self._server = await asyncio.start_unix_server(self._connection, str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for writer in itertools.chain(*self._open.values()):
            writer.close()  # its reads end: the connection's task returns
        async with asyncio.timeout(BOUND):
            await asyncio.gather(*self._open, return_exceptions=True)
        os.replace(self.real, self.path)

    def clear(self) -> None:
        for noted in (self.lines, self.accepts, self.closes):
            noted.clear()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepts.append(time.time())
        task, n = asyncio.current_task(), next(self._ids)
        assert task is not None
        self._open[task] = [writer]
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(str(self.real))
            self._open[task].append(up_writer)
            await asyncio.gather(
                self._pump(reader, up_writer, n, "in"), self._pump(up_reader, writer, n, "out")
            )
        except OSError:  # a peer gone mid-write: the run's own checks tell
            pass
        finally:
            for each in self._open.pop(task):
                each.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, way: str
    ) -> None:
        head = b""
        while chunk := await reader.read(256 * 1024):
            now = time.time()
            writer.write(chunk)
            start = 0
            while (nl := chunk.find(b"\n", start)) >= 0:
                self.lines.append((now, n, way, (head + chunk[start:nl])[:HEAD]))
                head, start = b"", nl + 1
            head += chunk[start : start + HEAD - len(head)]
            await writer.drain()
        if way == "in":
            self.closes.append(time.time())
        if not writer.is_closing() and writer.can_write_eof():
            writer.write_eof()

    def harness_calls(self) -> Stamps:
        """The harness's turn-slot take (asked, granted), its `started` (it read claude's
        `system/init`) and its open-threads count after the run: each request paired with
        the next answer on its connection (`HiveClient` makes one call at a time)."""
        got: Stamps = {}
        for n in sorted({n for _, n, _, _ in self.lines}):
            asked = [(t, head) for t, m, way, head in self.lines if m == n and way == "in"]
            answers = [t for t, m, way, _ in self.lines if m == n and way == "out"]
            for (t, head), answered in itertools.zip_longest(asked, answers[: len(asked)]):
                keys = HARNESS_CALLS.get((_group(_CMD, head), _group(_ACTION, head)), ("", ""))
                for key, when in zip(keys, (t, answered), strict=True):
                    if key and when is not None:
                        got.setdefault(key, when)
        return got


def _group(pattern: re.Pattern[bytes], head: bytes) -> str:
    match = pattern.search(head)
    return match.group(1).decode() if match else ""


def _read_log(log: Path) -> Stamps:
    """The milestones the wrapper and the floor server noted in `log`, which is emptied."""
    got: Stamps = {}
    for word, t in (line.split() for line in log.read_text().splitlines()):
        got.setdefault(word, float(t))
    log.write_text("")
    return got


class Fake:
    """The fake API's script: answers `ok`, noting when each request was read."""

    def __init__(self) -> None:
        self.requests: list[tuple[float, Seen]] = []

    def script(self, seen: Seen) -> Reply:
        self.requests.append((time.time(), seen))
        return text(real_turn.REPLY)

    def take(self) -> Stamps:
        """The first request's time, how many came and its body's size; cleared."""
        if not self.requests:
            return {}
        (first, seen), count = self.requests[0], len(self.requests)
        self.requests.clear()
        return {"api": first, "_requests": count, "_body_bytes": len(seen.raw)}


async def _cli_run(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path
) -> tuple[Stamps, dict[str, Any]]:
    """One claude run by the bench, from the spawn call to its reaping; and its
    `system/init` line."""
    stamps: Stamps = {"start": time.time()}
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True, limit=MAX_STREAM_LINE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    lines: dict[str, dict[str, Any]] = {}
    try:
        async with asyncio.timeout(BOUND):
            err = asyncio.create_task(proc.stderr.read())
            async for line in proc.stdout:
                now, data = time.time(), json.loads(line)
                kind = "init" if data.get("subtype") == "init" else str(data.get("type"))
                if kind in ("init", "assistant", "result") and kind not in lines:
                    stamps[kind], lines[kind] = now, data
            await proc.wait()
            stamps["reaped"] = time.time()
            stderr = await err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    result = lines.get("result", {})
    if proc.returncode != 0 or result.get("result") != real_turn.REPLY or result.get("is_error"):
        raise BenchError(f"{argv[0]}: exit {proc.returncode}, {result}: {stderr[-500:]!r}")
    return stamps, lines["init"]


class Account:
    """One account's hive, taps and fake API, the commands of the modes the bench runs
    itself, and every run's stamps."""

    def __init__(self, daemon: Daemon, root: Path, fake: Fake, env: Mapping[str, str]) -> None:
        self.daemon, self.root, self.fake, self.env = daemon, root, fake, env
        self.runs: dict[str, list[Stamps]] = {mode: [] for mode in MODES}
        self.commands: dict[str, tuple[list[str], Mapping[str, str], Path]] = {}
        self.agent_tap = Tap(daemon.agent_socket(AGENT))
        self.seq = self.nice = 0

    async def prepare(self, wrapper: Path, harness: HiveClient) -> None:
        """After the first turn: the floor's config and the command the harness ran."""
        described = self.root / "mcp-floor.json"
        mcp_socket = self.daemon.harness_socket(AGENT).with_name("mcp.sock")
        described.write_text(json.dumps(await describe_server(mcp_socket)))
        args = ["-I", "-S", "-c", FLOOR_STAMPS, str(real_turn.FLOOR_SERVER), str(described)]
        server = {"command": sys.executable, "args": [*args, str(self.root / "floor.log")]}
        config = self.root / "mcp-floor-config.json"
        config.write_text(json.dumps({"mcpServers": {"hyperhive": server}}))
        bare = [str(wrapper), "-p", "hi", "--output-format", "stream-json", "--verbose",
                "--model", DEFAULT_MODEL, "--tools", ",".join(BUILTIN_TOOLS)]  # fmt: skip
        floor = [*bare, "--mcp-config", str(config), "--strict-mcp-config"]
        self.commands |= {"bare": (bare, self.env, self.root / "cwd")}
        self.commands |= {"floor": (floor, self.env, self.root / "cwd")}
        capture = self.root / "capture"
        stat, cwd, *argv = capture.with_suffix(".argv").read_text().split("\0")[:-1]
        self.nice = int(stat.rpartition(")")[2].split()[16])
        pairs = capture.with_suffix(".env").read_text().split("\0")
        env = dict(p.split("=", 1) for p in pairs if "=" in p and "BENCH_TURN_CAPTURE" not in p)
        guarded = [*death_guard(), str(wrapper), *argv]
        nice = [shutil.which("nice") or "nice", "-n", str(self.nice)] if self.nice else []
        http = _only_ours(argv[argv.index("--mcp-config") + 1], self.root / "mcp-http.json")
        self.commands |= {"http": ([*bare, "--mcp-config", str(http), "--strict-mcp-config"],
                                   self.env, self.root / "cwd")}  # fmt: skip
        self.commands |= {"replay": ([*nice, *guarded], env, Path(cwd))}
        self.commands |= {"replay0": (guarded, env, Path(cwd))}
        got = await harness.call(rq.Events(cmd="events", limit=1000), rs.TurnEvents)
        self.seq = max((e.seq for e in got.events), default=0)

    async def cli(self, mode: str) -> Stamps:
        """One run of `mode`'s command, with its wrapper's, server's and tap's stamps."""
        argv, env, cwd = self.commands[mode]
        log = self.root / f"{mode}.log"
        stamps, init = await _cli_run(argv, {**env, "BENCH_TURN_LOG": str(log)}, cwd)
        stamps |= _read_log(log) | self.fake.take()
        servers = {s.get("name"): s.get("status") for s in init.get("mcp_servers", [])}
        if mode != "bare" and servers.get("hyperhive") != "connected":
            raise BenchError(f"{mode}: the MCP server did not connect: {servers}")
        return stamps

    async def hive(self, operator: HiveClient, harness: HiveClient, n: int) -> Stamps:
        """Operator `send` → `turn_status` says turn `n` ended; with the harness's events."""
        self.agent_tap.clear()
        body = f"bench turn {n}"
        send = rq.Send(cmd="send", to=AGENT, body=body, idempotency_key=new_idempotency_key())
        stamps: Stamps = {"start": time.time()}
        async with asyncio.timeout(BOUND + 5):
            await operator.call(send, rs.Sent)
            stamps["sent"] = time.time()
            status = rq.TurnStatus(cmd="turn_status", after_turns=n, wait_seconds=BOUND)
            state = await harness.call(status, rs.HarnessState)
            stamps["status"] = time.time()
            if state.turns_run < n or state.last_result != "success":
                raise BenchError(f"turn {n}: {state.turns_run} run, last {state.last_result}")
            asked = rq.Events(cmd="events", after=self.seq, limit=1000)
            got = await harness.call(asked, rs.TurnEvents)
        for row in got.events:
            self.seq, event = max(self.seq, row.seq), row.event
            now = event.state if isinstance(event, live.TurnStateChanged) else ""
            ended = now != "idle" or "turn_ended" in stamps  # idle: after turn_ended
            if key := EVENTS.get(now if now and ended else str(event.kind)):
                stamps.setdefault(key, row.ts)
        stamps |= _read_log(self.root / "hive.log") | self.fake.take()
        return stamps | self.agent_tap.harness_calls()


async def _rounds(account: Account, wrapper: Path, rounds: int) -> None:
    daemon = account.daemon
    async with asyncio.timeout((WARMUP + rounds + 1) * len(MODES) * BOUND):
        await spawn_agents(daemon.host_socket, [AGENT])
        async with (
            HiveClient(daemon.host_socket) as operator,
            HiveClient(daemon.harness_socket(AGENT)) as harness,
        ):
            await account.hive(operator, harness, 1)  # the harness's first: the SDK, login
            await account.prepare(wrapper, harness)
            async with account.agent_tap:
                for r in range(WARMUP + rounds):
                    got = {
                        m: await (
                            account.hive(operator, harness, r + 2)
                            if m == "hive"
                            else account.cli(m)
                        )
                        for m in (MODES if r % 2 == 0 else MODES[::-1])
                    }
                    totals = ", ".join(f"{m} {_total(got[m]) * 1e3:.0f}" for m in MODES)
                    warm = " (warm-up)" if r < WARMUP else ""
                    report.note(f"round {r}{warm}: {totals} ms; load {os.getloadavg()[0]:.2f}")
                    if r >= WARMUP:
                        for mode in MODES:
                            account.runs[mode].append(got[mode])


def _only_ours(config: str, into: Path) -> Path:
    """A copy of the MCP config at `config` with only our server (as the harness gave it)."""
    ours = json.loads(Path(config).read_text())["mcpServers"]["hyperhive"]
    into.write_text(json.dumps({"mcpServers": {"hyperhive": ours}}))
    into.chmod(0o600)  # it holds the harness's bearer secret
    return into


def _phases(stamps: Stamps) -> dict[str, float]:
    """Seconds from each milestone the run has to its next, by the later one."""
    keys = [key for key, _ in BOUNDARIES if key in stamps]
    return {b: stamps[b] - stamps[a] for a, b in itertools.pairwise(keys)}


def _total(stamps: Stamps) -> float:
    return sum(_phases(stamps).values())


def _median(runs: list[Stamps], of: Callable[[Stamps], float]) -> float:
    return statistics.median(map(of, runs))


def table(runs: Mapping[str, list[Stamps]]) -> list[str]:
    """Per phase, each mode's median (ms; 0 where a run lacks the milestone, its time then
    falls in its next phase) and the differences of neighbouring modes, as markdown rows."""
    rows = [
        (label, {m: statistics.median(_phases(s).get(key, 0.0) for s in runs[m]) for m in MODES})
        for key, label in BOUNDARIES[1:]
    ]
    rows.append(("sum of the medians", {m: sum(cells[m] for _, cells in rows) for m in MODES}))
    totals = {m: _median(runs[m], _total) for m in MODES}
    head = ["phase (ends at)", *MODES, *(f"{a}−{b}" for a, b in DIFFS)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, cells in [*rows, ("median of the totals", totals)]:
        ms = [f"{cells[m] * 1e3:.1f}" for m in MODES]
        ms += [f"{(cells[a] - cells[b]) * 1e3:+.1f}" for a, b in DIFFS]
        if any(cells.values()):
            lines.append(f"| {label} | " + " | ".join(ms) + " |")
    return lines


def emit(runs: Mapping[str, list[Stamps]]) -> None:
    """The table and each mode's range to stderr, then the totals as bench lines."""
    for line in table(runs):
        report.note(line)
    med: dict[str, float] = {}
    for mode in MODES:
        got, med[mode] = sorted(_total(s) for s in runs[mode]), _median(runs[mode], _total)
        kib = _median(runs[mode], lambda s: s.get("_body_bytes", 0)) / 1024
        report.note(f"{mode}: {med[mode]:.3f} s [{got[0]:.3f}–{got[-1]:.3f}], {kib:.1f} KiB sent")
    pairs = (("hive", "bare"), ("http", "bare"), ("floor", "bare"), *DIFFS[:3], ("floor", "http"))
    for value, baseline in pairs:
        over = "" if baseline == "bare" else f"_over_{baseline}"
        report.emit(report.latency(f"turn_account_{value}{over}_p50", med[value], med[baseline]))


def run(rounds: int) -> dict[str, list[Stamps]] | None:
    """`rounds` rounds (after a warm-up) of every mode; None (with a note) without the CLI."""
    claude = real_turn.claude_bin()
    if claude is None:
        report.note(f"skipped: no Claude Code CLI (${real_turn.CLAUDE_BIN_ENV}, ./dev test)")
        return None
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="hb"))
    try:
        for sub in ("home", "cwd"):
            (root / sub).mkdir()
        wrapper = root / "claude"
        wrapper.write_text(WRAPPER.replace("@CLAUDE@", shlex.quote(claude)))
        wrapper.chmod(0o755)
        fake = Fake()
        with FakeAnthropic(fake.script) as api:
            env = real_turn.hive_env(api, root / "home", str(wrapper))
            log, capture = str(root / "hive.log"), str(root / "capture")
            hive_env = {**env, "BENCH_TURN_LOG": log, "BENCH_TURN_CAPTURE": capture}
            bare_env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
            bare_env.update(env, **CLAUDE_ENV, CLAUDE_CONFIG_DIR=str(root / "claude-config"))
            with running_daemon(hive_env) as daemon:
                account = Account(daemon, root, fake, bare_env)
                asyncio.run(_rounds(account, wrapper, rounds))
        report.note(f"the harness runs claude at niceness {account.nice}; replay0 at 0")
        return account.runs
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.turn_account", description=__doc__)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds")
    parser.add_argument("--json", type=Path, help="write every run's stamps here")
    args = parser.parse_args(argv)
    runs = run(QUICK_ROUNDS if args.quick else args.rounds)
    if runs is None:
        return 0
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    emit(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
