"""Find and load Bark weights from a directory in the Suno or the Hugging Face layout, safely."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bark_model.config import FineGPTConfig, GPTConfig
from bark_model.fine_gpt import FineGPT
from bark_model.gpt import GPT
from bark_model.names import (
    CODEC_FILE,
    HF_CONFIG_FILE,
    HF_CONFIG_KEYS,
    HF_TOKENIZER_FILES,
    HF_WEIGHT_FILES,
    SUNO_FILES,
    VOCAB_FILE,
)

HF_PREFIXES = {"text": "semantic.", "coarse": "coarse_acoustics.", "fine": "fine_acoustics.", "codec": "codec_model."}
FIX = (
    "download them with `barkpipe weights download --model large DIR`, "
    "or make test weights with `barkpipe weights make-random`"
)

# HF module names -> ours (which are Suno's without `transformer.`), applied in this order.
_HF_RENAMES = (
    ("input_embeds_layers.", "wtes."),
    ("input_embeds_layer.", "wte."),
    ("position_embeds_layer.", "wpe."),
    ("layers.", "h."),
    ("layernorm_1.", "ln_1."),
    ("layernorm_2.", "ln_2."),
    ("layernorm_final.", "ln_f."),
    ("att_proj.", "c_attn."),
    ("out_proj.", "c_proj."),
    ("in_proj.", "c_fc."),
)


@dataclass(frozen=True)
class WeightsLayout:
    """What a weights directory holds: `suno` (.pt per model) or `hf` (one BarkModel file)."""

    root: Path
    kind: str  # "suno" | "hf"
    size: str  # "large" | "small" | "custom" (read from the hyperparameters for hf)
    files: dict  # role -> Path

    @property
    def weight_files(self) -> list[Path]:
        return sorted(set(self.files.values()))


def detect_layout(root: str | Path) -> WeightsLayout:
    """Decide the layout from the files present (never from the directory's name)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"weights directory not found: {root}; {FIX}")
    hf_weights = [root / f for f in HF_WEIGHT_FILES if (root / f).is_file()]
    if (root / HF_CONFIG_FILE).is_file() and hf_weights:
        files = {"model": hf_weights[0], "config": root / HF_CONFIG_FILE, "tokenizer": _hf_tokenizer(root)}
        return WeightsLayout(root, "hf", "custom", files)
    for size, names in SUNO_FILES.items():
        if all((root / n).is_file() for n in names.values()):
            files = {role: root / name for role, name in names.items()}
            for role, name in (("codec", CODEC_FILE), ("tokenizer", VOCAB_FILE)):
                if not (root / name).is_file():
                    raise FileNotFoundError(f"{root} has the Suno {size} models but no {name}; {FIX}")
                files[role] = root / name
            return WeightsLayout(root, "suno", size, files)
    present = sorted(p.name for p in root.iterdir())[:12]
    raise FileNotFoundError(
        f"{root} holds no Bark weights: expected text_2.pt/coarse_2.pt/fine_2.pt (or text.pt/coarse.pt/fine.pt) "
        f"with {CODEC_FILE} and vocab.txt, or config.json with model.safetensors/pytorch_model.bin; "
        f"found {present or 'nothing'}; {FIX}"
    )


def _hf_tokenizer(root: Path) -> Path:
    for name in HF_TOKENIZER_FILES:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root} has a Hugging Face Bark model but no tokenizer.json or vocab.txt; {FIX}")


