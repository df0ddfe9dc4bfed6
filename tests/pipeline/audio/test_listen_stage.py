"""The engine stage's listening gates (speech check, speaker consistency) and its engine-call watchdog."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pytest
from support.speech_audio import espeak, need_espeak
from support.stages import LONG, SR, FakeEngine, FakeResult, batch, config, engine_stage, run_stages

from pipeline.text.chunks import chunk_seed
from pipeline.batch.guard import DEFAULT_CALL_TIMEOUT_S, exit_process

SENTENCE = "The weather is nice today and we are going to the park."
OTHER = "Please call me tomorrow morning at home."
# Measured in tests/pipeline/audio/test_speech_check.py: pocketsphinx hears espeak's voice poorly (WER 0.67 on
# SENTENCE said right, 0.92-1.4 against other words, noise about 1), so the limit is wide.
MAX_WER = 0.8
ONE_CHUNK = {"target_seconds": 10.0, "max_seconds": 15.0}  # each test sentence stays one chunk


def speech_config(**quality):
    """Only the speech check: quality.enabled stays false (the signal gates are off)."""
    return config(segment=ONE_CHUNK, quality={"speech": {"backend": "pocketsphinx", "max_wer": MAX_WER}, **quality})


@pytest.fixture
def speech():
    """The real recogniser and real speech, or a skip saying which is missing."""
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (pip install 'barkpipe[audiobook]')")
    need_espeak()


@lru_cache(maxsize=16)
def spoken(text: str) -> np.ndarray:
    """espeak-ng saying `text`, resampled to the engine's 24 kHz (skips the test where espeak-ng is missing)."""
    from scipy.signal import resample_poly

    audio, sr = espeak(text)
    assert sr == 22_050, f"espeak-ng wrote {sr} Hz"
    return resample_poly(audio, 160, 147).astype(np.float32)  # 22 050 Hz * 160 / 147 = 24 000 Hz


class SpeakingEngine(FakeEngine):
    """Says each request's text with espeak-ng; OTHER words on a text's first attempt (wrong_first), or
    noise for the texts in `noisy`."""

    def __init__(self, wrong_first=False, noisy=()):
        super().__init__()
        self.wrong_first, self.noisy = wrong_first, set(noisy)
        self.asked: Counter = Counter()

    def generate(self, requests, batch_size=None, progress=None):
        self.calls.append(list(requests))
        out = []
        for r in requests:
            self.asked[r.text] += 1
            if r.text in self.noisy:
                audio = np.random.default_rng(r.seed).normal(0, 0.2, 3 * SR).astype(np.float32)
            else:
                audio = spoken(OTHER if self.wrong_first and self.asked[r.text] == 1 else r.text)
            out.append(FakeResult(audio, r.seed, r.text, r.voice))
        return out


def test_speech_check_passes_speech_that_says_its_text_and_records_transcript_and_wer(speech):
    row = run_stages(batch([("a", SENTENCE)]), cfg=speech_config(), engine=SpeakingEngine()).to_pylist()[0]
    assert row["ok"] and row["flagged"] is False
    [chunk] = row["chunks"]
    measures = dict(chunk["measures"])
    assert chunk["passed"] is True and chunk["attempts"] == 1 and chunk["failed"] == []
    assert 0 <= measures["wer"] <= MAX_WER and "cer" in measures, measures
    assert {"we", "are", "going"} <= set(chunk["transcript"].split()), chunk["transcript"]
    assert "rms_db" not in measures  # quality.enabled is false: the listening gates ran alone
    assert dict(row["timings"])["listen"] > 0


def test_speech_check_regenerates_a_chunk_that_says_other_words(speech):
    engine = SpeakingEngine(wrong_first=True)
    row = run_stages(batch([("a", SENTENCE)]), cfg=speech_config(max_retries=2), engine=engine).to_pylist()[0]
    [chunk] = row["chunks"]
    assert engine.asked[SENTENCE] == 2  # OTHER words first, then the text
    assert chunk["attempts"] == 2 and chunk["passed"] is True and chunk["failed"] == []
    assert chunk["seed"] == chunk_seed(row["seed"], 0, 1)  # the kept attempt's derived seed
    assert dict(chunk["measures"])["wer"] <= MAX_WER and row["flagged"] is False


@pytest.mark.parametrize("on_fail", ["flag", "error"])
def test_speech_check_on_noise_flags_or_errors_only_that_row(speech, on_fail):
    engine = SpeakingEngine(noisy={OTHER})
    cfg = speech_config(max_retries=1, on_fail=on_fail)
    rows = run_stages(batch([("bad", OTHER), ("good", SENTENCE)]), cfg=cfg, engine=engine).to_pylist()
    bad, good = rows
    assert engine.asked[OTHER] == 2  # regenerated once, noise both times
    assert good["ok"] and good["flagged"] is False and good["chunks"][0]["passed"] is True
    if on_fail == "flag":
        [chunk] = bad["chunks"]
        assert bad["ok"] and bad["flagged"] is True
        assert chunk["passed"] is False and chunk["failed"] == ["wer"] and chunk["attempts"] == 2
        assert dict(chunk["measures"])["wer"] > MAX_WER and isinstance(chunk["transcript"], str)
    else:
        assert not bad["ok"] and bad["error_stage"] == "quality"
        assert "['wer']" in bad["error"] and "after 2 attempts" in bad["error"] and "quality.speech" in bad["error"]


