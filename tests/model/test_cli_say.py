"""`barkpipe say` and `barkpipe weights` through the real CLI entry point."""

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from bark_model import VoicePrompt
from pipeline.cli import app

runner = CliRunner()


def test_say_one_text_writes_a_wav_and_codes(tiny_suno, tmp_path):
    out, codes = tmp_path / "hello.wav", tmp_path / "hello.npz"
    result = runner.invoke(app, ["say", "Hello [laughs] there.", "--weights", str(tiny_suno), "--out", str(out),
                                 "--max-duration", "0.5", "--temperature", "0", "--save-codes", str(codes),
                                 "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    audio, sr = sf.read(out)
    assert sr == 24_000 and len(audio) > 0
    voice = VoicePrompt.from_npz(codes)
    assert len(audio) == 320 * voice.fine.shape[1]
    assert "random test weights" in result.output


def test_say_several_texts_write_a_folder(tiny_suno, tmp_path):
    texts = tmp_path / "lines.txt"
    texts.write_text("First line.\n\nSecond line.\n")
    result = runner.invoke(app, ["say", "Zero.", "--text-file", str(texts), "--weights", str(tiny_suno),
                                 "--out", str(tmp_path / "many"), "--max-duration", "0.3", "--batch-size", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["000.wav", "001.wav", "002.wav"]


def test_say_greedy_is_reproducible(tiny_suno, tmp_path):
    args = ["say", "Same words.", "--weights", str(tiny_suno), "--max-duration", "0.4", "--temperature", "0"]
    for name in ("a.wav", "b.wav"):
        assert runner.invoke(app, args + ["--out", str(tmp_path / name)]).exit_code == 0
    np.testing.assert_array_equal(sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0])


def test_say_errors_are_one_clear_line(tiny_suno, tmp_path):
    missing = runner.invoke(app, ["say", "Hi.", "--weights", str(tmp_path / "none"), "--out", str(tmp_path / "x.wav")])
    assert missing.exit_code == 2 and "barkpipe weights download" in missing.output
    voice = runner.invoke(app, ["say", "Hi.", "--weights", str(tiny_suno), "--voice", "v2/zz_speaker_1",
                                "--out", str(tmp_path / "x.wav")])  # fmt: skip
    assert voice.exit_code == 2 and "unknown voice 'v2/zz_speaker_1'" in voice.output
    empty = runner.invoke(app, ["say", "--weights", str(tiny_suno), "--out", str(tmp_path / "x.wav")])
    assert empty.exit_code == 2 and "nothing to say" in empty.output
    assert "Traceback" not in missing.output + voice.output + empty.output


def test_make_random_and_offline_download(tmp_path, monkeypatch):
    made = runner.invoke(app, ["weights", "make-random", str(tmp_path / "w"), "--size", "tiny", "--layout", "hf"])
    assert made.exit_code == 0 and (tmp_path / "w" / "model.safetensors").is_file()
    bad = runner.invoke(app, ["weights", "make-random", str(tmp_path / "w2"), "--size", "huge"])
    assert bad.exit_code == 2 and "size must be one of" in bad.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = runner.invoke(app, ["weights", "download", str(tmp_path / "dl"), "--model", "small"])
    assert offline.exit_code == 2 and "could not download Bark small" in offline.output
