"""Our HuBERT encoder against transformers' HubertModel on random weights, both ways through the HF layout."""

import json

import pytest
import torch

from bark_model.hubert import HubertConfig, load_hubert
from bark_model.random_weights import TINY_HUBERT, make_random_cloning_weights

transformers = pytest.importorskip("transformers")

SMALL = dict(TINY_HUBERT, num_hidden_layers=4)
TOL = 1e-5


def _hf_model(config: HubertConfig, seed: int):
    torch.manual_seed(seed)
    model = transformers.HubertModel(transformers.HubertConfig(**config.to_hf())).eval()
    with torch.no_grad():  # non-trivial norms and biases, so a swapped or dropped one shows
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith("bias") or "original0" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model


def _reference_states(model, audio):
    with torch.no_grad():
        return model(audio, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("n_samples", [400, 16_000 + 123])
def test_every_layer_matches_transformers(tmp_path, n_samples):
    config = HubertConfig(**SMALL)
    reference = _hf_model(config, seed=1)
    reference.save_pretrained(tmp_path)  # current transformers' naming: parametrizations.weight.original0/1
    ours = load_hubert(tmp_path)
    audio = torch.randn(2, n_samples) * 0.1
    states = _reference_states(reference, audio)
    assert len(states) == config.num_hidden_layers + 1
    with torch.no_grad():
        for layer, expected in enumerate(states):
            got = ours(audio, output_layer=layer)
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, atol=TOL, rtol=TOL)


def test_old_weight_norm_naming_and_head_prefix_load(tmp_path):
    """The hub's hubert-base-ls960 file names the pos conv weight_g/weight_v; CTC checkpoints add `hubert.`."""
    from safetensors.torch import load_file, save_file

    config = HubertConfig(**SMALL)
    reference = _hf_model(config, seed=2)
    reference.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    renamed = {
        "hubert."
        + k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in state.items()
    }
    save_file(renamed, tmp_path / "model.safetensors")
    audio = torch.randn(1, 8000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(
            load_hubert(tmp_path)(audio, 3), _reference_states(reference, audio)[3], atol=TOL, rtol=TOL
        )


def test_our_random_weights_load_in_transformers(tmp_path):
    make_random_cloning_weights(tmp_path, size="tiny", seed=3)
    reference = transformers.HubertModel.from_pretrained(tmp_path / "hubert").eval()
    ours = load_hubert(tmp_path / "hubert")
    audio = torch.randn(1, 16_000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(ours(audio, 9), _reference_states(reference, audio)[9], atol=TOL, rtol=TOL)


def test_base_shapes_match_transformers(tmp_path):
    """hubert-base-ls960's real shapes (768 wide, 12 layers, 128-tap pos conv), 1 s of audio, layer 9."""
    config = HubertConfig()
    reference = _hf_model(config, seed=4)
    reference.save_pretrained(tmp_path)
    ours = load_hubert(tmp_path)
    audio = torch.randn(1, 16_000) * 0.1
    with torch.no_grad():
        got = ours(audio, output_layer=9)
    assert got.shape == (1, 49, 768)  # 50 frames/s, minus the 400-sample receptive field
    torch.testing.assert_close(got, _reference_states(reference, audio)[9], atol=TOL, rtol=TOL)


def test_strict_loading_names_the_problem(tmp_path):
    from safetensors.torch import load_file, save_file

    _hf_model(HubertConfig(**SMALL), seed=5).save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state.pop("encoder.layers.0.final_layer_norm.bias")
    state["encoder.extra"] = torch.zeros(1)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="final_layer_norm.bias.*encoder.extra"):
        load_hubert(tmp_path)


def test_unsupported_config_is_refused(tmp_path):
    config = HubertConfig(**SMALL).to_hf() | {"do_stable_layer_norm": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="do_stable_layer_norm"):
        load_hubert(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hubert(tmp_path / "missing")


def test_too_short_audio_and_bad_layer_are_refused():
    from bark_model.hubert import Hubert

    model = Hubert(HubertConfig(**SMALL)).eval()
    with pytest.raises(ValueError, match="N >= 400"):
        model(torch.zeros(1, 399))
    with pytest.raises(ValueError, match="0..4"):
        model(torch.zeros(1, 400), output_layer=5)
