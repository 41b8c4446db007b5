"""The connection to NATS, and the hive's stream and buckets made sure of.

The link connects to every server of `HIVE_NATS_URL` (the client moves to another when
one goes), keeps trying while none answers (hive-core starts and serves without NATS), and
once connected makes sure the message and item streams, the directory's buckets and the
config store exist. Others
wait for it with `up()`; `state` is what the dashboard and `hive-core hosts` show.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

import anyio
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from hive_core.federation import names
from hive_core.settings import Settings
from hive_share.models import LinkState

logger = logging.getLogger(__name__)


CONNECT_TIMEOUT = 2
"""Seconds one server may take to answer a connect."""
RETRY_FIRST, RETRY_MOST = 0.5, 15.0
"""Seconds between two rounds of connecting while no server answers: doubling up to this."""
PING_INTERVAL, MAX_PINGS_OUT = 5, 2
"""A server that answers no ping for about 10 s is left for another (a stopped process
keeps its socket open, so nothing else tells)."""
RECONNECT_WAIT = 0.5
"""Seconds the client waits before trying a server again, once connected before."""
DUPLICATE_WINDOW = 600.0
"""Seconds JetStream remembers a `Nats-Msg-Id`; the destination's key is the dedupe that
lasts (a message republished later is a no-op there)."""
CONFIG_STORE_BYTES = 256 * 1024 * 1024
"""Bytes the config store may hold: every agent's bundle and the proposals on their way
(each at most a few MB: `deploys.MAX_TREE` bounds a commit)."""
JS_TIMEOUT = 5.0
"""Seconds one JetStream API call or publish may take."""


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of HIVE_NATS_TLS_*; None when none is set (tls:// URLs then verify
    against the system's CAs)."""
    if settings.nats_tls_ca is None and settings.nats_tls_cert is None:
        return None
    context = ssl.create_default_context(
        cafile=None if settings.nats_tls_ca is None else str(settings.nats_tls_ca)
    )
    if settings.nats_tls_cert is not None and settings.nats_tls_key is not None:
        context.load_cert_chain(str(settings.nats_tls_cert), str(settings.nats_tls_key))
    return context


