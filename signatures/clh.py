"""Code Like Humans: evidence, alphabetic index, tabular list, reconciliation — as a coder works."""

import dspy

from signatures.guidelines import with_rules


class ExtractEvidence(dspy.Signature):
    __doc__ = with_rules(
        """You are a certified medical coder starting to code a clinical note. Find the
    diagnostic statements to code and, for each, the lead term under which you would look it up
    in the ICD-10-CM Alphabetic Index.

    The lead term is the main term of the index: the condition itself (e.g. 'Diabetes',
    'Hypertension', 'Fracture', 'Pneumonia', 'Pain'), not the body site or an adjective
    ('left', 'acute', 'chronic' are subterms).

    You are also given the problems a rule-based reader found in the note's assessment, each
    with its status: start from them, drop what is not reportable and add what they miss."""
    )

    note: str = dspy.InputField(desc="The clinical note, or one part of a long note.")
    problems: list[str] = dspy.InputField(desc="Problems the rule-based reader found: 'text (status)'.")
    statements: list[str] = dspy.OutputField(
        desc="Each diagnostic statement to code, copied word for word from the note."
    )
    lead_terms: list[str] = dspy.OutputField(
        desc="For each statement, in the same order, its main term in the Alphabetic Index."
    )


class NavigateIndex(dspy.Signature):
    """You are a certified medical coder looking up a diagnostic statement in the ICD-10-CM
    Alphabetic Index. You are shown numbered index entries (main term, subterms, and the code
    printed there or a 'see' reference).

    Choose the entry whose subterms match the statement most specifically: follow every
    documented detail (type, site, laterality, acuity, cause, 'with' links) and fall back to a
    less specific entry only when the statement gives no more detail. If no entry fits, answer 0
    and give another main term to look up (a synonym, or the term named by a 'see' reference).
    The entry the coding rules chose is given: keep it unless another fits better."""

    statement: str = dspy.InputField(desc="The diagnostic statement from the note.")
    lead_term: str = dspy.InputField(desc="The index term being looked up.")
    entries: list[str] = dspy.InputField(desc="Numbered index entries: 'N. main term, subterm, ... -> code'.")
    suggested: str = dspy.InputField(desc="The number of the entry the coding rules chose, or 0.")
    choice: str = dspy.OutputField(desc="The number of the best entry, or 0 if none fits.")
    next_term: str = dspy.OutputField(desc="When the answer is 0: another index term to look up; otherwise empty.")


class ValidateCandidates(dspy.Signature):
    """You are a certified medical coder checking candidate codes in the ICD-10-CM Tabular List
    before assigning them. Each candidate is shown with its title and its instructional notes
    (inclusion terms, Excludes1, Excludes2, code first, use additional code), including those
    inherited from its category and chapter.

    Accept a candidate only if its title and inclusion terms describe the statement and no note
    forbids it for this patient (an Excludes1 condition that the statement documents, a
    'code first' condition that is missing). Prefer the most specific candidate supported by the
    statement; accept several only when the statement needs several codes. The candidate the
    coding rules accept is given: keep it unless the notes or the statement say otherwise."""

    statement: str = dspy.InputField(desc="The diagnostic statement from the note.")
    candidates: list[str] = dspy.InputField(desc="Candidates as 'CODE: title | notes'.")
    suggested: list[str] = dspy.InputField(desc="The codes the coding rules accept; [] if none.")
    accepted: list[str] = dspy.OutputField(desc="The accepted codes, copied exactly; [] if none fits.")
    rationale: str = dspy.OutputField(desc="One short sentence: why.")


class ReconcileCodes(dspy.Signature):
    __doc__ = with_rules(
        """You are a certified medical coder finalising the codes of one encounter. You are
    shown the diagnostic statements of the note and the validated codes with their instructional
    notes.

    Return the final code set: remove duplicates, remove a code when a more specific or a
    combination code already covers the same condition, never keep two codes that an Excludes1
    note forbids together (keep the one the note supports best), and add the code that a
    'use additional code' or 'code first' note requires when the note documents that condition.
    The set the coding rules settle on is given: start from it."""
    )

    statements: list[str] = dspy.InputField(desc="The diagnostic statements of the note.")
    candidates: list[str] = dspy.InputField(desc="Validated codes as 'CODE: title | notes'.")
    suggested: list[str] = dspy.InputField(desc="The final codes by the coding rules.")
    final_codes: list[str] = dspy.OutputField(desc="The final codes, e.g. ['E11.22', 'N18.3']; [] if none.")
    rationale: str = dspy.OutputField(desc="One short sentence on what changed and why.")
