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


# --- data and evaluation commands ---------------------------------------------------------


# --- predict ------------------------------------------------------------------------------


# --- compile and compare ------------------------------------------------------------------


if __name__ == "__main__":
    cli()
