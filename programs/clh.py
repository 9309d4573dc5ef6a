"""Code Like Humans: evidence extractor -> alphabetic-index navigator -> tabular validator ->
code reconciler, the way a certified coder works.

Each stage has its rules: the problem extractor gives the statements (the index navigation
finds their main term), the navigator takes the entry the navigation reaches, the validator
accepts the candidate the coding rules choose (`programs.floor.choose`), and the reconciler
applies the Excludes1, specificity and pairing rules. With no model that is the program; with
one, each LM stage is given the rules' answer and refines it."""

from __future__ import annotations

import re

import dspy

from icd_graph.codes import referenced
from icd_graph.records import SearchHit
from programs.answers import Codes, OneOf
from programs.base import (
    CodingProgram,
    as_problems,
    has_model,
    left_out,
    listed_problems,
    read_status,
    run_stage,
    statement_missing,
)
from programs.concurrency import in_order
from programs.demos import GENERIC, GoldDiagnosis, excerpt, gold_diagnoses, with_gold
from programs.floor import best_entry, choose, paired_unsaid, problem_query, vetted
from programs.guarantees import Assembler, reconcile, tokens
from programs.result import CodedDiagnosis, Span, StageTrace
from signatures import ExtractEvidence, NavigateIndex, ReconcileCodes, ValidateCandidates

NOTE_KINDS = {
    "inclusion_term": "Includes",
    "includes": "Includes",
    "excludes1": "Excludes1",
    "excludes2": "Excludes2",
    "code_first": "Code first",
    "use_additional_code": "Use additional code",
    "code_also": "Code also",
}
PAIRING_NOTES = ("use_additional_code", "code_first", "code_also")
NUMBER = re.compile(r"\d+")
NOTES_PER_KIND = 6


