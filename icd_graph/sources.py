"""Find the ICD-10-CM source files in a folder, a CDC zip, or a single file.

Files are recognised by their content, not their names: the XML root element
(`ICD10CM.tabular`, `ICD10CM.index`), the index's `<title>` (external-cause index) or
`<indexHeading>` first column ('Neoplasm', 'Substance': the two tables), or the header line of
the index CSV flattening. `.gz` files are read through gzip, in folders and inside zips; zips
inside a folder are searched too. Files of other kinds (.xsd, .pdf, .txt, addenda) are ignored.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from icd_graph.errors import SourceError

KINDS = ("tabular", "index", "eindex", "neoplasm", "drug", "index_csv")
CANDIDATE_SUFFIXES = (".xml", ".xml.gz", ".csv", ".csv.gz")
CSV_HEADER = ("RowID", "Letter", "Level", "Term", "See", "SeeAlso", "NonEssModif", "Code")
_HEAD_BYTES = 1 << 16

_ROOT = re.compile(r"<([A-Za-z_][\w.:-]*)[\s>/]")
_VERSION = re.compile(r"<version>\s*([^<]*?)\s*</version>")
_TITLE = re.compile(r"<title>([^<]*)</title>")
_FIRST_HEAD = re.compile(r"<head\s+col=\"1\"\s*>\s*([^<]*?)\s*</head>")
_ADDENDA = re.compile(r"isAddenda\s*=\s*\"true\"")


@dataclass(frozen=True)
class SourceFile:
    """One recognised file. `path` is readable on disk (zip members are extracted to a
    temporary folder); `name` is how the user knows it ('cdc.zip:icd10cm-index-2025.xml')."""

    kind: str
    path: Path
    name: str
    sha256: str
    version: str | None


@dataclass
class Sources:
    origin: str
    files: dict[str, SourceFile] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    def get(self, kind: str) -> SourceFile | None:
        return self.files.get(kind)

    @property
    def tabular(self) -> SourceFile:
        return self.files["tabular"]


def default_source() -> Path:
    """The folder of the tabular XML shipped inside the simple-icd-10-cm package (no index).

    Found without importing the package, which parses its data on import.
    """
    spec = importlib.util.find_spec("simple_icd_10_cm")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("no --source given and simple-icd-10-cm is not installed: pip install simple-icd-10-cm")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@contextmanager
def open_sources(source: Path | None) -> Iterator[Sources]:
    """Recognise the files of `source` (default: `default_source()`); SourceError if there is no
    tabular XML, two files of one kind, or a candidate file that cannot be read."""
    source = Path(source) if source is not None else default_source()
    if not source.exists():
        raise SourceError(f"{source}: no such file or folder (set --source or ICD10CM_SOURCE)")
    with tempfile.TemporaryDirectory(prefix="icd-sources-") as scratch:
        found = Sources(origin=str(source))
        for file in _scan(source, Path(scratch)):
            _add(found, file)
        if "index" in found.files and "index_csv" in found.files:
            found.ignored.append(f"{found.files.pop('index_csv').name} (the index XML is preferred)")
        if "tabular" not in found.files:
            raise SourceError(
                f"{source}: no tabular XML (root <ICD10CM.tabular>) found; point --source at the "
                "folder or zip holding icd10cm-tabular-<release>.xml"
            )
        yield found


def _add(found: Sources, file: SourceFile | str) -> None:
    if isinstance(file, str):
        found.ignored.append(file)
        return
    if file.kind in found.files:
        other = found.files[file.kind].name
        raise SourceError(f"two {file.kind} files in {found.origin}: {other} and {file.name}; keep one")
    found.files[file.kind] = file


def _is_candidate(name: str) -> bool:
    return name.lower().endswith(CANDIDATE_SUFFIXES)


def _scan(source: Path, scratch: Path) -> Iterator[SourceFile | str]:
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            if _is_candidate(path.name):
                yield _recognise_file(path)
            elif path.suffix.lower() == ".zip":
                yield from _scan_zip(path, scratch)
    elif source.suffix.lower() == ".zip":
        yield from _scan_zip(source, scratch)
    elif _is_candidate(source.name):
        yield _recognise_file(source)
    else:
        raise SourceError(f"{source}: not a folder, a .zip, or an .xml/.csv(.gz) source file")


def _recognise_file(path: Path) -> SourceFile | str:
    try:
        with path.open("rb") as raw:
            kind, version = _recognise(raw, path.name, str(path))
            if kind is None:
                return str(path)
            raw.seek(0)
            digest = _sha256(raw, path.name, str(path))
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return SourceFile(kind=kind, path=path, name=str(path), sha256=digest, version=version)


def _scan_zip(path: Path, scratch: Path) -> Iterator[SourceFile | str]:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise SourceError(f"{path}: not a readable zip file ({exc})") from exc
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        for number, member in enumerate(members):
            label = f"{path}:{member.filename}"
            if not _is_candidate(member.filename):
                continue
            try:
                with archive.open(member) as raw:
                    kind, version = _recognise(raw, member.filename, label)
                if kind is None:
                    yield label
                    continue
                target = scratch / f"{number}-{Path(member.filename).name}"
                with archive.open(member) as raw, target.open("wb") as out:
                    shutil.copyfileobj(raw, out)
            except (OSError, zipfile.BadZipFile, zlib.error) as exc:
                raise SourceError(f"{label}: cannot read ({exc})") from exc
            with target.open("rb") as raw:
                digest = _sha256(raw, target.name, label)
            yield SourceFile(kind=kind, path=target, name=label, sha256=digest, version=version)


def _decompressed(raw, name: str):
    return gzip.GzipFile(fileobj=raw, mode="rb") if name.lower().endswith(".gz") else raw


def _recognise(raw, name: str, label: str) -> tuple[str | None, str | None]:
    """The kind and version of a file from its first bytes; (None, None) for other XML."""
    try:
        head = _decompressed(raw, name).read(_HEAD_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"{label}: cannot read ({exc})") from exc
    text = head.decode("utf-8-sig", errors="replace")
    if name.lower().endswith((".csv", ".csv.gz")):
        header = tuple(cell.strip().strip('"') for cell in text.splitlines()[0].split(",")) if text else ()
        return ("index_csv", None) if header[: len(CSV_HEADER)] == CSV_HEADER else (None, None)
    body = re.sub(r"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>", "", text, flags=re.DOTALL).lstrip()
    root = _ROOT.match(body)
    if not root:
        raise SourceError(f"{label}: not an XML file (no root element in its first bytes)")
    version = _VERSION.search(text)
    version = version.group(1) if version else None
    if root.group(1) == "ICD10CM.tabular":
        return "tabular", version
    if root.group(1) != "ICD10CM.index" or _ADDENDA.search(body[: root.end() + 200]):
        return None, None
    first_head = _FIRST_HEAD.search(text)
    if first_head:
        heading = first_head.group(1).lower()
        if heading.startswith("neoplasm"):
            return "neoplasm", version
        if heading.startswith(("substance", "drug")):
            return "drug", version
        return None, None
    title = _TITLE.search(text)
    if title and "external cause" in title.group(1).lower():
        return "eindex", version
    return "index", version


def _sha256(raw, name: str, label: str) -> str:
    """SHA-256 of the uncompressed content, so a file and its .gz have the same digest."""
    digest = hashlib.sha256()
    stream = _decompressed(raw, name)
    try:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"{label}: cannot read ({exc})") from exc
    return digest.hexdigest()

