"""Our EnCodec decoder against transformers and the encodec package, on random weights in both formats."""

from __future__ import annotations

import sys
import types
import warnings

import pytest
import torch

from bark_model.codec import (
    EncodecDecoder,
    load_codec_file,
    load_codec_state_dict,
    random_codec_state_dict,
    random_encodec_package_state_dict,
)

RTOL, ATOL = 1e-4, 1e-5
FRAME = 320


def _codes(batch: int, frames: int, seed: int = 1, n_q: int = 8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 1024, (batch, n_q, frames), generator=gen)  # [B, K, T]


def _to_old_weight_norm(sd: dict, prefix: str = "") -> dict:
    """HF parametrization names -> the weight_g/weight_v names older transformers saved."""
    return {
        prefix + k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in sd.items()
    }


@pytest.fixture(scope="module")
def encodec_sd() -> dict:
    return random_codec_state_dict(0, "encodec")


@pytest.fixture(scope="module")
def hf_sd() -> dict:
    return random_codec_state_dict(0, "hf")


@pytest.fixture(scope="module")
def decoder(encodec_sd) -> EncodecDecoder:
    return load_codec_state_dict(encodec_sd)


@pytest.fixture(scope="module")
def hf_model(hf_sd):
    transformers = pytest.importorskip("transformers")
    model = transformers.EncodecModel(transformers.EncodecConfig()).eval()
    model.load_state_dict(hf_sd, strict=True)  # the "hf" random file has every key HF needs, no more
    return model


@pytest.fixture(scope="module")
def encodec_package_model():
    # encodec imports torchaudio, which cannot load with our torch; encodec only needs the name at
    # import time, so register an empty stand-in for the import and remove it afterwards
    # (transformers probes torchaudio's import spec and would trip over the stand-in).
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
    model.load_state_dict(random_encodec_package_state_dict(0), strict=True)
    return model.eval()


@pytest.mark.parametrize("frames", [37, 150])
def test_matches_transformers(decoder, hf_model, frames):
    codes = _codes(2, frames)
    with torch.no_grad():
        expected = hf_model.decode(codes[None], [None]).audio_values[:, 0]  # [B, 1, N] -> [B, N]
    torch.testing.assert_close(decoder.decode(codes), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("frames", [37, 150])
def test_matches_encodec_package(decoder, encodec_package_model, frames):
    codes = _codes(2, frames, seed=2)
    with torch.no_grad():
        expected = encodec_package_model.decode([(codes, None)])[:, 0]  # one frame, no scale
    torch.testing.assert_close(decoder.decode(codes), expected, rtol=RTOL, atol=ATOL)


def test_all_32_codebooks_match_transformers(encodec_sd, hf_model):
    codes = _codes(1, 20, seed=3, n_q=32)
    with torch.no_grad():
        expected = hf_model.decode(codes[None], [None]).audio_values[:, 0]
    ours = load_codec_state_dict(encodec_sd, n_codebooks=32).decode(codes)
    torch.testing.assert_close(ours, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("frames", [1, 2, 6, 7, 37])
def test_output_is_320_samples_per_frame(decoder, frames):
    audio = decoder.decode(_codes(2, frames))
    assert audio.shape == (2, FRAME * frames) and audio.dtype == torch.float32
    assert torch.isfinite(audio).all()


def test_random_weights_decode_to_audio_scale(decoder):
    audio = decoder.decode(_codes(2, 75))
    assert 1e-3 < audio.std() and audio.abs().max() < 1.0


def test_padded_row_prefix_equals_row_alone(decoder):
    # Causal network: a right-padded row's first 320·T_r samples are its own decode.
    codes = _codes(2, 40, seed=4)
    batch = decoder.decode(codes)
    alone = decoder.decode(codes[1:, :, :23])[0]
    torch.testing.assert_close(batch[1, : FRAME * 23], alone, rtol=RTOL, atol=ATOL)


def test_decode_lengths_cuts_and_handles_short_rows(decoder):
    codes = _codes(3, 30, seed=5)
    lengths = [30, 12, 3]  # 3 frames is shorter than the first conv's reflect pad: decoded alone
    audio = decoder.decode_lengths(codes, torch.tensor(lengths))
    assert audio.shape == (3, FRAME * 30)
    for row, n in enumerate(lengths):
        alone = decoder.decode(codes[row : row + 1, :, :n])[0]
        torch.testing.assert_close(audio[row, : FRAME * n], alone, rtol=RTOL, atol=ATOL)
        assert (audio[row, FRAME * n :] == 0).all()
    with pytest.raises(ValueError, match="lengths"):
        decoder.decode_lengths(codes, [30, 31, 1])


@pytest.mark.parametrize("prefix", ["", "codec_model."])
@pytest.mark.parametrize("source", ["encodec", "hf", "hf_old_weight_norm"])
def test_loading_accepts_namings_and_prefixes(decoder, encodec_sd, hf_sd, source, prefix):
    if source == "encodec":
        sd = {prefix + k: v for k, v in encodec_sd.items()}
    elif source == "hf":
        sd = {prefix + k: v for k, v in hf_sd.items()}
    else:
        sd = _to_old_weight_norm(hf_sd, prefix)
    sd["semantic.lm_head.weight"] = torch.zeros(1)  # other Bark sub-models in the same file are ignored
    loaded = load_codec_state_dict(sd, prefix=prefix)
    assert all(t.device.type == "cpu" for t in loaded.state_dict().values())  # nothing left on meta
    codes = _codes(2, 9)
    assert torch.equal(loaded.decode(codes), decoder.decode(codes))  # same seed: same weights


@pytest.mark.parametrize(
    ("naming", "key"),
    [
        ("hf", "decoder.layers.6.conv.parametrizations.weight.original1"),
        ("hf", "quantizer.layers.7.codebook.embed"),
        ("encodec", "decoder.model.1.lstm.bias_hh_l1"),
        ("encodec", "decoder.model.13.shortcut.conv.conv.weight_g"),
    ],
)
def test_missing_key_fails_naming_it(encodec_sd, hf_sd, naming, key):
    sd = dict(encodec_sd if naming == "encodec" else hf_sd)
    del sd[key]
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_codec_state_dict(sd)


def test_unknown_decoder_key_fails_naming_it(encodec_sd):
    sd = dict(encodec_sd, **{"decoder.model.99.conv.conv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"decoder\.model\.99"):
        load_codec_state_dict(sd)


def test_wrong_prefix_fails_clearly(hf_sd):
    with pytest.raises(ValueError, match="codec_model"):
        load_codec_state_dict({"codec_model." + k: v for k, v in hf_sd.items()})


def test_load_codec_file(tmp_path, encodec_sd, decoder):
    path = tmp_path / "encodec_24khz-d7cc33bc.th"
    torch.save(encodec_sd, path)
    codes = _codes(1, 8)
    assert torch.equal(load_codec_file(path).decode(codes), decoder.decode(codes))
    with pytest.raises(FileNotFoundError, match="nothing.th"):
        load_codec_file(tmp_path / "nothing.th")


def test_bad_arguments_fail_naming_them(decoder):
    with pytest.raises(ValueError, match="naming"):
        random_codec_state_dict(0, "suno")
    with pytest.raises(ValueError, match="integer"):
        decoder.decode(_codes(1, 4).float())
    with pytest.raises(ValueError, match="9 codebooks"):
        decoder.decode(_codes(1, 4, n_q=9))
