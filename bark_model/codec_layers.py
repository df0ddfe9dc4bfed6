"""EnCodec 24 kHz layers: causal SEANet blocks of both stacks, and the decoder network, weight norm folded."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bark_model.constants import CODEBOOK_SIZE, N_FINE_CODEBOOKS, SAMPLES_PER_FRAME

LATENT_DIM = 128  # codebook vector size = decoder input channels
N_QUANTIZERS = 32  # codebooks in the 24 kHz checkpoint (24 kbps); Bark decodes with the first 8
N_FILTERS = 32  # SEANet base width (channels next to the waveform)
RATIOS = (8, 5, 4, 2)  # decoder upsampling strides, product = SAMPLES_PER_FRAME
KERNEL = 7  # first and last conv kernel
RESIDUAL_KERNEL = 3  # first conv of each residual block
LSTM_LAYERS = 2
LSTM_DIM = N_FILTERS * 2 ** len(RATIOS)  # 512: the width at the latent end of both stacks


@dataclass(frozen=True)
class ConvSpec:
    """One weight-normalised conv of a SEANet stack, as it sits in the checkpoints."""

    index: int  # position N in the original nn.Sequential (`model.N` / `layers.N`)
    sub: str  # "" for a plain layer, else "block.1" | "block.3" | "shortcut" inside a ResBlock
    in_ch: int
    out_ch: int
    kernel: int
    stride: int = 1
    transposed: bool = False
    name: str = ""  # parameter prefix in EncodecDecoder / EncodecEncoder

    @property
    def weight_shape(self) -> tuple[int, int, int]:
        # ConvTranspose1d stores [in, out, k]; weight norm's g is over dim 0 either way.
        if self.transposed:
            return (self.in_ch, self.out_ch, self.kernel)
        return (self.out_ch, self.in_ch, self.kernel)


def _resblock_specs(index: int, dim: int, name: str) -> list[ConvSpec]:
    return [
        ConvSpec(index, "block.1", dim, dim // 2, RESIDUAL_KERNEL, name=f"{name}.conv1"),
        ConvSpec(index, "block.3", dim // 2, dim, 1, name=f"{name}.conv2"),
        ConvSpec(index, "shortcut", dim, dim, 1, name=f"{name}.shortcut"),
    ]


def decoder_specs() -> tuple[list[ConvSpec], int]:
    """Decoder convs in checkpoint order, and the Sequential index of its LSTM."""
    ch = LSTM_DIM
    specs = [ConvSpec(0, "", LATENT_DIM, ch, KERNEL, name="conv_in")]
    for i, r in enumerate(RATIOS):
        # Sequential: 2 + 3i ELU, 3 + 3i ConvTranspose1d, 4 + 3i ResBlock.
        specs.append(ConvSpec(3 + 3 * i, "", ch, ch // 2, 2 * r, r, True, name=f"stages.{i}.up"))
        specs += _resblock_specs(4 + 3 * i, ch // 2, f"stages.{i}.res")
        ch //= 2
    specs.append(ConvSpec(3 * len(RATIOS) + 3, "", N_FILTERS, 1, KERNEL, name="conv_out"))
    return specs, 1


def encoder_specs() -> tuple[list[ConvSpec], int]:
    """Encoder convs in checkpoint order, and the Sequential index of its LSTM."""
    specs = [ConvSpec(0, "", 1, N_FILTERS, KERNEL, name="conv_in")]
    ch = N_FILTERS
    for i, r in enumerate(reversed(RATIOS)):
        # Sequential: 1 + 3i ResBlock, 2 + 3i ELU, 3 + 3i strided Conv1d.
        specs += _resblock_specs(1 + 3 * i, ch, f"stages.{i}.res")
        specs.append(ConvSpec(3 + 3 * i, "", ch, 2 * ch, 2 * r, r, name=f"stages.{i}.down"))
        ch *= 2
    lstm_index = 3 * len(RATIOS) + 1
    # lstm_index + 1 is the ELU before the last conv.
    specs.append(ConvSpec(lstm_index + 2, "", ch, LATENT_DIM, KERNEL, name="conv_out"))
    return specs, lstm_index


def _reflect_pad_left(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Left reflect padding as EnCodec does it: inputs not longer than `pad` get zeros appended first."""
    if pad == 0:
        return x
    length = x.shape[-1]
    # Reflection needs length > pad; EnCodec appends zeros, reflects, then drops them again.
    extra = max(pad - length + 1, 0)
    if extra:
        x = F.pad(x, (0, extra))
    x = F.pad(x, (pad, 0), mode="reflect")
    return x[..., : x.shape[-1] - extra]


