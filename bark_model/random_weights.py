"""Random Bark weights in the real Suno and Hugging Face formats (tests, demos, benchmarks).

The audio they make is noise: they exercise every code path with real shapes and vocabularies.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from bark_model.checkpoints import HF_PREFIXES
from bark_model.codec import random_codec_state_dict
from bark_model.config import FineGPTConfig, GPTConfig
from bark_model.constants import CODEBOOK_SIZE, SEMANTIC_TO_COARSE_RATIO, SEMANTIC_VOCAB_SIZE
from bark_model.fine_gpt import FineGPT
from bark_model.gpt import GPT
from bark_model.names import (
    BUNDLED_VOCAB,
    CODEC_FILE,
    HF_CONFIG_FILE,
    HF_VOICE_INDEX,
    HF_WEIGHT_FILES,
    RANDOM_MARKER,
    SUNO_FILES,
    VOCAB_FILE,
    VOICE_FOLDERS,
)

SIZES = {"tiny": (2, 2, 64), "small": (12, 12, 768), "large": (24, 16, 1024)}  # layers, heads, width
VOCABS = {"text": (129_600, 10_048), "coarse": (12_096, 12_096), "fine": (1056, 1056)}
RANDOM_VOICES = ("v2/en_speaker_0", "v2/en_speaker_1", "announcer")


def model_configs(size: str) -> dict:
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    n_layer, n_head, n_embd = SIZES[size]
    configs = {}
    for role, (v_in, v_out) in VOCABS.items():
        cls = FineGPTConfig if role == "fine" else GPTConfig
        configs[role] = cls(
            n_layer=n_layer, n_head=n_head, n_embd=n_embd, input_vocab_size=v_in, output_vocab_size=v_out
        )
    return configs


def random_model(role: str, config: GPTConfig, seed: int) -> torch.nn.Module:
    """nanoGPT's initialisation (normal 0.02, LayerNorms at 1/0), reproducible from `seed`."""
    torch.manual_seed(seed)
    model: GPT | FineGPT
    if role == "fine":
        assert isinstance(config, FineGPTConfig), f"role 'fine' needs a FineGPTConfig, got {type(config).__name__}"
        model = FineGPT(config)
    else:
        model = GPT(config)
    for name, param in model.named_parameters():
        if "ln_" in name:
            torch.nn.init.ones_(param) if name.endswith("weight") else torch.nn.init.zeros_(param)
        else:
            torch.nn.init.normal_(param, std=0.02)
    return model


def random_voice(seed: int, n_semantic: int) -> dict:
    """A voice prompt with the shipped files' shapes and length relation."""
    rng = np.random.default_rng(seed)
    frames = int(np.floor(n_semantic * SEMANTIC_TO_COARSE_RATIO / 2))
    fine = rng.integers(0, CODEBOOK_SIZE, size=(8, frames), dtype=np.int64)
    return {
        "semantic_prompt": rng.integers(0, SEMANTIC_VOCAB_SIZE, size=n_semantic, dtype=np.int64),
        "coarse_prompt": fine[:2].copy(),
        "fine_prompt": fine.astype(np.int32),
    }


def make_random_weights(out_dir: str | Path, size: str = "tiny", layout: str = "suno", seed: int = 0) -> Path:
    """Write a complete weights directory; returns its path."""
    if layout not in ("suno", "hf"):
        raise ValueError(f"layout must be 'suno' or 'hf', got {layout!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs = model_configs(size)
    models = {role: random_model(role, cfg, seed + i) for i, (role, cfg) in enumerate(configs.items())}
    codec_naming = "encodec" if layout == "suno" else "hf"
    codec = random_codec_state_dict(seed + 7, codec_naming)
    vocab = resources.files("bark_model.assets").joinpath(BUNDLED_VOCAB)
    with resources.as_file(vocab) as vocab_path:
        shutil.copyfile(vocab_path, out / VOCAB_FILE)
    voices = {name: random_voice(seed + 100 + i, 250 + 40 * i) for i, name in enumerate(RANDOM_VOICES)}
    if layout == "suno":
        _write_suno(out, size, models, codec, voices)
    else:
        _write_hf(out, configs, models, codec, voices)
    (out / RANDOM_MARKER).write_text(
        f"Random {size} Bark weights ({layout} layout, seed {seed}) made by `barkpipe weights make-random`.\n"
        "They have the real shapes and formats, but what they say is noise.\n"
    )
    return out


def _write_suno(out: Path, size: str, models: dict, codec: dict, voices: dict) -> None:
    names = SUNO_FILES["large" if size == "large" else "small"]
    for role, model in models.items():
        # Raw training checkpoints: `_orig_mod.` (torch.compile) and `transformer.` prefixes,
        # hyperparameters in model_args, a numpy scalar loss: exactly what Suno's files hold.
        state = {}
        for key, value in model.state_dict().items():
            inner = key if key.startswith(("lm_head", "lm_heads")) else f"transformer.{key}"
            state[f"_orig_mod.{inner}"] = value
        torch.save(
            {
                "model_args": model.config.to_model_args(),
                "model": state,
                "best_val_loss": np.float64(0.0),
                "iter_num": 0,
            },
            out / names[role],
        )
    torch.save(codec, out / CODEC_FILE)
    for name, arrays in voices.items():
        path = out / VOICE_FOLDERS[0] / f"{name}.npz"  # Suno's voices/
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)


