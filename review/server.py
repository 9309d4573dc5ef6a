"""Serve the review app (`service.serving`). Logging: the app's request lines (method, path,
status), uvicorn's start and stop; never a query string, a body or a note's words."""

from __future__ import annotations

from collections.abc import Callable

from review.app import create_app
from review.store import ReviewStore
from service.serving import request_log, run


def serve(store: ReviewStore, host: str, port: int, *, on_ready: Callable[[str], None]) -> None:
    """Serve until interrupted; `on_ready(url)` once the socket listens."""
    store.codes.warm()
    run(lambda hosts: create_app(store, allowed_hosts=hosts, log=request_log("review")), host, port, on_ready=on_ready)
