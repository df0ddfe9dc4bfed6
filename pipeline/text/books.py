"""Manifests (one row per chapter) from plain-text books and EPUB files."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

MANIFEST_COLUMNS = ("id", "text", "title", "chapter_index")
DEFAULT_HEADING_PATTERN = r"^(chapter|CHAPTER|Chapter)\b.*$"
FRONT_MATTER_TITLE = "front matter"
# Tags whose end is a paragraph break in the extracted text.
_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "section",
        "article",
        "blockquote",
        "li",
        "ul",
        "ol",
        "br",
        "tr",
        "table",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "hr",
        "figure",
        "figcaption",
        "dd",
        "dt",
    }
)
# Tags whose text is never read aloud.
_SKIP_TAGS = frozenset({"head", "title", "script", "style", "nav"})
_HEADING_TAGS = ("h1", "h2", "h3")


def manifest_from_text(
    path_or_text: str | os.PathLike,
    heading_pattern: str = DEFAULT_HEADING_PATTERN,
    id_prefix: str | None = None,
) -> pd.DataFrame:
    """One row per chapter of a plain-text book: id, text, title, chapter_index.

    `path_or_text` is read as a file when it is a PathLike, or a one-line str naming
    an existing file; any other str is the book itself. A line matching
    `heading_pattern` starts a chapter (numbered from 1); its text is the heading,
    a paragraph break, then the body, so the narrator reads the title. Text before
    the first heading becomes a "front matter" row (chapter_index 0) if non-empty;
    a heading with no body (a table of contents line) gives no row.
    """
    text, stem = _read_text(path_or_text)
    prefix = id_prefix or stem or "book"
    try:
        heading = re.compile(heading_pattern, re.MULTILINE)
    except re.error as e:
        raise ValueError(f"heading_pattern {heading_pattern!r} is not a valid regex: {e}") from e
    text = text.replace("\r\n", "\n")
    matches = list(heading.finditer(text))
    rows = []
    front = text[: matches[0].start()] if matches else text
    if front.strip():
        rows.append((FRONT_MATTER_TITLE, front.strip(), 0))
    chapter = 0
    for n, m in enumerate(matches, start=1):
        end = matches[n].start() if n < len(matches) else len(text)
        body = text[m.end() : end].strip()
        if body:
            chapter += 1
            title = m[0].strip()
            rows.append((title, f"{title}\n\n{body}", chapter))
    return _frame(prefix, rows)


def manifest_from_epub(path: str | os.PathLike, id_prefix: str | None = None) -> pd.DataFrame:
    """One row per non-empty spine document of an EPUB, in reading order.

    HTML is reduced to text with paragraph breaks between block elements; the title
    is the document's first h1-h3, else its table-of-contents entry, else its file name.
    """
    import ebooklib  # imported here: only EPUB input needs it (and its lxml)
    from ebooklib import epub

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EPUB file {str(path)!r} does not exist")
    book = epub.read_epub(str(path), options={"ignore_ncx": True})
    toc = _toc_titles(book.toc)
    rows: list[tuple[str, str, int]] = []  # (title, text, number)
    for idref, _linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        parser = _TextExtractor()
        parser.feed(item.get_content().decode("utf-8", errors="replace"))
        parser.close()
        text = parser.text()
        if text:
            name = item.get_name()
            title = parser.heading or toc.get(name) or getattr(item, "title", "") or Path(name).stem
            rows.append((title, text, len(rows) + 1))
    return _frame(id_prefix or path.stem, rows)


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> str:
    """Write a manifest to Parquet (local path or fsspec URL) and return the path."""
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"manifest lacks columns {missing}; it needs {list(MANIFEST_COLUMNS)}")
    path = str(path)
    if "://" not in path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False, engine="pyarrow")
    return path


def _toc_titles(toc: list | tuple) -> dict[str, str]:
    """Map document href -> title from an ebooklib table of contents (Links, Sections, nested tuples)."""
    titles: dict[str, str] = {}
    for entry in toc:
        if isinstance(entry, (list, tuple)):  # (Section, [children]) or a list of entries
            titles.update({k: v for k, v in _toc_titles(entry).items() if k not in titles})
            continue
        href = (getattr(entry, "href", "") or getattr(entry, "file_name", "") or "").split("#")[0]
        if href and getattr(entry, "title", "") and href not in titles:
            titles[href] = entry.title
    return titles


def _read_text(path_or_text: str | os.PathLike) -> tuple[str, str | None]:
    if isinstance(path_or_text, os.PathLike):
        path = Path(path_or_text)
        if not path.is_file():
            raise FileNotFoundError(f"book file {str(path)!r} does not exist")
        return path.read_text(encoding="utf-8"), path.stem
    if not isinstance(path_or_text, str):
        raise ValueError(f"path_or_text must be a str or path, got {type(path_or_text).__name__}")
    if "\n" not in path_or_text and len(path_or_text) < 4096 and os.path.isfile(path_or_text):
        return Path(path_or_text).read_text(encoding="utf-8"), Path(path_or_text).stem
    return path_or_text, None


def _frame(prefix: str, rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"{prefix}-{index:03d}" for _, _, index in rows],
            "text": [text for _, text, _ in rows],
            "title": [title for title, _, _ in rows],
            "chapter_index": pd.Series([index for _, _, index in rows], dtype="int64"),
        },
        columns=list(MANIFEST_COLUMNS),
    )


class _TextExtractor(HTMLParser):
    """Collects readable text; block elements become paragraph breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._paragraphs: list[str] = []
        self._current: list[str] = []
        self._skip_depth = 0
        self._heading: list[str] | None = None
        self.heading = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth += 1
        elif tag in _BLOCK_TAGS:
            self._flush()
        if tag in _HEADING_TAGS and not self.heading:
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self._flush()
        if tag in _HEADING_TAGS and self._heading is not None:
            self.heading = " ".join("".join(self._heading).split())
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        self._current.append(data)
        if self._heading is not None:
            self._heading.append(data)

    def _flush(self) -> None:
        paragraph = " ".join("".join(self._current).split())
        if paragraph:
            self._paragraphs.append(paragraph)
        self._current = []

    def text(self) -> str:
        self._flush()
        return "\n\n".join(self._paragraphs)
