"""The note as the page shows it: segments, headings, escaping, and the coder-judged summary."""

import html
import re

from programs.result import Dropped, StageTrace
from review import model
from review.highlight import Mark, headings, segments
from review.model import NoteReview, Span, Suggestion
from review.summary import summarize
from review.views import Card, code_trace, note_html

WHO = {"who": "ann", "when": "t"}


def test_segments_cover_the_text_and_carry_overlapping_marks():
    text = "CHIEF COMPLAINT: chest pain.\nASSESSMENT AND PLAN\n1. Chest pain, atypical.\n"
    pieces = segments(text, [Mark("s0", 17, 27), Mark("s1", 23, 27), Mark("a0", 52, 72), Mark("bad", 5, 500)])
    assert "".join(p.text for p in pieces) == text
    assert all(text[p.start:p.start + len(p.text)] == p.text for p in pieces)
    by_text = {p.text: p for p in pieces}
    assert by_text["chest "].keys == ("s0",) and by_text["pain"].keys == ("s0", "s1")
    assert by_text["CHIEF COMPLAINT:"].heading and by_text["ASSESSMENT AND PLAN"].heading
    assert by_text["Chest pain, atypical"].keys == ("a0",)


def test_headings_are_upper_case_labels_not_sentences():
    text = "HPI: The patient.\nBP 120/80. COPD is stable.\n  PLAN:\nFollow up.\nREVIEW OF SYSTEMS\n"
    assert [text[s:e] for s, e in headings(text)] == ["HPI:", "PLAN:", "REVIEW OF SYSTEMS"]


def card(key, code, state="pending", colour=0):
    return Card(key=key, kind="suggested", index=0, colour=colour, code=code, description=f"<{code}> & co", state=state)


def test_note_html_escapes_the_note_and_keeps_every_offset():
    text = "<script>alert(1)</script>\r\nHTN & \"DM\" <b>x</b> 😀 end"
    note = NoteReview("n", text, (Suggestion("I10", spans=(Span(27, 30),)),))
    page = str(note_html(note, [card("s0", "I10")]))
    assert "<script>" not in page and "<b>" not in page and "&lt;script&gt;" in page
    assert "&#13;" in page and "\r" not in page
    assert 'title="I10 &lt;I10&gt; &amp; co"' in page
    # what a browser reads back: each element's data-o is the offset of its text in the note
    for start, body in re.findall(r'data-o="(\d+)"[^>]*>([^<]*)<', page):
        unescaped = html.unescape(body)
        assert text[int(start):int(start) + len(unescaped)] == unescaped


def test_code_trace_names_a_code_not_its_longer_siblings():
    trace = [StageTrace("rerank", proposed=["diabetes: E11.65", "diabetes: E11.6"], kept=["E11.6"],
                        dropped=[Dropped("E11.649", "no evidence")], log=["E11.6 completed"], codes=["E11.6"])]
    assert code_trace(trace, "E11.6") == ["rerank: proposed diabetes: E11.6", "rerank: kept E11.6",
                                          "rerank: E11.6 completed", "rerank: passed on"]


def test_summary_counts_the_coder_as_gold_over_reviewed_notes_only():
    one = NoteReview("1", "Hypertension. Diabetes. Obesity.", (
        Suggestion("I10", spans=(Span(0, 12),)), Suggestion("E11.9", spans=(Span(14, 22),)), Suggestion("E66.9"),
    ))
    one = model.decide(one, 0, model.ACCEPTED, seen="pending", **WHO)
    one = model.decide(one, 1, model.REPLACED, seen="pending", replacement="E11.65", **WHO)
    one = model.decide(one, 2, model.REJECTED, seen="pending", reason="not assessed", **WHO)
    one = model.add(one, "E66.01", 24, 31, **WHO)
    one = model.mark_done(one, True, **WHO)
    two = model.mark_done(model.decide(NoteReview("2", "Hypertension.", (Suggestion("I10"),)), 0, model.REJECTED,
                                       seen="pending", **WHO), True, **WHO)
    open_note = model.decide(NoteReview("3", "x", (Suggestion("Z00.00"),)), 0, model.REJECTED, seen="pending", **WHO)
    result = summarize([one, two, open_note])
    assert (result.reviewed, result.total) == (2, 3)
    assert (result.overall.tp, result.overall.fp, result.overall.fn) == (1, 3, 2)
    assert result.overall.precision == 1 / 4 and result.overall.recall == 1 / 3
    rows = {row.code: row for row in result.codes}
    assert "Z00.00" not in rows
    assert (rows["I10"].counts.tp, rows["I10"].counts.fp, rows["I10"].rejected) == (1, 1, 1)
    assert [r.code for r in result.most_rejected()] == ["E11.9", "E66.9", "I10"]
    assert [r.code for r in result.most_added()] == ["E11.65", "E66.01"]
    assert rows["E66.9"].reasons == ("not assessed",) and rows["E11.9"].reasons == ("replaced by E11.65",)
    assert result.as_dict()["overall"]["recall"] == 1 / 3
