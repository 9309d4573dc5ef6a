"""MedCodER: extract diagnoses with evidence -> retrieve candidates per diagnosis from the
knowledge base -> re-rank them and pick the code.

Each stage has its rules: the problem extractor reads the diagnoses and their spans, and the
coding rules (`programs.floor.choose`) pick the candidate that names the problem, or none. With no
model that is the whole program; with one, the LM extract sees the extractor's problems and the
LM re-ranker the rules' choice, and refines them. Grounding: a diagnosis whose evidence is not
found in the note is dropped, and a code outside the retrieved candidates gives way to the rules'
choice (small models copy demo answers)."""

from __future__ import annotations

import dspy

from programs.answers import OneOf
from programs.base import (
    CodingProgram,
    as_problems,
    diagnosis_missing,
    has_model,
    left_out,
    listed_problems,
    naming_evidence,
    outside_sections,
    run_stage,
)
from programs.concurrency import in_order
from programs.demos import excerpt, gold_diagnoses, with_gold
from programs.floor import Choice, choose, problem_query, vetted
from programs.guarantees import Assembler
from programs.result import CodedDiagnosis, Span, StageTrace
from programs.spans import locate
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
        diagnoses = self.diagnoses(note, extract)
        for (diagnosis, evidence, _), (options, picked, part) in zip(diagnoses, in_order(self.code_one, diagnoses, has_model())):
            if not options:
                retrieve.drop(diagnosis, "no candidate codes found in the knowledge base")
                continue
            retrieve.proposed.append(f"{diagnosis}: {', '.join(options)}")
            retrieve.kept.append(diagnosis)
            retrieve.pass_on(options)
            rerank.extend(part)
            code, rationale = picked
            rerank.proposed.append(f"{diagnosis}: {code or NONE}")
            if code is None:
                rerank.drop(diagnosis, rationale)
                continue
            assembler.add(code, [evidence], rationale, rerank, context=diagnosis)
        rerank.codes = assembler.codes
        return assembler.build(), [extract, retrieve, rerank]

    def code_one(self, diagnosis: tuple[str, str | Span, bool]) -> tuple[dict[str, str], tuple[str | None, str], StageTrace]:
        """(candidates, (code or None, rationale), what the re-rank logged) for one diagnosis;
        the diagnoses of a note are coded concurrently (`in_order`), each logging apart."""
        text, evidence, past = diagnosis
        part = StageTrace("rerank")
        hits = self.kb.search(text, k=self.candidates, source="all")
        options = {hit.code: hit.description for hit in hits}
        if not options:
            return options, (None, ""), part
        described = {hit.code: f"{hit.description} {hit.matched}" for hit in hits}
        return options, self.pick(text, evidence, options, choose(text, hits, historical=past), part, described, past), part

    def diagnoses(self, note: str, trace: StageTrace) -> list[tuple[str, str | Span, bool]]:
        """(diagnosis, evidence, documented as past) for every diagnosis to code. The rules'
        problems (evidence: where the note writes them); with a model, the LM's diagnoses given
        those problems, without repeats, a diagnosis whose evidence is not in the note dropped
        (`diagnosis_missing`), a quote that names none of the diagnosis's words replaced by the
        diagnosis as the note writes it, and dropped outside where the rules read problems
        (`outside_sections`); the rules' problems the LM leaves out are coded too (`left_out`)."""
        kept, found = self.problems(note, trace)
        rules = [(problem_query(p, found), p.span, p.assertion == "historical") for p in kept]
        if not has_model():
            trace.kept.extend(p.text for p in kept)
            return rules
        pairs = []
        read = self.read_pairs(self.extract, note, trace, ("diagnoses", "evidence"), "diagnosis", diagnosis_missing(note),
                               problems=listed_problems(found))
        for listed, diagnosis, quote, past in as_problems(read, trace):
            evidence = naming_evidence(note, diagnosis, quote)
            if evidence is None:
                trace.drop(diagnosis, f"neither its evidence {quote!r} nor the note names it")
                trace.kept.remove(listed)
                continue
            if outside := outside_sections(found, locate(note, evidence).span):
                trace.drop(diagnosis, outside)
                trace.kept.remove(listed)
                continue
            if evidence != quote:
                trace.log.append(f"evidence {quote!r} does not name {diagnosis!r}; the note's {diagnosis!r} is quoted instead")
            pairs.append((diagnosis, evidence, past))
        return pairs + left_out(note, rules, [p.span for p in kept], [(d, evidence) for d, evidence, _ in pairs], trace)

    def pick(self, diagnosis: str, evidence: str | Span, options: dict[str, str], rule: Choice, trace: StageTrace,
             described: dict[str, str], past: bool = False) -> tuple[str | None, str]:
        """(code or None, rationale): the rules' choice, or with a model the LM's among the
        candidates given the rules' choice; an unreadable answer, a code outside the candidates
        or one that names too little of the diagnosis or codes a `past` one as current (`vetted`;
        `described`: each candidate's description and index path) gives way to the rules' choice."""
        if not has_model():
            return rule.code, rule.reason
        listed = [f"{code}: {description}" for code, description in options.items()]
        quote = evidence.text if isinstance(evidence, Span) else evidence
        pick = run_stage(self.rerank, trace, {"code": OneOf.of([*options, NONE])}, diagnosis=diagnosis, evidence=quote,
                         candidates=listed, suggested=rule.code or NONE)
        if pick is None:
            return rule.code, f"coding rules (re-ranker output unreadable): {rule.reason}"
        code, rationale = pick.code.strip(), pick.rationale.strip()
        if not code or code.upper() == NONE:
            if rule.code:
                trace.log.append(f"the LM found no candidate for {diagnosis!r}; the rules' {rule.code} stands")
                return rule.code, f"coding rules: {rule.reason}"
            return None, f"no candidate fits: {rationale}"
        if code not in options:
            trace.log.append(f"{code} for {diagnosis!r} is not among the retrieved candidates; the coding rules' choice is used")
            return rule.code, f"coding rules (the re-ranker named a code outside the candidates): {rule.reason}"
        vetoed = vetted(diagnosis, rule.code, code, described, self.block, past)
        if vetoed:
            trace.log.append(vetoed)
            return rule.code, f"coding rules: {rule.reason}"
        return code, rationale

    def stage_demos(self, example: dspy.Example) -> dict[str, list[dspy.Example]]:
        """Worked demos from a note's gold codes and mentions: an excerpt and the extractor's
        problems -> its diagnoses and evidence for `extract`, and per diagnosis the retrieved
        candidates (gold kept) and the rules' choice -> the gold code for `rerank`."""
        gold = gold_diagnoses(example, self.kb)
        if not gold:
            return {}
        extract = dspy.Example(
            note=excerpt(example.note, gold), problems=listed_problems(self.extractor(example.note)),
            diagnoses=[d.phrase for d in gold], evidence=[d.sentence for d in gold],
        )
        rerank = []
        for d in gold:
            hits = self.kb.search(d.phrase, k=self.candidates, source="all")
            listed = [f"{hit.code}: {hit.description}" for hit in hits]
            title = self.kb.require(d.code).description
            candidates = with_gold(listed, f"{d.code}: {title}", self.candidates)
            suggested = choose(d.phrase, hits).code or NONE
            rationale = f"{d.code} ({title}) matches the documented {d.phrase.lower()}."
            rerank.append(dspy.Example(diagnosis=d.phrase, evidence=d.sentence, candidates=candidates, suggested=suggested,
                                       code=d.code, rationale=rationale))
        return {"extract": [extract], "rerank": rerank}
