"""Our EnCodec encoder against the encodec package and transformers: identical codes on random weights."""

from __future__ import annotations

import math
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from support.speech_audio import espeak

from bark_model.codec import load_codec_state_dict, random_codec_state_dict
from bark_model.codec_encoder import (
    EncodecEncoder,
    encode_audio,
    load_codec_encoder_dir,
    load_codec_encoder_file,
    load_codec_encoder_state_dict,
)

SR = 24_000
FRAME = 320
BANDWIDTH_KBPS = 6.0  # 8 codebooks at 75 frames/s: Bark's setting
# Random convs leave the latents at ~0.1 std while codewords are ~0.35 per channel, so the nearest
# codeword would mostly be the shortest one; scaling the last encoder conv's weight-norm g makes
# the codes diverse, which is what a parity test must exercise (test_boosted_codes_are_diverse).
LATENT_BOOST = 8.0
FINAL_CONV_G = {
    "encodec": "encoder.model.15.conv.conv.weight_g",
    "hf": "encoder.layers.15.conv.parametrizations.weight.original0",
}
# Lengths that are not multiples of 320 (1 sample, under a frame, over a frame, ~1.5 s), and one that is.
LENGTHS = [1, 319, 7001, 36_017, 24_000]
SPEECH_LENGTH = 36_017


def _boosted_sd(naming: str) -> dict:
    sd = random_codec_state_dict(0, naming)
    key = FINAL_CONV_G[naming]
    sd[key] = sd[key] * LATENT_BOOST
    return sd


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """[2, 1, 36_017]: two cuts of espeak-ng speech, resampled linearly to 24 kHz (speech-like is enough)."""
    audio, sr = espeak("The quick brown fox jumps over the lazy dog, and then it runs far away.")
    n = int(len(audio) * SR / sr)
    audio = np.interp(np.arange(n) * (sr / SR), np.arange(len(audio)), audio).astype(np.float32)
    assert n > 2 * SPEECH_LENGTH, f"espeak said only {n} samples"
    return torch.from_numpy(np.stack([audio[:SPEECH_LENGTH], audio[-SPEECH_LENGTH:]]))[:, None]


def _signals(n: int) -> torch.Tensor:
    """[2, 1, n]: clipped noise and a 220 Hz sine."""
    noise = (torch.randn(n, generator=torch.Generator().manual_seed(n)) * 0.3).clamp(-1, 1)
    sine = 0.5 * torch.sin(2 * math.pi * 220 * torch.arange(n) / SR)
    return torch.stack([noise, sine])[:, None]


@pytest.fixture(scope="module")
def encodec_sd() -> dict:
    return _boosted_sd("encodec")


@pytest.fixture(scope="module")
def hf_sd() -> dict:
    return _boosted_sd("hf")


@pytest.fixture(scope="module")
def encoder(encodec_sd) -> EncodecEncoder:
    return load_codec_encoder_state_dict(encodec_sd)


@pytest.fixture(scope="module")
def hf_encoder(hf_sd) -> EncodecEncoder:
    return load_codec_encoder_state_dict(hf_sd)


@pytest.fixture(scope="module")
def encodec_package_model(encodec_sd):
    # encodec imports torchaudio, which cannot load with our torch; encodec only needs the name at
    # import time, so register an empty stand-in for the import and remove it afterwards.
    saved = sys.modules.get("torchaudio")
    sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        import encodec
    except ImportError as err:
        pytest.skip(f"encodec package does not import: {err}")
    finally:
        if saved is None:
            sys.modules.pop("torchaudio", None)
        else:
            sys.modules["torchaudio"] = saved
    with warnings.catch_warnings():  # encodec uses the deprecated torch weight_norm; not ours to fix
        warnings.simplefilter("ignore", FutureWarning)
        model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    assert not model.normalize and model.segment is None, "24 kHz EnCodec: no rescaling, one segment"
    model.load_state_dict(encodec_sd, strict=True)
    model.set_target_bandwidth(BANDWIDTH_KBPS)
    return model.eval()


@pytest.fixture(scope="module")
def hf_model(hf_sd):
    transformers = pytest.importorskip("transformers")
    config = transformers.EncodecConfig()
    assert not config.normalize and config.chunk_length is None, "24 kHz config: no rescaling, one chunk"
    model = transformers.EncodecModel(config).eval()
    model.load_state_dict(hf_sd, strict=True)
    return model


