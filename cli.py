"""Command line: parse arguments, call the packages, print. No logic of its own."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from icd_graph.errors import IcdError
from icd_graph.loading import loading

if TYPE_CHECKING:
    from programs.read_ahead import ReadAhead

console = Console()
err_console = Console(stderr=True)
DEFAULT_TIMEOUT = 300.0
DECODINGS = ("auto", "grammar", "json-schema", "llama.cpp", "vllm", "off")


class Main(click.Group):
    """Every expected error is one line on stderr: exit status 2 for a usage error (a bad option
    or argument), 1 for anything else that stops a command (bad input, a model that fails), 130
    for Ctrl-C. Never a traceback."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            status = super().main(*args, **kwargs)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "cli.py"
            fail(f"{exc.format_message()} (see `{command} --help`)", 2)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except IcdError as exc:
            fail(str(exc), 1)
        except (KeyboardInterrupt, click.Abort):
            err_console.print("[yellow]interrupted[/]")
            sys.exit(130)
        sys.exit(status if isinstance(status, int) else 0)


def fail(message: str, status: int) -> None:
    """Prints `error: message` as one line on stderr and exits with `status`."""
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)
    sys.exit(status)


def print_json(payload) -> None:
    click.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))


def db_option(func):
    return click.option(
        "--db",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Knowledge-base file (default: $ICD_DB or the user cache dir).",
    )(func)


def json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)


def lm_options(default_model: str | None = "local", model_help: str = "", decodings: bool = False):
    """--model, --api-base, --api-key, --timeout, --retries and --decoding (repeatable when
    `decodings`): every command that calls a model."""

    def decorate(func):
        func = click.option("--decoding", type=click.Choice(DECODINGS), multiple=decodings,
                            default=("auto",) if decodings else "auto", show_default=True,
                            help="How answers are constrained: auto (the embedded model's grammar, a JSON schema for "
                            "models that take one, else off), json-schema, llama.cpp or vllm (a server at --api-base "
                            "that takes a grammar), off (DSPy's adapters, the lenient reader)."
                            + (" Repeat to run every system under each (e.g. --decoding auto --decoding off)."
                               if decodings else ""))(func)
        func = click.option("--retries", type=click.IntRange(0, 20), default=3, show_default=True,
                            help="Retries of a failed or empty LM answer (with backoff) before giving up.")(func)
        func = click.option("--timeout", type=click.FloatRange(0, min_open=True), default=DEFAULT_TIMEOUT,
                            show_default=True, help="Seconds to wait for one answer of a model server.")(func)
        func = click.option("--api-key", default=None, envvar="ICD_API_KEY",
                            help="API key for --api-base (default: $ICD_API_KEY or the provider's own variable).")(func)
        func = click.option("--api-base", default=None, callback=check_api_base,
                            help="URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1.")(func)
        return click.option("--model", default=default_model, show_default=default_model is not None, callback=check_model,
                            help=model_help or "'local', 'local:/path.gguf', or a LiteLLM model string "
                            "(openai/..., anthropic/..., ollama_chat/..., hosted_vllm/...).")(func)

    return decorate


def engine_options(batch: str):
    """--threads, --engine, --ray-address and --workers: how a batch of notes is run."""

    def decorate(func):
        func = click.option("--workers", type=click.IntRange(1, 4096), default=None,
                            help="With --engine ray: actors coding notes, each with --threads threads "
                            "(default: one per CPU of the cluster).")(func)
        func = click.option("--ray-address", default=None,
                            help="With --engine ray: a running cluster, HOST:PORT of `ray start --head` (its token in "
                            "RAY_AUTH_TOKEN); default: a local cluster started for this run.")(func)
        func = click.option("--engine", type=click.Choice(["threads", "ray"]), default="threads", show_default=True,
                            help=f"With {batch}: code the notes on threads of this process, or on a Ray cluster "
                            "(pip install -e '.[ray]').")(func)
        return click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
                            help="Threads at work at once, coding notes or the independent stage calls of a note "
                            "(with --engine ray: per worker).")(func)

    return decorate


def check_engine(engine: str, ray_address: str | None, workers: int | None, batch: bool, needs: str) -> None:
    """--engine ray goes with a batch; --ray-address and --workers go with --engine ray."""
    if engine == "ray" and not batch:
        raise click.UsageError(f"--engine ray codes a batch: it goes with {needs}")
    if engine != "ray" and (ray_address or workers):
        raise click.UsageError("--ray-address and --workers go with --engine ray")


@contextmanager
def read_ahead(engine: str | None) -> Iterator[ReadAhead | None]:
    """With --engine threads, the problem extractor's process (programs.read_ahead), started
    before anything else so that it loads medspaCy while this one imports DSPy: give it the
    notes to code. None with Ray, whose actors load their own, or without a program."""
    if engine != "threads":
        yield None
        return
    from programs.extractor import EXTRACTOR
    from programs.read_ahead import reading_ahead

    with reading_ahead(EXTRACTOR) as ahead:
        yield ahead


def run_notes(program, records, output: Path, spec, lm, engine: str, threads: int, ray_address: str | None,
              workers: int | None, on_note):
    """The batch on the chosen engine (programs.batch or programs.ray_engine)."""
    if engine == "ray":
        from programs.ray_engine import Cluster, run_ray_batch

        return run_ray_batch(program, records, output, spec, Cluster(ray_address, workers, threads), on_note=on_note)
    from programs.batch import run_batch

    return run_batch(program, records, output, lm, threads=threads, on_note=on_note)


