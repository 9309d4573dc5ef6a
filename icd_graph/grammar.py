"""The billable codes of a release as a GBNF grammar, so that a decoder constrained by it can only
write a billable code: a code is chosen, never typed.

The codes' prefix trie with its equal subtrees merged (the minimal acyclic automaton of the code
strings: every 'A', 'D', 'S' seventh-character tail is one state), one rule per state, the
characters that lead to the same state in one class. For the April 2026 release: 74,719 codes,
about 3,000 rules, 100 kB of grammar (the plain trie takes 30,000 rules and 1.1 MB).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

ROOT = "icd-code"
# The shape of a code, for schemas that take a pattern rather than a grammar.
CODE_PATTERN = r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$"
_SAFE = re.compile(r"[A-Z0-9.]+")


@dataclass(frozen=True)
class CodeGrammar:
    """The automaton (`states[i]` = (accepting, {character: next state}), start at `start`) and
    its GBNF rules (`rules`, entered at rule `ROOT`)."""

    states: tuple[tuple[bool, dict[str, int]], ...]
    start: int
    rules: str
    codes: int

    def accepts(self, text: str) -> bool:
        """Whether `text` is exactly one of the codes."""
        state = self.start
        for char in text:
            state = self.states[state][1].get(char)
            if state is None:
                return False
        return self.states[state][0]

    def gbnf(self) -> str:
        """A whole grammar whose only sentences are the codes."""
        return f"root ::= {ROOT}\n{self.rules}"


def code_grammar(codes: Iterable[str]) -> CodeGrammar:
    """The grammar of `codes` (dotted, upper case, as the knowledge base stores them)."""
    words = sorted(set(codes))
    if not words:
        raise ValueError("a code grammar needs at least one code")
    for word in words:
        if not _SAFE.fullmatch(word):
            raise ValueError(f"{word!r} is not a dotted upper-case code")
    registry: dict[tuple, int] = {}
    states: list[tuple[bool, dict[str, int]]] = []

    def state(group: list[str]) -> int:
        """The state reading the suffixes in `group` (sorted), equal suffix sets merged."""
        branches: dict[str, list[str]] = {}
        for word in group:
            if word:
                branches.setdefault(word[0], []).append(word[1:])
        edges = tuple((char, state(rest)) for char, rest in branches.items())
        key = ("" in group, edges)
        if key not in registry:
            registry[key] = len(states)
            states.append((key[0], dict(edges)))
        return registry[key]

    start = state(words)
    return CodeGrammar(tuple(states), start, _rules(states, start), len(words))


def _rules(states: list[tuple[bool, dict[str, int]]], start: int) -> str:
    def name(i: int) -> str:
        return ROOT if i == start else f"icd-{i}"

    lines = []
    for i, (accepting, edges) in enumerate(states):
        if not edges:
            continue
        targets: dict[int, list[str]] = {}
        for char, target in edges.items():
            targets.setdefault(target, []).append(char)
        alternatives = []
        for target, chars in targets.items():
            label = f'"{chars[0]}"' if len(chars) == 1 else f"[{''.join(chars)}]"
            alternatives.append(f"{label} {name(target)}" if states[target][1] else label)
        body = " | ".join(alternatives)
        lines.append(f"{name(i)} ::= " + (f"({body})?" if accepting else body))
    return "\n".join(lines)
