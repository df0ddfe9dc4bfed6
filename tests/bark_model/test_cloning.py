"""Voice cloning: the quantizer against a hand-written LSTM, resampling, reference checks, and the prompt it makes."""

import json
import zipfile

import numpy as np
import pytest
import torch

from bark_model import VoicePrompt
from bark_model.cloning import (
    MAX_REFERENCE_S,
    MIN_REFERENCE_S,
    align_prompt,
    frames_for,
    load_cloning_models,
    prepare_reference,
    resample,
    save_voice_prompt,
    semantic_from_audio,
    voice_prompt_from_audio,
)
from bark_model.constants import MAX_SEMANTIC_TOKENS, SAMPLE_RATE
from bark_model.random_weights import make_random_cloning_weights, make_random_weights
from bark_model.semantic_quantizer import (
    HUBERT_LAYER,
    QuantizerConfig,
    SemanticQuantizer,
    load_quantizer,
    read_config,
    save_quantizer,
)

# -- the quantizer ---------------------------------------------------------------------------------


def _reference_tokens(state: dict, features: torch.Tensor, version: int) -> torch.Tensor:
    """The project's architecture from its equations: 2 LSTM layers (gates i, f, g, o), [Linear,] Linear, argmax."""
    x = features.double()  # [T, in]
    for layer in range(2):
        w_ih, w_hh = state[f"lstm.weight_ih_l{layer}"].double(), state[f"lstm.weight_hh_l{layer}"].double()
        bias = (state[f"lstm.bias_ih_l{layer}"] + state[f"lstm.bias_hh_l{layer}"]).double()
        h = torch.zeros(w_hh.shape[1], dtype=torch.float64)
        c = torch.zeros_like(h)
        outputs = []
        for x_t in x:
            i, f, g, o = (w_ih @ x_t + w_hh @ h + bias).chunk(4)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        x = torch.stack(outputs)
    if version == 1:
        x = x @ state["intermediate.weight"].double().T + state["intermediate.bias"].double()
    logits = x @ state["fc.weight"].double().T + state["fc.bias"].double()
    return torch.log_softmax(logits, dim=-1).argmax(dim=-1)


@pytest.mark.parametrize("version", [0, 1])
def test_quantizer_matches_the_documented_architecture(tmp_path, version):
    torch.manual_seed(version)
    config = QuantizerConfig(input_size=24, hidden_size=16, version=version)
    path = tmp_path / "quantifier_test.pth"
    save_quantizer(SemanticQuantizer(config), path)
    with zipfile.ZipFile(path) as archive:  # the community layout: `<stem>/.info` beside the tensors
        assert json.loads(archive.read("quantifier_test/.info")) == {
            "input_size": 24, "hidden_size": 16, "output_size": 10_000, "version": version}  # fmt: skip
    model = load_quantizer(path)
    assert model.config == config
    state = torch.load(path, weights_only=True)
    features = torch.randn(40, 24) * 3  # large enough that the argmax varies along time
    tokens = model.tokens(features)
    assert tokens.dtype == torch.int64 and tokens.shape == (40,)
    assert torch.equal(tokens, _reference_tokens(state, features, version))
    assert len(set(tokens.tolist())) > 1


def test_a_checkpoint_without_info_is_the_first_release(tmp_path):
    path = tmp_path / "quantifier_hubert_base_ls960.pth"
    torch.save({"fc.weight": torch.zeros(10_000, 16)}, path)
    assert read_config(path) == QuantizerConfig()  # version 0, 768 -> 1024
    with pytest.raises(ValueError, match="missing .*lstm.weight_ih_l0"):
        load_quantizer(path)


