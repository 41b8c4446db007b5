"""Notifications: the attention list, sent where the operator is, through Apprise.

Each URL of `HIVE_NOTIFY_URLS` (and `HIVE_NOTIFY_URLS_FILE`) is an Apprise URL (ntfy, email,
Slack, Matrix, a JSON webhook, …) with two optional filters of ours, taken off before Apprise
sees it: `hive_severity=` (the lowest severity it gets; default `warn`) and `hive_kinds=`
(attention kinds, comma-separated; default every kind). A new item on the attention list is
sent once to every URL it passes; an approval or a question still open after
`notify_renudge_minutes` is sent again, then every `notify_renudge_every_minutes`. Items on
the list when hive-core starts count as sent (their re-nudges still come).

Delivery never holds up what raised the item: each URL has its own queue (at most
`QUEUE_CAP` messages; a message that does not fit is dropped and counted) and its own task,
which hands each message to Apprise in a worker thread, with Apprise's own connect and read
timeouts, retried after `RETRY_DELAYS`. A failing URL is logged once per streak of failures;
`hive-core notify status` shows its last success, last failure and queue. URLs are logged
and shown with their credentials masked.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from hive_core.attention import RANK
from hive_core.errors import HiveError, InvalidRequest, StartupError
from hive_core.services import Services
from hive_core.settings import Settings, split_urls
from hive_share.events import AttentionChanged, NotifyChanged
from hive_share.models import AttentionItem, NotifyOutcome, NotifyTarget, Severity

logger = logging.getLogger(__name__)

QUEUE_CAP = 100
RETRY_DELAYS = (2.0, 10.0, 30.0)
"""Seconds before each retry of a message that failed (then it is given up)."""
NUDGE_TICK = 30.0
"""Seconds between two looks for approvals and questions due a re-nudge."""
NUDGED_KINDS = frozenset({"approval", "question"})
OURS = ("hive_severity", "hive_kinds")
"""Query parameters of ours on a notification URL, taken off before Apprise sees it."""


@dataclass(frozen=True)
class Note:
    """One message to send."""

    title: str
    body: str
    urgent: bool
    actions: tuple[tuple[str, str], ...] = ()
    """One-tap links (label, URL): in the body everywhere, and ntfy's own buttons on ntfy."""


@dataclass
class Target:
    """One notification URL, its filters, its queue and what happened to it."""

    url: str
    """As Apprise gets it (our parameters taken off)."""
    masked: str
    severity: Severity
    kinds: frozenset[str] | None
    queue: deque[Note] = field(default_factory=deque)
    held: dict[str, AttentionItem] = field(default_factory=dict)
    """Items kept for the next digest: below urgent in quiet hours, `info` at any time."""
    digest_at: float = 0.0
    """When its last digest went out (or, before the first, when it started)."""
    wake: anyio.Event = field(default_factory=anyio.Event)
    sent: int = 0
    dropped: int = 0
    last_ok_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failing: bool = False
    attempts: int = 0
    """Deliveries tried (each retry counts)."""
    tried: anyio.Event = field(default_factory=anyio.Event)
    """Set after each delivery tried, then replaced: what `attempted` waits on."""

    def wants(self, item: AttentionItem) -> bool:
        return RANK[item.severity] <= RANK[self.severity] and (
            self.kinds is None or item.kind in self.kinds
        )

    def view(self) -> NotifyTarget:
        return NotifyTarget(
            url=self.masked, severity=self.severity,
            kinds=sorted(self.kinds) if self.kinds is not None else None, sent=self.sent,
            last_ok_at=self.last_ok_at, last_error=self.last_error,
            last_error_at=self.last_error_at, failing=self.failing, queued=len(self.queue),
            dropped=self.dropped,
        )  # fmt: skip