class CausalConv1d(nn.Conv1d):
    """Stride-1 Conv1d with all (k-1)·d padding on the left, reflected: output length = input length."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C_in, L] -> [B, C_out, L]
        assert self.stride[0] == 1, "the decoder only has stride-1 convs (no extra right padding)"
        pad = (self.kernel_size[0] - 1) * self.dilation[0]
        return super().forward(_reflect_pad_left(x, pad))


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """ConvTranspose1d without padding, trimmed k - s on the right: output length = s · input length."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """[B, C_in, L] -> [B, C_out, s·L]; output_size is the base class's and must stay None."""
        if output_size is not None:  # the length is always s·L: a requested size cannot be honoured
            raise ValueError(f"CausalConvTranspose1d's output length is stride · input length; got {output_size=}")
        y = super().forward(x)  # [B, C_out, (L-1)·s + k]
        trim = self.kernel_size[0] - self.stride[0]
        return y[..., : y.shape[-1] - trim]


def _reflect_pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Reflect padding on both sides as EnCodec's pad1d: inputs not longer than the larger pad get zeros appended."""
    length = x.shape[-1]
    extra = max(max(left, right) - length + 1, 0)
    if extra:
        x = F.pad(x, (0, extra))
    x = F.pad(x, (left, right), mode="reflect")
    return x[..., : x.shape[-1] - extra]


class CausalStridedConv1d(nn.Conv1d):
    """Strided Conv1d with EnCodec's causal padding: output length = ceil(L / stride).

    EnCodec pads (k-1)·d - (s-1) on the left and, on the right, just enough to complete the last
    stride ("extra padding"), both reflected. With the encoder's k = 2s that is s on the left and
    ceil(L/s)·s - L on the right. Only the last output frame sees the right padding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C_in, L] -> [B, C_out, ceil(L / s)]
        stride = self.stride[0]
        span = (self.kernel_size[0] - 1) * self.dilation[0] + 1
        left = span - stride
        length = x.shape[-1]
        right = -(-length // stride) * stride - length  # EnCodec's extra padding when left = span - s
        return super().forward(_reflect_pad(x, left, right))


class ResBlock(nn.Module):
    """SEANet residual block: shortcut(x) + conv1x1(ELU(conv3(ELU(x))))."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = CausalConv1d(dim, dim // 2, RESIDUAL_KERNEL)
        self.conv2 = CausalConv1d(dim // 2, dim, 1)
        self.shortcut = CausalConv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, L] -> [B, C, L]
        return self.shortcut(x) + self.conv2(F.elu(self.conv1(F.elu(x))))


class UpStage(nn.Module):
    """ELU, causal transposed conv (upsample by `ratio`), residual block."""

    def __init__(self, in_ch: int, out_ch: int, ratio: int):
        super().__init__()
        self.up = CausalConvTranspose1d(in_ch, out_ch, 2 * ratio, ratio)
        self.res = ResBlock(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C_in, L] -> [B, C_out, ratio·L]
        return self.res(self.up(F.elu(x)))


class DownStage(nn.Module):
    """Residual block, ELU, causal strided conv (downsample by `ratio`): the encoder's mirror of UpStage."""

    def __init__(self, in_ch: int, out_ch: int, ratio: int):
        super().__init__()
        self.res = ResBlock(in_ch)
        self.down = CausalStridedConv1d(in_ch, out_ch, 2 * ratio, ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C_in, L] -> [B, C_out, ceil(L / ratio)]
        return self.down(F.elu(self.res(x)))


