"""EnCodec 24 kHz for Bark: strict loading of both checkpoint namings, and random weights in their formats."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from bark_model.codec_layers import (
    LATENT_DIM,
    LSTM_DIM,
    LSTM_LAYERS,
    N_QUANTIZERS,
    ConvSpec,
    EncodecDecoder,
    decoder_specs,
    encoder_specs,
)
from bark_model.constants import CODEBOOK_SIZE, N_FINE_CODEBOOKS

__all__ = [
    "EncodecDecoder",
    "load_codec_file",
    "load_codec_state_dict",
    "read_codec_file",
    "random_codec_state_dict",
    "random_encodec_package_state_dict",
]

NAMINGS = ("encodec", "hf")  # encodec package (`encodec_24khz-d7cc33bc.th`) | transformers EncodecModel
# Weight norm as (g, v) leaf names: the old `torch.nn.utils.weight_norm` and the parametrization API.
WEIGHT_NORM_LEAVES = (
    ("weight_g", "weight_v"),
    ("parametrizations.weight.original0", "parametrizations.weight.original1"),
)
TRAINING_BUFFERS = ("embed_avg", "cluster_size", "inited")  # codebook EMA state, unused by decode
# weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, then the same for layer 1.
LSTM_LEAVES = tuple(
    f"{kind}_{gate}_l{layer}" for layer in range(LSTM_LAYERS) for kind in ("weight", "bias") for gate in ("ih", "hh")
)


def _layer(part: str, index: int, naming: str) -> str:
    return f"{part}.{'model' if naming == 'encodec' else 'layers'}.{index}"


def _conv_stem(part: str, spec: ConvSpec, naming: str) -> str:
    """Key prefix of one conv, e.g. decoder.model.3.convtr.convtr (encodec) / decoder.layers.3.conv (hf)."""
    sub = f".{spec.sub}" if spec.sub else ""
    if naming == "hf":
        return f"{_layer(part, spec.index, naming)}{sub}.conv"
    leaf = "convtr.convtr" if spec.transposed else "conv.conv"
    return f"{_layer(part, spec.index, naming)}{sub}.{leaf}"


def _codebook_key(q: int, leaf: str, naming: str) -> str:
    if naming == "encodec":
        return f"quantizer.vq.layers.{q}._codebook.{leaf}"
    return f"quantizer.layers.{q}.codebook.{leaf}"


def _detect_naming(keys: list[str]) -> str:
    if any(k.startswith(("decoder.model.", "quantizer.vq.")) for k in keys):
        return "encodec"
    if any(k.startswith(("decoder.layers.", "quantizer.layers.")) for k in keys):
        return "hf"
    raise ValueError(
        "codec state dict has neither encodec (decoder.model.*) nor Hugging Face (decoder.layers.*) "
        f"keys; first keys: {keys[:5]} (wrong prefix? Bark's HF checkpoint needs prefix='codec_model.')"
    )


def _fold_weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """weight = g · v / ‖v‖, the norm over every dim but 0 (in-channels for ConvTranspose1d)."""
    norm = v.float().norm(dim=tuple(range(1, v.dim())), keepdim=True)
    return (g.float() * v.float() / norm).to(v.dtype)


def _take(sd: Mapping[str, torch.Tensor], key: str, used: set[str], missing: list[str]) -> torch.Tensor | None:
    if key not in sd:
        missing.append(key)
        return None
    used.add(key)
    return sd[key]


def _weight_norm_leaves(sd: Mapping[str, torch.Tensor], stem: str, naming: str) -> tuple[str, str]:
    """The (g, v) leaf names this conv uses; with neither present, the usual ones for the naming."""
    for pair in WEIGHT_NORM_LEAVES:
        if any(f"{stem}.{leaf}" in sd for leaf in pair):
            return pair
    return WEIGHT_NORM_LEAVES[0 if naming == "encodec" else 1]


def _take_conv(sd, stem: str, naming: str, used: set[str], missing: list[str], fold=None) -> torch.Tensor | None:
    """A conv's weight, its weight norm folded (by `fold(g, v)`; the decoder's own formula by default)."""
    g_leaf, v_leaf = _weight_norm_leaves(sd, stem, naming)
    g = _take(sd, f"{stem}.{g_leaf}", used, missing)
    v = _take(sd, f"{stem}.{v_leaf}", used, missing)
    return None if g is None or v is None else (fold or _fold_weight_norm)(g, v)


def _ignorable_keys(naming: str, n_codebooks: int) -> set[str]:
    """Quantizer keys that are known but unused: EMA buffers, and codebooks past the ones we decode with."""
    keys = {_codebook_key(q, leaf, naming) for q in range(N_QUANTIZERS) for leaf in TRAINING_BUFFERS}
    return keys | {_codebook_key(q, "embed", naming) for q in range(n_codebooks, N_QUANTIZERS)}


def collect_codec_part(
    sd: Mapping[str, torch.Tensor], naming: str, n_codebooks: int, part: str = "decoder", fold=None
) -> dict[str, torch.Tensor]:
    """Map a stripped checkpoint's `part` ("decoder" or "encoder") and its first n_codebooks codebooks
    onto our module's names (weight norm folded by `fold`); fail naming missing and unknown keys."""
    used: set[str] = set()
    missing: list[str] = []
    ours: dict[str, torch.Tensor | None] = {}
    specs, lstm_index = decoder_specs() if part == "decoder" else encoder_specs()
    for spec in specs:
        stem = _conv_stem(part, spec, naming)
        ours[f"{spec.name}.weight"] = _take_conv(sd, stem, naming, used, missing, fold)
        ours[f"{spec.name}.bias"] = _take(sd, f"{stem}.bias", used, missing)
    for leaf in LSTM_LEAVES:
        ours[f"lstm.{leaf}"] = _take(sd, f"{_layer(part, lstm_index, naming)}.lstm.{leaf}", used, missing)
    embeds = [_take(sd, _codebook_key(q, "embed", naming), used, missing) for q in range(n_codebooks)]
    if missing:
        raise ValueError(f"codec state dict ({naming} naming) lacks {len(missing)} {part} keys: {missing}")
    # Nothing is missing, so no value is None: the filters only narrow the types.
    found = {k: v for k, v in ours.items() if v is not None}
    found["codebooks"] = torch.stack([e for e in embeds if e is not None])  # [K, 1024, 128]
    known = used | _ignorable_keys(naming, n_codebooks)
    unknown = [k for k in sd if k.startswith((f"{part}.", "quantizer.")) and k not in known]
    if unknown:
        raise ValueError(f"codec state dict ({naming} naming) has unknown {part} keys: {unknown}")
    return found


