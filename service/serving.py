"""Serve an ASGI app with uvicorn on a socket bound here (so port 0 picks a free port and the
address printed is the real one), answering only the host names it is served at: the review app
and the coding service both run this way."""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence

from service.errors import ServiceError

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
    """A listening socket on host:port; ServiceError (one line) when that cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise ServiceError(f"cannot serve on host {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(64)
    except OSError as exc:
        sock.close()
        if exc.errno == 98:
            raise ServiceError(f"port {port} on {host} is in use: pass --port N (0 picks a free port)") from None
        raise ServiceError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
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


def request_log(name: str) -> logging.Logger:
    """The logger of an app's request lines, on stderr with the time."""
    log = logging.getLogger(name)
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


async def logged(respond: Callable[..., Awaitable[None]], scope: dict, receive: Callable, send: Callable,
                 log: logging.Logger, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """The ASGI app `respond` (the app, or a refusal) answering the request, with `headers` added
    to its response, and its method, path, status and time logged: never the query string or
    the body, which may hold a note's words."""
    started, status = time.perf_counter(), 500

    async def sending(message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            message["headers"] = list(message.get("headers", [])) + list(headers)
        await send(message)

    try:
        await respond(scope, receive, sending)
    finally:
        log.info("%s %s %s %.0f ms", scope["method"], scope["path"], status, (time.perf_counter() - started) * 1000)


def run(make_app: Callable[[set[str] | None], object], host: str, port: int, *, on_ready: Callable[[str], None]) -> None:
    """Serves `make_app(allowed_hosts)` on host:port until interrupted (Ctrl-C, SIGTERM: the
    requests being answered finish first); `on_ready(url)` once the socket listens."""
    import uvicorn

    sock = bind(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(make_app(allowed_hosts(host, bound)), log_config=None, access_log=False, lifespan="off",
                            server_header=False, date_header=False, timeout_graceful_shutdown=2)
    name = "127.0.0.1" if host in WILDCARDS else host if ":" not in host else f"[{host.strip('[]')}]"
    on_ready(f"http://{name}:{bound}/")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
