"""`barkpipe report`: one self-contained HTML review page of a run, flagged rows and chunks first."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.errors import fail, guarded
from pipeline.errors import USER_ERRORS


def report_command(output: str, out: str | None, max_embed_mb: float) -> None:
    from pipeline.review.page import write_report
    from pipeline.storage import redact_url

    if max_embed_mb < 0:
        fail(f"--max-embed-mb must be >= 0, got {max_embed_mb}")
    try:
        where = write_report(output, out, max_embed_bytes=int(max_embed_mb * 2**20))
    except USER_ERRORS as exc:
        fail(exc)
    typer.echo(f"wrote {redact_url(full_url(where, out or output))}")


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
            str | None, typer.Option("--out", help="Where to write the page [default: OUTPUT/report.html].")
        ] = None,
        max_embed_mb: Annotated[
            float,
            typer.Option(
                "--max-embed-mb", help="Audio embedded in the page, MiB; flagged rows first, links for the rest."
            ),
        ] = 20.0,
    ) -> None:
        """Write a review page: the dataset across runs, then flagged rows and chunks with players, waveforms,
        gates, each chunk's text and what the speech check heard."""
        report_command(output, out, max_embed_mb)
