"""Which files of a remote listing Bark needs: the rules of bark_model.checkpoints.detect_layout, on names."""

from __future__ import annotations

from collections.abc import Iterable

# Small files of the Hugging Face layout that the engine or its tokenizer may read.
HF_SIDE_FILES = (
    "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.txt", "speaker_embeddings_path.json",
)  # fmt: skip
HF_TOKENIZERS = ("tokenizer.json", "vocab.txt")  # detect_layout needs one of them
VOICE_FOLDERS = ("voices/", "speaker_embeddings/")  # presets (bark_model.voices.VoiceLibrary), any depth
NOTE_FILES = ("RANDOM_WEIGHTS.txt",)  # `barkpipe say` warns when it is there


class NoBarkWeights(ValueError):
    """The listing holds no complete Bark layout; the message says what is there and what is missing."""


def bark_files(names: Iterable[str]) -> tuple[str, list[str]]:
    """(layout, sorted relative names to fetch) for a listing of relative names; never anything else.

    Like detect_layout: the HF layout wins when config.json and a weight file are present (only the
    first of model.safetensors / pytorch_model.bin is taken), else Suno large, else Suno small.
    """
    from bark_model.checkpoints import CODEC_FILE, HF_WEIGHT_FILES, SUNO_FILES  # here: it imports torch

    names = set(names)
    top = {n for n in names if "/" not in n}
    extras = {n for n in names if n.startswith(VOICE_FOLDERS)} | (top & set(NOTE_FILES))
    hf_weights = [f for f in HF_WEIGHT_FILES if f in top]
    if "config.json" in top and hf_weights:
        if not top & set(HF_TOKENIZERS):
            raise NoBarkWeights("it has a Hugging Face Bark model but no tokenizer.json or vocab.txt")
        chosen = {"config.json", hf_weights[0]} | (top & set(HF_SIDE_FILES))
        return "hf", sorted(chosen | extras)
    for size, files in SUNO_FILES.items():
        if all(f in top for f in files.values()):
            missing = [f for f in (CODEC_FILE, "vocab.txt") if f not in top]
            if missing:
                raise NoBarkWeights(f"it has the Suno {size} models but no {' or '.join(missing)}")
            return f"suno-{size}", sorted(set(files.values()) | {CODEC_FILE, "vocab.txt"} | extras)
    shown = ", ".join(sorted(top)[:8]) + (" ..." if len(top) > 8 else "") if top else "no files at the top level"
    raise NoBarkWeights(
        "no Bark weights found there: expected text_2.pt/coarse_2.pt/fine_2.pt (or text.pt/coarse.pt/fine.pt) "
        f"with {CODEC_FILE} and vocab.txt, or config.json with model.safetensors/pytorch_model.bin; found {shown}"
    )
