"""The dashboard application: its routes, its assets, and the layers around them.

Every read needs a session token (`Authorization: Bearer`, see hive_share/sessions.py: no
cookies, so no credential reaches another port of this host), an event stream a one-use
ticket; Host is checked on every request; every state change also needs the
`X-Hive-Request` header and a JSON body, so a form posted from another site can never act.
`build_app` gathers the routes (login.py, agent_page.py, routes.py, streams.py) and wraps
them in two ASGI layers (guards.py), outside FastAPI's own error handling, so that no
response escapes them: the Host check (421) and the security headers.

Actions are host-socket requests: they go through the host socket's own dispatch, as the
operator, so the dashboard and the CLI run the same code with the same checks.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from hive_core.bus import Subscription
from hive_core.dashboard import act, agent_page, login, routes
from hive_core.dashboard import streams as stream_routes
from hive_core.dashboard.auth import Credentials
from hive_core.dashboard.context import Context, invalid_parameter
from hive_core.dashboard.guards import Csrf, HostCheck, SecurityHeaders
from hive_core.dashboard.snapshot import Snapshot
from hive_core.dashboard.streams import MAX_STREAMS
from hive_core.dashboard.views import Operator
from hive_core.services import Services
from hive_front import ASSETS as FRONT_ASSETS
from hive_front import allowed_hosts
from hive_share.sessions import Tickets

__all__ = ["MAX_STREAMS", "Operator", "allowed_hosts", "build_app"]

ROUTERS = (login.router, act.router, agent_page.router, routes.router, stream_routes.router)
"""In the order they match: an agent page's routes before `routes`' catch-all action."""


def build_app(
    s: Services,
    creds: Credentials,
    hosts: Callable[[], frozenset[str]],
    operator: Operator,
    streams: set[Subscription] | None = None,
    snapshot: Snapshot | None = None,
) -> ASGIApp:
    """The dashboard application. `streams` collects the open event-stream subscriptions,
    so the server can end them when it stops; `snapshot` is what `/api/state` serves (its
    `follow` and `probe` are the server's to run)."""
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        exception_handlers={RequestValidationError: invalid_parameter},
    )
    app.state.hive = Context(
        s,
        creds,
        Csrf(hosts),
        operator,
        streams if streams is not None else set(),
        Tickets(),
        snapshot if snapshot is not None else Snapshot(s),
    )
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/assets/front", StaticFiles(directory=FRONT_ASSETS), name="front")
    app.mount("/assets", StaticFiles(directory=routes.ASSETS), name="assets")
    return SecurityHeaders(HostCheck(app, hosts))
