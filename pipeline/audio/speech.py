"""Speech check: transcribe a chunk and score the transcript against the chunk's text (WER, CER)."""

from __future__ import annotations

import os
import re
import unicodedata
from math import gcd
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.extras import require, speech_feature
from pipeline.text.normalize import normalize_text

BACKENDS = ("pocketsphinx", "faster-whisper")
# Both recognisers take 16 kHz mono; chunks arrive at Bark's 24 kHz and are resampled.
ASR_SAMPLE_RATE = 16_000
# The pocketsphinx wheel ships only the US-English model; another language needs its own model folder.
POCKETSPHINX_BUILTIN_LANGUAGES = ("en",)
# Whisper's language codes (openai/whisper tokenizer.LANGUAGES; faster-whisper takes the same).
WHISPER_LANGUAGES = (
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi hr ht "
    "hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc pa pl ps "
    "pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo yue zh"
).split()
# Cues ("[laughs]") and ♪…♪ lyrics are not words a recogniser can be held to.
_NOT_SPOKEN = re.compile(r"\[[^\[\]\n]*\]|♪[^♪]*♪")


@runtime_checkable
class Transcriber(Protocol):
    """A speech recogniser loaded once (per actor): mono float audio [N] at `sr` Hz -> its words."""

    def transcribe(self, audio: np.ndarray, sr: int) -> str: ...


def speech_measures(audio: np.ndarray, sr: int, text: str, transcriber: Transcriber, language: str = "en") -> dict:
    """Transcribe `audio` and compare with `text`: {"wer", "cer", "transcript"}.

    Both sides get the same normalisation (`normalize_for_scoring`), so "21" in the text and
    "twenty one" in the transcript agree. A text with no words to check (only a cue) scores 0
    whatever was heard: the other gates judge such a chunk.
    """
    transcript = transcriber.transcribe(np.asarray(audio, dtype=np.float32), sr)
    if not isinstance(transcript, str):
        raise TypeError(f"transcriber returned {type(transcript).__name__}, not str")
    return {"transcript": transcript, **score_transcript(text, transcript, language)}


def score_transcript(text: str, transcript: str, language: str = "en") -> dict[str, float]:
    """Word and character error rates of `transcript` against `text` (0 = identical; may exceed 1)."""
    import jiwer  # in both speech extras: whichever transcriber heard the chunk, make_transcriber checked it

    reference = normalize_for_scoring(text, language)
    hypothesis = normalize_for_scoring(transcript, language)
    if not reference:
        return {"wer": 0.0, "cer": 0.0}
    if not hypothesis:  # jiwer refuses nothing; nothing heard is every word deleted
        return {"wer": 1.0, "cer": 1.0}
    return {"wer": float(jiwer.wer(reference, hypothesis)), "cer": float(jiwer.cer(reference, hypothesis))}


def normalize_for_scoring(text: str, language: str = "en") -> str:
    """Lower-case words only: numbers and abbreviations spelled out (pipeline.text.normalize),
    cues dropped, punctuation and symbols turned into spaces."""
    text = normalize_text(_NOT_SPOKEN.sub(" ", text), language)
    text = _NOT_SPOKEN.sub(" ", text)
    kept = [" " if unicodedata.category(c)[0] in "PSZC" else c for c in text.casefold()]
    return " ".join("".join(kept).split())


def check_language(backend: str, model: str | None, language: str) -> None:
    """ValueError (one sentence) when `backend` with `model` cannot transcribe `language`."""
    base = re.split(r"[-_]", str(language).strip().lower())[0]
    if backend == "pocketsphinx":
        if model is None and base not in POCKETSPHINX_BUILTIN_LANGUAGES:
            raise ValueError(
                f"quality.speech: pocketsphinx's built-in model is US English only, not {language!r}; "
                "set quality.speech.model to a pocketsphinx model folder for that language, or use backend "
                "faster-whisper"
            )
    elif backend == "faster-whisper":
        if model is None:
            raise ValueError(
                "quality.speech.model is required for faster-whisper: a local model folder or a "
                "Hub id such as 'Systran/faster-whisper-small'"
            )
        if base not in WHISPER_LANGUAGES:
            raise ValueError(
                f"quality.speech.language {language!r} is not a Whisper language; "
                f"use one of {', '.join(WHISPER_LANGUAGES)}"
            )
        if str(model).rstrip("/").endswith(".en") and base != "en":
            raise ValueError(
                f"quality.speech.model {model!r} is an English-only Whisper model; it cannot check {language!r} speech"
            )
    else:
        raise ValueError(f"quality.speech.backend {backend!r} is not known; use one of {list(BACKENDS)}")