def _hf_sub_config(config: GPTConfig, model_type: str) -> dict:
    sub = {
        "model_type": model_type,
        "block_size": config.block_size,
        "input_vocab_size": config.input_vocab_size,
        "output_vocab_size": config.output_vocab_size,
        "num_layers": config.n_layer,
        "num_heads": config.n_head,
        "hidden_size": config.n_embd,
        "dropout": config.dropout,
        "bias": config.bias,
    }
    if isinstance(config, FineGPTConfig):
        sub.update(n_codes_total=config.n_codes_total, n_codes_given=config.n_codes_given, tie_word_embeddings=True)
    return sub


HF_CODEC_CONFIG = {
    "model_type": "encodec", "target_bandwidths": [1.5, 3.0, 6.0, 12.0, 24.0], "sampling_rate": 24000,
    "audio_channels": 1, "normalize": False, "chunk_length_s": None, "overlap": None, "hidden_size": 128,
    "num_filters": 32, "num_residual_layers": 1, "upsampling_ratios": [8, 5, 4, 2], "norm_type": "weight_norm",
    "kernel_size": 7, "last_kernel_size": 7, "residual_kernel_size": 3, "dilation_growth_rate": 2,
    "use_causal_conv": True, "pad_mode": "reflect", "compress": 2, "num_lstm_layers": 2, "trim_right_ratio": 1.0,
    "codebook_size": 1024, "codebook_dim": 128, "use_conv_shortcut": True,
}  # fmt: skip


# The hub's generation_config.json (sampling values as published: 0.7 / 0.7 / 0.5, top-k 50).
HF_GENERATION_CONFIG = {
    "model_type": "bark", "sample_rate": 24000, "codebook_size": 1024,
    "semantic_config": {
        "max_new_tokens": 768, "do_sample": True, "temperature": 0.7, "top_k": 50, "top_p": 1.0,
        "renormalize_logits": True, "eos_token_id": 10000, "text_encoding_offset": 10048,
        "text_pad_token": 129595, "semantic_infer_token": 129599, "semantic_vocab_size": 10000,
        "max_input_semantic_length": 256, "semantic_rate_hz": 49.9, "min_eos_p": None,
    },
    "coarse_acoustics_config": {
        "do_sample": True, "temperature": 0.7, "top_k": 50, "top_p": 1.0, "renormalize_logits": True,
        "coarse_semantic_pad_token": 12048, "coarse_rate_hz": 75, "n_coarse_codebooks": 2,
        "coarse_infer_token": 12050, "max_coarse_input_length": 256, "max_coarse_history": 630,
        "sliding_window_len": 60,
    },
    "fine_acoustics_config": {
        "temperature": 0.5, "max_fine_history_length": 512, "max_fine_input_length": 1024, "n_fine_codebooks": 8,
    },
}  # fmt: skip


