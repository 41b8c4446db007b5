"""The agent page's state changes: the turn controls (cancel, compact, new session, the
model) and the Claude Code login session (`claude auth login` run for the operator: start,
the pasted code, cancel). Each is a JSON POST through `web_context.act`."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict

from hive_agent.web_context import act, context, now

router = APIRouter()


class ModelBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: str


class CodeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    code: str


@router.post("/api/cancel")
async def cancel(request: Request) -> Response:
    return await act(request, lambda _: context(request).harness.cancel())


@router.post("/api/compact")
async def compact(request: Request) -> Response:
    return await act(request, lambda _: now(context(request).harness.request_compact()))


@router.post("/api/new-session")
async def new_session(request: Request) -> Response:
    return await act(request, lambda _: now(context(request).harness.request_new_session()))


@router.post("/api/model")
async def model(request: Request) -> Response:
    return await act(
        request, lambda body: context(request).harness.set_model(body.model), ModelBody
    )


@router.post("/login/start")
async def login_start(request: Request) -> Response:
    return await act(request, lambda _: context(request).login.start())


@router.post("/login/code")
async def login_code(request: Request) -> Response:
    async def send(body: CodeBody) -> str:
        code = body.code.strip()
        if not code or "\n" in code or len(code) > 2000:
            raise ValueError("the code is one line of at most 2000 characters")
        return await context(request).login.code(code)

    return await act(request, send, CodeBody)


@router.post("/login/cancel")
async def login_cancel(request: Request) -> Response:
    return await act(request, lambda _: context(request).login.cancel())
