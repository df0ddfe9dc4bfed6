"""Which files of a remote listing Bark needs: the rules of bark_model.checkpoints.detect_layout, on names."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from bark_model.names import (
    CODEC_FILE,
    HF_CONFIG_FILE,
    HF_SIDE_FILES,
    HF_TOKENIZER_FILES,
    HF_WEIGHT_FILES,
    RANDOM_MARKER,
    SUNO_FILES,
    VOCAB_FILE,
    VOICE_FOLDERS,
)

PRESET_PREFIXES = tuple(f"{folder}/" for folder in VOICE_FOLDERS)  # presets, at any depth below them
# Folder-name words that say "test weights" (configs/smoke.yaml's weights/tiny): make-random, not a download.
TEST_WEIGHT_WORDS = ("tiny", "random", "test", "tests", "smoke", "fake", "dummy")
DOWNLOAD_GB = {"large": 4.5, "small": 1.7}  # the hf layout's model file (suno/bark, suno/bark-small)
# bark_model.random_weights writes "Random {size} Bark weights ({layout} layout, seed N) ...".
_MARKER_LINE = re.compile(r"Random (?P<size>tiny|small|large) Bark weights \((?P<layout>suno|hf) layout")


class NoBarkWeights(ValueError):
    """The listing holds no complete Bark layout; the message says what is there and what is missing."""


def bark_files(names: Iterable[str]) -> tuple[str, list[str]]:
    """(layout, sorted relative names to fetch) for a listing of relative names; never anything else.

    Like detect_layout: the HF layout wins when config.json and a weight file are present (only the
    first of model.safetensors / pytorch_model.bin is taken), else Suno large, else Suno small.
    """
    names = set(names)
    top = {n for n in names if "/" not in n}
    # RANDOM_MARKER travels too: `barkpipe say` warns when the weights only make noise.
    extras = {n for n in names if n.startswith(PRESET_PREFIXES)} | (top & {RANDOM_MARKER})
    hf_weights = [f for f in HF_WEIGHT_FILES if f in top]
    if HF_CONFIG_FILE in top and hf_weights:
        if not top & set(HF_TOKENIZER_FILES):
            raise NoBarkWeights(f"it has a Hugging Face Bark model but no {' or '.join(HF_TOKENIZER_FILES)}")
        chosen = {HF_CONFIG_FILE, hf_weights[0]} | (top & set(HF_SIDE_FILES))
        return "hf", sorted(chosen | extras)
    for size, files in SUNO_FILES.items():
        if all(f in top for f in files.values()):
            missing = [f for f in (CODEC_FILE, VOCAB_FILE) if f not in top]
            if missing:
                raise NoBarkWeights(f"it has the Suno {size} models but no {' or '.join(missing)}")
            return f"suno-{size}", sorted(set(files.values()) | {CODEC_FILE, VOCAB_FILE} | extras)
    shown = ", ".join(sorted(top)[:8]) + (" ..." if len(top) > 8 else "") if top else "no files at the top level"
    raise NoBarkWeights(
        "no Bark weights found there: expected text_2.pt/coarse_2.pt/fine_2.pt (or text.pt/coarse.pt/fine.pt) "
        f"with {CODEC_FILE} and vocab.txt, or config.json with model.safetensors/pytorch_model.bin; found {shown}"
    )


def weights_hint(path: str | Path) -> str:
    """The command that puts at `path` the weights it looks meant to hold, for a "weights not found" message.

    Test weights (a folder holding RANDOM_WEIGHTS.txt, or named like "tiny", "random", "test") get
    the make-random command with their size and layout: proposing a 4.5 GB download of the real
    model for `weights/tiny` sends a user the wrong way. Anything else gets the download of the
    size its name says (small, else large).
    """
    path = Path(path)
    marker = _random_marker(path)
    if marker is not None:
        size, layout = marker
        return (f"make them again with `barkpipe weights make-random --size {size} --layout {layout} {path}` "
                "(random test weights: they only make noise)")  # fmt: skip
    # The folder's own name only: a parent such as a test's temporary folder says nothing of the weights.
    words = {w for w in re.split(r"[^a-z0-9]+", path.name.lower()) if w}
    if words & set(TEST_WEIGHT_WORDS):
        return (f"make test weights with `barkpipe weights make-random --size tiny --layout suno {path}` "
                "(random: they only make noise; for speech, point at real Bark weights)")  # fmt: skip
    model = "small" if "small" in words else "large"
    return (f"download them with `barkpipe weights download --model {model} {path}` (about "
            f"{DOWNLOAD_GB[model]} GB), or make test weights with "
            f"`barkpipe weights make-random --size tiny --layout suno DIR`")  # fmt: skip


def _random_marker(path: Path) -> tuple[str, str] | None:
    """(size, layout) from the RANDOM_WEIGHTS.txt that make-random writes, when `path` holds one."""
    try:
        text = (path / RANDOM_MARKER).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = _MARKER_LINE.search(text)
    return (found["size"], found["layout"]) if found else ("tiny", "suno")
