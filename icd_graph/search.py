"""Lexical search (bm25s) over the tabular list and the alphabetic index.

Two indexes are built once, by `icd build`, into a folder beside the knowledge-base file:

- tabular: one document per description and per inclusion term of every category, subcategory
  and code (a node scores its best document), nodes in document order, so the subtree of a node
  is the slice that follows it; codes that differ only by the encounter (7th character) share
  their best score, initial encounter first, then subsequent, then sequela;
- index: one document per index term that prints a code (its path, e.g. 'Diabetes, diabetic,
  type 2, with, retinopathy', and its nonessential modifiers), per term that prints only a 'see'
  reference (pointing to the code of the term it names) and per Table of Neoplasms / Drugs cell
  (path + column name), each pointing to the billable codes its printed code resolves to;
- exact: the essential and nonessential words of every index term (the titles on its path vs the
  modifiers in parentheses and a main term's other spellings) and tabular phrase (vs words in
  parentheses, 'unspecified', 'NOS', 'NEC', the encounter clause).

An exact match is a phrase whose essential words are all in the query and that holds every query
word (near-exact: all but one); 'Hypertension' -> the main term's I10, 'Depression' -> F32.A
('Depression, unspecified'). Exact matches come first: in `all` and `index` they are a third
ranked list fused with weight WEIGHTS['exact'], in `tabular` strict matches are put first.

Fusion (`source='all'`) returns billable codes only. Each ranked list is first turned into
billable codes: a hit on a billable code is kept; a hit on a parent or an incomplete index code
is expanded to at most `EXPANSION` of its billable descendants, those with the best tabular
score for the same query first (ties: shallower, then document order). A billable code that says
'unspecified' brings, ahead of it, the siblings that hold more of the query's words ('facet
arthropathy C6-7': M47.819 'site unspecified' -> M47.812 'cervical region'). A query that names
an index term with a 'see' or 'see also' reference is also searched with the term's words
replaced by the reference ('right hip degenerative joint disease' -> 'right hip osteoarthritis';
'pituitary adenoma' -> 'pituitary neoplasm benign', the table row of the site). The codes that
the 'use additional code' notes of the FOLLOWED best hits name, when they hold MIN_SHARED query
words, are one more list ('diabetic foot ulcer' -> E11.621 -> L97.5-). The lists are then
fused by weighted reciprocal rank fusion (score = sum of WEIGHTS[list] / (RRF_K + rank)).
Index scores are discounted by term depth (1 + LEVEL_DISCOUNT * level). The index uses a weaker
length normalisation (b = INDEX_B) so that modifiers in parentheses do not bury a main term.
A query that names no side gets, ahead of each code that names one, the same code of
unspecified side ('distal radius fracture': S52.501A 'right radius' -> S52.509A 'unspecified
radius'; `unsided_variants`, computed at build), since a coder codes the side the note
documents and 'unspecified' when it documents none.
After fusion a code that names another side (right, left, bilateral) or limb (upper, lower)
than the query, or a personal or family history the query does not ask for, is discounted by
CONFLICT_DISCOUNT, and a code that names a side the query does not name (and has an
unspecified-side variant) by SIDE_DISCOUNT; and the other encounter variants (7th character) of a code follow every
first variant, so that the top k holds k different conditions.
With dense vectors (`icd_graph.dense`, the `dense` extra), `all` adds one more list: the codes
of the documents most similar to the query's embedding, fused with weight WEIGHTS['dense'] for a
diagnosis and SENTENCE_DENSE for a query of SENTENCE_WORDS words or more (a sentence, where the
lexical lists rank near-misses first: tuned on the sentences of the ACI-BENCH train notes); an
exact match that the lexical lists ranked first stays first, and a code found only by the dense
list is matched by the document it came from. `dense` alone ranks codes by cosine similarity.
Tuned on the diagnosis mentions of the ACI-BENCH train split (recall@10 of the gold code, `all`:
train 0.85, valid 0.88; @50: 0.91, 0.92).

Documents and queries are read by `icd_graph.vocabulary.tokenize` (eponyms, abbreviations,
synonyms and spinal levels spelled out, suffixes normalised); a diagnosis (a query shorter than a
sentence) is searched without its status ('Hypertension, well controlled' as 'Hypertension':
`vocabulary.without_status`).
A query word no index knows is replaced by the first known word one edit away ('ransient').
"""

from __future__ import annotations

import json
import re
import threading
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np

from icd_graph.codes import note_references
from icd_graph.vocabulary import WORD, both_sides, spelling_variants, tokenize, without_status

if TYPE_CHECKING:
    from icd_graph.dense import DenseIndex

TABULAR = "tabular"
INDEX = "index"
ALL = "all"
DENSE = "dense"
SOURCES = (TABULAR, INDEX, ALL, DENSE)
EXACT = "exact"
# The essential words of the phrases, once each; each phrase's other words. Named anew when what
# makes a word essential changes, so that an index built before is refused and rebuilt.
EXACT_FILE = "exact_phrases.4.json"
SEE = "see"
ADDITIONAL = "additional"
MIN_CORRECTED = 5

CANDIDATES = 50
EXPANSION = 3
RRF_K = 10
LEVEL_DISCOUNT = 0.2
INDEX_B = 0.3
ENCOUNTER_DISCOUNT = 0.05
EXACT_MAX_WORDS = 8
WEIGHTS = {EXACT: 10.0, TABULAR: 0.5, INDEX: 1.0, SEE: 0.5, ADDITIONAL: 0.5, DENSE: 0.5}
SENTENCE_WORDS = 5  # a query of this many words or more reads as a sentence rather than a diagnosis
SENTENCE_DENSE = 2.0  # the dense list's weight for a sentence (WEIGHTS[DENSE] for a diagnosis)
DENSE_DOCS = 4
FOLLOWED = 3
MIN_SHARED = 2
CONFLICT_DISCOUNT = 0.5
SIDE_DISCOUNT = 0.8