class Link:
    """One NATS connection of this hive-core, with JetStream and the hive's buckets."""

    def __init__(self, settings: Settings, on_state: Callable[[LinkState], None]) -> None:
        self._st = settings
        self._on_state = on_state
        self.state: LinkState = "connecting"
        self.error: str | None = None
        """The errors since the link last worked, each once, in the order they came (for
        `hosts`: a refused login is followed by the server's reset, and both matter)."""
        self._logged: dict[str, None] = {}
        """Those errors: each is logged once, not at every retry."""
        self._up = anyio.Event()
        self.nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._kv: dict[str, KeyValue] = {}
        self._obs: ObjectStore | None = None

    @property
    def hive(self) -> str:
        return self._st.hive_id

    @property
    def host(self) -> str:
        return self._st.host_id

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("the NATS link is not up")
        return self._js

    def kv(self, bucket: str) -> KeyValue:
        return self._kv[bucket]

    @property
    def configs(self) -> ObjectStore:
        """The config store (`names.config_bucket`)."""
        if self._obs is None:
            raise RuntimeError("the NATS link is not up")
        return self._obs

    async def up(self) -> None:
        """Wait until the link has been up once (the stream and buckets exist)."""
        await self._up.wait()

    def _set(self, state: LinkState) -> None:
        if state != self.state:
            logger.info("NATS link %s", state)
            self.state = state
            self._on_state(state)

    async def run(self) -> None:
        """Connect (again and again while no server answers), set up, then keep the client
        until cancelled."""
        delay = RETRY_FIRST
        while self.nc is None:
            try:
                self.nc = await self._connect()
            except Exception as exc:  # noqa: BLE001 - every failure is retried and shown
                self._failed(exc)
                self._set("down")
                await anyio.sleep(delay)
                delay = min(delay * 2, RETRY_MOST)
        try:
            while True:
                try:
                    await self._set_up(self.nc)
                    break
                except Exception as exc:  # noqa: BLE001 - JetStream not ready yet: again
                    self._failed(exc)
                    self._set("down")
                    await anyio.sleep(delay)
                    delay = min(delay * 2, RETRY_MOST)
            self._logged.clear()
            self._set("up" if self.nc.is_connected else "down")
            self._up.set()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self._close()

    def _failed(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}".strip()[:300]
        if text not in self._logged:
            self._logged[text] = None
            logger.warning("NATS: %s", text)
        self.error = "; ".join(self._logged)[:600]

    async def _connect(self) -> Client:
        options: dict[str, Any] = {
            "servers": list(self._st.nats_url),
            "name": f"hive-core {self.hive}/{self.host}",
            "connect_timeout": CONNECT_TIMEOUT,
            "reconnect_time_wait": RECONNECT_WAIT,
            "max_reconnect_attempts": -1,
            "ping_interval": PING_INTERVAL,
            "max_outstanding_pings": MAX_PINGS_OUT,
            "allow_reconnect": True,
            "inbox_prefix": names.inbox_prefix(self.host),
            "error_cb": self._error,
            "disconnected_cb": self._disconnected,
            "reconnected_cb": self._reconnected,
            "closed_cb": self._closed,
        }
        if self._st.nats_creds is not None:
            options["user_credentials"] = str(self._st.nats_creds)
        if self._st.nats_nkey_seed is not None:
            options["nkeys_seed"] = str(self._st.nats_nkey_seed)
        context = tls_context(self._st)
        if context is not None:
            options["tls"] = context
        client: Client = await nats.connect(**options)
        self.error = None
        return client

    async def _set_up(self, nc: Client) -> None:
        js = nc.jetstream(timeout=JS_TIMEOUT)
        replicas = self._st.nats_replicas
        stream = StreamConfig(
            name=names.msg_stream(self.hive),
            subjects=[f"hive.{self.hive}.msg.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=DUPLICATE_WINDOW,
        )
        items = StreamConfig(
            name=names.events_stream(self.hive),
            subjects=[names.events_filter(self.hive)],
            retention=RetentionPolicy.LIMITS,
            max_msgs_per_subject=1,  # one item's last state: a reader starting late needs no more
            storage=StorageType.FILE,
            num_replicas=replicas,
        )
        for config in (stream, items):
            try:
                await js.stream_info(config.name or "")
            except nats.js.errors.NotFoundError:
                await js.add_stream(config)
        for bucket in (
            names.names_bucket(self.hive),
            names.agents_bucket(self.hive),
            names.hosts_bucket(self.hive),
        ):
            try:
                kv = await js.key_value(bucket)
            except nats.js.errors.BucketNotFoundError:
                kv = await js.create_key_value(bucket=bucket, history=1, replicas=replicas)
            self._kv[bucket] = kv
        try:
            self._obs = await js.object_store(names.config_bucket(self.hive))
        except nats.js.errors.BucketNotFoundError:
            store = ObjectStoreConfig(
                description="config repos between hosts, as git bundles",
                max_bytes=CONFIG_STORE_BYTES,
                storage=StorageType.FILE,
                replicas=replicas,
            )
            self._obs = await js.create_object_store(names.config_bucket(self.hive), store)
        self._js = js

    async def _error(self, exc: Exception) -> None:
        self._failed(exc)
        if not self._up.is_set():  # the client keeps trying the servers meanwhile
            self._set("down")

    async def _disconnected(self) -> None:
        if self._up.is_set():
            self._set("down")

    async def _reconnected(self) -> None:
        self.error = None
        self._logged.clear()
        if self._up.is_set():
            self._set("up")

    async def _closed(self) -> None:
        if self._up.is_set():
            self._set("down")

    async def _close(self) -> None:
        nc, self.nc = self.nc, None
        if nc is not None and not nc.is_closed:
            try:
                with anyio.fail_after(JS_TIMEOUT):
                    await nc.close()
            except Exception:
                logger.debug("closing the NATS connection failed", exc_info=True)
