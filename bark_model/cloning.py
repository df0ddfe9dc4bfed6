"""A Bark voice prompt from a recording: HuBERT + quantizer for semantic tokens, EnCodec codes for coarse/fine."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bark_model.coarse import check_prompt_ratio
from bark_model.constants import (
    CODEBOOK_SIZE,
    MAX_SEMANTIC_TOKENS,
    N_COARSE_CODEBOOKS,
    N_FINE_CODEBOOKS,
    SAMPLE_RATE,
    SEMANTIC_TO_COARSE_RATIO,
    SEMANTIC_VOCAB_SIZE,
)
from bark_model.semantic_quantizer import HUBERT_LAYER, HUBERT_RATE

HUBERT_DIR = "hubert"  # <weights>/hubert/{config.json,model.safetensors}: facebook/hubert-base-ls960
QUANTIZER_FILE = "quantizer.pth"  # <weights>/quantizer.pth: e.g. quantifier_V1_hubert_base_ls960_23.pth
MIN_REFERENCE_S = 2.0  # shorter gives Bark too little of the voice to continue
MAX_REFERENCE_S = 30.0  # longer is refused rather than silently cut: Bark reads at most the last ~15 s
MAX_CHANNELS = 16  # [N, C] audio with more "channels" is almost surely [C, N] passed the wrong way round
# Silence trimming: 10 ms frames quieter than the loudest by this much are silence; a little is kept.
SILENCE_FRAME_S = 0.01
SILENCE_DB = 40.0
SILENCE_MARGIN_S = 0.05
# Resampling: windowed-sinc low-pass with this many zero crossings a side, cut just below Nyquist.
SINC_ZEROS = 16
ROLLOFF = 0.95
# HuBERT runs at 50 frames/s and Bark's semantic rate is 49.9: before alignment the frames per token
# must be near 75/50 = 1.5; far off means a model at the wrong rate (or the wrong files).
RATIO_TOLERANCE = 0.05


@dataclass
class CloningModels:
    """What voice_prompt_from_audio needs, loaded once."""

    hubert: Any  # bark_model.hubert.Hubert
    quantizer: Any  # bark_model.semantic_quantizer.SemanticQuantizer
    codec_encoder: Any  # bark_model.codec_encoder.EncodecEncoder


def cloning_files(weights: str | Path) -> dict[str, Path]:
    """Where the cloning weights lie in a Bark weights directory; FileNotFoundError naming what is missing."""
    from bark_model.hubert import CONFIG_FILE, LEGACY_WEIGHTS_FILE, WEIGHTS_FILE

    root = Path(weights)
    hubert = root / HUBERT_DIR
    files = {
        "hubert config": hubert / CONFIG_FILE,
        "hubert weights": hubert / (LEGACY_WEIGHTS_FILE if (hubert / LEGACY_WEIGHTS_FILE).is_file() else WEIGHTS_FILE),
        "quantizer": root / QUANTIZER_FILE,
    }
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"voice cloning weights missing: {', '.join(missing)}; put facebook/hubert-base-ls960's config.json "
            f"and model.safetensors in {root / HUBERT_DIR}/ and a quantizer from GitMylo/bark-voice-cloning as "
            f"{root / QUANTIZER_FILE} (see docs/VOICES.md)"
        )
    return files


def load_cloning_models(weights: str | Path, device: str | torch.device = "cpu") -> CloningModels:
    """HuBERT, quantizer and the EnCodec encoder from a Bark weights directory holding the cloning files."""
    from bark_model.codec_encoder import load_codec_encoder_dir
    from bark_model.hubert import load_hubert
    from bark_model.semantic_quantizer import load_quantizer

    files = cloning_files(weights)
    hubert = load_hubert(files["hubert config"].parent, device)
    quantizer = load_quantizer(files["quantizer"], device)
    if quantizer.config.input_size != hubert.config.hidden_size:
        raise ValueError(
            f"{files['quantizer']} reads {quantizer.config.input_size}-d features but the HuBERT in "
            f"{files['hubert config'].parent} gives {hubert.config.hidden_size}-d: they do not belong together"
        )
    if hubert.config.num_hidden_layers < HUBERT_LAYER:
        raise ValueError(
            f"the quantizer reads HuBERT layer {HUBERT_LAYER}, but {files['hubert config']} has only "
            f"{hubert.config.num_hidden_layers} layers"
        )
    return CloningModels(hubert, quantizer, load_codec_encoder_dir(weights).to(device))


# -- the reference recording ---------------------------------------------------------------------------


def to_mono(audio: np.ndarray) -> np.ndarray:
    """[N] or [N, C] (channels last, as soundfile reads) float samples -> float32 [N], channels averaged."""
    audio = np.asarray(audio)
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be float samples in [-1, 1], got {audio.dtype}")
    if audio.ndim == 2 and audio.shape[1] > MAX_CHANNELS:
        raise ValueError(f"audio has shape {list(audio.shape)}: give [N] or [N, channels] (channels last)")
    if audio.ndim not in (1, 2) or audio.size == 0:
        raise ValueError(f"audio must be non-empty [N] or [N, channels], got shape {list(audio.shape)}")
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    if not np.isfinite(mono).all():
        raise ValueError("audio has NaN or infinite samples")
    return mono.astype(np.float32)


def trim_silence(audio: np.ndarray, sr: int) -> np.ndarray:
    """Cut leading and trailing stretches quieter than SILENCE_DB below the loudest 10 ms (a margin is kept)."""
    frame = max(1, round(SILENCE_FRAME_S * sr))
    n_frames = -(-len(audio) // frame)
    padded = np.zeros(n_frames * frame, dtype=np.float64)
    padded[: len(audio)] = audio
    rms = np.sqrt((padded.reshape(n_frames, frame) ** 2).mean(axis=1))  # [n_frames]
    if rms.max() == 0:
        raise ValueError("the reference audio is silent")
    loud = np.flatnonzero(rms >= rms.max() * 10 ** (-SILENCE_DB / 20))
    margin = round(SILENCE_MARGIN_S * sr)
    start = max(0, loud[0] * frame - margin)
    end = min(len(audio), (loud[-1] + 1) * frame + margin)
    return audio[start:end]


def prepare_reference(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mono, silence-trimmed, length-checked float32 samples at `sr`; ValueError naming length and limit."""
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {sr!r}")
    mono = to_mono(audio)
    trimmed = trim_silence(mono, int(sr))
    seconds = len(trimmed) / sr
    if seconds < MIN_REFERENCE_S:
        raise ValueError(
            f"the reference audio is {seconds:.2f} s long without its leading/trailing silence; "
            f"at least {MIN_REFERENCE_S:g} s of speech is needed (about 10 s works best)"
        )
    if seconds > MAX_REFERENCE_S:
        raise ValueError(
            f"the reference audio is {seconds:.1f} s long without its leading/trailing silence; the limit is "
            f"{MAX_REFERENCE_S:g} s: cut it to one speaker's 5-15 s ending at a sentence end"
        )
    return trimmed