RIGHT, LEFT, BILATERAL, UPPER, LOWER, HISTORY, UNSPECIFIED, OTHER = (1 << bit for bit in range(8))
_SIDES = RIGHT | LEFT | BILATERAL
_LIMBS = UPPER | LOWER
_FLAG_WORDS = {"right": RIGHT, "left": LEFT, "bilateral": BILATERAL, "upper": UPPER, "lower": LOWER}
_QUERY_FLAG_WORDS = {**_FLAG_WORDS, "history": HISTORY, "status": HISTORY, "hx": HISTORY}


def description_flags(description: str) -> int:
    """Side (right, left, bilateral), limb (upper, lower), history, unspecified and 'Other ...'
    (a residual category) bits of a description."""
    flags = _word_flags(description, _FLAG_WORDS)
    text = description.lower()
    if text.startswith(("personal history", "family history")):
        flags |= HISTORY
    if "unspecified" in WORD.findall(text):
        flags |= UNSPECIFIED
    if text.startswith("other "):
        flags |= OTHER
    return flags


def query_flags(text: str) -> int:
    """`description_flags` of a query: its side ('both knees' is bilateral, 'both mitral and aortic
    valves' names no side), limb and a history it asks for."""
    return _word_flags(both_sides(text.lower()), _QUERY_FLAG_WORDS)


def _word_flags(text: str, table: dict[str, int]) -> int:
    flags = 0
    for word in WORD.findall(text.lower()):
        flags |= table.get(word, 0)
    return flags


def contradicts(query: int, code: int) -> bool:
    """The code names another side or limb than the query, or is a history code the query
    does not ask for."""
    for group in (_SIDES, _LIMBS):
        if query & group and code & group and not query & code & group:
            return True
    return bool(code & HISTORY and not query & HISTORY)


@dataclass(frozen=True)
class Match:
    code: str
    score: float
    matched: str
    source: str


_TABULAR_DOCS = """
SELECT n.code, n.description, n.depth, n.billable, coalesce(i.terms, []) AS terms
FROM nodes n
LEFT JOIN (
    SELECT code, list(text ORDER BY seq) AS terms FROM notes WHERE kind = 'inclusion_term' GROUP BY code
) i USING (code)
WHERE n.kind NOT IN ('chapter', 'block')
ORDER BY n.seq
"""

_INDEX_DOCS = """
SELECT t.id, t.path, coalesce(t.nemod, ''), t.code, t.level FROM index_terms t WHERE t.code IS NOT NULL
UNION ALL
SELECT NULL, t.path || ', ' || c.column_name, coalesce(t.nemod, ''), c.code, t.level + 1
FROM table_cells c JOIN index_terms t ON t.id = c.term_id WHERE list_contains($tables, c.table_name)
"""
TABLES = ["neoplasm", "drug"]

_INDEX_TERMS = """
SELECT id, parent_id, level, title, coalesce(nemod, ''), path, code, coalesce(see, see_also)
FROM index_terms WHERE source IN ('index', 'eindex')
"""

_RESOLUTIONS = "SELECT raw_code, code FROM index_codes WHERE code IS NOT NULL"

_ADDITIONAL = "SELECT code, text FROM notes WHERE kind = 'use_additional_code' ORDER BY code, seq"

_ENCOUNTER = re.compile(r",? (?:(?:initial|subsequent) encounter(?: for)?|sequela$)", re.IGNORECASE)
_PARENTHESES = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_DEFAULT_WORDS = frozenset(tokenize("unspecified uncomplicated NOS NEC"))
_WITH = re.compile(r"\s*with(?:out)?\b", re.IGNORECASE)


def without_encounter(description: str) -> str:
    """The description without its encounter clause ('..., initial encounter for closed fracture')."""
    return _ENCOUNTER.split(description, maxsplit=1)[0]


def encounter_rank(description: str) -> int:
    """0 for an initial encounter (and any code without one), 1 subsequent, 2 sequela."""
    text = description.lower()
    return 2 if text.endswith(", sequela") else 1 if "subsequent encounter" in text else 0


def tabular_phrase(text: str) -> tuple[frozenset[str], frozenset[str]]:
    """(essential, nonessential) words of a description or inclusion term: words in parentheses,
    'unspecified', 'uncomplicated', 'NOS', 'NEC', clauses after the first that start with one of
    these (', unspecified site'; not 'with unspecified ...', which says there is one) and the
    encounter (with what the 7th character adds: 'for closed fracture', 'with routine healing')
    are nonessential."""
    text, *encounter = _ENCOUNTER.split(text, maxsplit=1)
    essential: set[str] = set()
    nonessential = set(tokenize(" ".join(_PARENTHESES.findall(text) + encounter)))
    for i, clause in enumerate(_PARENTHESES.sub(" ", text).split(",")):
        words = tokenize(clause)
        if i and words and words[0] in _DEFAULT_WORDS and not _WITH.match(clause):
            nonessential.update(words)
        else:
            essential.update(word for word in words if word not in _DEFAULT_WORDS)
            nonessential.update(word for word in words if word in _DEFAULT_WORDS)
    return frozenset(essential), frozenset(nonessential - essential)


def main_term_phrase(title: str) -> tuple[frozenset[str], frozenset[str]]:
    """A main term's title: its other spellings ('Diabetes, diabetic') are nonessential."""
    parts = [tokenize(part) for part in title.split(",")]
    head = parts[0]
    essential, nonessential = set(head), set()
    for part in parts[1:]:
        alternative = head and part and part[0][:4] == head[0][:4]
        (nonessential if alternative else essential).update(part)
    return frozenset(essential), frozenset(nonessential - essential)


