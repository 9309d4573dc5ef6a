"""gold-demos: worked demos for every stage from gold codes, mentions and the real KB, no LM
calls; a model that only follows the format when shown demos codes notes after compiling."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dspy
import pytest

from optimizers.compile import evaluate_dev, run_optimizer
from optimizers.registry import NoStageDemos, Settings, get_optimizer
from programs.lm import make_lm
from programs.registry import build_program

NOTE = (Path(__file__).resolve().parents[2] / "data" / "examples" / "diabetes_followup.txt").read_text(encoding="utf-8")
EXAMPLE = dspy.Example(
    id="diabetes_followup",
    note=NOTE,
    codes=["I10", "E78.5", "E66.9"],
    mentions=[{"phrase": "Essential hypertension", "code": "I10"}, {"phrase": "Hyperlipidemia", "code": "E78.5"}],
).with_inputs("note")


def test_medcoder_demos_are_complete_and_hold_the_gold_code(kb):
    demos = build_program("medcoder", kb).stage_demos(EXAMPLE)
    (extract,) = demos["extract"]
    assert len(extract.note) < len(NOTE) / 2
    assert extract.diagnoses == ["Hyperlipidemia", "Essential hypertension", "Obesity, unspecified"]
    assert len(extract.evidence) == 3
    assert all(sentence in " ".join(NOTE.split()) and sentence in extract.note for sentence in extract.evidence)
    assert extract.evidence[1].startswith("Essential hypertension, above goal.")
    assert [demo.code for demo in demos["rerank"]] == ["E78.5", "I10", "E66.9"]
    for demo in demos["rerank"]:
        assert demo.diagnosis and demo.evidence and demo.rationale
        assert 1 < len(demo.candidates) <= 10
        assert any(line.startswith(f"{demo.code}: ") for line in demo.candidates)


def test_a_note_without_its_gold_codes_gives_no_demos(kb):
    unrelated = dspy.Example(note="Right knee sprain after a fall.", codes=["J45.41"]).with_inputs("note")
    assert build_program("medcoder", kb).stage_demos(unrelated) == {}
    with pytest.raises(NoStageDemos, match="no training note gave a demo"):
        get_optimizer("gold-demos").build(None, None, Settings(), None).compile(build_program("medcoder", kb), [unrelated])


def grounded(user: str, answer: str) -> bool:
    """A demo whose answer its own input supports: its evidence quotes its note, its code is one
    of its candidates."""
    from tests.programs.scripted_server import section

    if answer.lstrip().startswith("{"):  # DSPy's JSON fallback
        fields = json.loads(answer)
    else:
        fields = {name: json.loads(value) if value.startswith("[") else value.strip()
                  for name, value in re.findall(r"\[\[ ## (\w+) ## \]\]\n(.*?)(?=\n\n\[\[ ## |\Z)", answer, flags=re.S)}
    if "evidence" in fields and not all(quote in section(user, "note") for quote in fields["evidence"]):
        return False
    return "code" not in fields or f"{fields['code']}:" in section(user, "candidates")


@pytest.fixture(scope="module")
def demo_follower():
    """A scripted server that answers in the expected format only when the prompt holds demos
    whose answers their inputs support (like the small base model, which learns the format from
    demos), and otherwise writes prose no adapter can parse."""
    from tests.programs.scripted_server import ScriptedServer

    class DemoFollower(ScriptedServer):
        def answer(self, messages, as_json=False):
            turns = [m["content"] for m in messages[1:-1]]
            if turns and all(grounded(user, answer) for user, answer in zip(turns[::2], turns[1::2])):
                return super().answer(messages, as_json)
            return "Sure, here is what I think about the note."

    saved = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    with DemoFollower() as running:
        yield running
    dspy.cache = saved


def test_compiled_medcoder_codes_notes_the_hand_written_one_cannot(kb, demo_follower):
    dev = [dspy.Example(id="d", note=NOTE, codes=["I10", "E11.65"]).with_inputs("note")]
    with dspy.context(lm=make_lm("scripted", demo_follower.url)):
        run = run_optimizer(build_program("medcoder", kb), [EXAMPLE], dev, get_optimizer("gold-demos"), Settings(max_demos=2))
    assert run.status == "complete"
    assert run.plan.lm_calls == 0
    # without demos the scripted model reads no diagnosis, so the hand-written program keeps the
    # rules' problems: it scores exactly the floor, and the demos raise it above
    assert run.before.micro_f1 == run.floor.micro_f1 < 0.5
    assert run.after.micro_f1 > 0.5
    assert len(run.program.extract.demos) == 1 and len(run.program.rerank.demos) == 2

    # the same demos with answers their inputs do not support (quotes not in the note, a code
    # that is not a candidate) teach nothing: back to the floor
    ungrounded = run.program.deepcopy()
    ungrounded.extract.demos[0].evidence = ["Patient denies chest pain." for _ in ungrounded.extract.demos[0].evidence]
    for demo in ungrounded.rerank.demos:
        demo.code = "J45.909"
    with dspy.context(lm=make_lm("scripted", demo_follower.url)):
        assert evaluate_dev(ungrounded, dev).micro_f1 == run.floor.micro_f1


def test_clh_demos_walk_the_index_to_the_gold_code(kb):
    demos = build_program("clh", kb).stage_demos(EXAMPLE)
    (extract,) = demos["extract"]
    assert len(extract.statements) == len(extract.lead_terms) == 3 and all(extract.lead_terms)
    assert demos["navigate"]
    for demo in demos["navigate"]:
        entry = demo.entries[int(demo.choice) - 1]
        assert demo.lead_term and demo.next_term == "" and "->" in entry
    for demo in demos["validate"]:
        (gold,) = demo.accepted
        assert any(line.startswith(f"{gold}: ") for line in demo.candidates) and demo.rationale
    (reconcile,) = demos["reconcile"]
    assert sorted(reconcile.final_codes) == ["E66.9", "E78.5", "I10"]
    assert all(line.split(":")[0] in reconcile.final_codes for line in reconcile.candidates)


def test_verify_demos_number_the_gold_description(kb):
    demos = build_program("verify", kb).stage_demos(EXAMPLE)
    (propose,) = demos["propose"]
    assert propose.codes == ["E78.5", "I10", "E66.9"] and len(propose.evidence) == 3
    for demo, code in zip(demos["select"], propose.codes):
        chosen = demo.options[int(demo.choice) - 1]
        assert chosen.split(". ", 1)[1] == kb.require(code).description
        assert demo.evidence and demo.rationale
