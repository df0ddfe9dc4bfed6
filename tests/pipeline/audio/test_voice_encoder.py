"""Our Resemblyzer voice encoder against the resemblyzer package itself: same trimming, mel frames and embeddings."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from support.speech_audio import espeak

from pipeline.audio import voice_encoder as ve
from pipeline.audio.speech import to_asr_rate
from pipeline.extras import missing

ORACLE_REASON = "resemblyzer (test-only parity oracle) is not installed: make setup-test installs it with --no-deps"
SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "convert_voice_encoder.py"


@pytest.fixture(scope="module")
def ours():
    if missing("quality.speaker") is not None:
        pytest.skip(missing("quality.speaker"))
    return ve.VoiceEncoder("cpu")


@pytest.fixture(scope="module")
def oracle():
    resemblyzer = pytest.importorskip("resemblyzer", reason=ORACLE_REASON)
    return resemblyzer, resemblyzer.VoiceEncoder("cpu", verbose=False)


def speech(text: str, voice: str) -> np.ndarray:
    return to_asr_rate(*espeak(text, voice))


def clip(name: str) -> np.ndarray:
    """16 kHz test audio: espeak-ng voices (one quiet, one loud, one with a long pause) and noise."""
    if name == "noise":
        return (0.1 * np.random.default_rng(0).standard_normal(3 * ve.SAMPLE_RATE)).astype(np.float32)
    if name == "pause":
        first, second = speech("One sentence first.", "en-us"), speech("Then another one.", "en-us")
        return np.concatenate([first, np.zeros(2 * ve.SAMPLE_RATE, np.float32), second])
    text, voice, gain = {
        "en-us": ("The weather is nice today and we are going to the park.", "en-us", 1.0),
        "quiet-f3": ("Please call me tomorrow morning at home, I will be waiting.", "en+f3", 0.05),
        "loud-de": ("Morgen fahren wir mit dem Zug nach Berlin.", "de", 3.0),
    }[name]
    return np.clip(speech(text, voice) * gain, -1, 1).astype(np.float32)


CLIPS = ["en-us", "quiet-f3", "loud-de", "pause", "noise"]


@pytest.mark.parametrize("name", CLIPS)
def test_preprocessing_mels_and_embedding_match_resemblyzer(name, ours, oracle):
    resemblyzer, reference = oracle
    wav = clip(name)
    trimmed = ve.preprocess_wav(wav)
    np.testing.assert_array_equal(trimmed, resemblyzer.preprocess_wav(wav))
    mel = ve.mel_spectrogram(trimmed, ours.filters)
    expected = resemblyzer.wav_to_mel_spectrogram(trimmed)
    assert mel.shape == expected.shape == (1 + len(trimmed) // ve.HOP, ve.N_MELS)
    np.testing.assert_allclose(mel, expected, rtol=1e-5, atol=1e-7 * expected.max())
    embedding, expected_embedding = ours.embed_utterance(trimmed), reference.embed_utterance(trimmed)
    assert embedding.dtype == np.float32 and embedding.shape == (ve.EMBEDDING,)
    assert float(embedding @ expected_embedding) > 0.9999


def test_long_pause_is_cut_to_the_allowed_silence(ours):
    wav = clip("pause")
    trimmed = ve.preprocess_wav(wav)
    # 2 s of silence shrinks to the dilation's margins (a few hundred ms); the voice stays whole.
    assert len(trimmed) < len(wav) - 1.5 * ve.SAMPLE_RATE and len(trimmed) % ve.VAD_WINDOW == 0
    louder = ve.normalize_volume(wav)
    assert np.sum(trimmed.astype(np.float64) ** 2) > 0.99 * np.sum(louder.astype(np.float64) ** 2)


@pytest.mark.parametrize("n_samples", [0, 1, 159, 16_000, 25_599, 25_600, 30_000, 34_000, 37_000, 160_001])
def test_partials_are_resemblyzers(n_samples, oracle):
    _, reference = oracle
    _, mel_slices = reference.compute_partial_slices(n_samples, rate=1.3, min_coverage=0.75)
    assert ve.partial_starts(n_samples) == [s.start for s in mel_slices]


def test_asset_holds_exactly_the_networks_tensors_in_fp32():
    state = load_file(str(ve.WEIGHTS))
    expected = {name: tuple(t.shape) for name, t in ve.VoiceEncoderNet().state_dict().items()}
    assert {name: tuple(t.shape) for name, t in state.items()} == expected
    assert {t.dtype for t in state.values()} == {torch.float32}
    net = ve.load_voice_encoder_net()
    torch.testing.assert_close(net.linear.weight, state["linear.weight"], rtol=0, atol=0)


@pytest.mark.parametrize("change", ["drop", "extra", "shape", "dtype"])
def test_weights_that_do_not_fit_fail_naming_the_key(change, tmp_path):
    state = load_file(str(ve.WEIGHTS))
    if change == "drop":
        del state["lstm.weight_hh_l2"]
    elif change == "extra":
        state["similarity_weight"] = torch.ones(1)
    elif change == "shape":
        state["lstm.weight_hh_l2"] = state["lstm.weight_hh_l2"][:, :128].contiguous()
    else:
        state["lstm.weight_hh_l2"] = state["lstm.weight_hh_l2"].half()
    save_file(state, str(tmp_path / "bad.safetensors"))
    key = "similarity_weight" if change == "extra" else "lstm.weight_hh_l2"
    with pytest.raises(ValueError, match=key):
        ve.load_voice_encoder_net(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError, match="reinstall barkpipe"):
        ve.load_voice_encoder_net(tmp_path / "absent.safetensors")


def test_asset_is_the_conversion_of_resemblyzers_checkpoint():
    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip(ORACLE_REASON)
    spec = importlib.util.spec_from_file_location("convert_voice_encoder", SCRIPT)
    assert spec is not None and spec.loader is not None, SCRIPT
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    fresh = convert.converted(convert.installed_checkpoint())
    assert convert.same_content(ve.WEIGHTS.read_bytes(), fresh)
    changed = load_file(str(ve.WEIGHTS))
    changed["linear.bias"][0] += 1e-6
    assert not convert.same_content(convert.save(changed, metadata=convert.METADATA), fresh)
