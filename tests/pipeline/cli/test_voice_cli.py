"""`barkpipe voice from-audio` end to end on tiny random weights: the prompt it writes is a voice everywhere."""

import re

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from pipeline.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("clone_weights")
    result = runner.invoke(app, ["weights", "make-random", str(root), "--size", "tiny", "--with-cloning"])
    assert result.exit_code == 0, result.output
    assert (root / "hubert" / "model.safetensors").is_file() and (root / "quantizer.pth").is_file()
    return root


def _recording(path, seconds: float, sr: int = 44_100, lead_s: float = 0.5):
    t = np.arange(int(seconds * sr)) / sr
    voiced = 0.3 * (np.sin(2 * np.pi * 150 * t) + 0.4 * np.sin(2 * np.pi * 450 * t)) * (0.7 + 0.3 * np.sin(5 * t))
    audio = np.concatenate([np.zeros(int(lead_s * sr)), voiced, np.zeros(int(lead_s * sr))])
    sf.write(path, np.stack([audio, 0.8 * audio], axis=1).astype(np.float32), sr)
    return path


@pytest.mark.slow
def test_from_audio_writes_a_voice_that_say_and_manifests_accept(weights, tmp_path):
    from pipeline.manifest.voices import check_voice_file

    voice = tmp_path / "me.npz"
    result = runner.invoke(app, ["voice", "from-audio", str(_recording(tmp_path / "ref.wav", 3.0)),
                                 "--out", str(voice), "--weights", str(weights), "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"--voice {voice}" in result.output
    with np.load(voice) as npz:
        assert sorted(npz.files) == ["coarse_prompt", "fine_prompt", "semantic_prompt"]
        assert abs(len(npz["semantic_prompt"]) - 150) <= 6  # ~3 s at 50 tokens/s, silence trimmed
    check_voice_file(voice)  # a manifest's voice column
    out = tmp_path / "said.wav"
    said = runner.invoke(app, ["say", "Hello there.", "--voice", str(voice), "--weights", str(weights),
                               "--out", str(out), "--max-duration", "0.3", "--device", "cpu"])  # fmt: skip
    assert said.exit_code == 0, said.output
    assert len(sf.read(out)[0]) > 0


@pytest.mark.parametrize(
    "case, message",
    [
        ("short", r"1\.\d\d s long .*at least 2 s"),
        ("unreadable", "cannot read .* as audio"),
        ("missing", "reference audio not found"),
        ("no_cloning", "voice cloning weights missing: .*hubert/config.json"),
        ("not_npz", "ending in .npz"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(case, message, weights, tmp_path):
    ref = _recording(tmp_path / "ref.wav", 1.0 if case == "short" else 3.0)
    args = {"weights": str(weights), "out": str(tmp_path / "v.npz")}
    if case == "unreadable":
        ref.write_bytes(b"RIFF but not really a wave file")
    elif case == "missing":
        ref = tmp_path / "nothing.wav"
    elif case == "no_cloning":
        args["weights"] = str(tmp_path)
    elif case == "not_npz":
        args["out"] = str(tmp_path / "v.wav")
    result = runner.invoke(app, ["voice", "from-audio", str(ref), "--out", args["out"], "--weights", args["weights"],
                                 "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "v.npz").exists()
