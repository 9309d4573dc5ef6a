"""Dataset specs ('aci:train+valid', 'mdace:test:profee', 'jsonl:notes.jsonl') and one loader for them.

- aci:SPLITS   SPLITS = train | valid | test1 | test2 | test3 | test (= test1+test2+test3)
               | dev (= train+valid, D2N001-087, the encounters with public labels), joined with '+'.
- mdace:SPLIT[:SETTING]   SPLIT = train | val | test, SETTING = inpatient (default) | profee.
- jsonl:PATH   the JSONL format of data/jsonl.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data.aci import expand_splits, load_aci
from data.errors import DatasetError
from data.checks import Validator
from data.jsonl import load_jsonl
from data.mdace import SETTINGS, SPLITS, load_mdace
from data.records import Dataset

USAGE = "use aci:train|valid|test1|test2|test3|test|dev (join with '+'), mdace:train|val|test[:inpatient|profee] or jsonl:PATH"


@dataclass(frozen=True)
class DatasetSpec:
    kind: str
    parts: tuple[str, ...]
    text: str


def parse_spec(text: str) -> DatasetSpec:
    kind, _, rest = text.strip().partition(":")
    if not rest:
        raise DatasetError(f"unknown dataset {text!r}; {USAGE}")
    if kind == "aci":
        return DatasetSpec("aci", expand_splits(rest.split("+")), text)
    if kind == "mdace":
        split, _, setting = rest.partition(":")
        setting = setting or "inpatient"
        if split not in SPLITS or setting not in SETTINGS:
            raise DatasetError(f"unknown MDACE dataset {text!r}; {USAGE}")
        return DatasetSpec("mdace", (split, setting), text)
    if kind == "jsonl":
        return DatasetSpec("jsonl", (rest,), text)
    raise DatasetError(f"unknown dataset {text!r}; {USAGE}")


def load_dataset(
    spec: str | DatasetSpec,
    *,
    aci_dir: Path | None = None,
    mdace_dir: Path | None = None,
    labels: Path | None = None,
    mimic_notes: Path | None = None,
    validator: Validator | None = None,
    offsets_only: bool = False,
) -> Dataset:
    """Loads any spec; the folders come from the caller (the CLI reads ACI_BENCH_DIR / MDACE_DIR).
    `offsets_only`: mdace without `mimic_notes` gives its spans with empty note text."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if labels is not None and spec.kind != "aci":
        raise DatasetError(f"--labels applies to aci datasets only, not {spec.text!r}")
    if mimic_notes is not None and spec.kind != "mdace":
        raise DatasetError(f"--mimic-notes applies to mdace datasets only, not {spec.text!r}")
    if spec.kind == "aci":
        if aci_dir is None:
            raise DatasetError(f"{spec.text} needs the ACI-BENCH challenge_data folder: set ACI_BENCH_DIR")
        dataset = load_aci(aci_dir, spec.parts, labels=labels, validator=validator, name=spec.text)
    elif spec.kind == "mdace":
        if mdace_dir is None:
            raise DatasetError(f"{spec.text} needs the MDACE annotations folder: set MDACE_DIR")
        split, setting = spec.parts
        dataset = load_mdace(mdace_dir, split, setting, notes=mimic_notes, validator=validator, name=spec.text,
                             offsets_only=offsets_only)
    else:
        dataset = load_jsonl(Path(spec.parts[0]), validator=validator, name=spec.text)
    if not dataset.records:
        raise DatasetError(f"{spec.text} holds no notes")
    return dataset
