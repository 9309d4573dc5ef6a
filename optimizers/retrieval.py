"""Candidate recall without an LM: how often the knowledge base's retrievers rank the gold code
in their top k, for gold mention phrases or for whole notes.

Retrievers: `tabular`, `index`, `dense`, `all` (KnowledgeBase.search with that source) and `navigation`
(KnowledgeBase.index_lookup over the words of the query, codes in the order of the entries).
Notes mode queries the whole note, or with `sentences=True` every sentence, fused by reciprocal
rank. Mentions come from the dataset's gold mentions, else from the text of its gold evidence spans.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from data.errors import DatasetError
from data.records import NoteRecord
from icd_graph.codes import category

RETRIEVERS = ("tabular", "index", "dense", "all", "navigation")
RRF_K = 60
SENTENCE = re.compile(r"[^\n.!?]+[.!?]?")
WORD = re.compile(r"[A-Za-z0-9]+(?:'[a-z]+)?")

Retriever = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class Query:
    note_id: str
    text: str
    gold: tuple[str, ...]


@dataclass(frozen=True)
class Recall:
    retriever: str
    code: dict[int, float]
    category: dict[int, float]


@dataclass(frozen=True)
class QueryRanks:
    """1-based rank of each gold code per retriever (None: not in the top max(k))."""

    query: Query
    ranks: dict[str, tuple[int | None, ...]]


@dataclass(frozen=True)
class RetrievalReport:
    mode: str
    sentences: bool
    ks: tuple[int, ...]
    queries: int
    gold_codes: int
    recalls: tuple[Recall, ...]
    details: tuple[QueryRanks, ...]

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "sentences": self.sentences,
            "ks": list(self.ks),
            "queries": self.queries,
            "gold_codes": self.gold_codes,
            "recall": {
                r.retriever: {"code": {str(k): v for k, v in r.code.items()}, "category": {str(k): v for k, v in r.category.items()}}
                for r in self.recalls
            },
            "queries_detail": [
                {"note_id": d.query.note_id, "query": d.query.text if self.mode == "mentions" else None, "gold": list(d.query.gold), "ranks": {n: list(r) for n, r in d.ranks.items()}}
                for d in self.details
            ],
        }


def unique(codes) -> list[str]:
    return list(dict.fromkeys(codes))


def default_retrievers(kb) -> list[str]:
    """Every retriever, `dense` only when the knowledge base has dense vectors."""
    return [name for name in RETRIEVERS if name != "dense" or kb.has_dense()]


def kb_retrievers(kb, names: Sequence[str] | None = None) -> dict[str, Retriever]:
    """The named retrievers over a knowledge base (default: `default_retrievers`)."""
    names = default_retrievers(kb) if names is None else names
    def search(source: str) -> Retriever:
        return lambda text, k: unique(hit.code for hit in kb.search(text, k=k, source=source))

    def navigate(text: str, k: int) -> list[str]:
        entries = kb.index_lookup(WORD.findall(text))
        return unique(code for entry in entries for code in (entry.billable_codes or ((entry.code,) if entry.code else ())))[:k]

    table = {name: search(name) for name in ("tabular", "index", "dense", "all")} | {"navigation": navigate}
    unknown = [name for name in names if name not in table]
    if unknown:
        raise DatasetError(f"unknown retriever {unknown[0]!r}; use {', '.join(RETRIEVERS)}")
    return {name: table[name] for name in names}


def fused(retriever: Retriever, sentences: Sequence[str], k: int) -> list[str]:
    """Reciprocal-rank fusion of the rankings of every sentence."""
    scores: dict[str, float] = defaultdict(float)
    for sentence in sentences:
        for rank, code in enumerate(retriever(sentence, k), start=1):
            scores[code] += 1 / (RRF_K + rank)
    return sorted(scores, key=lambda code: -scores[code])[:k]


def sentences_of(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE.findall(text) if len(WORD.findall(s)) >= 2]


def mention_queries(records: Sequence[NoteRecord]) -> list[Query]:
    queries = []
    for record in records:
        if record.mentions:
            queries += [Query(record.id, m.phrase, (m.code,)) for m in record.mentions]
        else:
            queries += [Query(record.id, record.text[e.start : e.end], (e.code,)) for e in record.evidence]
    if not queries:
        raise DatasetError(
            "mentions mode needs gold mentions: use --labels with a diagnosis_mention column "
            "(aci_icd10cm_medcoder_train_valid.csv) or a dataset with evidence spans"
        )
    return queries


def note_queries(records: Sequence[NoteRecord]) -> list[Query]:
    queries = [Query(r.id, r.text, r.codes) for r in records if r.codes]
    if not queries:
        raise DatasetError("notes mode needs gold codes: pass --labels CSV for aci datasets")
    return queries


def rank_of(ranked: Sequence[str], code: str) -> int | None:
    return ranked.index(code) + 1 if code in ranked else None


def category_rank(ranked: Sequence[str], code: str) -> int | None:
    return rank_of([category(c) for c in ranked], category(code))


def candidate_recall(
    records: Sequence[NoteRecord],
    retrievers: dict[str, Retriever],
    *,
    mode: str = "mentions",
    ks: Sequence[int] = (1, 5, 10, 50),
    sentences: bool = False,
) -> RetrievalReport:
    """Recall@k of the gold codes (and of their categories) per retriever, micro over gold codes."""
    if mode not in ("mentions", "notes"):
        raise DatasetError(f"unknown mode {mode!r}; use mentions or notes")
    ks = tuple(sorted(set(ks)))
    depth = ks[-1]
    queries = mention_queries(records) if mode == "mentions" else note_queries(records)
    details, category_ranks = [], defaultdict(list)
    for query in queries:
        ranks = {}
        for name, retriever in retrievers.items():
            if mode == "notes" and sentences:
                ranked = fused(retriever, sentences_of(query.text), depth)
            else:
                ranked = retriever(query.text, depth)
            ranks[name] = tuple(rank_of(ranked, code) for code in query.gold)
            category_ranks[name] += [category_rank(ranked, code) for code in query.gold]
        details.append(QueryRanks(query, ranks))
    total = sum(len(q.gold) for q in queries)

    def recall(ranks: list[int | None], k: int) -> float:
        return sum(1 for r in ranks if r is not None and r <= k) / total

    recalls = tuple(
        Recall(
            name,
            {k: recall([r for d in details for r in d.ranks[name]], k) for k in ks},
            {k: recall(category_ranks[name], k) for k in ks},
        )
        for name in retrievers
    )
    return RetrievalReport(mode, sentences and mode == "notes", ks, len(queries), total, recalls, tuple(details))
