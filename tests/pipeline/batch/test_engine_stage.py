"""The three stages called directly on hand-made Arrow batches with a fake engine (no Ray cluster)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from support.stages import (
    LONG,
    SR,
    FakeEngine,
    OutOfMemoryError,
    batch,
    config,
    decode,
    engine_stage,
    run_stages,
    samples,
)

from pipeline.batch.stages.engine import current_node_id
from pipeline.batch.stages.prepare import PrepareStage
from pipeline.output.layout import audio_name, journal
from pipeline.text.chunks import chunk_seed, derive_seed
from pipeline.text.segment import estimate_seconds


def stages(cfg=None, engine=None):
    engine = engine or FakeEngine()
    return engine_stage(cfg or config(), engine), engine


def test_rows_come_back_in_order_with_decodable_audio_and_carried_columns():
    table = batch([("a", "Hello world."), ("b", "One two three four.")],
                  chapter=pa.array([1, 2], pa.int16()), duration_s=pa.array(["x", "y"]))
    out = run_stages(table)
    assert out["id"].to_pylist() == ["a", "b"]
    assert out["ok"].to_pylist() == [True, True]
    assert decode(out["audio"][1].as_py()).shape[0] == samples("One two three four.")
    expected = [samples(t) / SR for t in ("Hello world.", "One two three four.")]
    assert out["duration_s"].to_pylist() == pytest.approx(expected)
    assert out.schema.field("chapter").type == pa.int16()  # carried with its type
    assert out["input_duration_s"].to_pylist() == ["x", "y"]  # a reserved name gets a prefix
    assert out["model_checksum"].to_pylist() == ["sha256:fake"] * 2
    assert out["audio_name"].to_pylist() == [audio_name("a", "wav"), audio_name("b", "wav")]
    assert out["node_id"].to_pylist() == [current_node_id()] * 2  # None unless this process joined a Ray
    assert "pcm" not in out.column_names and "plan" not in out.column_names


def test_long_row_is_split_joined_with_pauses_in_order():
    stage, engine = stages()
    out = run_stages(batch([("long", LONG)]), stage=stage)
    n_chunks = out["n_chunks"][0].as_py()
    assert n_chunks >= 3
    chunks = out["chunks"][0].as_py()
    assert [c["index"] for c in chunks] == list(range(n_chunks))
    text_of = {r.seed: r.text for call in engine.calls for r in call}
    in_order = [text_of[c["seed"]] for c in chunks]
    assert " ".join(in_order) == LONG  # every chunk once, reassembled in order
    expected = sum(samples(t) for t in in_order) + (n_chunks - 1) * int(0.1 * SR)  # audio + pauses
    assert decode(out["audio"][0].as_py()).shape[0] == expected
    assert {"prepare", "generate", "join", "encode"} <= {k for k, _ in out["timings"][0].as_py()}


def test_window_chunks_are_length_sorted_and_cut_into_micro_batches():
    stage, engine = stages(config(compute={"batch_size": 2}))
    rows = [("r1", LONG), ("r2", "Short one."), ("r3", "A somewhat longer sentence with more words in it.")]
    out = run_stages(batch(rows), stage=stage)
    assert all(len(call) <= 2 for call in engine.calls)
    lengths = [estimate_seconds(r.text) for call in engine.calls for r in call]
    assert lengths == sorted(lengths)  # chunks of different rows share micro-batches by length
    assert len(lengths) == sum(out["n_chunks"].to_pylist())


def test_the_engine_hands_over_16_bit_pcm_per_chunk():
    cfg = config()
    prepared = PrepareStage("w", cfg.generation, cfg.segment)(batch([("long", LONG), ("bad", " ")]))
    out = pa.concat_tables(list(engine_stage(cfg, FakeEngine())(prepared)))
    assert out.schema.field("pcm").type == pa.list_(pa.binary())
    pcm, chunks = out["pcm"][0].as_py(), out["chunks"][0].as_py()
    assert len(pcm) == len(chunks) >= 3
    assert [len(p) for p in pcm] == [2 * round(c["duration_s"] * SR) for c in chunks]  # 2 bytes a sample
    assert out["pcm"][1].as_py() is None and out["error_stage"][1].as_py() == "validate"


def test_seeds_derive_from_the_row_seed_per_chunk_and_rows_can_override():
    out = run_stages(batch([("a", LONG), ("b", "Hi there.")], seed=pa.array([None, 5], pa.int64())),
                     config(generation={"seed": 11}))
    chunks = out["chunks"][0].as_py()
    assert out["seed"].to_pylist() == [11, 5]
    assert [c["seed"] for c in chunks] == [chunk_seed(11, k) for k in range(len(chunks))]
    assert chunks[0]["seed"] == 11 and len({c["seed"] for c in chunks}) == len(chunks)
    again = run_stages(batch([("a", LONG)]), config(generation={"seed": 11}))
    assert again["chunks"][0].as_py() == chunks  # deterministic
    assert run_stages(batch([("z", "Hi.")]))["seed"][0].as_py() == derive_seed("id", "z")


def test_bad_rows_become_error_rows_and_the_window_goes_on():
    rows = [("ok", "Fine text."), ("empty", "   "), ("null", None), ("voice", "Hi."), ("neg", "Hi.")]
    out = run_stages(batch(rows, voice=["v2/en_speaker_0", None, None, "nobody", None],
                           seed=pa.array([None, None, None, None, -3], pa.int64())))
    by_id = {r["id"]: r for r in out.to_pylist()}
    assert by_id["ok"]["ok"] and by_id["ok"]["voice"] == "v2/en_speaker_0"
    assert by_id["empty"]["error_stage"] == "validate" and "text is empty" in by_id["empty"]["error"]
    assert "text is missing" in by_id["null"]["error"]
    assert by_id["voice"]["error_stage"] == "voice" and "'nobody'" in by_id["voice"]["error"]
    assert "seed -3" in by_id["neg"]["error"]
    assert [r["audio"] is None for r in out.to_pylist()] == [False, True, True, True, True]


def test_a_failing_chunk_errors_only_its_row():
    out = run_stages(batch([("a", "Good words here."), ("b", "This BOOM breaks."), ("c", "More good words.")]),
                     config(compute={"batch_size": 4}))
    assert out["ok"].to_pylist() == [True, False, True]
    assert out["error_stage"][1].as_py() == "generate" and "KeyError" in out["error"][1].as_py()


def test_device_errors_propagate_so_ray_restarts_the_actor():
    with pytest.raises(RuntimeError, match="CUDA"):
        run_stages(batch([("a", "Fine."), ("b", "CUDA now.")]))


def test_out_of_memory_halves_the_micro_batch_until_it_fits():
    stage, engine = stages(config(compute={"batch_size": 4}), FakeEngine(max_batch=1))
    rows = [("a", "One."), ("b", "Two words."), ("c", "Three words here."), ("d", "Four words are here.")]
    out = run_stages(batch(rows), stage=stage)
    assert out["ok"].to_pylist() == [True] * 4
    assert [len(call) for call in engine.calls] == [1, 1, 1, 1]
    with pytest.raises(OutOfMemoryError):  # a single chunk that does not fit is a device problem
        run_stages(batch([("a", "One.")]), engine=FakeEngine(max_batch=0.5))


@pytest.mark.parametrize("mode,reset_every,fresh", [("chain", 4, {0}), ("chain-reset-every", 2, {0, 2, 4})])
def test_chain_continuity_uses_the_previous_chunk_as_voice(mode, reset_every, fresh):
    cfg = config(generation={"continuity": mode, "reset_every": reset_every, "voice": "v2/en_speaker_0"})
    stage, engine = stages(cfg)
    out = run_stages(batch([("a", LONG), ("b", "Just one chunk.")]), cfg, stage=stage)
    assert out["ok"].to_pylist() == [True, True]
    chunks = out["chunks"][0].as_py()
    voices = {r.seed: r.voice for call in engine.calls for r in call}
    for k, c in enumerate(chunks):
        expected = "v2/en_speaker_0" if k in fresh else ("from", chunks[k - 1]["seed"])
        assert voices[c["seed"]] == expected, k
    # chunk k of every row runs in one call: row b's only chunk shares the first call
    assert {r.text for r in engine.calls[0]} >= {"Just one chunk."}


def test_quality_gates_regenerate_failing_chunks_with_a_derived_seed():
    cfg = config(quality={"enabled": True, "max_retries": 2}, generation={"seed": 7})
    out = run_stages(batch([("a", "One two three four five six seven.")]), cfg, FakeEngine(silent_seeds={7}))
    chunk = out["chunks"][0].as_py()[0]
    assert chunk["attempts"] == 2 and chunk["passed"] is True
    assert chunk["seed"] == chunk_seed(7, 0, 1)
    assert chunk["measures"]  # gate measures are recorded per chunk
    assert out["flagged"][0].as_py() is False


@pytest.mark.parametrize("on_fail", ["flag", "error"])
def test_a_chunk_that_never_passes_is_flagged_or_errored(on_fail):
    cfg = config(quality={"enabled": True, "max_retries": 1, "on_fail": on_fail})
    stage, engine = stages(cfg, FakeEngine(always_silent=True))
    out = run_stages(batch([("a", "One two three four five six seven.")]), cfg, stage=stage)
    assert len(engine.calls) == 2  # first try + one retry
    row = out.to_pylist()[0]
    if on_fail == "flag":
        assert row["ok"] and row["flagged"] and row["chunks"][0]["failed"]
    else:
        assert not row["ok"] and row["error_stage"] == "quality" and "on_fail=flag" in row["error"]


def test_a_stage_given_the_wrong_columns_names_the_missing_ones():
    cfg = config()
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['voice', .*'plan'.*it has \['id', 'text'\]"):
        list(engine_stage(cfg, FakeEngine())(batch([("a", "Hi.")])))  # prepare was skipped


def test_chain_and_gates_with_the_real_tiny_engine(tiny_weights):
    """The stages against the real engine: VoicePrompt chaining, per-chunk measures, decodable audio."""
    from pipeline.batch.stages.engine import EngineStage

    # No preset voice and gates that pass capped audio: prompts and retries only cost time here.
    cfg = config(model={"weights": str(tiny_weights), "device": "cpu"},
                 generation={"continuity": "chain-reset-every", "reset_every": 2, "max_duration": 0.5},
                 quality={"enabled": True, "limits": {"min_duration_ratio": 0.0}, "max_retries": 1},
                 compute={"batch_size": 4})
    stage = EngineStage(cfg.model, cfg.generation, cfg.quality, cfg.compute)
    out = run_stages(batch([("a", "One short line here. " * 3), ("b", "Hi.")]), cfg, stage=stage)
    rows = out.to_pylist()
    assert [r["ok"] for r in rows] == [True, True], [r["error"] for r in rows]
    assert rows[0]["n_chunks"] >= 3 and rows[1]["n_chunks"] == 1
    for row in rows:
        assert all(c["measures"] and c["passed"] and c["attempts"] == 1 for c in row["chunks"])
        assert all(0 < c["duration_s"] <= 0.5 + 1e-6 for c in row["chunks"])
        assert decode(row["audio"]).shape[0] == pytest.approx(row["duration_s"] * SR, abs=1)
    assert rows[0]["model_checksum"].startswith("sha256:")


def test_a_row_with_several_voices_speaks_each_chunk_in_its_own_voice():
    text = "The narrator begins here. [voice: v2/en_speaker_0] Now the second voice speaks. [voice: default] Back."
    stage, engine = stages()
    out = run_stages(batch([("duo", text), ("bad", "Hello. [voice: ghost] Who?")]), stage=stage)
    assert out["ok"].to_pylist() == [True, False]
    chunks = out["chunks"][0].as_py()
    assert [c["voice"] for c in chunks] == [None, "v2/en_speaker_0", None]  # never a chunk across two voices
    spoken = {r.text: r.voice for call in engine.calls for r in call}
    assert spoken["Now the second voice speaks."] == "v2/en_speaker_0"
    assert spoken["The narrator begins here."] is None and spoken["Back."] is None
    assert out["error_stage"][1].as_py() == "voice" and "ghost" in out["error"][1].as_py()


def test_speaker_lines_use_the_configured_speakers():
    cfg = config(generation={"speakers": {"ALICE": "v2/en_speaker_0"}})
    stage, engine = stages(cfg)
    out = run_stages(batch([("play", "Intro line.\n\nALICE: Hello there, I am Alice.\n\nThe end.")]), cfg=cfg,
                     stage=stage)  # fmt: skip
    voices = [c["voice"] for c in out["chunks"][0].as_py()]
    assert voices == [None, "v2/en_speaker_0", None]
    assert {r.text: r.voice for call in engine.calls for r in call}["Hello there, I am Alice."] == "v2/en_speaker_0"


def test_each_chunk_records_the_text_the_engine_was_given_through_to_the_metadata(tmp_path):
    """chunks[].text is the plan's text (normalised), the very string the engine spoke, from prepare to commit."""
    import pyarrow.parquet as pq

    from pipeline.batch.stages.finish import FinishStage
    from pipeline.storage import Store

    cfg, engine = config(), FakeEngine()
    prepared = PrepareStage("w", cfg.generation, cfg.segment)(batch([("n", "Dr. Smith paid $3.50. " + LONG)]))
    plan = prepared["plan"][0].as_py()
    generated = pa.concat_tables(list(engine_stage(cfg, engine)(prepared)))
    store = Store.open(str(tmp_path))
    for name in ("audio", "metadata", "errors"):
        store.makedirs(name)
    commit = {"output_url": str(tmp_path), "storage_options": {}, "config_hash": "sha256:c"}
    assert FinishStage(cfg.segment, "wav", commit)(generated)["ok"].to_pylist() == [True]
    (meta,) = pq.read_table(next((tmp_path / journal("metadata")).glob("part-*.parquet"))).to_pylist()
    chunks = meta["chunks"]
    assert len(chunks) == len(plan) >= 3
    assert [c["text"] for c in chunks] == [p["text"] for p in plan]
    given = {r.seed: r.text for call in engine.calls for r in call}
    assert [given[c["seed"]] for c in chunks] == [c["text"] for c in chunks]
    assert chunks[0]["text"].startswith("Doctor Smith paid three dollars") and "$" not in chunks[0]["text"]
    assert [c["chars"] for c in chunks] == [len(c["text"]) for c in chunks]
    # each chunk's place in the row's audio: in order, 0.1 s apart, ending where the row ends
    starts, ends = [c["start_s"] for c in chunks], [c["end_s"] for c in chunks]
    assert starts[0] == 0.0 and ends[-1] == pytest.approx(meta["duration_s"])
    assert [b - a for a, b in zip(ends, starts[1:], strict=False)] == pytest.approx([0.1] * (len(chunks) - 1))
    assert [e - s for s, e in zip(starts, ends, strict=True)] == pytest.approx(
        [samples(t) / SR for t in (c["text"] for c in chunks)]
    )


def test_an_ssml_break_travels_from_the_plan_to_the_join_and_the_chunk_spans():
    cfg = config()
    table = batch([("s", "First part is here.<break time='750ms'/>Second part is here.")], text_format=["ssml"])
    prepared = PrepareStage("w", cfg.generation, cfg.segment)(table)
    assert [c["pause_after_s"] for c in prepared["plan"][0].as_py()] == [0.75, None]
    out = run_stages(table, cfg).to_pylist()[0]
    chunks = out["chunks"]
    assert [c["pause_after_s"] for c in chunks] == [0.75, None]
    assert chunks[1]["start_s"] - chunks[0]["end_s"] == pytest.approx(0.75)  # not segment.sentence_pause_s (0.1)
    assert [c["text"] for c in chunks] == ["First part is here.", "Second part is here."]
