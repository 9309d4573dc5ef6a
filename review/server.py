"""Serve the review app with uvicorn on a socket bound here (so port 0 picks a free port and
the address printed is the real one). Logging: the app's request lines (method, path, status),
uvicorn's start and stop; never a query string, a body or a note's words."""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from collections.abc import Callable

from review.app import create_app
from review.errors import ReviewError
from review.store import ReviewStore

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARDS = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; ReviewError (one line) when that cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ReviewError(f"cannot serve on host {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        if exc.errno == 98:
            raise ReviewError(f"port {port} on {host} is in use: pass --port N (0 picks a free port)") from None
        raise ReviewError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def allowed_hosts(host: str, port: int) -> set[str] | None:
    """The Host headers the app answers: the served address (and its loopback names); None (any)
    when serving on every interface."""
    if host in WILDCARDS:
        return None
    names = {host if ":" not in host else f"[{host.strip('[]')}]"}
    if is_loopback(host):
        names.update(LOOPBACK_NAMES)
    return {f"{name}:{port}" for name in names}


def request_log() -> logging.Logger:
    log = logging.getLogger("review")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def serve(store: ReviewStore, host: str, port: int, *, on_ready: Callable[[str], None]) -> None:
    """Serve until interrupted; `on_ready(url)` once the socket listens."""
    import uvicorn

    sock = bind(host, port)
    bound = sock.getsockname()[1]
    app = create_app(store, allowed_hosts=allowed_hosts(host, bound), log=request_log())
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", server_header=False,
                            date_header=False, timeout_graceful_shutdown=2)
    store.codes.warm()
    name = "127.0.0.1" if host in WILDCARDS else host if ":" not in host else f"[{host.strip('[]')}]"
    on_ready(f"http://{name}:{bound}/")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
