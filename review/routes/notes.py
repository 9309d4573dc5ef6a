"""A note: its page, its code panel, and the coder's decisions on it.

A change answers with the code panel (plus the note text and the header's progress, swapped
out of band): 200 when applied, 409 when another tab changed the code first, 422 when the
request cannot be applied (a code that is not billable, a bad selection); the panel then
shows why and the current state."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from review import model
from review.errors import Conflict, ReviewError
from review.routes.common import error_page, page
from review.store import FILTERS, ReviewStore
from review.views import cards, note_html, stage_lines


def note_context(store: ReviewStore, n: int, name: str = "all") -> dict:
    """Everything the note page and its panel show."""
    note = store.note(n)
    trace = store.trace(n)
    shown = cards(note, store.codes, trace)
    final = set(note.final_codes())
    order = [row.index for row in store.queue(name)] if name != "all" else list(range(len(store)))
    later = [i for i in order if i > n]
    earlier = [i for i in order if i < n]
    return {
        "n": n,
        "note": note,
        "filter": name,
        "cards": shown,
        "suggested": [c for c in shown if c.kind == "suggested"],
        "added": [c for c in shown if c.kind == "added"],
        "note_html": note_html(note, shown),
        "gold": [(code, store.codes.describe(code), code in final) for code in store.record(n).codes],
        "has_gold": store.has_gold,
        "trace": [(stage.stage, stage_lines(stage)) for stage in trace],
        "next": later[0] if later else None,
        "previous": earlier[-1] if earlier else None,
        "position": order.index(n) + 1 if n in order else None,
        "count": len(order),
    }


def filter_of(request: Request) -> str:
    return request.query_params.get("filter", "all")


def note_page(request: Request):
    store = request.app.state.store
    try:
        context = note_context(store, request.path_params["n"], filter_of(request))
    except ReviewError as exc:
        return error_page(request, str(exc), 404)
    return page(request, "note.html", context)


def panel(request: Request, n: int, status: int = 200, message: str = ""):
    store = request.app.state.store
    context = note_context(store, n, filter_of(request))
    return page(request, "_panel.html", {**context, "message": message, "oob": True}, status)


def note_panel(request: Request):
    try:
        return panel(request, request.path_params["n"])
    except ReviewError as exc:
        return Response(str(exc), status_code=404)


def note_json(request: Request):
    store = request.app.state.store
    try:
        return JSONResponse(model.to_line(store.note(request.path_params["n"])))
    except ReviewError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)


async def apply(request: Request, change) -> Response:
    """Apply `change(store, form)` and answer with the panel, off the event loop (file I/O)."""
    form = await request.form()
    return await run_in_threadpool(respond, request, form, change)


def respond(request: Request, form, change) -> Response:
    store = request.app.state.store
    n = request.path_params["n"]
    try:
        store.record(n)
    except ReviewError as exc:
        return Response(str(exc), status_code=404)
    try:
        change(store, form)
    except Conflict as exc:
        return panel(request, n, 409, str(exc))
    except ReviewError as exc:
        return panel(request, n, 422, str(exc))
    return panel(request, n)


async def decide(request: Request):
    """Form: verdict (accepted | rejected | replaced | pending), seen, reason?, code? (replaced)."""
    n, i = request.path_params["n"], request.path_params["i"]
    return await apply(request, lambda store, form: store.decide(
        n, i, form.get("verdict", ""), seen=form.get("seen", ""), reason=form.get("reason", ""),
        replacement=form.get("code", "")))


async def add(request: Request):
    """Form: code, start, end (the selected words, in characters of the note)."""
    n = request.path_params["n"]

    def change(store: ReviewStore, form) -> None:
        try:
            start, end = int(form.get("start", "")), int(form.get("end", ""))
        except ValueError:
            raise ReviewError("select words of the note first (start and end are missing)") from None
        store.add(n, form.get("code", ""), start, end)

    return await apply(request, change)


async def remove_added(request: Request):
    """Form: key (an added code's `code@start-end`)."""
    n = request.path_params["n"]
    return await apply(request, lambda store, form: store.remove_added(n, form.get("key", "")))


async def done(request: Request):
    """Form: done (1 marks the note reviewed, 0 reopens it), filter. A page that marks a note
    reviewed is sent on to the next note of its filter not reviewed yet (else of all notes)."""
    form = await request.form()
    finished = form.get("done", "1") == "1"
    response = await apply(request, lambda store, form: store.mark_done(request.path_params["n"], finished))
    if response.status_code == 200 and finished and request.headers.get("hx-request"):
        target = await run_in_threadpool(next_to_review, request.app.state.store, request.path_params["n"],
                                         form.get("filter", "all"))
        response.headers["HX-Redirect"] = target
    return response


def next_to_review(store: ReviewStore, n: int, name: str) -> str:
    """The page to go to after note `n`: the next unreviewed note of the filter, else of all, else the summary."""
    for scope in (name, "all") if name in FILTERS else ("all",):
        todo = [row.index for row in store.queue(scope) if not row.note.done]
        ahead = [i for i in todo if i > n] or todo
        if ahead:
            return f"/notes/{ahead[0]}?filter={scope}"
    return "/summary"


routes = [
    Route("/notes/{n:int}", note_page, name="note"),
    Route("/notes/{n:int}/panel", note_panel),
    Route("/api/notes/{n:int}", note_json),
    Route("/notes/{n:int}/suggestions/{i:int}", decide, methods=["POST"]),
    Route("/notes/{n:int}/added", add, methods=["POST"]),
    Route("/notes/{n:int}/added/remove", remove_added, methods=["POST"]),
    Route("/notes/{n:int}/done", done, methods=["POST"]),
]