def resample(audio: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Windowed-sinc polyphase resampling of [N] -> [ceil(N * new / orig)]; identity when the rates agree.

    With orig/new reduced to coprime integers, output sample q·new + j is a filter over input samples
    near q·orig, the filter depending only on the phase j: one strided conv1d with `new` output channels.
    """
    if orig_sr == new_sr:
        return audio
    g = math.gcd(orig_sr, new_sr)
    up, down = new_sr // g, orig_sr // g
    cutoff = min(up, down) / 2 * ROLLOFF  # cycles per block of `down` input samples
    half = math.ceil(SINC_ZEROS / (2 * cutoff) * down)  # filter half-width in input samples
    taps = torch.arange(-half, half + down, dtype=torch.float64)  # input offset k of tap i: k = i - half
    phase = torch.arange(up, dtype=torch.float64)[:, None] / up  # [up, 1]
    t = phase - taps[None] / down  # [up, L] time from input sample to output sample, in blocks
    window = torch.where(
        (t * 2 * cutoff).abs() <= SINC_ZEROS, torch.cos(math.pi * t * cutoff / SINC_ZEROS) ** 2, torch.zeros(())
    )  # Hann over +-SINC_ZEROS zero crossings
    kernels = (2 * cutoff / down) * torch.sinc(2 * cutoff * t) * window  # unit gain at DC
    n_out = -(-audio.shape[-1] * up // down)
    needed = (n_out - 1) * down + kernels.shape[-1]
    x = torch.nn.functional.pad(audio.to(torch.float64)[None, None], (half, max(0, needed - half - audio.shape[-1])))
    y = torch.nn.functional.conv1d(x, kernels[:, None].to(x), stride=down)  # [1, up, Q]
    return y[0].t().reshape(-1)[:n_out].to(audio.dtype)  # interleave phases: q·up + j


# -- the prompt ----------------------------------------------------------------------------------------


def frames_for(n_semantic: int) -> int:
    """Coarse/fine frames Bark expects for n semantic tokens (the shipped prompts' relation)."""
    return int(np.floor(n_semantic * SEMANTIC_TO_COARSE_RATIO / 2))


def align_prompt(semantic: np.ndarray, fine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """End-aligned tails with Bark's frame ratio: at most MAX_SEMANTIC_TOKENS tokens, frames = frames_for(tokens).

    Both sequences cover the same audio and Bark continues from a prompt's end, so tails are kept.
    """
    n_sem, n_frames = len(semantic), fine.shape[-1]
    ratio = n_frames / max(n_sem, 1)
    if abs(ratio / (SEMANTIC_TO_COARSE_RATIO / 2) - 1) > RATIO_TOLERANCE:
        raise ValueError(
            f"{n_frames} codec frames for {n_sem} semantic tokens ({ratio:.3f} per token); expected about "
            f"{SEMANTIC_TO_COARSE_RATIO / 2:.3f}: are the HuBERT (16 kHz) and codec (24 kHz) models the right ones?"
        )
    keep = min(n_sem, MAX_SEMANTIC_TOKENS)
    while frames_for(keep) > n_frames:  # HuBERT's 50 Hz gives a few tokens more than 49.9 Hz would
        keep -= 1
    return semantic[n_sem - keep :], fine[:, n_frames - frames_for(keep) :]


@torch.inference_mode()
def semantic_from_audio(audio_16k: np.ndarray, hubert, quantizer) -> np.ndarray:
    """Mono 16 kHz samples [N] -> semantic tokens int64 [~N/320] (HuBERT layer HUBERT_LAYER -> quantizer)."""
    device = next(hubert.parameters()).device
    # Raw samples, no normalisation: what fairseq's hubert_base_ls960 (and so the quantizer) was fed.
    samples = torch.from_numpy(np.ascontiguousarray(audio_16k, dtype=np.float32)).to(device)[None]  # [1, N]
    features = hubert(samples, output_layer=HUBERT_LAYER)[0]  # [T, H]
    return quantizer.tokens(features.to(next(quantizer.parameters()).device)).cpu().numpy().astype(np.int64)


def voice_prompt_from_audio(audio: np.ndarray, sr: int, hubert, quantizer, codec_encoder) -> dict[str, np.ndarray]:
    """A recording (float [N] or [N, C] at `sr`) -> {semantic_prompt [S], coarse_prompt [2, T], fine_prompt [8, T]}."""
    from bark_model.codec_encoder import encode_audio

    reference = torch.from_numpy(prepare_reference(audio, sr))
    audio_16k = resample(reference, int(sr), HUBERT_RATE).numpy()
    audio_24k = np.clip(resample(reference, int(sr), SAMPLE_RATE).numpy(), -1.0, 1.0)
    semantic = semantic_from_audio(audio_16k, hubert, quantizer)
    fine = np.asarray(encode_audio(codec_encoder, audio_24k), dtype=np.int64)  # [8, T']
    if fine.ndim != 2 or fine.shape[0] != N_FINE_CODEBOOKS:
        raise ValueError(f"the codec encoder gave codes of shape {list(fine.shape)}, expected [8, T]")
    semantic, fine = align_prompt(semantic, fine)
    prompt = {"semantic_prompt": semantic, "coarse_prompt": fine[:N_COARSE_CODEBOOKS].copy(), "fine_prompt": fine}
    check_prompt(prompt)
    return prompt


def check_prompt(prompt: dict[str, np.ndarray]) -> None:
    """Shapes, int64, value ranges, coarse == fine[:2] and Bark's frame ratio; ValueError otherwise."""
    semantic, coarse, fine = (prompt[k] for k in ("semantic_prompt", "coarse_prompt", "fine_prompt"))
    for key, array, high in (("semantic_prompt", semantic, SEMANTIC_VOCAB_SIZE), ("fine_prompt", fine, CODEBOOK_SIZE)):
        if array.dtype != np.int64 or array.size == 0 or array.min() < 0 or array.max() >= high:
            raise ValueError(f"{key} must be non-empty int64 codes in 0..{high - 1}")
    if semantic.ndim != 1 or fine.ndim != 2 or fine.shape[0] != N_FINE_CODEBOOKS:
        raise ValueError(f"prompt shapes {list(semantic.shape)}, {list(fine.shape)}; expected [S] and [8, T]")
    if not np.array_equal(coarse, fine[:N_COARSE_CODEBOOKS]):
        raise ValueError("coarse_prompt must equal the first 2 rows of fine_prompt")
    check_prompt_ratio(semantic, coarse, "cloned")
    if fine.shape[1] != frames_for(len(semantic)):
        raise ValueError(f"{fine.shape[1]} frames for {len(semantic)} tokens; Bark expects {frames_for(len(semantic))}")


def save_voice_prompt(path: str | Path, prompt: dict[str, np.ndarray]) -> Path:
    """np.savez of the three arrays (uncompressed, as Bark's own prompts); returns the path written."""
    check_prompt(prompt)
    path = Path(path)
    np.savez(
        path,
        semantic_prompt=prompt["semantic_prompt"],
        coarse_prompt=prompt["coarse_prompt"],
        fine_prompt=prompt["fine_prompt"],
    )
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
