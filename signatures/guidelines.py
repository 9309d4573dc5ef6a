"""ICD-10-CM coding rules shared by the hand-written prompts (ICD-10-CM Official Guidelines for
Coding and Reporting, Sections I.A-I.B and IV)."""

import inspect

CODING_RULES = """\
Coding rules (ICD-10-CM Official Guidelines):
- Code only conditions the provider documents for this encounter: diagnoses that are treated,
  evaluated, monitored or that affect care. Do not code conditions that are denied, ruled out,
  resolved, or only mentioned as family history.
- Outpatient and office notes: do not code a diagnosis written as "probable", "suspected",
  "likely", "possible", "questionable", "rule out" or "consistent with"; code the documented
  signs, symptoms or abnormal findings instead.
- Do not code signs and symptoms that are routinely part of a confirmed diagnosis (for example
  polyuria with diabetes); do code symptoms that are not integral to it.
- Code to the highest specificity documented: type, laterality, acuity, severity, stage, site,
  episode of care and cause.
- When two conditions are linked ("due to", "with", "secondary to", and the presumed links of
  diabetes, hypertension with heart or kidney disease), use the single combination code that
  describes both, not separate codes.
- Follow the instructional notes of the Tabular List: Excludes1 (never together), code first
  and use additional code (paired codes), and seventh characters.
"""


def with_rules(instructions: str) -> str:
    """A signature's instructions followed by the shared coding rules."""
    return f"{inspect.cleandoc(instructions)}\n\n{CODING_RULES}"
