"""One-tap action links from notifications (hive_core/action_links.py): the confirm page and
the confirmation.

`GET /act/{token}` never acts: it shows exactly what the link would do (an approval's diff
included) and a confirm button, so a link preview or a scanner that fetches it changes
nothing. The link is the credential for that one action, so the page needs no login. The
button's `POST /api/act/{token}` passes the dashboard's usual CSRF check (a header and a
JSON body only the page's own script sends), marks the link used (once: a compare-and-set)
and then runs the action as the operator.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from hive_core.action_links import BadLink, Link
from hive_core.dashboard.context import context, error, reply
from hive_core.errors import HiveError
from hive_core.services import Services

router = APIRouter()


@router.get("/act/{token}")
async def confirm_page(request: Request, token: str) -> Response:
    s = context(request).s
    try:
        link = s.links.read(token)
        if await s.links.used(link):
            raise BadLink("this link was used already; each link works once")
        title, lines, diff = await _describe(s, link)
    except BadLink as exc:
        return HTMLResponse(_page("this link does not work", [html.escape(str(exc))]), 403)
    return HTMLResponse(_page(title, lines, diff, token))


@router.post("/api/act/{token}")
async def confirm(request: Request, token: str) -> Response:
    ctx = context(request)
    if problem := ctx.csrf.problem(request):
        return error(403, problem, "forbidden")
    try:
        link = ctx.s.links.read(token)
        if await ctx.s.links.used(link):
            raise BadLink("this link was used already; each link works once")
        await _describe(ctx.s, link)  # still to be done: pending, open, running
        await ctx.s.links.use(link)  # the compare-and-set: of two racing uses, one acts
    except BadLink as exc:
        return error(403, str(exc), "forbidden")
    return reply(await ctx.operator(await _request(ctx.s, link)))


async def _request(s: Services, link: Link) -> dict[str, Any]:
    """The host request the link stands for."""
    match link.action:
        case "approve":
            return {"cmd": "approve", "id": int(link.ref)}
        case "deny":
            return {"cmd": "deny", "id": int(link.ref), "reason": "denied from a notification"}
        case "answer":
            qid, index = (int(part) for part in link.ref.split(":"))
            options = (await s.questions.get(qid)).options or []
            return {"cmd": "answer", "id": qid, "answer": options[index]}
        case "cancel":
            return {"cmd": "relay", "name": link.ref, "request": {"cmd": "cancel"}}


async def _describe(s: Services, link: Link) -> tuple[str, list[str], str]:
    """What confirming will do: a title, lines of markup (escaped), and a diff to show.

    Raises:
        BadLink: the item is gone or no longer waits (decided, answered, stopped).
    """
    try:
        match link.action:
            case "approve" | "deny":
                a = await s.approvals.get(int(link.ref))
                if a.status != "pending":
                    raise BadLink(f"approval {a.id} is {a.status} already")
                what = html.escape(f"{a.kind.replace('_', ' ')} {a.agent}, asked by {a.requester}")
                lines = [f"{link.action} approval {a.id}: {what}"]
                if a.reason:
                    lines.append(html.escape(a.reason))
                return f"{link.action} approval {a.id}?", lines, a.diff or ""
            case "answer":
                qid, index = (int(part) for part in link.ref.split(":"))
                q = await s.questions.get(qid)
                if q.status != "pending" or not q.options or index >= len(q.options):
                    raise BadLink(f"question {qid} is {q.status} already")
                lines = [html.escape(f"{q.asker} asks: {q.question}"),
                         html.escape(f"answer: {q.options[index]}")]  # fmt: skip
                return f"answer question {qid}?", lines, ""
            case "cancel":
                name = link.ref
                if s.liveness.turn_state.get(name, "idle") == "idle":
                    raise BadLink(f"{name} is not in a turn any more")
                lines = [html.escape(f"cancel {name}'s running turn; the messages it has not "
                                     "seen stay queued")]  # fmt: skip
                return f"cancel {name}'s turn?", lines, ""
    except (HiveError, ValueError):
        raise BadLink("what this link was for is gone") from None
    raise BadLink("this link names no action hive-core knows")


def _page(title: str, lines: list[str], diff: str = "", token: str = "") -> str:
    """The confirm page (lines are escaped markup). No inline script or style: the button's
    script is `/assets/act.js`."""
    body = "".join(f"<p>{line}</p>\n" for line in lines)
    if diff:
        body += f'<pre class="diff">{html.escape(diff)}</pre>\n'
    if token:
        body += (
            f'<p><button id="confirm" class="primary" type="button" '
            f'data-token="{html.escape(token)}">confirm</button></p>\n'
            '<p id="result" role="status"></p>\n<script type="module" src="/assets/act.js">'
            "</script>\n"
        )
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>hyperhive · {html.escape(title)}</title>\n"
        '<link rel="stylesheet" href="/assets/front/base.css">\n</head>\n<body>\n'
        f'<main class="login">\n<h1>{html.escape(title)}</h1>\n{body}</main>\n</body>\n</html>\n'
    )
