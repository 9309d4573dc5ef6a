"""Command line: parse arguments, call the packages, print. No logic of its own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from icd_graph.errors import IcdError

console = Console()
err_console = Console(stderr=True)


class Main(click.Group):
    """Turns every expected error into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except IcdError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(1)
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            sys.exit(130)


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
@db_option
@json_option
def icd_build(source: Path | None, db: Path | None, as_json: bool) -> None:
    """Build the knowledge base (one DuckDB file) from the ICD-10-CM source files."""
    from dataclasses import asdict

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from icd_graph.build import build

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, disable=as_json,
    ) as bar:
        task = bar.add_task("Building", total=1)

        def progress(step: str, done: int, total: int) -> None:
            bar.update(task, description=step, completed=done, total=total)

        report = build(source=source, db=resolve_db(db), progress=progress)
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
    console.print(f"Wrote [bold]{report.db}[/] in {report.seconds:.1f} s", highlight=False)


# --- data and evaluation commands ---------------------------------------------------------


# --- predict ------------------------------------------------------------------------------


# --- compile and compare ------------------------------------------------------------------


if __name__ == "__main__":
    cli()
