"""The review web app: Starlette routes (one module per resource under routes/), Jinja2
templates and static files beside them, all served by the app itself. The routes are a thin
layer over ReviewStore, which the tests also call directly."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path

import jinja2  # noqa: F401 - the templates need it; an ImportError here names the missing extra
import python_multipart  # noqa: F401 - forms need it
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from review.guard import Guard
from review.routes import notes, queue, search, summary
from review.store import FILTERS, ReviewStore

HERE = Path(__file__).resolve().parent


def create_app(store: ReviewStore, *, allowed_hosts: Collection[str] | None = None,
               log: logging.Logger | None = None) -> Starlette:
    """The app over `store`. `allowed_hosts`: the Host headers to answer (None: any, for tests)."""
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals["filters"] = {name: label for name, (label, _) in FILTERS.items()
                                        if name != "gold" or store.has_gold}
    app = Starlette(
        routes=[*queue.routes, *notes.routes, *search.routes, *summary.routes,
                Mount("/static", StaticFiles(directory=HERE / "static"), name="static")],
        middleware=[Middleware(Guard, allowed_hosts=allowed_hosts, log=log)],
    )
    app.state.store = store
    app.state.templates = templates
    return app
