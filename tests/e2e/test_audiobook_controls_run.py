"""The audiobook controls through one real `run` (local Ray, tiny random weights): a lexicon, SSML rows
(an alias, an exact break, a hostile one) and a voice cloned from a recording, side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from typer.testing import CliRunner

from pipeline.config import validate_config
from pipeline.batch.run import run
from pipeline.cli import app

pytestmark = pytest.mark.slow
BREAK_S = 0.8
ROWS = [
    ("lexicon", "Hermione met Ron at noon.", "plain", None),
    ("ssml", f'<speak>Call <sub alias="Doctor Who">DW</sub> now.<break time="{int(BREAK_S * 1000)}ms"/>'
             "Then go home.</speak>", "ssml", None),  # fmt: skip
    ("hostile", '<!DOCTYPE s [<!ENTITY a "aaaa">]><speak>&a;&a;</speak>', "ssml", None),
    ("cloned", "A voice made from a recording.", "plain", "CLONED"),
]


def _recording(path: Path, seconds: float = 3.0, sr: int = 24_000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 150 * t) * (0.7 + 0.3 * np.sin(5 * t))).astype(np.float32), sr)
    return path


@pytest.fixture(scope="module")
def finished(ray_local, tmp_path_factory):
    from bark_model.random_weights import make_random_cloning_weights, make_random_weights

    tmp = tmp_path_factory.mktemp("controls")
    weights = make_random_weights(tmp / "weights", size="tiny", layout="suno")
    make_random_cloning_weights(weights, size="tiny")
    voices = tmp / "voices"
    voices.mkdir()
    cloned = voices / "narrator.npz"
    made = CliRunner().invoke(app, ["voice", "from-audio", str(_recording(tmp / "ref.wav")), "--out", str(cloned),
                                    "--weights", str(weights), "--device", "cpu"])  # fmt: skip
    assert made.exit_code == 0, made.output
    lexicon = tmp / "names.tsv"
    lexicon.write_text("# who is who\nHermione\tHer-my-oh-nee\n")
    rows = [{"id": i, "text": t, "text_format": f, "voice": str(cloned) if v else None} for i, t, f, v in ROWS]
    pq.write_table(pa.Table.from_pylist(rows), tmp / "m.parquet")
    cfg = validate_config({
        "input": {"path": str(tmp / "m.parquet")},
        "output": {"path": str(tmp / "out"), "format": "wav"},
        "model": {"weights": str(weights), "device": "cpu"},
        "generation": {"max_duration": 0.5, "lexicon": str(lexicon), "voice_dirs": [str(voices)]},
        "compute": {"actors": 1, "cpus_per_actor": 0.5, "batch_size": 4, "window_rows": 4},
    })  # fmt: skip
    summary = run(cfg, progress=False)
    out = tmp / "out"
    meta = {r["id"]: r for p in sorted((out / "metadata").glob("*.parquet")) for r in pq.read_table(p).to_pylist()}
    errors = {r["id"]: r for p in sorted((out / "errors").glob("*.parquet")) for r in pq.read_table(p).to_pylist()}
    return summary, out, meta, errors


def test_every_row_is_accounted_for_and_hostile_ssml_is_only_its_own_rows_error(finished):
    summary, _, meta, errors = finished
    assert summary["accounted"] and set(meta) == {"lexicon", "ssml", "cloned"} and set(errors) == {"hostile"}
    assert errors["hostile"]["stage"] == "validate" and "\n" not in errors["hostile"]["error"]


def test_respellings_and_aliases_are_in_the_chunk_texts(finished):
    _, _, meta, _ = finished
    lexicon_text = " ".join(c["text"] for c in meta["lexicon"]["chunks"])
    assert "Her-my-oh-nee" in lexicon_text and "Hermione" not in lexicon_text
    ssml_text = " ".join(c["text"] for c in meta["ssml"]["chunks"])
    assert "Doctor Who" in ssml_text and "DW" not in ssml_text and "<" not in ssml_text


def test_a_break_is_that_much_silence_in_the_written_audio(finished):
    _, out, meta, _ = finished
    row = meta["ssml"]
    audio, sr = sf.read(out / row["audio_path"])
    first = row["chunks"][0]
    assert first["pause_after_s"] == pytest.approx(BREAK_S)
    # The silence sits where the first chunk ends, as long as the break (the join's crossfade aside).
    gap = audio[int((first["end_s"] + 0.02) * sr) : int((first["end_s"] + BREAK_S - 0.02) * sr)]
    assert len(gap) > 0 and np.all(gap == 0)
    assert row["chunks"][1]["start_s"] - first["end_s"] == pytest.approx(BREAK_S, abs=0.02)


def test_the_cloned_voice_speaks_its_row(finished):
    _, _, meta, _ = finished
    assert meta["cloned"]["voice"].endswith("narrator.npz") and meta["cloned"]["duration_s"] > 0
