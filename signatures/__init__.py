"""DSPy signatures of the coding programs: the hand-written prompts live in their docstrings."""

from signatures.clh import ExtractEvidence, NavigateIndex, ReconcileCodes, ValidateCandidates
from signatures.medcoder import ExtractDiagnoses, RerankCandidates
from signatures.verify import ProposeCodes, SelectBestMatch

__all__ = [
    "ExtractDiagnoses",
    "ExtractEvidence",
    "NavigateIndex",
    "ProposeCodes",
    "ReconcileCodes",
    "RerankCandidates",
    "SelectBestMatch",
    "ValidateCandidates",
]
