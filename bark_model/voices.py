"""Voice prompts: the .npz format, validation, and preset lookup in a weights directory."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bark_model.constants import CODEBOOK_SIZE, N_COARSE_CODEBOOKS, N_FINE_CODEBOOKS, SEMANTIC_VOCAB_SIZE

PROMPT_KEYS = ("semantic_prompt", "coarse_prompt", "fine_prompt")
_PRESET_NAME = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")


@dataclass(frozen=True)
class VoicePrompt:
    """A speaker's history: semantic [S], coarse [2, T] and fine [8, T] codes (int64)."""

    semantic: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray
    name: str = "custom"

    def __post_init__(self):
        _check_codes(self.name, "semantic_prompt", self.semantic, ndim=1, rows=None, high=SEMANTIC_VOCAB_SIZE)
        _check_codes(self.name, "coarse_prompt", self.coarse, ndim=2, rows=N_COARSE_CODEBOOKS, high=CODEBOOK_SIZE)
        _check_codes(self.name, "fine_prompt", self.fine, ndim=2, rows=N_FINE_CODEBOOKS, high=CODEBOOK_SIZE)

    @classmethod
    def from_arrays(cls, arrays, name: str = "custom") -> VoicePrompt:
        missing = [k for k in PROMPT_KEYS if k not in arrays]
        if missing:
            raise ValueError(f"voice {name!r} lacks {missing}; a voice prompt needs {list(PROMPT_KEYS)}")
        # uint16 files (announcer) and int32 fine arrays exist: widen before any offset maths.
        semantic, coarse, fine = (np.asarray(arrays[k]).astype(np.int64) for k in PROMPT_KEYS)
        return cls(semantic, coarse, fine, name=name)

    @classmethod
    def from_npz(cls, path: str | Path) -> VoicePrompt:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"voice file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls.from_arrays({k: data[k] for k in data.files}, name=str(path))
        except (OSError, ValueError, EOFError) as err:
            if isinstance(err, ValueError) and "voice" in str(err):
                raise
            raise ValueError(f"voice file {path} is not a readable .npz voice prompt ({err})") from err

    @classmethod
    def from_result(cls, result) -> VoicePrompt:
        """Use a generated utterance as the next one's history (continuity across chunks)."""
        return cls(
            result.semantic.astype(np.int64),
            result.coarse.astype(np.int64),
            result.fine.astype(np.int64),
            name="previous-chunk",
        )

    def save(self, path: str | Path) -> None:
        np.savez(path, semantic_prompt=self.semantic, coarse_prompt=self.coarse, fine_prompt=self.fine)


def _check_codes(name, key, array, ndim, rows, high):
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"voice {name!r}: {key} must be an integer array")
    if array.ndim != ndim or (rows is not None and array.shape[0] != rows) or array.size == 0:
        want = f"[{rows}, T]" if rows else "[S]"
        raise ValueError(f"voice {name!r}: {key} has shape {list(array.shape)}, expected non-empty {want}")
    if array.min() < 0 or array.max() >= high:
        raise ValueError(f"voice {name!r}: {key} values must lie in 0..{high - 1}, got {array.min()}..{array.max()}")


class VoiceLibrary:
    """Presets shipped with a weights directory (Suno `voices/` or HF `speaker_embeddings/`)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._hf_index = self._read_hf_index()

    def _read_hf_index(self) -> dict:
        index_file = self.root / "speaker_embeddings_path.json"
        if not index_file.is_file():
            return {}
        index = json.loads(index_file.read_text())
        return {k: v for k, v in index.items() if isinstance(v, dict)}

    def names(self) -> list[str]:
        names = set(self._hf_index)
        for folder in ("voices", "speaker_embeddings"):
            base = self.root / folder
            if base.is_dir():
                names.update(str(p.relative_to(base).with_suffix("")) for p in base.rglob("*.npz"))
        return sorted(names)

    def load(self, voice) -> VoicePrompt | None:
        """None, a VoicePrompt, a path to an .npz, or a preset name such as 'v2/en_speaker_6'."""
        if voice is None or isinstance(voice, VoicePrompt):
            return voice
        if not isinstance(voice, (str, Path)) or not str(voice).strip():
            raise ValueError(f"voice must be a preset name or an .npz path, got {voice!r}")
        voice = str(voice).strip()
        if voice.endswith(".npz"):
            return VoicePrompt.from_npz(voice)
        if not _PRESET_NAME.match(voice) or ".." in voice:
            raise ValueError(f"voice {voice!r} is not a valid preset name (like 'v2/en_speaker_6') or .npz path")
        for folder in ("voices", "speaker_embeddings"):
            candidate = self.root / folder / f"{voice}.npz"
            if candidate.is_file():
                prompt = VoicePrompt.from_npz(candidate)
                return VoicePrompt(prompt.semantic, prompt.coarse, prompt.fine, name=voice)
        if voice in self._hf_index:
            paths = self._hf_index[voice]
            arrays = {k: np.load(self.root / paths[k], allow_pickle=False) for k in PROMPT_KEYS if k in paths}
            return VoicePrompt.from_arrays(arrays, name=voice)
        known = self.names()
        hint = (
            f"; presets here: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''}"
            if known
            else (f"; {self.root} has no presets (download them with `barkpipe weights download`)")
        )
        raise ValueError(f"unknown voice {voice!r}{hint}")
