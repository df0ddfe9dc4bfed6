"""Resemblyzer's GE2E voice encoder, re-implemented: 16 kHz audio -> VAD-trimmed mel frames -> a 256-d voice vector.

The network, its preprocessing and its pretrained weights (`assets/voice_encoder.safetensors`) come
from Resemblyzer 0.1.4 (Copyright 2019 Resemble.AI, Apache-2.0; see assets/VOICE_ENCODER_LICENSE.txt).
Numbers and rules follow its `hparams.py`, `audio.py` and `voice_encoder.py`; the mel spectrogram is
librosa's `melspectrogram` as Resemblyzer calls it, computed here with numpy so librosa (and numba) stay out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from scipy.ndimage import binary_dilation
from torch import nn

SAMPLE_RATE = 16_000  # the encoder's only input rate
# Mel spectrogram: 25 ms Hann window, 10 ms hop, 40 Slaney-scale bands (librosa's defaults otherwise).
N_FFT = 400
HOP = 160
N_MELS = 40
# One partial utterance: 160 frames = 1.6 s; an utterance is cut into ~1.3 overlapping partials a second.
PARTIAL_FRAMES = 160
PARTIALS_PER_SECOND = 1.3
# A last partial less than 75 % covered by audio is dropped (unless it is the only one).
MIN_COVERAGE = 0.75
# Volume normalisation: quieter audio is raised to -30 dBFS RMS, louder audio is left as it is.
TARGET_DBFS = -30.0
INT16_MAX = 2**15 - 1
# webrtcvad: 30 ms windows, most aggressive mode; flags averaged over 8 windows, then voiced runs
# are dilated by 6 windows each side so silences of up to 6 windows (180 ms) survive.
VAD_WINDOW = 30 * SAMPLE_RATE // 1000
VAD_MODE = 3
VAD_AVERAGE_WIDTH = 8
VAD_MAX_SILENCE = 6
# Network: 3-layer LSTM over the 40 mel bands, its last hidden state -> Linear -> ReLU -> L2 norm.
HIDDEN = 256
EMBEDDING = 256
LAYERS = 3
WEIGHTS = Path(__file__).resolve().parent / "assets" / "voice_encoder.safetensors"


def normalize_volume(wav: np.ndarray) -> np.ndarray:
    """Raise `wav` [N] to TARGET_DBFS RMS; louder (or silent) audio is returned unchanged."""
    if not np.any(wav):  # nothing to raise (Resemblyzer would multiply by inf here)
        return wav
    # In float32 scalars throughout, as Resemblyzer computes it, so the gain is the same to the bit.
    rms = np.sqrt(np.mean((wav * INT16_MAX) ** 2))
    change_db = TARGET_DBFS - 20 * np.log10(rms / INT16_MAX)
    return wav if change_db < 0 else wav * (10 ** (change_db / 20))


def voice_flags(wav: np.ndarray) -> np.ndarray:
    """webrtcvad's speech / no-speech verdict per whole VAD_WINDOW of `wav` [N] -> bool [N // VAD_WINDOW]."""
    import webrtcvad  # the audiobook extra (webrtcvad-wheels); callers check it with pipeline.extras

    n_windows = len(wav) // VAD_WINDOW
    # Native 16-bit PCM as webrtcvad wants it; clipped, where Resemblyzer lets loud peaks wrap around.
    pcm = np.clip(np.round(wav[: n_windows * VAD_WINDOW] * INT16_MAX), -INT16_MAX - 1, INT16_MAX).astype(np.int16)
    vad = webrtcvad.Vad(VAD_MODE)
    return np.array([vad.is_speech(window.tobytes(), SAMPLE_RATE) for window in pcm.reshape(n_windows, VAD_WINDOW)])


