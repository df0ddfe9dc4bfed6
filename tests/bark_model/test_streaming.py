"""Streaming on tiny random weights: chunk streaming equals batch generation; window streaming's codes."""

import time

import numpy as np
import pytest

from bark_model import GenerationRequest
from bark_model.constants import SAMPLES_PER_FRAME
from bark_model.streaming import _stream_codes, stream_chunks, stream_windows

TEXTS = ["The first part is short.", "Then [laughs] a second one.", "And a third to finish."]


# Random weights never emit EOS: MAX_S caps each row (0.5 s = 37 frames, 2 coarse windows).
MAX_S = 0.5


@pytest.fixture(scope="module")
def requests():
    return [GenerationRequest.greedy(text, seed=seed, max_duration_s=MAX_S) for seed, text in enumerate(TEXTS)]


@pytest.fixture(scope="module")
def batched(engine, requests):
    return engine.generate(requests, batch_size=len(requests))


def test_stream_chunks_concatenate_to_the_batched_output(engine, requests, batched):
    start = time.perf_counter()
    first_audio, streamed = None, []
    for result in stream_chunks(engine, requests, batch_size=1):
        first_audio = first_audio or time.perf_counter() - start
        streamed.append(result)
    total = time.perf_counter() - start
    print(f"\ntiny weights, 3 chunks, batch_size 1: first audio after {first_audio:.2f} s of {total:.2f} s total")
    assert len(streamed) == len(requests)
    for one, other in zip(streamed, batched):
        np.testing.assert_array_equal(one.semantic, other.semantic)
        np.testing.assert_array_equal(one.fine, other.fine)
    joined = np.concatenate([r.audio for r in streamed])
    np.testing.assert_allclose(joined, np.concatenate([r.audio for r in batched]), atol=1e-5)


class RecordingEngine:
    """Results are the requests' texts; remembers each generate call's batch."""

    def __init__(self):
        self.calls = []

    def generate(self, requests, batch_size=None):
        self.calls.append([r.text for r in requests])
        return [r.text for r in requests]


def test_stream_chunks_reads_requests_lazily_one_batch_at_a_time():
    engine = RecordingEngine()
    seen = []

    def requests():
        for text in "abcde":
            seen.append(text)
            yield text

    stream = stream_chunks(engine, (GenerationRequest(t) for t in requests()), batch_size=2)
    assert [next(stream), next(stream)] == ["a", "b"] and seen == ["a", "b"]
    assert list(stream) == ["c", "d", "e"]
    assert engine.calls == [["a", "b"], ["c", "d"], ["e"]]
    with pytest.raises(ValueError, match="batch_size"):
        next(stream_chunks(engine, [], batch_size=0))


def test_stream_windows_coarse_is_exact_and_pieces_decode_without_seams(engine, requests, batched):
    request, full = requests[0], batched[0]
    start = time.perf_counter()
    pieces, first_audio = [], None
    for piece in _stream_codes(engine, request, frames_per_piece=30):
        first_audio = first_audio or time.perf_counter() - start
        pieces.append(piece)
    print(f"\ntiny weights, stream_windows: first audio after {first_audio:.2f} s of {time.perf_counter() - start:.2f} s")
    assert len(pieces) == 2  # 37 frames: one 30-frame window, then the last 7
    coarse = np.concatenate([c for c, _, _ in pieces], axis=1)
    fine = np.concatenate([f for _, f, _ in pieces], axis=1)
    audio = np.concatenate([a for _, _, a in pieces])
    np.testing.assert_array_equal(coarse, full.coarse)  # window by window = one long call (greedy)
    np.testing.assert_array_equal(fine[:2], full.fine[:2])
    assert [len(a) for _, _, a in pieces] == [c.shape[1] * SAMPLES_PER_FRAME for c, _, _ in pieces]
    # The codec is causal: re-decoding from the start and keeping the new samples leaves no seam.
    np.testing.assert_allclose(audio, engine.decode([fine])[0], atol=1e-5)
    assert audio.shape == full.audio.shape


def test_stream_windows_checks_its_arguments(engine):
    with pytest.raises(ValueError, match="frames_per_piece"):
        next(stream_windows(engine, GenerationRequest.greedy("Hi.", max_duration_s=MAX_S), frames_per_piece=0))
    with pytest.raises(ValueError, match="zz_speaker"):
        next(stream_windows(engine, GenerationRequest("Hi.", voice="v2/zz_speaker_1", max_duration_s=0.2)))
