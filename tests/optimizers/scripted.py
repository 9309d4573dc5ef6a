"""A two-stage toy coding program and a scripted LM for optimizer tests.

The scripted LM answers the coding stage correctly only for 'easy' notes, or when the prompt
carries demos that are all right (each demo's codes are the gold codes of its diagnoses: a
demo with a wrong code teaches nothing), or when the stage instruction contains the keyword
SPECIFIC - so well-chosen demos or a proposed instruction measurably raise code F1, and any
demos do not. As a proposer / reflection model it
answers every requested field (or a ``` block) with an instruction containing the keyword.
A note containing 'garbled' gets an answer no adapter can parse.
"""

from __future__ import annotations

import json
import re

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage

KEYWORD = "SPECIFIC"
INSTRUCTION = f"Assign the most {KEYWORD} ICD-10-CM code for each diagnosis."

GOLD = {
    "diabetes with retinopathy": ["E11.319"],
    "essential hypertension": ["I10"],
    "asthma exacerbation": ["J45.901"],
    "knee sprain": ["S83.91XA"],
    "hyperlipidemia": ["E78.5"],
    "gout flare": ["M10.9"],
}
WRONG = {"E11.319": "E11.9", "I10": "I11.9", "J45.901": "J45.909", "S83.91XA": "S83.90XA", "E78.5": "E78.00", "M10.9": "M1A.9XX0"}


def make_examples(names: list[str], easy: bool) -> list[dspy.Example]:
    tag = " (easy)" if easy else ""
    return [
        dspy.Example(id=f"{name}{tag}", note=f"Assessment: {name}{tag}.", codes=GOLD[name]).with_inputs("note")
        for name in names
    ]


TRAIN = make_examples(["diabetes with retinopathy", "essential hypertension", "asthma exacerbation"], easy=True)
DEV = make_examples(["knee sprain", "hyperlipidemia", "gout flare"], easy=False)


class Toy(dspy.Module):
    """extract (note -> diagnoses) then assign (diagnoses -> codes): optimized as a whole."""

    def __init__(self):
        super().__init__()
        self.extract = dspy.Predict("note -> diagnoses: list[str]")
        self.assign = dspy.Predict(dspy.Signature("diagnoses: list[str] -> codes: list[str]", "Assign ICD-10-CM codes."))

    def forward(self, note: str) -> dspy.Prediction:
        diagnoses = self.extract(note=note).diagnoses
        return dspy.Prediction(codes=list(self.assign(diagnoses=diagnoses).codes))


def _field(name: str, value) -> str:
    return f"[[ ## {name} ## ]]\n{value if isinstance(value, str) else json.dumps(value)}\n\n"


CODES_FIELD = re.compile(r"\[\[ ## codes ## \]\]\s*(\[.*?\])", re.S)


def taught(demos: list[str]) -> bool:
    """True when the demo turns (user, assistant, user, ...) hold at least one coding demo and
    every one of them pairs its diagnoses with their gold codes."""
    pairs = [(user, answer) for user, answer in zip(demos[::2], demos[1::2]) if CODES_FIELD.search(answer)]
    return bool(pairs) and all(
        json.loads(CODES_FIELD.search(answer).group(1)) == [code for name in GOLD if name in user for code in GOLD[name]]
        for user, answer in pairs
    )


class ScriptedEngine:
    def __init__(self, proposer_reply: str | None = INSTRUCTION, interrupt_at: int | None = None):
        self.proposer_reply = proposer_reply
        self.interrupt_at = interrupt_at
        self.calls = 0

    def complete(self, request):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system or [])
        messages = [m.text or "" for m in request.messages]
        text = self.reply(system, messages)
        return Response(
            id=None, model="scripted", message=Message.assistant([TextPart(text)]), finish_reason="stop",
            usage=Usage(input_tokens=len(system + "".join(messages)) // 4, output_tokens=len(text) // 4,
                        total_tokens=(len(system + "".join(messages)) + len(text)) // 4),
        )

    def reply(self, system: str, messages: list[str]) -> str:
        last = messages[-1]
        if "garbled" in last:
            return "no idea"
        if "`note`" in system and "`diagnoses`" in system.split("Your output fields are:")[-1]:
            note = last.split("[[ ## note ## ]]")[-1]
            found = [name + (" (easy)" if "(easy)" in note else "") for name in GOLD if name in note]
            return _field("diagnoses", found) + "[[ ## completed ## ]]"
        if "`diagnoses`" in system and "`codes`" in system:
            diagnoses = [name for name in GOLD if name in last]
            good = "(easy)" in last or KEYWORD in system or taught(messages[:-1])
            gold = [code for name in diagnoses for code in GOLD[name]]
            return _field("codes", gold if good else [WRONG[code] for code in gold]) + "[[ ## completed ## ]]"
        return self.propose(system, last)

    def propose(self, system: str, last: str) -> str:
        if self.proposer_reply is None:
            return "I cannot follow this format."
        if "Your output fields are:" not in system:
            return f"```\n{self.proposer_reply}\n```"
        outputs = re.findall(r"\d+\. `(\w+)`", system.split("Your output fields are:")[1].split("All interactions")[0])
        if "Outputs will be a JSON object" in system:
            return json.dumps({name: self.proposer_reply for name in outputs})
        return "".join(_field(name, self.proposer_reply) for name in outputs) + "[[ ## completed ## ]]"


def scripted_lm(proposer_reply: str | None = INSTRUCTION, interrupt_at: int | None = None) -> dspy.LM:
    """`interrupt_at`: the call number on which the 'user' presses Ctrl-C."""
    return dspy.LM("scripted/toy", engine=ScriptedEngine(proposer_reply, interrupt_at), cache=False)
