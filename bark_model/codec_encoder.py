"""EnCodec 24 kHz encoder for Bark: waveform -> residual-VQ codes [B, K, T], strict loading of both namings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bark_model.checkpoints import HF_PREFIXES, detect_layout, load_torch_file
from bark_model.codec import _detect_naming, collect_codec_part, read_codec_file
from bark_model.codec_layers import (
    KERNEL,
    LATENT_DIM,
    LSTM_DIM,
    LSTM_LAYERS,
    N_FILTERS,
    N_QUANTIZERS,
    RATIOS,
    CausalConv1d,
    DownStage,
)
from bark_model.constants import CODEBOOK_SIZE, N_FINE_CODEBOOKS, SAMPLES_PER_FRAME

__all__ = [
    "EncodecEncoder",
    "encode_audio",
    "load_codec_encoder_dir",
    "load_codec_encoder_file",
    "load_codec_encoder_state_dict",
]


class EncodecEncoder(nn.Module):
    """24 kHz waveform [B, 1, N] -> latents [B, 128, ceil(N/320)] -> codes [B, K, T]; inference only.

    No input normalisation: the 24 kHz model is built with normalize=False, and `encode` runs the
    whole signal as one segment (EnCodec splits into segments only for its 48 kHz model).
    """

    codebooks: torch.Tensor  # [n_codebooks, 1024, 128], a buffer registered in __init__

    def __init__(self, n_codebooks: int = N_FINE_CODEBOOKS):
        super().__init__()
        if not 1 <= n_codebooks <= N_QUANTIZERS:
            raise ValueError(f"n_codebooks must be in 1..{N_QUANTIZERS}, got {n_codebooks!r}")
        self.n_codebooks = n_codebooks
        self.register_buffer("codebooks", torch.empty(n_codebooks, CODEBOOK_SIZE, LATENT_DIM))
        self.conv_in = CausalConv1d(1, N_FILTERS, KERNEL)
        # Strides 2, 4, 5, 8: the decoder's ratios in reverse; channels double at each stage.
        self.stages = nn.ModuleList(
            DownStage(N_FILTERS << i, N_FILTERS << (i + 1), r) for i, r in enumerate(reversed(RATIOS))
        )
        self.lstm = nn.LSTM(LSTM_DIM, LSTM_DIM, num_layers=LSTM_LAYERS, batch_first=True)
        self.conv_out = CausalConv1d(LSTM_DIM, LATENT_DIM, KERNEL)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:  # [B, 1, N] -> [B, 128, ceil(N/320)]
        x = self.conv_in(audio)  # [B, 32, N]
        for stage in self.stages:
            x = stage(x)  # [B, 32 << (i+1), ceil(N / prod(strides so far))]
        y, _ = self.lstm(x.transpose(1, 2))  # [B, T, 512]
        x = x + y.transpose(1, 2)  # EnCodec's SLSTM adds its input back
        return self.conv_out(F.elu(x))

    def quantize(self, latents: torch.Tensor, n_codebooks: int) -> torch.Tensor:  # [B, 128, T] -> [B, K, T]
        """Residual VQ: per codebook the nearest codeword (Euclidean), then quantize what is left."""
        batch, dim, frames = latents.shape
        residual = latents.transpose(1, 2).reshape(batch * frames, dim)  # [B·T, 128], EnCodec's row order
        codes = []
        for table in self.codebooks[:n_codebooks]:  # [1024, 128]
            # ‖x‖² - 2x·e + ‖e‖² in EnCodec's own order of operations, so near-ties resolve as there.
            embed = table.t()  # [128, 1024]
            dist = residual.pow(2).sum(1, keepdim=True) - 2 * residual @ embed + embed.pow(2).sum(0, keepdim=True)
            index = dist.argmin(dim=-1)  # [B·T]
            residual = residual - F.embedding(index, table)
            codes.append(index)
        return torch.stack(codes).view(n_codebooks, batch, frames).transpose(0, 1)  # [B, K, T]

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, n_codebooks: int = N_FINE_CODEBOOKS) -> torch.Tensor:
        """Float waveform [B, 1, N] at 24 kHz -> codes LongTensor [B, K, ceil(N/320)], K = n_codebooks."""
        if audio.dim() != 3 or audio.shape[1] != 1 or not audio.dtype.is_floating_point:
            raise ValueError(f"audio must be a float tensor [B, 1, N] (mono), got {audio.dtype} {tuple(audio.shape)}")
        if audio.shape[2] == 0:
            raise ValueError("audio has 0 samples; need at least 1")
        if not 1 <= n_codebooks <= self.n_codebooks:
            raise ValueError(
                f"n_codebooks must be in 1..{self.n_codebooks} (loaded by this encoder), got {n_codebooks}"
            )
        return self.quantize(self(audio.to(self.codebooks.dtype)), n_codebooks)


def encode_audio(encoder: EncodecEncoder, audio: np.ndarray) -> np.ndarray:
    """Mono float32 audio [N] at 24 kHz -> Bark's 8 codebooks of codes, int64 [8, ceil(N/320)].

    Samples are clipped to [-1, 1] first; runs as a batch of one on the encoder's device.
    """
    audio = np.asarray(audio)
    if audio.ndim != 1 or not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"audio must be mono float samples [N] in [-1, 1], got {audio.dtype} {audio.shape}")
    if audio.size == 0:
        raise ValueError("audio has 0 samples; need at least 1")
    if not np.isfinite(audio).all():
        raise ValueError(f"audio has {int((~np.isfinite(audio)).sum())} NaN or infinite samples")
    samples = np.clip(audio, -1.0, 1.0).astype(np.float32)
    batch = torch.from_numpy(samples).to(encoder.codebooks.device).view(1, 1, -1)  # [1, 1, N]
    codes = encoder.encode(batch, n_codebooks=N_FINE_CODEBOOKS)  # [1, 8, T]
    assert codes.shape[-1] == -(-samples.size // SAMPLES_PER_FRAME), f"unexpected frame count {tuple(codes.shape)}"
    return codes[0].cpu().numpy().astype(np.int64)


def _weight_norm(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """g · v / ‖v‖ (norm over every dim but 0) with torch's own kernel, as both reference models compute it.

    Codes are argmins, so the weights are made bit-identical to the references' rather than close:
    a last-bit difference could flip a near-tie and with it every later codebook of that frame.
    """
    return torch._weight_norm(v.float(), g.float(), 0)


def load_codec_encoder_state_dict(
    sd: Mapping[str, torch.Tensor], prefix: str = "", n_codebooks: int = N_FINE_CODEBOOKS
) -> EncodecEncoder:
    """Build the encoder from an encodec-package or Hugging Face codec state dict (keys under `prefix`).

    `decoder.*` and keys outside `prefix` are ignored; every `encoder.*` key and the first
    n_codebooks codebooks must be there, and unknown `encoder.*` / `quantizer.*` keys fail by name.
    """
    stripped = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    naming = _detect_naming(list(stripped))
    ours = collect_codec_part(stripped, naming, n_codebooks, part="encoder", fold=_weight_norm)
    ours["codebooks"] = ours["codebooks"].float()  # distances in fp32, as the references compute them
    with torch.device("meta"):
        model = EncodecEncoder(n_codebooks)
    model.load_state_dict(ours, strict=True, assign=True)
    return model.eval()


def load_codec_encoder_file(path: str | Path, prefix: str = "", n_codebooks: int = N_FINE_CODEBOOKS) -> EncodecEncoder:
    """Load the encoder from `encodec_24khz-d7cc33bc.th` (or any torch-saved codec state dict), safely."""
    return load_codec_encoder_state_dict(read_codec_file(path), prefix=prefix, n_codebooks=n_codebooks)


def load_codec_encoder_dir(root: str | Path, n_codebooks: int = N_FINE_CODEBOOKS) -> EncodecEncoder:
    """Load the encoder from a Bark weights directory, Suno layout (the .th file) or Hugging Face (codec_model.*)."""
    layout = detect_layout(root)
    if layout.kind == "suno":
        return load_codec_encoder_file(layout.files["codec"], n_codebooks=n_codebooks)
    prefix = HF_PREFIXES["codec"]
    path: Path = layout.files["model"]
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        # Read only the codec's tensors, not the three GPTs beside them.
        with safe_open(str(path), framework="pt", device="cpu") as f:
            sd = {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    else:
        sd = {k: v for k, v in load_torch_file(path).items() if k.startswith(prefix)}
    if not sd:
        raise ValueError(f"{path} holds no {prefix}* tensors (the EnCodec codec)")
    return load_codec_encoder_state_dict(sd, prefix=prefix, n_codebooks=n_codebooks)
