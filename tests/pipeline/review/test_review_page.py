"""`barkpipe report`: the review page, checked in a real headless Chromium (console, players, pictures, screenshot)."""

import io
import json
import re
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.output.schema import TRANSIENT_COLUMNS, error_schema, row_fields
from pipeline.review.listing import Choice
from pipeline.review.page import build_report, write_report
from pipeline.review.survey import survey
from pipeline.review.waveform import WIDTH
from pipeline.storage import Store

SR = 24000
PAUSE_S = 0.25  # between the chunks of the fake rows' audio (segment.sentence_pause_s's default)
CHROMIUM_HINT = "chromium is not installed (apt-get install -y chromium; .ci/run installs it)"
ALL = Choice(only="all")  # ok rows too: these small runs show every row, as a book's reviewer would ask


def chunk(index, seconds, failed=(), transcript=None, text=None, wer=None, span=None):
    measures = {"duration_s": seconds, "rms_db": -20.0, "longest_silence_s": 0.1} | (
        {"wer": wer} if wer is not None else {}
    )
    return {
        "index": index,
        "chars": len(text or "x" * 40),
        "seed": 7,
        "attempts": 3 if failed else 1,
        "passed": not failed,
        "failed": list(failed),
        "duration_s": seconds,
        "dropped_text_tokens": 0,
        "paragraph_break_after": False,
        "measures": measures,
        "transcript": transcript,
        "text": text,
        **({"start_s": span[0], "end_s": span[1]} if span else {}),
    }


def metadata_fields(old=False):
    """The metadata schema as the pipeline writes it; `old`: chunks as written before chunks[].text/start_s/end_s."""
    fields = [(n, t) for n, t in row_fields() if n not in TRANSIENT_COLUMNS]
    if old:
        chunk_type = dict(fields)["chunks"].value_type
        older = pa.struct([f for f in chunk_type if f.name not in ("text", "start_s", "end_s")])
        fields = [(n, pa.list_(older) if n == "chunks" else t) for n, t in fields]
    fields.insert(1, ("audio_path", pa.string()))
    return fields + [("config_hash", pa.string()), ("title", pa.string()), ("chapter_index", pa.int64())]


def write_rows(root, part, rows, old=False, revision=0, config_hash="sha256:x"):
    """Audio files and one metadata part for (id, chunks, flagged); chunk audio with PAUSE_S between chunks."""
    records = []
    for n, (row_id, chunks, flagged) in enumerate(rows):
        pieces = []
        for k, c in enumerate(chunks):
            t = np.arange(int(c["duration_s"] * SR)) / SR
            pieces += [np.zeros(int(PAUSE_S * SR), np.float32)] if k else []
            pieces.append(
                (0.4 * np.sin(2 * np.pi * 3 * t) * np.sin(2 * np.pi * (200 + 100 * n) * t)).astype(np.float32)
            )
        audio = np.concatenate(pieces)
        name = f"r{revision}/{row_id}.flac" if revision else f"{row_id}.flac"
        (root / "audio" / name).parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        sf.write(buf, audio, SR, format="FLAC")
        (root / "audio" / name).write_bytes(buf.getvalue())
        records.append(
            {
                "id": row_id,
                "audio_path": f"audio/{name}",
                "audio_name": name,
                "duration_s": len(audio) / SR,
                "sample_rate": SR,
                "n_chunks": len(chunks),
                "flagged": flagged,
                "voice": "v2/en_speaker_6",
                "chunks": chunks,
                "text": " ".join(c["text"] or "" for c in chunks),
                "revision": revision,
                "title": f"Chapter {n + 1}",
                "chapter_index": n + 1,
                "config_hash": config_hash,
            }
        )
    table = pa.Table.from_pylist(records, schema=pa.schema(metadata_fields(old)))
    pq.write_table(table, root / "metadata" / f"part-{part}.parquet")


def spans(*seconds):
    """Exact (start_s, end_s) of chunks of these lengths joined with PAUSE_S between them."""
    out, t = [], 0.0
    for d in seconds:
        out.append((t, t + d))
        t += d + PAUSE_S
    return out


