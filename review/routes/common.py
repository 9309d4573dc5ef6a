"""What every route module shares: rendering a page with the header's progress, an error page."""

from __future__ import annotations

from starlette.requests import Request


def page(request: Request, name: str, context: dict, status: int = 200):
    store = request.app.state.store
    reviewed, total = store.progress()
    context = {"reviewed": reviewed, "total": total, **context}
    return request.app.state.templates.TemplateResponse(request, name, context, status_code=status)


def error_page(request: Request, message: str, status: int):
    return page(request, "error.html", {"message": message}, status)
