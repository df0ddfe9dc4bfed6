"""Engine behaviour: layouts agree, batches don't mix rows, voices and bad input fail clearly."""

import numpy as np
import pytest
import torch

from bark_model import BarkEngine, GenerationRequest, VoicePrompt
from bark_model.checkpoints import detect_layout


ROWS = [
    GenerationRequest.greedy("Hello there.", max_duration_s=0.6),
    GenerationRequest.greedy("A somewhat longer sentence, with a pause... and [laughs] a cue.", "v2/en_speaker_0",
                             max_duration_s=1.2),
    GenerationRequest.greedy("Kurz.", "announcer", max_duration_s=0.9),
]


def test_suno_and_hf_layouts_give_identical_output(engine, tiny_hf):
    hf_engine = BarkEngine.from_dir(tiny_hf, device="cpu")
    assert hf_engine.model_info["layout"] == "hf" and engine.model_info["layout"] == "suno"
    sampled = GenerationRequest.simple("Same weights, two formats.", voice="v2/en_speaker_1", seed=5, max_duration_s=0.8)
    for a, b in zip(engine.generate([ROWS[1], sampled]), hf_engine.generate([ROWS[1], sampled])):
        np.testing.assert_array_equal(a.fine, b.fine)
        np.testing.assert_allclose(a.audio, b.audio, atol=1e-6)


def test_a_greedy_request_gives_the_same_codes_whatever_its_seed(engine):
    first, second = engine.generate([GenerationRequest.greedy("Same words.", seed=s, max_duration_s=0.4) for s in (1, 9)])
    np.testing.assert_array_equal(first.fine, second.fine)
    sampled = engine.generate([GenerationRequest.simple("Same words.", seed=s, max_duration_s=0.4) for s in (1, 9)])
    assert not np.array_equal(sampled[0].fine, sampled[1].fine)  # the seed is what varies sampled rows


def test_batch_equals_rows_alone(engine):
    batch = engine.generate(ROWS)
    for request, together in zip(ROWS, batch):
        [alone] = engine.generate([request])
        np.testing.assert_array_equal(together.semantic, alone.semantic)
        np.testing.assert_array_equal(together.fine, alone.fine)
        np.testing.assert_allclose(together.audio, alone.audio, atol=1e-5)


def test_sampled_row_depends_on_its_seed_not_its_batch(engine):
    row = GenerationRequest.simple("Seeded sampling.", seed=11, max_duration_s=0.8)
    [alone] = engine.generate([row])
    _, together = engine.generate([GenerationRequest.simple("Other row.", seed=3, max_duration_s=1.0), row])
    np.testing.assert_array_equal(alone.fine, together.fine)
    [other_seed] = engine.generate([GenerationRequest.simple("Seeded sampling.", seed=12, max_duration_s=0.8)])
    assert not np.array_equal(alone.semantic, other_seed.semantic)


def test_output_shapes_and_duration(engine):
    [r] = engine.generate([GenerationRequest.greedy("Shapes.", max_duration_s=1.0)])
    assert r.semantic.ndim == 1 and r.coarse.shape[0] == 2 and r.fine.shape[0] == 8
    assert r.coarse.shape[1] == r.fine.shape[1] == int(np.floor(len(r.semantic) * 75 / 49.9))
    assert len(r.audio) == 320 * r.fine.shape[1] and r.audio.dtype == np.float32
    assert len(r.semantic) == 50  # 1.0 s at 49.9 Hz: the official check stops after 50 tokens
    assert set(r.timings) == {"semantic", "coarse", "fine", "decode"}


def test_saved_codes_work_as_a_voice(engine, tmp_path):
    [r] = engine.generate([GenerationRequest.greedy("Remember this voice.", max_duration_s=2.0)])
    r.save_codes(tmp_path / "me.npz")
    voice = engine.load_voice(str(tmp_path / "me.npz"))
    np.testing.assert_array_equal(voice.fine, r.fine)
    again_request = GenerationRequest.greedy("And speak again.", str(tmp_path / "me.npz"), max_duration_s=0.5)
    [again] = engine.generate([again_request])
    assert len(again.audio) > 0


def test_over_long_text_reports_dropped_tokens(engine):
    text = "word " * 300
    [r] = engine.generate([GenerationRequest.greedy(text, max_duration_s=0.3)])
    assert r.dropped_text_tokens == engine.count_text_tokens(text) - 256 > 0


def test_empty_text_fails():
    with pytest.raises(ValueError, match="empty"):
        GenerationRequest.simple("   \n ")


def test_bad_voices_fail_naming_the_problem(engine, tmp_path):
    with pytest.raises(ValueError, match="unknown voice 'v2/xx_speaker_9'.*presets here"):
        engine.load_voice("v2/xx_speaker_9")
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        engine.load_voice(str(tmp_path / "nope.npz"))
    np.savez(tmp_path / "partial.npz", semantic_prompt=np.arange(10))
    with pytest.raises(ValueError, match="lacks .*coarse_prompt"):
        engine.load_voice(str(tmp_path / "partial.npz"))
    np.savez(tmp_path / "range.npz", semantic_prompt=np.arange(10), coarse_prompt=np.full((2, 15), 4000), fine_prompt=np.zeros((8, 15), int))
    with pytest.raises(ValueError, match="coarse_prompt values must lie in 0..1023"):
        engine.load_voice(str(tmp_path / "range.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        engine.load_voice(str(tmp_path / "junk.npz"))
    with pytest.raises(ValueError, match="not a valid preset name"):
        engine.load_voice("../../etc/passwd")
    mismatched = VoicePrompt(np.arange(100), np.zeros((2, 40), np.int64), np.zeros((8, 40), np.int64))
    with pytest.raises(ValueError, match="frames for 100 semantic"):
        engine.generate([GenerationRequest.greedy("x", mismatched, max_duration_s=1.0)])


def test_bad_weights_directories(tmp_path, tiny_suno):
    with pytest.raises(FileNotFoundError, match="not found.*barkpipe weights download"):
        detect_layout(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no Bark weights"):
        detect_layout(tmp_path / "empty")
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("text.pt", "coarse.pt", "fine.pt"):
        (partial / name).symlink_to(tiny_suno / name)
    with pytest.raises(FileNotFoundError, match="encodec_24khz-d7cc33bc.th"):
        detect_layout(partial)


def test_checkpoint_that_would_run_code_is_refused(tmp_path, tiny_suno):
    import shutil

    from bark_model.checkpoints import load_models

    bad = tmp_path / "bad"
    shutil.copytree(tiny_suno, bad)
    checkpoint = torch.load(tiny_suno / "text.pt", weights_only=False)
    checkpoint["payload"] = Exploit()
    torch.save(checkpoint, bad / "text.pt")
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        load_models(detect_layout(bad))


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_wrong_shapes_fail_with_key_names(tmp_path, tiny_suno):
    import shutil

    from bark_model.checkpoints import load_models

    bad = tmp_path / "bad"
    shutil.copytree(tiny_suno, bad)
    checkpoint = torch.load(tiny_suno / "coarse.pt", weights_only=False)
    del checkpoint["model"]["_orig_mod.transformer.ln_f.weight"]
    torch.save(checkpoint, bad / "coarse.pt")
    with pytest.raises(ValueError, match=r"coarse weights .* missing \['ln_f.weight'\]"):
        load_models(detect_layout(bad))
