"""The turn loop: inbox items wake a claude turn; its results become events and stats.

Items are acknowledged to hive-core only after their turn ended in a way that
will not be retried, so a crash or an API outage never loses them; the ack rides
on the next `recv` (or, when the harness stops, goes alone). A cancel ends the
turn: items its model received count as handled (and the next turn is told of
the cancel), items it never received stay queued for the next turn. A running claude
is interrupted by signals (so it ends with its own `aborted` result); the turn's other
waits (the MCP host's start, the login probe, a retry's backoff) run in a cancel scope
that the cancel cancels.

`Harness` owns the turn state, the controls and the loop; beside it: the waits and
backoffs (`retry.py`), a turn's claude runs with their compactions (`claude_runs.py`),
what each run is built from (`invocation.py`), what a turn leaves behind
(`turn_record.py`), and what hive-core hears of the harness (`reports.py`; a turn that
looks stuck, `stuck_watch.py`; what each turn cost, `usage_report.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence

import anyio
import anyio.abc

from hive_agent import invocation, login, retry, turn_record
from hive_agent.admission import Place
from hive_agent.classify import RETRYABLE
from hive_agent.claude import ClaudeProcess, RunOutcome
from hive_agent.claude_runs import ClaudeRuns
from hive_agent.history import EventHistory
from hive_agent.mcp_host import McpHost
from hive_agent.model import InvalidModel, ModelStore
from hive_agent.reports import LoginReporter, StateReport, StateReporter
from hive_agent.settings import HarnessSettings
from hive_agent.stuck_watch import StuckWatch
from hive_agent.turn_record import TurnResult, TurnStart
from hive_agent.turn_stats import TurnStats
from hive_agent.usage_report import UsageReporter
from hive_agent.wake import render_wake
from hive_share import agent_config, live
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import ClientError, HiveClient
from hive_share.live import LiveEvent, ResultKind, TurnState
from hive_share.models import LoginReport, LoginStatus, Message, ModelSource

logger = logging.getLogger(__name__)

RECV_WAIT = 180.0
"""Seconds one `recv` waits for items."""
STATUS_FILE = "hyperhive-status"
"""The agent's own one-line status, as its `set_status` tool last wrote it."""
ACK_MAX = 1000
"""Ids one `recv` or `ack` takes."""


