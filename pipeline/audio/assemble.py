"""Joining chunk audio into one track: silence trimming, pauses and crossfades, loudness."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.signal

from pipeline.audio.encode import PEAK_LIMIT

# Frame used to decide what is silence when trimming (10 ms: finer than a syllable).
TRIM_FRAME_S = 0.010
# Samples cleaned per step by the final guard of join_chunks (bounds its temporary mask).
GUARD_BLOCK = 1 << 16
# Full scale of 16-bit PCM: int16 sample s is the float s / PCM16_SCALE.
PCM16_SCALE = 32768.0
# ITU-R BS.1770 gating: 400 ms blocks, a new one every 100 ms (75 % overlap); shorter audio
# has no defined loudness.
LOUDNESS_BLOCK_S = 0.4
LOUDNESS_HOPS = 4  # hops of LOUDNESS_BLOCK_S * LOUDNESS_STEP seconds in one block
LOUDNESS_STEP = 1.0 / LOUDNESS_HOPS  # hop, as a fraction of the block
# BS.1770 absolute gate (LUFS) and relative gate (LU under the absolutely gated loudness).
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
# The -0.691 dB offset that makes a 997 Hz 0 dBFS sine read -3.01 LUFS after K-weighting.
LOUDNESS_OFFSET_DB = -0.691
# K-weighting as two RBJ-cookbook biquads (pyloudnorm's design, recomputed per sample rate):
# a +4 dB high shelf at 1500 Hz (head diffraction) and a 38 Hz high pass (RLB weighting).
SHELF_GAIN_DB, SHELF_Q, SHELF_HZ = 4.0, 1.0 / np.sqrt(2.0), 1500.0
HIGHPASS_Q, HIGHPASS_HZ = 0.5, 38.0


def trim_silence(audio: np.ndarray, sr: int, threshold_db: float = -45.0, keep_ms: float = 50.0) -> np.ndarray:
    """Cut leading and trailing frames quieter than `threshold_db` dBFS, keeping `keep_ms` of margin.

    Bark pads its output with near-silence of varying length; trimming makes the
    pauses that join_chunks inserts the only pauses. All-silent audio gives an empty array.
    Float audio comes back float32, int16 PCM as int16; a float32 or int16 input gives a
    view of itself (no copy).
    """
    audio = _mono(audio, "audio")
    _check_rate(sr)
    if audio.dtype != np.int16:
        audio = audio.astype(np.float32, copy=False)
    frame = max(1, int(round(TRIM_FRAME_S * sr)))
    if len(audio) == 0:
        return audio
    threshold = 10 ** (threshold_db / 20) * (PCM16_SCALE if audio.dtype == np.int16 else 1.0)
    loud = np.flatnonzero(_frame_mean_squares(audio, frame) > threshold**2)
    if loud.size == 0:
        return audio[:0]
    keep = int(round(keep_ms / 1000 * sr))
    start = max(0, loud[0] * frame - keep)
    end = min(len(audio), (loud[-1] + 1) * frame + keep)
    return audio[start:end]


def _frame_mean_squares(audio: np.ndarray, frame: int) -> np.ndarray:
    """Mean square of each `frame`-sample frame [ceil(N / frame)]; the last frame counts as zero-padded."""
    full = len(audio) // frame * frame
    # einsum sums each frame's squares in float64 straight from the input: no squared copy.
    frames = audio[:full].reshape(-1, frame)
    sums = np.einsum("ij,ij->i", frames, frames, dtype=np.float64, casting="unsafe")
    if full < len(audio):
        tail = audio[full:].astype(np.float64)
        sums = np.append(sums, np.dot(tail, tail))
    return sums / frame


def join_chunks(
    chunks_audio: list[np.ndarray],
    sr: int,
    *,
    pause_s: float = 0.25,
    paragraph_pause_s: float = 0.7,
    paragraph_breaks: list[bool] | None = None,
    crossfade_ms: float = 10.0,
    pauses_after: list[float | None] | None = None,
) -> np.ndarray:
    """Concatenate chunk audio [N_i] with a pause after each chunk (longer after a paragraph).

    `paragraph_breaks[i]` is Chunk.paragraph_break_after of chunk i (the last is
    ignored). `pauses_after[i]`, when not None, is the exact silence in seconds after chunk i
    (an SSML <break>) and replaces the default pause. Each edge gets a `crossfade_ms` fade so
    no click is heard (the fades lie inside the chunks, so a pause is that many zero samples);
    with a zero pause the two chunks overlap by that much instead. Chunks may be float or int16
    PCM; the result is float32, written once into a buffer of its final length (linear time).
    """
    _check_rate(sr)
    if pause_s < 0 or paragraph_pause_s < 0 or crossfade_ms < 0:
        raise ValueError(
            f"pause_s, paragraph_pause_s and crossfade_ms must be >= 0, got "
            f"{pause_s!r}, {paragraph_pause_s!r}, {crossfade_ms!r}"
        )
    breaks = [False] * len(chunks_audio) if paragraph_breaks is None else list(paragraph_breaks)
    if len(breaks) != len(chunks_audio):
        raise ValueError(f"paragraph_breaks has {len(breaks)} entries; it needs one per chunk ({len(chunks_audio)})")
    exact = [None] * len(chunks_audio) if pauses_after is None else list(pauses_after)
    if len(exact) != len(chunks_audio):
        raise ValueError(f"pauses_after has {len(exact)} entries; it needs one per chunk ({len(chunks_audio)})")
    if any(p is not None and not (np.isfinite(p) and p >= 0) for p in exact):
        raise ValueError(f"pauses_after must hold seconds >= 0 or None, got {exact!r}")
    chunks = [_mono(c, f"chunks_audio[{i}]") for i, c in enumerate(chunks_audio)]
    seconds = [(paragraph_pause_s if b else pause_s) if p is None else p for b, p in zip(breaks, exact, strict=True)]
    pauses = [int(round(s * sr)) for s in seconds[:-1]]
    fade = int(round(crossfade_ms / 1000 * sr))
    starts, fades, total = _layout([len(c) for c in chunks], pauses, fade)
    out = np.empty(total, np.float32)
    end = 0  # samples of `out` written so far
    for i, chunk in enumerate(chunks):
        start, f = starts[i], fades[i]
        ramp = np.linspace(0.0, 1.0, f, dtype=np.float32)  # [f] rising edge
        if f > 0 and start < end:
            # No pause: overlap-add the last f samples written with this chunk's first f.
            out[start:end] *= ramp[::-1]
            out[start:end] += _as_float32(chunk[:f]) * ramp
            _write(out[end : start + len(chunk)], chunk[f:])
        else:
            # Fade out into the pause and in from it: both edges land on zero.
            out[end - f : end] *= ramp[::-1]
            out[end:start] = 0.0
            _write(out[start : start + len(chunk)], chunk)
            out[start : start + f] *= ramp
        end = start + len(chunk)
    assert end == total, f"join layout wrote {end} of {total} samples"
    return _guard_inplace(out)


def join_audio(pieces: list[np.ndarray], sample_rate: int, breaks: list[bool], segment,
               lap: Callable[[str], None] | None = None,
               pauses: list[float | None] | None = None) -> np.ndarray:  # fmt: skip
    """Chunk audio -> one track, as `say` and a run's finish stage both make it: trim each chunk, join
    with pauses and crossfades, then set the loudness.

    segment: SegmentConfig's assembly fields (trim_silence, sentence_pause_s, paragraph_pause_s,
    crossfade_ms, loudness_lufs), passed in. breaks[i]: chunk i ends a paragraph (the longer pause
    follows). pauses[i]: exact seconds of silence after chunk i (an SSML <break>), None for the usual
    pause. lap(step) is called after "trim", "join" and "loudness", for callers that time the steps.
    """
    lap = lap or (lambda step: None)
    if segment.trim_silence:
        pieces = [trim_silence(p, sample_rate) for p in pieces]
    lap("trim")
    audio = join_chunks(pieces, sample_rate, pause_s=segment.sentence_pause_s,
                        paragraph_pause_s=segment.paragraph_pause_s, paragraph_breaks=list(breaks),
                        crossfade_ms=segment.crossfade_ms, pauses_after=pauses)  # fmt: skip
    lap("join")
    if len(audio) == 0:
        raise ValueError("every chunk came out silent; try another seed or voice")
    if segment.loudness_lufs is not None:
        audio, _ = normalize_loudness(audio, sample_rate, segment.loudness_lufs)
        lap("loudness")
    return audio.astype(np.float32)


def _layout(lengths: list[int], pauses: list[int], fade: int) -> tuple[list[int], list[int], int]:
    """Where each chunk starts in the joined track, its fade length, and the track's length.

    A chunk's fade is `fade` shortened to the audio on both sides of its edge; with a zero
    pause it starts that many samples before the track so far ends (the overlap).
    """
    starts, fades, end = [], [], 0
    for i, n in enumerate(lengths):
        f = 0 if i == 0 else min(fade, end, n)
        pause = 0 if i == 0 else pauses[i - 1]
        start = end - f if (f > 0 and pause == 0) else end + pause
        starts.append(start)
        fades.append(f)
        end = start + n
    return starts, fades, end


def _write(dst: np.ndarray, src: np.ndarray) -> None:
    """Copy chunk samples into the float32 track, scaling int16 PCM to [-1, 1)."""
    if src.dtype == np.int16:
        np.multiply(src, np.float32(1.0 / PCM16_SCALE), out=dst)
    else:
        dst[...] = src


def normalize_loudness(audio: np.ndarray, sr: int, target_lufs: float = -20.0) -> tuple[np.ndarray, bool]:
    """Scale `audio` to `target_lufs` integrated loudness (ITU-R BS.1770, see integrated_loudness).

    Returns (float32 audio, applied). Audio shorter than one 0.4 s gating block or silent
    has no loudness; it comes back unchanged with applied=False. Peaks above
    PEAK_LIMIT after the gain are scaled down, so loud targets may land a little under.
    """
    audio = _as_float32(_mono(audio, "audio"))
    _check_rate(sr)
    if not -70.0 <= target_lufs <= 0.0:
        raise ValueError(f"target_lufs must be within [-70, 0] LUFS, got {target_lufs!r}")
    if len(audio) < LOUDNESS_BLOCK_S * sr or not np.any(audio):
        return audio, False
    loudness = integrated_loudness(audio, sr)
    if not np.isfinite(loudness):
        return audio, False  # every block fell under the -70 LUFS absolute gate
    gained = audio * np.float32(10 ** ((target_lufs - loudness) / 20))
    peak = max(float(gained.max()), -float(gained.min()))  # two passes, no |x| copy
    if peak > PEAK_LIMIT:
        gained *= np.float32(PEAK_LIMIT / peak)
    return gained, True


def integrated_loudness(audio: np.ndarray, sr: int) -> float:
    """Gated integrated loudness of mono audio [N] in LUFS (ITU-R BS.1770-4), -inf when all gated.

    Computes what pyloudnorm.Meter(sr).integrated_loudness does, with the same block
    boundaries, vectorised: the squared K-weighted signal is summed once per 100 ms hop
    and each 400 ms block is four hop sums, so the cost is one IIR pass and one sum.
    """
    audio = _as_float32(_mono(audio, "audio"))
    _check_rate(sr)
    n = len(audio)
    if n < LOUDNESS_BLOCK_S * sr:
        raise ValueError(f"audio of {n} samples is shorter than one {LOUDNESS_BLOCK_S} s loudness block at {sr} Hz")
    weighted = _k_weighted(audio, sr)
    np.square(weighted, out=weighted)
    n_blocks = int(np.round((n / sr - LOUDNESS_BLOCK_S) / (LOUDNESS_BLOCK_S * LOUDNESS_STEP))) + 1
    # Block j covers samples [bounds[j], bounds[j + 4]); the last may run past the end, as in
    # pyloudnorm, and then holds fewer samples but is still divided by the full block length.
    steps = np.arange(n_blocks + LOUDNESS_HOPS) * LOUDNESS_STEP
    bounds = np.minimum((LOUDNESS_BLOCK_S * steps * sr).astype(np.int64), n)
    hops = np.zeros(len(bounds) - 1)
    nonempty = bounds[1:] > bounds[:-1]
    if nonempty.any():
        # reduceat sums from each start to the next one given, so empty hops must be left out.
        hops[nonempty] = np.add.reduceat(weighted[: bounds[-1]], bounds[:-1][nonempty], dtype=np.float64)
    power = np.convolve(hops, np.ones(LOUDNESS_HOPS), mode="valid") / (LOUDNESS_BLOCK_S * sr)  # [n_blocks]
    with np.errstate(divide="ignore"):
        block_lufs = LOUDNESS_OFFSET_DB + 10 * np.log10(power)
    above = block_lufs >= ABSOLUTE_GATE_LUFS
    if not above.any():
        return float("-inf")
    relative_gate = LOUDNESS_OFFSET_DB + 10 * np.log10(power[above].mean()) + RELATIVE_GATE_LU
    gated = (block_lufs > relative_gate) & (block_lufs > ABSOLUTE_GATE_LUFS)
    if not gated.any():
        return float("-inf")
    return float(LOUDNESS_OFFSET_DB + 10 * np.log10(power[gated].mean()))


def _k_weighted(audio: np.ndarray, sr: int) -> np.ndarray:
    """`audio` [N] float32 through the BS.1770 K-weighting filter (a new float32 array)."""
    b1, a1 = _high_shelf(SHELF_GAIN_DB, SHELF_Q, SHELF_HZ, sr)
    b2, a2 = _high_pass(HIGHPASS_Q, HIGHPASS_HZ, sr)
    # The two biquads as second-order sections of one sosfilt pass: the same cascade as two
    # lfilter calls at half the cost. float32 keeps it in float32 (half the memory of float64
    # and within 0.001 LU of it for these well-damped sections; tests compare with pyloudnorm).
    sos = np.array([np.concatenate([b1, a1]), np.concatenate([b2, a2])], dtype=np.float32)  # [2, 6]
    return scipy.signal.sosfilt(sos, audio)


def _high_shelf(gain_db: float, q: float, fc: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ cookbook high-shelf biquad (b, a), normalised so a[0] == 1."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * fc / sr
    alpha, cos = np.sin(w0) / (2 * q), np.cos(w0)
    root = 2 * np.sqrt(a) * alpha
    b = [a * ((a + 1) + (a - 1) * cos + root), -2 * a * ((a - 1) + (a + 1) * cos), a * ((a + 1) + (a - 1) * cos - root)]
    den = [(a + 1) - (a - 1) * cos + root, 2 * ((a - 1) - (a + 1) * cos), (a + 1) - (a - 1) * cos - root]
    return np.array(b) / den[0], np.array(den) / den[0]


def _high_pass(q: float, fc: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ cookbook high-pass biquad (b, a), normalised so a[0] == 1."""
    w0 = 2 * np.pi * fc / sr
    alpha, cos = np.sin(w0) / (2 * q), np.cos(w0)
    b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2]
    den = [1 + alpha, -2 * cos, 1 - alpha]
    return np.array(b) / den[0], np.array(den) / den[0]


