"""The queue of notes: progress and filters."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from review.errors import ReviewError
from review.routes.common import error_page, page


def queue_page(request: Request):
    store = request.app.state.store
    name = request.query_params.get("filter", "all")
    try:
        rows = store.queue(name)
    except ReviewError as exc:
        return error_page(request, str(exc), 404)
    return page(request, "queue.html", {"rows": rows, "filter": name})


routes = [Route("/", queue_page, name="queue")]
