"""The speech check: same normalisation on both sides, real recognition of espeak-ng speech, backends."""

import sys
import types

import numpy as np
import pytest

from pipeline.audio.speech import (
    ASR_SAMPLE_RATE, FasterWhisperTranscriber, Transcriber, check_language, make_transcriber,
    normalize_for_scoring, score_transcript, speech_gate, speech_measures,
)
from support.speech_audio import espeak

SENTENCE = "The weather is nice today and we are going to the park."
OTHER = "Please call me tomorrow morning at home."
# pocketsphinx's en-us model hears espeak's synthetic voice poorly (it gets about a third of
# SENTENCE's words wrong), so these limits are wide; they still split right from wrong words.
MAX_WER, MAX_CER = 0.8, 0.5


def test_numbers_abbreviations_case_punctuation_and_cues_do_not_count():
    assert normalize_for_scoring("Mr. Smith bought 21 apples [laughs]!", "en") == "mister smith bought twenty one apples"
    assert score_transcript("Mr. Smith bought 21 apples.", "mister Smith bought twenty-one apples") == {"wer": 0.0, "cer": 0.0}
    assert score_transcript("It's 3 o'clock", "its three o clock")["wer"] > 0  # an apostrophe is not a letter


def test_nothing_heard_and_nothing_to_check():
    assert score_transcript("Hello there.", "") == {"wer": 1.0, "cer": 1.0}
    assert score_transcript("[laughs]", "ha ha") == {"wer": 0.0, "cer": 0.0}  # no words to hold it to
    assert score_transcript("one two three four", "one two tree four")["wer"] == pytest.approx(0.25)


def test_gate_names_what_fails():
    assert speech_gate({"wer": 0.2, "cer": 0.1}, 0.5) == []
    assert speech_gate({"wer": 0.7, "cer": 0.6}, 0.5, 0.5) == ["wer", "cer"]
    assert speech_gate({"wer": float("nan"), "cer": 0.0}, 0.5) == ["wer"]


def test_languages_a_backend_cannot_do_are_refused():
    check_language("pocketsphinx", None, "en-US")
    check_language("faster-whisper", "Systran/faster-whisper-small", "de")
    with pytest.raises(ValueError, match="US English only, not 'de'"):
        check_language("pocketsphinx", None, "de")
    with pytest.raises(ValueError, match="English-only"):
        check_language("faster-whisper", "/models/distil-small.en", "fr")
    with pytest.raises(ValueError, match="not a Whisper language"):
        check_language("faster-whisper", "small", "xx")
    with pytest.raises(ValueError, match="model is required"):
        check_language("faster-whisper", None, "en")


@pytest.fixture(scope="module")
def sphinx():
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (pip install 'barkpipe[audiobook]')")
    return make_transcriber("pocketsphinx")


def test_pocketsphinx_hears_speech_that_says_its_text(sphinx):
    assert isinstance(sphinx, Transcriber)
    audio, sr = espeak(SENTENCE)
    m = speech_measures(audio, sr, SENTENCE, sphinx)
    assert {"we", "are", "going"} <= set(m["transcript"].split()), m
    assert m["wer"] <= MAX_WER and m["cer"] <= MAX_CER, m
    assert speech_gate(m, MAX_WER, MAX_CER) == []


def test_other_words_and_noise_fail(sphinx):
    audio, sr = espeak(OTHER)
    wrong = speech_measures(audio, sr, SENTENCE, sphinx)
    assert wrong["wer"] > MAX_WER and wrong["cer"] > MAX_CER, wrong
    assert speech_gate(wrong, MAX_WER, MAX_CER) == ["wer", "cer"]
    noise = np.random.default_rng(0).normal(0, 0.2, 4 * 24000).astype(np.float32)
    heard = speech_measures(noise, 24000, SENTENCE, sphinx)
    assert heard["wer"] > MAX_WER and heard["cer"] > MAX_CER, heard


class FakeWhisperModel:
    """Stands in for faster_whisper.WhisperModel (no weights can be fetched here)."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs, self.calls = args, kwargs, []

    def transcribe(self, audio, **kwargs):
        self.calls.append((audio, kwargs))
        seg = types.SimpleNamespace
        return iter([seg(text=" Twenty one"), seg(text=" apples. ")]), seg(language=kwargs["language"])


def test_faster_whisper_transcribes_16k_audio_in_the_configured_language():
    model = FakeWhisperModel()
    t = FasterWhisperTranscriber(model, "de")
    audio = np.zeros(24000, np.float32)
    assert t.transcribe(audio, 24000) == "Twenty one apples."
    sent, kwargs = model.calls[0]
    assert sent.dtype == np.float32 and len(sent) == ASR_SAMPLE_RATE  # one second, resampled
    assert kwargs["language"] == "de" and kwargs["vad_filter"] is False
    assert speech_measures(audio, 24000, "21 apples", t)["wer"] == 0.0


def test_faster_whisper_load_reads_a_local_folder_without_fetching(monkeypatch, tmp_path):
    fake = types.ModuleType("faster_whisper")
    fake.WhisperModel = FakeWhisperModel
    monkeypatch.setitem(sys.modules, "faster_whisper", fake)
    local = make_transcriber("faster-whisper", str(tmp_path), "pt-BR", device="cuda:1")
    assert local.language == "pt"
    assert local.model.args == (str(tmp_path),)
    assert local.model.kwargs | {"compute_type": None} == {
        "device": "cuda", "device_index": 1, "compute_type": None, "local_files_only": True}
    hub = FasterWhisperTranscriber.load("Systran/faster-whisper-small", "en")
    assert hub.model.kwargs["local_files_only"] is False and hub.model.kwargs["device"] == "auto"


def test_config_refuses_at_validate_time_a_language_the_backend_cannot_do():
    from pipeline.config import validate_config
    from pipeline.configerrors import ConfigError

    base = {"input": {"path": "m.parquet"}, "output": {"path": "out"}, "model": {"weights": "w"}}
    cfg = validate_config(base | {"quality": {"enabled": True, "speech": {"max_wer": 0.3}}})
    assert cfg.quality.speech.backend == "pocketsphinx" and cfg.quality.speech.max_wer == 0.3
    assert validate_config(base).quality.speech is None  # off unless configured
    with pytest.raises(ConfigError, match=r"quality.speech: .*US English only, not 'fr'"):
        validate_config(base | {"quality": {"speech": {"language": "fr"}}})
    with pytest.raises(ConfigError, match=r"unknown key 'quality.speech.wer'"):
        validate_config(base | {"quality": {"speech": {"wer": 0.3}}})