class EncodecDecoder(nn.Module):
    """Codes [B, K, T] -> 24 kHz waveform [B, 320·T]; plain (folded) weights, inference only.

    Rows of different length: the network is causal (left-only padding, LSTM, right-trimmed
    transposed convs), so decoding a right-padded row gives exactly its own decode in the first
    320·T_r samples, as long as T_r > KERNEL - 1 (the first conv reflects KERNEL - 1 frames; a
    shorter row alone would reflect appended zeros instead). `decode_lengths` relies on this.
    """

    codebooks: torch.Tensor  # [n_codebooks, 1024, 128], a buffer registered in __init__

    def __init__(self, n_codebooks: int = N_FINE_CODEBOOKS):
        super().__init__()
        if not 1 <= n_codebooks <= N_QUANTIZERS:
            raise ValueError(f"n_codebooks must be in 1..{N_QUANTIZERS}, got {n_codebooks!r}")
        self.n_codebooks = n_codebooks
        self.register_buffer("codebooks", torch.empty(n_codebooks, CODEBOOK_SIZE, LATENT_DIM))
        ch = LSTM_DIM
        self.conv_in = CausalConv1d(LATENT_DIM, ch, KERNEL)
        self.lstm = nn.LSTM(ch, ch, num_layers=LSTM_LAYERS, batch_first=True)
        self.stages = nn.ModuleList(UpStage(ch >> i, ch >> (i + 1), r) for i, r in enumerate(RATIOS))
        self.conv_out = CausalConv1d(N_FILTERS, 1, KERNEL)

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:  # [B, K, T] -> [B, 128, T]
        k = codes.shape[1]
        # One lookup into the K tables laid end to end, then the residual-VQ sum over codebooks.
        offsets = torch.arange(k, device=codes.device).view(1, k, 1) * CODEBOOK_SIZE
        table = self.codebooks[:k].reshape(k * CODEBOOK_SIZE, LATENT_DIM)
        vectors = F.embedding(codes + offsets, table)  # [B, K, T, 128]
        return vectors.sum(dim=1).transpose(1, 2)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:  # [B, K, T] -> [B, 320·T]
        x = self.conv_in(self.dequantize(codes))  # [B, 512, T]
        y, _ = self.lstm(x.transpose(1, 2))  # [B, T, 512]
        x = x + y.transpose(1, 2)  # EnCodec's SLSTM adds its input back
        for stage in self.stages:
            x = stage(x)  # [B, 512 >> (i+1), T · prod(RATIOS[:i+1])]
        return self.conv_out(F.elu(x)).squeeze(1)  # no final tanh in EnCodec

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Integer codes [B, K, T] (K <= n_codebooks, values < 1024) -> float waveform [B, 320·T]."""
        if codes.dim() != 3 or codes.dtype.is_floating_point or codes.is_complex():
            raise ValueError(f"codes must be an integer tensor [B, K, T], got {codes.dtype} {tuple(codes.shape)}")
        if not 1 <= codes.shape[1] <= self.n_codebooks:
            raise ValueError(f"codes has {codes.shape[1]} codebooks; this decoder allows 1..{self.n_codebooks}")
        if codes.shape[2] == 0:
            raise ValueError("codes has 0 frames; need at least 1")
        return self(codes.long())

    @torch.no_grad()
    def decode_lengths(self, codes: torch.Tensor, lengths: list[int] | torch.Tensor) -> torch.Tensor:
        """Right-padded codes [B, K, T] with per-row frame counts -> [B, 320·T], zero past each row's end."""
        lengths = [int(n) for n in (lengths.tolist() if torch.is_tensor(lengths) else lengths)]
        if len(lengths) != codes.shape[0] or not all(1 <= n <= codes.shape[-1] for n in lengths):
            raise ValueError(f"lengths must be {codes.shape[0]} frame counts in 1..{codes.shape[-1]}, got {lengths}")
        audio = self.decode(codes)
        for row, n in enumerate(lengths):
            if n < KERNEL:  # too short to share the batch (see the class docstring): decode alone
                audio[row, : n * SAMPLES_PER_FRAME] = self.decode(codes[row : row + 1, :, :n])[0]
            audio[row, n * SAMPLES_PER_FRAME :] = 0
        return audio
