"""MedCodER: extract diagnoses with their evidence, then pick each code among retrieved candidates."""

import dspy

from signatures.guidelines import with_rules


class ExtractDiagnoses(dspy.Signature):
    __doc__ = with_rules(
        """You are a certified medical coder. Read the clinical note and list every
    diagnosis that must be reported with ICD-10-CM for this encounter, each with the sentence of
    the note that documents it.

    Write each diagnosis as a short clinical statement with all the detail the note gives
    (type, site, laterality, acuity, cause, complications), in words, without codes.

    You are also given the problems a rule-based reader found in the note's assessment, each
    with its status. Start from them: keep those to report, drop those that are not
    reportable (a heading that is no diagnosis, a denied or family condition), and add any
    reportable diagnosis they miss."""
    )

    note: str = dspy.InputField(desc="The clinical note, or one part of a long note.")
    problems: list[str] = dspy.InputField(desc="Problems the rule-based reader found: 'text (status)'.")
    diagnoses: list[str] = dspy.OutputField(
        desc="One short statement per reportable diagnosis, e.g. 'type 2 diabetes mellitus with hyperglycemia'."
    )
    evidence: list[str] = dspy.OutputField(
        desc="For each diagnosis, in the same order, one sentence copied word for word from the note."
    )


class RerankCandidates(dspy.Signature):
    __doc__ = with_rules(
        """You are a certified medical coder. Choose the ICD-10-CM code that describes the
    documented diagnosis most specifically, among candidates retrieved from the code set.

    Prefer the candidate that matches every documented detail; prefer a combination code when
    the diagnosis links two conditions; choose an 'unspecified' code only when the note gives no
    further detail. Answer NONE when no candidate describes the diagnosis. The coding rules'
    choice is given: keep it unless another candidate describes the diagnosis better."""
    )

    diagnosis: str = dspy.InputField(desc="The diagnosis to code.")
    evidence: str = dspy.InputField(desc="The sentence of the note that documents it.")
    candidates: list[str] = dspy.InputField(desc="Candidate codes, each as 'CODE: description'.")
    suggested: str = dspy.InputField(desc="The candidate the coding rules chose, or NONE.")
    code: str = dspy.OutputField(desc="The best candidate's code copied exactly (e.g. 'E11.65'), or NONE.")
    rationale: str = dspy.OutputField(desc="One short sentence: why this code.")
