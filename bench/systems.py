"""The three systems the engine benchmark times, behind one small interface: load once, run a batch.

Every adapter turns the same texts into waveforms with the same number of semantic tokens and
reports wall time, per-stage time and the codes it made. Only torch, numpy, tokenizers and
transformers are needed (no Ray, typer or pydantic), so the file runs on a bare GPU machine.
"""

from __future__ import annotations

import importlib.machinery
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bark_model.constants import SAMPLE_RATE, SEMANTIC_RATE_HZ
from bark_model.semantic import max_tokens_for_duration

STAGES = ("semantic", "coarse", "fine", "decode")
# Distinct sentences of ordinary length; row i speaks TEXTS[i % len(TEXTS)] in every system.
TEXTS = (
    "The quick brown fox jumps over the lazy dog while the band plays on.",
    "Hello there, this is a benchmark of three Bark implementations side by side.",
    "She sells sea shells by the sea shore, and the shells she sells are surely seashells.",
    "In the beginning the universe was created, which made a lot of people very angry.",
    "Please remember to turn off the lights [laughs] when you leave the room tonight.",
    "A journey of a thousand miles begins with a single step, or so they say.",
    "We measured audio seconds per wall second, end to end, on identical random weights.",
    "Numbers like 1, 2 and 3 are read out loud; so are dates such as May 5th.",
)


def texts_for(batch: int) -> list[str]:
    return [TEXTS[i % len(TEXTS)] for i in range(batch)]


def duration_for_tokens(n_tokens: int) -> float:
    """A max_duration_s that stops Bark's duration check after exactly `n_tokens` (ours and official)."""
    duration = (n_tokens - 0.5) / SEMANTIC_RATE_HZ  # halfway between the n-th and (n+1)-th token
    assert max_tokens_for_duration(duration) == n_tokens, f"no duration gives exactly {n_tokens} tokens"
    return duration


@dataclass
class Run:
    """One timed batch: wall seconds, seconds per stage and what came out."""

    wall_s: float
    stage_s: dict
    audio_s: float  # seconds of audio, summed over rows
    semantic_tokens: int  # summed over rows
    coarse_tokens: int  # both codebooks counted, summed over rows
    fine_frames: int  # summed over rows
    n_semantic_per_row: list = field(default_factory=list)
    codes: dict | None = None  # row 0's {"semantic", "coarse", "fine"} (greedy agreement runs)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class OursSystem:
    """barkpipe's BarkEngine (Suno-layout weights)."""

    name = "ours"

    def __init__(self, weights: Path, device: torch.device, precision: str):
        from bark_model import BarkEngine

        self.device = device
        self.precision = precision
        self.engine = BarkEngine.from_dir(weights, device=str(device), precision=precision)

    def run(self, batch: int, n_tokens: int, greedy: bool = False) -> Run:
        from bark_model import GenerationRequest
        from bark_model.request import Sampling

        duration = duration_for_tokens(n_tokens)
        stage = {"semantic": Sampling(0), "coarse": Sampling(0), "fine": Sampling(0)} if greedy else {}
        requests = [
            GenerationRequest(text=t, seed=i, max_duration_s=duration, allow_early_stop=False, **stage)
            for i, t in enumerate(texts_for(batch))
        ]
        sync(self.device)
        start = time.perf_counter()
        results = self.engine.generate(requests, batch_size=batch)
        sync(self.device)
        wall = time.perf_counter() - start
        r0 = results[0]
        return Run(
            wall_s=wall,
            stage_s={k: r0.timings[k] for k in STAGES},  # one batch: the timings are the batch's
            audio_s=sum(r.duration_s for r in results),
            semantic_tokens=sum(len(r.semantic) for r in results),
            coarse_tokens=sum(r.coarse.size for r in results),
            fine_frames=sum(r.fine.shape[1] for r in results),
            n_semantic_per_row=[len(r.semantic) for r in results],
            codes={"semantic": r0.semantic, "coarse": r0.coarse, "fine": r0.fine},
        )