class Harness:
    """One agent's harness: turn state, model, login, and the loop that runs turns.

    What it starts besides the loop (the MCP host and its sessions, the reports to
    hive-core, the status events of the agent's own tool) are tasks of `tasks`, the
    harness's task group."""

    def __init__(
        self,
        settings: HarnessSettings,
        env: Mapping[str, str],
        history: EventHistory,
        stats: TurnStats,
        tasks: anyio.abc.TaskGroup,
    ) -> None:
        self.settings = settings
        self.env = dict(env)
        self.history = history
        self.stats = stats
        self._tasks = tasks
        self.models = ModelStore(settings.state)
        self.mcp = McpHost(
            settings.harness_socket.with_name("mcp.sock"),
            settings.role,
            settings.socket,
            self._status_from_tool,
            tasks,
        )
        self.state: TurnState = "idle"
        self.new_session_next = False
        self.compact_next = False
        self._login = LoginReporter(
            settings.socket, self.emit, lambda: login.credentials_expiry(self.login_env())
        )
        self.turn_id: str | None = None
        self.turns_run = 0
        self.busy = False
        """True from the moment items arrive until they are acknowledged."""
        self.last_result: ResultKind | None = None
        self.last_turn_id: str | None = None
        self._changed = asyncio.Condition()
        """Notified whenever the turn state or the turn count changes."""
        self._cancel_asked = False
        """Set by `cancel()` while items are being worked on; ends the current turn."""
        self._interruptible: anyio.CancelScope | None = None
        """The scope of the turn's wait under way, which a cancel cancels."""
        self.watch = StuckWatch(
            settings.socket,
            tasks,
            lambda signals: tasks.start_soon(self.emit, live.StuckChanged(signals=signals)),
        )
        """The running turn's stuck signals, and the limits hive-core set for them."""
        self.usage = UsageReporter(settings.socket, stats, tasks)
        """What each turn cost, sent to hive-core until it has it."""
        self._runs = ClaudeRuns(
            settings, self.env, self.mcp, lambda: self._cancel_asked,
            self.emit, self._set_state, self._login.report, self.watch.spent, self._claude_up,
        )  # fmt: skip
        self._place: Place | None = None
        """The running turn's place among the turns the hive runs at once (turn admission)."""
        self._waiting_to_retry = False
        """True while a failed turn's items wait out the backoff before their retry."""
        self._cancelled: list[Message] = []
        """The items of the last turn the operator cancelled after its model received them:
        the next prompts name them until the model of a turn that is not retried received one."""
        self._states = StateReporter(settings.socket, self._state_report, tasks)

    @property
    def login(self) -> LoginStatus:
        """The login state hive-core last heard of from here."""
        return self._login.state

    @property
    def current(self) -> ClaudeProcess | None:
        """The claude process running now, if any."""
        return self._runs.current

    # -- events -------------------------------------------------------------

    async def emit(self, event: LiveEvent) -> None:
        self.watch.saw(event)
        await self.history.publish(event, self.turn_id)
        if isinstance(event, live.Note):
            logger.info("note: %s", event.text[:500])
        if isinstance(event, live.TurnStateChanged) and event.state != self.state:
            async with self._changed:  # states reported by the stream (tool, compacting)
                self.state = event.state
                self._changed.notify_all()
            self._states.report()

    async def _set_state(self, state: TurnState) -> None:
        if state != self.state:
            async with self._changed:
                self.state = state
                self._changed.notify_all()
            await self.emit(live.TurnStateChanged(state=state))
            self._states.report()

    def _state_report(self) -> StateReport:
        """What hive-core hears (the dashboard's chip): the turn state, the model and where
        it comes from."""
        return (self.state, *self._model_and_source())

    def _model_and_source(self) -> tuple[str | None, ModelSource | None]:
        """The next turn's model and where it comes from; (None, None) when the model file
        or agent.toml is invalid (the turn says why)."""
        try:
            default = self.load_config().model
            return self.models.get(default), self.models.source(default)
        except (agent_config.ConfigError, InvalidModel):
            return None, None

    def model_source(self) -> ModelSource | None:
        """Where the next turn's model comes from (`override`, `agent.toml`, `default`)."""
        return self._model_and_source()[1]

    def _status_from_tool(self, status: str) -> None:
        (self.settings.state / STATUS_FILE).write_text(status + "\n", encoding="utf-8")
        self._tasks.start_soon(self.emit, live.StatusChanged(status=status))

    # -- controls (harness socket) ------------------------------------------

    async def cancel(self, *, stopping: bool = False) -> str:
        """Interrupt the running turn; `stopping` kills claude at once instead of SIGINT."""
        if not self.busy:
            return "no turn is running"
        self._cancel_asked = True
        if self._interruptible is not None:
            self._interruptible.cancel()
        if self._waiting_to_retry:
            return "cancelled the retry: its messages stay queued for the next turn"
        if self.state == "waiting":
            return (
                "the turn had not started (it waited for a place to run): its messages stay queued"
            )
        if self.current is not None:
            if stopping:
                self.current.kill()
            else:
                self.current.cancel()
        await self._set_state("cancelling")
        return "cancelling the running turn"

    def request_new_session(self) -> str:
        self.new_session_next = True
        return "the next turn starts a new session"

    def request_compact(self) -> str:
        self.compact_next = True
        return "the session is compacted before the next turn's prompt"

    async def set_model(self, model: str) -> str:
        self.models.set(model)
        await self.emit(live.ModelChanged(model=model))
        self._states.report()  # hive-core hears it, whichever surface set it
        return f"model set to {model} from the next turn on"

    def current_model(self) -> str:
        """The model the next turn runs."""
        return self._model()

    def status_text(self) -> str:
        """The agent's own one-line status, as its `set_status` tool last wrote it."""
        try:
            return (self.settings.state / STATUS_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def load_config(self) -> agent_config.AgentConfig:
        """agent.toml with the extra MCP servers file merged in (read at every use).

        Raises:
            agent_config.ConfigError: either file is invalid, or they define the same server.
        """
        return agent_config.load(self.settings.agent_config, self.settings.extra_mcp_file)

    def _model(self) -> str:
        try:
            default = self.load_config().model
        except agent_config.ConfigError:
            default = None
        return self.models.get(default)

    async def status(
        self, after_turns: int, until_state: TurnState | None, wait_seconds: float
    ) -> rs.HarnessState:
        """The harness state once `after_turns` turns have run (and the turn state is
        `until_state`, if given), or as it is when the wait ends."""

        def reached() -> bool:
            return self.turns_run >= after_turns and until_state in (None, self.state)

        with anyio.move_on_after(wait_seconds):
            async with self._changed:
                await self._changed.wait_for(reached)
        return rs.HarnessState(
            turn_state=self.state, turns_run=self.turns_run, model=self._model(),
            login=self.login, last_result=self.last_result, last_turn_id=self.last_turn_id,
        )  # fmt: skip

    # -- the loop -----------------------------------------------------------

    async def serve(self, stopping: anyio.Event) -> None:
        """Long-poll the inbox and run a turn per batch of items until `stopping`."""
        backoff = retry.RECONNECT_FIRST
        lost = False
        while not stopping.is_set():
            try:
                async with HiveClient(self.settings.socket) as core:
                    backoff = retry.RECONNECT_FIRST
                    if lost:  # hive-core may have restarted: new limits, usage it lacks
                        lost = False
                        self._tasks.start_soon(self.in_touch)
                    await self._inbox_loop(core, stopping)
            except ClientError as exc:
                logger.warning("lost hive-core (%s); reconnecting in %.1fs", exc, backoff)
                lost = True
                await retry.wait_or_stop(stopping, backoff)
                backoff = retry.next_reconnect(backoff)

    async def in_touch(self) -> None:
        """hive-core is (again) reachable: ask it for the stuck limits, send it the turn
        usage it lacks."""
        await self.watch.load_limits()
        self.usage.flush()

    async def _inbox_loop(self, core: HiveClient, stopping: anyio.Event) -> None:
        done: list[int] = []  # the last turn's items: the next recv acks them
        kept: list[Message] = []  # items a cancel kept from the model: the next turn's first
        while not stopping.is_set():
            wait = 0.0 if kept else RECV_WAIT  # kept items are queued: their turn is due now
            got = await core.call(rq.Recv(cmd="recv", wait_seconds=wait, ack=done), rs.Messages)
            items = kept + list(got.messages)
            done, kept = [], []
            if items:
                done, kept = await self._handle(core, items, stopping)
        if done:  # stopping after a finished turn: ack it now, not after the restart
            await core.call(rq.Ack(cmd="ack", ids=done), rs.Acked)

    async def _handle(
        self, core: HiveClient, items: list[Message], stopping: anyio.Event
    ) -> tuple[list[int], list[Message]]:
        """Run the items' turns; the ids left to ack (none when shutdown cut it short) and
        the items a cancel kept from the model (still leased, for the next turn)."""
        self.busy = True
        self._cancel_asked = False
        try:
            outcome = await self._turns_until_done(core, items, stopping)
        finally:
            self.busy = False
        await self._set_state("idle")  # a cancel that came as the turn ended
        return outcome

    async def _turns_until_done(
        self, core: HiveClient, items: list[Message], stopping: anyio.Event
    ) -> tuple[list[int], list[Message]]:
        delay = retry.RETRY_BASE
        while True:
            if not await self._take_place(items):
                if stopping.is_set():
                    return [], []
                await self._note_kept("cancelled while it waited for a place to run", items)
                return [], items
            try:
                result = await self.run_turn(items)
            finally:
                await self._give_back_place()
            if stopping.is_set() and (result.kind in RETRYABLE or result.kind == "cancelled"):
                return [], []  # interrupted by shutdown: the items come back after the restart
            if result.kind == "cancelled" and not result.received:
                await self._note_kept("cancelled before the model received them", items)
                return [], items
            if result.kind not in RETRYABLE:
                break
            await self.emit(
                live.Note(text=f"turn failed ({result.kind}); retrying in {delay:.0f}s")
            )
            self._waiting_to_retry = True
            try:
                with self._interruptible_wait():  # a cancel, or the harness stopping, ends it
                    await anyio.sleep(delay)
            finally:
                self._waiting_to_retry = False
            if stopping.is_set():
                return [], []  # shutting down: the items stay leased until the connection closes
            if self._cancel_asked:
                await self._note_kept("retry cancelled by the operator", items)
                return [], items
            delay = retry.next_retry(delay)
            more = await core.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
            items += more.messages
        if result.kind == "cancelled":
            handled = f"{_items(items)} counted as handled; the next turn is told of the cancel"
            await self.emit(live.Note(text=f"cancelled after the model received them: {handled}"))
        self._cancelled = list(items) if result.kind == "cancelled" else []  # to tell, or told
        ids = [m.id for m in items]
        # A recv or an ack takes ACK_MAX ids: all but the last ACK_MAX are acked here.
        head, tail = ids[:-ACK_MAX], ids[-ACK_MAX:]
        for start in range(0, len(head), ACK_MAX):
            await core.call(rq.Ack(cmd="ack", ids=head[start : start + ACK_MAX]), rs.Acked)
        return tail, []

    async def _take_place(self, items: Sequence[Message]) -> bool:
        """Wait for hive-core to admit the turn (`waiting` meanwhile); False when a cancel
        or the harness stopping ended the wait."""
        self._place = place = Place(self.settings.socket, self._tasks)

        async def waiting(line: rs.TurnSlotState) -> None:
            await self._set_state("waiting")
            ahead = f"{line.ahead} turn{'s' if line.ahead != 1 else ''} ahead"
            await self.emit(
                live.Note(text=f"waiting for a place to run: {line.running} of "
                          f"{line.slots} turns running, {ahead}")
            )  # fmt: skip

        with self._interruptible_wait() as scope:
            try:
                await place.take(min(m.id for m in items), waiting)
            except BaseException:
                await self._give_back_place()
                raise
        if scope.cancelled_caught or self._cancel_asked:
            await self._give_back_place()
            return False
        return True

    async def _give_back_place(self) -> None:
        place, self._place = self._place, None
        if place is not None:
            await place.give_back()

    def _claude_up(self) -> None:
        if self._place is not None:
            self._place.claude_up()

    async def _note_kept(self, why: str, items: Sequence[Message]) -> None:
        await self.emit(live.Note(text=f"{why}: {_items(items)} left queued for the next turn"))

    @contextlib.contextmanager
    def _interruptible_wait(self) -> Iterator[anyio.CancelScope]:
        """A cancel scope for a wait of the turn that `cancel()` cancels (at once, when the
        turn was cancelled already); the code after it asks `_cancel_asked`."""
        with anyio.CancelScope() as scope:
            if self._cancel_asked:
                scope.cancel()
            self._interruptible = scope
            try:
                yield scope
            finally:
                self._interruptible = None

    # -- one turn -----------------------------------------------------------

    async def run_turn(self, items: Sequence[Message]) -> TurnResult:
        self.turn_id = uuid.uuid4().hex[:12]
        started = time.time()
        new_session = self.new_session_next
        self.new_session_next = False
        wake_from = sorted({m.sender for m in items})
        config, problem = agent_config.AgentConfig(), ""
        try:
            config = self.load_config()
            model = self.models.get(config.model)
        except (agent_config.ConfigError, InvalidModel) as exc:
            model, problem = "-", str(exc)
        turn = TurnStart(self.turn_id, started, model, wake_from, new_session)
        await self.emit(
            live.TurnStarted(
                turn_id=self.turn_id, wake_from=wake_from, new_session=new_session, model=model
            )
        )
        await self.emit(turn_record.received_event(items))
        await self._set_state("thinking")
        if problem:
            await self.emit(live.Note(text=f"cannot run a turn: {problem}"))
            result = TurnResult("error", problem, attempts=0, received=False)
            return await self._finish(turn, [], result)
        runs: list[RunOutcome] = []
        async with self.watch.turn(self.turn_id):
            with self._interruptible_wait():  # a cancel ends these at once (the turn then ends)
                await self.mcp.start()
                await self._login.probe_once(
                    self.settings.claude_bin, lambda: self.claude_env(config)
                )
            prompt = render_wake(items, cancelled=self._cancelled)
            compact_first = self.compact_next and not new_session
            if compact_first:
                self.compact_next = False
            result = await self._runs.run(prompt, model, new_session, compact_first, config, runs)
        if result.kind in RETRYABLE and new_session:
            self.new_session_next = True  # the retry must still start afresh
        await self._login.after_turn(result.kind, result.detail)
        return await self._finish(turn, runs, result)

    async def _finish(
        self, turn: TurnStart, runs: list[RunOutcome], result: TurnResult
    ) -> TurnResult:
        await turn_record.record(turn, runs, result, self.stats, self.settings.socket, self.emit)
        self.usage.flush()  # this turn's row, and any an earlier failed send left behind
        await self._set_state("idle")
        async with self._changed:
            self.turns_run += 1
            self.last_result = result.kind
            self.last_turn_id = self.turn_id
            self._changed.notify_all()
        self.turn_id = None
        return result

    # -- login --------------------------------------------------------------

    def login_env(self) -> dict[str, str]:
        """The environment `claude auth` runs with: the turns' own, `agent.toml`'s included."""
        try:
            config = self.load_config()
        except agent_config.ConfigError:
            config = agent_config.AgentConfig()
        return self.claude_env(config)

    async def probe_login(self) -> None:
        """Find out whether Claude Code is logged in, once (the page needs it before the first
        turn does)."""
        await self._login.probe_once(self.settings.claude_bin, self.login_env)

    async def report_login(self, state: LoginReport, detail: str) -> None:
        """Tell hive-core (and the page) the login state, when it changed."""
        await self._login.report(state, detail)

    def claude_env(self, config: agent_config.AgentConfig) -> dict[str, str]:
        """The environment claude runs with under `config`."""
        return invocation.claude_env(self.env, config, self.settings.state)


def _items(items: Sequence[Message]) -> str:
    return f"{len(items)} item{'s' if len(items) != 1 else ''}"
