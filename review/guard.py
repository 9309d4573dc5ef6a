"""The app's security and logging layer (pure ASGI middleware).

- Host check: requests must name one of the served host:port pairs (no DNS rebinding).
- Origin check: a request that changes data (POST) must come from the app's own page: its
  Origin header is the app's origin, or, without one, Sec-Fetch-Site is same-origin.
- Headers: a Content-Security-Policy that allows only the app's own scripts and styles (no
  inline script runs even if one reached the page), no framing, no referrer, no caching.
- Log: method, path, status and time of each request; never the query string or body, which
  may hold words of a note.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.serving import logged

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class Guard:
    def __init__(self, app: ASGIApp, allowed_hosts: Collection[str] | None = None, log: logging.Logger | None = None):
        self.app = app
        self.allowed_hosts = None if allowed_hosts is None else frozenset(h.lower() for h in allowed_hosts)
        self.log = log or logging.getLogger("review")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        respond = PlainTextResponse(refusal[1], status_code=refusal[0]) if refusal else self.app
        await logged(respond, scope, receive, send, self.log, SECURITY_HEADERS)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, message) when the request must not reach the app."""
        headers = Headers(scope=scope)
        host = headers.get("host", "").lower()
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            return 421, "unknown host: open the address the review command printed"
        if scope["method"] in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None:
            if origin.lower() != f"{scope.get('scheme', 'http')}://{host}":
                return 403, "refused: this request did not come from the review page"
        elif headers.get("sec-fetch-site") != "same-origin":
            return 403, "refused: a request that changes data must come from the review page"
        return None
