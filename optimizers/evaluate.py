"""Scores a predictions file ({"id", "codes", "evidence"?, "result"?} per line) against a
dataset, the recall after each stage of the programs' traces ("result"), and how each stage's
LM answers were decoded and read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from data.errors import DatasetError
from data.checks import CodeChecker, Validator
from data.jsonl import read_json_lines
from data.records import Evidence, FlaggedCode, NoteRecord
from icd_graph.codes import normalize
from icd_graph.errors import MalformedCode
from optimizers.metrics import Counts, Scores, aggregate, category, counts, score_note
from programs.result import CodingResult


@dataclass(frozen=True)
class Prediction:
    id: str
    codes: tuple[str, ...]
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class Evaluation:
    dataset: str
    scores: Scores
    missing: tuple[str, ...]
    unknown: tuple[str, ...]
    flagged_predictions: tuple[FlaggedCode, ...]

    def as_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            **self.scores.as_dict(),
            "missing_predictions": list(self.missing),
            "unknown_ids": list(self.unknown),
            "flagged_predictions": [{"note_id": f.note_id, "code": f.code, "reason": f.reason} for f in self.flagged_predictions],
        }


def result_evidence(result: dict) -> list[dict]:
    """Evidence spans of a program's CodingResult dict (programs/result.py) in the file format."""
    return [
        {"code": item["code"], **{k: ev["span"][k] for k in ("start", "end")}}
        for item in result.get("codes") or ()
        for ev in item.get("evidence") or ()
        if ev.get("span")
    ]


def parse_prediction(payload: object, where: str, check: CodeChecker) -> Prediction:
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), (str, int)):
        raise DatasetError(f'{where}: expected an object with "id" and "codes"')
    note_id, codes = str(payload["id"]), payload.get("codes")
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise DatasetError(f'{where}: "codes" must be a list of strings')
    evidence = payload.get("evidence")
    if evidence is None and isinstance(payload.get("result"), dict):
        evidence = result_evidence(payload["result"])
    try:
        spans = tuple(Evidence(check(note_id, e["code"]), int(e["start"]), int(e["end"])) for e in evidence or ())
    except (KeyError, TypeError, ValueError, AttributeError):
        raise DatasetError(f'{where}: "evidence" items need code, start and end') from None
    return Prediction(note_id, tuple(dict.fromkeys(check(note_id, c) for c in codes)), spans)


def read_predictions(path: Path, *, validator: Validator | None = None) -> tuple[tuple[Prediction, ...], tuple[FlaggedCode, ...]]:
    """Predictions in file order, and the predicted codes that are malformed (or not billable)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"predictions file not found: {path}")
    check = CodeChecker(validator)
    predictions: dict[str, Prediction] = {}
    for where, payload in read_json_lines(path):
        prediction = parse_prediction(payload, where, check)
        if prediction.id in predictions:
            raise DatasetError(f"{where}: duplicate prediction for id {prediction.id!r}")
        predictions[prediction.id] = prediction
    return tuple(predictions.values()), tuple(check.flagged)


def evaluate(
    records: Sequence[NoteRecord],
    predictions: Iterable[Prediction],
    *,
    dataset: str = "",
    flagged_predictions: Sequence[FlaggedCode] = (),
) -> Evaluation:
    """Scores every record; a record without a prediction counts as an empty prediction and
    predictions for ids outside the dataset are ignored. Both are listed in the result."""
    by_id = {p.id: p for p in predictions}
    empty = Prediction("", ())
    notes = [
        score_note(
            r.id,
            r.codes,
            by_id.get(r.id, empty).codes,
            text=r.text,
            gold_evidence=r.evidence,
            predicted_evidence=by_id.get(r.id, empty).evidence,
        )
        for r in records
    ]
    ids = {r.id for r in records}
    return Evaluation(
        dataset=dataset,
        scores=aggregate(notes),
        missing=tuple(r.id for r in records if r.id not in by_id),
        unknown=tuple(p for p in by_id if p not in ids),
        flagged_predictions=tuple(f for f in flagged_predictions if f.note_id in ids),
    )


@dataclass(frozen=True)
class StageRecall:
    """Micro recall of the gold codes (and of their categories) among the codes a stage passed
    on, and how many codes it passed on per note."""

    stage: str
    code_recall: float
    category_recall: float
    codes_per_note: float

    def as_dict(self) -> dict:
        return asdict(self)


def read_results(path: Path) -> dict[str, CodingResult]:
    """The programs' results ("result" with a "trace") of a predictions file, by note id."""
    results: dict[str, CodingResult] = {}
    for where, payload in read_json_lines(Path(path)):
        result = payload.get("result") if isinstance(payload, dict) else None
        if not isinstance(result, dict) or "trace" not in result:
            continue
        try:
            results[str(payload["id"])] = CodingResult.from_dict(result)
        except (KeyError, TypeError, AttributeError):
            raise DatasetError(f'{where}: "result" is not a program result (programs/result.py CodingResult)') from None
    return results


def stage_codes(result: CodingResult | None, stage: str) -> set[str]:
    codes = set()
    for trace in result.trace if result else ():
        if trace.stage == stage:
            for code in trace.codes or ():
                try:
                    codes.add(normalize(code))
                except MalformedCode:
                    codes.add(code.strip())
    return codes


def stage_recall(records: Sequence[NoteRecord], results: Mapping[str, CodingResult]) -> list[StageRecall]:
    """Recall after each stage that deals in codes, in stage order (the per-stage recall of
    Code Like Humans); the last stage passes on the final codes. A note without a result
    passed nothing on."""
    stages = dict.fromkeys(
        trace.stage for record in records if record.id in results for trace in results[record.id].trace if trace.codes is not None
    )
    rows = []
    for stage in stages:
        code_counts, category_counts, passed = Counts(), Counts(), 0
        for record in records:
            codes = stage_codes(results.get(record.id), stage)
            code_counts += counts(record.codes, codes)
            category_counts += counts(map(category, record.codes), map(category, codes))
            passed += len(codes)
        rows.append(StageRecall(stage, code_counts.recall, category_counts.recall, passed / len(records)))
    return rows


@dataclass(frozen=True)
class StageAnswers:
    """How one stage's LM calls went over the notes: answers decoded under a constraint, answers
    that failed to parse (read by DSPy's JSON retry, the lenient reader, or not at all), answers
    naming a value outside the candidates the call listed, and constrained answers in which the
    grammar overrode the model (the embedded model, answers not served from DSPy's cache)."""

    stage: str
    calls: int
    constrained: int
    parse_failures: int
    outside: int
    overridden: int
    paths: dict[str, int]

    def as_dict(self) -> dict:
        return asdict(self)


def stage_answers(results: Iterable[CodingResult]) -> list[StageAnswers]:
    """Per stage that called an LM, in stage order, its answers summed over `results`."""
    answers: dict[str, list] = {}
    for result in results:
        for trace in result.trace:
            if trace.answers:
                answers.setdefault(trace.stage, []).extend(trace.answers)
    rows = []
    for stage, calls in answers.items():
        paths: dict[str, int] = {}
        for answer in calls:
            paths[answer.path] = paths.get(answer.path, 0) + 1
        rows.append(StageAnswers(
            stage, len(calls), sum(answer.constrained for answer in calls), sum(answer.parse_failed for answer in calls),
            sum(answer.outside > 0 for answer in calls), sum(answer.overrides > 0 for answer in calls), paths,
        ))
    return rows
