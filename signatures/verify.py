"""Verification: propose codes, then re-choose each among its graph neighbours by description only."""

import dspy

from signatures.guidelines import with_rules


class ProposeCodes(dspy.Signature):
    __doc__ = with_rules(
        """You are a certified medical coder. Assign the ICD-10-CM codes for this clinical
    note, each with the sentence of the note that supports it. Give complete codes to the highest
    specificity documented. The codes the coding rules assign are given: keep those that are
    right, correct or drop the others, and add what they miss."""
    )

    note: str = dspy.InputField(desc="The clinical note, or one part of a long note.")
    suggested: list[str] = dspy.InputField(desc="Codes the coding rules assign: 'CODE: the words they code'.")
    codes: list[str] = dspy.OutputField(desc="ICD-10-CM codes, e.g. ['E11.65', 'I10'].")
    evidence: list[str] = dspy.OutputField(
        desc="For each code, in the same order, one sentence copied word for word from the note."
    )


class SelectBestMatch(dspy.Signature):
    """You are a certified medical coder verifying a code. Read the evidence from the note and the
    numbered descriptions of closely related ICD-10-CM codes, and choose the description that
    matches the documented diagnosis most precisely.

    Match every documented detail (type, site, laterality, acuity, cause, complications, episode
    of care). Choose an 'unspecified' description only when the note gives no more detail. Do
    not choose a description that adds a detail the note does not document. The option the
    coding rules chose is given: keep it unless another matches better."""

    evidence: str = dspy.InputField(desc="What the note documents.")
    options: list[str] = dspy.InputField(desc="Numbered descriptions: 'N. description'.")
    suggested: str = dspy.InputField(desc="The number of the option the coding rules chose.")
    choice: str = dspy.OutputField(desc="The number of the best description.")
    rationale: str = dspy.OutputField(desc="One short sentence: why.")
