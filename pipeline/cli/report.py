"""`barkpipe report`: an HTML review page of an output: its summary, then the rows that need a listener."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.errors import fail, guarded
from pipeline.errors import USER_ERRORS
from pipeline.review import MAX_ROWS


def report_command(
    output: str, out: str | None, max_embed_mb: float, only: str | None, max_rows: int, page: int, sample_ok: int
) -> None:
    from pipeline.review.listing import Choice
    from pipeline.review.page import write_report
    from pipeline.storage import redact_url

    if max_embed_mb < 0:
        fail(f"--max-embed-mb must be >= 0, got {max_embed_mb}")
    try:
        choice = Choice(only=only, sample_ok=sample_ok, max_rows=max_rows, page=page)
        written = write_report(output, out, max_embed_bytes=int(max_embed_mb * 2**20), choice=choice)
    except USER_ERRORS as exc:
        fail(exc)
    typer.echo(f"wrote {redact_url(full_url(written.where, out or output))}")
    if written.pages > 1:
        typer.echo(
            f"page {written.page} of {written.pages} ({written.listed} rows listed, {max_rows} a page); "
            f"the others: --page N"
        )


def full_url(where: str, asked: str) -> str:
    """`where` with the scheme of the URL the user gave: the store hands back bucket/key (s3fs drops "s3://")."""
    if "://" in where or "://" not in asked:
        return where
    from fsspec.utils import get_protocol

    return f"{get_protocol(asked)}://{where}"


def register(app: typer.Typer) -> None:
    """Add `report` to the barkpipe CLI."""

    @app.command("report")
    @guarded
    def _report(
        output: Annotated[str, typer.Argument(help="A run's output.path (local folder or s3://...).")],
        out: Annotated[
            str | None,
            typer.Option(
                "--out", help="Page 1's file; page N goes beside it as NAME-pN.html [default: OUTPUT/report.html]."
            ),
        ] = None,
        only: Annotated[
            str | None,
            typer.Option(
                "--only", help="List only flagged, errors, or all rows (ok ones too) [default: flagged and errors]."
            ),
        ] = None,
        max_rows: Annotated[int, typer.Option("--max-rows", help="Rows listed per page.")] = MAX_ROWS,
        page: Annotated[int, typer.Option("--page", help="Which page of the listing to write (1 is the first).")] = 1,
        sample_ok: Annotated[
            int, typer.Option("--sample-ok", help="Also list this many ok rows, a stable spread-out sample.")
        ] = 0,
        max_embed_mb: Annotated[
            float,
            typer.Option("--max-embed-mb", help="Audio embedded in a page, MiB, in page order; links for the rest."),
        ] = 20.0,
    ) -> None:
        """Write a review page: the dataset's summary (every row), then flagged rows, error rows (and ok rows if
        asked), a page at a time, with players, waveforms, gates, each chunk's text and what was heard."""
        report_command(output, out, max_embed_mb, only, max_rows, page, sample_ok)
