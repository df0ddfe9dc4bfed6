"""SynthesizeStage called directly on hand-made Arrow batches with a fake engine (no Ray cluster)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from pipeline.batch.config import validate_config
from pipeline.text.segment import estimate_seconds
from pipeline.batch.synthesize import StageSettings, SynthesizeStage, chunk_seed, derive_seed

SR = 24_000
# Settings that keep the arithmetic easy: no trimming, no fades, 0.1 s between chunks.
BASE = StageSettings.from_config(validate_config({
    "input": {"path": "m.parquet"}, "output": {"path": "out", "format": "wav"}, "model": {"weights": "w"},
    "segment": {"target_seconds": 2.0, "max_seconds": 3.0, "sentence_pause_s": 0.1, "paragraph_pause_s": 0.3,
                "crossfade_ms": 0.0, "trim_silence": False},
    "compute": {"batch_size": 3},
}))
LONG = " ".join(f"Sentence number {w} is here." for w in ["one", "two", "three", "four", "five", "six"])


@dataclass
class FakeResult:
    audio: np.ndarray
    seed: int
    text: str
    voice: object
    sample_rate: int = SR
    timings: dict = field(default_factory=lambda: {"semantic": 0.01, "coarse": 0.01})
    dropped_text_tokens: int = 0

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate


class OutOfMemoryError(RuntimeError):
    """Named like torch.cuda.OutOfMemoryError, which the stage recognises by name."""


class FakeEngine:
    """A sine as long as the segmenter expects the text to take; remembers every generate call."""

    model_info = {"layout": "suno", "size": "fake", "checksum": "sha256:fake"}

    def __init__(self, silent_seeds=(), always_silent=False, max_batch=None):
        self.calls: list[list] = []
        self.max_batch = max_batch  # larger batches raise OutOfMemoryError
        self.silent_seeds = set(silent_seeds)
        self.always_silent = always_silent

    def load_voice(self, voice):
        if voice in (None, "v2/en_speaker_0") or isinstance(voice, FakeResult):
            return voice
        raise ValueError(f"unknown voice {voice!r}; presets here: v2/en_speaker_0")

    def count_text_tokens(self, text):
        return len(text.split())

    def generate(self, requests, batch_size=None, progress=None):
        if self.max_batch and len(requests) > self.max_batch:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.calls.append(list(requests))
        out = []
        for r in requests:
            if "BOOM" in r.text:
                raise KeyError("tokenizer blew up")  # a per-row bug, not a device error
            if "CUDA" in r.text:
                raise RuntimeError("CUDA error: device-side assert triggered")
            n = samples(r.text)
            amp = 0.0 if self.always_silent or r.seed in self.silent_seeds else 0.3
            audio = (amp * np.sin(np.arange(n) * 2 * np.pi * 220 / SR)).astype(np.float32)
            out.append(FakeResult(audio, r.seed, r.text, r.voice))
        return out


def samples(text: str) -> int:
    return int(estimate_seconds(text) * SR)


def make_stage(engine=None, **changes):
    engine = engine or FakeEngine()
    stage = SynthesizeStage(lambda: engine, replace(BASE, **changes), prompt_from_result=lambda r: ("from", r.seed))
    return stage, engine


def batch(rows, **extra_columns):
    data = {"id": [r[0] for r in rows], "text": [r[1] for r in rows]}
    data.update(extra_columns)
    return pa.table(data)


def decode(data: bytes) -> np.ndarray:
    audio, sr = sf.read(io.BytesIO(data), dtype="float32")
    assert sr == SR
    return audio


def test_rows_come_back_in_order_with_decodable_audio_and_carried_columns():
    stage, _ = make_stage()
    table = batch([("a", "Hello world."), ("b", "One two three four.")],
                  chapter=pa.array([1, 2], pa.int16()), duration_s=pa.array(["x", "y"]))
    out = stage(table)
    assert out["id"].to_pylist() == ["a", "b"]
    assert out["ok"].to_pylist() == [True, True]
    assert decode(out["audio"][1].as_py()).shape[0] == samples("One two three four.")
    assert out["duration_s"].to_pylist() == pytest.approx([samples(t) / SR for t in ("Hello world.", "One two three four.")])
    assert out.schema.field("chapter").type == pa.int16()  # carried with its type
    assert out["input_duration_s"].to_pylist() == ["x", "y"]  # a reserved name gets a prefix
    assert out["model_checksum"].to_pylist() == ["sha256:fake"] * 2
    assert out["audio_name"].to_pylist() == ["a.wav", "b.wav"]


def test_long_row_is_split_joined_with_pauses_in_order():
    stage, engine = make_stage()
    out = stage(batch([("long", LONG)]))
    n_chunks = out["n_chunks"][0].as_py()
    assert n_chunks >= 3
    chunks = out["chunks"][0].as_py()
    assert [c["index"] for c in chunks] == list(range(n_chunks))
    text_of = {r.seed: r.text for call in engine.calls for r in call}
    in_order = [text_of[c["seed"]] for c in chunks]
    assert " ".join(in_order) == LONG  # every chunk once, reassembled in order
    expected = sum(samples(t) for t in in_order) + (n_chunks - 1) * int(0.1 * SR)  # audio + pauses
    assert decode(out["audio"][0].as_py()).shape[0] == expected


def test_window_chunks_are_length_sorted_and_cut_into_micro_batches():
    stage, engine = make_stage(batch_size=2)
    rows = [("r1", LONG), ("r2", "Short one."), ("r3", "A somewhat longer sentence with more words in it.")]
    out = stage(batch(rows))
    assert all(len(call) <= 2 for call in engine.calls)
    lengths = [estimate_seconds(r.text) for call in engine.calls for r in call]
    assert lengths == sorted(lengths)  # chunks of different rows share micro-batches by length
    assert len(lengths) == sum(out["n_chunks"].to_pylist())


def test_seeds_derive_from_the_row_seed_per_chunk_and_rows_can_override():
    stage, engine = make_stage(seed=11)
    out = stage(batch([("a", LONG), ("b", "Hi there.")], seed=pa.array([None, 5], pa.int64())))
    chunks = out["chunks"][0].as_py()
    assert out["seed"].to_pylist() == [11, 5]
    assert [c["seed"] for c in chunks] == [chunk_seed(11, k) for k in range(len(chunks))]
    assert chunks[0]["seed"] == 11 and len({c["seed"] for c in chunks}) == len(chunks)
    again, _ = make_stage(seed=11)
    assert again(batch([("a", LONG)]))["chunks"][0].as_py() == chunks  # deterministic
    no_default, _ = make_stage(seed=None)
    assert no_default(batch([("z", "Hi.")]))["seed"][0].as_py() == derive_seed("id", "z")


def test_bad_rows_become_error_rows_and_the_window_goes_on():
    stage, _ = make_stage()
    rows = [("ok", "Fine text."), ("empty", "   "), ("null", None), ("voice", "Hi."), ("neg", "Hi.")]
    out = stage(batch(rows, voice=["v2/en_speaker_0", None, None, "nobody", None],
                      seed=pa.array([None, None, None, None, -3], pa.int64())))
    by_id = {r["id"]: r for r in out.to_pylist()}
    assert by_id["ok"]["ok"] and by_id["ok"]["voice"] == "v2/en_speaker_0"
    assert by_id["empty"]["error_stage"] == "validate" and "text is empty" in by_id["empty"]["error"]
    assert "text is missing" in by_id["null"]["error"]
    assert by_id["voice"]["error_stage"] == "voice" and "'nobody'" in by_id["voice"]["error"]
    assert "seed -3" in by_id["neg"]["error"]
    assert [r["audio"] is None for r in out.to_pylist()] == [False, True, True, True, True]


def test_a_failing_chunk_errors_only_its_row():
    stage, _ = make_stage(batch_size=4)
    out = stage(batch([("a", "Good words here."), ("b", "This BOOM breaks."), ("c", "More good words.")]))
    assert out["ok"].to_pylist() == [True, False, True]
    assert out["error_stage"][1].as_py() == "generate" and "KeyError" in out["error"][1].as_py()


def test_device_errors_propagate_so_ray_restarts_the_actor():
    stage, _ = make_stage()
    with pytest.raises(RuntimeError, match="CUDA"):
        stage(batch([("a", "Fine."), ("b", "CUDA now.")]))


def test_out_of_memory_halves_the_micro_batch_until_it_fits():
    stage, engine = make_stage(FakeEngine(max_batch=1), batch_size=4)
    out = stage(batch([("a", "One."), ("b", "Two words."), ("c", "Three words here."), ("d", "Four words are here.")]))
    assert out["ok"].to_pylist() == [True] * 4
    assert [len(call) for call in engine.calls] == [1, 1, 1, 1]
    with pytest.raises(OutOfMemoryError):  # a single chunk that does not fit is a device problem
        make_stage(FakeEngine(max_batch=0.5))[0](batch([("a", "One.")]))


@pytest.mark.parametrize("mode,reset_every,fresh", [("chain", 4, {0}), ("chain-reset-every", 2, {0, 2, 4})])
def test_chain_continuity_uses_the_previous_chunk_as_voice(mode, reset_every, fresh):
    stage, engine = make_stage(continuity=mode, reset_every=reset_every, voice="v2/en_speaker_0")
    out = stage(batch([("a", LONG), ("b", "Just one chunk.")]))
    assert out["ok"].to_pylist() == [True, True]
    chunks = out["chunks"][0].as_py()
    voices = {r.seed: r.voice for call in engine.calls for r in call}
    for k, c in enumerate(chunks):
        expected = "v2/en_speaker_0" if k in fresh else ("from", chunks[k - 1]["seed"])
        assert voices[c["seed"]] == expected, k
    # chunk k of every row runs in one call: row b's only chunk shares the first call
    assert {r.text for r in engine.calls[0]} >= {"Just one chunk."}


def test_quality_gates_regenerate_failing_chunks_with_a_derived_seed():
    engine = FakeEngine(silent_seeds={7})
    stage, _ = make_stage(engine, quality=True, max_retries=2, seed=7)
    out = stage(batch([("a", "One two three four five six seven.")]))
    chunk = out["chunks"][0].as_py()[0]
    assert chunk["attempts"] == 2 and chunk["passed"] is True
    assert chunk["seed"] == chunk_seed(7, 0, 1)
    assert chunk["measures"]  # gate measures are recorded per chunk
    assert out["flagged"][0].as_py() is False


@pytest.mark.parametrize("on_fail", ["flag", "error"])
def test_a_chunk_that_never_passes_is_flagged_or_errored(on_fail):
    stage, engine = make_stage(FakeEngine(always_silent=True), quality=True, max_retries=1, on_fail=on_fail)
    out = stage(batch([("a", "One two three four five six seven.")]))
    assert len(engine.calls) == 2  # first try + one retry
    row = out.to_pylist()[0]
    if on_fail == "flag":
        assert row["ok"] and row["flagged"] and row["chunks"][0]["failed"]
    else:
        assert not row["ok"] and row["error_stage"] == "quality" and "on_fail=flag" in row["error"]


def test_chain_and_gates_with_the_real_tiny_engine(tiny_weights):
    """The stage against the real engine: VoicePrompt chaining, per-chunk measures, decodable audio."""
    from functools import partial

    from pipeline.batch.synthesize import load_engine

    # No preset voice and gates that pass capped audio: prompts and retries only cost time here.
    settings = replace(BASE, continuity="chain-reset-every", reset_every=2, max_duration=0.5, quality=True,
                       quality_limits=(("min_duration_ratio", 0.0),), max_retries=1, batch_size=4)
    stage = SynthesizeStage(partial(load_engine, str(tiny_weights), "cpu", "fp32"), settings)
    out = stage(batch([("a", "One short line here. " * 3), ("b", "Hi.")]))
    rows = out.to_pylist()
    assert [r["ok"] for r in rows] == [True, True], [r["error"] for r in rows]
    assert rows[0]["n_chunks"] >= 3 and rows[1]["n_chunks"] == 1
    for row in rows:
        assert all(c["measures"] and c["passed"] and c["attempts"] == 1 for c in row["chunks"])
        assert all(0 < c["duration_s"] <= 0.5 + 1e-6 for c in row["chunks"])
        assert decode(row["audio"]).shape[0] == pytest.approx(row["duration_s"] * SR, abs=1)
    assert rows[0]["model_checksum"].startswith("sha256:")
