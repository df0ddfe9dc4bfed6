"""Voice files whose array headers lie are refused before np.load allocates, on every loading path."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import numpy as np
import pytest
from support.stages import batch, config, run_stages

from bark_model.voices import MAX_VOICE_ARRAY_BYTES, VoiceLibrary, VoicePrompt, check_voice_file, load_npy

HUGE = (10**12,)  # 8 TB of int64: np.load would raise MemoryError (or worse, start filling it)


def _npy_header(shape) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": shape})
    return header.getvalue() + b"\0" * 64


def _bomb_npz(path, member="semantic_prompt.npy"):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, _npy_header(HUGE))
    assert path.stat().st_size < 1000
    return path


def _real_arrays():
    return {"semantic_prompt": np.zeros(10, np.int64), "coarse_prompt": np.zeros((2, 5), np.int64),
            "fine_prompt": np.zeros((8, 5), np.int64)}  # fmt: skip


def test_an_npz_member_declaring_a_huge_array_is_a_value_error(tmp_path):
    bomb = _bomb_npz(tmp_path / "bomb.npz")
    with pytest.raises(ValueError, match=r"'bomb.npz': 'semantic_prompt.npy' declares a \[1000000000000\] int64"):
        VoicePrompt.from_npz(bomb)


def test_a_bare_npy_named_npz_is_checked_too(tmp_path):
    disguised = tmp_path / "disguised.npz"
    disguised.write_bytes(_npy_header(HUGE))
    with pytest.raises(ValueError, match=r"declares a \[1000000000000\] int64"):
        VoicePrompt.from_npz(disguised)
    with pytest.raises(ValueError, match="declares"):
        check_voice_file(disguised)


def test_many_members_may_not_add_up_past_the_bound(tmp_path):
    each = MAX_VOICE_ARRAY_BYTES // 8 // 3 + 1  # int64 elements: each member within, the three beyond
    path = tmp_path / "wide.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for k in range(3):
            archive.writestr(f"a{k}.npy", _npy_header((each,)))  # headers only: the file stays tiny
    with pytest.raises(ValueError, match="its 3 arrays declare .* bytes together"):
        check_voice_file(path)


def test_a_compressed_member_that_unpacks_past_the_bound_is_refused(tmp_path):
    path = tmp_path / "zipbomb.npz"
    buf = io.BytesIO()
    np.save(buf, np.zeros(MAX_VOICE_ARRAY_BYTES // 8 + 1024, np.int64))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("semantic_prompt.npy", buf.getvalue())
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match="unpacks to"):
        VoicePrompt.from_npz(path)


def test_garbage_is_unreadable_and_a_real_voice_loads(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="not a readable .npz/.npy voice prompt"):
        VoicePrompt.from_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "real.npz", **_real_arrays(), extra=np.zeros(3))
    voice = VoicePrompt.from_npz(tmp_path / "real.npz")
    assert voice.semantic.shape == (10,) and voice.fine.shape == (8, 5)


def test_hugging_face_preset_npy_files_are_bounded(tmp_path):
    (tmp_path / "speaker_embeddings").mkdir()
    index = {"bomb": {}, "good": {}}
    for key, array in _real_arrays().items():
        np.save(tmp_path / "speaker_embeddings" / f"good_{key}.npy", array)
        index["good"][key] = f"speaker_embeddings/good_{key}.npy"
        (tmp_path / "speaker_embeddings" / f"bomb_{key}.npy").write_bytes(_npy_header(HUGE))
        index["bomb"][key] = f"speaker_embeddings/bomb_{key}.npy"
    (tmp_path / "speaker_embeddings_path.json").write_text(json.dumps(index))
    library = VoiceLibrary(tmp_path)
    assert library.load("good").coarse.shape == (2, 5)
    with pytest.raises(ValueError, match="bomb_semantic_prompt.npy"):
        library.load("bomb")
    with pytest.raises(ValueError, match="not one .npy array"):
        np.savez(tmp_path / "two.npz", a=np.zeros(2))
        load_npy(tmp_path / "two.npz")


def test_a_hostile_preset_is_its_rows_voice_error_and_the_others_speak(tiny_weights, tmp_path):
    """The real engine's voice loading (as the Ray actor runs it): one row fails at `voice`, the batch goes on."""
    from pipeline.batch.stages.engine import EngineStage

    weights = shutil.copytree(tiny_weights, tmp_path / "w")
    _bomb_npz(weights / "voices" / "bomb.npz")
    cfg = config(model={"weights": str(weights), "device": "cpu"}, generation={"max_duration": 0.3})
    stage = EngineStage(cfg.model, cfg.generation, cfg.quality, cfg.compute)
    out = run_stages(batch([("bad", "Hello."), ("good", "Hello.")], voice=["bomb", None]), cfg, stage=stage)
    rows = {r["id"]: r for r in out.to_pylist()}
    assert rows["bad"]["error_stage"] == "voice" and "declares a [1000000000000] int64" in rows["bad"]["error"]
    assert rows["good"]["ok"], rows["good"]["error"]
