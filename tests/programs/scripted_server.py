"""A scripted OpenAI-compatible chat server on 127.0.0.1 for end-to-end tests and benchmarks: it
answers /v1/chat/completions in DSPy's ChatAdapter format, or as a JSON object when the request
constrains the answer (a `response_format`, a llama.cpp `grammar`, vLLM's `structured_outputs`),
choosing the reply by which signature the prompt is for (the output fields named in the system
message), optionally after a fixed latency (`delay`), as a remote model would."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CODE = re.compile(r"\b[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?\b")
Reply = Callable[[str], "dict[str, object] | str"]


def section(text: str, name: str) -> str:
    """The value of input field `name` in a ChatAdapter user message."""
    match = re.search(rf"\[\[ ## {name} ## \]\]\n(.*?)(?=\n\[\[ ## |\Z)", text, flags=re.S)
    return match.group(1).strip() if match else ""


def first_code(text: str, name: str) -> str:
    found = CODE.findall(section(text, name))
    return found[0] if found else "NONE"


def closest_code(text: str) -> str:
    """The candidate whose description shares most words with the diagnosis (first on ties)."""
    wanted = set(re.findall(r"\w+", section(text, "diagnosis").lower()))
    best, score = "NONE", -1
    for code, description in re.findall(r'"([A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?): ([^"]*)"', section(text, "candidates")):
        common = len(wanted & set(re.findall(r"\w+", description.lower())))
        if common > score:
            best, score = code, common
    return best


def closest_number(text: str, query: str, listing: str) -> str:
    """The number of the listed option that best fits the query field (few extra words)."""
    words = lambda s: set(re.findall(r"[a-z0-9]+", s.lower()))
    wanted = words(section(text, query))
    entries = re.findall(r'"(\d+)\. ([^"]*?)(?: -> [^"]*)?"', section(text, listing))
    scored = [(len(wanted & words(path)) - 0.5 * len(words(path) - wanted), -int(n), n) for n, path in entries]
    return max(scored)[2] if scored else "0"


def all_codes(text: str, name: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r'"([A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?):', section(text, name))))


def listed_problems(user: str) -> list[str]:
    """The present problems an extract prompt lists ('text (present)' -> 'text')."""
    try:
        listed = json.loads(section(user, "problems").split("\n\n")[0] or "[]")
    except ValueError:
        return []
    return [item.rsplit(" (", 1)[0] for item in listed if str(item).endswith("(present)")]


def echo_problems(user: str) -> dict[str, list[str]]:
    """MedCoder's extract answer: the rules' present problems, each quoting the note's line that
    names it."""
    problems = listed_problems(user)
    lines = section(user, "note").splitlines()
    quotes = [next((line.strip() for line in lines if problem in line), problem) for problem in problems]
    return {"diagnoses": problems, "evidence": quotes}


def echo_statements(user: str) -> dict[str, list[str]]:
    """CLH's extract answer: the rules' present problems, each led by its first word."""
    problems = listed_problems(user)
    return {"statements": problems, "lead_terms": [problem.split()[0].capitalize() for problem in problems]}


def echo_codes(user: str) -> dict[str, list[str]]:
    """Verify's proposals: the codes the rules suggest, each with the words they code."""
    try:
        suggested = json.loads(section(user, "suggested").split("\n\n")[0] or "[]")
    except ValueError:
        suggested = []
    pairs = [str(item).split(": ", 1) for item in suggested if ": " in str(item)]
    return {"codes": [code for code, _ in pairs], "evidence": [words for _, words in pairs]}


ECHO_SCRIPT: dict[str, Reply] = {"diagnoses": echo_problems, "statements": echo_statements, "codes": echo_codes}
"""First stages that answer with what the rules found: one re-rank (MedCoder), one navigation and
validation (CLH) or one selection (verify) per problem, as a model that agrees with the rules
would."""

