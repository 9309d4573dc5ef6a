"""Bad input across every command, as a table: each run exits 1 (bad input, a failing model) or 2
(a usage error), prints one line on stderr that starts with 'error:' and names the problem, raises
no traceback, shows no note text, and leaves no file created or changed.

A few rows (those that load a dataset first) print the dataset's load report before the error:
for those the error line is the last line and the only one starting with 'error:'."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from tests.faults.conftest import REPO, SCRIPT, SECRET, note_text
from tests.faults.fault_server import FaultServer, Plan

COMPILED = json.loads((REPO / "programs" / "compiled" / "local.json").read_text(encoding="utf-8"))
UNWRITABLE = "/sys/icd-coder-test" if Path("/sys").is_dir() else "/proc/icd-coder-test"


def compiled_variant(change) -> str:
    payload = json.loads(json.dumps(COMPILED))
    change(payload)
    return json.dumps(payload)


def set_path(payload, path: str, value) -> None:
    *parents, last = path.split(".")
    target = payload
    for key in parents:
        target = target[key]
    target[last] = value


def jsonl(*rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


NOTE = {"id": "a", "text": note_text(1), "codes": ["I10"]}
FILES: dict[str, str | bytes] = {
    "note.txt": note_text(0),
    "empty.txt": "  \n\t\n",
    "binary.bin": b"\x00\x01\x02\x03PK\x00",
    "latin1.txt": f"{SECRET}: hypertension, caf\xe9 au lait spots.".encode("latin-1"),
    "notes.jsonl": jsonl(NOTE, {"id": "b", "text": note_text(2), "codes": ["E11.9"]}),
    "unlabelled.jsonl": jsonl({"id": "a", "text": note_text(1), "codes": []}),
    "blank-notes.jsonl": jsonl({"id": "a", "text": "   "}, {"id": "b", "text": ""}),
    "malformed.jsonl": jsonl(NOTE) + '{"id": "b", "text": "' + SECRET + '"\n',
    "duplicate.jsonl": jsonl(NOTE, NOTE),
    "no-text.jsonl": jsonl({"id": "a", "codes": []}),
    "no-notes.jsonl": "\n\n",
    "binary.jsonl": b"\x00\x00\x00\x01" * 8,
    "latin1.jsonl": (json.dumps({"id": "a", "text": "x"})[:-2] + ' caf\xe9"}\n').encode("latin-1"),
    "outside.jsonl": jsonl({**NOTE, "evidence": [{"code": "I10", "start": 0, "end": 10_000}]}),
    "labels-latin1.csv": "encounter_id,code,diagnosis_mention\nD2N068,I10,h\xe9morragie\n".encode("latin-1"),
    "labels-columns.csv": "encounter,icd\nD2N068,I10\n",
    "labels-empty-code.csv": "encounter_id,code\nD2N068,\n",
    "preds-malformed.jsonl": jsonl({"id": "a", "codes": ["I10"]}) + "garbage\n" + jsonl({"id": "b", "codes": []}),
    "preds-codes.jsonl": jsonl({"id": "a", "codes": "I10"}),
    "a-file": "not a folder",
    "kb-garbage.duckdb": b"this is not a database" * 100,
    "compiled-not-json.json": "{",
    "compiled-not-object.json": "[1, 2]",
    "compiled-metadata.json": compiled_variant(lambda p: set_path(p, "metadata", "medcoder")),
    "compiled-format.json": compiled_variant(lambda p: set_path(p, "metadata.format", "dspy")),
    "compiled-release.json": compiled_variant(lambda p: set_path(p, "metadata.kb_release", "ICD-10-CM FY2019")),
    "compiled-program.json": compiled_variant(lambda p: set_path(p, "program", "gpt-coder")),
    "compiled-state.json": compiled_variant(lambda p: set_path(p, "state", [])),
    "compiled-demos.json": compiled_variant(lambda p: set_path(p, "state.extract.demos", {"note": "x"})),
    "compiled-demo-items.json": compiled_variant(lambda p: set_path(p, "state.rerank.demos", ["I10"])),
    "compiled-instructions.json": compiled_variant(lambda p: set_path(p, "state.rerank.signature.instructions", None)),
    "compiled-fields.json": compiled_variant(lambda p: set_path(p, "state.extract.signature.fields", [{"prefix": 1}])),
    # the shipped file saves the 4 fields of extract (note, problems, diagnoses, evidence): two more
    "compiled-field-count.json": compiled_variant(lambda p: p["state"]["extract"]["signature"]["fields"].extend(
        [{"prefix": "Severity:", "description": "x"}, {"prefix": "Onset:", "description": "y"}])),
    "compiled-lm.json": compiled_variant(lambda p: set_path(p, "state.extract.lm", {"model": "openai/gpt-4o"})),
    "compiled-traces.json": compiled_variant(lambda p: set_path(p, "state.extract.traces", 5)),
    "compiled-stages.json": compiled_variant(lambda p: p["state"].pop("rerank")),
    "compiled-extra-stage.json": compiled_variant(lambda p: set_path(p, "state.verify", p["state"]["extract"])),
}


@dataclass(frozen=True)
class Case:
    args: str
    status: int
    says: str
    reports: bool = False
    """The command loads a dataset (printing its load report) before it meets the bad input."""


MODEL = "--model scripted --api-base {ok}"
DATA = "--train jsonl:{w}/notes.jsonl --dev jsonl:{w}/notes.jsonl"
CASES = {
    # usage errors: exit 2
    "unknown command": Case("codify {w}/note.txt", 2, "No such command 'codify'"),
    "unknown option": Case("predict {w}/note.txt --fast", 2, "No such option '--fast'"),
    "missing argument": Case("icd show", 2, "Missing argument 'CODE'"),
    "search k zero": Case("icd search diabetes --k 0", 2, "0 is not in the range x>=1"),
    "search k negative": Case("icd search diabetes --k -5", 2, "-5 is not in the range x>=1"),
    "search k not a number": Case("icd search diabetes --k many", 2, "'many' is not a valid integer"),
    "search unknown source": Case("icd search diabetes --source web", 2, "'web' is not one of"),
    "index limit zero": Case("icd index Diabetes --limit 0", 2, "0 is not in the range x>=1"),
    "table limit zero": Case("icd table neoplasm pituitary --limit 0", 2, "0 is not in the range x>=1"),
    "unknown table": Case("icd table tumour pituitary", 2, "'tumour' is not one of"),
    "table without term": Case("icd table drug", 2, "Missing argument 'TERM...'"),
    "unknown expansion": Case("icd expand E11.9 --kind cousinz", 2, "'cousinz' is not one of"),
    "empty model": Case("predict {w}/note.txt --model ''", 2, "must name a model"),
    "blank model": Case("predict {w}/note.txt --model '  '", 2, "must name a model"),
    "empty reflection model": Case("compile --program medcoder {DATA} --optimizer gepa --reflection-model '' --out {w}/out/c.json",
                                   2, "must name a model"),
    "api base not a URL": Case("predict {w}/note.txt --model m --api-base localhost:8080", 2, "is not a URL"),
    "timeout zero": Case("predict {w}/note.txt --timeout 0", 2, "--timeout"),
    "timeout not a number": Case("predict {w}/note.txt --timeout soon", 2, "'soon' is not a valid float"),
    "retries negative": Case("predict {w}/note.txt --retries -1", 2, "--retries"),
    "compare retries too many": Case("compare --program medcoder --dataset jsonl:{w}/notes.jsonl --retries 50", 2, "--retries"),
    "compile timeout negative": Case("compile --program medcoder {DATA} --optimizer bootstrap --timeout -1 --out {w}/out/c.json",
                                     2, "--timeout"),
    "unknown decoding": Case("predict {w}/note.txt --model m --api-base {ok} --decoding guided", 2, "'guided' is not one of"),
    "server decoding without a server": Case("predict {w}/note.txt --model m --decoding llama.cpp", 2,
                                             "--decoding llama.cpp names the server at --api-base"),
    "grammar decoding for a server": Case("evaluate --dataset jsonl:{w}/notes.jsonl --program medcoder " + MODEL + " --decoding grammar",
                                          2, "--decoding grammar is the embedded model's"),
    "decoding with no model": Case("compare --program medcoder --dataset jsonl:{w}/notes.jsonl --model none --decoding off {db}", 2,
                                   "--decoding goes with a model"),
    "compile for no model": Case("compile --program medcoder {DATA} --optimizer bootstrap --model none --out {w}/out/c.json",
                                 2, "none runs the coding rules, which have no prompts to compile"),
    "threads zero": Case("predict --input {w}/notes.jsonl --output {w}/out/p.jsonl --threads 0", 2, "--threads"),
    "unknown engine": Case("predict --input {w}/notes.jsonl --output {w}/out/p.jsonl --engine spark", 2, "'spark' is not one of"),
    "ray engine for one note": Case("predict {w}/note.txt --engine ray", 2, "--engine ray codes a batch: it goes with --input"),
    "ray address without ray": Case("predict --input {w}/notes.jsonl --output {w}/out/p.jsonl --ray-address 127.0.0.1:6379", 2,
                                    "--ray-address and --workers go with --engine ray"),
    "workers without ray": Case("evaluate --dataset jsonl:{w}/notes.jsonl --program medcoder --workers 2", 2,
                                "--ray-address and --workers go with --engine ray"),
    "ray engine for predictions": Case("evaluate --dataset jsonl:{w}/notes.jsonl --predictions {w}/notes.jsonl --engine ray", 2,
                                       "--engine ray codes a batch: it goes with --program"),
    "workers zero": Case("predict --input {w}/notes.jsonl --output {w}/out/p.jsonl --engine ray --workers 0", 2, "--workers"),
    "unknown optimizer": Case("compile --program medcoder {DATA} --optimizer adam --out {w}/out/c.json", 2, "'adam' is not one of"),
    "unknown compile program": Case("compile --program gpt {DATA} --optimizer bootstrap --out {w}/out/c.json", 2, "'gpt' is not one of"),
    "compile without train": Case("compile --program medcoder --dev jsonl:{w}/notes.jsonl --optimizer bootstrap --out {w}/out/c.json",
                                  2, "Missing option '--train'"),
    "compile out is a folder": Case("compile --program medcoder {DATA} --optimizer bootstrap --out {w}", 2, "is a directory"),
    "too few resamples": Case("compare --program medcoder --dataset jsonl:{w}/notes.jsonl --resamples 10", 2, "--resamples"),
    "evaluate without dataset": Case("evaluate --predictions {w}/notes.jsonl", 2, "Missing option '--dataset'"),
    "export without out": Case("data export jsonl:{w}/notes.jsonl", 2, "Missing argument 'OUT'"),
    "traces without out": Case("data traces --dataset jsonl:{w}/notes.jsonl --from-gold", 2, "Missing option '--out'"),
    "traces min-f1 above 1": Case("data traces --dataset jsonl:{w}/notes.jsonl --from-gold --min-f1 2 --out {w}/out/t.jsonl",
                                  2, "is not in the range 0<=x<=1"),
    "build db is a folder": Case("icd build --db {w}", 2, "is a directory"),
    # the knowledge base: exit 1
    "traces program and gold": Case("data traces --dataset jsonl:{w}/notes.jsonl --from-gold --program clh --out {w}/out/t.jsonl {db}",
                                    1, "give either --program"),
    "traces out is the input": Case("data traces --dataset jsonl:{w}/notes.jsonl --from-gold --out {w}/notes.jsonl {db}",
                                    1, "is the input file"),
    "traces aci without labels": Case("data traces --dataset aci:train --from-gold --out {w}/out/t.jsonl {db}", 1, "pass --labels"),
    "malformed code": Case("icd show XYZ {db}", 1, "XYZ"),
    "unknown code": Case("icd show Z99.999 {db}", 1, "Z99.999"),
    "expand malformed code": Case("icd expand 12345 {db}", 1, "12345"),
    "unknown index term": Case("icd index Xyzzyplugh {db}", 1, "no main term of the alphabetic index matches 'Xyzzyplugh'"),
    "missing knowledge base": Case("icd show E11.9 --db {w}/none.duckdb", 1, "no knowledge base at"),
    "garbage knowledge base": Case("icd show E11.9 --db {w}/kb-garbage.duckdb", 1, "cannot read knowledge base"),
    "build from a missing source": Case("icd build --source {w}/no-source --db {w}/new.duckdb", 1, "no-source"),
    "build db under a file": Case("icd build --db {w}/a-file/kb.duckdb", 1, "a-file is a file, not a folder"),
    "build db not writable": Case(f"icd build --db {UNWRITABLE}/kb.duckdb", 1, "cannot write in"),
    # datasets: exit 1
    "unknown dataset kind": Case("data export notes {w}/out/x.jsonl", 1, "unknown dataset 'notes'"),
    "unknown aci split": Case("data export aci:training {w}/out/x.jsonl", 1, "unknown ACI-BENCH split 'training'"),
    "unknown mdace split": Case("data export mdace:dev {w}/out/x.jsonl", 1, "unknown MDACE dataset"),
    "mdace without notes": Case("data export mdace:test {w}/out/x.jsonl", 1, "--mimic-notes"),
    "missing jsonl": Case("data export jsonl:{w}/none.jsonl {w}/out/x.jsonl", 1, "not found"),
    "malformed jsonl": Case("data export jsonl:{w}/malformed.jsonl {w}/out/x.jsonl", 1, "malformed.jsonl:2: malformed JSON"),
    "duplicate ids": Case("data export jsonl:{w}/duplicate.jsonl {w}/out/x.jsonl", 1, "duplicate id 'a'"),
    "jsonl line without text": Case("data export jsonl:{w}/no-text.jsonl {w}/out/x.jsonl", 1, '"text" must be a string'),
    "jsonl without notes": Case("data export jsonl:{w}/no-notes.jsonl {w}/out/x.jsonl", 1, "holds no notes"),
    "binary jsonl": Case("data export jsonl:{w}/binary.jsonl {w}/out/x.jsonl", 1, "is binary"),
    "latin-1 jsonl": Case("data export jsonl:{w}/latin1.jsonl {w}/out/x.jsonl", 1, "is not UTF-8 text (byte 0xe9 on line 1)"),
    "evidence outside the text": Case("data export jsonl:{w}/outside.jsonl {w}/out/x.jsonl", 1, "outside the text"),
    "labels on jsonl": Case("data export jsonl:{w}/notes.jsonl {w}/out/x.jsonl --labels {w}/labels-columns.csv", 1,
                            "--labels applies to aci datasets only"),
    "latin-1 labels": Case("data export aci:train {w}/out/x.jsonl --labels {w}/labels-latin1.csv", 1,
                           "labels-latin1.csv is not UTF-8 text (byte 0xe9 on line 2)"),
    "labels without columns": Case("data export aci:train {w}/out/x.jsonl --labels {w}/labels-columns.csv", 1,
                                   "needs columns encounter_id and code"),
    "labels with an empty code": Case("data export aci:train {w}/out/x.jsonl --labels {w}/labels-empty-code.csv", 1,
                                      "empty encounter_id or code"),
    "missing labels": Case("data export aci:train {w}/out/x.jsonl --labels {w}/none.csv", 1, "labels file not found"),
    "export over its input": Case("data export jsonl:{w}/notes.jsonl {w}/notes.jsonl", 1, "is the input file"),
    "export under a file": Case("data export jsonl:{w}/notes.jsonl {w}/a-file/x.jsonl", 1, "a-file is a file, not a folder"),
    "export not writable": Case(f"data export jsonl:{{w}}/notes.jsonl {UNWRITABLE}/x.jsonl", 1, "cannot write in"),
    # evaluate and retrieval-eval: exit 1
    "evaluate without labels": Case("evaluate --dataset aci:valid --predictions {w}/notes.jsonl", 1, "needs gold codes"),
    "evaluate neither input": Case("evaluate --dataset jsonl:{w}/notes.jsonl", 1, "give either --predictions"),
    "evaluate model without program": Case("evaluate --dataset jsonl:{w}/notes.jsonl --predictions {w}/notes.jsonl --model m",
                                           1, "go with --program"),
    "missing predictions": Case("evaluate --dataset jsonl:{w}/notes.jsonl --predictions {w}/none.jsonl {db}", 1,
                                "predictions file not found", reports=True),
    "malformed predictions": Case("evaluate --dataset jsonl:{w}/notes.jsonl --predictions {w}/preds-malformed.jsonl {db}", 1,
                                  "preds-malformed.jsonl:2: malformed JSON", reports=True),
    "predicted codes not a list": Case("evaluate --dataset jsonl:{w}/notes.jsonl --predictions {w}/preds-codes.jsonl {db}", 1,
                                       '"codes" must be a list of strings', reports=True),
    "evaluate output over its input": Case("evaluate --dataset jsonl:{w}/notes.jsonl --program medcoder --output {w}/notes.jsonl",
                                           1, "is the input file"),
    "evaluate against a dead model": Case("evaluate --dataset jsonl:{w}/notes.jsonl --program medcoder --model scripted "
                                          "--api-base {dead} --retries 0 --output {w}/out/p.jsonl {db}", 1,
                                          "cannot reach the server", reports=True),
    "recall cut-off zero": Case("retrieval-eval --dataset jsonl:{w}/notes.jsonl --k 0", 1, "--k must be positive"),
    "recall cut-off words": Case("retrieval-eval --dataset jsonl:{w}/notes.jsonl --k one,two", 1, "comma-separated integers"),
    # predict: exit 1
    "missing note": Case("predict {w}/none.txt {db}", 1, "cannot read note"),
    "note is a folder": Case("predict {w} {db}", 1, "cannot read note"),
    "empty note": Case(f"predict {{w}}/empty.txt {MODEL} {{db}}", 1, "is empty"),
    "binary note": Case(f"predict {{w}}/binary.bin {MODEL} {{db}}", 1, "is binary, not text"),
    "latin-1 note": Case(f"predict {{w}}/latin1.txt {MODEL} {{db}}", 1, "is not UTF-8 text (byte 0xe9 on line 1)"),
    "note and input": Case("predict {w}/note.txt --input {w}/notes.jsonl --output {w}/out/p.jsonl", 1, "give either NOTE"),
    "input without output": Case("predict --input {w}/notes.jsonl", 1, "--input needs --output"),
    "output without input": Case("predict {w}/note.txt --output {w}/out/p.jsonl", 1, "--output goes with --input"),
    "output over its input": Case("predict --input {w}/notes.jsonl --output {w}/notes.jsonl", 1, "is the input file"),
    "output over its input by spec": Case("predict --input jsonl:{w}/notes.jsonl --output {w}/notes.jsonl", 1, "is the input file"),
    "output under a file": Case("predict --input {w}/notes.jsonl --output {w}/a-file/p.jsonl", 1, "a-file is a file, not a folder"),
    "output not writable": Case(f"predict --input {{w}}/notes.jsonl --output {UNWRITABLE}/p.jsonl", 1, "cannot write in"),
    "output with a malformed line": Case(f"predict --input {{w}}/notes.jsonl --output {{w}}/preds-malformed.jsonl {MODEL} {{db}}",
                                         1, "preds-malformed.jsonl:2 is not a prediction line"),
    "every note blank": Case(f"predict --input {{w}}/blank-notes.jsonl --output {{w}}/out/p.jsonl {MODEL} {{db}}", 1,
                             "none of the 2 notes"),
    "no model with a server": Case("predict {w}/note.txt --model none --api-base {ok} {db}", 1,
                                   "--api-base goes with a model; --model none runs the coding rules alone"),
    "empty note, no model": Case("predict {w}/empty.txt {db}", 1, "is empty"),
    "every note blank, no model": Case("predict --input {w}/blank-notes.jsonl --output {w}/out/p.jsonl {db}", 1,
                                       "none of the 2 notes"),
    "evaluate every note blank": Case("evaluate --dataset jsonl:{w}/blank-notes.jsonl --program medcoder "
                                      "--output {w}/out/p.jsonl {db}", 1, "none of the 2 notes", reports=True),
    "unknown program": Case("predict {w}/note.txt --program gpt-coder {db}", 1, "unknown program 'gpt-coder'"),
    "missing compiled file": Case("predict {w}/note.txt --program {w}/none.json {db}", 1, "no compiled program at"),
    # without the `local` extra the first thing to say is what to install
    "missing gguf": Case("predict {w}/note.txt --model local:{w}/none.gguf {db}", 1,
                         "no GGUF model at" if find_spec("llama_cpp") else "needs llama-cpp-python"),
    "dead model": Case("predict {w}/note.txt --program medcoder --model scripted --api-base {dead} --retries 0 {db}", 1,
                       "cannot reach the server"),
    "server error": Case("predict {w}/note.txt --program medcoder --model scripted --api-base {s500} --retries 0 {db}", 1,
                         "server error (HTTP 500"),
    "empty answers": Case("predict {w}/note.txt --program verify --model scripted --api-base {empty} --retries 0 {db}", 1,
                          "empty answers"),
    "batch against a dead model": Case("predict --input {w}/notes.jsonl --output {w}/out/p.jsonl --model scripted "
                                       "--program medcoder --api-base {dead} --retries 0 {db}", 1,
                                       "0 of 2 notes are saved in {w}/out/p.jsonl: rerun with --output {w}/out/p.jsonl to resume"),
    # compile and compare: exit 1
    "compile out under a file": Case("compile --program medcoder {DATA} --optimizer bootstrap --out {w}/a-file/c.json", 1,
                                     "a-file is a file, not a folder"),
    "compile out not writable": Case(f"compile --program medcoder {{DATA}} --optimizer bootstrap --out {UNWRITABLE}/c.json", 1,
                                     "cannot write in"),
    "compile without gold codes": Case("compile --program medcoder --train jsonl:{w}/unlabelled.jsonl --dev jsonl:{w}/notes.jsonl "
                                       "--optimizer bootstrap --out {w}/out/c.json {db}", 1, "has no gold codes", reports=True),
    "compile against a dead model": Case("compile --program medcoder {DATA} --optimizer bootstrap --model scripted --api-base {dead} "
                                         "--retries 0 --out {w}/out/c.json {db}", 1, "cannot reach the server", reports=True),
    "compare nothing": Case("compare --dataset jsonl:{w}/notes.jsonl", 1, "give --program and/or --compiled"),
    "compare plot under a file": Case("compare --program medcoder --dataset jsonl:{w}/notes.jsonl --plot {w}/a-file/p.png", 1,
                                      "a-file is a file, not a folder"),
    "compare a broken compiled file": Case("compare --compiled {w}/compiled-demos.json --dataset jsonl:{w}/notes.jsonl {db}", 1,
                                           '"demos" must be a list of objects', reports=True),
    # review: exit 1
    "review out over the predictions": Case("review --dataset jsonl:{w}/notes.jsonl --predictions {w}/notes.jsonl "
                                            "--out {w}/notes.jsonl {db}", 1, "is an input file"),
    "review out under a file": Case("review --dataset jsonl:{w}/notes.jsonl --predictions {w}/notes.jsonl "
                                    "--out {w}/a-file/d.jsonl {db}", 1, "a-file is a file, not a folder"),
    "review missing predictions": Case("review --dataset jsonl:{w}/notes.jsonl --predictions {w}/none.jsonl "
                                       "--out {w}/out/d.jsonl {db}", 1, "none.jsonl", reports=True),
    "review port out of range": Case("review --dataset jsonl:{w}/notes.jsonl --predictions {w}/notes.jsonl "
                                     "--out {w}/out/d.jsonl --port 70000", 2, "70000 is not in the range"),
}
COMPILED_CASES = {
    "not-json": "not JSON",
    "not-object": "needs program, metadata and state",
    "metadata": '"metadata" must be an object',
    "format": "format 'dspy'",
    "release": "compiled against knowledge base 'ICD-10-CM FY2019'",
    "program": "holds program 'gpt-coder'",
    "state": '"state" must be an object',
    "demos": '"demos" must be a list of objects',
    "demo-items": '"demos" must be a list of objects',
    "instructions": '"signature.instructions" must be a string',
    "fields": '"signature.fields" must be a list',
    "field-count": "the 6 fields saved for stage 'extract' do not fit the 4 fields",
    "lm": '"lm" must be null',
    "traces": '"traces" and "train" must be lists',
    "stages": "are not those of program 'medcoder'",
    "extra-stage": "are not those of program 'medcoder'",
}
for name, says in COMPILED_CASES.items():
    CASES[f"compiled file: {name}"] = Case(f"predict {{w}}/note.txt --program {{w}}/compiled-{name}.json {MODEL} {{db}}", 1, says)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad-inputs")
    for name, content in FILES.items():
        target = folder / name
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def servers():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    with FaultServer(script=SCRIPT) as ok, FaultServer(Plan(first=99, kinds=("500",)), SCRIPT) as s500, \
            FaultServer(Plan(first=99, kinds=("empty",)), SCRIPT) as empty:
        yield {"ok": ok.url, "s500": s500.url, "empty": empty.url, "dead": dead}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def command(case: Case, workspace: Path, kb_path: Path, servers: dict[str, str]) -> list[str]:
    import shlex

    text = case.args.replace("{DATA}", DATA).replace("{db}", f"--db {kb_path}")
    return shlex.split(text.format(w=workspace, **servers))


def test_the_table_is_large_enough():
    assert len(CASES) >= 60
    assert {case.status for case in CASES.values()} == {1, 2}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_clear_line(name, workspace, kb_path, servers, monkeypatch, isolated_cache):
    case = CASES[name]
    monkeypatch.setenv("ICD_DB", str(workspace / "default-kb-absent.duckdb"))
    before = snapshot(workspace)
    result = CliRunner().invoke(cli, command(case, workspace, kb_path, servers))
    assert result.exit_code == case.status, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert case.reports or len(lines) == 1, result.stderr
    says = case.says.format(w=workspace)
    assert says in " ".join(errors[0].split()), errors[0]
    assert SECRET not in result.output
    assert snapshot(workspace) == before, "no file created or changed"


@pytest.mark.parametrize("name", ["empty model", "latin-1 note", "dead model"])
def test_a_real_process_prints_the_same_single_line(name, workspace, kb_path, servers):
    case = CASES[name]
    done = subprocess.run([sys.executable, "cli.py", *command(case, workspace, kb_path, servers)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == case.status
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error:") and case.says in done.stderr
    assert "Traceback" not in done.stderr and SECRET not in done.stderr + done.stdout
