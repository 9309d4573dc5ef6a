"""The coding service's API over the real program and knowledge base (Starlette's TestClient):
its answers are the lines `predict --output` writes, its errors one line each, and only
programs on the served host names are answered."""

import json
import logging
import socket
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from programs.batch import code_record
from programs.concurrency import Budget
from programs.lm import make_lm
from programs.registry import load_program
from service.app import MAX_NOTE_BYTES, Coder, create_app

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
SECRET = "Zebrafinch"


@pytest.fixture(scope="module")
def medcoder(kb):
    return load_program("medcoder", kb)


@pytest.fixture
def coder(medcoder):
    budget = Budget(4)
    yield Coder(medcoder, None, "none", budget)
    budget.close()


def test_a_note_is_answered_with_its_predict_line(coder, medcoder):
    note = (EXAMPLES / "diabetes_followup.txt").read_text()
    with TestClient(create_app(coder)) as client:
        assert client.get("/v1/health").json() == {"program": "medcoder", "model": "none", "threads": 4, "coded": 0}
        answer = client.post("/v1/code", json={"id": "d1", "text": note})
        assert answer.status_code == 200
        assert answer.text == code_record(medcoder, "d1", note, None).line
        assert answer.json()["codes"][:2] == ["E11.3293", "E11.42"]
        assert client.post("/v1/code", json={"text": note}).json()["id"] == ""
        assert client.post("/v1/code", json={"id": 7, "text": note}).json()["id"] == "7"
        assert client.get("/v1/health").json()["coded"] == 3


@pytest.mark.parametrize(("body", "status", "error"), [
    (b"not json", 400, 'the body is not JSON: send {"text": NOTE, "id": ID (optional)}'),
    (b'["a note"]', 400, 'send {"text": NOTE, "id": ID (optional)}'),
    (b'{"note": "a note"}', 400, 'send {"text": NOTE, "id": ID (optional)}'),
    (b'{"text": "a note", "id": true}', 400, 'send {"text": NOTE, "id": ID (optional)}'),
    (b'{"text": "  \\n "}', 422, "the note is empty: give a clinical note with some text"),
    (b'{"text": "' + b"a" * MAX_NOTE_BYTES + b'"}', 413, "the note is over 8 MB"),
])
def test_a_body_that_cannot_be_coded_is_one_line(coder, body, status, error):
    with TestClient(create_app(coder)) as client:
        answer = client.post("/v1/code", content=body)
        assert (answer.status_code, answer.json()) == (status, {"error": error})
        assert client.get("/v1/health").json()["coded"] == 0


def test_the_model_failing_is_503_with_its_error(medcoder):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    budget = Budget(2)
    lm = make_lm("scripted", f"http://127.0.0.1:{port}/v1", cache=False, num_retries=0)
    try:
        with TestClient(create_app(Coder(medcoder, lm, "scripted", budget))) as client:
            answer = client.post("/v1/code", json={"text": (EXAMPLES / "knee_injury.txt").read_text()})
    finally:
        budget.close()
    assert answer.status_code == 503
    assert "cannot reach the server" in answer.json()["error"] and "\n" not in answer.json()["error"]


def test_only_programs_on_the_served_host_are_answered_and_no_words_are_logged(coder, caplog):
    log = logging.getLogger("test-service")
    note = {"text": f"Assessment and plan:\nHypertension. {SECRET} the patient."}
    with caplog.at_level(logging.INFO, logger="test-service"), \
            TestClient(create_app(coder, allowed_hosts={"127.0.0.1:8766"}, log=log), base_url="http://127.0.0.1:8766") as client:
        assert client.post("/v1/code", json=note).status_code == 200
        assert client.get("/v1/health", headers={"Host": "attacker.example:8766"}).status_code == 421
        # a page of any site, this one's included: a browser sends Origin or Sec-Fetch-Site
        assert client.post("/v1/code", json=note, headers={"Origin": "http://attacker.example"}).status_code == 403
        assert client.post("/v1/code", json=note, headers={"Origin": "http://127.0.0.1:8766"}).status_code == 403
        assert client.post("/v1/code", json=note, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert client.get("/v1/health").json()["coded"] == 1
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith("POST /v1/code 200 ") and lines[1].startswith("GET /v1/health 421 ")
    assert [line.split()[2] for line in lines] == ["200", "421", "403", "403", "403", "200"]
    assert not any(SECRET in line for line in lines)
    assert json.dumps(note) not in caplog.text