# The signature of a prompt is told by the output field it asks for (checked in this order).
DEFAULT_SCRIPT: dict[str, Reply] = {
    "diagnoses": lambda user: {
        "diagnoses": ["Essential hypertension", "Type 2 diabetes mellitus with hyperglycemia"],
        "evidence": ["Essential hypertension, above goal.", "uncontrolled with hyperglycemia"],
    },
    "statements": lambda user: {
        "statements": ["Essential hypertension, above goal.", "Hyperlipidemia. Continue atorvastatin"],
        "lead_terms": ["Hypertension", "Hyperlipidemia"],
    },
    "next_term": lambda user: {"choice": closest_number(user, "statement", "entries"), "next_term": ""},
    "accepted": lambda user: {"accepted": [first_code(user, "candidates")], "rationale": "The title matches."},
    "final_codes": lambda user: {"final_codes": all_codes(user, "candidates"), "rationale": "No conflicts."},
    "code": lambda user: {"code": closest_code(user), "rationale": "Best match."},
    "options": lambda user: {"choice": closest_number(user, "evidence", "options"), "rationale": "Most precise."},
    "codes": lambda user: {
        "codes": ["I10", "E11", "U99.99"],
        "evidence": ["Essential hypertension, above goal.", "Type 2 diabetes mellitus", "Type 2 diabetes mellitus"],
    },
}
# Output fields that identify a signature (the first one found in the system message wins).
MARKERS = [
    ("diagnoses", "diagnoses"),
    ("statements", "statements"),
    ("next_term", "next_term"),
    ("accepted", "accepted"),
    ("final_codes", "final_codes"),
    ("choice", "options"),
    ("code", "code"),
    ("codes", "codes"),
]


def constrained(body: dict) -> bool:
    """Whether a chat request asks for a constrained (JSON) answer."""
    kind = (body.get("response_format") or {}).get("type")
    return kind in ("json_schema", "json_object") or "grammar" in body or "structured_outputs" in body


def render(fields: dict[str, object] | str) -> str:
    if isinstance(fields, str):
        return fields
    parts = []
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(f"[[ ## {name} ## ]]\n{text}")
    return "\n\n".join(parts + ["[[ ## completed ## ]]"])


class Listener(ThreadingHTTPServer):
    """A thread per request, and a backlog for many clients at once (the default of 5 makes the
    sixth concurrent connection wait for a SYN retry, a second)."""

    request_queue_size = 256


class ScriptedServer:
    """`with ScriptedServer() as server:` serves at `server.url` ('http://127.0.0.1:PORT/v1')."""

    def __init__(self, script: dict[str, Reply] | None = None, delay: float = 0.0):
        self.script = {**DEFAULT_SCRIPT, **(script or {})}
        self.delay = delay
        self.at_once = self.most_at_once = 0
        self._counting = threading.Lock()
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                with server.counting():
                    if server.delay:
                        time.sleep(server.delay)
                    content = server.answer(body["messages"], as_json=constrained(body))
                if content is None:
                    self.send_error(503, "scripted outage")
                    return
                payload = {
                    "id": "chatcmpl-scripted",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model", "scripted"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = Listener(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @contextmanager
    def counting(self) -> Iterator[None]:
        """Counts the requests being answered at once (`most_at_once`: the most so far)."""
        with self._counting:
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            yield
        finally:
            with self._counting:
                self.at_once -= 1

    def answer(self, messages: list[dict], as_json: bool = False) -> str | None:
        """The reply's text (a subclass may return None: the server then answers HTTP 503)."""
        reply = self.reply(messages)
        if as_json and not isinstance(reply, str):
            return json.dumps(reply, indent=2)
        return render(reply)

    def reply(self, messages: list[dict]) -> dict[str, object] | str:
        """The scripted reply (fields, or raw text) to a chat request's messages."""
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        user = messages[-1]["content"]
        outputs = system.split("Your output fields are:")[-1].split("All interactions")[0]
        for marker, key in MARKERS:
            if f"`{marker}`" in outputs:
                return self.script[key](user)
        return {}

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
