"""A note under review: decisions, conflicts between tabs, added codes, the dataset line."""

import pytest

from data.jsonl import parse_line
from data.checks import CodeChecker
from review import model
from review.errors import Conflict, ReviewError
from review.model import NoteReview, Span, Suggestion

TEXT = "Essential hypertension, above goal.\nHyperlipidemia. Obesity, BMI 31.\n"
WHO = {"who": "ann", "when": "2026-01-01T00:00:00+00:00"}


def note() -> NoteReview:
    return NoteReview("n1", TEXT, (
        Suggestion("I10", "Essential (primary) hypertension", "matches", (Span(0, 35),)),
        Suggestion("E78.5", "Hyperlipidemia, unspecified", "", (Span(36, 50),)),
        Suggestion("E66.9", "Obesity, unspecified", "", (Span(52, 68),), ("obese patient",)),
    ), program="medcoder")


def test_accept_reject_replace_then_the_coders_codes_and_spans():
    n = note()
    n = model.decide(n, 0, model.ACCEPTED, seen="pending", **WHO)
    n = model.decide(n, 1, model.REJECTED, seen="pending", reason=" not treated ", **WHO)
    n = model.decide(n, 2, model.REPLACED, seen="pending", replacement="E66.01", **WHO)
    assert n.pending == [] and n.changed and n.touched and not n.done
    assert n.decisions["E78.5"].reason == "not treated"
    assert n.final() == [("I10", (Span(0, 35),)), ("E66.01", (Span(52, 68),))]
    assert n.token("E66.9") == "replaced:E66.01" and n.token("E78.5") == "rejected"


def test_a_change_over_a_state_the_page_did_not_show_is_refused():
    accepted = model.decide(note(), 0, model.ACCEPTED, seen="pending", **WHO)
    with pytest.raises(Conflict, match="another tab.*now accepted"):
        model.decide(accepted, 0, model.REJECTED, seen="pending", **WHO)
    undone = model.decide(accepted, 0, model.PENDING, seen="accepted", **WHO)
    assert "I10" not in undone.decisions


def test_bad_decisions_are_one_line_errors():
    with pytest.raises(ReviewError, match="unknown decision"):
        model.decide(note(), 0, "maybe", seen="pending", **WHO)
    with pytest.raises(ReviewError, match="another code"):
        model.decide(note(), 0, model.REPLACED, seen="pending", replacement="I10", **WHO)
    with pytest.raises(ReviewError, match="no suggestion 7"):
        model.decide(note(), 7, model.ACCEPTED, seen="pending", **WHO)


def test_added_code_trims_the_selection_and_is_added_once():
    n = model.add(note(), "Z87.891", 35, 52, **WHO)  # "\nHyperlipidemia. " -> "Hyperlipidemia."
    assert n.added[0].span == Span(36, 51) and TEXT[36:51] == "Hyperlipidemia."
    assert model.add(n, "Z87.891", 36, 51, **WHO) is n
    with pytest.raises(ReviewError, match="outside note"):
        model.add(n, "I10", 10, 999, **WHO)
    with pytest.raises(ReviewError, match="select some words"):
        model.add(n, "I10", 35, 36, **WHO)
    removed = model.remove_added(n, "Z87.891@36-51", **WHO)
    assert removed.added == ()
    with pytest.raises(Conflict):
        model.remove_added(removed, "Z87.891@36-51", **WHO)


def test_done_needs_every_suggestion_decided_and_undo_reopens():
    n = note()
    with pytest.raises(ReviewError, match="decide I10, E78.5, E66.9 first"):
        model.mark_done(n, True, **WHO)
    for i in range(3):
        n = model.decide(n, i, model.ACCEPTED, seen="pending", **WHO)
    n = model.mark_done(n, True, **WHO)
    assert n.status == model.REVIEWED and not n.changed
    assert not model.decide(n, 1, model.PENDING, seen="accepted", **WHO).done
    assert model.decide(n, 1, model.REJECTED, seen="accepted", **WHO).done
    assert model.mark_done(NoteReview("empty", "No findings.", ()), True, **WHO).done


def test_the_line_round_trips_and_is_a_jsonl_dataset_line():
    n = model.decide(note(), 2, model.REPLACED, seen="pending", replacement="E66.01", **WHO)
    n = model.add(n, "Z68.31", 52, 67, **WHO)
    line = model.to_line(n)
    assert model.from_line(line, "out:1") == n
    record = parse_line(line, "out:1", CodeChecker())
    assert record.codes == ("E66.01", "Z68.31")
    assert [(e.code, e.start, e.end) for e in record.evidence] == [("E66.01", 52, 68), ("Z68.31", 52, 67)]
    assert line["review"]["suggestion"]["codes"][2]["unplaced"] == ["obese patient"]
    assert line["review"]["decisions"] == [{"code": "E66.9", "verdict": "replaced", "replacement": "E66.01",
                                            "reviewer": "ann", "time": WHO["when"]}]


@pytest.mark.parametrize("breakage", [
    lambda line: line.pop("review"),
    lambda line: line["review"]["decisions"].append({"code": "Z99.9", "verdict": "accepted"}),
    lambda line: line["review"]["decisions"].append({"code": "I10", "verdict": "replaced"}),
    lambda line: line["review"]["added"].append({"code": "I10", "start": 5, "end": 500}),
])
def test_a_line_that_is_not_a_review_is_refused(breakage):
    line = model.to_line(model.decide(note(), 0, model.ACCEPTED, seen="pending", **WHO))
    breakage(line)
    with pytest.raises(ReviewError, match="^out:3: "):
        model.from_line(line, "out:3")
