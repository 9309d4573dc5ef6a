"""A fault-injecting OpenAI-compatible chat server on 127.0.0.1.

It answers like tests/programs/scripted_server.py (ChatAdapter text, or a JSON object when the
request asks for JSON), and fails a chosen share of requests in every way a model server fails:

    hang         accepts the request and never answers (the client's timeout must fire)
    slow         answers after `slow_seconds` (within the timeout: not a failure)
    429          HTTP 429 with a Retry-After header
    500          HTTP 500
    non-json     HTTP 200 with an HTML body
    empty        HTTP 200, "choices": []
    null         HTTP 200, "content": null
    truncated    HTTP 200, the JSON body cut in half
    unparseable  HTTP 200, content no adapter can read, on the calls in DSPy's free-text format
                 (ChatAdapter); the JSON-format retry DSPy then sends is answered (see
                 test_model_faults for an answer that never parses)

Whether attempt n of a prompt fails, and how, depends only on (seed, prompt, n), so a run is
reproducible whatever the order in which threads send their requests.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.programs.scripted_server import Reply, ScriptedServer

KINDS = ("hang", "slow", "429", "500", "non-json", "empty", "null", "truncated", "unparseable")
FAILURES = tuple(kind for kind in KINDS if kind != "slow")


@dataclass
class Plan:
    """Which requests fail: a share `rate` of all attempts (drawn per prompt and attempt), or,
    with `first` > 0, the first `first` attempts of every prompt; `kinds` are drawn in turn.
    `json_too`: unparseable answers to JSON-format calls as well (a model that never parses)."""

    rate: float = 0.0
    kinds: tuple[str, ...] = KINDS
    first: int = 0
    seed: int = 0
    json_too: bool = False

    def fault(self, prompt: str, attempt: int) -> str | None:
        if self.first:
            return self.kinds[_draw(self.seed, prompt, -1) % len(self.kinds)] if attempt < self.first else None
        if _draw(self.seed, prompt, attempt) % 10_000 >= self.rate * 10_000:
            return None
        return self.kinds[_draw(self.seed + 1, prompt, attempt) % len(self.kinds)]


def _draw(seed: int, prompt: str, attempt: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{attempt}|{prompt}".encode()).digest()[:8], "big")


@dataclass
class Tally:
    """What the server saw: requests, answers, injected faults by kind, attempts per prompt."""

    requests: int = 0
    answered: int = 0
    faults: Counter = field(default_factory=Counter)
    attempts: Counter = field(default_factory=Counter)

    @property
    def injected(self) -> int:
        return sum(count for kind, count in self.faults.items() if kind != "slow")

    @property
    def retries(self) -> int:
        """Requests that repeat a prompt already sent."""
        return self.requests - len(self.attempts)


class FaultServer:
    """`with FaultServer(Plan(rate=0.2)) as server:` serves at `server.url`."""

    def __init__(self, plan: Plan | None = None, script: dict[str, Reply] | None = None, *,
                 retry_after: float = 1.0, slow_seconds: float = 0.3):
        self.plan = plan or Plan()
        self.scripted = ScriptedServer(script)
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.tally = Tally()
        self.log: list[tuple[float, str, str | None]] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.handle(self, body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def handle(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        messages = body["messages"]
        prompt = json.dumps(messages, sort_keys=True)
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        json_mode = bool(body.get("response_format")) or "Outputs will be a JSON object" in system
        with self._lock:
            attempt = self.tally.attempts[prompt]
            self.tally.attempts[prompt] += 1
            self.tally.requests += 1
            kind = self.plan.fault(prompt, attempt)
            if kind == "unparseable" and json_mode and not self.plan.json_too:
                kind = None
            if kind:
                self.tally.faults[kind] += 1
            if kind in (None, "slow"):
                self.tally.answered += 1
            self.log.append((time.monotonic(), prompt, kind))
        reply = self.scripted.reply(messages)
        content = json.dumps(reply) if json_mode and isinstance(reply, dict) else self.scripted.answer(messages)
        payload = {
            "id": "chatcmpl-fault", "object": "chat.completion", "created": 0, "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }
        status, headers = 200, {}
        if kind == "hang":
            self._closing.wait(60)
            return
        if kind == "slow":
            time.sleep(self.slow_seconds)
        elif kind == "429":
            status, headers = 429, {"Retry-After": f"{self.retry_after:g}"}
            payload = {"error": {"message": "rate limit reached (injected)", "type": "rate_limit"}}
        elif kind == "500":
            status, payload = 500, {"error": {"message": "internal error (injected)"}}
        elif kind == "empty":
            payload["choices"] = []
        elif kind == "null":
            payload["choices"][0]["message"]["content"] = None
        elif kind == "unparseable":
            payload["choices"][0]["message"]["content"] = "Sorry, I am not sure what you are asking."
        data = json.dumps(payload).encode()
        if kind == "non-json":
            data = b"<html><body>502 Bad Gateway</body></html>"
        elif kind == "truncated":
            data = data[: len(data) // 2]
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
