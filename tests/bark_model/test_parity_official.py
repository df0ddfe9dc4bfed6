"""Whole-pipeline token parity with the official bark==0.1.5 package (greedy, fp32, CPU)."""

import numpy as np
import pytest

from bark_model import GenerationRequest, VoicePrompt
from bark_model.request import Sampling

from support.official_bark import load_official_models

TEXT = "Hello, my name is Suno. And, uh — and I like pizza. [laughs] But I also have other interests."


@pytest.fixture(scope="module")
def official(tiny_suno):
    return load_official_models(tiny_suno)


@pytest.mark.parametrize("voice", [None, "v2/en_speaker_1"])
def test_tokens_match_official(official, engine, tiny_suno, voice):
    prompt = None if voice is None else str(tiny_suno / "voices" / f"{voice}.npz")
    sem_ref = official.generate_text_semantic(TEXT, history_prompt=prompt, temp=0.7, top_k=1, silent=True, use_kv_caching=True)
    coarse_ref = official.generate_coarse(sem_ref, history_prompt=prompt, temp=0.7, top_k=1, silent=True, use_kv_caching=True)
    fine_ref = official.generate_fine(coarse_ref, history_prompt=prompt, temp=None, silent=True)

    [ours] = engine.generate([GenerationRequest.greedy(TEXT, voice)])
    # Random weights never sample EOS, so all 768 steps run: 39 coarse windows, 2+ fine windows.
    assert len(sem_ref) == 768
    assert coarse_ref.shape[1] > 1024
    np.testing.assert_array_equal(ours.semantic, sem_ref)
    np.testing.assert_array_equal(ours.coarse, coarse_ref)
    np.testing.assert_array_equal(ours.fine, fine_ref)


def test_stage_by_stage_with_odd_history(official, engine, tiny_suno):
    """Short semantic input and a prompt whose trimmed coarse history has odd length."""
    rng = np.random.default_rng(3)
    # The shape of tr_speaker_4 (191 tokens, 287 frames): n_sem 190, n_coarse 571 -> 569 kept.
    fine = rng.integers(0, 1024, size=(8, 287))
    voice = VoicePrompt(rng.integers(0, 10000, size=191), fine[:2].copy(), fine, name="odd")
    prompt = {"semantic_prompt": voice.semantic, "coarse_prompt": voice.coarse, "fine_prompt": voice.fine}
    semantic = rng.integers(0, 10000, size=137)
    coarse_ref = official.generate_coarse(semantic, history_prompt=prompt, temp=0.7, top_k=1, silent=True, use_kv_caching=True)
    fine_ref = official.generate_fine(coarse_ref, history_prompt=prompt, temp=None, silent=True)

    from bark_model.coarse import CoarseRow, generate_coarse, trim_history
    from bark_model.fine import FineRow, generate_fine
    from bark_model.sampling import RowSampling

    greedy_params = RowSampling.build([Sampling(0)], [0], "cpu")
    sem_h, coarse_h = trim_history(voice.semantic, voice.coarse)
    assert len(coarse_h) % 2 == 1
    [coarse] = generate_coarse(engine.coarse_model, [CoarseRow(sem_h, coarse_h, semantic)], greedy_params)
    np.testing.assert_array_equal(coarse, coarse_ref)
    [fine_out] = generate_fine(engine.fine_model, [FineRow(coarse, voice.fine)], greedy_params)
    np.testing.assert_array_equal(fine_out, fine_ref)
