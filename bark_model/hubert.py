"""HuBERT base encoder (post-LayerNorm, as transformers' HubertModel computes it), loading its HF-layout weights."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
LEGACY_WEIGHTS_FILE = "pytorch_model.bin"  # older hub exports; read with weights_only=True
SAMPLE_RATE = 16_000  # HuBERT's input rate
HF_PREFIX = "hubert."  # keys of a HubertFor* head model's encoder
# Weight norm on the positional conv as (g, v) leaves: old torch.nn.utils.weight_norm, then the parametrization API.
POS_CONV = "encoder.pos_conv_embed.conv."
WEIGHT_NORM_LEAVES = (
    ("weight_g", "weight_v"),
    ("parametrizations.weight.original0", "parametrizations.weight.original1"),
)
WEIGHT_NORM_DIM = 2  # transformers normalises the pos conv weight [H, H/groups, K] per kernel tap
# Saved by checkpoints trained with SpecAugment; only used for masking during training.
UNUSED_KEYS = ("masked_spec_embed",)
# HF config values this implementation computes; anything else is refused by name.
SUPPORTED = {
    "feat_extract_norm": "group",
    "feat_extract_activation": "gelu",
    "hidden_act": "gelu",
    "do_stable_layer_norm": False,
    "conv_pos_batch_norm": False,
}


@dataclass(frozen=True)
class HubertConfig:
    """Shapes of a HuBERT encoder; field names are transformers' HubertConfig keys (defaults: hubert-base-ls960)."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    conv_dim: tuple[int, ...] = (512,) * 7
    conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    feat_proj_layer_norm: bool = True
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride) > 0:
            raise ValueError(
                f"conv_dim, conv_kernel and conv_stride need the same non-zero length, got "
                f"{len(self.conv_dim)}, {len(self.conv_kernel)}, {len(self.conv_stride)}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by {self.num_attention_heads} heads")
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by {self.num_conv_pos_embedding_groups} "
                "positional conv groups"
            )

    @property
    def receptive_field(self) -> int:
        """Fewest input samples that give one output frame."""
        size = 1
        for kernel, stride in reversed(list(zip(self.conv_kernel, self.conv_stride, strict=True))):
            size = (size - 1) * stride + kernel
        return size

    @classmethod
    def from_hf(cls, raw: dict, source: str = "config.json") -> HubertConfig:
        """From a HubertModel config.json; refuses variants this encoder does not compute."""
        if raw.get("model_type", "hubert") != "hubert":
            raise ValueError(f"{source}: model_type is {raw.get('model_type')!r}, expected 'hubert'")
        for key, want in SUPPORTED.items():
            if key in raw and raw[key] != want:
                raise ValueError(f"{source}: {key}={raw[key]!r} is not supported (only {want!r}, as hubert-base)")
        values = {f.name: raw[f.name] for f in fields(cls) if f.name in raw}
        for key in ("conv_dim", "conv_kernel", "conv_stride"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def to_hf(self) -> dict:
        """The config.json of a transformers HubertModel with these shapes (dropouts 0: inference)."""
        out = {"model_type": "hubert", "architectures": ["HubertModel"], **asdict(self), **SUPPORTED}
        out.update({k: list(out[k]) for k in ("conv_dim", "conv_kernel", "conv_stride")})
        out.update(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0)
        out.update(layerdrop=0.0, mask_time_prob=0.0)
        return out


class ConvLayer(nn.Module):
    """One feature-extractor conv; the first also has a per-channel GroupNorm (groups == channels)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, group_norm: bool):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, bias=bias)
        # transformers keeps GroupNorm's default eps (1e-5) here, not layer_norm_eps.
        self.layer_norm = nn.GroupNorm(c_out, c_out, affine=True) if group_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, L] -> [B, C', L']
        x = self.conv(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return F.gelu(x)


class FeatureExtractor(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        dims = (1, *config.conv_dim)
        self.conv_layers = nn.ModuleList(
            ConvLayer(dims[i], dims[i + 1], k, s, config.conv_bias, i == 0)
            for i, (k, s) in enumerate(zip(config.conv_kernel, config.conv_stride, strict=True))
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # [B, N] -> [B, C, T]
        x = audio[:, None]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        c = config.conv_dim[-1]
        self.layer_norm = nn.LayerNorm(c, eps=config.layer_norm_eps) if config.feat_proj_layer_norm else None
        self.projection = nn.Linear(c, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C] -> [B, T, H]
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.projection(x)


class PositionalConv(nn.Module):
    """Grouped conv over time added to the features; its weight-normed weight is folded at load time."""

    def __init__(self, config: HubertConfig):
        super().__init__()
        k = config.num_conv_pos_embeddings
        h = config.hidden_size
        self.conv = nn.Conv1d(h, h, k, padding=k // 2, groups=config.num_conv_pos_embedding_groups)
        self.trim = 1 if k % 2 == 0 else 0  # an even kernel with padding k//2 makes one frame too many

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, H] -> [B, T, H]
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[:, :, : -self.trim]
        return F.gelu(y).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        h = config.hidden_size
        self.n_head = config.num_attention_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(h, h) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, H]
        b, t, h = x.shape
        q, k, v = (
            p(x).view(b, t, self.n_head, h // self.n_head).transpose(1, 2)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        y = F.scaled_dot_product_attention(q, k, v)  # [B, nh, T, hd], bidirectional, scale 1/sqrt(hd)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, h))


class FeedForward(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        self.intermediate_dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output_dense = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_dense(F.gelu(self.intermediate_dense(x)))


class EncoderLayer(nn.Module):
    """Post-LayerNorm block: x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, config: HubertConfig):
        super().__init__()
        self.attention = Attention(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(x + self.attention(x))
        return self.final_layer_norm(x + self.feed_forward(x))


class Encoder(nn.Module):
    def __init__(self, config: HubertConfig):
        super().__init__()
        self.pos_conv_embed = PositionalConv(config)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))