def moving_average(flags: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of `flags` [W] over `width` windows, zeros beyond the ends -> float [W]."""
    padded = np.concatenate((np.zeros((width - 1) // 2), flags, np.zeros(width // 2)))
    sums = np.cumsum(padded, dtype=float)
    sums[width:] = sums[width:] - sums[:-width]
    return sums[width - 1 :] / width


def trim_long_silences(wav: np.ndarray) -> np.ndarray:
    """`wav` [N] at 16 kHz cut to whole VAD windows, without its silences longer than VAD_MAX_SILENCE windows."""
    flags = voice_flags(wav)
    voiced = np.round(moving_average(flags, VAD_AVERAGE_WIDTH)).astype(bool)
    voiced = binary_dilation(voiced, np.ones(VAD_MAX_SILENCE + 1))
    return wav[: len(flags) * VAD_WINDOW][np.repeat(voiced, VAD_WINDOW)]


def preprocess_wav(wav: np.ndarray) -> np.ndarray:
    """Resemblyzer's preprocessing of 16 kHz float audio [N]: volume raised to -30 dBFS, long silences cut."""
    return trim_long_silences(normalize_volume(np.asarray(wav, dtype=np.float32)))


def hz_to_mel(hz: float | np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def mel_to_hz(mel: float | np.ndarray) -> np.ndarray:
    """The inverse of hz_to_mel."""
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


def mel_filters() -> np.ndarray:
    """Slaney-normalised triangular mel filters, 0 Hz .. Nyquist -> [N_MELS, N_FFT // 2 + 1] (librosa.filters.mel)."""
    fft_hz = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    band_hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    widths = np.diff(band_hz)
    ramps = band_hz[:, None] - fft_hz[None, :]  # [N_MELS + 2, F]
    rising, falling = -ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # Slaney's norm: each band has the same area (energy), whatever its width in Hz.
    return weights * (2.0 / (band_hz[2:] - band_hz[:-2]))[:, None]


def mel_spectrogram(wav: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """Power mel spectrogram (not log) of 16 kHz `wav` [N] -> float32 [1 + N // HOP, N_MELS].

    As librosa (>= 0.10) computes it: frames centred on every HOP-th sample with N_FFT // 2 zeros
    padded each side (center=True, pad_mode="constant"), a periodic Hann window, |rfft|^2.
    """
    padded = np.pad(np.asarray(wav, dtype=np.float64), N_FFT // 2)
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]  # [T, N_FFT]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann, as scipy's fftbins=True
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # [T, F]
    return (power @ filters.T).astype(np.float32)


def partial_starts(n_samples: int) -> list[int]:
    """First mel frame of each PARTIAL_FRAMES-long partial utterance covering `n_samples` (at least one)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round(SAMPLE_RATE / PARTIALS_PER_SECOND / HOP))
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


class VoiceEncoderNet(nn.Module):
    """The GE2E network: mel frames [B, T, N_MELS] -> L2-normalised, non-negative embeddings [B, EMBEDDING]."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, HIDDEN, LAYERS, batch_first=True)
        self.linear = nn.Linear(HIDDEN, EMBEDDING)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)  # hidden: [LAYERS, B, HIDDEN]
        return nn.functional.normalize(torch.relu(self.linear(hidden[-1])), dim=1)


def load_voice_encoder_net(path: Path = WEIGHTS, device: str | torch.device = "cpu") -> VoiceEncoderNet:
    """The network with the weights in the safetensors file `path`, strictly: every key, every shape, fp32."""
    if not path.is_file():
        raise FileNotFoundError(f"voice encoder weights {path} are missing; reinstall barkpipe")
    state = load_file(str(path), device="cpu")
    with torch.device("meta"):
        net = VoiceEncoderNet()
    expected = {name: tuple(t.shape) for name, t in net.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(n for n in set(expected) & set(state) if tuple(state[n].shape) != expected[n])
    wrong += sorted(n for n in state if state[n].dtype != torch.float32 and n not in wrong)
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path}: not the voice encoder's weights: missing {missing}, unexpected {unexpected}, "
            f"wrong shape or dtype {wrong}"
        )
    net.load_state_dict(state, strict=True, assign=True)
    return net.to(device).eval()


class VoiceEncoder:
    """Embeds preprocessed 16 kHz utterances as Resemblyzer's `VoiceEncoder.embed_utterance` does."""

    def __init__(self, device: str | torch.device = "cpu", weights: Path = WEIGHTS):
        self.net = load_voice_encoder_net(weights, device)
        self.device = torch.device(device)
        self.filters = mel_filters()  # [N_MELS, F], built once

    def partial_mels(self, wav: np.ndarray) -> np.ndarray:
        """The partial utterances of preprocessed `wav` [N] as mel frames [P, PARTIAL_FRAMES, N_MELS]."""
        starts = partial_starts(len(wav))
        # Zeros up to the end of the last partial, so every partial has all its frames.
        wav = np.pad(wav, (0, max(0, (starts[-1] + PARTIAL_FRAMES) * HOP - len(wav))))
        mel = mel_spectrogram(wav, self.filters)
        return np.stack([mel[s : s + PARTIAL_FRAMES] for s in starts])

    @torch.inference_mode()
    def embed_utterance(self, wav: np.ndarray) -> np.ndarray:
        """The L2-normalised mean of the partial utterances' embeddings -> float32 [EMBEDDING]."""
        mels = torch.from_numpy(self.partial_mels(wav)).to(self.device)
        partials = self.net(mels).float().cpu().numpy()  # [P, EMBEDDING]
        mean = partials.mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)
