"""The coding service's HTTP API (Starlette): one program, its model and the knowledge base,
loaded once, code the notes sent to it within one budget of threads, as `predict --input`
codes a batch in one process (`programs.batch.code_record`: the same lines, usage and errors).

- `GET /v1/health`: {"program", "model", "threads", "coded"}.
- `POST /v1/code` with {"text": NOTE, "id": ID (optional)}: the note's line as `predict
  --output` writes it, {"id", "codes", "result"}; 422 {"error"} for a note that cannot be coded
  (empty, binary), 503 {"error"} when the model fails, 400 {"error"} for any other body.

Only the host names it is served at are answered (no DNS rebinding), and no request a web page
makes (one with an Origin or Sec-Fetch-Site header): a page of another site could otherwise have
notes coded. The log has each request's method, path, status and time, never a note's words."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from threading import Lock

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from programs.base import CodingProgram
from programs.batch import code_record
from programs.concurrency import Budget
from service.serving import logged

MAX_NOTE_BYTES = 8 * 1024 * 1024
CODE_BODY = '{"text": NOTE, "id": ID (optional)}'


@dataclass
class Coder:
    """What the service codes with: `program` with `lm` (None: its rules alone) within `budget`;
    `model` names the model for /v1/health."""

    program: CodingProgram
    lm: object
    model: str
    budget: Budget
    coded: int = 0
    _counting: Lock = field(default_factory=Lock)

    def code(self, note_id: str, text: str):
        outcome = code_record(self.program, note_id, text, self.lm, self.budget)
        with self._counting:
            self.coded += not (outcome.failed or outcome.stopped)
        return outcome


def create_app(coder: Coder, *, allowed_hosts: Collection[str] | None = None, log: logging.Logger | None = None) -> ASGIApp:
    """The app over `coder`. `allowed_hosts`: the Host headers to answer (None: any, for tests)."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"program": coder.program.name, "model": coder.model, "threads": coder.budget.threads,
                             "coded": coder.coded})

    async def code(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_NOTE_BYTES:
            return JSONResponse({"error": f"the note is over {MAX_NOTE_BYTES // 2**20} MB"}, status_code=413)
        try:
            payload = json.loads(body)
        except ValueError:
            return JSONResponse({"error": f"the body is not JSON: send {CODE_BODY}"}, status_code=400)
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str) \
                or not isinstance(payload.get("id", ""), (str, int)) or isinstance(payload.get("id"), bool):
            return JSONResponse({"error": f"send {CODE_BODY}"}, status_code=400)
        outcome = await run_in_threadpool(coder.code, str(payload.get("id", "")), payload["text"])
        if outcome.failed:
            return JSONResponse({"error": outcome.failed}, status_code=422)
        if outcome.stopped:
            return JSONResponse({"error": outcome.stopped}, status_code=503)
        return Response(outcome.line, media_type="application/json")

    routes = [Route("/v1/health", health, methods=["GET"]), Route("/v1/code", code, methods=["POST"])]
    return Guard(Starlette(routes=routes), allowed_hosts, log or logging.getLogger("service"))


class Guard:
    """Refuses a request for another host (421) or from a web page (403); logs every request."""

    def __init__(self, app: ASGIApp, allowed_hosts: Collection[str] | None, log: logging.Logger):
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else frozenset(h.lower() for h in allowed_hosts)
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.allowed_hosts is not None and headers.get("host", "").lower() not in self.allowed_hosts:
            respond = JSONResponse({"error": "unknown host: call the address `serve` printed"}, 421)
        elif "origin" in headers or "sec-fetch-site" in headers:
            respond = JSONResponse({"error": "refused: the coding service answers programs, not web pages"}, 403)
        else:
            respond = self.app
        await logged(respond, scope, receive, send, self.log)