def fake_run(root, old=False) -> None:
    """Two finished rows (one flagged by its second chunk), one error row and summary.json."""
    for folder in ("audio", "metadata", "errors"):
        (root / folder).mkdir(parents=True)
    a, b = spans(1.0, 1.5), spans(2.0)
    write_rows(
        root,
        "a",
        [
            (
                "ch-001",
                [
                    chunk(0, 1.0, text="The crow sat on a branch.", span=a[0]),
                    chunk(
                        1,
                        1.5,
                        failed=["wer"],
                        wer=0.9,
                        text="She held a piece of cheese.",
                        transcript="the cow said a peace of keys",
                        span=a[1],
                    ),
                ],
                True,
            ),
            ("ch-002", [chunk(0, 2.0, text="The fox came by.", span=b[0])], False),
        ],
        old=old,
    )
    errors = pa.Table.from_pylist(
        [{"id": "ch-003", "stage": "voice", "error": "voice 'ghost' cannot be used"}], schema=error_schema()
    )
    pq.write_table(errors, root / "errors" / "part-b.parquet")
    (root / "summary.json").write_text(
        json.dumps(
            {
                "input_rows": 3,
                "ok": 2,
                "errors": 1,
                "accounted": True,
                "audio_hours": 0.001,
                "this_run": {"rows": 3, "flagged": 1},
            }
        )
    )


def chunk_rows(page: str, row_id: str) -> list[str]:
    """The <tr> of each chunk of one row's section, in page order."""
    section = page[page.index(f"<section class=row id='row-{row_id}'>") :]
    section = section[: section.index("</section>")]
    return re.findall(r"<tr(?: class=failrow)?><td>.*?</tr>", section)


def shadings(page: str, row_id: str) -> list[tuple[float, float]]:
    """(start, end) fractions of the row's waveform that are shaded as failed."""
    section = page[page.index(f"<section class=row id='row-{row_id}'>") :]
    svg = section[: section.index("</svg>")]
    rects = re.findall(r'<rect class="failed" x="([\d.]+)" y="0" width="([\d.]+)"', svg)
    return [(float(x) / WIDTH, (float(x) + float(w)) / WIDTH) for x, w in rects]


