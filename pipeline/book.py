"""Audiobook files: a run's chapter rows become one .m4b (AAC in MP4) with a chapter marker per row.

PyAV (FFmpeg inside its wheel) encodes and muxes, and writes the chapters; mutagen adds the
cover and the iTunes audiobook tags afterwards. Chapters are decoded and encoded one at a
time, so a book of many hours never sits in memory whole.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from math import gcd

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from pipeline.extras import require
from pipeline.output.layout import METADATA
from pipeline.output.read import newest_rows
from pipeline.storage import Store, open_fs, retry

AAC_BITRATE = 64_000  # mono speech: 64 kb/s AAC-LC is transparent enough and ~29 MB per hour
FRAME_SAMPLES = 4096  # samples handed to the encoder per frame (it regroups them into 1024s)
# Carried manifest columns that name and order chapters, in order of preference.
TITLE_COLUMNS = ("title", "chapter", "input_title")
ORDER_COLUMNS = ("chapter_index", "index", "input_index")
BOOK_TITLE_COLUMNS = ("book_title",)
AUTHOR_COLUMNS = ("author", "book_author")
COVER_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}
MEDIA_KIND_AUDIOBOOK = 2  # iTunes `stik` value that files a track under Audiobooks


@dataclass(frozen=True)
class Chapter:
    id: str
    title: str
    audio_path: str  # relative to the run's output root
    flagged: bool = False


@dataclass(frozen=True)
class BookInfo:
    chapters: list[Chapter]
    title: str | None  # from a book_title column, if the manifest carried one
    author: str | None


def read_chapters(store: Store) -> BookInfo:
    """The run's finished rows as chapters, in manifest order (see ORDER_COLUMNS; else natural id order)."""
    rows = list(newest_rows(store, METADATA))  # a redone chapter once, in its newest revision
    if not rows:
        raise FileNotFoundError(
            f"no finished rows under {store.root}/{METADATA}/; run `barkpipe run` first "
            "(or point OUTPUT at a run's output.path)"
        )
    columns = {name for row in rows for name in row}  # runs of different manifests carry different columns
    order = next((c for c in ORDER_COLUMNS if c in columns), None)

    def key(row):
        index = row.get(order) if order else None
        return (index is None, index if index is not None else 0, _natural(row["id"]))

    rows.sort(key=key)
    chapters = [
        Chapter(r["id"], _first(r, TITLE_COLUMNS) or r["id"], r["audio_path"], bool(r.get("flagged"))) for r in rows
    ]
    return BookInfo(chapters, _first_of_rows(rows, BOOK_TITLE_COLUMNS), _first_of_rows(rows, AUTHOR_COLUMNS))


def write_m4b(
    store: Store,
    out_path: str,
    *,
    title: str | None = None,
    author: str | None = None,
    cover: str | None = None,
    bitrate: int = AAC_BITRATE,
) -> dict:
    """Package the run under `store` into `out_path` (a local file); returns what was written."""
    info = read_chapters(store)
    title = title or info.title or os.path.basename(store.root.rstrip("/")) or "Audiobook"
    author = author or info.author
    cover_data = _read_cover(cover) if cover else None
    marks = _encode(store, info.chapters, out_path, title, author, bitrate)
    _tag(out_path, title, author, cover_data)
    return {
        "path": out_path,
        "chapters": marks,
        "title": title,
        "author": author,
        "flagged": [c.id for c in info.chapters if c.flagged],
    }


def read_m4b_chapters(path: str) -> list[dict]:
    """[{title, start_s, end_s}] of an .m4b's chapters as FFmpeg reads them back."""
    import av

    with av.open(path) as container:
        return [
            {
                "title": c["metadata"].get("title"),
                "start_s": float(c["start"] * c["time_base"]),
                "end_s": float(c["end"] * c["time_base"]),
            }
            for c in container.chapters()
        ]