class EchoTranscriber:
    """Hears `heard` in any sound, nothing in silence; counts how often it is asked."""

    def __init__(self, heard: str):
        self.heard, self.calls = heard, 0

    def transcribe(self, audio, sr):
        self.calls += 1
        return self.heard if np.any(audio) else ""


class QuietFirstEngine(FakeEngine):
    """Silent on each text's first attempt (fails the signal gates), a sine after."""

    def __init__(self):
        super().__init__()
        self.asked: Counter = Counter()

    def generate(self, requests, batch_size=None, progress=None):
        out = super().generate(requests, batch_size, progress)
        for r, result in zip(requests, out, strict=True):
            self.asked[r.text] += 1
            if self.asked[r.text] == 1:
                result.audio[:] = 0.0
        return out


@pytest.mark.parametrize("max_retries", [1, 0])
def test_signal_gates_run_first_and_only_the_last_attempt_of_a_failing_chunk_is_transcribed(monkeypatch, max_retries):
    ear = EchoTranscriber("hello world")
    monkeypatch.setattr("pipeline.audio.listen.make_transcriber", lambda *args: ear)
    cfg = speech_config(enabled=True, max_retries=max_retries)
    row = run_stages(batch([("a", "Hello world.")]), cfg=cfg, engine=QuietFirstEngine()).to_pylist()[0]
    [chunk] = row["chunks"]
    measures = dict(chunk["measures"])
    assert ear.calls == 1 and "rms_db" in measures  # quality.enabled: the signal gates ran too
    if max_retries:  # the silent attempt was regenerated without being listened to
        assert chunk["attempts"] == 2 and chunk["passed"] is True and chunk["failed"] == []
        assert chunk["transcript"] == "hello world" and measures["wer"] == 0.0
    else:  # the silent attempt is the last: listened to, and both kinds of gate are named
        assert chunk["attempts"] == 1 and chunk["passed"] is False and row["flagged"] is True
        assert chunk["transcript"] == "" and measures["wer"] == 1.0
        assert "rms_low" in chunk["failed"] and chunk["failed"][-1] == "wer", chunk["failed"]


# -- speaker consistency (a pitch stands in for a voice: Resemblyzer is tested in tests/unit) -------


class PitchEncoder:
    """A 'voice' embedding: the audio's dominant frequency on a circle (same pitch = same voice)."""

    def embed(self, audio, sr):
        f = np.argmax(np.abs(np.fft.rfft(audio))) * sr / len(audio)
        return np.array([np.cos(f / 400), np.sin(f / 400)], np.float32)


def tone(freq: float, n: int = SR) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


@dataclass(frozen=True)
class FakePrompt:
    name: str
    fine: np.ndarray


class VoiceEngine(FakeEngine):
    """Speaks at 200 Hz, except at 600 Hz on the first attempt of the texts in `drift`."""

    sample_rate = SR

    def __init__(self, drift=(), decodes=True):
        super().__init__()
        self.drift, self.asked, self.decoded = set(drift), Counter(), []
        if not decodes:
            self.decode = None  # an engine with no way to turn a prompt into audio

    def load_voice(self, voice):
        return FakePrompt(voice, np.zeros((8, 4), np.int64)) if voice == "v2/en_speaker_0" else voice

    def decode(self, fine_codes):
        self.decoded.append(fine_codes)
        return [tone(200) for _ in fine_codes]

    def generate(self, requests, batch_size=None, progress=None):
        self.calls.append(list(requests))
        out = []
        for r in requests:
            self.asked[r.text] += 1
            freq = 600 if r.text in self.drift and self.asked[r.text] == 1 else 200
            out.append(FakeResult(tone(freq), r.seed, r.text, r.voice))
        return out


@pytest.fixture
def pitch_encoder(monkeypatch):
    monkeypatch.setattr("pipeline.audio.listen.make_encoder", lambda backend, device: PitchEncoder())


def speaker_config(reference: str, segment=None, **generation):
    return config(
        quality={"speaker": {"min_similarity": 0.9, "reference": reference}, "max_retries": 2},
        generation=generation,
        segment=segment or {},
    )