def chromium(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip(CHROMIUM_HINT)
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_page_orders_flagged_first_and_shows_gates_text_and_transcript(tmp_path):
    fake_run(tmp_path)
    page = build_report(Store.open(str(tmp_path)), ALL)
    assert page.index("ch-001") < page.index("Error rows") < page.index("ch-002")
    assert page.index("ch-003") < page.index("Other rows")
    assert page.count("data:audio/ogg;codecs=opus;base64,") == 2 and page.count("<svg") == 2
    assert "wer=0.9" in page
    rows = chunk_rows(page, "ch-001")
    assert [re.match(r"<tr(?: class=failrow)?><td>(\d+)<", r).group(1) for r in rows] == ["1", "0"]  # failed first
    assert rows[0].startswith("<tr class=failrow>") and not rows[1].startswith("<tr class=failrow>")
    assert "voice &#x27;ghost&#x27; cannot be used" in page


def test_each_chunk_row_shows_the_text_bark_was_given_beside_what_was_heard(tmp_path):
    fake_run(tmp_path)
    page = build_report(Store.open(str(tmp_path)), ALL)
    flagged, other = chunk_rows(page, "ch-001"), chunk_rows(page, "ch-002")
    assert "The crow sat on a branch." in flagged[1] and "The fox came by." in other[0]
    # The failed chunk: its text and the transcript side by side, differing words marked.
    said, heard = re.findall(r"<span class=(?:said|heard)>(.*?)</span></td>", flagged[0])
    assert said == "<del>She held</del> a <del>piece</del> of <del>cheese.</del>"
    assert heard == "<ins>the cow said</ins> a <ins>peace</ins> of <ins>keys</ins>"
    assert "<th>heard (speech check)</th>" in page and "not checked" in flagged[1]  # chunk 0 had no speech check
    assert "1.25–2.75 s" in flagged[0] and "0.00–1.00 s" in flagged[1]  # each chunk's place in the row's audio


def test_chunk_text_is_escaped(tmp_path):
    for folder in ("audio", "metadata"):
        (tmp_path / folder).mkdir()
    sly = 'Tom & <b>Jerry</b> said "hi" <script>alert(1)</script>'
    write_rows(
        tmp_path, "a", [("x", [chunk(0, 1.0, text=sly, failed=["wer"], transcript="tom and <i>jerry</i>")], True)]
    )
    row = chunk_rows(build_report(Store.open(str(tmp_path))), "x")[0]
    assert "<script>" not in row and "<b>" not in row and "<i>" not in row
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in row and "&amp;" in row and "&lt;i&gt;jerry&lt;/i&gt;" in row


def test_a_failed_chunk_is_shaded_within_its_time_span(tmp_path):
    fake_run(tmp_path)
    page = build_report(Store.open(str(tmp_path)), ALL)
    row_s = 1.0 + PAUSE_S + 1.5
    ((start, end),) = shadings(page, "ch-001")
    assert start == pytest.approx(1.25 / row_s, abs=0.5 / WIDTH) and end == pytest.approx(1.0, abs=0.5 / WIDTH)
    assert shadings(page, "ch-002") == []
    # The shading sits on the failed chunk's sound, not on the pause before it.
    audio, _ = sf.read(tmp_path / "audio" / "ch-001.flac", dtype="float32")
    pause = audio[int(1.0 * SR) + 10 : int(1.25 * SR) - 10]
    assert np.abs(pause).max() == 0 and int(start * len(audio)) >= int(1.0 * SR) + len(pause)


def test_an_output_written_before_chunk_text_still_renders(tmp_path):
    """Old metadata parts: chunks without text/start_s/end_s; the spans are estimated from durations and pauses."""
    fake_run(tmp_path, old=True)
    assert "text" not in {
        f.name for f in pq.read_schema(tmp_path / "metadata" / "part-a.parquet").field("chunks").type.value_type
    }
    page = build_report(Store.open(str(tmp_path)))
    rows = chunk_rows(page, "ch-001")
    assert len(rows) == 2 and all("text not recorded" in r for r in rows)
    assert "25 chars;" in rows[1] and "the cow said a peace of keys" in rows[0]  # the transcript is still shown
    assert "≈ 1.25–2.75 s" in rows[0]  # estimated: same as exact here, as these chunks were not trimmed
    ((start, end),) = shadings(page, "ch-001")
    assert start == pytest.approx(1.25 / 2.75, abs=0.5 / WIDTH) and end == pytest.approx(1.0, abs=0.5 / WIDTH)


def test_the_dataset_summary_counts_every_row_of_every_run(tmp_path):
    """Run 1 (written before chunks[].text) finished ch-001 flagged and ch-002, ch-003 failed; run 2 redid
    ch-001 (revision 1, now passing) and added ch-004. The page counts each row once, newest take."""
    fake_run(tmp_path, old=True)
    write_rows(
        tmp_path,
        "c",
        [
            (
                "ch-001",
                [
                    chunk(0, 1.0, text="The crow sat on a branch.", wer=0.0),
                    chunk(1, 1.5, text="She held a piece of cheese.", wer=0.1),
                ],
                False,
            ),
        ],
        revision=1,
        config_hash="sha256:y",
    )
    write_rows(tmp_path, "d", [("ch-004", [chunk(0, 3.0, text="The end.", wer=0.2)], False)], config_hash="sha256:y")
    (tmp_path / "summary.json").write_text(
        json.dumps({"input_rows": 4, "ok": 3, "errors": 1, "this_run": {"rows": 2, "ok": 2, "flagged": 0}})
    )
    page = build_report(Store.open(str(tmp_path)))
    dataset = page[page.index("<h2>Dataset</h2>") : page.index("<h2>Last run (summary.json)</h2>")]
    facts = dict(re.findall(r"<tr><th>([^<]+)</th><td>([^<]+)</td></tr>", dataset))
    assert facts["rows"] == "4" and facts["finished"] == "3 (3 ok, 0 flagged)"
    assert facts["error rows"] == "1 (voice: 1)" and facts["redone rows"] == "1 (1 older record(s) superseded)"
    audio_s = (1.0 + PAUSE_S + 1.5) + 2.0 + 3.0
    assert (
        facts["audio"] == f"{audio_s / 3600:.3f} h ({audio_s:.1f} s)" and facts["configs"] == "2 distinct config_hash"
    )
    # The speech check's spread over the kept chunks of the newest takes (run 1's wer=0.9 is superseded).
    wer = re.search(r"<tr><th>wer <span class=muted>\(high is bad\)</span></th>((?:<td>[^<]*</td>)+)</tr>", dataset)
    assert re.findall(r"<td>([^<]*)</td>", wer.group(1)) == ["3", "0.000", "0.020", "0.100", "0.180", "0.200"]
    assert "speaker_similarity" not in dataset  # not measured: not shown
    assert "Flagged rows (0)" in page and "this run: rows</th><td>2" in page
    # book and resume read the mixed output too
    from pipeline.book import read_chapters
    from pipeline.output.read import read_committed_latest

    store = Store.open(str(tmp_path))
    chapters = sorted(c.audio_path for c in read_chapters(store).chapters)
    assert chapters == ["audio/ch-002.flac", "audio/ch-004.flac", "audio/r1/ch-001.flac"]
    latest = read_committed_latest(store)
    assert sorted(latest.ok) == ["ch-001", "ch-002", "ch-004"] and latest.superseded == 1
    assert survey(store).stats.finished == 3


def test_audio_past_the_budget_is_linked_not_embedded(tmp_path):
    fake_run(tmp_path)
    page = build_report(Store.open(str(tmp_path)), ALL, max_embed_bytes=12_000, audio_href="")
    assert page.count("data:audio/ogg") == 1  # the flagged row got the budget
    assert "<a href='audio/ch-002.flac'>" in page


def test_page_loads_in_headless_chromium_without_console_errors(tmp_path):
    fake_run(tmp_path / "run")
    where = write_report(str(tmp_path / "run"), choice=ALL).where
    assert where.endswith("run/report.html")
    url = (tmp_path / "run" / "report.html").as_uri()
    shot = tmp_path / "report.png"
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    taken = chromium(*profile, f"--screenshot={shot}", "--window-size=1200,1400", url)
    assert shot.is_file() and shot.stat().st_size > 10_000, taken.stderr[-2000:]
    assert console_lines(taken.stderr) == [], console_lines(taken.stderr)
    dom = chromium(*profile, "--dump-dom", url).stdout
    assert len(re.findall(r"<audio\b", dom)) == 2 and len(re.findall(r"<svg\b", dom)) == 2
    assert "Flagged rows (1)" in dom and "Error rows (1)" in dom and "<h2>Dataset</h2>" in dom
    assert all(t in dom for t in ("The crow sat on a branch.", "The fox came by.", "<del>cheese.</del>"))
    assert len(re.findall(r'<rect class="failed"', dom)) == 1
    shutil.copy(shot, "/tmp/barkpipe-report-screenshot.png")  # for a person to look at


def test_the_console_check_sees_an_error(tmp_path):
    """The positive control: a page that logs an error is caught, so a clean page means something."""
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('broken page')</script></body></html>")
    lines = console_lines(chromium("--user-data-dir=" + str(tmp_path / "p"), "--dump-dom", bad.as_uri()).stderr)
    assert any("broken page" in line for line in lines)


def test_cli_writes_elsewhere_and_refuses_a_non_run(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    runner = CliRunner()
    nothing = runner.invoke(app, ["report", str(tmp_path / "empty")])
    assert nothing.exit_code == 2 and "holds no run" in nothing.output
    fake_run(tmp_path / "run")
    done = runner.invoke(
        app, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "pages" / "r.html"), "--max-embed-mb", "0"]
    )
    assert done.exit_code == 0, done.output
    page = (tmp_path / "pages" / "r.html").read_text()
    assert "data:audio" not in page and (tmp_path / "run").as_uri() + "/audio/ch-001.flac" in page


@pytest.mark.slow
def test_report_lands_beside_a_run_on_s3(tmp_path, moto_s3):
    fake_run(tmp_path / "run")
    bucket = moto_s3.make_bucket()
    fs = moto_s3.filesystem()
    fs.put(str(tmp_path / "run"), f"{bucket}/runs/v1", recursive=True)
    where = write_report(f"s3://{bucket}/runs/v1", storage_options=moto_s3.storage_options, choice=ALL).where
    assert where == f"{bucket}/runs/v1/report.html"
    page = fs.cat_file(where).decode()
    assert page.count("data:audio/ogg") == 2 and "Flagged rows (1)" in page


@pytest.mark.slow
def test_report_cli_prints_the_full_s3_url(tmp_path, moto_s3, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app

    fake_run(tmp_path / "run")
    bucket = moto_s3.make_bucket()
    moto_s3.filesystem().put(str(tmp_path / "run"), f"{bucket}/runs/v1", recursive=True)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_s3.endpoint_url)
    done = CliRunner().invoke(app, ["report", f"s3://{bucket}/runs/v1"])
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == f"wrote s3://{bucket}/runs/v1/report.html"
    assert moto_s3.filesystem().exists(f"{bucket}/runs/v1/report.html")
