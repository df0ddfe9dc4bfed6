"""`barkpipe book`: a run's chapter rows become one .m4b audiobook with chapter markers."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.errors import fail, guarded
from pipeline.errors import USER_ERRORS


def book_command(output: str, out: str, title: str | None, author: str | None, cover: str | None) -> None:
    from pipeline.book import package
    from pipeline.storage import redact_url

    try:
        result = package(output, out, title=title, author=author, cover=cover)
    except USER_ERRORS as exc:
        fail(exc)
    marks = result["chapters"]
    length = marks[-1]["end_s"] if marks else 0.0
    typer.echo(
        f"wrote {redact_url(result['path'])}: {len(marks)} chapter(s), {length / 60:.1f} min, "
        f"title {result['title']!r}" + (f", author {result['author']!r}" if result["author"] else "")
    )
    for m in marks:
        typer.echo(f"  {m['start_s'] / 60:7.2f} min  {m['title'][:70]}")
    if result["flagged"]:
        typer.echo(
            f"warning: {len(result['flagged'])} chapter(s) have flagged chunks ({', '.join(result['flagged'][:5])}); "
            "see `barkpipe report`",
            err=True,
        )


def register(app: typer.Typer) -> None:
    """Add `book` to the barkpipe CLI."""

    @app.command("book")
    @guarded
    def _book(
        output: Annotated[str, typer.Argument(help="A run's output.path (local folder or s3://...).")],
        out: Annotated[str, typer.Option("--out", help="The .m4b file to write (local path or s3://...).")],
        title: Annotated[
            str | None,
            typer.Option("--title", help="Book title [default: a book_title column, else OUTPUT's name]."),
        ] = None,
        author: Annotated[
            str | None, typer.Option("--author", help="Author [default: an author column, if any].")
        ] = None,
        cover: Annotated[str | None, typer.Option("--cover", help="Cover image (.jpg or .png).")] = None,
    ) -> None:
        """Package a run's finished rows, in manifest order, into one .m4b with a chapter per row."""
        book_command(output, out, title, author, cover)
