"""Speaker consistency: Resemblyzer embeddings of espeak-ng voices; same voice scores above another voice."""

import sys

import numpy as np
import pytest
from support.speech_audio import espeak

from pipeline.audio.speaker import SpeakerEncoder, cosine, make_encoder, speaker_gate
from pipeline.extras import missing

FIRST = "The weather is nice today and we are going to the park."
SECOND = "Please call me tomorrow morning at home, I will be waiting."
MIN_SIMILARITY = 0.8  # measured: same espeak voice ~0.92, en+f3 against en-us ~0.69


def test_cosine_and_gate():
    assert cosine([1, 0], [1, 0]) == pytest.approx(1.0) and cosine([1, 0], [0, 1]) == pytest.approx(0.0)
    assert np.isnan(cosine([0, 0], [1, 0]))
    with pytest.raises(ValueError, match="differ in size"):
        cosine([1, 0], [1, 0, 0])
    assert speaker_gate(0.9, 0.8) == [] and speaker_gate(0.5, 0.8) == ["speaker_similarity"]
    assert speaker_gate(float("nan"), 0.8) == ["speaker_similarity"]
    with pytest.raises(ValueError, match="not known"):
        make_encoder("nope")


@pytest.fixture(scope="module")
def encoder():
    problem = missing("quality.speaker")
    if problem is not None:
        pytest.skip(problem)
    return make_encoder("resemblyzer")


def test_without_webrtcvad_the_encoder_names_the_one_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "webrtcvad", None)  # what an install without the extra looks like
    with pytest.raises(ValueError, match=r"quality\.speaker .*pip install 'barkpipe\[audiobook\]'") as error:
        make_encoder("resemblyzer")
    assert "\n" not in str(error.value)


def test_encoder_runs_without_resemblyzer_or_librosa(monkeypatch):
    if missing("quality.speaker") is not None:
        pytest.skip(missing("quality.speaker"))
    for name in ("resemblyzer", "librosa"):  # importing either now fails, as where they are not installed
        monkeypatch.setitem(sys.modules, name, None)
    reference, sr = espeak(FIRST, "en-us")
    embedding = make_encoder("resemblyzer").embed(reference, sr)
    assert embedding.shape == (256,) and np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-3)


def speaker_similarity(reference_audio, audio, sr, encoder) -> float:
    """Cosine similarity (-1..1, same voice near 1) of the voices in two clips at the same rate `sr`."""
    return cosine(encoder.embed(reference_audio, sr), encoder.embed(audio, sr))


def test_same_voice_scores_above_another_voice(encoder):
    assert isinstance(encoder, SpeakerEncoder)
    reference, sr = espeak(FIRST, "en-us")
    same, _ = espeak(SECOND, "en-us")
    other, _ = espeak(SECOND, "en+f3")
    same_score = speaker_similarity(reference, same, sr, encoder)
    other_score = speaker_similarity(reference, other, sr, encoder)
    assert same_score > other_score + 0.1, (same_score, other_score)
    assert speaker_gate(same_score, MIN_SIMILARITY) == [] and speaker_gate(other_score, MIN_SIMILARITY) != []


def test_silence_and_tiny_clips_give_no_voice(encoder):
    reference, sr = espeak(FIRST, "en-us")
    assert np.isnan(speaker_similarity(reference, np.zeros(sr, np.float32), sr, encoder))
    assert np.isnan(speaker_similarity(reference, reference[:100], sr, encoder))
    embedding = encoder.embed(reference, sr)
    assert embedding.shape == (256,) and np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-3)


class EchoTranscriber:
    """Hears what the test says the audio says (the real recognisers are tested above and in test_speech_check)."""

    def __init__(self):
        self.heard = ""

    def transcribe(self, audio, sr):
        return self.heard


class PitchEncoder:
    """A 'voice' embedding: the audio's dominant frequency on a circle (same pitch = same voice)."""

    def embed(self, audio, sr):
        spectrum = np.abs(np.fft.rfft(audio))
        f = np.argmax(spectrum) * sr / len(audio)
        return np.array([np.cos(f / 400), np.sin(f / 400)], np.float32)


def tone(freq, sr=24000):
    return np.sin(2 * np.pi * freq * np.arange(sr) / sr).astype(np.float32)


def test_listen_checks_judge_speech_and_keep_each_voice_of_a_row_to_itself():
    from pipeline.audio.listen import ListenChecks

    ear = EchoTranscriber()
    checks = ListenChecks(transcriber=ear, max_wer=0.5, encoder=PitchEncoder(), min_similarity=0.99)
    ear.heard = "hello there"
    first = checks.judge(tone(200), 24000, "Hello there!", ("row", "alice"))
    assert first.failed == [] and first.transcript == "hello there" and "speaker_similarity" not in first.measures
    checks.accept(("row", "alice"), first)
    same = checks.judge(tone(201), 24000, "Hello there.", ("row", "alice"))
    assert same.failed == [] and same.measures["speaker_similarity"] > 0.99 and same.measures["wer"] == 0.0
    ear.heard = "goodbye"
    drifted = checks.judge(tone(600), 24000, "Hello there.", ("row", "alice"))
    assert drifted.failed == ["wer", "speaker_similarity"]
    bob = checks.judge(tone(600), 24000, "goodbye", ("row", "bob"))  # another voice: its own reference
    assert bob.failed == [] and "speaker_similarity" not in bob.measures
    checks.use_reference(("row", "bob"), checks.voice_of(tone(600), 24000))
    assert checks.judge(tone(200), 24000, "goodbye", ("row", "bob")).failed == ["speaker_similarity"]
    checks.forget("row")
    assert "speaker_similarity" not in checks.judge(tone(200), 24000, "goodbye", ("row", "bob")).measures


def test_listen_checks_from_quality_config_are_off_unless_configured():
    from pipeline.audio.listen import ListenChecks
    from pipeline.config import QualityConfig

    assert ListenChecks.from_quality(QualityConfig()) is None
