"""The knowledge base as the review page uses it: describe a code, check that a code the coder
chose is billable, and search for one by words or by code."""

from __future__ import annotations

from dataclasses import dataclass

from icd_graph.codes import is_code
from icd_graph.kb import KnowledgeBase
from review.errors import ReviewError


@dataclass(frozen=True)
class Hit:
    """A billable code offered to the coder; `why` says how it was found."""

    code: str
    description: str
    why: str


class CodeBook:
    def __init__(self, kb: KnowledgeBase):
        self.kb = kb

    def warm(self) -> None:
        """Start loading the search indexes in the background now (a few seconds) rather than at
        the coder's first search; a failure, or the app stopping meanwhile, is not reported here
        (a failure is raised again by that first search)."""
        self.kb.preload()

    def describe(self, code: str) -> str:
        info = self.kb.get(code)
        return info.description if info else ""

    def check(self, text: str) -> str:
        """The code in its stored spelling when it is billable; ReviewError saying why not."""
        validation = self.kb.validate(text)
        if validation.valid and validation.billable:
            return validation.code
        if validation.code is None:
            raise ReviewError(f"{text.strip()!r} is not an ICD-10-CM code")
        if not validation.valid:
            raise ReviewError(f"{validation.code} is not a code of {self.kb.release.name}")
        some = ", ".join(validation.completions[:4])
        hint = f": choose a billable code under it, e.g. {some}" if some else ""
        raise ReviewError(f"{validation.code} is not billable ({validation.reason}){hint}")

    def search(self, query: str, k: int = 12) -> list[Hit]:
        """Billable codes for words of a diagnosis or for a code (a category lists its billable
        codes), the knowledge base's fused search order."""
        query = query.strip()
        if not query:
            return []
        hits: list[Hit] = []
        if is_code(query):
            validation = self.kb.validate(query)
            if validation.billable:
                hits.append(Hit(validation.code, self.describe(validation.code), "the code typed"))
            elif validation.valid:
                hits += [Hit(code, self.describe(code), f"billable under {validation.code}")
                         for code in validation.completions[:k]]
        hits += [Hit(hit.code, hit.description, hit.matched) for hit in self.kb.search(query, k=k, source="all")]
        first: dict[str, Hit] = {}
        for hit in hits:
            first.setdefault(hit.code, hit)
        return list(first.values())[:k]