@pytest.mark.parametrize("n", LENGTHS)
def test_matches_encodec_package(encoder, encodec_package_model, n):
    audio = _signals(n)
    with torch.no_grad():
        [(expected, scale)] = encodec_package_model.encode(audio)  # one frame [B, K, T], no scale
    assert scale is None
    codes = encoder.encode(audio)
    assert codes.shape == (2, 8, math.ceil(n / FRAME)) and codes.dtype == torch.int64
    assert torch.equal(codes, expected)


@pytest.mark.parametrize("n", LENGTHS)
def test_matches_transformers(hf_model, hf_encoder, n):
    audio = _signals(n)
    with torch.no_grad():
        out = hf_model.encode(audio, bandwidth=BANDWIDTH_KBPS)
    assert out.audio_scales == [None]
    assert torch.equal(hf_encoder.encode(audio), out.audio_codes[0])  # [1 chunk, B, K, T]


def test_speech_matches_both_references(encoder, hf_encoder, encodec_package_model, hf_model, speech):
    with torch.no_grad():
        [(expected, _)] = encodec_package_model.encode(speech)
        hf_codes = hf_model.encode(speech, bandwidth=BANDWIDTH_KBPS).audio_codes[0]
    assert torch.equal(encoder.encode(speech), expected)
    assert torch.equal(hf_encoder.encode(speech), hf_codes)
    distinct = [len(torch.unique(expected[row, k])) for row in range(2) for k in range(8)]
    assert min(distinct) > 20, distinct  # the speech really varies the codes


def test_all_32_codebooks_match_encodec_package(encodec_package_model, encodec_sd):
    audio = _signals(4_001)
    encodec_package_model.set_target_bandwidth(24.0)
    try:
        with torch.no_grad():
            [(expected, _)] = encodec_package_model.encode(audio)
    finally:
        encodec_package_model.set_target_bandwidth(BANDWIDTH_KBPS)
    encoder = load_codec_encoder_state_dict(encodec_sd, n_codebooks=32)
    assert expected.shape[1] == 32
    assert torch.equal(encoder.encode(audio, n_codebooks=32), expected)
    assert torch.equal(encoder.encode(audio, n_codebooks=2), expected[:, :2])  # Bark's coarse codes


def test_boosted_codes_are_diverse(encoder):
    codes = encoder.encode(_signals(48_000))  # [2, 8, 150]
    # The noise row; the sine is periodic (15 phases per 320 samples), so it has fewer distinct codes.
    distinct = [len(torch.unique(codes[0, k])) for k in range(8)]
    assert min(distinct) > 40, distinct


def test_batch_rows_equal_rows_alone(encoder):
    audio = _signals(9_999)
    batch = encoder.encode(audio)
    for row in range(audio.shape[0]):
        assert torch.equal(batch[row], encoder.encode(audio[row : row + 1])[0])


@pytest.mark.parametrize("n", [24_000, 24_001])
def test_round_trip_through_our_decoder_keeps_the_length(encoder, encodec_sd, n):
    decoder = load_codec_state_dict(encodec_sd)
    codes = encoder.encode(_signals(n)[:1])  # [1, 8, T]
    audio = decoder.decode(codes)  # [1, 320·T]
    # A whole number of frames: n itself when n is one, else n rounded up (callers trim back to n).
    assert audio.shape == (1, FRAME * math.ceil(n / FRAME)) and torch.isfinite(audio).all()


def test_encode_audio_returns_bark_codes(encoder):
    clip = _signals(30_011)[0, 0].numpy()  # [N] float32
    codes = encode_audio(encoder, clip)
    assert codes.dtype == np.int64 and codes.shape == (8, math.ceil(30_011 / FRAME))
    assert ((codes >= 0) & (codes < 1024)).all()
    expected = encoder.encode(torch.from_numpy(clip)[None, None])[0]
    assert np.array_equal(codes, expected.numpy())


def test_encode_audio_clips_to_unit_range(encoder):
    loud = np.linspace(-3, 3, 5_000).astype(np.float64)  # float64 is accepted and converted
    assert np.array_equal(encode_audio(encoder, loud), encode_audio(encoder, np.clip(loud, -1, 1)))