def test_quantizer_errors_name_the_problem(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "q.pth"
    save_quantizer(SemanticQuantizer(QuantizerConfig(input_size=8, hidden_size=8, version=1)), path)
    (tmp_path / "bad.pth").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a quantizer checkpoint"):
        load_quantizer(tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError):
        load_quantizer(tmp_path / "none.pth")
    with pytest.raises(ValueError, match=r"features must be \[T, 8\]"):
        load_quantizer(path).tokens(torch.zeros(3, 9))
    with pytest.raises(ValueError, match="10000 classes"):
        QuantizerConfig(output_size=1000)


# -- the reference recording -------------------------------------------------------------------------


@pytest.mark.parametrize("orig, new", [(44_100, 16_000), (22_050, 24_000), (16_000, 24_000), (48_000, 24_000)])
def test_resample_keeps_band_limited_sines(orig, new):
    freqs, seconds = (220.0, 1000.0, 3100.0), 0.5
    wave = lambda sr: sum(np.sin(2 * np.pi * f * np.arange(int(seconds * sr)) / sr) for f in freqs) / 3  # noqa: E731
    got = resample(torch.from_numpy(wave(orig)), orig, new).numpy()
    assert len(got) == -(-int(seconds * orig) * new // orig)
    edge = new // 50  # the filter sees zero padding within its half-width of both ends
    np.testing.assert_allclose(got[edge:-edge], wave(new)[edge : len(got) - edge], atol=2e-3)


def test_resample_removes_what_the_new_rate_cannot_hold():
    sr = 48_000
    tone = np.sin(2 * np.pi * 11_000 * np.arange(sr) / sr)  # above 16 kHz audio's 8 kHz Nyquist
    assert np.abs(resample(torch.from_numpy(tone), sr, 16_000).numpy()[500:-500]).max() < 1e-3


def test_reference_is_mixed_down_trimmed_and_length_checked():
    sr = 16_000
    rng = np.random.default_rng(0)
    speech = 0.3 * rng.standard_normal(3 * sr)
    stereo = np.stack([speech, speech * 0.5], axis=1)
    padded = np.concatenate([np.zeros((sr, 2)), stereo, np.zeros((2 * sr, 2))]).astype(np.float32)
    ref = prepare_reference(padded, sr)
    assert ref.ndim == 1 and ref.dtype == np.float32
    assert 3.0 <= len(ref) / sr <= 3.2  # the 3 s of sound plus at most the kept margins
    np.testing.assert_allclose(ref.max(), (stereo.mean(axis=1)).max(), rtol=1e-6)
    # 1 s of sound plus the two 0.05 s margins kept around it
    with pytest.raises(ValueError, match=rf"1.10 s long.*at least {MIN_REFERENCE_S:g} s"):
        prepare_reference(np.concatenate([np.zeros(sr), speech[:sr], np.zeros(sr)]).astype(np.float32), sr)
    with pytest.raises(ValueError, match=rf"31.0 s long.*limit is {MAX_REFERENCE_S:g} s"):
        prepare_reference(rng.standard_normal(31 * sr).astype(np.float32), sr)
    with pytest.raises(ValueError, match="silent"):
        prepare_reference(np.zeros(5 * sr, dtype=np.float32), sr)
    with pytest.raises(ValueError, match="channels last"):
        prepare_reference(stereo.T.astype(np.float32), sr)


# -- the prompt --------------------------------------------------------------------------------------


def test_align_keeps_end_aligned_tails_at_barks_ratio():
    semantic = np.arange(500) % 10_000
    fine = np.arange(8 * 750).reshape(8, 750) % 1024
    sem, codes = align_prompt(semantic, fine)  # 500 tokens would need 751 frames: one token goes
    assert (len(sem), codes.shape[1]) == (499, 750)  # Bark's own 499 -> 750
    assert sem[-1] == semantic[-1] and np.array_equal(codes[:, -1], fine[:, -1])
    sem, codes = align_prompt(np.zeros(1200, np.int64), np.zeros((8, 1800), np.int64))
    assert len(sem) == MAX_SEMANTIC_TOKENS and codes.shape[1] == frames_for(MAX_SEMANTIC_TOKENS)
    with pytest.raises(ValueError, match="1000 codec frames for 500 semantic tokens"):
        align_prompt(semantic, np.zeros((8, 1000), np.int64))


@pytest.fixture(scope="module")
def cloning_weights(tmp_path_factory):
    root = make_random_weights(tmp_path_factory.mktemp("clone"), size="tiny", layout="suno", seed=0)
    return make_random_cloning_weights(root, size="tiny", seed=0)


@pytest.fixture(scope="module")
def models(cloning_weights):
    return load_cloning_models(cloning_weights, "cpu")


def _speechlike(sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    voiced = np.sin(2 * np.pi * 180 * t) + 0.5 * np.sin(2 * np.pi * 360 * t) + 0.3 * np.sin(2 * np.pi * 900 * t)
    return (0.3 * voiced * (0.6 + 0.4 * np.sin(2 * np.pi * 2.5 * t))).astype(np.float32)


@pytest.mark.parametrize("sr, seconds", [(22_050, 4.0), (16_000, 2.5)])
def test_prompt_from_audio_has_barks_shapes_ranges_and_ratio(models, tmp_path, sr, seconds):
    audio = np.stack([_speechlike(sr, seconds)] * 2, axis=1)
    prompt = voice_prompt_from_audio(audio, sr, models.hubert, models.quantizer, models.codec_encoder)
    semantic, coarse, fine = prompt["semantic_prompt"], prompt["coarse_prompt"], prompt["fine_prompt"]
    assert semantic.dtype == coarse.dtype == fine.dtype == np.int64
    assert semantic.ndim == 1 and coarse.shape[0] == 2 and fine.shape[0] == 8
    assert fine.shape[1] == frames_for(len(semantic)) and np.array_equal(coarse, fine[:2])
    assert abs(len(semantic) - seconds * 50) <= 2  # HuBERT's 50 frames per second of (trimmed) audio
    assert 0 <= semantic.min() and semantic.max() < 10_000 and 0 <= fine.min() and fine.max() < 1024
    path = save_voice_prompt(tmp_path / "v.npz", prompt)
    loaded = VoicePrompt.from_npz(path)  # how `say --voice` and a manifest's voice column read it
    assert np.array_equal(loaded.semantic, semantic) and np.array_equal(loaded.fine, fine)


def test_semantic_tokens_are_the_quantizer_of_hubert_layer_9(models):
    from bark_model.cloning import HUBERT_RATE

    audio = _speechlike(HUBERT_RATE, 2.0)
    with torch.no_grad():
        features = models.hubert(torch.from_numpy(audio)[None], output_layer=HUBERT_LAYER)[0]
    expected = models.quantizer.tokens(features).numpy()
    assert np.array_equal(semantic_from_audio(audio, models.hubert, models.quantizer), expected)


def test_the_codes_are_the_encoders_of_the_24khz_audio(models):
    from bark_model.codec_encoder import encode_audio

    audio = _speechlike(SAMPLE_RATE, 3.0)
    prompt = voice_prompt_from_audio(audio, SAMPLE_RATE, models.hubert, models.quantizer, models.codec_encoder)
    codes = encode_audio(models.codec_encoder, prepare_reference(audio, SAMPLE_RATE))
    assert np.array_equal(prompt["fine_prompt"], codes[:, codes.shape[1] - prompt["fine_prompt"].shape[1] :])


def test_missing_cloning_weights_say_where_they_go(tmp_path):
    with pytest.raises(FileNotFoundError, match="hubert-base-ls960.*quantizer.pth"):
        load_cloning_models(tmp_path)
