"""Gold-label CSVs for ACI-BENCH: encounter_id, code and optionally diagnosis_mention."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from data.errors import DatasetError
from data.text import read_text


@dataclass(frozen=True)
class Label:
    code: str
    mention: str | None = None


def read_labels(path: Path) -> dict[str, tuple[Label, ...]]:
    """Labels per encounter id, in file order. A `description` column is not a mention."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"labels file not found: {path} (pass an existing CSV with --labels)")
    labels: dict[str, list[Label]] = {}
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), strict=True)
    try:
        missing = {"encounter_id", "code"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{path}: labels CSV needs columns encounter_id and code; missing {', '.join(sorted(missing))}")
        for row in reader:
            encounter, code = (row["encounter_id"] or "").strip(), (row["code"] or "").strip()
            if not encounter or not code:
                raise DatasetError(f"{path}:{reader.line_num}: empty encounter_id or code")
            mention = (row.get("diagnosis_mention") or "").strip() or None
            labels.setdefault(encounter, []).append(Label(code, mention))
    except csv.Error as exc:
        raise DatasetError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    return {encounter: tuple(rows) for encounter, rows in labels.items()}