def _safe_numpy_globals() -> list:
    """Numpy objects the Suno pickles hold (a numpy scalar `best_val_loss`); data, not code."""
    from numpy.core import multiarray  # noqa: F401  (the old module path the files name)

    scalar = np.core.multiarray.scalar
    allowed = [np.dtype, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    allowed += [type(np.dtype(t)) for t in ("float64", "float32", "int64")]
    import _codecs

    allowed.append(_codecs.encode)
    return allowed


def load_torch_file(path: Path) -> dict:
    """torch.load with weights_only=True (never runs code), memory-mapped when possible."""
    import warnings

    with torch.serialization.safe_globals(_safe_numpy_globals()), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy.core's rename notice
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            # Legacy (pre-zip) files cannot be memory-mapped.
            return torch.load(path, map_location="cpu", weights_only=True)


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def suno_state_dict(checkpoint: dict, path: Path) -> tuple[dict, dict]:
    """(model_args, state dict with our names) from a raw Suno checkpoint."""
    for key in ("model_args", "model"):
        if key not in checkpoint:
            raise ValueError(f"{path} is not a Suno Bark checkpoint: it has no {key!r} entry")
    state = _strip(_strip(checkpoint["model"], "_orig_mod."), "transformer.")
    # The causal-mask buffers are not weights; some exports carry them.
    return dict(checkpoint["model_args"]), {k: v for k, v in state.items() if not k.endswith(".attn.bias")}


def hf_state_dict(full: dict, role: str) -> dict:
    """One sub-model's tensors from a BarkModel state dict, renamed to ours."""
    prefix = HF_PREFIXES[role]
    state = {}
    for key, value in full.items():
        if not key.startswith(prefix) or key.endswith(".attn.bias"):
            continue
        name = key[len(prefix) :]
        for old, new in _HF_RENAMES:
            name = name.replace(old, new)
        state[name] = value
    return state


def build_model(role: str, config: GPTConfig, state: dict, source: Path) -> torch.nn.Module:
    """Build on the meta device and adopt the loaded tensors (no second copy), strictly."""
    model: GPT | FineGPT
    with torch.device("meta"):
        if role == "fine":
            assert isinstance(config, FineGPTConfig), f"role 'fine' needs a FineGPTConfig, got {type(config).__name__}"
            model = FineGPT(config)
        else:
            model = GPT(config)
    if isinstance(model, FineGPT):
        _retie_fine(state, model.config)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{source}: {role} weights do not match a {role} model of this shape: "
            f"missing {missing[:6]}{'...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}"
        )
    model.load_state_dict(state, strict=True, assign=True)
    if isinstance(model, FineGPT):
        model.tie_weights()
    return model.eval()


def _retie_fine(state: dict, config: FineGPTConfig) -> None:
    """Head j and table j+1 share a tensor; files may store only one of each pair."""
    for j in range(config.n_codes_total - config.n_codes_given):
        head, table = f"lm_heads.{j}.weight", f"wtes.{j + config.n_codes_given}.weight"
        if head not in state and table in state:
            state[head] = state[table]
        elif table not in state and head in state:
            state[table] = state[head]


def load_models(layout: WeightsLayout) -> tuple[dict[str, torch.nn.Module], dict]:
    """The text, coarse and fine models (CPU, as stored) and the codec's state dict."""
    if layout.kind == "suno":
        models = {}
        for role in ("text", "coarse", "fine"):
            args, state = suno_state_dict(load_torch_file(layout.files[role]), layout.files[role])
            cls = FineGPTConfig if role == "fine" else GPTConfig
            models[role] = build_model(role, cls.from_model_args(args), state, layout.files[role])
        return models, load_torch_file(layout.files["codec"])
    config = json.loads(layout.files["config"].read_text())
    full = load_full_hf(layout.files["model"])
    models = {}
    for role, key in HF_CONFIG_KEYS.items():
        if key not in config:
            raise ValueError(f"{layout.files['config']} has no {key!r}; is this a Bark config.json?")
        cls = FineGPTConfig if role == "fine" else GPTConfig
        models[role] = build_model(role, cls.from_hf(config[key]), hf_state_dict(full, role), layout.files["model"])
    prefix = HF_PREFIXES["codec"]
    codec = {k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)}
    if not codec:
        raise ValueError(f"{layout.files['model']} holds no codec_model.* tensors (the EnCodec decoder)")
    return models, codec


def load_full_hf(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    return load_torch_file(path)


def fingerprint(layout: WeightsLayout) -> str:
    """A cheap identity of the weight files: names, sizes and hashes of their first and last MiB."""
    digest = hashlib.sha256()
    for path in layout.weight_files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}:".encode())
        with path.open("rb") as f:
            digest.update(f.read(1 << 20))
            f.seek(max(0, size - (1 << 20)))
            digest.update(f.read(1 << 20))
    return "sha256:" + digest.hexdigest()[:16]
