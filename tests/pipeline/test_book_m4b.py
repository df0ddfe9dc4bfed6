"""`barkpipe book`: a run's chapter rows -> one .m4b with a chapter per row, read back with FFmpeg and mutagen."""

import io

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

pytest.importorskip("av", reason="PyAV is not installed (pip install 'barkpipe[audiobook]')")
pytest.importorskip("mutagen", reason="mutagen is not installed (pip install 'barkpipe[audiobook]')")

from pipeline.book import package, read_m4b_chapters
from pipeline.output.schema import TRANSIENT_COLUMNS, WRITER_COLUMNS, row_fields

SR = 24000
# (id, title, chapter_index, seconds): written out of order, over two metadata parts.
CHAPTERS = [
    ("tale-002", "Chapter II. The Fox", 2, 1.5),
    ("tale-000", "front matter", 0, 0.5),
    ("tale-001", "Chapter I. The Crow", 1, 2.0),
]
# A PNG of 1x1 pixel, enough for a cover.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def metadata_table(rows: list[dict]):
    """Metadata rows as the pipeline writes them: row_fields minus the transient ones, plus writer and carried
    columns."""
    fields = [(n, t) for n, t in row_fields() if n not in TRANSIENT_COLUMNS]
    fields.insert(1, ("audio_path", pa.string()))
    fields += [("config_hash", pa.string()), ("title", pa.string()), ("chapter_index", pa.int64())]
    assert {n for n, _ in fields} >= set(WRITER_COLUMNS)
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def fake_run(root, chapters=CHAPTERS, **extra) -> None:
    (root / "audio").mkdir(parents=True)
    (root / "metadata").mkdir()
    rows = []
    for n, (row_id, title, index, seconds) in enumerate(chapters):
        t = np.arange(int(seconds * SR)) / SR
        audio = (0.3 * np.sin(2 * np.pi * (220 + 110 * n) * t)).astype(np.float32)
        buf = io.BytesIO()
        sf.write(buf, audio, SR, format="FLAC", subtype="PCM_16")
        (root / "audio" / f"{row_id}.flac").write_bytes(buf.getvalue())
        rows.append(
            {
                "id": row_id,
                "audio_path": f"audio/{row_id}.flac",
                "audio_name": f"{row_id}.flac",
                "duration_s": seconds,
                "sample_rate": SR,
                "n_chunks": 1,
                "flagged": n == 0,
                "title": title,
                "chapter_index": index,
                "config_hash": "sha256:x",
                **extra,
            }
        )
    import pyarrow.parquet as pq

    pq.write_table(metadata_table(rows[:1]), root / "metadata" / "part-aaa.parquet")
    pq.write_table(metadata_table(rows[1:]), root / "metadata" / "part-bbb.parquet")


def test_chapters_in_manifest_order_with_titles_starts_and_tags(tmp_path):
    from mutagen.mp4 import MP4

    fake_run(tmp_path / "run")
    cover = tmp_path / "cover.png"
    cover.write_bytes(PNG)
    out = tmp_path / "book" / "fables.m4b"
    result = package(str(tmp_path / "run"), str(out), title="Fables", author="Aesop", cover=str(cover))
    assert result["flagged"] == ["tale-002"]

    chapters = read_m4b_chapters(str(out))
    assert [c["title"] for c in chapters] == ["front matter", "Chapter I. The Crow", "Chapter II. The Fox"]
    assert [c["start_s"] for c in chapters] == pytest.approx([0.0, 0.5, 2.5], abs=0.01)
    assert chapters[-1]["end_s"] == pytest.approx(4.0, abs=0.01)

    tags = MP4(str(out))
    assert tags.info.length == pytest.approx(4.0, abs=0.1)  # AAC priming adds a few ms
    assert tags["\xa9nam"] == ["Fables"] and tags["\xa9ART"] == ["Aesop"] and tags["stik"] == [2]
    assert bytes(tags["covr"][0]) == PNG
    assert [(round(c.start, 2), c.title) for c in tags.chapters] == [
        (0.0, "front matter"),
        (0.5, "Chapter I. The Crow"),
        (2.5, "Chapter II. The Fox"),
    ]


def test_decoded_audio_follows_the_chapters(tmp_path):
    import av

    fake_run(tmp_path / "run")
    out = tmp_path / "b.m4b"
    package(str(tmp_path / "run"), str(out))
    with av.open(str(out)) as c:
        audio = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
        sr = c.streams.audio[0].rate
    # chapter I (0.5-2.5 s) is the 220+110*2 = 440 Hz tone: its spectrum peaks there
    middle = audio[int(1.0 * sr) : int(2.0 * sr)]
    peak = np.argmax(np.abs(np.fft.rfft(middle))) * sr / len(middle)
    assert peak == pytest.approx(440, abs=5)


def test_without_an_order_column_ids_sort_naturally_and_ids_title_untitled_rows(tmp_path):
    import pyarrow.parquet as pq

    fake_run(tmp_path / "run", [("b-10", "", None, 0.3), ("b-2", "Two", None, 0.3)])
    out = tmp_path / "b.m4b"
    package(str(tmp_path / "run"), str(out))
    assert [c["title"] for c in read_m4b_chapters(str(out))] == ["Two", "b-10"]
    assert pq.read_table(tmp_path / "run" / "metadata" / "part-bbb.parquet")["chapter_index"].null_count == 1


def test_user_mistakes_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    empty = runner.invoke(app, ["book", str(tmp_path), "--out", str(tmp_path / "x.m4b")])
    assert empty.exit_code == 2 and "no finished rows under" in empty.output and "Traceback" not in empty.output
    fake_run(tmp_path / "run")
    bad_cover = runner.invoke(
        app, ["book", str(tmp_path / "run"), "--out", str(tmp_path / "x.m4b"), "--cover", str(tmp_path / "cover.gif")]
    )
    assert bad_cover.exit_code == 2 and "--cover" in bad_cover.output and ".png" in bad_cover.output
    (tmp_path / "run" / "audio" / "tale-001.flac").unlink()
    missing = runner.invoke(app, ["book", str(tmp_path / "run"), "--out", str(tmp_path / "x.m4b")])
    assert missing.exit_code == 2 and "row 'tale-001': its audio 'audio/tale-001.flac' is missing" in missing.output
    ok = tmp_path / "run2"
    fake_run(ok)
    done = runner.invoke(app, ["book", str(ok), "--out", str(tmp_path / "ok.m4b"), "--title", "T"])
    assert done.exit_code == 0, done.output
    assert "3 chapter(s)" in done.output and "1 chapter(s) have flagged chunks" in done.output


@pytest.mark.slow
def test_a_run_on_s3_becomes_a_book_on_s3(tmp_path, moto_s3):
    fake_run(tmp_path / "run")
    bucket = moto_s3.make_bucket()
    fs = moto_s3.filesystem()
    fs.put(str(tmp_path / "run"), f"{bucket}/runs/v1", recursive=True)
    result = package(
        f"s3://{bucket}/runs/v1",
        f"s3://{bucket}/books/fables.m4b",
        storage_options=moto_s3.storage_options,
        title="Fables",
    )
    assert result["path"] == f"s3://{bucket}/books/fables.m4b"
    local = tmp_path / "back.m4b"
    fs.get(f"{bucket}/books/fables.m4b", str(local))
    assert [c["title"] for c in read_m4b_chapters(str(local))] == [
        "front matter",
        "Chapter I. The Crow",
        "Chapter II. The Fox",
    ]