def _write_hf(out: Path, configs: dict, models: dict, codec: dict, voices: dict) -> None:
    from safetensors.torch import save_file

    from bark_model.checkpoints import _HF_RENAMES

    tensors = {}
    for role, model in models.items():
        for key, value in model.state_dict().items():
            name = key
            for hf_name, ours in reversed(_HF_RENAMES):
                name = name.replace(ours, hf_name)
            if role == "fine" and name.startswith("lm_heads."):
                continue  # tied to input_embeds_layers.{j+1}; safetensors stores shared tensors once
            tensors[HF_PREFIXES[role] + name] = value.contiguous()
        if role != "fine":
            # HF saves each causal layer's lower-triangular mask as a persistent buffer.
            mask = torch.tril(torch.ones(1024, 1024, dtype=torch.bool)).view(1, 1, 1024, 1024)
            for i in range(model.config.n_layer):
                tensors[f"{HF_PREFIXES[role]}layers.{i}.attn.bias"] = mask.clone()
    tensors.update({HF_PREFIXES["codec"] + k: v.contiguous() for k, v in codec.items()})
    save_file(tensors, str(out / HF_WEIGHT_FILES[0]), metadata={"format": "pt"})
    config = {
        "architectures": ["BarkModel"],
        "model_type": "bark",
        "semantic_config": _hf_sub_config(configs["text"], "semantic"),
        "coarse_acoustics_config": _hf_sub_config(configs["coarse"], "coarse_acoustics"),
        "fine_acoustics_config": _hf_sub_config(configs["fine"], "fine_acoustics"),
        "codec_config": HF_CODEC_CONFIG,
    }
    (out / HF_CONFIG_FILE).write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps(HF_GENERATION_CONFIG, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "BertTokenizer", "do_lower_case": False, "strip_accents": None,
         "tokenize_chinese_chars": True, "model_max_length": 512}, indent=2))  # fmt: skip
    index: dict[str, str | dict[str, str]] = {"repo_or_path": str(out)}
    for name, arrays in voices.items():
        entry = {}
        for key, array in arrays.items():
            rel = Path(VOICE_FOLDERS[1]) / f"{name}_{key}.npy"  # speaker_embeddings/
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(out / rel, array)
            entry[key] = str(rel)
        index[name] = entry
    (out / HF_VOICE_INDEX).write_text(json.dumps(index, indent=2))


# -- voice cloning: HuBERT (transformers HubertModel layout) and the community quantizer ------------------

# Tiny: real conv strides (so 16 kHz -> 50 frames/s) and enough layers for the quantizer's layer 9.
TINY_HUBERT = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, conv_dim=(32,) * 7,
                   num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)  # fmt: skip
TINY_QUANTIZER = dict(input_size=32, hidden_size=32, version=0)
BASE_QUANTIZER = dict(input_size=768, hidden_size=1024, version=1)  # quantifier_V1_hubert_base_ls960_23.pth


def random_hubert(config, seed: int) -> torch.nn.Module:
    """A Hubert with transformers-like initialisation (normal 0.02 Linears, Kaiming convs, norms at 1/0)."""
    from bark_model.hubert import Hubert

    torch.manual_seed(seed)
    model = Hubert(config)
    for name, param in model.named_parameters():
        if "norm" in name:
            torch.nn.init.ones_(param) if name.endswith("weight") else torch.nn.init.zeros_(param)
        elif name.endswith("bias"):
            torch.nn.init.zeros_(param)
        elif param.ndim == 3:
            torch.nn.init.kaiming_normal_(param)
        else:
            torch.nn.init.normal_(param, std=0.02)
    return model.eval()


def hubert_hf_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our Hubert's weights under transformers' names, the pos conv as weight norm (g, v) as it saves them."""
    from bark_model.hubert import POS_CONV, WEIGHT_NORM_DIM

    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    weight = tensors.pop(POS_CONV + "weight")  # [H, H/groups, K]
    dims = [d for d in range(weight.ndim) if d != WEIGHT_NORM_DIM]
    tensors[POS_CONV + "parametrizations.weight.original0"] = weight.norm(dim=dims, keepdim=True)  # g [1, 1, K]
    tensors[POS_CONV + "parametrizations.weight.original1"] = weight.clone()  # v; g * v / ||v|| == weight
    return tensors


def make_random_cloning_weights(out_dir: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write `hubert/` (config.json + model.safetensors) and `quantizer.pth` into a weights directory."""
    from safetensors.torch import save_file

    from bark_model.cloning import HUBERT_DIR, QUANTIZER_FILE
    from bark_model.hubert import CONFIG_FILE, WEIGHTS_FILE, HubertConfig
    from bark_model.semantic_quantizer import QuantizerConfig, SemanticQuantizer, save_quantizer

    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    hubert_config = HubertConfig(**TINY_HUBERT) if size == "tiny" else HubertConfig()  # type: ignore[arg-type]
    out = Path(out_dir)
    (out / HUBERT_DIR).mkdir(parents=True, exist_ok=True)
    hubert = random_hubert(hubert_config, seed + 20)
    save_file(hubert_hf_tensors(hubert), str(out / HUBERT_DIR / WEIGHTS_FILE), metadata={"format": "pt"})
    (out / HUBERT_DIR / CONFIG_FILE).write_text(json.dumps(hubert_config.to_hf(), indent=2))
    torch.manual_seed(seed + 21)
    quantizer = SemanticQuantizer(QuantizerConfig(**(TINY_QUANTIZER if size == "tiny" else BASE_QUANTIZER)))
    save_quantizer(quantizer, out / QUANTIZER_FILE)
    return out
