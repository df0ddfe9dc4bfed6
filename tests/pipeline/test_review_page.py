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

from pipeline.batch.schema import TRANSIENT_COLUMNS, error_schema, row_fields
from pipeline.review.page import build_report, write_report
from pipeline.storage import Store

SR = 24000
CHROMIUM_HINT = "chromium is not installed (apt-get install -y chromium; .ci/run installs it)"


def chunk(index, seconds, failed=(), transcript=None, text=None, wer=None):
    measures = {"duration_s": seconds, "rms_db": -20.0, "longest_silence_s": 0.1} | ({"wer": wer} if wer is not None else {})
    return {"index": index, "chars": 40, "seed": 7, "attempts": 3 if failed else 1, "passed": not failed,
            "failed": list(failed), "duration_s": seconds, "dropped_text_tokens": 0, "paragraph_break_after": False,
            "measures": measures, **({"transcript": transcript} if transcript else {}), **({"text": text} if text else {})}


def fake_run(root) -> None:
    """Two finished rows (one flagged by its second chunk), one error row and summary.json."""
    (root / "audio").mkdir(parents=True)
    (root / "metadata").mkdir()
    (root / "errors").mkdir()
    chunk_fields = list(row_fields())
    chunk_type = dict(chunk_fields)["chunks"].value_type
    # the page also shows a chunk's transcript and text where the metadata has them
    have = {f.name for f in chunk_type}
    extra = [pa.field(n, pa.string()) for n in ("transcript", "text") if n not in have]
    extended = pa.struct(list(chunk_type) + extra)
    fields = [(n, pa.list_(extended) if n == "chunks" else t) for n, t in chunk_fields if n not in TRANSIENT_COLUMNS]
    fields.insert(1, ("audio_path", pa.string()))
    fields += [("config_hash", pa.string()), ("title", pa.string()), ("chapter_index", pa.int64())]
    rows = []
    for n, (row_id, chunks) in enumerate([
        ("ch-001", [chunk(0, 1.0, text="The crow sat on a branch."),
                    chunk(1, 1.5, failed=["wer"], wer=0.9, text="She held a piece of cheese.",
                          transcript="the cow said a peace of keys")]),
        ("ch-002", [chunk(0, 2.0, text="The fox came by.")]),
    ]):
        seconds = sum(c["duration_s"] for c in chunks)
        t = np.arange(int(seconds * SR)) / SR
        audio = (0.4 * np.sin(2 * np.pi * 3 * t) * np.sin(2 * np.pi * (200 + 100 * n) * t)).astype(np.float32)
        buf = io.BytesIO()
        sf.write(buf, audio, SR, format="FLAC")
        (root / "audio" / f"{row_id}.flac").write_bytes(buf.getvalue())
        rows.append({"id": row_id, "audio_path": f"audio/{row_id}.flac", "audio_name": f"{row_id}.flac",
                     "duration_s": seconds, "sample_rate": SR, "n_chunks": len(chunks), "flagged": n == 0,
                     "voice": "v2/en_speaker_6", "chunks": chunks, "text": " ".join(c["text"] for c in chunks),
                     "title": f"Chapter {n + 1}", "chapter_index": n + 1, "config_hash": "sha256:x"})
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(fields)), root / "metadata" / "part-a.parquet")
    errors = pa.Table.from_pylist([{"id": "ch-003", "stage": "voice", "error": "voice 'ghost' cannot be used"}],
                                  schema=error_schema())
    pq.write_table(errors, root / "errors" / "part-b.parquet")
    (root / "summary.json").write_text(json.dumps({"input_rows": 3, "ok": 2, "errors": 1, "accounted": True,
                                                   "audio_hours": 0.001, "this_run": {"rows": 3, "flagged": 1}}))


def chromium(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip(CHROMIUM_HINT)
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--enable-logging=stderr", "--v=0", *args], capture_output=True, text=True, timeout=120)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_page_orders_flagged_first_and_shows_gates_text_and_transcript(tmp_path):
    fake_run(tmp_path)
    page = build_report(Store.open(str(tmp_path)))
    assert page.index("ch-001") < page.index("Error rows") < page.index("ch-002")
    assert page.index("ch-003") < page.index("Other rows")
    assert page.count("data:audio/ogg;codecs=opus;base64,") == 2 and page.count("<svg") == 2
    assert "heard: the cow said a peace of keys" in page and "wer=0.9" in page
    first = page[page.index("ch-001"):page.index("Error rows")]
    assert first.index("She held a piece of cheese.") < first.index("The crow sat on a branch.")  # failed chunk first
    assert "voice &#x27;ghost&#x27; cannot be used" in page


def test_audio_past_the_budget_is_linked_not_embedded(tmp_path):
    fake_run(tmp_path)
    page = build_report(Store.open(str(tmp_path)), max_embed_bytes=12_000, audio_href="")
    assert page.count("data:audio/ogg") == 1  # the flagged row got the budget
    assert "<a href='audio/ch-002.flac'>" in page


def test_page_loads_in_headless_chromium_without_console_errors(tmp_path):
    fake_run(tmp_path / "run")
    where = write_report(str(tmp_path / "run"))
    assert where.endswith("run/report.html")
    url = (tmp_path / "run" / "report.html").as_uri()
    shot = tmp_path / "report.png"
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    taken = chromium(*profile, f"--screenshot={shot}", "--window-size=1200,1400", url)
    assert shot.is_file() and shot.stat().st_size > 10_000, taken.stderr[-2000:]
    assert console_lines(taken.stderr) == [], console_lines(taken.stderr)
    dom = chromium(*profile, "--dump-dom", url).stdout
    assert len(re.findall(r"<audio\b", dom)) == 2 and len(re.findall(r"<svg\b", dom)) == 2
    assert "Flagged rows (1)" in dom and "Error rows (1)" in dom
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
    done = runner.invoke(app, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "pages" / "r.html"),
                               "--max-embed-mb", "0"])
    assert done.exit_code == 0, done.output
    page = (tmp_path / "pages" / "r.html").read_text()
    assert "data:audio" not in page and (tmp_path / "run").as_uri() + "/audio/ch-001.flac" in page


@pytest.mark.slow
def test_report_lands_beside_a_run_on_s3(tmp_path, moto_s3):
    fake_run(tmp_path / "run")
    bucket = moto_s3.make_bucket()
    fs = moto_s3.filesystem()
    fs.put(str(tmp_path / "run"), f"{bucket}/runs/v1", recursive=True)
    where = write_report(f"s3://{bucket}/runs/v1", storage_options=moto_s3.storage_options)
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
