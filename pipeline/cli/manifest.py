"""`barkpipe manifest from-text|from-epub`: a book becomes a manifest with one row per chapter."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.errors import fail as _fail
from pipeline.cli.errors import guarded

_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")  # en, pt-BR, zh_Hans

manifest_app = typer.Typer(
    no_args_is_help=True, add_completion=False, rich_markup_mode=None, help="Make manifests from books."
)

OutOption = Annotated[Path, typer.Option("--out", help="Parquet file to write (local path or s3://...).")]
PrefixOption = Annotated[
    str | None, typer.Option("--id-prefix", help="Row ids are PREFIX-001, ... [default: the file name].")
]
LanguageOption = Annotated[
    str | None, typer.Option("--language", help="Add a language column (en, de, ...) for every row.")
]


def _write(df, book: Path, out: Path, language: str | None) -> None:
    from pipeline.text.books import write_manifest

    if df.empty:
        _fail(f"no chapters found in {book}: it has no document with text")
    if language is not None:
        if not _LANGUAGE.match(language):
            _fail(f"--language {language!r} is not a language code like 'en' or 'pt-BR'")
        df["language"] = language
    path = write_manifest(df, str(out))
    typer.echo(f"wrote {path}: {len(df)} row(s), {df['text'].str.len().sum():,} characters")
    for row in df.itertuples():
        typer.echo(f"  {row.id}  {row.title[:60]}  ({len(row.text):,} chars)")


@manifest_app.command("from-text")
@guarded
def _from_text(
    book: Annotated[Path, typer.Argument(help="A UTF-8 text file.")],
    out: OutOption,
    heading: Annotated[
        str | None,
        typer.Option(
            "--heading", help="Regex (multiline) for a chapter's heading line [default: lines starting with 'Chapter']."
        ),
    ] = None,
    id_prefix: PrefixOption = None,
    language: LanguageOption = None,
) -> None:
    """One row per chapter of a plain-text book; the heading is read out before its chapter."""
    from pipeline.text.books import DEFAULT_HEADING_PATTERN, manifest_from_text

    if not book.is_file():
        _fail(f"book file not found: {book}")
    try:
        df = manifest_from_text(book, heading_pattern=heading or DEFAULT_HEADING_PATTERN, id_prefix=id_prefix)
    except (ValueError, UnicodeDecodeError) as err:
        _fail(f"{book}: {err}")
    if df.empty or df["chapter_index"].max() == 0:
        pattern = heading or DEFAULT_HEADING_PATTERN
        _fail(f"no chapters found in {book}: no line matches the heading pattern {pattern!r}; give --heading REGEX")
    _write(df, book, out, language)


@manifest_app.command("from-epub")
@guarded
def _from_epub(
    book: Annotated[Path, typer.Argument(help="An EPUB file.")],
    out: OutOption,
    id_prefix: PrefixOption = None,
    language: LanguageOption = None,
) -> None:
    """One row per non-empty document of an EPUB's spine, in reading order."""
    import zipfile

    from ebooklib.epub import EpubException

    from pipeline.text.books import manifest_from_epub

    if not book.is_file():
        _fail(f"EPUB file not found: {book}")
    try:
        df = manifest_from_epub(book, id_prefix=id_prefix)
    except (EpubException, zipfile.BadZipFile, KeyError, ValueError) as err:  # what a broken EPUB raises
        _fail(f"{book} is not a readable EPUB ({type(err).__name__}: {err})")
    _write(df, book, out, language)


def register(app: typer.Typer) -> None:
    """Add the `manifest` group to the barkpipe CLI."""
    app.add_typer(manifest_app, name="manifest")
