"""Short synthetic notes whose assessment lists a few problems, each line worded for its note (so no
two notes send a model the same prompt): one re-rank per problem for
MedCoder, one navigation and validation for CLH, one selection for verify. Used by the batch
tests and benchmarks (bench/), where the model's latency, not the note, is the cost."""

from __future__ import annotations

import json
from pathlib import Path

CONDITIONS = (
    "Essential hypertension", "Type 2 diabetes mellitus", "Asthma", "Hyperlipidemia", "Gout", "Migraine",
    "Hypothyroidism", "Atrial fibrillation", "Iron deficiency anemia", "Allergic rhinitis",
    "Gastroesophageal reflux disease", "Major depressive disorder", "Chronic kidney disease", "Obesity",
)
PLANS = ("Continue medication, review in {} weeks.", "Recheck labs in {} weeks.", "Follow up in {} weeks.",
         "Refer to specialist, review in {} weeks.")


def problem_note(number: int, problems: int = 3) -> str:
    """Note `number`: a visit line and an ASSESSMENT AND PLAN of `problems` numbered problems."""
    lines = [f"Follow-up visit {number}.", "", "ASSESSMENT AND PLAN:"]
    for i in range(problems):
        condition = CONDITIONS[(number * problems + i * 5) % len(CONDITIONS)]
        lines.append(f"{i + 1}. {condition}. {PLANS[(number + i) % len(PLANS)].format(number + i + 2)}")
    return "\n".join(lines) + "\n"


def write_problem_notes(path: Path, count: int, problems: int = 3, first: int = 0) -> list[str]:
    """Notes `first` to `first + count - 1` as JSONL ({"id", "text"}) at `path`; their ids, in order."""
    numbers = range(first, first + count)
    ids = [f"note{number:04d}" for number in numbers]
    path.write_text("".join(json.dumps({"id": i, "text": problem_note(n, problems)}) + "\n" for n, i in zip(numbers, ids)))
    return ids