def test_speaker_check_holds_later_chunks_to_the_first_accepted_one(pitch_encoder):
    cfg = speaker_config("first_chunk")
    probe = VoiceEngine()
    planned = run_stages(batch([("long", LONG)]), cfg=cfg, engine=probe).to_pylist()[0]["chunks"]
    text_of = {r.seed: r.text for call in probe.calls for r in call}
    texts = [text_of[c["seed"]] for c in planned]
    assert len(texts) >= 3 and all(c["attempts"] == 1 for c in planned)
    engine = VoiceEngine(drift={texts[1]})  # chunk 1 comes out in another voice first
    stage = engine_stage(cfg, engine)
    row = run_stages(batch([("long", LONG)]), cfg=cfg, stage=stage).to_pylist()[0]
    chunks = row["chunks"]
    assert "speaker_similarity" not in dict(chunks[0]["measures"])  # the first chunk is the reference
    assert all(dict(c["measures"])["speaker_similarity"] > 0.99 for c in chunks[1:])
    assert [c["attempts"] for c in chunks] == [1, 2] + [1] * (len(chunks) - 2)
    assert all(c["passed"] for c in chunks) and row["flagged"] is False and engine.asked[texts[1]] == 2
    assert stage.listen._references == {}  # the window's rows are forgotten once handed over


@pytest.mark.parametrize("decodes", [True, False])
def test_speaker_reference_from_the_voice_prompt_or_first_chunk_where_the_engine_cannot(pitch_encoder, decodes):
    engine = VoiceEngine(drift={SENTENCE}, decodes=decodes)
    cfg = speaker_config("voice_prompt", ONE_CHUNK, voice="v2/en_speaker_0")
    rows = run_stages(batch([("a", SENTENCE), ("b", SENTENCE)]), cfg=cfg, engine=engine).to_pylist()
    first = rows[0]["chunks"][0]
    if decodes:  # the prompt (200 Hz) is the reference: the first chunk's 600 Hz is caught
        assert len(engine.decoded) == 1  # decoded once per voice, shared by both rows
        assert first["attempts"] == 2 and dict(first["measures"])["speaker_similarity"] > 0.99
    else:  # no reference until a chunk is accepted: the drifted first chunk passes unmeasured
        assert first["attempts"] == 1 and "speaker_similarity" not in dict(first["measures"])
    assert rows[1]["chunks"][0]["attempts"] == 1  # only the first request for the text drifts
    assert all(r["ok"] and not r["flagged"] for r in rows)


# -- the engine-call watchdog -------------------------------------------------------------------


class SlowEngine(FakeEngine):
    def __init__(self, pause_s: float):
        super().__init__()
        self.pause_s = pause_s

    def generate(self, requests, batch_size=None, progress=None):
        time.sleep(self.pause_s)  # a stall the watchdog must see while the call is still inside
        return super().generate(requests, batch_size, progress)


def test_an_engine_call_past_call_timeout_s_is_reported_as_a_stall():
    stalls = []
    cfg = config(compute={"call_timeout_s": 0.05})
    stage = engine_stage(cfg, SlowEngine(0.8), on_stall=stalls.append)
    out = run_stages(batch([("a", "Hello world."), ("b", "One two three.")]), cfg=cfg, stage=stage)
    assert out["ok"].to_pylist() == [True, True]  # the injected on_stall does not end the process
    [stall] = stalls
    assert stall.what == "engine.generate" and stall.rows == 2  # both chunks in one call
    assert stall.timeout_s == 0.05 and stall.elapsed_s >= 0.05
    assert "compute.call_timeout_s=0.05" in stall.line()


def test_the_watchdog_is_off_at_zero_and_ends_the_actor_by_default():
    stalls = []
    cfg = config(compute={"call_timeout_s": 0})
    stage = engine_stage(cfg, SlowEngine(0.2), on_stall=stalls.append)
    assert run_stages(batch([("a", "Hello world.")]), cfg=cfg, stage=stage)["ok"].to_pylist() == [True]
    assert stalls == [] and not stage.watchdog.enabled
    default = engine_stage(config(), FakeEngine())
    assert default.watchdog.timeout_s == DEFAULT_CALL_TIMEOUT_S and default.watchdog.on_stall is exit_process


def test_voice_prompt_reference_with_the_real_tiny_engine(tiny_weights, monkeypatch):
    """BarkEngine.decode turns the preset's fine codes into the reference audio (24 kHz)."""
    from pipeline.batch.stages.engine import EngineStage

    heard = []

    class Spy(PitchEncoder):
        def embed(self, audio, sr):
            heard.append((len(audio), sr))
            return super().embed(audio, sr)

    monkeypatch.setattr("pipeline.audio.listen.make_encoder", lambda backend, device: Spy())
    cfg = config(
        model={"weights": str(tiny_weights), "device": "cpu"},
        generation={"voice": "v2/en_speaker_0", "max_duration": 0.5},
        quality={"speaker": {"min_similarity": -1.0, "reference": "voice_prompt"}, "max_retries": 0},
    )
    stage = EngineStage(cfg.model, cfg.generation, cfg.quality, cfg.compute)
    row = run_stages(batch([("a", "Hi there.")]), cfg, stage=stage).to_pylist()[0]
    assert row["ok"], row["error"]
    [chunk] = row["chunks"]
    prompt_samples, prompt_sr = heard[0]  # the prompt is embedded first, then the chunk
    assert prompt_sr == SR and prompt_samples > 0 and stage._prompt_voices["v2/en_speaker_0"] is not None
    assert -1.0 <= dict(chunk["measures"])["speaker_similarity"] <= 1.0 and chunk["passed"] is True