class CodeLikeHumans(CodingProgram):
    name = "clh"
    kb_parts = ("search", "index")

    def __init__(self, kb, max_steps: int = 3, max_entries: int = 25, max_candidates: int = 8, **options):
        super().__init__(kb, **options)
        self.max_steps = max_steps
        self.max_entries = max_entries
        self.max_candidates = max_candidates
        self.extract = dspy.Predict(ExtractEvidence)
        self.navigate = dspy.Predict(NavigateIndex)
        self.validate = dspy.Predict(ValidateCandidates)
        self.reconcile = dspy.Predict(ReconcileCodes)

    def code_note(self, note: str) -> tuple[list[CodedDiagnosis], list[StageTrace]]:
        extract = StageTrace("extract")
        navigate, validate, final = (StageTrace(s, codes=[]) for s in ("navigate", "validate", "reconcile"))
        assembler = Assembler(self.kb, note)
        statements = self.statements(note, extract)
        walked = in_order(self.walk, statements, has_model())
        for (statement, lead_term, evidence, _), (candidates, accepted, looked, checked) in zip(statements, walked):
            navigate.extend(looked)
            if not candidates:
                navigate.drop(statement, "no code found in the index or the tabular list")
                continue
            navigate.pass_on(candidates)
            validate.extend(checked)
            for code in accepted:
                assembler.add(code, [evidence], f"{statement!r} (index: {lead_term})", validate, statement)
        validate.codes = assembler.codes
        self.settle([s for s, *_ in statements], assembler, final)
        final.codes = assembler.codes
        return assembler.build(), [extract, navigate, validate, final]

    def stage_demos(self, example: dspy.Example) -> dict[str, list[dspy.Example]]:
        """Worked demos from a note's gold codes and mentions: an excerpt -> statements and lead
        terms (`extract`); the index entries a lead term reaches -> the entry holding the gold
        code (`navigate`); candidates with their notes -> the gold code (`validate`); the note's
        gold codes -> themselves (`reconcile`)."""
        gold = gold_diagnoses(example, self.kb)
        if not gold:
            return {}
        walks = [self.index_walk(d) for d in gold]
        extract = dspy.Example(
            note=excerpt(example.note, gold),
            problems=listed_problems(self.extractor(example.note)),
            statements=[d.phrase for d in gold],
            lead_terms=[term for term, _, _ in walks],
        )
        navigate, validate = [], []
        for d, (term, entries, choice) in zip(gold, walks):
            if choice:
                listed = [f"{i}. {_show(entry)}" for i, entry in enumerate(entries, 1)]
                navigate.append(dspy.Example(statement=d.phrase, lead_term=term, entries=listed, suggested=str(best_entry(d.phrase, [e.path if e.billable_codes else None for e in entries])),
                                             choice=str(choice), next_term=""))
                codes = self.closest(entries[choice - 1].billable_codes, d.phrase)
                paths = dict.fromkeys(codes, entries[choice - 1].path)
            else:
                codes, paths = [hit.code for hit in self.kb.search(d.phrase, k=self.max_candidates, source="all")], {}
            codes = with_gold(codes, d.code, self.max_candidates)
            shown = [self.describe(code) for code in codes]
            title = self.kb.require(d.code).description
            validate.append(dspy.Example(statement=d.phrase, candidates=shown, suggested=self.rule_accepts(d.phrase, codes, paths),
                                         accepted=[d.code], rationale=f"{d.code} ({title}) matches the statement and no note excludes it."))
        reconcile = dspy.Example(
            statements=[d.phrase for d in gold],
            candidates=[self.describe(d.code) for d in gold],
            suggested=[d.code for d in gold],
            final_codes=[d.code for d in gold],
            rationale="Each code documents its own statement; no Excludes1 conflict.",
        )
        return {"extract": [extract], "navigate": navigate, "validate": validate, "reconcile": [reconcile]}

    def index_walk(self, diagnosis: GoldDiagnosis) -> tuple[str, list, int]:
        """(lead term, entries, 1-based entry holding the gold code or 0): the first word of the
        phrase, from its last, whose index entries reach the gold code."""
        words = [w for w in re.findall(r"[A-Za-z]+", diagnosis.phrase) if len(w) > 2 and w.lower() not in GENERIC]
        for word in reversed(words):
            entries = self.entries(word.capitalize(), diagnosis.phrase)
            for i, entry in enumerate(entries, 1):
                if diagnosis.code in entry.billable_codes:
                    return word.capitalize(), entries, i
        term = words[-1].capitalize() if words else diagnosis.phrase
        return term, [], 0

    def walk(self, statement: tuple[str, str, str | Span, bool]) -> tuple[list[str], list[str], StageTrace, StageTrace]:
        """(candidates, accepted codes, what navigation and validation logged) for one
        statement; the statements of a note are walked concurrently (`in_order`), each logging
        apart."""
        text, lead_term, _, past = statement
        looked, checked = StageTrace("navigate"), StageTrace("validate")
        candidates, paths = self.look_up(text, lead_term, looked)
        accepted = self.check(text, candidates, paths, checked, past) if candidates else []
        return candidates, accepted, looked, checked

    def statements(self, note: str, trace: StageTrace) -> list[tuple[str, str, str | Span, bool]]:
        """(statement, lead term, evidence, documented as past) over every part of the note,
        without repeats. The rules' problems are the statements (the index navigation finds each
        one's main term among its words); with a model, the LM's statements given those
        problems (a statement the note does not hold, or that the rules would not code, is dropped;
        read as the rules read a problem: `as_problems`), and the rules'
        problems the LM leaves out (`left_out`)."""
        kept, found = self.problems(note, trace)
        rules = [(problem_query(p, found), problem_query(p, found), p.span, p.assertion == "historical") for p in kept]
        if not has_model():
            trace.kept.extend(p.text for p in kept)
            return rules
        pairs = self.read_pairs(self.extract, note, trace, ("statements", "lead_terms"), "statement",
                                statement_missing(note, found), problems=listed_problems(found))
        read = [(text, read_status(lead)[0], text, past) for _, text, lead, past in as_problems(pairs, trace)]
        return read + left_out(note, rules, [p.span for p in kept], [(text, text) for text, *_ in read], trace)

    def look_up(self, statement: str, lead_term: str, trace: StageTrace) -> tuple[list[str], dict[str, str]]:
        """Billable codes reached by walking the index from `lead_term` in at most `max_steps`
        lookups (the rules, or the LM given their choice, pick an entry, follow 'see', or name
        another term), with the index path of each; the tabular search is the fallback when the
        index has nothing."""
        term, seen = lead_term, set()
        for _ in range(self.max_steps):
            if not term or term.lower() in seen:
                break
            seen.add(term.lower())
            entries = self.entries(term, statement)
            if not entries:
                trace.log.append(f"index: nothing under {term!r}")
                break
            listed = [f"{i}. {_show(entry)}" for i, entry in enumerate(entries, 1)]
            rule = best_entry(statement, [entry.path if entry.billable_codes else None for entry in entries])
            numbers = OneOf.of(range(len(entries) + 1))
            out = run_stage(self.navigate, trace, {"choice": numbers}, statement=statement, lead_term=term, entries=listed,
                            suggested=str(rule)) if has_model() else None
            choice = _number(out.choice) if out else rule
            if out is None:
                trace.log.append(f"index: took entry {choice} under {term!r} (rules)")
            elif 1 <= choice <= len(entries) and not entries[choice - 1].billable_codes:
                pass  # a cross-reference: the walk goes on
            elif vetoed := vetted(statement, str(rule), str(choice), {str(i): e.path for i, e in enumerate(entries, 1)}):
                trace.log.append(f"index: {vetoed}")
                choice = rule
            if 1 <= choice <= len(entries):
                entry = entries[choice - 1]
                trace.proposed.append(f"{statement}: {entry.path}")
                if entry.billable_codes:
                    codes = self.closest(entry.billable_codes, statement)
                    trace.kept.append(f"{entry.path} -> {', '.join(codes)}")
                    return codes, dict.fromkeys(codes, entry.path)
                term = entry.see or entry.see_also or ""
                continue
            term = out.next_term.strip() if out else ""
        hits = self.kb.search(statement, k=self.max_candidates, source="all")
        if hits:
            trace.log.append(f"{statement!r}: index walk found no code; tabular search used")
        return [hit.code for hit in hits], {hit.code: hit.matched for hit in hits}

    def entries(self, term: str, statement: str) -> list:
        """The index entry the statement's words reach from `term` and its subterms, then the
        main term `term` and its subterms in index order."""
        entries = {}
        for query in ([term, statement], [term]):
            for entry in self.kb.index_lookup(query, limit=self.max_entries):
                entries.setdefault(entry.path, entry)
        return list(entries.values())[: self.max_entries]

    def closest(self, codes, statement: str) -> list[str]:
        wanted = tokens(statement)
        ranked = sorted(codes, key=lambda c: (-len(wanted & tokens(self.kb.require(c).description)), c))
        return ranked[: self.max_candidates]

    def rule_accepts(self, statement: str, candidates: list[str], paths: dict[str, str], past: bool = False) -> list[str]:
        """The code the coding rules choose for the statement among the search hits and the
        candidates (their index path or title naming the statement; the search wins ties, since
        an index path reached through 'complicating childbirth' names 'essential hypertension'
        too), or none."""
        searched = self.kb.search(statement, k=self.max_candidates, source="all")
        known = {hit.code for hit in searched}
        hits = searched + [
            SearchHit(code, self.kb.require(code).description, 0.0, paths.get(code, ""), "index")
            for code in candidates
            if code not in known
        ]
        code = choose(statement, hits, historical=past).code
        return [code] if code else []

    def check(self, statement: str, candidates: list[str], paths: dict[str, str], trace: StageTrace, past: bool = False) -> list[str]:
        """The candidates the rules accept, or with a model those the LM accepts after reading
        their tabular notes and the rules' choice, each naming the statement as the rules require
        (`vetted`); the rules' choice when the LM accepts none of them."""
        trace.proposed.extend(f"{statement}: {code}" for code in candidates)
        suggested = self.rule_accepts(statement, candidates, paths, past)
        if not has_model():
            for code in candidates:
                if code not in suggested:
                    trace.drop(code, f"not accepted for {statement!r} by the coding rules")
            return suggested
        shown = [self.describe(code) for code in candidates]
        out = run_stage(self.validate, trace, {"accepted": OneOf.of(candidates)}, statement=statement, candidates=shown,
                        suggested=suggested)
        if out is None:
            return suggested
        rule = suggested[0] if suggested else None
        described = {code: f"{self.kb.require(code).description} {paths.get(code, '')}" for code in {*candidates, *suggested}}
        accepted = []
        for code in dict.fromkeys(str(code).strip() for code in out.accepted or []):
            if code not in candidates:
                trace.log.append(f"{code} accepted for {statement!r} although not a candidate")
            elif vetoed := vetted(statement, rule, code, described, self.block, past):
                trace.log.append(vetoed)
            else:
                accepted.append(code)
        if not accepted and suggested:
            trace.log.append(f"the LM accepted none the rules would; the rules' {rule} stands")
            accepted = suggested
        for code in candidates:
            if code not in accepted:
                trace.drop(code, f"not accepted for {statement!r}: {out.rationale.strip()}")
        return accepted

    def describe(self, code: str) -> str:
        """'CODE: title | Excludes1: ...; Code first: ...' with inherited notes, nearest first,
        at most NOTES_PER_KIND of each kind."""
        notes = {}
        for note in self.kb.notes(code, inherited=True):
            label = NOTE_KINDS.get(note.kind)
            if label and len(notes.setdefault(label, [])) < NOTES_PER_KIND:
                notes[label].append(note.text)
        text = "; ".join(f"{label}: {', '.join(texts)}" for label, texts in notes.items())
        title = f"{code}: {self.kb.require(code).description}"
        return f"{title} | {text}" if text else title

    def settle(self, statements: list[str], assembler: Assembler, trace: StageTrace) -> None:
        """The validated codes and those the LM adds, then the rules: no duplicates, no Excludes1
        pairs, no less specific code beside a more specific one. A code the LM adds is kept only
        when a 'use additional code', 'code first' or 'code also' note of a validated code names
        it; the LM removes a validated code only beside another code of the same statement (the
        wrong eye beside the right one), never a statement's last code."""
        codes = assembler.codes
        if not codes:
            return
        trace.proposed.extend(codes)
        out = None
        if has_model():
            out = run_stage(self.reconcile, trace, {"final_codes": Codes(self.kb.code_grammar())}, statements=statements,
                            candidates=[self.describe(c) for c in codes], suggested=codes)
        chosen = [str(code).strip() for code in out.final_codes or []] if out else []
        if not chosen:
            if has_model():
                trace.log.append("reconciler returned no codes; the validated codes are kept")
            chosen = codes
        rationale = "" if out is None else out.rationale.strip()
        final: list[str] = []
        for raw in chosen:
            code = assembler.repair(raw, trace, " ".join(statements))
            if code in codes or (code and self.pair(code, codes, assembler, trace, rationale)):
                final.append(code)
        for code in codes:
            if code in final:
                continue
            quoted = set(map(str, assembler.quotes(code)))
            beside = [other for other in final if other in codes and quoted & set(map(str, assembler.quotes(other)))]
            if beside:
                trace.drop(code, f"removed at reconciliation beside {beside[0]}: {rationale}")
            else:
                trace.log.append(f"the LM left out {code}, the only code of its statement; it stays")
                final.append(code)
        final = reconcile(self.kb, final, trace)
        for code in assembler.codes:
            if code not in final:
                assembler.remove(code)
        trace.kept = sorted(final)

    def pair(self, code: str, codes: list[str], assembler: Assembler, trace: StageTrace, rationale: str) -> bool:
        """Add `code` when a pairing note of one of the validated `codes` names it and the note
        says what it adds to them (`paired_unsaid`), with the quotes of those codes as evidence;
        otherwise drop it in `trace`."""
        asking = [validated for validated in codes if self.asks_for(validated, code)]
        if not asking:
            trace.drop(code, "added at reconciliation, but no validated code's note asks for it")
            return False
        described = [self.kb.require(validated).description for validated in asking]
        if missing := paired_unsaid(assembler.note, self.kb.require(code).description, described):
            trace.drop(code, f"added at reconciliation for {', '.join(asking)}, but the note does not say "
                             f"{' '.join(missing)!r}")
            return False
        quotes = [quote for validated in asking for quote in assembler.quotes(validated)]
        assembler.add(code, quotes, f"added at reconciliation for {', '.join(asking)}: {rationale}", trace)
        return True

    def asks_for(self, code: str, other: str) -> bool:
        """True when a pairing note of `code`, its own or inherited, names `other`."""
        return any(note.kind in PAIRING_NOTES and referenced(note.text, other) for note in self.kb.notes(code, inherited=True))


def _show(entry) -> str:
    if entry.code:
        return f"{entry.path} -> {entry.code}"
    if entry.see:
        return f"{entry.path} -> see {entry.see}"
    if entry.see_also:
        return f"{entry.path} -> see also {entry.see_also}"
    return entry.path


def _number(text: str) -> int:
    match = NUMBER.search(str(text))
    return int(match.group()) if match else 0