def check_model(ctx, param, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("must name a model, e.g. local or openai/gpt-4o-mini", ctx, param)
    return value.strip() if value else value


def check_api_base(ctx, param, value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise click.BadParameter(f"{value!r} is not a URL: give http://HOST:PORT/v1", ctx, param)
    return value


def check_server(ctx, param, value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise click.BadParameter(f"{value!r} is not a URL: give the http://HOST:PORT/ that `serve` printed", ctx, param)
    return value


def check_decoding(model: str, api_base: str | None, decoding: str) -> None:
    """A --decoding that does not go with the model is a usage error."""
    from programs.lm import decoding_problem

    problem = decoding_problem(model, api_base, decoding)
    if problem:
        raise click.UsageError(problem)


def resolve_db(db: Path | None) -> Path:
    from icd_graph.paths import default_db_path

    return db or default_db_path()


@click.group(cls=Main)
def cli() -> None:
    """ICD-10-CM coding of clinical notes with compiled DSPy programs."""


@cli.group()
def icd() -> None:
    """Build and query the ICD-10-CM knowledge base."""


# --- icd commands -------------------------------------------------------------------------


@icd.command("build")
@click.option(
    "--source",
    type=click.Path(path_type=Path),
    default=None,
    envvar="ICD10CM_SOURCE",
    help="Folder, CDC zip or file with the CMS XML/CSV (default: $ICD10CM_SOURCE, else the "
    "tabular list shipped with simple-icd-10-cm, without index).",
)
@click.option("--dense/--no-dense", default=None,
              help="Also embed code descriptions and index paths for `search --source dense` "
              "(default: when the dense extra is installed).")
@click.option("--dense-model", type=click.Choice(["minilm", "e5"]), default="minilm", show_default=True,
              help="Embedding model of the dense vectors.")
@db_option
@json_option
def icd_build(source: Path | None, dense: bool | None, dense_model: str, db: Path | None, as_json: bool) -> None:
    """Build the knowledge base (one DuckDB file) from the ICD-10-CM source files."""
    from dataclasses import asdict

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from data.outputs import check_output
    from icd_graph.build import build
    from icd_graph.embed import available

    target = check_output(resolve_db(db), "--db")
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=as_json,
    ) as bar:
        task = bar.add_task("Building", total=1)

        def progress(step: str, done: int, total: int) -> None:
            bar.update(task, description=step, completed=done, total=total)

        report = build(source=source, db=target, progress=progress,
                       dense=available(dense_model) if dense is None else dense, dense_model=dense_model)
    if as_json:
        print_json(asdict(report))
        return
    table = Table(title=f"{report.release} (FY{report.fiscal_year})")
    table.add_column("item")
    table.add_column("count", justify="right")
    for item, count in report.counts.items():
        table.add_row(item, f"{count:,}")
    console.print(table)
    for file in report.sources:
        console.print(f"[dim]{file.kind:<9}[/] {file.name}", highlight=False)
    for name in report.ignored:
        console.print(f"[dim]ignored[/]   {name}", highlight=False)
    if report.dense is not None:
        how = "reused" if report.dense.reused else f"embedded in {report.dense.seconds:.0f} s"
        console.print(f"[dim]dense[/]     {report.dense.documents:,} documents by {report.dense.model_id}, {how}", highlight=False)
    if report.swept:
        console.print(f"[dim]removed {len(report.swept)} temporary files left by killed builds[/]", highlight=False)
    console.print(f"Wrote [bold]{report.db}[/] in {report.seconds:.1f} s", highlight=False)



EXPANSION_KINDS = ["parent", "children", "ancestors", "descendants", "siblings", "cousins",
                   "neighbors1", "neighbors2", "billable"]


def open_kb(db: Path | None):
    from icd_graph.kb import KnowledgeBase

    return KnowledgeBase(resolve_db(db))


def code_rows(title: str, infos) -> Table:
    table = Table(title=title)
    for column in ("code", "description", "billable"):
        table.add_column(column)
    for info in infos:
        table.add_row(info.code, info.description, "yes" if info.billable else "")
    return table


@icd.command("show")
@click.argument("code")
@db_option
@json_option
def icd_show(code: str, db: Path | None, as_json: bool) -> None:
    """A code with its place in the hierarchy and its notes, own and inherited."""
    from dataclasses import asdict

    from rich.panel import Panel

    with open_kb(db) as kb:
        info = kb.require(code)
        notes = kb.notes(info.code, inherited=True)
    if as_json:
        print_json({**asdict(info), "notes": [asdict(note) for note in notes]})
        return
    billable = "[green]billable[/]" if info.billable else "[yellow]not billable[/]"
    console.print(Panel(
        f"{info.description}\n{billable} {info.kind}   parent {info.parent or '-'}   "
        f"block {info.block or '-'}   chapter {info.chapter or '-'}",
        title=f"[bold]{info.code}[/]", expand=False, highlight=False,
    ))
    grouped: dict[tuple[str, str], list[str]] = {}
    for note in notes:
        grouped.setdefault((note.kind, note.source), []).append(note.text)
    for (kind, source), texts in grouped.items():
        origin = "" if source == info.code else f" [dim](from {source})[/]"
        console.print(f"[bold]{kind}[/]{origin}", highlight=False)
        for text in texts:
            console.print(f"  - {text}", highlight=False)


@icd.command("expand")
@click.argument("code")
@click.option("--kind", type=click.Choice(EXPANSION_KINDS), default="children", show_default=True,
              help="neighbors1/neighbors2: codes at exactly 1/2 hops in the hierarchy + index graph.")
@db_option
@json_option
def icd_expand(code: str, kind: str, db: Path | None, as_json: bool) -> None:
    """Related codes: parent, children, ancestors, descendants, siblings, cousins, neighbours, billable."""
    from dataclasses import asdict

    with open_kb(db) as kb:
        infos = kb.expand(code, kind)
    if as_json:
        print_json([asdict(info) for info in infos])
        return
    console.print(code_rows(f"{kind} of {code} ({len(infos)})", infos))


@icd.command("search")
@click.argument("text", nargs=-1, required=True)
@click.option("-k", "--k", type=click.IntRange(1), default=20, show_default=True, help="Number of hits.")
@click.option("--source", type=click.Choice(["tabular", "index", "dense", "all"]), default="all", show_default=True,
              help="dense: embeddings (the dense extra); all: every retriever fused, billable codes only.")
@db_option
@json_option
def icd_search(text: tuple[str, ...], k: int, source: str, db: Path | None, as_json: bool) -> None:
    """Search code descriptions and alphabetic-index paths: lexical (BM25, exact phrases), dense
    (embeddings) or all fused."""
    from dataclasses import asdict

    query = " ".join(text)
    with open_kb(db) as kb:
        hits = kb.search(query, k=k, source=source)
    if as_json:
        print_json([asdict(hit) for hit in hits])
        return
    if not hits:
        console.print(f"nothing matches {query!r}")
        return
    table = Table(title=f"{source} search: {query}")
    for column in ("code", "description", "score", "matched"):
        table.add_column(column)
    for hit in hits:
        matched = "" if hit.matched == hit.description else hit.matched
        table.add_row(hit.code, hit.description, f"{hit.score:.3f}", matched)
    console.print(table)


@icd.command("index")
@click.argument("terms", nargs=-1, required=True)
@click.option("--limit", type=click.IntRange(1), default=25, show_default=True, help="At most this many entries.")
@click.option("--index", "which", type=click.Choice(["index", "eindex"]), default=None,
              help="Main terms of the Alphabetic Index or of the External Cause Index only (default: both).")
@db_option
@json_option
def icd_index(terms: tuple[str, ...], limit: int, which: str | None, db: Path | None, as_json: bool) -> None:
    """Navigate the alphabetic index: a main term, then subterms (e.g. Diabetes "type 2" with retinopathy)."""
    from dataclasses import asdict

    with open_kb(db) as kb:
        entries = kb.index_lookup(list(terms), limit=limit, index=which)
    if not entries:
        raise IcdError(f"no main term of the alphabetic index matches {' '.join(terms)!r}; "
                       "try `icd search` or another word")
    if as_json:
        print_json([asdict(entry) for entry in entries])
        return
    table = Table(title="index: " + " > ".join(terms))
    for column in ("path", "code", "billable codes", "see"):
        table.add_column(column)
    for entry in entries:
        codes = ", ".join(entry.billable_codes[:6]) + (" ..." if len(entry.billable_codes) > 6 else "")
        see = " ".join(filter(None, [entry.see and f"see {entry.see}", entry.see_also and f"see also {entry.see_also}"]))
        table.add_row(entry.path, entry.code or "", codes, see)
    console.print(table)


@icd.command("table")
@click.argument("name", type=click.Choice(["neoplasm", "drug"]))
@click.argument("term", nargs=-1, required=True)
@click.option("--limit", type=click.IntRange(1), default=10, show_default=True, help="At most this many rows.")
@db_option
@json_option
def icd_table(name: str, term: tuple[str, ...], limit: int, db: Path | None, as_json: bool) -> None:
    """Look up a row of the Table of Neoplasms or of Drugs and Chemicals (e.g. neoplasm pituitary)."""
    from dataclasses import asdict

    with open_kb(db) as kb:
        rows = kb.table(name, " ".join(term), limit=limit)
    if as_json:
        print_json([asdict(row) for row in rows])
        return
    if not rows:
        console.print(f"no row of the {name} table holds every word of {' '.join(term)!r}")
        return
    table = Table(title=f"{name} table: {' '.join(term)}")
    table.add_column("row")
    for column, *_ in rows[0].cells:
        table.add_column(column)
    for row in rows:
        codes = {column: code for column, code, _ in row.cells}
        table.add_row(row.path, *(codes.get(column, "") for column, *_ in rows[0].cells))
    console.print(table)


@icd.command("validate")
@click.argument("codes", nargs=-1, required=True)
@db_option
@json_option
def icd_validate(codes: tuple[str, ...], db: Path | None, as_json: bool) -> None:
    """Check codes against the release. Exit status 1 if any is not a billable code."""
    from dataclasses import asdict

    with open_kb(db) as kb:
        results = [kb.validate(code) for code in codes]
    if as_json:
        print_json([asdict(result) for result in results])
    else:
        table = Table(title="validation")
        for column in ("input", "code", "billable", "reason", "completions"):
            table.add_column(column)
        for r in results:
            more = f" (+{r.completion_count - len(r.completions)})" if r.completion_count > len(r.completions) else ""
            completions = "" if r.billable else ", ".join(r.completions[:8]) + more
            table.add_row(r.input, r.code or "", "yes" if r.billable else "no", r.reason, completions)
        console.print(table)
    if not all(r.billable for r in results):
        sys.exit(1)

# --- data and evaluation commands ---------------------------------------------------------


def dataset_options(func):
    """--labels and --mimic-notes, the inputs every --dataset spec may need besides env vars."""
    func = click.option(
        "--mimic-notes",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="MIMIC-III NOTEEVENTS.csv(.gz) with the note text of mdace:* datasets.",
    )(func)
    return click.option(
        "--labels",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Gold-label CSV (encounter_id, code[, diagnosis_mention]) for aci:* datasets.",
    )(func)


def env_path(name: str) -> Path | None:
    import os

    return Path(os.environ[name]) if os.environ.get(name) else None


def open_validator(db: Path | None):
    """A context giving the knowledge base that validates gold codes, or None when only the
    default location was meant and no file is there (the load report then says so)."""
    from contextlib import nullcontext

    from icd_graph.kb import KnowledgeBase

    path = resolve_db(db)
    if db is None and not path.exists():
        return nullcontext(None)
    return KnowledgeBase(path)


def load_cli_dataset(spec: str, labels: Path | None, mimic_notes: Path | None, validator, offsets_only: bool = False):
    """Loads a --dataset spec with the folders from ACI_BENCH_DIR / MDACE_DIR."""
    from data.specs import load_dataset

    return load_dataset(
        spec,
        aci_dir=env_path("ACI_BENCH_DIR"),
        mdace_dir=env_path("MDACE_DIR"),
        labels=labels,
        mimic_notes=mimic_notes,
        validator=validator,
        offsets_only=offsets_only,
    )


def print_load_report(dataset) -> None:
    report = dataset.report
    validated = "validated" if report.validated else "not validated: no knowledge base, run `python cli.py icd build`"
    err_console.print(f"[bold]{dataset.name}[/]: {report.notes} notes, {report.codes} gold codes ({validated})", highlight=False)
    for remark in report.remarks:
        err_console.print(f"  {remark}", highlight=False)
    if report.flagged:
        listed = ", ".join(f"{f.note_id} {f.code} ({f.reason})" for f in report.flagged[:10])
        more = f" and {len(report.flagged) - 10} more" if len(report.flagged) > 10 else ""
        err_console.print(f"  [yellow]{len(report.flagged)} gold codes kept but flagged:[/] {listed}{more}", highlight=False)


@cli.group(name="data")
def data_group() -> None:
    """Datasets: aci:SPLITS, mdace:SPLIT[:SETTING], jsonl:PATH."""


@data_group.command("export")
@click.argument("dataset")
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@dataset_options
@db_option
@json_option
def data_export(dataset: str, out: Path, labels: Path | None, mimic_notes: Path | None, db: Path | None, as_json: bool) -> None:
    """Write DATASET as JSONL (one {"id", "text", "codes", "evidence"?, "mentions"?} a line).

    DATASET: aci:train|valid|test1|test2|test3|test|dev (join splits with '+'; dev = train+valid,
    the encounters with public labels), mdace:train|val|test[:inpatient|profee], jsonl:PATH.
    With --labels, aci notes without labels are left out (and counted)."""
    from data.errors import DatasetError
    from data.jsonl import write_jsonl
    from data.outputs import check_output, same_file
    from data.specs import parse_spec

    check_output(out, "OUT")
    spec = parse_spec(dataset)
    if spec.kind == "jsonl" and same_file(Path(spec.parts[0]), out):
        raise DatasetError(f"OUT {out} is the input file: give another file")
    with open_validator(db) as validator:
        loaded = load_cli_dataset(dataset, labels, mimic_notes, validator)
    count = write_jsonl(loaded, out)
    if as_json:
        print_json({"dataset": loaded.name, "out": str(out), "written": count, **loaded.report.as_dict()})
        return
    print_load_report(loaded)
    console.print(f"Wrote {count} notes to [bold]{out}[/]", highlight=False)


@data_group.command("traces")
@click.option("--dataset", required=True, help="Dataset spec with gold codes, e.g. aci:train+dev with --labels.")
@click.option("--program", "program_name", default=None, help="Record this program's runs: medcoder | clh | verify | a compiled .json.")
@click.option("--from-gold", is_flag=True, help="Build trajectories from the gold codes and mentions instead, with no LM.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Chat JSONL to write (program runs: a rerun resumes it; --from-gold: replaced).")
@click.option("--min-f1", type=click.FloatRange(0, 1), default=None, help="Keep only notes whose code F1 reaches this.")
@click.option("--model", default=None, help="With --program: 'none' (default: the coding rules alone, whose records hold only "
              "tool calls), 'local', 'local:/path.gguf', or a LiteLLM model string.")
@click.option("--api-base", default=None, help="With --program: URL of an OpenAI-compatible server.")
@click.option("--api-key", default=None, envvar="ICD_API_KEY", help="API key for --api-base (default: $ICD_API_KEY).")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True, help="With --program: notes coded at once.")
@dataset_options
@db_option
@json_option
def data_traces(dataset: str, program_name: str | None, from_gold: bool, out: Path, min_f1: float | None, model: str | None,
                api_base: str | None, api_key: str | None, threads: int, labels: Path | None, mimic_notes: Path | None,
                db: Path | None, as_json: bool) -> None:
    """Write tool-calling chat data (OpenAI fine-tuning JSONL: messages with tool calls, tools).

    --program P: each note run through P, its LM stages' messages and its knowledge-base calls
    as tool calls, in order, then its codes; --from-gold: a coder's trajectory to each gold code
    (index, tabular notes, settle with the evidence), every tool result the knowledge base's
    own. Each line also holds the final codes, the gold codes and the note's F1. MDACE without
    --mimic-notes gives --from-gold records with offsets only (MIMIC-III text is not
    redistributable)."""
    from data.errors import DatasetError
    from data.outputs import check_output, same_file
    from data.specs import parse_spec

    if (program_name is None) == (not from_gold):
        raise DatasetError("give either --program NAME (record a program's runs) or --from-gold (trajectories from the labels)")
    if from_gold and (model or api_base or threads != 1):
        raise DatasetError("--model, --api-base and --threads go with --program, not --from-gold")
    check_output(out, "--out")
    spec = parse_spec(dataset)
    if spec.kind == "jsonl" and same_file(Path(spec.parts[0]), out):
        raise DatasetError(f"--out {out} is the input file: give another file for the traces")
    kind = spec.kind
    if kind == "aci" and labels is None:
        raise DatasetError("traces on aci:* need gold codes: pass --labels CSV (columns encounter_id, code[, diagnosis_mention])")
    with knowledge_base(db) as kb:
        loaded = load_cli_dataset(dataset, labels, mimic_notes, kb, offsets_only=from_gold)
        if not as_json:
            print_load_report(loaded)
        with_text = not (kind == "mdace" and mimic_notes is None)
        meta = {"source": "gold" if from_gold else "program", "dataset": loaded.name, "labels": labels.name if labels else "",
                "program": "" if from_gold else Path(program_name).stem, "model": "" if from_gold else (model or "none"),
                "kb_release": kb.release_name(), "note_text": with_text, "stages": ""}
        with notes_progress(len(loaded.records), as_json) as advance:
            if from_gold:
                from programs.gold_trajectories import write_gold

                summary = write_gold(loaded.records, kb, out, meta, with_text=with_text, min_f1=min_f1, on_note=advance)
            else:
                from programs.lm import make_lm
                from programs.registry import load_program
                from programs.traces import write_traces

                program = load_program(program_name, kb)
                lm = make_lm(model or "none", api_base, api_key=api_key)
                summary = write_traces(program, loaded.records, out, lm, meta, threads=threads, min_f1=min_f1, on_note=advance)
    payload = summary.as_dict()
    if as_json:
        print_json({**payload, "load_report": loaded.report.as_dict()})
        return
    console.print(f"Wrote {payload['written']} records to [bold]{out}[/]" + (f" ({payload['skipped']} already there)" if payload.get("skipped") else ""),
                  highlight=False)
    if payload["rejected"]:
        console.print(f"{len(payload['rejected'])} notes below --min-f1 {min_f1} left out", highlight=False)
    if from_gold:
        console.print(f"{payload['settled']} of the {payload['in_release']} gold codes the release has ({payload['coverage']:.1%}) "
                      f"have a trajectory; routes: {', '.join(f'{k} {v}' for k, v in sorted(payload['routes'].items()))}", highlight=False)
        for missed in payload["missed"][:10]:
            err_console.print(f"[yellow]{missed['id']} {missed['code']}:[/] {missed['reason']}", highlight=False)
        if len(payload["missed"]) > 10:
            err_console.print(f"  and {len(payload['missed']) - 10} more (--json lists them all)", highlight=False)
    else:
        for failed in payload["failed"]:
            err_console.print(f"[yellow]{failed['id']}:[/] {failed['error']}", highlight=False)
        if payload["mean_f1"] is not None:
            console.print(f"mean note F1 of the records written: {payload['mean_f1']:.3f}", highlight=False)
        print_usage(payload["usage"], payload["cost"])


@cli.command("evaluate")
@click.option("--dataset", required=True, help="Dataset spec with gold codes, e.g. aci:dev with --labels.")
@click.option("--predictions", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help='JSONL of {"id", "codes", "evidence"?, "result"?} to score.')
@click.option("--program", "program_name", default=None,
              help="Run this program over the dataset, then score it: medcoder | clh | verify | a compiled .json.")
@lm_options(None, "With --program: 'none' (default: the coding rules alone), 'local' (embedded), 'local:/path.gguf', "
            "or a LiteLLM model string.")
@engine_options("--program")
@click.option("--server", default=None, callback=check_server,
              help="Code the dataset with the coding service at this URL (what `cli.py serve` prints), then score it.")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="With --program or --server: predictions JSONL; a rerun with the same file resumes (default: a new "
              "file in the temp dir).")
