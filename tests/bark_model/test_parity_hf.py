"""Logit parity of each network with transformers' Bark on the same random weights (fp32, CPU)."""

import numpy as np
import pytest
import torch

from bark_model import BarkEngine, GenerationRequest

transformers = pytest.importorskip("transformers", reason="transformers is a test-only dependency (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def hf_bark(tiny_hf):
    return transformers.BarkModel.from_pretrained(str(tiny_hf)).eval()


@pytest.fixture(scope="module")
def ours(tiny_hf):
    return BarkEngine.from_dir(tiny_hf, device="cpu", precision="fp32")


def assert_close(actual, expected):
    scale = expected.abs().max().item()
    err = (actual - expected).abs().max().item()
    assert err <= 1e-4 * scale, f"max abs diff {err:.3g} vs scale {scale:.3g}"


@pytest.mark.parametrize("role", ["semantic", "coarse"])
def test_causal_logits_match(hf_bark, ours, role):
    model, ref = (ours.text_model, hf_bark.semantic) if role == "semantic" else (ours.coarse_model, hf_bark.coarse_acoustics)
    ids = torch.randint(0, model.config.input_vocab_size, (2, 97), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(model(ids), ref(input_ids=ids).logits)


@pytest.mark.parametrize("codebook", [1, 2, 5, 7])
def test_fine_logits_match(hf_bark, ours, codebook):
    codes = torch.randint(0, 1025, (2, 1024, 8), generator=torch.Generator().manual_seed(codebook))
    with torch.no_grad():
        assert_close(ours.fine_model(codebook, codes), hf_bark.fine_acoustics(codebook, input_ids=codes).logits)


def test_merged_semantic_prefix_matches(hf_bark, ours):
    """The text+history embedding merge, fed to both networks as embeddings."""
    from bark_model.semantic import prefix_embeddings

    g = torch.Generator().manual_seed(2)
    text, hist = torch.randint(10_048, 129_595, (2, 256), generator=g), torch.randint(0, 10_000, (2, 256), generator=g)
    with torch.no_grad():
        embeds = prefix_embeddings(ours.text_model, text, hist)
        assert_close(ours.text_model(embeds=embeds), hf_bark.semantic(inputs_embeds=embeds).logits)


def test_semantic_greedy_sequence_matches_hf(hf_bark, ours):
    """A whole greedy semantic generation (768 tokens) through HF's own generate()."""
    from transformers.models.bark.generation_configuration_bark import BarkSemanticGenerationConfig

    text = "Hello there, this is a parity test."
    tokens = ours.tokenizer.token_ids(text)
    ids = torch.zeros(1, 256, dtype=torch.long)
    ids[0, : len(tokens)] = torch.tensor(tokens)
    mask = (torch.arange(256) < len(tokens)).long()[None]
    config = BarkSemanticGenerationConfig(**hf_bark.generation_config.semantic_config)
    with torch.no_grad():
        ref = hf_bark.semantic.generate(ids, attention_mask=mask, semantic_generation_config=config, do_sample=False, min_eos_p=None)
    [result] = ours.generate([GenerationRequest.greedy(text, min_eos_p=None)])
    np.testing.assert_array_equal(result.semantic, ref[0].numpy()[: len(result.semantic)])
    assert len(result.semantic) == ref.shape[1]
