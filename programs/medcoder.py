"""MedCodER: extract diagnoses with evidence -> retrieve candidates per diagnosis from the
knowledge base -> the LM re-ranks them and picks the code.

Grounding: a diagnosis whose evidence is not found in the note is dropped, and a code outside
the retrieved candidates is replaced by the top candidate (small models copy demo answers)."""

from __future__ import annotations

import dspy

from programs.base import CodingProgram, evidence_missing, naming_evidence, run_stage
from programs.demos import excerpt, gold_diagnoses, with_gold
from programs.guarantees import Assembler
from programs.result import CodedDiagnosis, StageTrace
from signatures import ExtractDiagnoses, RerankCandidates

NONE = "NONE"


class MedCoder(CodingProgram):
    name = "medcoder"

    def __init__(self, kb, candidates: int = 10, **options):
        super().__init__(kb, **options)
        self.candidates = candidates
        self.extract = dspy.Predict(ExtractDiagnoses)
        self.rerank = dspy.Predict(RerankCandidates)

    def code_note(self, note: str) -> tuple[list[CodedDiagnosis], list[StageTrace]]:
        extract = StageTrace("extract")
        retrieve = StageTrace("retrieve", codes=[])
        rerank = StageTrace("rerank", codes=[])
        assembler = Assembler(self.kb, note)
        for diagnosis, quote in self.diagnoses(note, extract):
            hits = self.kb.search(diagnosis, k=self.candidates, source="all")
            options = {hit.code: hit.description for hit in hits}
            if not options:
                retrieve.drop(diagnosis, "no candidate codes found in the knowledge base")
                continue
            retrieve.proposed.append(f"{diagnosis}: {', '.join(options)}")
            retrieve.kept.append(diagnosis)
            retrieve.pass_on(options)
            listed = [f"{code}: {description}" for code, description in options.items()]
            pick = run_stage(self.rerank, rerank, diagnosis=diagnosis, evidence=quote, candidates=listed)
            if pick is None:
                code, rationale = next(iter(options)), "top retrieved candidate (re-ranker output unreadable)"
            else:
                code, rationale = pick.code.strip(), pick.rationale.strip()
            rerank.proposed.append(f"{diagnosis}: {code}")
            if not code or code.upper() == NONE:
                rerank.drop(diagnosis, f"no candidate fits: {rationale}")
                continue
            if code not in options:
                top = next(iter(options))
                rerank.log.append(f"{code} for {diagnosis!r} is not among the retrieved candidates; the top candidate {top} is used")
                code, rationale = top, "top retrieved candidate (the re-ranker named a code outside the candidates)"
            assembler.add(code, [quote], rationale, rerank, context=f"{diagnosis} {quote}")
        rerank.codes = assembler.codes
        return assembler.build(), [extract, retrieve, rerank]

    def stage_demos(self, example: dspy.Example) -> dict[str, list[dspy.Example]]:
        """Worked demos from a note's gold codes and mentions: an excerpt -> its diagnoses and
        evidence for `extract`, and per diagnosis the retrieved candidates (gold kept) -> the
        gold code for `rerank`."""
        gold = gold_diagnoses(example, self.kb)
        if not gold:
            return {}
        extract = dspy.Example(
            note=excerpt(example.note, gold), diagnoses=[d.phrase for d in gold], evidence=[d.sentence for d in gold]
        )
        rerank = []
        for d in gold:
            listed = [f"{hit.code}: {hit.description}" for hit in self.kb.search(d.phrase, k=self.candidates, source="all")]
            title = self.kb.require(d.code).description
            candidates = with_gold(listed, f"{d.code}: {title}", self.candidates)
            rationale = f"{d.code} ({title}) matches the documented {d.phrase.lower()}."
            rerank.append(dspy.Example(diagnosis=d.phrase, evidence=d.sentence, candidates=candidates, code=d.code, rationale=rationale))
        return {"extract": [extract], "rerank": rerank}

    def diagnoses(self, note: str, trace: StageTrace) -> list[tuple[str, str]]:
        """(diagnosis, evidence quote) pairs over every part of the note, without repeats; a
        diagnosis whose evidence is not in the note is dropped, and a quote that names none of
        the diagnosis's words gives way to the diagnosis as the note writes it."""
        pairs = []
        for diagnosis, quote in self.read_pairs(self.extract, note, trace, ("diagnoses", "evidence"), "diagnosis", evidence_missing(note)):
            evidence = naming_evidence(note, diagnosis, quote)
            if evidence != quote:
                trace.log.append(f"evidence {quote!r} does not name {diagnosis!r}; the note's {diagnosis!r} is quoted instead")
            pairs.append((diagnosis, evidence))
        return pairs
