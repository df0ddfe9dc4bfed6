"""Tests for pipeline.text.books: chapter manifests from text and EPUB, Parquet output."""

import pandas as pd
import pytest

from pipeline.text.books import manifest_from_epub, manifest_from_text, write_manifest

BOOK = """THE TALE
by A. Writer

Contents
Chapter 1
Chapter 2

Chapter 1: The Start
It was a dark night.

The wind howled.

CHAPTER 2 — The End
It was morning.
"""


def test_text_manifest_rows():
    df = manifest_from_text(BOOK, id_prefix="tale")
    assert list(df.columns) == ["id", "text", "title", "chapter_index"]
    assert df["id"].tolist() == ["tale-000", "tale-001", "tale-002"]
    assert df["chapter_index"].tolist() == [0, 1, 2]
    # The table-of-contents lines match the heading pattern but have no body: no rows.
    assert df["title"].tolist() == ["front matter", "Chapter 1: The Start", "CHAPTER 2 — The End"]
    assert df["text"].tolist() == [
        "THE TALE\nby A. Writer\n\nContents",
        "Chapter 1: The Start\n\nIt was a dark night.\n\nThe wind howled.",
        "CHAPTER 2 — The End\n\nIt was morning.",
    ]


def test_no_front_matter_row_when_book_starts_with_heading():
    df = manifest_from_text("Chapter One\nHello.\nChapter Two\nBye.", id_prefix="b")
    assert df["title"].tolist() == ["Chapter One", "Chapter Two"]
    assert df["chapter_index"].tolist() == [1, 2]


def test_custom_heading_pattern_and_file_input(tmp_path):
    path = tmp_path / "saga.txt"
    path.write_text("Prologue text.\n## Part A\nAlpha.\n## Part B\nBeta.\n", encoding="utf-8")
    for source in (path, str(path)):
        df = manifest_from_text(source, heading_pattern=r"^## .*$")
        assert df["id"].tolist() == ["saga-000", "saga-001", "saga-002"]
        assert df["text"].tolist() == ["Prologue text.", "## Part A\n\nAlpha.", "## Part B\n\nBeta."]


def test_text_manifest_errors(tmp_path):
    with pytest.raises(ValueError, match="heading_pattern"):
        manifest_from_text("text", heading_pattern="(")
    with pytest.raises(FileNotFoundError):
        manifest_from_text(tmp_path / "missing.txt")


def _build_epub(path):
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("test-book")
    book.set_title("Tiny")
    book.set_language("en")
    one = epub.EpubHtml(title="First", file_name="one.xhtml", lang="en")
    one.content = (
        "<html><head><title>x</title><style>p{}</style></head><body>"
        "<h1>Chapter One</h1><p>Tom &amp; Jerry  ran.</p><script>var a=1;</script>"
        "<p>They <em>stopped</em>.</p></body></html>"
    )
    empty = epub.EpubHtml(title="Blank", file_name="blank.xhtml", lang="en")
    empty.content = "<html><body><p>   </p></body></html>"
    two = epub.EpubHtml(title="Second", file_name="two.xhtml", lang="en")
    two.content = "<html><body><p>No heading here.</p></body></html>"
    for item in (one, empty, two):
        book.add_item(item)
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.toc = (one, two)
    # Spine order differs from the order items were added: the manifest follows the spine.
    book.spine = [two, empty, one]
    epub.write_epub(str(path), book)


def test_epub_manifest(tmp_path):
    path = tmp_path / "tiny.epub"
    _build_epub(path)
    df = manifest_from_epub(path)
    assert df["id"].tolist() == ["tiny-001", "tiny-002"]
    assert df["title"].tolist() == ["Second", "Chapter One"]
    assert df["text"].tolist() == ["No heading here.", "Chapter One\n\nTom & Jerry ran.\n\nThey stopped."]
    assert df["chapter_index"].tolist() == [1, 2]


def test_epub_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.epub"):
        manifest_from_epub(tmp_path / "nope.epub")


def test_write_manifest_round_trips(tmp_path):
    df = manifest_from_text(BOOK, id_prefix="tale")
    out = write_manifest(df, tmp_path / "sub" / "book.parquet")
    back = pd.read_parquet(out)
    pd.testing.assert_frame_equal(back, df)
    with pytest.raises(ValueError, match="chapter_index"):
        write_manifest(df.drop(columns=["chapter_index"]), tmp_path / "bad.parquet")