def load_codec_state_dict(
    sd: Mapping[str, torch.Tensor], prefix: str = "", n_codebooks: int = N_FINE_CODEBOOKS
) -> EncodecDecoder:
    """Build the decoder from an encodec-package or Hugging Face state dict (keys under `prefix`).

    Keys outside `prefix`, and `encoder.*`, are ignored on purpose (Bark only decodes). The model
    is built on the meta device and takes the folded tensors by assignment: no second copy.
    """
    stripped = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    naming = _detect_naming(list(stripped))
    ours = collect_codec_part(stripped, naming, n_codebooks)
    with torch.device("meta"):
        model = EncodecDecoder(n_codebooks)
    model.load_state_dict(ours, strict=True, assign=True)
    return model.eval()


def read_codec_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in `encodec_24khz-d7cc33bc.th` (or any torch-saved codec), read safely, memory-mapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"codec weights not found: {path} (expected e.g. encodec_24khz-d7cc33bc.th)")
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def load_codec_file(path: str | Path, prefix: str = "", n_codebooks: int = N_FINE_CODEBOOKS) -> EncodecDecoder:
    """Load `encodec_24khz-d7cc33bc.th` (or any torch-saved codec state dict) safely, memory-mapped."""
    return load_codec_state_dict(read_codec_file(path), prefix=prefix, n_codebooks=n_codebooks)


def _random_conv(spec: ConvSpec, gen: torch.Generator, gain: float) -> tuple[torch.Tensor, ...]:
    """(g, v, bias) whose folded weight has std gain/sqrt(fan_in), so activations keep their scale."""
    # A transposed conv feeds each output sample from k/s taps of each input channel.
    fan_in = spec.in_ch * (spec.kernel // spec.stride if spec.transposed else spec.kernel)
    v = torch.randn(spec.weight_shape, generator=gen) * (gain / math.sqrt(fan_in))
    g = v.norm(dim=(1, 2), keepdim=True)  # [dim0, 1, 1]: folded weight == v
    return g, v, torch.zeros(spec.out_ch)


def _random_seanet(part: str, naming: str, gen: torch.Generator) -> Iterator[tuple[str, torch.Tensor]]:
    specs, lstm_index = decoder_specs() if part == "decoder" else encoder_specs()
    g_leaf, v_leaf = WEIGHT_NORM_LEAVES[0 if naming == "encodec" else 1]
    for spec in specs:
        # Halve both ResBlock branches (their sum doubles the variance); damp the output conv
        # so random codes decode to noise of roughly ±0.5 instead of clipping.
        gain = 0.7 if spec.sub else (0.5 if spec.out_ch == 1 else 1.0)
        g, v, bias = _random_conv(spec, gen, gain)
        stem = _conv_stem(part, spec, naming)
        yield f"{stem}.bias", bias
        yield f"{stem}.{g_leaf}", g
        yield f"{stem}.{v_leaf}", v
    hidden = 4 * LSTM_DIM  # LSTM gates i, f, g, o stacked
    bound = 1 / math.sqrt(LSTM_DIM)  # PyTorch's own LSTM init range
    for leaf in LSTM_LEAVES:
        shape = (hidden, LSTM_DIM) if leaf.startswith("weight") else (hidden,)
        values = (torch.rand(shape, generator=gen) * 2 - 1) * bound
        yield f"{_layer(part, lstm_index, naming)}.lstm.{leaf}", values


def random_codec_state_dict(seed: int, naming: str) -> dict[str, torch.Tensor]:
    """A complete random 24 kHz EnCodec state dict (encoder, decoder, 32 codebooks) with real shapes.

    naming "encodec": the encodec package's keys with weight_g/weight_v; "hf": transformers'
    EncodecModel keys with parametrizations.weight.original0/1, as current transformers saves them.
    """
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {NAMINGS}, got {naming!r}")
    gen = torch.Generator().manual_seed(seed)
    sd = dict(_random_seanet("encoder", naming, gen))
    sd.update(_random_seanet("decoder", naming, gen))
    for q in range(N_QUANTIZERS):
        # Scaled so the sum over Bark's 8 codebooks has about unit variance per latent channel.
        embed = torch.randn(CODEBOOK_SIZE, LATENT_DIM, generator=gen) / math.sqrt(N_FINE_CODEBOOKS)
        sd[_codebook_key(q, "inited", naming)] = torch.ones(1)
        sd[_codebook_key(q, "cluster_size", naming)] = torch.ones(CODEBOOK_SIZE)
        sd[_codebook_key(q, "embed", naming)] = embed
        sd[_codebook_key(q, "embed_avg", naming)] = embed.clone()  # embed = embed_avg / cluster_size
    return sd


def random_encodec_package_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """Every key `encodec.EncodecModel.encodec_model_24khz()` loads strictly (what the official bark uses)."""
    return random_codec_state_dict(seed, "encodec")