class HFSystem:
    """transformers' BarkModel.generate, batched (HF-layout weights, same random values)."""

    name = "hf"

    def __init__(self, weights: Path, device: torch.device, precision: str):
        import transformers
        from transformers import BarkModel, BertTokenizer

        transformers.logging.set_verbosity_error()  # its per-call deprecation notes would bury the table

        dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        if precision not in dtypes:
            raise ValueError(f"transformers runs fp32, fp16 or bf16, got {precision!r}")
        self.device = device
        self.precision = precision
        kwargs = {"dtype": dtypes[precision]}
        # Bark's documented speed-ups in transformers: half precision and Flash Attention 2
        # (its only attention besides eager); FA2 only where the flash_attn package is installed.
        self.attention = "eager"
        if device.type == "cuda" and precision != "fp32" and _importable("flash_attn"):
            kwargs["attn_implementation"] = self.attention = "flash_attention_2"
        # .to(dtype) too: transformers before 4.56 ignores `dtype=` (it was `torch_dtype=`).
        self.model = BarkModel.from_pretrained(str(weights), **kwargs).to(device=device, dtype=kwargs["dtype"]).eval()
        self.tokenizer = BertTokenizer(str(Path(weights) / "vocab.txt"), do_lower_case=False)
        self.timings: dict = {}
        self.outputs: dict = {}
        self._wrap_stages()

    def _wrap_stages(self) -> None:
        """Time the calls BarkModel.generate makes, by shadowing them on the instances."""
        targets = {
            "semantic": (self.model.semantic, "generate"),
            "coarse": (self.model.coarse_acoustics, "generate"),
            "fine": (self.model.fine_acoustics, "generate"),
            "decode": (self.model, "codec_decode"),
        }
        for stage, (owner, attr) in targets.items():
            original = getattr(owner, attr)

            def timed(*args, _fn=original, _stage=stage, **kwargs):
                start = time.perf_counter()
                out = _fn(*args, **kwargs)
                sync(self.device)
                self.timings[_stage] = time.perf_counter() - start
                self.outputs[_stage] = out
                return out

            setattr(owner, attr, timed)

    def run(self, batch: int, n_tokens: int, greedy: bool = False) -> Run:
        texts = texts_for(batch)
        sync(self.device)
        start = time.perf_counter()
        # What BarkProcessor does: mBERT ids without special tokens, padded to Bark's 256 slots.
        inputs = self.tokenizer(texts, add_special_tokens=False, padding="max_length", max_length=256,
                                truncation=True, return_attention_mask=True, return_tensors="pt")  # fmt: skip
        with torch.inference_mode():
            # Exactly n semantic tokens: min_new_tokens masks the EOS id (10000) until n tokens
            # exist and max_new_tokens stops there; min_eos_p=None turns off Bark's EOS shortcut.
            audio = self.model.generate(
                input_ids=inputs["input_ids"].to(self.device),
                attention_mask=inputs["attention_mask"].to(self.device),
                semantic_max_new_tokens=n_tokens,
                semantic_min_new_tokens=n_tokens,
                min_eos_p=None,
                do_sample=not greedy,
            )
        sync(self.device)
        wall = time.perf_counter() - start
        semantic, coarse, fine = (self.outputs[k] for k in ("semantic", "coarse", "fine"))
        return Run(
            wall_s=wall,
            stage_s={k: self.timings[k] for k in STAGES},
            audio_s=audio.shape[0] * audio.shape[-1] / SAMPLE_RATE,
            semantic_tokens=semantic.numel(),  # [B, S]
            coarse_tokens=coarse.numel(),  # [B, 2 * T], codebooks interleaved
            fine_frames=fine.shape[0] * fine.shape[-1],  # [B, 8, T]
            n_semantic_per_row=[semantic.shape[1]] * batch,
            codes={"semantic": semantic[0].cpu().numpy(), "coarse": coarse[0].cpu().numpy(), "fine": fine[0].cpu().numpy()},
        )


