"""Verification: a first pass proposes codes -> each is expanded to its neighbours in the code
graph -> the LM picks the best match per group, shown descriptions only.

The rules' first pass is MedCoder's with no model, and the rules' pick is the proposed code
(the first pass already chose the candidate that names the problem best: measured on aci:dev,
re-choosing among the neighbours by shared words alone lost 0.07 F1). With no model that is the
program; with one, the LM proposer sees the rules' codes and the LM selector the rules' pick."""

from __future__ import annotations

import re

import dspy

from icd_graph.errors import IcdError
from programs.answers import Codes, OneOf
from programs.base import CodingProgram, evidence_missing, has_model, left_out, run_stage
from programs.concurrency import in_order
from programs.demos import excerpt, gold_diagnoses
from programs.floor import vetted
from programs.guarantees import Assembler, tokens
from programs.medcoder import MedCoder
from programs.result import CodedDiagnosis, Span, StageTrace
from programs.spans import locate
from signatures import ProposeCodes, SelectBestMatch

EXPANSIONS = ("parent", "siblings", "cousins", "neighbors1", "neighbors2")
NUMBER = re.compile(r"\d+")


class Verify(CodingProgram):
    name = "verify"
    kb_parts = ("search", "graph")

    def __init__(self, kb, first_pass: CodingProgram | None = None, expansions=EXPANSIONS, max_options: int = 20, **options):
        super().__init__(kb, **options)
        self.first_pass = first_pass
        self.propose = None if first_pass else dspy.Predict(ProposeCodes)
        self.expansions = tuple(expansions)
        self.max_options = max_options
        self.select = dspy.Predict(SelectBestMatch)

    def code_note(self, note: str) -> tuple[list[CodedDiagnosis], list[StageTrace]]:
        proposals, traces = self.proposals(note)
        expand, select = StageTrace("expand", codes=[]), StageTrace("select", codes=[])
        assembler = Assembler(self.kb, note)
        for (raw, quote), (ranked, group, out, grouped, selected) in zip(proposals, in_order(self.verify_one, proposals, has_model())):
            expand.extend(grouped)
            if not ranked:
                expand.drop(raw, "neither the code nor any neighbour is a billable code of the release")
                continue
            expand.pass_on(ranked)
            select.extend(selected)
            descriptions = [self.kb.require(code).description for code in group]
            rule = ranked[0]
            index = _choice(out.choice, descriptions) if out else None
            if index is None:
                code = rule
                rationale = "first-pass code kept" + (" (selection unreadable)" if has_model() else "")
            else:
                code, rationale = group[index], out.rationale.strip()
                vetoed = vetted(quote, rule, code, dict(zip(group, descriptions)), self.block)
                if vetoed:
                    select.log.append(vetoed)
                    code, rationale = rule, "first-pass code kept (the selection names too little of the evidence)"
            select.proposed.append(f"{raw} -> {code}")
            if code != raw:
                select.log.append(f"{raw} replaced by {code}")
            assembler.add(code, [quote], rationale, select, quote)
        select.codes = assembler.codes
        return assembler.build(), traces + [expand, select]

    def verify_one(self, proposal: tuple[str, str]) -> tuple[list[str], list[str], dspy.Prediction | None, StageTrace, StageTrace]:
        """(the group closest first, the group sorted, the selection or None, what expansion and
        selection logged) for one proposed code; the proposals of a note are verified
        concurrently (`in_order`), each logging apart."""
        raw, quote = proposal
        grouped, selected = StageTrace("expand"), StageTrace("select")
        ranked = self.group(raw, quote, grouped)
        if not ranked:
            return ranked, [], None, grouped, selected
        group = sorted(ranked)
        out = None
        if has_model():
            options = [f"{i}. {self.kb.require(code).description}" for i, code in enumerate(group, 1)]
            numbers = OneOf.of(range(1, len(options) + 1))
            out = run_stage(self.select, selected, {"choice": numbers}, evidence=quote, options=options,
                            suggested=str(group.index(ranked[0]) + 1))
        return ranked, group, out, grouped, selected

    def stage_demos(self, example: dspy.Example) -> dict[str, list[dspy.Example]]:
        """Worked demos from a note's gold codes: an excerpt -> the codes and their sentences
        (`propose`, without a first pass), and per code the evidence and the numbered
        descriptions of its group -> the gold code's number (`select`)."""
        gold = gold_diagnoses(example, self.kb)
        if not gold:
            return {}
        demos: dict[str, list[dspy.Example]] = {}
        if self.propose is not None:
            demos["propose"] = [
                dspy.Example(note=excerpt(example.note, gold), suggested=self.rule_codes(example.note)[0],
                             codes=[d.code for d in gold], evidence=[d.sentence for d in gold])
            ]
        select = []
        for d in gold:
            group = sorted(self.group(d.code, d.sentence, StageTrace("expand")))
            options = [f"{i}. {self.kb.require(code).description}" for i, code in enumerate(group, 1)]
            choice = group.index(d.code) + 1
            suggested = group.index(self.nearest_known(d.code) or group[0]) + 1
            select.append(dspy.Example(evidence=d.sentence, options=options, suggested=str(suggested), choice=str(choice),
                                       rationale=f"Option {choice} matches the documented {d.phrase.lower()}."))
        demos["select"] = select
        return demos

    def proposals(self, note: str) -> tuple[list[tuple[str, str]], list[StageTrace]]:
        """(code, evidence quote) pairs from the first pass, with its traces; without one, the
        proposed codes whose evidence is in the note where the rules read problems (each vetted
        against the rules' code of the problem its quote documents: `anchored`), and the rules' codes of the problems the LM left
        out (`left_out`)."""
        if self.first_pass is not None:
            result = self.first_pass(note=note).result
            for stage in result.trace:
                stage.stage = f"first_pass.{stage.stage}"
            pairs = [
                (item.code, (item.evidence[0].span.text if item.evidence and item.evidence[0].span else item.description))
                for item in result.codes
            ]
            return pairs, result.trace
        listed, rules, traces = self.rule_codes(note)
        if not has_model():
            for stage in traces:
                stage.stage = f"first_pass.{stage.stage}"
            return rules, traces
        trace = StageTrace("propose", codes=[])
        found = self.extractor(note)
        pairs = self.read_pairs(self.propose, note, trace, ("codes", "evidence"), "code", evidence_missing(note, found),
                                {"codes": Codes(self.kb.code_grammar())}, suggested=listed)
        spans = [locate(note, quote).span for _, quote in rules]
        kept = dict(self.anchored(note, pair, rules, spans, trace) for pair in pairs)
        pairs = list(kept)
        pairs += left_out(note, rules, spans, [(quote, span or quote) for (_, quote), span in kept.items()], trace)
        trace.codes = [code for code, _ in pairs]
        return pairs, [trace]

    def anchored(self, note: str, pair: tuple[str, str], rules: list[tuple[str, str]], spans: list[Span | None],
                 trace: StageTrace) -> tuple[tuple[str, str], Span | None]:
        """A proposed (code, quote), or the rules' (code, quote) in its place when the quote
        documents a problem the rules coded and the proposal does not name it as well or leaves
        its block (`vetted`); with where its quote is in the note."""
        code, quote = pair
        found = locate(note, quote).span
        index = next((i for i, span in enumerate(spans) if span and span.overlaps(found)), None)
        if index is None or rules[index][0] == code:
            return pair, found
        rule = rules[index]
        info = self.kb.get(code)
        described = {rule[0]: self.kb.require(rule[0]).description, code: info.description if info else ""}
        vetoed = vetted(rule[1], rule[0], code, described, self.block if info else None)
        if not vetoed:
            return pair, found
        trace.log.append(vetoed)
        return rule, spans[index]

    def rule_codes(self, note: str) -> tuple[list[str], list[tuple[str, str]], list[StageTrace]]:
        """MedCoder's codes with no model: as 'CODE: evidence' lines, as (code, evidence) pairs,
        and its traces."""
        with dspy.context(lm=None):
            result = MedCoder(self.kb, extractor=self.extractor)(note=note).result
        pairs = [(item.code, item.evidence[0].span.text if item.evidence and item.evidence[0].span else item.description)
                 for item in result.codes]
        return [f"{code}: {quote}" for code, quote in pairs], pairs, result.trace

    def group(self, raw: str, quote: str, trace: StageTrace) -> list[str]:
        """The proposed code (or its nearest known ancestor) and its billable neighbours: the
        `max_options` closest to the evidence, closest first; ties in the knowledge base's order
        (the billable codes under the proposal shallowest first, then each expansion), so a
        proposed category keeps its default ('E11' -> E11.9 'without complications')."""
        anchor = self.nearest_known(raw)
        if anchor is None:
            return []
        members = dict.fromkeys(self.kb.complete(anchor)[: self.max_options])
        for kind in self.expansions:
            members.update(dict.fromkeys(info.code for info in self.kb.expand(anchor, kind) if info.billable))
        wanted = tokens(quote)
        ranked = sorted(members, key=lambda c: (c != anchor, -len(wanted & tokens(self.kb.require(c).description))))
        group = ranked[: self.max_options]
        trace.proposed.append(f"{raw}: {len(members)} codes")
        trace.kept.append(f"{raw}: {', '.join(sorted(group))}")
        return group

    def nearest_known(self, raw: str) -> str | None:
        """`raw` if the release has it, else its longest known prefix (a hallucinated 'E11.99' -> 'E11.9')."""
        text = raw.strip().upper()
        check = self.kb.validate(text)
        if check.valid:
            return check.code
        compact = text.replace(".", "")
        for end in range(len(compact) - 1, 2, -1):
            prefix = compact[:end]
            candidate = f"{prefix[:3]}.{prefix[3:]}" if len(prefix) > 3 else prefix
            try:
                return self.kb.require(candidate).code
            except IcdError:
                continue
        return None


def _choice(answer: str, descriptions: list[str]) -> int | None:
    """The 0-based option the LM chose: its number, else the description it copied."""
    match = NUMBER.search(str(answer))
    if match and 1 <= int(match.group()) <= len(descriptions):
        return int(match.group()) - 1
    text = str(answer).strip().lower()
    for i, description in enumerate(descriptions):
        if text and (text == description.lower() or description.lower() in text):
            return i
    return None