def targets_of(settings: Settings) -> list[Target]:
    """The notification URLs of the settings (and their file), checked.

    Raises:
        StartupError: the file cannot be read, or a URL is not one Apprise knows or has a
            filter that makes no sense (the message masks its credentials).
    """
    urls = list(settings.notify_urls)
    path = settings.notify_urls_file
    if path is not None:
        try:
            urls += split_urls(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise StartupError(f"cannot read HIVE_NOTIFY_URLS_FILE {path}: {exc}") from None
    if not urls:
        return []
    import apprise  # only when there is something to send: its import costs ~75 ms

    targets = []
    for raw in urls:
        url, severity, kinds = _ours(raw)
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        masked = plugin.url(privacy=True) if plugin else _mask(url)  # type: ignore[no-untyped-call]
        if not plugin:
            raise StartupError(f"{masked}: not a notification URL Apprise knows")
        targets.append(Target(url, masked, severity, kinds))
    return targets


def _ours(raw: str) -> tuple[str, Severity, frozenset[str] | None]:
    """`raw` without our parameters, and what they say."""
    parts = urllib.parse.urlsplit(raw)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    mine = {k: v for k, v in query if k in OURS}
    rest = urllib.parse.urlencode([(k, v) for k, v in query if k not in OURS])
    url = urllib.parse.urlunsplit(parts._replace(query=rest))
    severity = mine.get("hive_severity", "warn")
    if severity not in RANK:
        where = _mask(url)
        raise StartupError(f"{where}: hive_severity={severity[:20]!r}: give info, warn or urgent")
    kinds = (
        frozenset(k for k in mine["hive_kinds"].split(",") if k) if "hive_kinds" in mine else None
    )
    return url, severity, kinds


def _mask(url: str) -> str:
    """`url` with anything between `://` and `@` hidden, and no query (a secret may sit in
    either)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, ("****@" if "@" in parts.netloc else "") + host,
                                    parts.path, "", ""))  # fmt: skip


STUCK_KINDS = frozenset(
    {"stuck_no_progress", "stuck_repetition", "stuck_burn", "ping_pong", "silent"}
)


def note_for(
    item: AttentionItem,
    hive: str,
    link: str | None,
    again: bool = False,
    actions: Sequence[tuple[str, str]] = (),
) -> Note:
    """The message for `item`: the hive's name, the agent, the summary, what resolves it, its
    one-tap `actions` (label, link) and the dashboard's address."""
    who = item.agent or "the operator"
    title = f"{hive}: {item.kind.replace('_', ' ')} ({who})" + (" — still waiting" if again else "")
    lines = [item.summary, f"to resolve: {item.action}"]
    lines += [f"{label}: {url}" for label, url in actions]
    if link:
        lines.append(f"dashboard: {link}")
    return Note(title[:250], "\n".join(lines), item.severity == "urgent", tuple(actions))


async def actions_for(s: Services, item: AttentionItem) -> list[tuple[str, str]]:
    """The one-tap links for `item` (approve and deny an approval, each option of a question,
    cancel a stuck turn), on the dashboard's public address."""
    base = s.settings.public_url or (s.dashboard_url or "").rstrip("/")
    if not base:
        return []
    mint = s.links.mint
    found: list[tuple[str, str]] = []
    if item.kind == "approval" and item.ref is not None:
        found = [(verb, mint(verb, item.key, str(item.ref))) for verb in ("approve", "deny")]
    elif item.kind == "over_budget" and item.ref is not None:
        found = [("allow more", mint("approve", item.key, str(item.ref)))]
    elif item.kind == "question" and item.ref is not None:
        try:
            options = (await s.questions.get(item.ref)).options or []
        except HiveError:
            options = []
        found = [(f"answer {o!r}", mint("answer", item.key, f"{item.ref}:{i}"))
                 for i, o in enumerate(options)]  # fmt: skip
    elif item.kind in STUCK_KINDS and item.agent is not None:
        found = [("cancel turn", mint("cancel", item.key, item.agent))]
    return [(label, f"{base}/act/{token}") for label, token in found]


class Notifications:
    """Follows the attention list and sends what is new, and the re-nudges, to each URL."""

    def __init__(self, s: Services, targets: list[Target]) -> None:
        self._s = s
        self.targets = targets
        self._seen: dict[str, float] = {}
        """Items on the list, by key, with when each was last sent (or first seen)."""
        self._items: dict[str, AttentionItem] = {}

    async def run(self) -> None:
        """Until cancelled: each URL's sender, the list's follower, the re-nudge tick."""
        if not self.targets:
            return
        async with anyio.create_task_group() as tg:
            for target in self.targets:
                tg.start_soon(self._send_loop, target, name=f"notify {target.masked}")
            tg.start_soon(self._follow, name="notify: attention")
            tg.start_soon(self._nudge_loop, name="notify: re-nudge")

    async def _follow(self) -> None:
        sub = self._s.bus.subscribe(kinds=("attention_changed",))
        try:
            if self._s.attention is not None:
                await self.on_list(await self._s.attention.compute(), quiet=True)
            async for frame in sub:
                if isinstance(frame.event, AttentionChanged):
                    await self.on_list(frame.event.items)
        finally:
            sub.close()

    async def on_list(self, items: Iterable[AttentionItem], quiet: bool = False) -> None:
        """The attention list as it is now: send each item not seen before (with `quiet`,
        only note them: the list hive-core started with)."""
        now = self._s.clock.now()
        current = {i.key: i for i in items}
        for key, item in current.items():
            if key not in self._seen:
                self._seen[key] = now
                if not quiet:
                    await self._send(item, again=False)
        for key in [k for k in self._seen if k not in current]:
            del self._seen[key]  # resolved: should it come back, it is news again
        self._items = current

    async def _nudge_loop(self) -> None:
        while True:
            await anyio.sleep(NUDGE_TICK)
            await self.nudge()
            self.digest()

    async def nudge(self) -> None:
        """Send again each approval and question open past its re-nudge time."""
        st, now = self._s.settings, self._s.clock.now()
        first, every = st.notify_renudge_minutes * 60, st.notify_renudge_every_minutes * 60
        for key, item in self._items.items():
            if item.kind not in NUDGED_KINDS:
                continue
            last = self._seen.get(key, now)
            due = item.since + first if last < item.since + first else last + every
            if now >= due:
                self._seen[key] = now
                await self._send(item, again=True)

    async def _send(self, item: AttentionItem, again: bool) -> None:
        if not any(t.wants(item) for t in self.targets):
            return
        st = self._s.settings
        actions = await actions_for(self._s, item)
        note = note_for(item, st.notify_hive_name, st.public_url or self._s.dashboard_url,
                        again, actions)  # fmt: skip
        quiet = self.quiet_now()
        for target in self.targets:
            if not target.wants(item):
                continue
            if item.severity != "urgent" and (quiet or item.severity == "info") and not again:
                target.held[item.key] = item  # into the next digest
                continue
            self._queue(target, note)

    def _queue(self, target: Target, note: Note) -> None:
        if len(target.queue) >= QUEUE_CAP:
            target.dropped += 1
            logger.warning("notifications to %s: queue full, dropped one", target.masked)
            return
        target.queue.append(note)
        target.wake.set()

    def quiet_now(self) -> bool:
        """Whether the local time is within `HIVE_NOTIFY_QUIET_HOURS`."""
        hours = self._s.settings.notify_quiet_hours
        if hours is None:
            return False
        start, end = hours
        hour = time.localtime(self._s.clock.now()).tm_hour
        return start <= hour < end if start < end else hour >= start or hour < end

    def digest(self) -> None:
        """Out of quiet hours, once the digest interval has passed: one message per URL with
        the items it holds that are still on the list."""
        if self.quiet_now():
            return
        now, every = self._s.clock.now(), self._s.settings.notify_digest_minutes * 60
        for target in self.targets:
            waiting = [i for k, i in target.held.items() if k in self._items]
            if not waiting:
                target.held.clear()
                continue
            if now - target.digest_at < every and not any(i.severity != "info" for i in waiting):
                continue  # info items wait for the interval; what quiet hours held goes now
            target.held.clear()
            target.digest_at = now
            hive = self._s.settings.notify_hive_name
            lines = [f"- {i.summary} (to resolve: {i.action})" for i in waiting]
            title = f"{hive}: {len(waiting)} item{'s' if len(waiting) != 1 else ''} for you"
            self._queue(target, Note(title, "\n".join(lines), urgent=False))

    async def _send_loop(self, target: Target) -> None:
        while True:
            if not target.queue:
                target.wake = anyio.Event()
                await target.wake.wait()
                continue
            note = target.queue[0]
            for delay in (*RETRY_DELAYS, None):
                # Abandoned on cancel: a receiver that hangs never holds up hive-core's exit.
                error = await anyio.to_thread.run_sync(
                    _deliver, target.url, note, abandon_on_cancel=True
                )
                self._record(target, error)
                if error is None or delay is None:
                    break
                await anyio.sleep(delay)
            target.queue.popleft()

    async def attempted(self, index: int, count: int) -> None:
        """Wait until the `index`th URL has tried `count` deliveries in all."""
        target = self.targets[index]
        while target.attempts < count:
            await target.tried.wait()

    def _record(self, target: Target, error: str | None) -> None:
        now = self._s.clock.now()
        target.attempts += 1
        target.tried.set()
        target.tried = anyio.Event()
        if error is None:
            target.sent += 1
            target.last_ok_at = now
            if target.failing:
                logger.info("notifications to %s go through again", target.masked)
                target.failing = False
                self._s.bus.publish(NotifyChanged(targets=self.status()))
            return
        target.last_error, target.last_error_at = error, now
        if not target.failing:
            logger.warning("notifications to %s fail: %s", target.masked, error)
            target.failing = True
            self._s.bus.publish(NotifyChanged(targets=self.status()))

    def status(self) -> list[NotifyTarget]:
        return [t.view() for t in self.targets]

    async def test(self) -> list[NotifyOutcome]:
        """A test message to every URL now (not through the queues), each one's outcome.

        Raises:
            InvalidRequest: no notification URL is configured.
        """
        if not self.targets:
            raise InvalidRequest(
                "no notification URLs: set HIVE_NOTIFY_URLS (or HIVE_NOTIFY_URLS_FILE) and "
                "restart hive-core"
            )
        hive = self._s.settings.notify_hive_name
        note = Note(f"{hive}: a test", f"{hive} can reach you here.", urgent=False)
        outcomes = []
        for target in self.targets:
            error = await anyio.to_thread.run_sync(_deliver, target.url, note)
            self._record(target, error)
            outcomes.append(NotifyOutcome(url=target.masked, ok=error is None, error=error))
        return outcomes


def _deliver(url: str, note: Note) -> str | None:
    """Send `note` to `url` through Apprise (in a worker thread); None, or what went wrong."""
    import apprise

    logging.getLogger("apprise").propagate = False  # its words reach the log through ours
    url = with_ntfy_buttons(url, note.actions)
    sender = apprise.Apprise()
    if not sender.add(url):
        return "Apprise does not take this URL"
    kind: Any = apprise.NotifyType.FAILURE if note.urgent else apprise.NotifyType.WARNING
    with apprise.LogCapture(level=logging.WARNING) as captured:  # type: ignore[no-untyped-call]
        try:
            done = sender.notify(body=note.body, title=note.title, notify_type=kind)
        except Exception as exc:  # noqa: BLE001 - a plugin's own bug must not end the sender
            return f"{type(exc).__name__}: {exc}"[:300]
    if done:
        return None
    said = [line.split(" - ", 2)[-1] for line in str(captured.getvalue()).splitlines() if line]
    return ("; ".join(said) or "not sent")[:300]


NTFY_BUTTONS = 3
"""ntfy shows at most three action buttons."""


def with_ntfy_buttons(url: str, actions: Sequence[tuple[str, str]]) -> str:
    """For an ntfy URL, `url` with `actions=` (ntfy's `view` buttons, opening each link's
    confirm page); any other URL as it is."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ntfy", "ntfys") or not actions:
        return url
    clean = str.maketrans({",": " ", ";": " ", "=": " "})
    buttons = "; ".join(
        f"view, {label.translate(clean)}, {link}" for label, link in actions[:NTFY_BUTTONS]
    )
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != "actions"] + [("actions", buttons)]
    encoded = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)  # a space as %20
    return urllib.parse.urlunsplit(parts._replace(query=encoded))