def _mono(audio: np.ndarray, name: str) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"{name} must be mono audio of shape [N], got shape {audio.shape}")
    if not (audio.dtype == np.int16 or np.issubdtype(audio.dtype, np.floating)):
        raise ValueError(f"{name} must be float or int16 PCM, got dtype {audio.dtype}")
    return audio


def _as_float32(audio: np.ndarray) -> np.ndarray:
    """Float audio as float32 (no copy when it already is); int16 PCM scaled to [-1, 1)."""
    if audio.dtype == np.int16:
        return np.multiply(audio, np.float32(1.0 / PCM16_SCALE), dtype=np.float32)
    return audio.astype(np.float32, copy=False)


def _check_rate(sr: int) -> None:
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sr must be a positive int sample rate, got {sr!r}")


def _guard_inplace(audio: np.ndarray) -> np.ndarray:
    """Zero NaN and clip to ±PEAK_LIMIT (±inf to the limits) in place, so encoders never wrap around."""
    # Block by block: the NaN mask of one block is all the temporary memory this needs.
    for start in range(0, len(audio), GUARD_BLOCK):
        block = audio[start : start + GUARD_BLOCK]
        np.clip(block, -PEAK_LIMIT, PEAK_LIMIT, out=block)
        np.copyto(block, 0.0, where=np.isnan(block))
    return audio
