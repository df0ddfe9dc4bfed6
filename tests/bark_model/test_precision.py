"""Reduced precisions against fp32 on the same weights: logit error and teacher-forced top-1 agreement.

int8 is tested in both of its forms: `int8` as the engine runs it on CPU (every Linear with int8
weights and int8 activations, one activation scale per token, the rest fp32, with attention and
KV cache in bf16 where the CPU has AMX) and `int8-weights` as on CUDA (int8 weights, bf16
activations).
"""

import copy

import pytest
import torch

from bark_model import BarkEngine
from bark_model.checkpoints import detect_layout, load_models
from bark_model.gpt import KVCache, cache_dtype, set_attention_dtype
from bark_model.quantize import Int8Linear, has_amx, quantize_int8

# Largest |logit error| / max |logit| measured on tiny random weights, with headroom (~1.5-2x).
TOLERANCE = {"fp16": 3e-3, "bf16": 2e-2, "int8-weights": 3e-2, "int8": 4e-2}
# Random weights give nearly flat logits (the hardest case for argmax; real ones are peakier),
# so agreement is counted over 512 positions per network to keep the estimate's noise ~1%.
MIN_AGREEMENT = 0.95


@pytest.fixture(scope="module")
def fp32_models(tiny_suno):
    return load_models(detect_layout(tiny_suno))[0]


def reduced(model, precision):
    """The model as the engine builds it for `precision` (scales from the fp32 weights first)."""
    model = copy.deepcopy(model)
    if precision.startswith("int8"):
        cpu_form = precision == "int8"
        model = quantize_int8(model, activations=cpu_form)
        assert any(isinstance(m, Int8Linear) for m in model.modules())
        if cpu_form and has_amx():  # as the engine runs it there: attention and KV cache in bf16
            set_attention_dtype(model, torch.bfloat16)
        return model.to(torch.float32 if cpu_form else torch.bfloat16)
    return model.to({"fp16": torch.float16, "bf16": torch.bfloat16}[precision])


def inputs(model, role, seed=0):
    g = torch.Generator().manual_seed(seed)
    if role == "fine":
        codes = torch.randint(0, 1025, (2, 256, 8), generator=g)
        return lambda m: m(3, codes)
    ids = torch.randint(0, model.config.input_vocab_size, (4, 128), generator=g)
    return lambda m: m(ids)


def compare(ref: torch.Tensor, out: torch.Tensor) -> tuple[float, float]:
    error = ((out.float() - ref).abs().max() / ref.abs().max()).item()
    agreement = (out.float().argmax(-1) == ref.argmax(-1)).float().mean().item()
    return error, agreement


@pytest.mark.parametrize("precision", sorted(TOLERANCE))
@pytest.mark.parametrize("role", ["text", "coarse", "fine"])
def test_logits_within_tolerance(fp32_models, role, precision):
    model = fp32_models[role]
    run = inputs(model, role)
    with torch.no_grad():
        error, agreement = compare(run(model), run(reduced(model, precision)))
    assert error <= TOLERANCE[precision], f"{role} {precision}: relative logit error {error:.4f}"
    assert agreement >= MIN_AGREEMENT, f"{role} {precision}: top-1 agreement {agreement:.3f}"


@pytest.mark.parametrize("role", ["text", "coarse"])
def test_int8_decode_steps_teacher_forced(fp32_models, role):
    """A prefill then one-token KV-cache steps, both int8, against an fp32 full forward."""
    model = fp32_models[role]
    quant = reduced(model, "int8")
    g = torch.Generator().manual_seed(1)
    B, prefix, steps = 4, 64, 128
    ids = torch.randint(0, model.config.input_vocab_size, (B, prefix + steps), generator=g)
    with torch.no_grad():
        ref = model(ids)[:, prefix - 1 : -1]  # [B, steps, V]: logits predicting each fed token
        cache = KVCache.allocate(model.config, B, prefix + steps, "cpu", cache_dtype(quant, torch.float32))
        last = torch.full((B,), prefix - 1)
        out = [quant(ids[:, :prefix], positions=torch.arange(prefix).expand(B, prefix), cache=cache, kv_len=prefix,
                     logit_index=last)]  # fmt: skip
        for t in range(prefix, prefix + steps - 1):
            out.append(quant(ids[:, t : t + 1], positions=torch.full((B, 1), t), cache=cache, kv_len=t + 1,
                             logit_index=torch.zeros(B, dtype=torch.long)))  # fmt: skip
    error, agreement = compare(ref, torch.stack(out, dim=1))
    assert error <= TOLERANCE["int8"], f"{role} int8 decode: relative logit error {error:.4f}"
    assert agreement >= MIN_AGREEMENT, f"{role} int8 decode: top-1 agreement {agreement:.3f}"


