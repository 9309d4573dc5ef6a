"""Code search for the replace and add boxes: billable codes only, by words or by code."""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from review.routes.common import page


def search(request: Request):
    """?q=words or a code, &k=hits. Answers the hits as an HTML list for the page."""
    store = request.app.state.store
    query = request.query_params.get("q", "")
    try:
        k = min(max(int(request.query_params.get("k", "12")), 1), 50)
    except ValueError:
        k = 12
    hits = store.codes.search(query, k=k)
    return page(request, "_hits.html", {"hits": hits, "query": query})


routes = [Route("/search", search)]
