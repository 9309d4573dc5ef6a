"""Code notes with a running coding service (`cli.py serve`, `service.app`): one note, or a batch
written to a predictions file as `predict --input` writes it (`programs.predictions`: resumable,
the same lines), with twice the service's threads of notes in flight so that its budget is never
idle. No model code is imported: a client starts in a fraction of a second."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from data.records import NoteRecord
from programs.errors import ModelError, NoteError
from programs.predictions import BatchSummary, Outcome, code_batch, to_code
from service.errors import ServiceError

HEALTH_TIMEOUT = 10.0


@dataclass(frozen=True)
class Service:
    """A coding service that answered at `url`: the program and model it codes with, and the
    threads of its budget."""

    url: str
    program: str
    model: str
    threads: int


def connect(url: str) -> Service:
    """The service at `url` (http://HOST:PORT, as `serve` prints it), once it answers its health
    check; ServiceError when nothing there answers as a coding service."""
    base = url.rstrip("/").removesuffix("/v1")
    try:
        health = _call(base, "/v1/health", None, HEALTH_TIMEOUT)
        return Service(base, str(health["program"]), str(health["model"]), max(1, int(health["threads"])))
    except ServiceError as exc:
        raise ServiceError(f"{exc} (start one with `cli.py serve`)") from None
    except (KeyError, TypeError, ValueError):
        raise ServiceError(f"{url} answers, but not as a coding service of this release (`cli.py serve`)") from None


def code_note(service: Service, text: str, note_id: str = "", timeout: float = 300.0) -> dict:
    """The note's prediction line, {"id", "codes", "result"}: NoteError for a note that cannot be
    coded, ModelError when the service's model fails, ServiceError when the service does not answer
    within `timeout` seconds."""
    line = _call(service.url, "/v1/code", {"id": note_id, "text": text}, timeout)
    if not isinstance(line, dict) or not isinstance(line.get("result"), dict) or "codes" not in line:
        raise ServiceError(f"the coding service at {service.url} answered something other than a prediction")
    return line


def code_batch_remote(service: Service, records: Sequence[NoteRecord], output: Path, *, timeout: float = 300.0,
                      on_note: Callable[[str], None] | None = None) -> BatchSummary:
    """`programs.batch.run_batch`, the notes coded by `service`: every record not already in
    `output` is coded and its line appended as it comes back; a note that cannot be coded is
    listed in `failed`; the model failing or the service going away stops the run, and the
    ModelError says how many notes are saved and that a rerun resumes."""
    todo, summary = to_code(records, Path(output))
    in_flight = 2 * service.threads
    code_batch(todo, summary, lambda record: _outcome(service, record, timeout), threads=in_flight, ahead=in_flight,
               on_note=on_note)
    return summary.finish(len(records))


def _outcome(service: Service, record: NoteRecord, timeout: float) -> Outcome:
    try:
        line = code_note(service, record.text, record.id, timeout)
    except NoteError as exc:
        return Outcome(record.id, failed=str(exc))
    except (ModelError, ServiceError) as exc:
        return Outcome(record.id, stopped=str(exc))
    return Outcome(record.id, json.dumps(line, ensure_ascii=False), line["result"].get("usage") or {})


def _call(base: str, path: str, payload: dict | None, timeout: float):
    """The JSON the service answers at `path` (a POST of `payload`, or a GET); its errors as
    NoteError (422), ModelError (503) or ServiceError."""
    data = None if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]
        except (ValueError, KeyError, TypeError, OSError):
            message = exc.reason
        if exc.code == 422:
            raise NoteError(message) from None
        if exc.code == 503:
            raise ModelError(message) from None
        raise ServiceError(f"the coding service at {base} answered {exc.code}: {message}") from None
    except urllib.error.URLError as exc:
        raise ServiceError(f"the coding service at {base} cannot be reached: {getattr(exc.reason, 'strerror', None) or exc.reason}") from None
    except (TimeoutError, http.client.HTTPException, ConnectionError) as exc:
        reason = "no answer within the timeout" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        raise ServiceError(f"the coding service at {base} stopped answering: {reason}") from None
    except ValueError:
        raise ServiceError(f"the coding service at {base} answered something that is not JSON") from None