def main_term_spellings(rows: list[tuple]) -> dict[int, list[frozenset[str]]]:
    """Per index term, the spellings of its main term when it has several ('Hyperlipemia,
    hyperlipidemia'): the first, then the others."""
    spellings: dict[int, list[frozenset[str]]] = {}
    for term_id, parent, level, title, *_ in sorted(rows, key=lambda row: row[2]):
        if level == 0 or parent not in spellings:
            head, *parts = [tokenize(part) for part in (title or "").split(",")]
            others = {frozenset(part) for part in parts if head and part and part[0][:4] == head[0][:4]}
            others.discard(frozenset(head))
            spellings[term_id] = [frozenset(head), *sorted(others, key=sorted)] if others else []
        else:
            spellings[term_id] = spellings[parent]
    return spellings


def respelled(phrase: tuple[frozenset[str], frozenset[str]], spellings: list[frozenset[str]]):
    """The phrase, then the phrase with its main term in each other spelling."""
    essential, nonessential = phrase
    yield phrase
    if spellings and spellings[0] <= essential:
        for other in spellings[1:]:
            yield (essential - spellings[0]) | other, (nonessential | spellings[0]) - other


def build_indexes(con: duckdb.DuckDBPyConnection, out_dir: Path) -> None:
    """Write the tabular and index search indexes of the knowledge base in `con` to `out_dir`."""
    import bm25s

    out_dir = Path(out_dir)
    rows = con.execute(_TABULAR_DOCS).fetchall()
    codes = [row[0] for row in rows]
    depth = np.array([row[2] for row in rows], dtype=np.int16)
    position = {code: i for i, code in enumerate(codes)}
    phrases = [(i, text) for i, row in enumerate(rows) for text in (row[1], *row[4])]
    _save_bm25(bm25s, [tokenize(_ENCOUNTER.sub(",", text)) for _, text in phrases], out_dir / TABULAR)
    np.save(out_dir / "phrase_positions.npy", np.array([i for i, _ in phrases], dtype=np.int32))
    np.save(out_dir / "billable.npy", np.array([bool(row[3]) for row in rows]))
    np.save(out_dir / "encounter.npy", np.array([encounter_rank(row[1]) for row in rows], dtype=np.int8))
    parents = [i for i, row in enumerate(rows) if not _ENCOUNTER.search(row[1])]
    groups = np.array(
        [i if not _ENCOUNTER.search(row[1]) else parents[bisect_right(parents, i) - 1] for i, row in enumerate(rows)],
        dtype=np.int32)
    np.save(out_dir / "encounter_groups.npy", groups)
    np.save(out_dir / "depth.npy", depth)
    np.save(out_dir / "end.npy", subtree_ends(depth))
    np.save(out_dir / "parent.npy", tree_parents(depth))
    flags = np.array([description_flags(row[1]) for row in rows], dtype=np.int16)
    np.save(out_dir / "flags.npy", flags)
    np.save(out_dir / "unsided.npy", unsided_variants([row[1] for row in rows], depth, groups, flags))
    _write_json(out_dir / "codes.json", codes)
    _write_json(out_dir / "additional.json", additional_codes(con.execute(_ADDITIONAL).fetchall(), position))

    resolved = resolutions(con, position)
    terms = index_terms(con)
    phrases_of = index_phrases(terms)
    _write_json(out_dir / "references.json", references(terms, phrases_of))
    docs = index_documents(con, terms, phrases_of, resolved)
    targets = [sorted(set(resolved[raw])) for *_, raw, _ in docs]
    if docs:
        _save_bm25(bm25s, [tokenize(f"{path} {nemod}") for _, path, nemod, _, _ in docs], out_dir / INDEX, b=INDEX_B)
    np.save(out_dir / "index_levels.npy", np.array([level for *_, level in docs], dtype=np.int16))
    np.save(out_dir / "index_offsets.npy", np.cumsum([0] + [len(t) for t in targets], dtype=np.int64))
    np.save(out_dir / "index_targets.npy", np.array([p for t in targets for p in t], dtype=np.int32))
    _write_json(out_dir / "paths.json", [path for _, path, *_ in docs])

    spellings = main_term_spellings(terms)
    exact = [
        (phrase, 0, doc)
        for doc, row in enumerate(docs)
        if row[0] in phrases_of
        for phrase in respelled(phrases_of[row[0]], spellings.get(row[0], ()))
    ]
    exact += [(tabular_phrase(text), 1, i) for i, text in phrases]
    exact = sorted(((" ".join(sorted(essential)), " ".join(sorted(nonessential))), kind, ref)
                   for (essential, nonessential), kind, ref in exact if essential)
    keys = [key for (key, _), *_ in exact]
    starts = [i for i, key in enumerate(keys) if i == 0 or key != keys[i - 1]]
    _write_json(out_dir / EXACT_FILE, [[keys[i] for i in starts], [nonessential for (_, nonessential), *_ in exact]])
    np.save(out_dir / "exact_starts.npy", np.array([*starts, len(keys)], dtype=np.int64))
    np.save(out_dir / "exact_refs.npy", np.array([(kind, ref) for _, kind, ref in exact], dtype=np.int32))


