"""BarkEngine: loads the three GPTs, the codec and the tokenizer once and generates batches."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bark_model.checkpoints import detect_layout, fingerprint, load_models
from bark_model.coarse import CoarseRow, check_prompt_ratio, generate_coarse, trim_history
from bark_model.codec import load_codec_state_dict
from bark_model.compile import resolve_compile
from bark_model.config import GPTConfig
from bark_model.constants import CONTEXT_WINDOW, SAMPLE_RATE, SAMPLES_PER_FRAME
from bark_model.device import resolve_device, resolve_dtype
from bark_model.fine import FineRow, generate_fine
from bark_model.request import GenerationRequest, GenerationResult
from bark_model.sampling import RowSampling
from bark_model.sdpa_check import attention_backends
from bark_model.semantic import SemanticRow, generate_semantic, max_tokens_for_duration
from bark_model.tokenizer import BarkTokenizer
from bark_model.voices import VoiceLibrary, VoicePrompt


@dataclass
class _Prepared:
    request: GenerationRequest
    voice: VoicePrompt | None
    text_ids: np.ndarray
    dropped: int


# On CPU a fine window is compute-bound at any batch; one row at a time keeps its ~12 MB activations
# in reused heap memory (8 rows at once: ~100 MB a pass, fresh pages each time, 5M page faults and
# a sixth of the CPU time in the kernel for 8 rows of 2 s). Rows' codes do not depend on their batch.
CPU_FINE_ROWS = 1


class BarkEngine:
    """Bark's three stages and the codec on one device; `generate` takes a batch of requests."""

    def __init__(self, models: dict, codec, tokenizer: BarkTokenizer, voices: VoiceLibrary, device, dtype, info: dict,
                 cuda_graphs: bool = False, compile: bool = False):  # fmt: skip
        self.text_model, self.coarse_model, self.fine_model = models["text"], models["coarse"], models["fine"]
        self.codec = codec
        self.tokenizer = tokenizer
        self.voices = voices
        self.device = device
        self.dtype = dtype
        self.model_info = info
        self.cuda_graphs = cuda_graphs and device.type == "cuda"
        self._workspaces: dict = {}  # decode buffers and CUDA graphs, kept across calls
        self.compile = compile  # decode-step bodies through torch.compile (bark_model/compile.py)
        self.warmup_s = 0.0  # seconds spent compiling and capturing decode steps, all calls (in stage times)
        self.last_warmup_s = 0.0  # the same, in the last generate call only
        # {call: SDPA kernel} checked on the device (flash / mem-efficient / math); logged once.
        self.attention_backends = attention_backends(models, device, dtype) if device.type == "cuda" else {}

    @classmethod
    def from_dir(
        cls, weights_dir: str | Path, device: str = "auto", precision: str = "fp32", cuda_graphs: bool = True,
        compile: bool | None = None,
    ) -> BarkEngine:  # fmt: skip
        """Load from a Suno- or Hugging Face-layout directory (detected from its files).

        cuda_graphs: replay decode steps from CUDA graphs on GPU (ignored elsewhere; falls back
        to eager decoding if a capture fails).
        compile: fuse decode steps with torch.compile; None = on for CUDA, off elsewhere. A
        failed compile falls back to uncompiled steps (graphs, then eager), logged once.
        """
        layout = detect_layout(weights_dir)
        torch_device, dtype = resolve_device(device), resolve_dtype(precision)
        models, codec_state = load_models(layout)
        if precision == "int8":
            from bark_model.gpt import set_attention_dtype
            from bark_model.quantize import has_amx, quantize_int8

            # Scales come from the fp32 weights, before anything is rounded to 16 bits. On CPU every
            # matmul (windows, prefills, decode steps) also takes int8 activations (VNNI kernels).
            cpu = torch_device.type == "cpu"
            models = {role: quantize_int8(model, activations=cpu) for role, model in models.items()}
            if cpu:
                # Those kernels take fp32 in and out, and without AMX the rest is faster in fp32 (flash
                # attention costs the same over a fine window and ~6x less in a decode step than in
                # bf16 on an AVX-512 EPYC). With AMX, bf16 attention is ~2x faster everywhere (a fine
                # window layer: 7.3 against 20 ms; an 887-token causal prefill at batch 8: 57 against
                # 119 ms; a decode step's layer at batch 8 over 700 keys: 0.73 against 1.49 ms, half
                # the KV cache to read), so there it attends, and keeps its KV cache, in bf16.
                dtype = torch.float32
                if has_amx():
                    for model in models.values():
                        set_attention_dtype(model, torch.bfloat16)
        for role, model in models.items():
            models[role] = model.to(device=torch_device, dtype=dtype)
        # The codec stays fp32: it is a small share of the time, and its LSTM is sensitive.
        codec = load_codec_state_dict(codec_state).to(torch_device).eval()
        tokenizer = BarkTokenizer.from_file(layout.files["tokenizer"])
        text_cfg = models["text"].config
        assert isinstance(text_cfg, GPTConfig), f"text model config: expected GPTConfig, got {type(text_cfg).__name__}"
        info = {
            "weights": str(layout.root),
            "layout": layout.kind,
            "size": f"{text_cfg.n_layer}L-{text_cfg.n_embd}d",
            "checksum": fingerprint(layout),
            "device": str(torch_device),
            "precision": precision,
        }
        return cls(models, codec, tokenizer, VoiceLibrary(layout.root), torch_device, dtype, info, cuda_graphs,
                   resolve_compile(compile, torch_device))  # fmt: skip

    def auto_batch_size(self, max_batch: int = 256, memory_fraction: float = 0.8) -> int:
        """Rows per batch that fit in free GPU memory (KV cache + fine-stage activations); 8 elsewhere."""
        if self.device.type != "cuda":
            return 8
        free, _ = torch.cuda.mem_get_info(self.device)
        width = self.dtype.itemsize if self.dtype != torch.float32 else 4
        text = self.text_model.config
        kv = 2 * text.n_layer * text.n_embd * CONTEXT_WINDOW * width  # semantic cache (the longest)
        fine = self.fine_model.config
        # One 1024-frame window: a few activations of width 4·D, fp32 logits and sampling buffers.
        window = CONTEXT_WINDOW * (8 * fine.n_embd * width + 3 * fine.output_vocab_size * 4)
        return max(1, min(max_batch, int(free * memory_fraction // (kv + window))))

    # -- checks a caller can run before spending compute ------------------------------------
    def load_voice(self, voice) -> VoicePrompt | None:
        return self.voices.load(voice)

    def count_text_tokens(self, text: str) -> int:
        return self.tokenizer.count(text)

    def _prepare(self, request: GenerationRequest) -> _Prepared:
        voice = self.load_voice(request.voice)
        if voice is not None:
            check_prompt_ratio(voice.semantic, voice.coarse, voice.name)
        encoded = self.tokenizer.encode(request.text)
        return _Prepared(request, voice, encoded.ids, encoded.n_dropped)

    # -- generation -------------------------------------------------------------------------
    def generate(
        self, requests: list[GenerationRequest], batch_size: int | None = None, progress=None
    ) -> list[GenerationResult]:
        """Results in request order. Bad requests raise before any compute.

        At most `batch_size` rows decode together. The semantic stage refills finished rows'
        slots as it goes; the later stages take rows in order of length, so rows of similar
        length share a batch and little work is padding. `progress(stage, done, total)` is
        called after each stage's batches.
        """
        prepared = [self._prepare(r) for r in requests]
        if not prepared:
            return []
        self.last_warmup_s = 0.0
        n, size = len(prepared), max(1, batch_size or len(prepared))
        seeds = [p.request.seed for p in prepared]
        timings: dict[str, float] = {}
        report = progress or (lambda *_: None)
        with _Timer(timings, "semantic", self.device):
            params = self._sampling(prepared, "semantic", seeds)
            rows = self._semantic_rows(prepared)
            semantic = self._warming("semantic", lambda: generate_semantic(
                self.text_model, rows, params, size, self.cuda_graphs, self._workspaces, self.compile))  # fmt: skip
        report("semantic", n, n)
        for p, tokens in zip(prepared, semantic, strict=False):
            if len(tokens) == 0:
                raise ValueError(f"the model produced no speech for {p.request.text[:60]!r} (EOS at the first step)")
        coarse_rows = [self._coarse_row(p, tokens) for p, tokens in zip(prepared, semantic, strict=False)]
        order = sorted(range(n), key=lambda i: coarse_rows[i].n_steps, reverse=True)
        batches = [order[i : i + size] for i in range(0, n, size)]
        coarse: dict[int, np.ndarray] = {}  # row -> its codes / audio, filled batch by batch
        fine: dict[int, np.ndarray] = {}
        audio: dict[int, np.ndarray] = {}

        def coarse_batch(idx):
            params = self._sampling([prepared[i] for i in idx], "coarse", [seeds[i] for i in idx])
            return self._warming("coarse", lambda: generate_coarse(
                self.coarse_model, [coarse_rows[i] for i in idx], params, self.cuda_graphs, self._workspaces,
                self.compile))  # fmt: skip

        def fine_batch(idx):
            out, step = [], CPU_FINE_ROWS if self.device.type == "cpu" else len(idx)
            for group in (idx[k : k + step] for k in range(0, len(idx), step)):
                params = self._sampling([prepared[i] for i in group], "fine", [seeds[i] for i in group])
                rows = [FineRow(coarse[i], _fine_history(prepared[i])) for i in group]
                out += generate_fine(self.fine_model, rows, params)
            return out

        for stage, run, target in (("coarse", coarse_batch, coarse), ("fine", fine_batch, fine),
                                   ("decode", lambda idx: self.decode([fine[i] for i in idx]), audio)):  # fmt: skip
            with _Timer(timings, stage, self.device):
                for k, idx in enumerate(batches):
                    for i, value in zip(idx, run(idx), strict=False):
                        target[i] = value
                    report(stage, min(n, (k + 1) * size), n)
        report("rows", n, n)
        return [
            GenerationResult(audio[i], semantic[i], coarse[i], fine[i], SAMPLE_RATE, p.dropped, dict(timings))
            for i, p in enumerate(prepared)
        ]

    def _warming(self, stage: str, run):
        """run(), adding the compile/capture time its workspace spent to warmup_s (it may be replaced)."""
        before = self._workspaces.get(stage)
        spent_before = before.runner.warmup_s if before is not None else 0.0
        out = run()
        after = self._workspaces[stage]
        spent = after.runner.warmup_s - (spent_before if after is before else 0.0)
        self.warmup_s += spent
        self.last_warmup_s += spent
        return out

    def _semantic_rows(self, prepared: list[_Prepared]) -> list[SemanticRow]:
        return [
            SemanticRow(p.text_ids, None if p.voice is None else p.voice.semantic, p.request.min_eos_p,
                        max_tokens_for_duration(p.request.max_duration_s), p.request.allow_early_stop)
            for p in prepared
        ]  # fmt: skip

    @staticmethod
    def _coarse_row(p: _Prepared, tokens: np.ndarray) -> CoarseRow:
        if p.voice is None:
            empty = np.zeros(0, np.int64)
            return CoarseRow(empty, empty, tokens)
        return CoarseRow(*trim_history(p.voice.semantic, p.voice.coarse), tokens)

    def _sampling(self, batch: list[_Prepared], stage: str, seeds: list[int]) -> RowSampling:
        return RowSampling.build([getattr(p.request, stage) for p in batch], seeds, self.device)

    @torch.inference_mode()
    def decode(self, fine_codes: list[np.ndarray]) -> list[np.ndarray]:
        """Waveforms for codes [8, T_i]; rows are right-padded into one batch and cut after."""
        lengths = [c.shape[1] for c in fine_codes]
        batch = np.zeros((len(fine_codes), fine_codes[0].shape[0], max(lengths)), dtype=np.int64)
        for i, codes in enumerate(fine_codes):
            batch[i, :, : codes.shape[1]] = codes
        audio = self.codec.decode_lengths(torch.as_tensor(batch, device=self.device), lengths)
        audio = audio.float().cpu().numpy()
        return [audio[i, : n * SAMPLES_PER_FRAME].copy() for i, n in enumerate(lengths)]


def _fine_history(p: _Prepared):
    return None if p.voice is None else p.voice.fine


class _Timer:
    """Adds a block's wall time to timings[stage] (synchronising CUDA so the time is real)."""

    def __init__(self, timings: dict, stage: str, device):
        self.timings, self.stage, self.device = timings, stage, device

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.timings[self.stage] = self.timings.get(self.stage, 0.0) + time.perf_counter() - self.start
