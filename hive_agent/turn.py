"""The turn loop: inbox items wake a claude turn; its results become events and stats.

Items are acknowledged to hive-core only after their turn ended in a way that
will not be retried, so a crash or an API outage never loses them; the ack rides
on the next `recv` (or, when the harness stops, goes alone). A cancel ends the
turn: items its model received count as handled (and the next turn is told of
the cancel), items it never received stay queued for the next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hive_agent import login, prompts, relay
from hive_agent.classify import RETRYABLE, classify
from hive_agent.claude import CLAUDE_ENV, ClaudeProcess, Invocation, RunOutcome
from hive_agent.history import EventHistory
from hive_agent.mcp_host import McpHost
from hive_agent.model import InvalidModel, ModelStore
from hive_agent.settings import HarnessSettings
from hive_agent.stream import TurnObserver
from hive_agent.turn_stats import TurnRow, TurnStats
from hive_agent.wake import render_wake
from hive_share import agent_config, live
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import ClientError, HiveClient
from hive_share.live import LiveEvent, ResultKind, TurnState
from hive_share.models import LoginReport, LoginStatus, Message, ModelSource

logger = logging.getLogger(__name__)

RECV_WAIT = 180.0
RETRY_BASE = 10.0
RETRY_MAX = 300.0
MCP_CONFIG_FILE = "hyperhive-mcp.json"
STATUS_FILE = "hyperhive-status"
INBOX_PREVIEW = 4000
"""Characters of each received message kept in its `messages_received` event."""
COMPACT = "/compact"
"""The prompt that makes claude compact its session."""


@dataclass(frozen=True)
class TurnResult:
    kind: ResultKind
    detail: str
    attempts: int = 1
    """Runs of the prompt itself (a compaction in between is not counted)."""
    received: bool = True
    """Whether the model received the wake prompt: its run got as far as `system/init`, which
    claude prints just before it sends the prompt. A cancelled turn's items count as handled
    only then."""


class Harness:
    """One agent's harness: turn state, model, login, and the loop that runs turns."""

    def __init__(
        self,
        settings: HarnessSettings,
        env: Mapping[str, str],
        history: EventHistory,
        stats: TurnStats,
    ) -> None:
        self.settings = settings
        self.env = dict(env)
        self.history = history
        self.stats = stats
        self.models = ModelStore(settings.state)
        self.mcp = McpHost(
            settings.harness_socket.with_name("mcp.sock"),
            settings.role,
            settings.socket,
            self._status_from_tool,
        )
        self.state: TurnState = "idle"
        self.current: ClaudeProcess | None = None
        self.new_session_next = False
        self.compact_next = False
        self.login: LoginStatus = "unknown"
        self.turn_id: str | None = None
        self.turns_run = 0
        self.busy = False
        """True from the moment items arrive until they are acknowledged."""
        self.last_result: ResultKind | None = None
        self.last_turn_id: str | None = None
        self._changed = asyncio.Condition()
        """Notified whenever the turn state or the turn count changes."""
        self._cancel = asyncio.Event()
        """Set by `cancel()` while items are being worked on; ends the current turn."""
        self._waiting_to_retry = False
        """True while a failed turn's items wait out the backoff before their retry."""
        self._cancelled: list[Message] = []
        """The items of the last turn the operator cancelled after its model received them:
        the next prompts name them until the model of a turn that is not retried received one."""
        self._background: set[asyncio.Task[None]] = set()
        self._reported: tuple[TurnState, str | None, ModelSource | None] = ("idle", None, None)
        """The turn state, model and model source hive-core last heard of from here (a
        harness that reports alive is idle; its model went with that report)."""
        self._reporter: asyncio.Task[None] | None = None

    # -- events -------------------------------------------------------------

    async def emit(self, event: LiveEvent) -> None:
        await self.history.publish(event, self.turn_id)
        if isinstance(event, live.Note):
            logger.info("note: %s", event.text[:500])
        if isinstance(event, live.TurnStateChanged) and event.state != self.state:
            async with self._changed:  # states reported by the stream (tool, compacting)
                self.state = event.state
                self._changed.notify_all()
            self._report_state()

    async def _set_state(self, state: TurnState) -> None:
        if state != self.state:
            async with self._changed:
                self.state = state
                self._changed.notify_all()
            await self.emit(live.TurnStateChanged(state=state))
            self._report_state()

    def _report_state(self) -> None:
        """Tell hive-core the turn state (the dashboard's chip), and the model with where it
        comes from: one report in flight at a time, always of the latest."""
        if self._reporter is None or self._reporter.done():
            self._reporter = asyncio.ensure_future(self._send_states())

    async def _send_states(self) -> None:
        while True:
            state = self.state
            model, source = self._model_and_source()
            if (state, model, source) == self._reported:
                return
            report = rq.ReportTurnState(
                cmd="turn_state", state=state, model=model, model_source=source
            )
            try:
                async with HiveClient(self.settings.socket) as core:
                    await core.call(report, rs.Done)
            except ClientError as exc:
                logger.warning("could not report turn state %s: %s", state, exc)
                return
            self._reported = (state, model, source)

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
        task = asyncio.ensure_future(self.emit(live.StatusChanged(status=status)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- controls (harness socket) ------------------------------------------

    async def cancel(self, *, stopping: bool = False) -> str:
        """Interrupt the running turn; `stopping` kills claude at once instead of SIGINT."""
        if not self.busy:
            return "no turn is running"
        self._cancel.set()
        if self._waiting_to_retry:
            return "cancelled the retry: its messages stay queued for the next turn"
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
        self._report_state()  # hive-core hears it, whichever surface set it
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

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_seconds), self._changed:
                await self._changed.wait_for(reached)
        return rs.HarnessState(
            turn_state=self.state, turns_run=self.turns_run, model=self._model(),
            login=self.login, last_result=self.last_result, last_turn_id=self.last_turn_id,
        )  # fmt: skip

    # -- the loop -----------------------------------------------------------

    async def serve(self, stopping: asyncio.Event) -> None:
        """Long-poll the inbox and run a turn per batch of items until `stopping`."""
        backoff = 0.2
        while not stopping.is_set():
            try:
                async with HiveClient(self.settings.socket) as core:
                    backoff = 0.2
                    await self._inbox_loop(core, stopping)
            except ClientError as exc:
                logger.warning("lost hive-core (%s); reconnecting in %.1fs", exc, backoff)
                await _wait(stopping, backoff)
                backoff = min(backoff * 2, 10.0)

    async def _inbox_loop(self, core: HiveClient, stopping: asyncio.Event) -> None:
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
        self, core: HiveClient, items: list[Message], stopping: asyncio.Event
    ) -> tuple[list[int], list[Message]]:
        """Run the items' turns; the ids left to ack (none when shutdown cut it short) and
        the items a cancel kept from the model (still leased, for the next turn)."""
        self.busy = True
        self._cancel.clear()
        try:
            outcome = await self._turns_until_done(core, items, stopping)
        finally:
            self.busy = False
        await self._set_state("idle")  # a cancel that came as the turn ended
        return outcome

    async def _turns_until_done(
        self, core: HiveClient, items: list[Message], stopping: asyncio.Event
    ) -> tuple[list[int], list[Message]]:
        delay = RETRY_BASE
        while True:
            result = await self.run_turn(items)
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
                await _wait_any(delay, stopping, self._cancel)
            finally:
                self._waiting_to_retry = False
            if stopping.is_set():
                return [], []  # shutting down: the items stay leased until the connection closes
            if self._cancel.is_set():
                await self._note_kept("retry cancelled by the operator", items)
                return [], items
            delay = min(delay * 2, RETRY_MAX)
            more = await core.call(rq.Recv(cmd="recv", wait_seconds=0), rs.Messages)
            items += more.messages
        if result.kind == "cancelled":
            handled = f"{_items(items)} counted as handled; the next turn is told of the cancel"
            await self.emit(live.Note(text=f"cancelled after the model received them: {handled}"))
        self._cancelled = list(items) if result.kind == "cancelled" else []  # to tell, or told
        ids = [m.id for m in items]
        # A recv or an ack takes 1000 ids: all but the last 1000 are acked here.
        head, tail = ids[:-1000], ids[-1000:]
        for start in range(0, len(head), 1000):
            await core.call(rq.Ack(cmd="ack", ids=head[start : start + 1000]), rs.Acked)
        return tail, []

    async def _note_kept(self, why: str, items: Sequence[Message]) -> None:
        await self.emit(live.Note(text=f"{why}: {_items(items)} left queued for the next turn"))

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
        await self.emit(
            live.TurnStarted(
                turn_id=self.turn_id, wake_from=wake_from, new_session=new_session, model=model
            )
        )
        received = [
            live.ReceivedMessage(
                id=m.id, sender=m.sender, body=m.body[:INBOX_PREVIEW], sent_at=m.sent_at
            )
            for m in items
        ]
        await self.emit(live.MessagesReceived(messages=received))
        await self._set_state("thinking")
        if problem:
            await self.emit(live.Note(text=f"cannot run a turn: {problem}"))
            result = TurnResult("error", problem, attempts=0, received=False)
            return await self._finish(started, model, wake_from, new_session, [], result)
        await self.mcp.start()
        await self._ensure_login_known(config)
        runs: list[RunOutcome] = []
        prompt = render_wake(items, cancelled=self._cancelled)
        result = await self._attempts(prompt, model, new_session, config, runs)
        if result.kind in RETRYABLE and new_session:
            self.new_session_next = True  # the retry must still start afresh
        await self._after_login(result.kind, result.detail)
        return await self._finish(started, model, wake_from, new_session, runs, result)

    async def _attempts(
        self,
        prompt: str,
        model: str,
        new_session: bool,
        config: agent_config.AgentConfig,
        runs: list[RunOutcome],
    ) -> TurnResult:
        """The turn's claude runs: the prompt, and on overflow a compaction and one retry;
        a compaction first when the operator asked for one (and the session continues)."""
        steps: list[tuple[str, bool]] = [(prompt, not new_session)]
        if self.compact_next and not new_session:
            self.compact_next = False
            await self.emit(live.Note(text="compacting the session, as the operator asked"))
            await self._set_state("compacting")
            steps = [(COMPACT, True)]  # the prompt follows it (below)
        while steps:
            text, continue_session = steps.pop(0)
            if self._cancel.is_set():
                return TurnResult("cancelled", "cancelled by the operator", received=False)
            try:
                outcome = await self._invoke(text, model, continue_session, config)
            except OSError as exc:  # writing the prompt or MCP config failed
                return TurnResult("error", f"cannot prepare the turn: {exc}", received=False)
            runs.append(outcome)
            if text == COMPACT:
                keep = outcome.observer.compact_result == "success"
                if not keep:
                    why = outcome.observer.compact_error or "no compaction result"
                    await self.emit(
                        live.Note(text=f"compaction failed ({why}): retrying in a new session")
                    )
                await self._set_state("thinking")
                steps.append((prompt, keep))
                continue
            kind, detail = classify(outcome.observer.result, outcome.returncode, outcome.cancelled)
            if kind == "crashed" and outcome.stderr_tail:
                detail = f"{detail}: {outcome.stderr_tail[-500:]}"
            if kind == "prompt_too_long" and len(runs) == 1:
                await self.emit(live.Note(text="context is full: compacting, then retrying once"))
                await self._set_state("compacting")
                steps.append((COMPACT, True))
                continue
            received = outcome.observer.session_id is not None  # from system/init
            return TurnResult(kind, detail, attempts=2 if len(runs) > 1 else 1, received=received)
        raise AssertionError("unreachable: the last step always returns")

    async def _invoke(
        self, prompt: str, model: str, continue_session: bool, config: agent_config.AgentConfig
    ) -> RunOutcome:
        inv = Invocation(
            claude_bin=self.settings.claude_bin,
            prompt=prompt,
            model=model,
            continue_session=continue_session,
            settings=prompts.settings_path(),
            role_prompt=prompts.write_role_prompt(
                self.settings.state, self.settings.role, self.settings.agent_name,
                self.settings.operator_pronouns,
            ),
            mcp_config=self._write_mcp_config(config),
            allowed_tools=["mcp__hyperhive", *agent_config.allowed_patterns(config)],
            cwd=self.settings.state,
            env=self.claude_env(config),
            max_turns=config.max_turns,
        )  # fmt: skip
        self.current = ClaudeProcess(inv)
        try:
            return await self.current.run(self.emit)
        except OSError as exc:
            await self.emit(live.Note(text=f"cannot run {inv.claude_bin}: {exc.strerror}"))
            await self._report_login(
                "claude_missing", f"cannot run {inv.claude_bin}: {exc.strerror}"
            )
            return RunOutcome(TurnObserver(), None, False, f"cannot run {inv.claude_bin}: {exc}")
        finally:
            self.current = None

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
        if self.login == "unknown":
            state, detail = await login.probe(self.settings.claude_bin, self.login_env())
            await self._report_login(state, detail)

    async def report_login(self, state: LoginReport, detail: str) -> None:
        """Tell hive-core (and the page) the login state, when it changed."""
        await self._report_login(state, detail)

    def claude_env(self, config: agent_config.AgentConfig) -> dict[str, str]:
        env = dict(self.env)
        env.update(config.env)
        env.update(CLAUDE_ENV)
        env.setdefault("CLAUDE_CONFIG_DIR", str(self.settings.state / ".claude"))
        return env

    def _write_mcp_config(self, config: agent_config.AgentConfig) -> Path:
        servers: dict[str, object] = {
            agent_config.OUR_SERVER: {
                "command": relay.command()[0],
                "args": relay.command()[1:],
                "env": {"HIVE_MCP_SOCKET": str(self.mcp.path)},
            }
        }
        for key, server in config.mcp_servers.items():
            servers[key] = {"command": server.command, "args": server.args, "env": server.env}
        path = self.settings.state / MCP_CONFIG_FILE
        prompts.write_if_changed(path, json.dumps({"mcpServers": servers}, indent=2))
        return path

    async def _finish(
        self,
        started: float,
        model: str,
        wake_from: list[str],
        new_session: bool,
        runs: list[RunOutcome],
        result: TurnResult,
    ) -> TurnResult:
        ended = time.time()
        assert self.turn_id is not None
        row = TurnRow(
            turn_id=self.turn_id, model=model, wake_from=wake_from, result_kind=result.kind,
            result_detail=result.detail[:2000], started_at=started, ended_at=ended,
            session_id=None, new_session=new_session, attempts=result.attempts if runs else 0,
        )  # fmt: skip
        for run in runs:  # a compaction and its retry cost tokens too
            obs = run.observer
            usage = obs.usage()
            raw = obs.result or {}
            row.session_id = obs.session_id or row.session_id
            row.input_tokens += usage.input_tokens
            row.output_tokens += usage.output_tokens
            row.cache_creation_input_tokens += usage.cache_creation_input_tokens
            row.cache_read_input_tokens += usage.cache_read_input_tokens
            row.cost_usd += float(raw.get("total_cost_usd") or 0.0)
            for tool, count in obs.tool_calls.items():
                row.tools[tool] = row.tools.get(tool, 0) + count
            row.permission_denials += list(raw.get("permission_denials") or [])
        if runs:
            last = runs[-1].observer
            row.context_tokens = last.context_tokens
            await self.emit(
                live.TokenUsageChanged(context_tokens=last.context_tokens, usage=last.usage())
            )
        row.open_threads_count, row.open_reminders_count = await self._loose_ends()
        await self.stats.record(row)
        await self.emit(
            live.TurnEnded(
                turn_id=self.turn_id, result=result.kind, detail=result.detail[:2000],
                duration_ms=row.duration_ms,
            )
        )  # fmt: skip
        await self._set_state("idle")
        async with self._changed:
            self.turns_run += 1
            self.last_result = result.kind
            self.last_turn_id = self.turn_id
            self._changed.notify_all()
        self.turn_id = None
        return result

    async def _loose_ends(self) -> tuple[int | None, int | None]:
        """Post-turn open-threads and pending-reminders counts (None if hive-core is away)."""
        try:
            async with HiveClient(self.settings.socket) as core:
                got = await core.call(rq.GetOpenThreads(cmd="get_open_threads"), rs.OpenThreads)
        except ClientError as exc:
            logger.warning("could not count open threads after the turn: %s", exc)
            return None, None
        return len(got.approvals) + len(got.questions), got.pending_reminders

    # -- login --------------------------------------------------------------

    async def _ensure_login_known(self, config: agent_config.AgentConfig) -> None:
        if self.login == "unknown":
            state, detail = await login.probe(self.settings.claude_bin, self.claude_env(config))
            await self._report_login(state, detail)

    async def _after_login(self, kind: ResultKind, detail: str) -> None:
        if kind == "auth_error":
            await self._report_login("needs_login", detail)
        elif kind == "success":
            await self._report_login("logged_in", "")

    async def _report_login(self, state: LoginReport, detail: str) -> None:
        if state == self.login:
            return
        if state == "needs_login":
            await self.emit(live.Note(text=f"Claude Code needs a login: {detail}"))
        elif state == "claude_missing":
            await self.emit(live.Note(text=f"Claude Code cannot be run: {detail}"))
        try:
            async with HiveClient(self.settings.socket) as core:
                await core.call(
                    rq.LoginState(cmd="login_state", state=state, detail=detail[:1000]), rs.Done
                )
        except ClientError as exc:
            logger.warning("could not report login state %s (will retry): %s", state, exc)
            return
        self.login = state  # only once hive-core knows; otherwise the next turn reports again


async def _wait(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` unless stopping is set first; True if stopping."""
    try:
        async with asyncio.timeout(seconds):
            await stopping.wait()
    except TimeoutError:
        return False
    return True


async def _wait_any(seconds: float, *events: asyncio.Event) -> None:
    """Wait `seconds`, or until one of `events` is set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _items(items: Sequence[Message]) -> str:
    return f"{len(items)} item{'s' if len(items) != 1 else ''}"
