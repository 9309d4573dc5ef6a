"""The ICD-10-CM knowledge base: build it once (`icd_graph.build`), query it with `KnowledgeBase`.

`KnowledgeBase` is imported on first use, so that importing the errors or records stays cheap.
"""

from icd_graph.errors import DatabaseMissing, IcdError, MalformedCode, SourceError, UnknownCode
from icd_graph.records import CodeInfo, IndexEntry, Note, Release, SearchHit, Validation

__all__ = [
    "CodeInfo", "DatabaseMissing", "IcdError", "IndexEntry", "KnowledgeBase", "MalformedCode",
    "Note", "Release", "SearchHit", "SourceError", "UnknownCode", "Validation",
]


def __getattr__(name: str):
    if name == "KnowledgeBase":
        from icd_graph.kb import KnowledgeBase

        return KnowledgeBase
    raise AttributeError(f"module 'icd_graph' has no attribute {name!r}")