def _encode(
    store: Store, chapters: list[Chapter], out_path: str, title: str, author: str | None, bitrate: int
) -> list[dict]:
    import av

    marks: list[dict] = []
    pts, sr, stream = 0, 0, None  # sr: the first chapter's rate, set with the stream; later ones resample to it
    with av.open(out_path, "w", format="ipod") as out:  # ipod: the MP4 flavour of .m4a/.m4b
        out.metadata.update(
            {"title": title, "album": title, "genre": "Audiobook"}
            | ({"artist": author, "album_artist": author} if author else {})
        )
        for chapter in chapters:
            audio, chapter_sr = _decode(store, chapter)
            if stream is None:
                sr = chapter_sr
                stream = out.add_stream("aac", rate=sr, layout="mono")
                stream.bit_rate = bitrate
            elif chapter_sr != sr:
                audio = _resample(audio, chapter_sr, sr)
            start = pts
            for s in range(0, len(audio), FRAME_SAMPLES):
                frame = av.AudioFrame.from_ndarray(audio[None, s : s + FRAME_SAMPLES], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = sr, pts
                pts += frame.samples
                out.mux(stream.encode(frame))
            marks.append({"title": chapter.title, "start_s": start / sr, "end_s": pts / sr})
        if stream is None:
            raise ValueError("the run has no finished rows to package")
        out.mux(stream.encode(None))
        out.set_chapters(
            [
                {
                    "id": i + 1,
                    "start": round(m["start_s"] * sr),
                    "end": round(m["end_s"] * sr),
                    "time_base": Fraction(1, sr),
                    "metadata": {"title": m["title"]},
                }
                for i, m in enumerate(marks)
            ]
        )
    return marks


def _decode(store: Store, chapter: Chapter) -> tuple[np.ndarray, int]:
    try:
        data = store.read(chapter.audio_path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"row {chapter.id!r}: its audio {chapter.audio_path!r} is missing under {store.root}; rerun that row"
        ) from None
    audio, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.mean(axis=1, dtype=np.float32)), sr


def _resample(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    g = gcd(sr, target)
    return resample_poly(audio, target // g, sr // g).astype(np.float32)


def _read_cover(path: str) -> tuple[bytes, str]:
    kind = COVER_FORMATS.get(os.path.splitext(path)[1].lower())
    if kind is None:
        raise ValueError(f"--cover {path!r}: use a .jpg, .jpeg or .png image")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--cover {path!r} does not exist")
    with open(path, "rb") as f:
        data = f.read()
    magic = {"jpeg": b"\xff\xd8", "png": b"\x89PNG"}[kind]
    if not data.startswith(magic):
        raise ValueError(f"--cover {path!r} is not a {kind.upper()} image")
    return data, kind


def _tag(path: str, title: str, author: str | None, cover: tuple[bytes, str] | None) -> None:
    """iTunes atoms players read for books: name, album, artist, media kind, cover."""
    from mutagen.mp4 import MP4, MP4Cover

    m4b = MP4(path)
    m4b["\xa9nam"], m4b["\xa9alb"], m4b["stik"] = [title], [title], [MEDIA_KIND_AUDIOBOOK]
    if author:
        m4b["\xa9ART"], m4b["aART"] = [author], [author]
    if cover:
        data, kind = cover
        fmt = MP4Cover.FORMAT_JPEG if kind == "jpeg" else MP4Cover.FORMAT_PNG
        m4b["covr"] = [MP4Cover(data, imageformat=fmt)]
    m4b.save()


def package(output: str, out: str, storage_options: dict | None = None, **tags) -> dict:
    """`barkpipe book`: OUTPUT (local or URL) -> `out` (local path or URL; URLs get a local temp file first)."""
    require("barkpipe book")  # before any reading: without PyAV the user learns the install command, not a traceback
    store = Store.open(output, storage_options)
    if "://" not in out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        return write_m4b(store, out, **tags)
    fs, remote = open_fs(out, storage_options)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "book.m4b")
        result = write_m4b(store, local, **tags)
        retry(fs.put_file, local, remote, what=out)
    return result | {"path": out}


def _natural(text: str) -> list:
    """Sort key that puts book-2 before book-10 (ints and strings never compared with each other)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", str(text))]


def _first(row: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = row.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _first_of_rows(rows: list[dict], names: tuple[str, ...]) -> str | None:
    return next((v for v in (_first(r, names) for r in rows) if v), None)
