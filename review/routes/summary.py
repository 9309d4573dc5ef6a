"""The program as judged by the coder: precision and recall per code and overall, the codes
most often rejected or added."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from review.routes.common import page
from review.summary import summarize


def summary_page(request: Request):
    store = request.app.state.store
    result = summarize(store.reviews())
    described = {row.code: store.codes.describe(row.code) for row in result.codes}
    return page(request, "summary.html", {"summary": result, "described": described})


def summary_json(request: Request):
    return JSONResponse(summarize(request.app.state.store.reviews()).as_dict())


routes = [Route("/summary", summary_page, name="summary"), Route("/api/summary", summary_json)]