class OfficialSystem:
    """suno-ai/bark 0.1.5 (`bark.generation`): it has no batch dimension, so a batch of B is its
    B texts one after another (times and counts summed).

    precision "int8" (CPU) is the one line a user can add: torch.ao.quantization.quantize_dynamic
    on every nn.Linear of the three GPTs (int8 weights and activations, fbgemm/oneDNN kernels).
    """

    name = "official"

    def __init__(self, weights: Path, device: torch.device, precision: str):
        if precision not in ("fp32", "int8"):
            raise ValueError(f"the official package runs fp32 (it autocasts itself on CUDA) or int8 "
                             f"(quantize_dynamic, CPU), got {precision!r}")  # fmt: skip
        if precision == "int8" and device.type != "cpu":
            raise ValueError(f"quantize_dynamic's int8 kernels run on CPU only, got device {device}")
        self.device = device
        self.precision = precision
        self.generation = load_official(Path(weights), device)
        if precision == "int8":
            import warnings

            from torch import nn

            models = self.generation.models
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=UserWarning)  # torch 2.13: quantized tensors deprecated
                quantize = lambda m: torch.ao.quantization.quantize_dynamic(m, {nn.Linear}, torch.qint8)  # noqa: E731
                models["text"]["model"] = quantize(models["text"]["model"])
                models["coarse"], models["fine"] = quantize(models["coarse"]), quantize(models["fine"])

    def run(self, batch: int, n_tokens: int, greedy: bool = False) -> Run:
        runs = [self._one(text, n_tokens, greedy) for text in texts_for(batch)]
        return Run(
            wall_s=sum(r.wall_s for r in runs),
            stage_s={k: sum(r.stage_s[k] for r in runs) for k in STAGES},
            audio_s=sum(r.audio_s for r in runs),
            semantic_tokens=sum(r.semantic_tokens for r in runs),
            coarse_tokens=sum(r.coarse_tokens for r in runs),
            fine_frames=sum(r.fine_frames for r in runs),
            n_semantic_per_row=[n for r in runs for n in r.n_semantic_per_row],
            codes=runs[0].codes,
        )

    def _one(self, text: str, n_tokens: int, greedy: bool) -> Run:
        g = self.generation
        temps = (None, None, None) if greedy else (0.7, 0.7, 0.5)
        top_k = 1 if greedy else None
        times = {}
        sync(self.device)
        start = time.perf_counter()

        def timed(stage, fn, *args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(self.device)
            times[stage] = time.perf_counter() - t0
            return out

        semantic = timed("semantic", g.generate_text_semantic, text, temp=temps[0] or 0.7, top_k=top_k, silent=True,
                         allow_early_stop=False, max_gen_duration_s=duration_for_tokens(n_tokens), use_kv_caching=True)
        coarse = timed("coarse", g.generate_coarse, semantic, temp=temps[1] or 0.7, top_k=top_k, silent=True,
                       use_kv_caching=True)
        fine = timed("fine", g.generate_fine, coarse, temp=temps[2], silent=True)
        audio = timed("decode", g.codec_decode, fine)
        wall = time.perf_counter() - start
        return Run(
            wall_s=wall,
            stage_s=times,
            audio_s=len(audio) / SAMPLE_RATE,
            semantic_tokens=len(semantic),
            coarse_tokens=coarse.size,
            fine_frames=fine.shape[1],
            n_semantic_per_row=[len(semantic)],
            codes={"semantic": semantic, "coarse": coarse, "fine": fine},
        )


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def load_official(weights: Path, device: torch.device):
    """Fill bark's global model registry from our Suno-layout files, with no downloads.

    Shared with the parity tests (tests/support/official_bark.py). An empty
    `torchaudio` stand-in when the real one can't load (encodec imports it; the token path and
    the decoder never use it), the tokenizer served from the weights directory, numpy scalars
    allowed in the checkpoints, and EnCodec built without its pretrained download.
    """
    from transformers import BertTokenizer  # first, so its own torchaudio probe sees the truth

    from bark_model.checkpoints import CODEC_FILE, SUNO_FILES, _safe_numpy_globals

    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        stub = types.ModuleType("torchaudio")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        sys.modules["torchaudio"] = stub
    import bark.generation as generation
    from encodec import EncodecModel

    vocab = str(weights / "vocab.txt")

    class LocalBertTokenizer(BertTokenizer):
        @classmethod
        def from_pretrained(cls, *args, **kwargs):
            return BertTokenizer(vocab, do_lower_case=False)

    generation.BertTokenizer = LocalBertTokenizer
    models = {}
    with torch.serialization.safe_globals(_safe_numpy_globals()):
        for role in ("text", "coarse", "fine"):
            path = next(weights / n[role] for n in SUNO_FILES.values() if (weights / n[role]).exists())
            models[role] = generation._load_model(str(path), str(device), model_type=role)
    codec = EncodecModel.encodec_model_24khz(pretrained=False)
    codec.load_state_dict(torch.load(weights / CODEC_FILE, map_location="cpu", weights_only=True))
    codec.set_target_bandwidth(6.0)
    models["codec"] = codec.eval().to(device)
    generation.models.update(models)
    return generation


SYSTEMS = {"ours": OursSystem, "hf": HFSystem, "official": OfficialSystem}
LAYOUTS = {"ours": "suno", "hf": "hf", "official": "suno"}