def unsided_variants(descriptions: list[str], depth: np.ndarray, groups: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Per node, its unspecified-side variant when the node names a side (the same code,
    encounter included, of the sibling condition that says everything it says but the side:
    S52.501A 'Unspecified fracture of the lower end of right radius' -> S52.509A '... of
    unspecified radius'; M25.511 'Pain in right shoulder' -> M25.519); -1 for none."""
    parents = tree_parents(depth)
    children: dict[int, list[int]] = {}
    for i, parent in enumerate(parents.tolist()):
        children.setdefault(parent, []).append(i)
    side_words = {"right", "left", "bilateral", "unspecified"}

    def words(i: int) -> set[str]:
        return set(WORD.findall(descriptions[i].lower())) - side_words

    variants = np.full(len(descriptions), -1, dtype=np.int32)
    for position in np.flatnonzero(flags & _SIDES).tolist():
        condition = int(groups[position])
        encounter = descriptions[position][len(descriptions[condition]) :]
        for sibling in children.get(int(parents[condition]), ()):
            same = sibling + position - condition
            if (
                sibling != condition and not flags[sibling] & (_SIDES | OTHER) and same < len(groups)
                and groups[same] == sibling and descriptions[same][len(descriptions[sibling]) :] == encounter
                and words(condition) <= words(sibling)
            ):
                variants[position] = same
                break
    return variants


def index_documents(con: duckdb.DuckDBPyConnection, terms: list[tuple], phrases_of: dict, resolved: dict, tables=TABLES) -> list[tuple]:
    """(term id, path, nonessential modifiers, printed code, level) of every index term that
    prints a code, every cell of the named tables and every 'see' term, whose code resolves."""
    rows = con.execute(_INDEX_DOCS, {"tables": list(tables)}).fetchall() + see_docs(terms, phrases_of)
    return [row for row in rows if resolved.get(row[3])]


def resolutions(con: duckdb.DuckDBPyConnection, position: dict[str, int]) -> dict[str, list[int]]:
    """Printed index codes -> the positions of the billable codes they resolve to."""
    resolved: dict[str, list[int]] = {}
    for raw, code in con.execute(_RESOLUTIONS).fetchall():
        if code in position:
            resolved.setdefault(raw, []).append(position[code])
    return resolved


def index_terms(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(_INDEX_TERMS).fetchall()


def additional_codes(notes: list[tuple[str, str]], position: dict[str, int]) -> dict[str, list[int]]:
    """Per node (its position, as a string), the nodes its 'use additional code' notes name:
    'E11.621' -> [L97.4, L97.5]; a range ('B95-B97') names its categories."""
    categories = sorted(code for code in position if len(code) == 3)
    found: dict[str, list[int]] = {}
    for code, text in notes:
        if code not in position:
            continue
        for first, last in note_references(text):
            named = [c for c in categories if first[:3] <= c <= last[:3]] if last else [first] if first in position else []
            targets = found.setdefault(str(position[code]), [])
            targets.extend(position[c] for c in named if position[c] not in targets)
    return found


def references(rows: list[tuple], phrases: dict[int, tuple[frozenset[str], frozenset[str]]]) -> dict[str, list[str]]:
    """The 'see' and 'see also' references of index terms, keyed by the term's essential words
    (sorted, space-joined): 'degener joint diseas' -> ['osteoarthritis'], 'adenoma' -> ['neoplasm',
    'benign'] ('by site' dropped: the query's own site words take its place). Shallower terms win."""
    site = set(tokenize("by site"))
    found: dict[str, list[str]] = {}
    for term_id, *_, reference in sorted(rows, key=lambda row: row[2]):
        words = [word for word in tokenize(reference or "") if word not in site]
        if words and term_id in phrases:
            found.setdefault(" ".join(sorted(phrases[term_id][0])), words)
    return found


def index_phrases(rows: list[tuple]) -> dict[int, tuple[frozenset[str], frozenset[str]]]:
    """(essential, nonessential) words of every index term: the titles on its path are essential
    (but a main term's other spellings and 'NEC', 'NOS'), the nonessential modifiers on its path
    are not ('Pain, neck NEC': 'neck pain' names it)."""
    phrases: dict[int, tuple[frozenset[str], frozenset[str]]] = {}
    for term_id, parent, level, title, nemod, *_ in sorted(rows, key=lambda row: row[2]):
        if level == 0 or parent not in phrases:
            essential, nonessential = main_term_phrase(title or "")
        else:
            essential, nonessential = phrases[parent]
            essential = essential | frozenset(tokenize(title or ""))
        nonessential = nonessential | frozenset(tokenize(nemod)) | (essential & _DEFAULT_WORDS)
        essential = essential - _DEFAULT_WORDS
        nonessential = nonessential - essential
        phrases[term_id] = (essential, nonessential)
    return phrases


def see_docs(rows: list[tuple], phrases: dict[int, tuple[frozenset[str], frozenset[str]]]) -> list[tuple]:
    """Index documents for the terms that print no code but a 'see' (or 'see also') reference:
    the term's own words, pointing to the code of the term the reference names (found like an
    exact-match query: its essential words all in the reference, the reference's words all in it)."""
    coded: dict[frozenset[str], list[tuple[int, int, str]]] = {}
    for term_id, _, level, *_, code, _ in rows:
        if code:
            coded.setdefault(phrases[term_id][0], []).append((level, term_id, code))
    docs = []
    for term_id, _, level, _, nemod, path, code, reference in rows:
        if code or not reference:
            continue
        wanted = frozenset(tokenize(reference))
        if not wanted or len(wanted) > EXACT_MAX_WORDS:
            continue
        target = _exact_lookup(coded, wanted, lambda entry: wanted <= frozenset().union(*phrases[entry[1]]))
        if target:
            docs.append((term_id, path, nemod, target[2], level))
    return docs


def _exact_lookup(by_essential: dict, query: frozenset[str], accept):
    """The first accepted entry among those whose essential words are a largest subset of `query`."""
    words = sorted(query)
    for size in range(len(words), 0, -1):
        for subset in combinations(words, size):
            for entry in sorted(by_essential.get(frozenset(subset), ())):
                if accept(entry):
                    return entry
    return None


def _save_bm25(bm25s, corpus: list[list[str]], folder: Path, b: float = 0.75) -> None:
    retriever = bm25s.BM25(b=b)
    retriever.index(corpus, show_progress=False)
    retriever.save(folder, show_progress=False)


def subtree_ends(depth: np.ndarray) -> np.ndarray:
    """end[i]: the first document after i that is not its descendant (documents in tree order)."""
    ends = np.full(len(depth), len(depth), dtype=np.int32)
    open_nodes: list[int] = []
    for i, d in enumerate(depth):
        while open_nodes and depth[open_nodes[-1]] >= d:
            ends[open_nodes.pop()] = i
        open_nodes.append(i)
    return ends


def tree_parents(depth: np.ndarray) -> np.ndarray:
    """parent[i]: the nearest earlier document of smaller depth (-1 for none)."""
    parents = np.full(len(depth), -1, dtype=np.int32)
    open_nodes: list[int] = []
    for i, d in enumerate(depth):
        while open_nodes and depth[open_nodes[-1]] >= d:
            open_nodes.pop()
        parents[i] = open_nodes[-1] if open_nodes else -1
        open_nodes.append(i)
    return parents


def _write_json(path: Path, payload) -> None:
    path.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")


@dataclass(frozen=True)
class Scored:
    """A query's tabular scores, for short queries its matched words per node, and whether it
    names a side."""

    scores: np.ndarray
    words: np.ndarray | None
    sided: bool = True


class Searcher:
    """The persisted indexes of one knowledge base, loaded (memory-mapped) on first use or by
    `load` (which `KnowledgeBase.preload` calls in the background from the start of a run)."""

    def __init__(self, folder: Path, dense: Callable[[], DenseIndex | None] | None = None):
        """`dense` opens the dense index (None when there is none), once, when a search first
        needs it (`all` or `dense`)."""
        self.folder = Path(folder)
        self._open_dense = dense
        self.dense: DenseIndex | None = None
        self._lock = threading.Lock()
        self._loaded = False

    def load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            import bm25s

            from icd_graph.errors import DatabaseMissing

            if not all((self.folder / name).exists() for name in (EXACT_FILE, "exact_starts.npy", "flags.npy", "unsided.npy", "parent.npy", "references.json", "additional.json")):
                raise DatabaseMissing(
                    f"no search index at {self.folder} (or one from an older version); "
                    "rebuild with `python cli.py icd build`"
                )
            load = dict(mmap=True, show_progress=False, verbosity=0)
            self.tabular = bm25s.BM25.load(self.folder / TABULAR, **load)
            has_index = (self.folder / INDEX).exists()
            self.index = bm25s.BM25.load(self.folder / INDEX, **load) if has_index else None
            self.codes = json.loads((self.folder / "codes.json").read_text(encoding="utf-8"))
            self.paths = json.loads((self.folder / "paths.json").read_text(encoding="utf-8"))
            self.billable = np.load(self.folder / "billable.npy")
            self.depth = np.load(self.folder / "depth.npy")
            self.end = np.load(self.folder / "end.npy")
            self.parent = np.load(self.folder / "parent.npy")
            self.discount = 1.0 + ENCOUNTER_DISCOUNT * np.load(self.folder / "encounter.npy")
            self.groups = groups = np.load(self.folder / "encounter_groups.npy")
            self.flags = np.load(self.folder / "flags.npy")
            self.unsided = np.load(self.folder / "unsided.npy")
            self.unspecified = frozenset(np.flatnonzero(self.flags & UNSPECIFIED).tolist())
            self.references = {
                frozenset(key.split()): [(key, reference)]
                for key, reference in json.loads((self.folder / "references.json").read_text(encoding="utf-8")).items()
            }
            self.additional = {
                int(node): targets
                for node, targets in json.loads((self.folder / "additional.json").read_text(encoding="utf-8")).items()
            }
            self.group_starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
            self.group_sizes = np.diff(np.r_[self.group_starts, len(groups)])
            self.phrase_positions = np.load(self.folder / "phrase_positions.npy")
            self.offsets = np.load(self.folder / "index_offsets.npy")
            self.targets = np.load(self.folder / "index_targets.npy")
            self.levels = np.load(self.folder / "index_levels.npy")
            self.level_divisors = 1.0 + LEVEL_DISCOUNT * self.levels
            keys, self.nonessential = json.loads((self.folder / EXACT_FILE).read_text(encoding="utf-8"))
            self.exact = dict(zip(keys, range(len(keys))))
            self.exact_starts = np.load(self.folder / "exact_starts.npy")
            self.exact_refs = np.load(self.folder / "exact_refs.npy")
            self._loaded = True

    def has_dense(self) -> bool:
        """Whether the dense leg is there, opening it on first use (DenseMismatch when its
        vectors belong to another build or model)."""
        self.load()
        with self._lock:
            if self._open_dense is not None:
                self.dense = self._open_dense()
                if self.dense is not None:
                    self._load_dense()
                self._open_dense = None
        return self.dense is not None

    def _load_dense(self) -> None:
        """Per dense document, the positions of its codes; per tabular document, the codes it
        describes (sorted by position), for the best similarity of each code."""
        position = {code: i for i, code in enumerate(self.codes)}
        flat = np.array([position.get(code, -1) for codes in self.dense.codes for code in codes], dtype=np.int32)
        docs = np.repeat(np.arange(len(self.dense.codes)), [len(codes) for codes in self.dense.codes])
        known = flat >= 0
        flat, docs = flat[known], docs[known]
        self.dense_offsets = np.r_[0, np.cumsum(np.bincount(docs, minlength=len(self.dense.codes)))].astype(np.int64)
        self.dense_targets = flat
        tabular = self.dense.kinds[docs]
        order = np.lexsort((docs[tabular], flat[tabular]))
        self.dense_pair_docs = docs[tabular][order].astype(np.int64)
        pair_positions = flat[tabular][order].astype(np.int64)
        self.dense_pair_starts = np.flatnonzero(np.r_[True, pair_positions[1:] != pair_positions[:-1]])
        self.dense_positions = pair_positions[self.dense_pair_starts]

    def search(self, text: str, k: int = 20, source: str = ALL) -> list[Match]:
        """Tabular: any node; index and all: billable codes only (see the module docstring)."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        self.load()
        condition = without_status(text)
        words = tokenize(condition)
        if len(words) < SENTENCE_WORDS:  # a diagnosis, not a sentence
            text = condition
        else:
            words = tokenize(text)
        if source == DENSE:
            return self._dense_search(text, k)
        tokens = [self._correct(token) for token in words]
        if not tokens or k <= 0:
            return []
        tabular_scores = self._tabular_scores(tokens)
        exact = self._exact(tokens)
        if source == TABULAR:
            first = list(dict.fromkeys(ref for missing, kind, ref in exact if kind == TABULAR and not missing))
            rest = [i for i in _top(tabular_scores, k + len(first)) if i not in first]
            return [Match(self.codes[i], float(tabular_scores[i]), "", TABULAR) for i in (first + rest)[:k]]
        flags = query_flags(text)
        scored = Scored(tabular_scores, self._words(tokens), bool(flags & _SIDES))
        exact_ranked = self._exact_ranked(exact, scored, source)
        index_ranked = self._index_ranked(tokens, scored)
        lists = [(EXACT, exact_ranked), (INDEX, index_ranked)]
        followed = self._follow_reference(tokens)
        if followed:
            lists.append((SEE, self._index_ranked(followed, scored)))
        if source == ALL:
            lists.insert(1, (TABULAR, self._tabular_ranked(scored)))
        order, fused = self._order(lists, flags)
        additional = self._additional_ranked(order[:FOLLOWED], scored)
        if additional:
            lists.append((ADDITIONAL, additional))
            order, fused = self._order(lists, flags)
        if source == ALL and order and self.has_dense():
            first = order[0] if any(doc == order[0] for doc, *_ in exact_ranked) else None
            lists.append((DENSE, self._dense_ranked(text, CANDIDATES, scored)))
            order, fused = self._order(lists, flags, len(tokens) >= SENTENCE_WORDS)
            if first is not None and order[0] != first:
                order.remove(first)
                order.insert(0, first)
                fused[first] = max(fused[first], fused[order[1]])
        return self._matches(lists, order[:k], fused)

    def _dense_search(self, text: str, k: int) -> list[Match]:
        """The dense retriever alone: codes by cosine similarity (its score), the encounter
        variants of a code after all first variants, contradicting codes discounted."""
        if not self.has_dense():
            from icd_graph.embed import INSTALL, DenseUnavailable, available
            from icd_graph.errors import DatabaseMissing

            if not available():
                raise DenseUnavailable(f"--source dense needs the dense extra: {INSTALL}; then `python cli.py icd build --dense`")
            raise DatabaseMissing(f"no dense vectors beside {self.folder}; build them with `python cli.py icd build --dense`")
        if not text.strip() or k <= 0:
            return []
        ranked = self._dense_ranked(text, max(k, CANDIDATES))
        lists = [(DENSE, ranked)]
        order, _ = self._order(lists, query_flags(text))
        similarity = {doc: score for doc, score, _ in ranked}
        return self._matches(lists, order[:k], similarity)

    def _dense_ranked(self, text: str, n: int, scored: Scored | None = None) -> list[tuple[int, float, str]]:
        """At least n billable codes from the most similar documents: a description's codes
        (initial encounter first), an index path's codes most similar by their own
        descriptions; at most EXPANSION per document. Given the query's `scored`, a document's
        codes are preceded, as in the lexical lists, by the siblings of an 'unspecified' one that
        name more of the query (`_site_first`)."""
        dense = self.dense
        similarities = dense.similarities(text)
        codes = np.full(len(self.codes), -1.0, dtype=np.float32)
        codes[self.dense_positions] = np.maximum.reduceat(similarities[self.dense_pair_docs], self.dense_pair_starts)
        ranked: dict[int, tuple[int, float, str]] = {}
        for doc in _top(similarities + 1.0, DENSE_DOCS * n):
            targets = self.dense_targets[self.dense_offsets[doc] : self.dense_offsets[doc + 1]]
            if not dense.kinds[doc]:
                targets = targets[np.lexsort((targets, -codes[targets]))]
            path = "" if dense.kinds[doc] else dense.texts[doc]
            members = targets[:EXPANSION].tolist()
            for member in members if scored is None else self._site_first(members, scored):
                ranked.setdefault(member, (member, float(similarities[doc]), path))
            if len(ranked) >= n:
                break
        return list(ranked.values())

    def _correct(self, token: str) -> str:
        """An alphabetic word that no index knows becomes the first known word one edit away
        ('ransient' -> 'transient'); other words are kept."""
        if len(token) < MIN_CORRECTED or not token.isalpha() or self._known(token):
            return token
        return next((variant for variant in spelling_variants(token) if self._known(variant)), token)

    def _known(self, token: str) -> bool:
        return token in self.tabular.vocab_dict or (self.index is not None and token in self.index.vocab_dict)

    def _follow_reference(self, tokens: list[str]) -> list[str]:
        """The query with the words of the largest index term it names that has a 'see' or 'see
        also' reference replaced by the reference ('right hip degenerative joint disease' ->
        'right hip osteoarthritis'); [] when it names none."""
        query = frozenset(tokens)
        found = _exact_lookup(self.references, query, lambda entry: True) if len(query) <= EXACT_MAX_WORDS else None
        if found is None:
            return []
        named, reference = frozenset(found[0].split()), found[1]
        kept = [token for token in tokens if token not in named]
        return kept + [word for word in reference if word not in kept]

    def _tabular_scores(self, tokens: list[str]) -> np.ndarray:
        """Per node, the best score of its description and inclusion terms; the codes that differ
        only by the encounter (7th character) share their best score, initial encounter first."""
        scores = self._node_best(_scores(self.tabular, tokens))
        shared = np.repeat(np.maximum.reduceat(scores, self.group_starts), self.group_sizes)
        return np.where(self.discount > 1, shared, np.maximum(scores, shared)) / self.discount

    def _exact(self, tokens: list[str]) -> list[tuple[int, str, int]]:
        """Phrases whose essential words are all in the query and that hold every query word (or
        all but one, ranked after): more essential words first, then index terms before tabular
        phrases, then residual 'Other ...' categories last, then initial encounters, then shallower.
        A category that holds every query word comes after the index terms and codes that hold
        them all too: they name the code, where the category's codes would be told apart by
        words the query does not say ('Type 2 diabetes mellitus' is the index's E11.9, not E11's
        best-scoring E11.21 'with diabetic nephropathy')."""
        query = frozenset(tokens)
        if len(query) > EXACT_MAX_WORDS:
            return []
        words = sorted(query)
        tolerated = 1 if len(query) > 1 else 0
        found: list[tuple[int, int, int, int, int, int, int, str, int]] = []
        for size in range(len(words), 0, -1):
            for subset in combinations(words, size):
                key = self.exact.get(" ".join(subset))
                for entry in () if key is None else range(self.exact_starts[key], self.exact_starts[key + 1]):
                    missing = len(query - set(subset) - set(self.nonessential[entry].split()))
                    if missing <= tolerated:
                        kind, ref = map(int, self.exact_refs[entry])
                        if kind == 0:
                            found.append((missing, 0, -size, 0, 0, 0, int(self.levels[ref]), INDEX, ref))
                        else:
                            category = int(not missing and not self.billable[ref])
                            other = int(bool(self.flags[ref] & OTHER))
                            found.append((missing, category, -size, 1, other, int(self.discount[ref] > 1), int(self.depth[ref]), TABULAR, ref))
        if not any(not missing and not category for missing, category, *_ in found):  # no code to give way to
            found = [(missing, 0, *rest) for missing, _, *rest in found]
        return [(missing, kind, ref) for missing, *_, kind, ref in sorted(found)]

    def _exact_ranked(self, exact, scored: Scored, source: str) -> list[tuple[int, float, str]]:
        ranked: dict[int, tuple[int, float, str]] = {}
        for _, kind, ref in exact:
            if kind == INDEX:
                members, path = self._best(self.targets[self.offsets[ref] : self.offsets[ref + 1]], scored), self.paths[ref]
            elif source == ALL:
                members, path = self._best(np.arange(ref, self.end[ref]), scored), ""
            else:
                continue
            for member in members:
                ranked.setdefault(member, (member, 0.0, path))
        return list(ranked.values())

    def _tabular_ranked(self, scored: Scored) -> list[tuple[int, float, str]]:
        scores = scored.scores
        docs = np.array(_top(scores, CANDIDATES), dtype=np.int64)
        billable = self.billable[docs]
        categories = docs[~billable]
        below = iter(self._best_of(categories + 1, self.end[categories], scored))
        ranked: dict[int, tuple[int, float, str]] = {}
        for doc, score, alone in zip(docs.tolist(), scores[docs].tolist(), billable.tolist()):
            for member in [doc] if alone else next(below):
                ranked.setdefault(member, (member, score, ""))
        return list(ranked.values())

    def _index_ranked(self, tokens: list[str], scored: Scored) -> list[tuple[int, float, str]]:
        if self.index is None:
            return []
        scores = _scores(self.index, tokens) / self.level_divisors
        docs = np.array(_top(scores, CANDIDATES), dtype=np.int64)
        bests = self._best_of(self.offsets[docs], self.offsets[docs + 1], scored, self.targets)
        ranked: dict[int, tuple[int, float, str]] = {}
        for doc, score, best in zip(docs.tolist(), scores[docs].tolist(), bests):
            for member in best:
                ranked.setdefault(member, (member, score, self.paths[doc]))
        return list(ranked.values())

    def _additional_ranked(self, heads: list[int], scored: Scored) -> list[tuple[int, float, str]]:
        """The codes that the 'use additional code' notes of the best hits (and of their ancestors)
        name and that hold at least MIN_SHARED query words ('diabetic foot ulcer' -> E11.621 ->
        L97.5-, the site of the ulcer): at most EXPANSION per note reference, those with the most
        query words first, then the 'unspecified' ones (what the query does not say)."""
        if scored.words is None:
            return []
        ranked: dict[int, tuple[int, float, str]] = {}
        for head in heads:
            node = head
            while node >= 0:
                for target in self.additional.get(node, ()):
                    members = np.arange(target, self.end[target])
                    members = members[self.billable[members] & (scored.words[members] >= MIN_SHARED)]
                    specified = (self.flags[members] & UNSPECIFIED) == 0
                    order = np.lexsort((members, -scored.scores[members], specified, -scored.words[members]))
                    for member in members[order[:EXPANSION]].tolist():
                        ranked.setdefault(member, (member, float(scored.scores[member]), ""))
                node = int(self.parent[node])
        return list(ranked.values())

    def _best(self, positions: np.ndarray, scored: Scored) -> list[int]:
        """At most EXPANSION billable positions (best tabular score, then shallower, then first),
        each code that names a side the query does not name preceded by its unspecified-side
        sibling, and all preceded by at most EXPANSION siblings of an 'unspecified' one that match
        more query words (a coder's next steps: no side documented -> the unspecified side;
        'site unspecified' -> the site the query names)."""
        return self._best_of(np.array([0]), np.array([len(positions)]), scored, positions)[0]

    def _best_of(self, starts: np.ndarray, ends: np.ndarray, scored: Scored, within: np.ndarray | None = None) -> list[list[int]]:
        """`_best` of each range of positions, `within[start:end]` (or start .. end - 1), ranked
        together: one sort for a list's 50 candidates instead of 50."""
        lengths = ends - starts
        group = np.repeat(np.arange(len(starts)), lengths)
        positions = _ranges(starts, lengths)
        if within is not None:
            positions = within[positions]
        keep = self.billable[positions]
        positions, group = self._ranked_in(positions[keep], group[keep], scored.scores)
        bests: list[list[int]] = [[] for _ in starts]
        if scored.sided:
            for g, position in zip(group.tolist(), positions.tolist()):
                bests[g].append(position)
        else:
            for g, position, unsided in zip(group.tolist(), positions.tolist(), self.unsided[positions].tolist()):
                best = bests[g]
                for p in (unsided, position):
                    if p >= 0 and p not in best:
                        best.append(p)
        return [self._site_first(best, scored) for best in bests]

    def _site_first(self, best: list[int], scored: Scored) -> list[int]:
        """best, preceded by at most EXPANSION siblings of an 'unspecified' one that match more
        query words ('site unspecified' -> the site the query names)."""
        unspecified = [p for p in best if p in self.unspecified]
        if not unspecified or scored.words is None:
            return best
        parents = {int(self.parent[p]) for p in unspecified} - {-1}
        siblings = np.array([s for parent in parents for s in range(parent + 1, self.end[parent])], dtype=np.int64)
        if not len(siblings):
            return best
        floor = max(scored.words[p] for p in unspecified)
        better = siblings[self.billable[siblings] & (scored.words[siblings] > floor)]
        return [p for p in self._ranked(better, scored.scores) if p not in best] + best

    def _ranked(self, positions: np.ndarray, scores: np.ndarray) -> list[int]:
        return self._ranked_in(positions, np.zeros(len(positions), dtype=np.int64), scores)[0].tolist()

    def _ranked_in(self, positions: np.ndarray, group: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions, group) of the EXPANSION best positions of each group (best score, then
        shallower, then first), group by group."""
        order = np.lexsort((positions, self.depth[positions], -scores[positions], group))
        positions, group = positions[order], group[order]
        top = np.arange(len(group)) - np.searchsorted(group, group) < EXPANSION
        return positions[top], group[top]

    def _words(self, tokens: list[str]) -> np.ndarray | None:
        """Per node, how many query words its best-matching description or inclusion term holds
        (None for queries longer than EXACT_MAX_WORDS)."""
        unique = list(dict.fromkeys(tokens))
        if len(unique) > EXACT_MAX_WORDS:
            return None
        words = np.zeros(len(self.codes), dtype=np.int8)
        for token in unique:
            words += self._node_best(_scores(self.tabular, [token])) > 0
        return words

    def _node_best(self, scores: np.ndarray) -> np.ndarray:
        """Per node, the best score of its description and inclusion terms (`scores`, one per
        phrase, never negative), from the few phrases that score at all: a maximum over every
        phrase of the classification cost a search about 10 ms."""
        best = np.zeros(len(self.codes), dtype=scores.dtype)
        hit = np.flatnonzero(scores > 0)
        if len(hit):
            nodes = self.phrase_positions[hit]
            starts = np.flatnonzero(np.r_[True, nodes[1:] != nodes[:-1]])
            best[nodes[starts]] = np.maximum.reduceat(scores[hit], starts)
        return best

    def _matches(self, lists, best: list[int], fused: dict[int, float]) -> list[Match]:
        """The best positions as matches, each with its first matched path and its lists. The
        dense list (last) names the path of a code only when no lexical list found the code."""
        matched: dict[int, str] = {}
        sources: dict[int, list[str]] = {}
        for name, ranked in lists:
            for doc, _, path in ranked:
                sources.setdefault(doc, []).append(name)
                if path and doc not in matched and (name != DENSE or len(sources[doc]) == 1):
                    matched[doc] = path
        return [Match(self.codes[d], fused[d], matched.get(d, ""), "+".join(sources[d])) for d in best]

    def _order(self, lists, flags: int, sentence: bool = False) -> tuple[list[int], dict[int, float]]:
        """Weighted reciprocal rank fusion (a `sentence` weights the dense list SENTENCE_DENSE);
        a code that contradicts the query (`contradicts`) is discounted, and the encounter
        variants (7th character) of a code already ranked follow all first variants. The fused
        order and scores."""
        weights = {**WEIGHTS, DENSE: SENTENCE_DENSE} if sentence else WEIGHTS
        fused: dict[int, float] = {}
        for name, ranked in lists:
            for rank, (doc, _, _) in enumerate(ranked, start=1):
                fused[doc] = fused.get(doc, 0.0) + weights[name] / (RRF_K + rank)
        docs = list(fused)
        for doc, code_flags, unsided in zip(docs, self.flags[docs].tolist(), self.unsided[docs].tolist()):
            if contradicts(flags, code_flags):
                fused[doc] *= CONFLICT_DISCOUNT
            elif unsided >= 0 and not flags & _SIDES:
                fused[doc] *= SIDE_DISCOUNT
        group_of = dict(zip(docs, self.groups[docs].tolist()))
        first, variants, groups = [], [], set()
        for doc in sorted(fused, key=lambda doc: (-fused[doc], doc)):
            (variants if group_of[doc] in groups else first).append(doc)
            groups.add(group_of[doc])
        return first + variants, fused


def _scores(retriever, tokens: list[str]) -> np.ndarray:
    known = [token for token in tokens if token in retriever.vocab_dict]
    if not known:
        return np.zeros(retriever.scores["num_docs"], dtype=np.float32)
    return retriever.get_scores(known)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """start, start + 1, ... start + length - 1 of each range, one after the other."""
    return np.arange(lengths.sum()) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)


def _top(scores: np.ndarray, n: int) -> list[int]:
    """Indices of the n best positive scores, best first (ties: document order)."""
    candidates = np.flatnonzero(scores > 0)
    if len(candidates) > n:
        candidates = candidates[np.argpartition(-scores[candidates], n - 1)[:n]]
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order].tolist()
