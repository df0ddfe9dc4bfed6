"""Reduced precisions against fp32 on the same weights: logit error and teacher-forced top-1 agreement."""

import copy

import pytest
import torch

from bark_model.checkpoints import detect_layout, load_models
from bark_model.quantize import Int8Linear, quantize_int8

# Largest |logit error| / max |logit| measured on tiny random weights, with headroom (~2x).
TOLERANCE = {"fp16": 3e-3, "bf16": 2e-2, "int8": 3e-2}


@pytest.fixture(scope="module")
def fp32_models(tiny_suno):
    return load_models(detect_layout(tiny_suno))[0]


def reduced(model, precision):
    model = copy.deepcopy(model)
    if precision == "int8":
        model = quantize_int8(model)  # scales from fp32 weights, then bf16 activations
        assert any(isinstance(m, Int8Linear) for m in model.modules())
        return model.to(torch.bfloat16)
    return model.to({"fp16": torch.float16, "bf16": torch.bfloat16}[precision])


@pytest.mark.parametrize("precision", sorted(TOLERANCE))
@pytest.mark.parametrize("role", ["text", "coarse", "fine"])
def test_logits_within_tolerance(fp32_models, role, precision):
    model = fp32_models[role]
    g = torch.Generator().manual_seed(0)
    if role == "fine":
        codes = torch.randint(0, 1025, (2, 256, 8), generator=g)
        run = lambda m: m(3, codes)  # noqa: E731
    else:
        ids = torch.randint(0, model.config.input_vocab_size, (2, 128), generator=g)
        run = lambda m: m(ids)  # noqa: E731
    with torch.no_grad():
        ref, out = run(model), run(reduced(model, precision)).float()
    error = ((out - ref).abs().max() / ref.abs().max()).item()
    agreement = (out.argmax(-1) == ref.argmax(-1)).float().mean().item()
    assert error <= TOLERANCE[precision], f"{role} {precision}: relative logit error {error:.4f}"
    # Random weights give nearly flat logits (the hardest case for argmax); real ones are peakier.
    assert agreement >= 0.95, f"{role} {precision}: top-1 agreement {agreement:.3f}"