class Hubert(nn.Module):
    """Raw 16 kHz audio [B, N] -> hidden states [B, T, H] at 50 frames per second (hop 320 for base)."""

    def __init__(self, config: HubertConfig):
        super().__init__()
        self.config = config
        self.feature_extractor = FeatureExtractor(config)
        self.feature_projection = FeatureProjection(config)
        self.encoder = Encoder(config)

    def forward(self, audio: torch.Tensor, output_layer: int | None = None) -> torch.Tensor:
        """Hidden states after `output_layer` layers (transformers' hidden_states[output_layer]; None: all).

        0 is the normalised input of the first layer; layers past `output_layer` are not run.
        """
        n_layers = self.config.num_hidden_layers
        output_layer = n_layers if output_layer is None else output_layer
        if not 0 <= output_layer <= n_layers:
            raise ValueError(f"output_layer must lie in 0..{n_layers}, got {output_layer}")
        if audio.ndim != 2 or audio.shape[-1] < self.config.receptive_field:
            raise ValueError(
                f"audio must be [B, N] with N >= {self.config.receptive_field} samples, got {list(audio.shape)}"
            )
        x = self.feature_projection(self.feature_extractor(audio).transpose(1, 2))  # [B, T, H]
        x = self.encoder.layer_norm(x + self.encoder.pos_conv_embed(x))
        for layer in self.encoder.layers[:output_layer]:
            x = layer(x)
        return x


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace the pos conv's (g, v) pair, in either naming, by the weight they stand for: g * v / ||v||."""
    state = dict(state)
    for g_leaf, v_leaf in WEIGHT_NORM_LEAVES:
        g_key, v_key = POS_CONV + g_leaf, POS_CONV + v_leaf
        if g_key in state and v_key in state:
            g, v = state.pop(g_key), state.pop(v_key)
            dims = [d for d in range(v.ndim) if d != WEIGHT_NORM_DIM]
            state[POS_CONV + "weight"] = g * v / v.norm(dim=dims, keepdim=True)
    return state


def load_hubert_state(model: Hubert, state: dict[str, torch.Tensor], source: str) -> Hubert:
    """Strict load: every key of the file is used (bar UNUSED_KEYS) and every parameter is set."""
    if state and all(k.startswith(HF_PREFIX) for k in state):
        state = {k[len(HF_PREFIX) :]: v for k, v in state.items()}
    state = {k: v for k, v in fold_weight_norm(state).items() if k not in UNUSED_KEYS}
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{source} does not match a HuBERT encoder of its config: missing {missing[:6]}, "
            f"unexpected {unexpected[:6]}"
        )
    wrong = [k for k, p in model.state_dict().items() if tuple(state[k].shape) != tuple(p.shape)]
    if wrong:
        k = wrong[0]
        raise ValueError(
            f"{source}: {k} has shape {list(state[k].shape)}, its config needs {list(model.state_dict()[k].shape)}"
        )
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return model


def hubert_weights_file(folder: str | Path) -> Path:
    """The folder's model.safetensors, else its pytorch_model.bin; FileNotFoundError naming both."""
    folder = Path(folder)
    for name in (WEIGHTS_FILE, LEGACY_WEIGHTS_FILE):
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"HuBERT weights need {folder / WEIGHTS_FILE} (or {LEGACY_WEIGHTS_FILE})")


def load_hubert(folder: str | Path, device: str | torch.device = "cpu") -> Hubert:
    """A HubertModel folder (config.json + model.safetensors, as `facebook/hubert-base-ls960`) -> Hubert, eval."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"HuBERT weights need {folder / CONFIG_FILE} (a transformers HubertModel folder)")
    weights = hubert_weights_file(folder)
    try:
        raw = json.loads((folder / CONFIG_FILE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{folder / CONFIG_FILE} is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{folder / CONFIG_FILE} must hold a JSON object")
    config = HubertConfig.from_hf(raw, str(folder / CONFIG_FILE))
    with torch.device("meta"):
        model = Hubert(config)
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights), device="cpu")
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    return load_hubert_state(model, state, str(weights)).to(device).eval()