def test_int8_row_does_not_depend_on_its_batch(fp32_models):
    """Activation scales are per row, so a row gives the same logits alone and in a batch."""
    quant = reduced(fp32_models["fine"], "int8")
    g = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 1025, (3, 256, 8), generator=g)
    codes[1] *= 0  # a very different neighbour: a shared scale would change row 0's outputs
    with torch.no_grad():
        together = quant(4, codes)
        alone = quant(4, codes[:1])
    assert torch.equal(together[:1], alone)


def test_int8_token_scales_ignore_neighbours_in_a_decode_step():
    """One-token rows (a decode step): each row alone equals it in the batch, and a row 1000x
    louder next to it costs a quiet row no accuracy (one shared scale would round it to ~0)."""
    g = torch.Generator().manual_seed(3)
    linear = torch.nn.Linear(64, 48, bias=True)
    layer = Int8Linear(linear, activations=True)
    x = torch.randn(4, 1, 64, generator=g)
    x[1] *= 1000.0
    x[2] = 0.0  # an all-zero row: zero in, bias out, no NaN
    with torch.no_grad():
        together = layer(x)
        alone = torch.cat([layer(x[i : i + 1]) for i in range(4)])
        ref = linear(x)
    assert torch.equal(together, alone)
    assert torch.equal(together[2], linear.bias.expand(1, 48))
    for i in (0, 1, 3):
        error = ((together[i] - ref[i]).abs().max() / ref[i].abs().max()).item()
        assert error < 0.03, f"row {i}: relative error {error:.4f}"


def test_weight_only_int8_has_no_prepacked_kernels(fp32_models):
    """The CUDA form (activations=False) keeps only int8 tensors that .to(device) can move."""
    quant = quantize_int8(copy.deepcopy(fp32_models["coarse"]), activations=False)
    assert all(m.packed is None and m.packed_amx is None for m in quant.modules() if isinstance(m, Int8Linear))


def test_amx_kernel_runs_multi_token_rows_and_agrees_with_fbgemm():
    """Where the CPU has AMX, rows of many tokens (prefills, fine windows) take oneDNN's kernel and
    one-token rows fbgemm's; both give the int8 product, so they agree to float rounding."""
    if not has_amx():
        pytest.skip("this CPU has no AMX int8: fbgemm runs every shape")
    g = torch.Generator().manual_seed(4)
    linear = torch.nn.Linear(96, 80, bias=True)
    layer = Int8Linear(linear, activations=True)
    x = torch.randn(2, 33, 96, generator=g)
    assert layer.kernel_for(x) is layer.packed_amx and layer.kernel_for(x[:, :1]) is layer.packed
    with torch.no_grad():
        amx = layer(x)
        fbgemm_only = copy.copy(layer)
        fbgemm_only.packed_amx = None
        reference = fbgemm_only(x)
        steps = torch.cat([layer(x[:, t : t + 1]) for t in range(33)], dim=1)  # decode-step shape: fbgemm
    assert torch.equal(steps, reference)
    assert ((amx - reference).abs().max() / reference.abs().max()).item() < 1e-5


def test_cpu_engine_int8_uses_int8_activations_and_generates(tiny_suno):
    from bark_model import GenerationRequest

    engine = BarkEngine.from_dir(tiny_suno, device="cpu", precision="int8")
    layers = [m for m in engine.fine_model.modules() if isinstance(m, Int8Linear)]
    assert layers and all(m.packed is not None for m in layers)
    assert engine.fine_model.wpe.weight.dtype == torch.float32  # what those kernels take
    (result,) = engine.generate([GenerationRequest(text="hello", seed=0, max_duration_s=0.3, allow_early_stop=False)])
    assert result.fine.shape[0] == 8 and len(result.audio) > 0
