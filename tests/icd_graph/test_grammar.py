"""The billable-code grammar: read back from its GBNF text, its sentences are exactly the
billable codes of the release (all 74,719 accepted; every other node, malformed strings and
one-character edits of each code refused), and it is compact and built once."""

from __future__ import annotations

import re

import pytest

from icd_graph.grammar import ROOT, code_grammar

RULE = re.compile(r"^([\w-]+) ::= (.*)$")
ALTERNATIVE = re.compile(r'^(?:"(.)"|\[([A-Z0-9.]+)\])(?: ([\w-]+))?$')
MALFORMED = ["", "E11.", "e11.9", "E119", " E11.9", "E11.9 ", "E11..9", "E11.9X", "E11.99", "E11.65.", "11.9", "EE1.9",
             "E11-E13", "E11.6 5", "E11.65\n", "I10.", "I10.0", "W19XXXA", "W19.XXX", "W19.XXXA ", "S72.001", "U99.99"]


def matcher(gbnf: str):
    """A matcher that reads the grammar text the way llama.cpp would for this form of rule
    ('name ::= alt | alt', optionally '(...)?'; an alternative is a character or a class,
    then an optional rule), so that the test checks the text, not the builder's automaton."""
    lines = gbnf.strip().splitlines()
    assert lines[0] == f"root ::= {ROOT}"
    rules = {}
    for line in lines[1:]:
        name, body = RULE.match(line).groups()
        optional = body.startswith("(") and body.endswith(")?")
        edges = []
        for alternative in (body[1:-2] if optional else body).split(" | "):
            char, chars, target = ALTERNATIVE.match(alternative).groups()
            edges.append((set(char or chars), target))
        rules[name] = (optional, edges)

    def accepts(text: str, rule: str | None = ROOT) -> bool:
        if rule is None:
            return text == ""
        optional, edges = rules[rule]
        if text == "":
            return optional
        return any(text[0] in chars and accepts(text[1:], target) for chars, target in edges)

    return accepts


@pytest.fixture(scope="module")
def billable(kb) -> list[str]:
    return kb.billable_codes()


@pytest.fixture(scope="module")
def not_billable(kb, billable) -> set[str]:
    """Every chapter, block and code of the release that is not billable."""
    chapters = [kb.get(f"CH{i:02d}") for i in range(1, 23)]
    nodes = {info.code for chapter in chapters for info in [chapter, *kb.expand(chapter.code, "descendants")]}
    return nodes - set(billable)


def test_every_billable_code_is_a_sentence_and_no_other_node_is(kb, billable, not_billable):
    grammar = kb.code_grammar()
    accepts = matcher(grammar.gbnf())
    assert len(billable) == grammar.codes == 74_719
    assert [code for code in billable if not accepts(code)] == []
    assert all(grammar.accepts(code) for code in billable)
    assert {"E11", "E11.3", "E11.32", "S72.001", "CH04", "E08-E13"} <= not_billable
    assert len(not_billable) > 20_000
    assert [code for code in not_billable if accepts(code) or grammar.accepts(code)] == []
    assert [text for text in MALFORMED if accepts(text) or grammar.accepts(text)] == []


def test_one_character_edits_of_the_codes_are_refused_unless_billable(kb, billable):
    grammar = kb.code_grammar()
    accepts = matcher(grammar.gbnf())
    known = set(billable)
    edits = set()
    for code in billable:
        edits.update((code[:-1], code + "0", code + "A", code.replace(".", ""), code.lower()))
    edits -= known
    assert len(edits) > 200_000
    assert [text for text in edits if grammar.accepts(text)] == []
    assert [text for text in list(edits)[::50] if accepts(text)] == []


def test_the_grammar_is_compact_and_built_once(kb):
    grammar = kb.code_grammar()
    assert kb.code_grammar() is grammar
    rules = grammar.rules.splitlines()
    assert len(rules) < 4_000 and len(grammar.rules) < 200_000
    assert any(line.startswith(f"{ROOT} ::= ") for line in rules)


def test_a_small_code_set():
    grammar = code_grammar(["A00.1", "A00.0", "A01", "B20", "A00.0"])
    accepts = matcher(grammar.gbnf())
    for text in ("A00.0", "A00.1", "A01", "B20"):
        assert accepts(text) and grammar.accepts(text)
    for text in ("A00", "A00.", "A00.2", "A01.0", "B2", "B200", "", "A"):
        assert not accepts(text) and not grammar.accepts(text)
    assert grammar.codes == 4
    with pytest.raises(ValueError, match="at least one code"):
        code_grammar([])
    with pytest.raises(ValueError, match="dotted upper-case"):
        code_grammar(["e11.9"])
