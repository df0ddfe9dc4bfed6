"""`barkpipe say --stream` and the stream_speech join behind it."""

from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.longform import speak, stream_speech

runner = CliRunner()
SR = 24_000
# Three paragraphs = three chunks; the middle one ends a paragraph, so both pause lengths occur.
TEXT = "The first paragraph.\n\nThe second one. It has two sentences.\n\nThe last."


@dataclass
class FakeResult:
    audio: np.ndarray
    sample_rate: int = SR


class SineEngine:
    """Quiet edges (so trimming cuts something) around a loud tone whose length follows the seed."""

    def count_text_tokens(self, text):
        return len(text.split())

    def generate(self, requests, batch_size=None, progress=None):
        out = []
        for r in requests:
            n = 2400 + r.seed % 2400
            tone = 0.5 * np.sin(np.arange(n) * 2 * np.pi * 330 / SR)
            out.append(FakeResult(np.concatenate([np.zeros(1200), tone, np.zeros(900)]).astype(np.float32)))
        return out


@pytest.mark.parametrize("text", [TEXT, "Only one chunk."])
def test_stream_speech_pieces_concatenate_to_speak(text):
    engine = SineEngine()
    pieces = list(stream_speech(engine, text, seed=3))
    whole = speak(engine, text, seed=3)
    assert len(pieces) == len(whole.chunks)
    np.testing.assert_array_equal(np.concatenate(pieces), whole.audio)


def test_say_stream_writes_a_growing_wav_and_reports_first_audio(tiny_suno, tmp_path):
    out = tmp_path / "streamed.wav"
    result = runner.invoke(app, ["say", "A first paragraph.\n\nThe second.", "--stream", "--weights", str(tiny_suno), "--out", str(out),
                                 "--max-duration", "0.2", "--temperature", "0", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "first audio after" in result.stderr and result.stderr.count("ready at") == 2
    audio, sr = sf.read(out, dtype="float32")
    assert sr == SR and len(audio) > int(0.7 * SR)  # the paragraph pause at least


def test_say_stream_to_stdout_is_raw_pcm_only(tiny_suno):
    result = runner.invoke(app, ["say", "Hello there.", "--stream", "--out", "-", "--weights", str(tiny_suno),
                                 "--max-duration", "0.2", "--temperature", "0", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    pcm = np.frombuffer(result.stdout_bytes, dtype="<i2")
    assert len(result.stdout_bytes) % 2 == 0 and len(pcm) % 320 == 0 and len(pcm) > 0  # whole codec frames
    assert "first audio after" in result.stderr and "stdout" in result.stderr


def test_say_stream_errors_are_one_line(tiny_suno, tmp_path):
    two = runner.invoke(app, ["say", "One.", "Two.", "--stream", "--weights", str(tiny_suno)])
    assert two.exit_code == 2 and "--stream speaks exactly one text" in two.stderr
    flac = runner.invoke(app, ["say", "One.", "--stream", "--out", str(tmp_path / "x.flac"), "--weights", str(tiny_suno)])
    assert flac.exit_code == 2 and "--stream writes a .wav" in flac.stderr
