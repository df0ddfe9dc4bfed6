"""`barkpipe say --stream` and the stream_speech join behind it."""

import re
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.speak import speak, stream_speech

runner = CliRunner()
FIRST_AUDIO = re.compile(r"first audio (\d+\.\d) s after launch \((\d+\.\d) s after the model loaded\)")
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
    result = runner.invoke(app, ["say", "A first paragraph.\n\nThe second.", "--stream", "--weights", str(tiny_suno),
                                 "--out", str(out), "--max-duration", "0.2", "--temperature", "0",
                                 "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert FIRST_AUDIO.search(result.stderr) and result.stderr.count(" ready ") == 2
    assert FIRST_AUDIO.search(result.stdout) and "all audio" in result.stdout  # the `wrote` line
    audio, sr = sf.read(out, dtype="float32")
    assert sr == SR and len(audio) > int(0.7 * SR)  # the paragraph pause at least


def test_say_stream_to_stdout_is_raw_pcm_only(tiny_suno):
    result = runner.invoke(app, ["say", "Hello there.", "--stream", "--out", "-", "--weights", str(tiny_suno),
                                 "--max-duration", "0.2", "--temperature", "0", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    pcm = np.frombuffer(result.stdout_bytes, dtype="<i2")
    assert len(result.stdout_bytes) % 2 == 0 and len(pcm) % 320 == 0 and len(pcm) > 0  # whole codec frames
    assert FIRST_AUDIO.search(result.stderr) and "stdout" in result.stderr


def test_say_stream_errors_are_one_line(tiny_suno, tmp_path):
    two = runner.invoke(app, ["say", "One.", "Two.", "--stream", "--weights", str(tiny_suno)])
    assert two.exit_code == 2 and "--stream speaks exactly one text" in two.stderr
    flac = runner.invoke(
        app, ["say", "One.", "--stream", "--out", str(tmp_path / "x.flac"), "--weights", str(tiny_suno)]
    )
    assert flac.exit_code == 2 and "--stream writes a .wav" in flac.stderr


def test_first_audio_counts_from_launch_as_a_listener_waits(tiny_suno):
    """The real CLI as a process: its first PCM byte on stdout comes no sooner than it says, counted from launch."""
    code = "from pipeline.cli import app; app(prog_name='barkpipe')"
    args = ["say", "A first paragraph.\n\nThe second.", "--stream", "--out", "-", "--weights", str(tiny_suno),
            "--max-duration", "0.2", "--temperature", "0", "--device", "cpu"]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.read(2)
    first_byte_s = time.perf_counter() - start
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr.decode()
    found = FIRST_AUDIO.search(stderr.decode())
    assert found, stderr.decode()
    since_launch, since_loaded = float(found[1]), float(found[2])
    assert since_loaded < since_launch <= first_byte_s + 0.1  # the imports and the model load count too
    assert since_launch - since_loaded > 0.5  # at least python's start-up, torch's import and the load