@pytest.mark.parametrize(
    ("audio", "match"),
    [
        (np.zeros((2, 100), np.float32), "mono"),
        (np.zeros(100, np.int16), "float"),
        (np.zeros(0, np.float32), "0 samples"),
        (np.array([0.0, np.nan, np.inf], np.float32), "2 NaN or infinite"),
    ],
)
def test_encode_audio_rejects_bad_input(encoder, audio, match):
    with pytest.raises(ValueError, match=match):
        encode_audio(encoder, audio)


def test_encode_rejects_bad_arguments(encoder):
    with pytest.raises(ValueError, match=r"\[B, 1, N\]"):
        encoder.encode(torch.zeros(1, 2, 100))
    with pytest.raises(ValueError, match="0 samples"):
        encoder.encode(torch.zeros(1, 1, 0))
    with pytest.raises(ValueError, match=r"1\.\.8"):
        encoder.encode(torch.zeros(1, 1, 100), n_codebooks=9)
    with pytest.raises(ValueError, match="n_codebooks"):
        EncodecEncoder(n_codebooks=33)


@pytest.mark.parametrize("prefix", ["", "codec_model."])
@pytest.mark.parametrize("source", ["hf", "hf_old_weight_norm", "encoder_only"])
def test_loading_accepts_namings_and_prefixes(encoder, encodec_sd, hf_sd, source, prefix):
    sd = encodec_sd if source == "encoder_only" else hf_sd
    if source == "hf_old_weight_norm":  # the weight_g / weight_v names older transformers saved
        sd = {
            k.replace("parametrizations.weight.original0", "weight_g").replace(
                "parametrizations.weight.original1", "weight_v"
            ): v
            for k, v in sd.items()
        }
    if source == "encoder_only":  # the decoder is not needed, so it may be absent
        sd = {k: v for k, v in sd.items() if not k.startswith("decoder.")}
    sd = {prefix + k: v for k, v in sd.items()}
    sd["semantic.lm_head.weight"] = torch.zeros(1)  # other Bark sub-models in the same file are ignored
    loaded = load_codec_encoder_state_dict(sd, prefix=prefix)
    assert all(t.device.type == "cpu" for t in loaded.state_dict().values())  # nothing left on meta
    audio = torch.randn(2, 1, 3_333, generator=torch.Generator().manual_seed(5)).clamp(-1, 1)
    assert torch.equal(loaded.encode(audio), encoder.encode(audio))  # same seed: same weights


@pytest.mark.parametrize(
    ("naming", "key"),
    [
        ("encodec", "encoder.model.0.conv.conv.weight_v"),
        ("encodec", "encoder.model.13.lstm.weight_hh_l1"),
        ("encodec", "quantizer.vq.layers.7._codebook.embed"),
        ("hf", "encoder.layers.10.shortcut.conv.bias"),
        ("hf", "encoder.layers.12.conv.parametrizations.weight.original0"),
    ],
)
def test_missing_key_fails_naming_it(encodec_sd, hf_sd, naming, key):
    sd = dict(encodec_sd if naming == "encodec" else hf_sd)
    del sd[key]
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_codec_encoder_state_dict(sd)


def test_unknown_encoder_key_fails_naming_it(encodec_sd):
    sd = dict(encodec_sd, **{"encoder.model.99.conv.conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"encoder\.model\.99"):
        load_codec_encoder_state_dict(sd)


def test_load_codec_encoder_file(tmp_path, encodec_sd, encoder):
    path = tmp_path / "encodec_24khz-d7cc33bc.th"
    torch.save(encodec_sd, path)
    audio = torch.zeros(1, 1, 1_000).uniform_(-1, 1, generator=torch.Generator().manual_seed(6))
    assert torch.equal(load_codec_encoder_file(path).encode(audio), encoder.encode(audio))
    with pytest.raises(FileNotFoundError, match="nothing.th"):
        load_codec_encoder_file(tmp_path / "nothing.th")


def test_load_codec_encoder_dir_reads_both_layouts(tiny_suno, tiny_hf):
    # make_random_weights writes the same random codec (same seed) in each layout's naming.
    audio = torch.zeros(1, 1, 4_000).uniform_(-1, 1, generator=torch.Generator().manual_seed(7))
    suno, hf = load_codec_encoder_dir(tiny_suno), load_codec_encoder_dir(tiny_hf)
    assert torch.equal(suno.encode(audio), hf.encode(audio))
