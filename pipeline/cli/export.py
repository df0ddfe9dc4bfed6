"""`barkpipe export`: a run's finished rows as a Hugging Face Parquet dataset or WebDataset tar shards."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.errors import fail, guarded
from pipeline.errors import USER_ERRORS


def export_command(
    output: str,
    out: str,
    fmt: str,
    include_flagged: bool,
    only_ok: bool,
    min_quality: list[str] | None,
    split: str | None,
    shard_size: str,
) -> None:
    from pipeline.export.rows import Selection, parse_quality, parse_splits
    from pipeline.export.run import describe, export

    try:
        if include_flagged and only_ok:
            raise ValueError("--include-flagged and --only-ok contradict each other; pass one")
        selection = Selection(include_flagged, parse_quality(min_quality), parse_splits(split))
        result = export(output, out, fmt, selection, shard_size, say=typer.echo)
    except USER_ERRORS as exc:
        fail(exc)
    for line in describe(result):
        typer.echo(line, err=line.startswith("warning:"))


def register(app: typer.Typer) -> None:
    """Add `export` to the barkpipe CLI."""

    @app.command("export")
    @guarded
    def _export(
        output: Annotated[str, typer.Argument(help="A run's output.path (local folder or s3://...).")],
        out: Annotated[
            str, typer.Option("--out", help="Folder to write (local or s3://...); new or an earlier export.")
        ],
        fmt: Annotated[str, typer.Option("--format", help="hf (Parquet shards + dataset card) or webdataset (tars).")],
        include_flagged: Annotated[
            bool, typer.Option("--include-flagged", help="Also export rows the quality gates flagged.")
        ] = False,
        only_ok: Annotated[bool, typer.Option("--only-ok", help="Leave flagged rows out (the default).")] = False,
        min_quality: Annotated[
            list[str] | None,
            typer.Option(
                "--min-quality",
                help="MEASURE=VALUE every chunk must meet: wer, cer, clipped_fraction, longest_silence_s (at most), "
                "speaker_similarity (at least); unmeasured chunks fail. Repeatable.",
            ),
        ] = None,
        split: Annotated[
            str | None,
            typer.Option("--split", help="Splits by sha256 of the id, e.g. train=0.98,validation=0.01,test=0.01."),
        ] = None,
        shard_size: Annotated[
            str, typer.Option("--shard-size", help="Audio per shard (500MB, 2GiB) or rows per shard (2000rows).")
        ] = "500MB",
    ) -> None:
        """Export each finished row once (its newest take) for `datasets` or webdataset users."""
        export_command(output, out, fmt, include_flagged, only_ok, min_quality, split, shard_size)