@dataset_options
@db_option
@json_option
def evaluate_command(dataset: str, predictions: Path | None, program_name: str | None, model: str | None, api_base: str | None,
                     api_key: str | None, timeout: float, retries: int, decoding: str, threads: int, engine: str,
                     ray_address: str | None, workers: int | None, server: str | None, output: Path | None, labels: Path | None,
                     mimic_notes: Path | None, db: Path | None, as_json: bool) -> None:
    """Score predictions against a dataset's gold codes: micro/macro and category P/R/F1, exact
    match, evidence token F1, and the recall after each program stage when the lines carry the
    program's "result". Notes without a prediction count as empty predictions.

    Either --predictions FILE, or --program NAME [--model M] (or --server URL) to code the
    dataset (resumable with --output) and score it in one step."""
    from data.errors import DatasetError
    from data.specs import parse_spec
    from optimizers.evaluate import evaluate, read_predictions, read_results, stage_answers, stage_recall
    check_engine(engine, ray_address, workers, program_name is not None, "--program")
    if server is not None:
        check_service_options(("predictions", *CODING_OPTIONS))
        service = connect_service(server)
    if (predictions is None) == (program_name is None) and server is None:
        raise DatasetError("give either --predictions FILE (score a file) or --program NAME --model M (run and score)")
    if predictions is not None and (model or api_base or output or threads != 1 or decoding != "auto"):
        raise DatasetError("--model, --api-base, --decoding, --threads and --output go with --program, not --predictions")
    check_decoding(model or "none", api_base, decoding)
    if parse_spec(dataset).kind == "aci" and labels is None:
        raise DatasetError("evaluate on aci:* needs gold codes: pass --labels CSV (columns encounter_id, code)")
    if output is not None:
        check_prediction_output(output, dataset)
    run = None
    with read_ahead(engine if program_name is not None else None) as ahead, \
            open_validator(db) if program_name is None else knowledge_base(db) as validator:
        loaded = load_cli_dataset(dataset, labels, mimic_notes, validator)
        if not as_json:
            print_load_report(loaded)
        if server is not None:
            from service.client import code_batch_remote

            run = code_records(loaded.records, output, service.program, as_json, lambda output, advance: code_batch_remote(
                service, loaded.records, output, timeout=timeout, on_note=advance))
            predictions = run.output
        elif program_name is not None:
            from programs.predictions import to_code

            if ahead is not None:
                ahead.read([record.text for record in (to_code(loaded.records, output)[0] if output else loaded.records)])
            spec = model_spec(model or "none", api_base, api_key, timeout, retries, decoding)
            run = run_program(program_name, validator, loaded.records, spec, output, as_json,
                              engine=engine, threads=threads, ray_address=ray_address, workers=workers)
            if run.failed and not (run.written or run.skipped):
                raise DatasetError(f"none of the {len(loaded.records)} notes of {dataset} could be coded: {failures(run.failed)}")
            predictions = run.output
        predicted, flagged = read_predictions(predictions, validator=validator)
    result = evaluate(loaded.records, predicted, dataset=loaded.name, flagged_predictions=flagged)
    results = read_results(predictions)
    stages = stage_recall(loaded.records, results)
    answers = stage_answers(results.values())
    if as_json:
        extra = {"run": run_payload(run)} if run else {}
        print_json({**result.as_dict(), "stages": [s.as_dict() for s in stages], "answers": [a.as_dict() for a in answers], **extra,
                    "load_report": loaded.report.as_dict()})
        return
    scores = result.scores
    system = f"{service.program} ({service.model})" if server else f"{program_name} ({model or 'none'})" if program_name \
        else predictions.name
    table = Table(title=f"{system} on {loaded.name} ({len(scores.notes)} notes)")
    for column in ("metric", "precision", "recall", "F1"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    rows = [("codes, micro", scores.micro), ("codes, macro", scores.macro), ("category, micro", scores.category_micro), ("category, macro", scores.category_macro)]
    if scores.evidence is not None:
        rows.append(("evidence tokens", scores.evidence))
    for name, prf in rows:
        table.add_row(name, f"{prf.precision:.3f}", f"{prf.recall:.3f}", f"{prf.f1:.3f}")
    console.print(table)
    console.print(f"exact match {scores.exact_match:.3f}", highlight=False)
    if stages:
        print_stage_recall(stages)
    if answers:
        print_stage_answers([("", answers)])
    if result.missing:
        console.print(f"[yellow]{len(result.missing)} notes without a prediction[/] (scored as empty): {', '.join(result.missing[:10])}", highlight=False)
    if result.unknown:
        console.print(f"[yellow]{len(result.unknown)} predictions for ids not in the dataset[/] (ignored): {', '.join(result.unknown[:10])}", highlight=False)
    if result.flagged_predictions:
        console.print(f"[yellow]{len(result.flagged_predictions)} predicted codes not valid billable codes[/]", highlight=False)
    if run:
        print_run(run)


def knowledge_base(db: Path | None):
    from icd_graph.kb import KnowledgeBase

    return KnowledgeBase(resolve_db(db))


def model_spec(model: str, api_base: str | None, api_key: str | None, timeout: float, retries: int, decoding: str):
    """The programs.lm.ModelSpec of --model and its options; DSPy is imported with the garbage
    collector paused (icd_graph.loading)."""
    with loading():
        from programs.lm import ModelSpec

    return ModelSpec(model, api_base, api_key, timeout, retries, decoding)


def load_coding(program_name: str | None, kb, spec, engine: str, batch: bool, wait: bool = False):
    """(the program, default: the model's, and its LM: None where Ray's actors make their own),
    loaded with the garbage collector paused (icd_graph.loading); with threads, the knowledge
    base's parts it queries then load in the background, or before this returns if `wait`."""
    with loading():
        from programs.registry import default_program, load_program

        program = load_program(program_name or default_program(spec.model), kb)
        lm = spec.make() if engine == "threads" or not spec.local else None
    if engine == "threads":
        for part in program.preload(batch=batch):
            if wait:
                part.join()
    return program, lm


def run_program(program_name: str, kb, records, spec, output: Path | None, quiet: bool, *, engine: str, threads: int,
                ray_address: str | None, workers: int | None):
    """Codes `records` with the program into `output` (a new temp file when None), resuming it."""
    program, lm = load_coding(program_name, kb, spec, engine, batch=True)
    return code_records(records, output, Path(program_name).stem, quiet, lambda output, advance: run_notes(
        program, records, output, spec, lm, engine, threads, ray_address, workers, advance))


def code_records(records, output: Path | None, name: str, quiet: bool, code):
    """`code(output, on_note)` over `records`, into `output` (default: a new `name`.jsonl in the
    temp dir), with how many notes are left to code and a progress bar."""
    import tempfile

    from programs.predictions import finished_ids

    output = output or Path(tempfile.mkdtemp(prefix="icd-evaluate-")) / f"{name}.jsonl"
    done = finished_ids(output)
    todo = sum(record.id not in done for record in records)
    if not quiet:
        err_console.print(f"Coding {todo} notes into {output} (a rerun with --output {output} resumes)", highlight=False)
    with notes_progress(todo, quiet) as advance:
        return code(output, advance)


def run_payload(run) -> dict:
    return {"output": str(run.output), "written": run.written, "skipped": run.skipped,
            "failed": [{"id": i, "error": e} for i, e in run.failed], "usage": run.usage, "cost": run.cost}


def print_run(run) -> None:
    console.print(f"Predictions in [bold]{run.output}[/] ({run.written} coded now, {run.skipped} already there, "
                  f"{len(run.failed)} failed)", highlight=False)
    for note_id, error in run.failed:
        err_console.print(f"[yellow]{note_id}:[/] {error}", highlight=False)
    print_usage(run.usage, run.cost)


def print_stage_answers(systems) -> None:
    """Per (system, stages): each stage's LM answers, how they were decoded and read."""
    table = Table(title="LM answers per stage")
    named = any(name for name, _ in systems)
    for column in (("system",) if named else ()) + ("stage", "answers", "constrained", "parse failures", "outside the list",
                                                    "grammar overrode"):
        table.add_column(column, justify="left" if column in ("system", "stage") else "right")
    for name, stages in systems:
        for i, row in enumerate(stages):
            cells = (str(row.calls), str(row.constrained), str(row.parse_failures), str(row.outside), str(row.overridden))
            table.add_row(*((name if i == 0 else "",) if named else ()), row.stage, *cells, end_section=i == len(stages) - 1)
    console.print(table)
    console.print("[dim]parse failures: read by DSPy's JSON retry, the lenient reader, or not at all (the stage's rules "
                  "stood in); outside the list: a code or number the call did not list; grammar overrode: answers in "
                  "which the embedded model's grammar replaced a token the model chose.[/]", highlight=False)


def print_stage_recall(stages) -> None:
    table = Table(title="Recall after each stage (the last one's codes are the predictions)")
    for column in ("stage", "code recall", "category recall", "codes/note"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in stages:
        table.add_row(row.stage, f"{row.code_recall:.3f}", f"{row.category_recall:.3f}", f"{row.codes_per_note:.1f}")
    console.print(table)


@cli.command("retrieval-eval")
@click.option("--dataset", required=True, help="Dataset spec, e.g. aci:dev with the medcoder --labels.")
@click.option("--mode", type=click.Choice(["mentions", "notes"]), default="mentions", show_default=True)
@click.option("--k", "ks", default="1,5,10,50", show_default=True, help="Comma-separated cut-offs.")
@click.option("--retrievers", default=None,
              help="Comma-separated, of tabular, index, dense, all, navigation (default: all of them; dense when its vectors are built).")
@click.option("--sentences", is_flag=True, help="notes mode: query every sentence and fuse the rankings.")
@dataset_options
@db_option
@json_option
def retrieval_eval(
    dataset: str, mode: str, ks: str, retrievers: str, sentences: bool, labels: Path | None, mimic_notes: Path | None, db: Path | None, as_json: bool
) -> None:
    """Candidate recall@k of the knowledge-base retrievers, no LM: gold mention phrases
    (mentions) or whole notes (notes) as queries."""
    from data.errors import DatasetError
    from icd_graph.kb import KnowledgeBase
    from optimizers.retrieval import candidate_recall, default_retrievers, kb_retrievers

    try:
        cutoffs = [int(k) for k in ks.split(",")]
    except ValueError:
        raise DatasetError(f"--k must be comma-separated integers, got {ks!r}") from None
    if not cutoffs or min(cutoffs) < 1:
        raise DatasetError(f"--k must be positive integers, got {ks!r}")
    with KnowledgeBase(resolve_db(db)) as kb:
        loaded = load_cli_dataset(dataset, labels, mimic_notes, kb)
        names = retrievers.split(",") if retrievers else default_retrievers(kb)
        report = candidate_recall(loaded.records, kb_retrievers(kb, names), mode=mode, ks=cutoffs, sentences=sentences)
    if as_json:
        print_json({"dataset": loaded.name, **report.as_dict()})
        return
    print_load_report(loaded)
    what = "mention phrases" if mode == "mentions" else "notes" + (" (sentences fused)" if report.sentences else "")
    table = Table(title=f"Candidate recall on {loaded.name}: {report.queries} {what}, {report.gold_codes} gold codes")
    table.add_column("retriever", no_wrap=True)
    table.add_column("recall of", no_wrap=True)
    for k in report.ks:
        table.add_column(f"@{k}", justify="right")
    for recall in report.recalls:
        table.add_row(recall.retriever, "code", *(f"{recall.code[k]:.2f}" for k in report.ks))
        table.add_row("", "category", *(f"{recall.category[k]:.2f}" for k in report.ks), end_section=True)
    console.print(table)


# --- predict ------------------------------------------------------------------------------


@cli.command()
@click.argument("note", required=False)
@click.option("--program", "program_name", default=None,
              help="medcoder | clh | verify | a compiled .json (default: medcoder with --model none, the "
              "compiled program shipped for the model, else clh).")
@lm_options("none", "'none' (the coding rules alone, no LM), 'local' (embedded), 'local:/path.gguf', or a "
            "LiteLLM model string (openai/..., anthropic/..., ollama_chat/..., hosted_vllm/...).")
@click.option("--input", "input_spec", default=None,
              help="Batch input: notes.jsonl or a dataset spec (aci:valid, mdace:test, jsonl:PATH).")
@click.option("--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Batch output JSONL; a rerun skips notes already in it.")
@engine_options("--input")
@click.option("--server", default=None, callback=check_server,
              help="Code with the coding service at this URL (what `cli.py serve` prints): the program, model, "
              "threads and knowledge base are the service's; --timeout is the wait for one note.")
@click.option("--verbose", "-v", is_flag=True, help="With NOTE: every stage's dropped items with the reasons and its log.")
@db_option
@json_option
def predict(note, program_name, model, api_base, api_key, timeout, retries, decoding, input_spec, output, threads, engine,
            ray_address, workers, server, verbose, db, as_json) -> None:
    """Code NOTE (a text file, or - for stdin) or a batch of notes (--input, --output)."""
    from programs.errors import BatchError

    check_engine(engine, ray_address, workers, input_spec is not None, "--input")
    if (note is None) == (input_spec is None):
        raise BatchError("give either NOTE (a file or -) or --input with --output")
    if input_spec is not None and output is None:
        raise BatchError("--input needs --output PATH.jsonl for the predictions")
    if note is not None and output is not None:
        raise BatchError("--output goes with --input (a batch of notes); the codes of NOTE are printed")
    if server is not None:
        check_service_options((*CODING_OPTIONS, "db"))
        predict_with_service(server, note, input_spec, output, timeout, verbose, as_json)
        return
    with read_ahead(engine) as ahead:
        check_decoding(model, api_base, decoding)
        records = batch_records(input_spec, output) if input_spec is not None else None
        text = read_note_arg(note) if note is not None else None
        if ahead is not None:
            from programs.predictions import to_code

            ahead.read([text] if text is not None else [record.text for record in to_code(records, output)[0]])
        with knowledge_base(db) as kb:
            spec = model_spec(model, api_base, api_key, timeout, retries, decoding)
            program, lm = load_coding(program_name, kb, spec, engine, batch=text is None)
            if text is not None:
                print_result(code_one(program, text, lm, threads), as_json, verbose)
            else:
                predict_batch(input_spec, records, as_json, lambda on_note: run_notes(
                    program, records, output, spec, lm, engine, threads, ray_address, workers, on_note))


CODING_OPTIONS = ("program_name", "model", "api_base", "api_key", "retries", "decoding", "threads", "engine", "ray_address",
                  "workers")


def check_service_options(refused: tuple[str, ...]) -> None:
    """With --server, the options that choose how notes are coded (`refused`) are the service's."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [param.opts[0] for param in ctx.command.params if param.name in refused
             and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"{', '.join(given)} cannot go with --server: the coding service codes with the program, "
                               "model, threads and knowledge base it was started with")


def connect_service(server: str):
    from service.client import connect

    return connect(server)


def predict_with_service(server: str, note: str | None, input_spec: str | None, output: Path | None, timeout: float,
                         verbose: bool, as_json: bool) -> None:
    """predict's NOTE or batch, coded by the service at `server` (service.client)."""
    from programs.result import CodingResult
    from service.client import code_batch_remote, code_note

    service = connect_service(server)
    if note is not None:
        text = read_note_arg(note)
        print_result(CodingResult.from_dict(code_note(service, text, timeout=timeout)["result"]), as_json, verbose)
        return
    records = batch_records(input_spec, output)
    predict_batch(input_spec, records, as_json,
                  lambda on_note: code_batch_remote(service, records, output, timeout=timeout, on_note=on_note))


def batch_records(input_spec: str, output: Path):
    """The notes of a batch, once --output is known to be writable and not the input itself."""
    spec = input_spec if ":" in input_spec.split("/")[0] else f"jsonl:{input_spec}"
    check_prediction_output(output, spec)
    return load_cli_dataset(spec, None, None, None).records


def check_prediction_output(output: Path, spec: str) -> None:
    """A predictions file must be writable and must not be the dataset it codes."""
    from data.outputs import check_output, same_file
    from data.specs import parse_spec
    from programs.errors import BatchError

    check_output(output, "--output")
    parsed = parse_spec(spec)
    if parsed.kind == "jsonl" and same_file(Path(parsed.parts[0]), output):
        raise BatchError(f"--output {output} is the input file: give another file for the predictions")


def read_note_arg(note: str) -> str:
    from programs.errors import NoteError
    from programs.guarantees import decode_note

    if note == "-":
        return decode_note(sys.stdin.buffer.read(), "standard input")
    try:
        return decode_note(Path(note).read_bytes(), note)
    except OSError as exc:
        raise NoteError(f"cannot read note {note}: {exc.strerror or exc}") from None


def code_one(program, text: str, lm, threads: int):
    from programs.batch import code_note
    from programs.concurrency import Budget

    budget = Budget(threads)
    try:
        return code_note(program, text, lm, budget)
    finally:
        budget.close()


def print_result(result, as_json: bool, verbose: bool = False) -> None:
    if as_json:
        print_json({"codes": result.code_list, "result": result.to_dict()})
        return
    table = Table(title=f"{result.program}: {len(result.codes)} codes")
    for column in ("code", "description", "evidence", "rationale"):
        table.add_column(column)
    for item in result.codes:
        quotes = "\n".join(f"[{e.span.start}:{e.span.end}] {e.span.text}" for e in item.evidence if e.span)
        table.add_row(item.code, item.description, quotes or "(not found in note)", item.rationale)
    console.print(table)
    for stage in result.trace:
        console.print(f"[dim]{stage.stage}:[/] {stage.summary()}", highlight=False)
        if verbose:
            for dropped in stage.dropped:
                console.print(f"  dropped {dropped.item}: {dropped.reason}", style="dim", highlight=False, markup=False)
            for line in stage.log:
                console.print(f"  {line}", style="dim", highlight=False, markup=False)
    if not verbose and any(stage.dropped or stage.log for stage in result.trace):
        console.print("[dim](--verbose: what each stage dropped and why, and its log; --json: everything)[/]", highlight=False)
    print_usage(result.usage, None)


def predict_batch(input_spec: str, records, as_json: bool, code) -> None:
    """Prints what `code(on_note)` (a run over `records`) did, a progress bar while it runs."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from programs.errors import BatchError

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=as_json,
    ) as bar:
        task = bar.add_task("Coding", total=len(records))
        bar.update(task, completed=0)
        summary = code(lambda note_id: bar.advance(task))
    payload = {
        "output": str(summary.output), "written": summary.written, "skipped": summary.skipped,
        "failed": [{"id": i, "error": e} for i, e in summary.failed], "usage": summary.usage, "cost": summary.cost,
    }
    if as_json:
        print_json(payload)
    else:
        console.print(f"Wrote {summary.written} notes to [bold]{summary.output}[/] "
                      f"({summary.skipped} already there, {len(summary.failed)} failed)", highlight=False)
        print_usage(summary.usage, summary.cost)
    if summary.failed and not (summary.written or summary.skipped):
        raise BatchError(f"none of the {len(records)} notes of {input_spec} could be coded: {failures(summary.failed)}")
    if not as_json:
        for note_id, error in summary.failed:
            err_console.print(f"[yellow]{note_id}:[/] {error}", highlight=False)


def failures(failed: list[tuple[str, str]]) -> str:
    """The first failed note and how many more, for a one-line error."""
    note_id, error = failed[0]
    return f"{note_id}: {error}" + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")


def print_usage(usage: dict, cost: float | None) -> None:
    for model_name, counts in sorted(usage.items()):
        console.print(f"[dim]{model_name}: {counts.get('prompt_tokens', 0):,} prompt + "
                      f"{counts.get('completion_tokens', 0):,} completion tokens[/]", highlight=False)
    if cost:
        console.print(f"[dim]cost: ${cost:.4f}[/]", highlight=False)



# --- serve ----------------------------------------------------------------------------------


@cli.command("serve")
@click.option("--program", "program_name", default=None,
              help="medcoder | clh | verify | a compiled .json (default: as for predict).")
@lm_options("none", "'none' (the coding rules alone, no LM), 'local' (embedded), 'local:/path.gguf', or a "
            "LiteLLM model string (openai/..., anthropic/..., ollama_chat/..., hosted_vllm/...).")
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Threads at work at once over all the notes sent, coding notes or the independent stage calls of one.")
@click.option("--port", type=click.IntRange(0, 65535), default=8766, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on. Anything but loopback lets others on the network send notes (there is no login).")
@db_option
@json_option
def serve_command(program_name, model, api_base, api_key, timeout, retries, decoding, threads, port, host, db, as_json) -> None:
    """Keep a program, its model and the knowledge base loaded, and code the notes sent over HTTP:
    POST /v1/code {"text": NOTE} answers the note's line as predict --output writes it, and
    `predict --server URL` codes a note or a batch with it. Ctrl-C stops. With --json, the line
    printed once it listens is {"url", "program", "model", "threads"}."""
    from service.errors import ServiceError

    try:
        from programs.concurrency import Budget
        from service.app import Coder, create_app
        from service.serving import request_log
    except ImportError as exc:
        raise ServiceError(f"the coding service needs its extra ({exc.name} is missing): pip install -e '.[serve]'") from None
    check_decoding(model, api_base, decoding)
    with knowledge_base(db) as kb:
        spec = model_spec(model, api_base, api_key, timeout, retries, decoding)
        program, lm = load_coding(program_name, kb, spec, "threads", batch=True, wait=True)
        coder = Coder(program, lm, model, Budget(threads))
        try:
            serve_app(lambda hosts: create_app(coder, allowed_hosts=hosts, log=request_log("service")), host, port,
                      exposes="can have notes coded with your model",
                      ready=lambda url: announce_service(url, program.name, model, threads, as_json),
                      stopped=lambda: f"Stopped: {coder.coded} notes coded")
        finally:
            coder.budget.close()


def announce_service(url: str, program: str, model: str, threads: int, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"url": url, "program": program, "model": model, "threads": threads}))
        return
    console.print(f"Coding with {program} ({model}, {threads} threads) at [bold]{url}[/]: POST /v1/code "
                  f'{{"text": NOTE}}, or predict --server {url}. Ctrl-C stops.', highlight=False, soft_wrap=True)


# --- compile and compare ------------------------------------------------------------------


@cli.command("compile")
@click.option("--program", "program_name", type=click.Choice(["medcoder", "clh", "verify"]), required=True)
@lm_options()
@click.option("--train", "train_spec", required=True, help="Training dataset spec, e.g. aci:train with --labels.")
@click.option("--dev", "dev_spec", required=True, help="Dev dataset spec (scores before/after, candidate selection).")
@dataset_options
@click.option("--optimizer", "optimizer_name", type=click.Choice(["bootstrap", "random-search", "mipro", "gepa", "gold-demos"]),
              required=True, help="gold-demos: demos for every stage from the gold labels (no LM calls besides dev scoring).")
@click.option("--budget", type=click.IntRange(1), default=None, help="Cap on LM calls (metric calls for gepa).")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--reflection-model", default=None, callback=check_model,
              help="Model proposing instructions (mipro, gepa); default --model. A name without a provider/ is served by --api-base.")
@click.option("--candidates", type=click.IntRange(1), default=None, help="Candidate programs (random-search) or instruction/demo candidates (mipro).")
@click.option("--max-demos", type=click.IntRange(0, 16), default=4, show_default=True, help="Demos per stage.")
@click.option("--dev-notes", type=click.IntRange(1), default=None,
              help="Score before/after on the first N dev notes only (slow local models); recorded in the metadata.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the estimated LM calls and tokens, spend nothing.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="compiled/NAME.json")
@db_option
@json_option
def compile_command(program_name, model, api_base, api_key, timeout, retries, decoding, train_spec, dev_spec, labels, mimic_notes,
                    optimizer_name, budget, threads, reflection_model, candidates, max_demos, dev_notes, seed, dry_run, out,
                    db, as_json) -> None:
    """Optimize PROGRAM's prompts (demos, instructions) against gold codes and save it to --out."""
    from contextlib import redirect_stdout
    from dataclasses import replace

    import dspy

    from data.outputs import check_output
    from icd_graph.kb import KnowledgeBase
    from optimizers.compile import (CompileFailed, dataset_metadata, estimate, gold_examples, run_metadata,
                                    run_optimizer, save_compiled)
    from optimizers.registry import Settings, get_optimizer
    from programs.lm import NONE, make_lm
    from programs.registry import build_program

    if model == NONE:
        raise click.BadParameter("none runs the coding rules, which have no prompts to compile: give the model to "
                                 "compile for", param_hint="'--model'")
    check_decoding(model, api_base, decoding)
    optimizer = get_optimizer(optimizer_name)
    settings = Settings(budget=budget, threads=threads, seed=seed, max_demos=max_demos, candidates=candidates)
    check_output(out, "--out")
    with KnowledgeBase(resolve_db(db)) as kb:
        train = load_cli_dataset(train_spec, labels, mimic_notes, kb)
        dev = load_cli_dataset(dev_spec, labels, mimic_notes, kb)
        if dev_notes is not None and dev_notes < len(dev):
            dev = replace(dev, name=f"{dev.name}[:{dev_notes}]", records=dev.records[:dev_notes])
        for dataset in (train, dev):
            print_load_report(dataset)
        trainset, devset = gold_examples(train), gold_examples(dev)
        program = build_program(program_name, kb)
        guess = estimate(program, trainset, devset, optimizer, settings)
        print_estimate(guess, as_json and dry_run)
        if dry_run:
            return
        lm = make_lm(model, api_base, api_key=api_key, timeout=timeout, num_retries=retries, decoding=decoding)
        proposer = lm
        if reflection_model:
            same_server = "/" not in reflection_model
            proposer = make_lm(reflection_model, api_base if same_server else None, api_key=api_key if same_server else None,
                               timeout=timeout, num_retries=retries)
        # DSPy's optimizers print progress on stdout: keep stdout for the result
        with dspy.context(lm=lm), redirect_stdout(sys.stderr), \
                calls_progress(guess.plan.total_calls + guess.eval_calls, as_json) as on_call:
            run = run_optimizer(program, trainset, devset, optimizer, settings, proposer=proposer, on_call=on_call)
        metadata = run_metadata(
            run, settings, model=model, api_base=api_base, reflection_model=reflection_model or model,
            datasets={"train": dataset_metadata(train, labels), "dev": dataset_metadata(dev, labels)},
            kb_release=kb.release_name(),
        )
        path = save_compiled(out, program_name, run.program, metadata)
    if as_json:
        print_json({"out": str(path), **{k: metadata[k] for k in ("status", "message", "lm_calls", "scores", "plan")}})
    else:
        print_compile_run(run, path)
    if run.status == "failed":
        raise CompileFailed(f"{run.message}; the best program found before it stopped is in {path}")
    if run.status == "interrupted":
        sys.exit(130)


def calls_progress(total: int, quiet: bool):
    """A rich progress bar over LM calls; yields the callback compile reports calls to."""
    from contextlib import contextmanager

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    @contextmanager
    def bar():
        with Progress(TextColumn("LM calls"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=quiet) as progress:
            task = progress.add_task("calls", total=total)
            yield lambda calls: progress.update(task, completed=calls)

    return bar()


def print_estimate(guess, as_json: bool) -> None:
    if as_json:
        print_json(guess.as_dict())
        return
    plan = guess.plan
    table = Table(title=f"{plan.optimizer}: estimate (dry run spends nothing)")
    table.add_column("item")
    table.add_column("value", justify="right")
    rows = [
        ("training notes used", plan.train),
        ("optimizer LM calls (task model)", plan.lm_calls),
        ("proposer / reflection calls", plan.proposer_calls),
        ("metric calls", plan.metric_calls),
        ("dev evaluations before + after (calls)", guess.eval_calls),
        ("prompt tokens per call (about)", guess.prompt_tokens_per_call),
        ("prompt tokens in all (about)", guess.prompt_tokens),
    ]
    for name, value in rows:
        table.add_row(name, f"{value:,}")
    for name, value in plan.parameters.items():
        table.add_row(f"[dim]{name}[/]", str(value))
    err_console.print(table)
    for note in plan.notes:
        err_console.print(f"[dim]{note}[/]", highlight=False)


def print_compile_run(run, path: Path) -> None:
    after = f"{run.after.micro_f1:.3f}" if run.after else "not scored"
    console.print(f"dev micro F1 {run.before.micro_f1:.3f} -> {after} ({run.status}, {run.lm_calls:,} LM calls); "
                  f"the rules alone (--model none): {run.floor.micro_f1:.3f}", highlight=False)
    if run.message:
        err_console.print(f"[yellow]{run.message}[/]", highlight=False)
    console.print(f"Saved [bold]{path}[/]", highlight=False)


@cli.command("compare")
@click.option("--program", "program_names", multiple=True, type=click.Choice(["medcoder", "clh", "verify"]),
              help="Hand-written program(s); the programs of --compiled files are added.")
@click.option("--compiled", "compiled_paths", multiple=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Compiled program file(s).")
@click.option("--hand-written/--no-hand-written", default=True, show_default=True,
              help="Also run the hand-written program of each --compiled file (--no-hand-written: the compiled "
                   "ones only, e.g. to compare decodings).")
@lm_options(decodings=True)
@click.option("--dataset", required=True, help="Dataset spec with gold codes, e.g. aci:valid with --labels.")
@dataset_options
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True, help="Notes coded at once.")
@click.option("--resamples", type=click.IntRange(100), default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False), default=None, help="Bar chart PNG (needs matplotlib).")
@db_option
@json_option
def compare_command(program_names, compiled_paths, hand_written, model, api_base, api_key, timeout, retries, decoding, dataset, labels, mimic_notes,
                    threads, resamples, plot, db, as_json) -> None:
    """Run hand-written and compiled programs on the same notes; scores, CI of the gain, cost."""
    from data.outputs import check_output
    from icd_graph.kb import KnowledgeBase
    from optimizers.compare import FLOOR, compare, plot as plot_comparison, pyplot, run_system
    from optimizers.compile import gold_examples
    from programs.errors import ProgramFileError
    from programs.lm import make_lm
    from programs.registry import build_program, load_compiled_program

    if not program_names and not compiled_paths:
        raise ProgramFileError("give --program and/or --compiled files to compare")
    decodings = list(dict.fromkeys(decoding))
    for each in decodings:
        check_decoding(model, api_base, each)
    if plot is not None:
        check_output(plot, "--plot")
        pyplot()
    with KnowledgeBase(resolve_db(db)) as kb:
        data = load_cli_dataset(dataset, labels, mimic_notes, kb)
        print_load_report(data)
        gold_examples(data)
        compiled = [(path, load_compiled_program(path, kb)) for path in compiled_paths]
        names = list(dict.fromkeys([*program_names, *(program.name for _, program in compiled if hand_written)]))
        systems = [(name, name, None, build_program(name, kb)) for name in names]
        systems += [(str(path), program.name, str(path), program) for path, program in compiled]
        first = make_lm(model, api_base, api_key=api_key, timeout=timeout, num_retries=retries, decoding=decodings[0])
        lms = {each: first if each == decodings[0] else first.copy(decoding=each) for each in decodings}
        runs = []
        with notes_progress((len(systems) * len(lms) + 1) * len(data.records), as_json) as advance:
            runs.append(run_system(FLOOR, build_program("medcoder", kb), data.records, None, program_name="medcoder",
                                   threads=threads, on_note=advance))
            for each, lm in lms.items():
                for label, name, source, program in systems:
                    runs.append(run_system(f"{label} [{each}]" if len(lms) > 1 else label, program, data.records, lm,
                                           program_name=name, compiled=source, decoding=each, threads=threads,
                                           on_note=advance))
    comparison = compare(data.records, runs, dataset=data.name, resamples=resamples)
    if plot:
        plot_comparison(comparison, plot)
    if as_json:
        print_json(comparison.as_dict())
        return
    print_comparison(comparison)


def notes_progress(total: int, quiet: bool):
    from contextlib import contextmanager

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    @contextmanager
    def bar():
        with Progress(TextColumn("Coding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True, disable=quiet) as progress:
            task = progress.add_task("notes", total=total)
            yield lambda note_id: progress.advance(task)

    return bar()


def interval(difference: dict | None) -> str:
    """'+0.120 [+0.010, +0.250]' for a paired-bootstrap difference, '-' for none."""
    if not difference:
        return "-"
    return f"{difference['delta_micro_f1']:+.3f} [{difference['ci_low']:+.3f}, {difference['ci_high']:+.3f}]"


def system_name(run) -> str:
    """A system's label with a compiled file's path shortened to its name, as table markup."""
    from rich.markup import escape

    return escape(run.label.replace(run.compiled, Path(run.compiled).name) if run.compiled else run.label)


def print_comparison(comparison) -> None:
    """Two tables (quality, cost) so that each fits an 80-column terminal."""
    from rich import box

    quality = Table(title=f"{comparison.dataset}: hand-written vs compiled", box=box.SIMPLE_HEAD)
    cost = Table(box=box.SIMPLE_HEAD)
    for column in ("system", "micro F1", "macro F1", "category F1", "P", "R", "gain [95% CI]", "vs floor [95% CI]"):
        quality.add_column(column, justify="left" if column == "system" else "right")
    for column in ("system", "LM calls", "tokens", "failed parses", "s/note"):
        cost.add_column(column, justify="left" if column == "system" else "right")
    for row in comparison.rows:
        item = row.as_dict()
        name = system_name(row.run)
        gain, floor = (interval(diff) for diff in (item["difference"], item["vs_floor"]))
        quality.add_row(
            name, f"{item['micro']['f1']:.3f}", f"{item['macro']['f1']:.3f}", f"{item['category_micro']['f1']:.3f}",
            f"{item['micro']['precision']:.3f}", f"{item['micro']['recall']:.3f}", gain, floor,
        )
        cost.add_row(name, f"{item['lm_calls']:,}", f"{item['prompt_tokens'] + item['completion_tokens']:,}",
                     str(item["parse_failures"]), f"{item['seconds_per_note']:.2f}")
    console.print(quality)
    console.print(cost)
    constrained = [row for row in comparison.rows if row.constrained]
    if constrained:
        decoded = Table(title="decoded under constraints vs off (the same system)", box=box.SIMPLE_HEAD)
        for column in ("system", "micro F1, off", "micro F1", "vs off [95% CI]"):
            decoded.add_column(column, justify="left" if column == "system" else "right")
        by_label = {row.run.label: row for row in comparison.rows}
        for row in constrained:
            off = by_label[row.unconstrained].evaluation.scores.micro.f1
            decoded.add_row(system_name(row.run), f"{off:.3f}", f"{row.evaluation.scores.micro.f1:.3f}",
                            interval(row.as_dict()["vs_unconstrained"]))
        console.print(decoded)
    print_stage_answers([(system_name(row.run), row.run.answers()) for row in comparison.rows if row.run.answers()])
    console.print("[dim]gain: micro F1 of a compiled program minus its hand-written program; vs floor: minus the "
                  "rules alone (MedCoder, --model none); vs off: minus the same system decoded without constraints; "
                  "all paired bootstrap. "
                  "LM calls include cache hits; tokens count the calls the model answered.[/]", highlight=False)
    for row in comparison.rows:
        for note_id, error in row.run.failed:
            err_console.print(f"[yellow]{row.run.label} {note_id}:[/] {error}", highlight=False)


# --- review -------------------------------------------------------------------------------


@cli.command("review")
@click.option("--dataset", required=True, help="The notes: jsonl:PATH, aci:SPLITS (gold codes with --labels), mdace:...")
@click.option("--predictions", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The program's codes: predict --output lines, or {\"id\", \"codes\", \"evidence\"?} lines.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The coder's decisions, a jsonl: dataset; a rerun with the same file continues.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on. Anything but loopback lets others on the network read the notes.")
@click.option("--reviewer", default=None, help="Name recorded with each decision (default: the login name).")
@dataset_options
@db_option
def review_command(dataset: str, predictions: Path, out: Path, port: int, host: str, reviewer: str | None,
                   labels: Path | None, mimic_notes: Path | None, db: Path | None) -> None:
    """Review a program's codes in the browser: the note with each code's evidence highlighted;
    accept, reject, replace or add codes. Every decision is saved at once to --out, which
    `compile --train jsonl:OUT` and `evaluate --dataset jsonl:OUT` read as it is."""
    import getpass

    from data.outputs import check_output, same_file
    from data.specs import parse_spec
    from review.errors import ReviewError

    try:
        from review.codes import CodeBook
        from review.predictions import read_predictions
        from review.app import create_app
        from review.store import ReviewStore
        from service.serving import request_log
    except ImportError as exc:
        raise ReviewError(f"the review app needs its extra ({exc.name} is missing): pip install -e '.[review]'") from None
    check_output(out, "--out")
    spec = parse_spec(dataset)
    inputs = [predictions] + ([Path(spec.parts[0])] if spec.kind == "jsonl" else [])
    if any(same_file(path, out) for path in inputs):
        raise ReviewError(f"--out {out} is an input file: give another file for the decisions")
    try:
        reviewer = reviewer or getpass.getuser()
    except (KeyError, OSError):
        reviewer = "coder"
    with knowledge_base(db) as kb:
        loaded = load_cli_dataset(dataset, labels, mimic_notes, kb)
        print_load_report(loaded)
        predicted, unknown = read_predictions(predictions, {record.id: record.text for record in loaded.records})
        if unknown:
            err_console.print(f"[yellow]{len(unknown)} predictions for notes not in {loaded.name}[/] (ignored): "
                              f"{', '.join(unknown[:10])}", highlight=False)
        store = ReviewStore(loaded.records, predicted, out, CodeBook(kb), reviewer)
        reviewed, total = store.progress()

        def make_app(hosts):  # once the socket is bound: a port in use is said before the codes load
            store.codes.warm()
            return create_app(store, allowed_hosts=hosts, log=request_log("review"))

        serve_app(make_app, host, port,
                  exposes="can read the notes and change decisions",
                  ready=lambda url: console.print(f"Review at [bold]{url}[/] ({reviewed} of {total} notes reviewed; "
                                                  f"decisions saved to {out}). Ctrl-C stops.", highlight=False, soft_wrap=True),
                  stopped=lambda: f"Stopped: {store.progress()[0]} of {total} notes reviewed, in {out}")


def serve_app(make_app, host: str, port: int, *, exposes: str, ready, stopped) -> None:
    """Serves `make_app(allowed_hosts)` (service.serving.run) until Ctrl-C: a warning first when
    `host` is not loopback (anyone who can reach it `exposes`), `ready(url)` once it listens, the
    line `stopped()` once it has stopped."""
    from service.serving import is_loopback, run

    if not is_loopback(host):
        err_console.print(f"[bold yellow]warning:[/] serving on {host}: anyone who can reach this address {exposes} "
                          "(there is no login)", highlight=False)
    served: list[str] = []

    def listening(url: str) -> None:
        served.append(url)
        ready(url)

    try:
        run(make_app, host, port, on_ready=listening)
    finally:
        if served:
            err_console.print(stopped(), highlight=False)


def run_and_exit() -> None:
    """Runs the command line, then exits without tearing down the interpreter's objects, which
    takes seconds after a batch (millions of objects of the search indexes, medspaCy, DSPy):
    the output is flushed and the exit handlers run first, so nothing is lost. SIGUSR1 prints
    every thread's stack on stderr (`kill -USR1 PID`: where a command that seems stuck is)."""
    import atexit
    import faulthandler
    import os
    import signal

    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        cli()
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): nothing more to say
            pass
    atexit._run_exitfuncs()
    os._exit(status)


if __name__ == "__main__":
    run_and_exit()
