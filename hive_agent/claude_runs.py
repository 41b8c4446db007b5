"""One turn's claude runs: a compaction first when the operator asked for one, the prompt,
and on a full context a compaction and one retry; each run built (`invocation.py`) and
run as its own process, which a cancel reaches through `current`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from hive_agent import invocation
from hive_agent.classify import classify
from hive_agent.claude import ClaudeProcess, RunOutcome
from hive_agent.mcp_host import McpHost
from hive_agent.settings import HarnessSettings
from hive_agent.stream import TurnObserver
from hive_agent.turn_record import TurnResult
from hive_share import agent_config, live
from hive_share.live import LiveEvent, TurnState
from hive_share.models import LoginReport

COMPACT = "/compact"
"""The prompt that makes claude compact its session."""


class ClaudeRuns:
    """Runs a turn's prompt; `current` is the claude process running now, if any."""

    def __init__(
        self,
        settings: HarnessSettings,
        env: Mapping[str, str],
        mcp: McpHost,
        cancelled: Callable[[], bool],
        emit: Callable[[LiveEvent], Awaitable[None]],
        set_state: Callable[[TurnState], Awaitable[None]],
        report_login: Callable[[LoginReport, str], Awaitable[None]],
        spent: Callable[[int], None] | None = None,
        claude_up: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._env = env
        self._mcp = mcp
        self._cancelled = cancelled
        """True once the operator cancelled the turn: no further run starts."""
        self._emit = emit
        self._set_state = set_state
        self._report_login = report_login
        self._spent = spent
        """Hears each run's token spend as it streams (the stuck watch's burn signal)."""
        self._claude_up = claude_up
        """Hears each run's `system/init` (turn admission)."""
        self.current: ClaudeProcess | None = None

    async def run(
        self,
        prompt: str,
        model: str,
        new_session: bool,
        compact_first: bool,
        config: agent_config.AgentConfig,
        runs: list[RunOutcome],
    ) -> TurnResult:
        """The turn's runs, each appended to `runs` as it ends: the prompt (continuing the
        session unless `new_session`), after a compaction when `compact_first`; on overflow a
        compaction and one retry."""
        steps: list[tuple[str, bool]] = [(prompt, not new_session)]
        if compact_first:
            await self._emit(live.Note(text="compacting the session, as the operator asked"))
            await self._set_state("compacting")
            steps = [(COMPACT, True)]  # the prompt follows it (below)
        while steps:
            text, continue_session = steps.pop(0)
            if self._cancelled():
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
                    await self._emit(
                        live.Note(text=f"compaction failed ({why}): retrying in a new session")
                    )
                await self._set_state("thinking")
                steps.append((prompt, keep))
                continue
            kind, detail = classify(outcome.observer.result, outcome.returncode, outcome.cancelled)
            if kind == "crashed" and outcome.stderr_tail:
                detail = f"{detail}: {outcome.stderr_tail[-500:]}"
            if kind == "prompt_too_long" and len(runs) == 1:
                await self._emit(live.Note(text="context is full: compacting, then retrying once"))
                await self._set_state("compacting")
                steps.append((COMPACT, True))
                continue
            received = outcome.observer.session_id is not None  # from system/init
            return TurnResult(kind, detail, attempts=2 if len(runs) > 1 else 1, received=received)
        raise AssertionError("unreachable: the last step always returns")

    async def _invoke(
        self, prompt: str, model: str, continue_session: bool, config: agent_config.AgentConfig
    ) -> RunOutcome:
        """One claude run; a claude that cannot be started is reported (`claude_missing`).

        Raises:
            OSError: the run's files could not be written.
        """
        inv = invocation.build(
            self._settings, self._env, config, self._mcp.path, self._mcp.endpoint, prompt, model,
            continue_session,
        )  # fmt: skip
        self.current = ClaudeProcess(inv, on_spent=self._spent, on_init=self._claude_up)
        try:
            return await self.current.run(self._emit)
        except OSError as exc:
            await self._emit(live.Note(text=f"cannot run {inv.claude_bin}: {exc.strerror}"))
            await self._report_login(
                "claude_missing", f"cannot run {inv.claude_bin}: {exc.strerror}"
            )
            return RunOutcome(TurnObserver(), None, False, f"cannot run {inv.claude_bin}: {exc}")
        finally:
            self.current = None
            self._mcp.end_requests()  # claude is gone: its tool calls must not go on