def make_transcriber(backend: str, model: str | None = None, language: str = "en", device: str = "auto") -> Transcriber:
    """Load the named backend once; call this in an actor's __init__, not per chunk."""
    check_language(backend, model, language)
    require(speech_feature(backend))
    if backend == "pocketsphinx":
        return PocketSphinxTranscriber(model)
    assert model is not None, "check_language() refuses faster-whisper without a model"
    return FasterWhisperTranscriber.load(model, language, device)


def to_asr_rate(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mono float32 audio [N] resampled (polyphase) to ASR_SAMPLE_RATE; NaN/inf zeroed, clipped to ±1."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono of shape [N], got shape {audio.shape}")
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sr must be a positive int sample rate, got {sr!r}")
    audio = np.clip(np.nan_to_num(audio, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)
    if sr != ASR_SAMPLE_RATE and len(audio):
        from scipy.signal import resample_poly  # ~0.8 s to import: paid by the listening checks, not by importers

        g = gcd(int(sr), ASR_SAMPLE_RATE)
        audio = resample_poly(audio, ASR_SAMPLE_RATE // g, int(sr) // g).astype(np.float32)
    return audio


class PocketSphinxTranscriber:
    """CMU pocketsphinx: the wheel's US-English model (offline), or a model folder of another language.

    A model folder holds an acoustic model folder (with `mdef`), a language model (`*.lm.bin` or
    `*.lm`) and a pronunciation dictionary (`*.dict`), as the wheel's `model/en-us/` does.
    """

    def __init__(self, model: str | None = None):
        from pocketsphinx import Decoder

        options = {} if model is None else _sphinx_model_files(model)
        self.decoder = Decoder(samprate=ASR_SAMPLE_RATE, loglevel="FATAL", **options)

    def transcribe(self, audio: np.ndarray, sr: int) -> str:
        pcm = (to_asr_rate(audio, sr) * 32767).astype("<i2").tobytes()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, no_search=False, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


def _sphinx_model_files(folder: str) -> dict[str, str]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"quality.speech.model {folder!r} is not a folder (a pocketsphinx model)")
    names = sorted(os.listdir(folder))
    hmm = [n for n in names if os.path.isfile(os.path.join(folder, n, "mdef"))]
    lm = [n for n in names if n.endswith((".lm.bin", ".lm"))]
    dic = [n for n in names if n.endswith(".dict")]
    missing = [
        what
        for what, found in (("an acoustic model folder with mdef", hmm), ("a *.lm.bin or *.lm", lm), ("a *.dict", dic))
        if not found
    ]
    if missing:
        raise FileNotFoundError(f"pocketsphinx model folder {folder!r} lacks {', '.join(missing)}")
    return {
        "hmm": os.path.join(folder, hmm[0]),
        "lm": os.path.join(folder, lm[0]),
        "dict": os.path.join(folder, dic[0]),
    }


class FasterWhisperTranscriber:
    """faster-whisper (CTranslate2): wraps a loaded `WhisperModel`; `load` builds one from config."""

    def __init__(self, model, language: str, beam_size: int = 1):
        self.model, self.language, self.beam_size = model, language, beam_size

    @classmethod
    def load(cls, model: str, language: str, device: str = "auto", compute_type: str = "default"):
        """A local folder (converted CTranslate2 model) is read as it is, never fetched; any other
        value is a Hub id or size name that faster-whisper fetches into the Hugging Face cache."""
        require(speech_feature("faster-whisper"))
        from faster_whisper import WhisperModel

        kind, _, index = device.partition(":")
        local = os.path.isdir(model)
        whisper = WhisperModel(
            model, device=kind, device_index=int(index or 0), compute_type=compute_type, local_files_only=local
        )
        return cls(whisper, re.split(r"[-_]", language.strip().lower())[0])

    def transcribe(self, audio: np.ndarray, sr: int) -> str:
        # One chunk is one utterance: no VAD, no conditioning on text the chunk does not hold.
        segments, _info = self.model.transcribe(
            to_asr_rate(audio, sr),
            language=self.language,
            beam_size=self.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()


def speech_gate(measures: dict, max_wer: float, max_cer: float | None = None) -> list[str]:
    """Names of the speech gates `measures` fail ("wer", "cer"); NaN fails. [] = the chunk says its text."""
    failed = [] if measures["wer"] <= max_wer else ["wer"]
    if max_cer is not None and not measures["cer"] <= max_cer:
        failed.append("cer")
    return failed
