"""compare: hand-written and compiled toy programs on the same notes, scored like `evaluate`."""

from __future__ import annotations

import json

import dspy
import pytest
from dspy.utils.exceptions import AdapterParseError
from tests.optimizers.scripted import DEV, TRAIN, Toy, scripted_lm

from data.records import NoteRecord
from optimizers.compare import PlotUnavailable, compare, plot, run_system
from optimizers.compile import run_optimizer
from optimizers.evaluate import evaluate, read_predictions
from optimizers.registry import Settings, get_optimizer
from programs.result import CodedDiagnosis, CodingResult, StageTrace

RECORDS = [NoteRecord(e.id, e.note, tuple(e.codes)) for e in DEV] + [NoteRecord("garbled", "Assessment: garbled.", ("R69",))]


class ResultToy(Toy):
    """The toy returning a programs.result.CodingResult like the real programs."""

    def forward(self, note: str) -> dspy.Prediction:
        with dspy.track_usage() as usage:
            try:
                codes = super().forward(note=note).codes
            except AdapterParseError:
                codes = []
        result = CodingResult("toy", [CodedDiagnosis(c, "", (), "") for c in codes], [StageTrace("assign")], usage.get_total_tokens())
        return dspy.Prediction(codes=result.code_list, result=result)


@pytest.fixture(scope="module")
def comparison():
    lm = scripted_lm()
    with dspy.context(lm=lm):
        compiled = run_optimizer(ResultToy(), TRAIN, DEV, get_optimizer("bootstrap"), Settings(max_demos=2)).program
    runs = [
        run_system("toy", ResultToy(), RECORDS, lm, program_name="toy"),
        run_system("toy.json", compiled, RECORDS, lm, program_name="toy", compiled="toy.json", threads=2),
    ]
    return compare(RECORDS, runs, dataset="toy-dev", resamples=200)


def test_compiled_beats_hand_written_with_a_ci(comparison):
    hand, compiled = comparison.rows
    assert hand.evaluation.scores.micro.f1 == 0.0
    assert compiled.evaluation.scores.micro.f1 == pytest.approx(6 / 7)
    assert hand.difference is None and compiled.baseline == "toy"
    assert compiled.difference.delta == pytest.approx(6 / 7)
    assert 0 < compiled.difference.low <= compiled.difference.delta <= compiled.difference.high


def test_cost_columns(comparison):
    hand, compiled = (row.as_dict() for row in comparison.rows)
    # two stages per note; the garbled note fails to parse at the first stage (chat, then JSON)
    assert hand["lm_calls"] == 3 * 2 + 2
    assert hand["parse_failures"] == 2
    assert compiled["prompt_tokens"] > hand["prompt_tokens"] > 0
    assert hand["seconds_per_note"] > 0


def test_numbers_match_evaluate_on_the_same_predictions(comparison, tmp_path):
    for row in comparison.rows:
        path = tmp_path / "preds.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in row.run.lines))
        predictions, _ = read_predictions(path)
        expected = evaluate(RECORDS, predictions, dataset="toy-dev")
        assert expected.scores.as_dict() == row.evaluation.scores.as_dict()
        assert row.as_dict()["micro"]["f1"] == expected.as_dict()["micro"]["f1"]


def test_plot_without_matplotlib_says_how_to_install(comparison, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(PlotUnavailable, match=r"pip install -e '\.\[plot\]'"):
        plot(comparison, tmp_path / "f1.png")
