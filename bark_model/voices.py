"""Voice prompts: the .npz format, validation, and preset lookup in a weights directory."""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bark_model.constants import CODEBOOK_SIZE, N_COARSE_CODEBOOKS, N_FINE_CODEBOOKS, SEMANTIC_VOCAB_SIZE
from bark_model.names import HF_VOICE_INDEX, PROMPT_KEYS, VOICE_FOLDERS

_PRESET_NAME = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")
# Real prompts hold a few thousand int64 codes (~100 KiB); a file declaring more is refused unread.
MAX_VOICE_ARRAY_BYTES = 16 * 2**20  # all arrays of one file together, as their headers declare them
MAX_VOICE_FILE_BYTES = 16 * 2**20
NPY_HEADER_SLACK = 4096  # an .npy member is its array plus a header of at most a few KiB
# What zipfile and numpy's header parser raise on a damaged or hostile file (besides ValueError).
_UNREADABLE = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError)


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
        arrays = load_npz(path, keys=PROMPT_KEYS)
        return cls.from_arrays(arrays, name=str(path))

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
        index_file = self.root / HF_VOICE_INDEX
        if not index_file.is_file():
            return {}
        index = json.loads(index_file.read_text())
        return {k: v for k, v in index.items() if isinstance(v, dict)}

    def names(self) -> list[str]:
        names = set(self._hf_index)
        for folder in VOICE_FOLDERS:
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
        for folder in VOICE_FOLDERS:
            candidate = self.root / folder / f"{voice}.npz"
            if candidate.is_file():
                prompt = VoicePrompt.from_npz(candidate)
                return VoicePrompt(prompt.semantic, prompt.coarse, prompt.fine, name=voice)
        if voice in self._hf_index:
            paths = self._hf_index[voice]
            arrays = {k: load_npy(self.root / paths[k]) for k in PROMPT_KEYS if k in paths}
            return VoicePrompt.from_arrays(arrays, name=voice)
        known = self.names()
        hint = (
            f"; presets here: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''}"
            if known
            else (f"; {self.root} has no presets (download them with `barkpipe weights download`)")
        )
        raise ValueError(f"unknown voice {voice!r}{hint}")


# -- bounded reading: np.load allocates what a header declares, so headers are checked first ---------


def check_voice_file(path: str | Path, max_array_bytes: int = MAX_VOICE_ARRAY_BYTES) -> None:
    """Refuse an .npz or .npy whose size, or whose arrays' declared sizes, are beyond what a voice needs.

    np.load allocates what an array header declares before reading the data: a 900-byte file can
    declare terabytes (MemoryError). The headers are read here without allocating any array.
    """
    _check_bytes(_read_small(path), Path(path).name, max_array_bytes)


def load_npz(path: str | Path, keys=None, max_array_bytes: int = MAX_VOICE_ARRAY_BYTES) -> dict[str, np.ndarray]:
    """The arrays of an .npz (only `keys` when given), after check_voice_file's checks on the same bytes."""
    data = _read_small(path)
    name = Path(path).name
    _check_bytes(data, name, max_array_bytes)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise ValueError("it holds one array, not named prompt arrays")
            return {k: npz[k] for k in npz.files if keys is None or k in keys}
    except (ValueError, *_UNREADABLE) as exc:
        raise _unreadable(name, exc) from None


def load_npy(path: str | Path, max_array_bytes: int = MAX_VOICE_ARRAY_BYTES) -> np.ndarray:
    """One .npy array (a Hugging Face preset's prompt), after its header is checked against the bound."""
    data = _read_small(path)
    name = Path(path).name
    _check_bytes(data, name, max_array_bytes)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(array, np.ndarray):
            raise ValueError("it is an .npz archive, not one .npy array")
        return array
    except (ValueError, *_UNREADABLE) as exc:
        raise _unreadable(name, exc) from None


def _read_small(path: str | Path) -> bytes:
    """The file's bytes, read once (what is checked is what is loaded); FileNotFoundError or ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"voice file not found: {path}")
    with path.open("rb") as f:
        data = f.read(MAX_VOICE_FILE_BYTES + 1)
    if len(data) > MAX_VOICE_FILE_BYTES:
        raise ValueError(f"voice file {path.name!r} is over {MAX_VOICE_FILE_BYTES} bytes; not a voice prompt")
    return data


def _check_bytes(data: bytes, name: str, limit: int) -> None:
    """An .npz (zip of .npy members) or a bare .npy: every declared array, and all together, within limit."""
    try:
        if not data.startswith(b"PK"):
            _check_total(name, [_declared_bytes(io.BytesIO(data), name, "array", limit)], limit)
            return
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            declared = []
            for info in archive.infolist():
                # file_size bounds what zipfile will inflate: a compressed member cannot unpack past it.
                if info.file_size > limit + NPY_HEADER_SLACK:
                    raise ValueError(f"voice file {name!r}: member {info.filename!r} unpacks to "
                                     f"{info.file_size} bytes (limit {limit})")  # fmt: skip
                with archive.open(info) as member:
                    declared.append(_declared_bytes(member, name, info.filename, limit))
            _check_total(name, declared, limit)
    except ValueError as exc:
        if str(exc).startswith(f"voice file {name!r}"):
            raise
        raise _unreadable(name, exc) from None
    except _UNREADABLE as exc:
        raise _unreadable(name, exc) from None


def _declared_bytes(stream, name: str, what: str, limit: int) -> int:
    """Bytes the .npy header at the stream's position declares; ValueError past `limit`."""
    version = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(stream)
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize  # object: no int64 overflow on 10**30
    if declared > limit:
        raise ValueError(f"voice file {name!r}: {what!r} declares a {list(shape)} {dtype} array "
                         f"({declared} bytes, limit {limit}); not a voice prompt")  # fmt: skip
    return declared


def _check_total(name: str, declared: list[int], limit: int) -> None:
    if sum(declared) > limit:
        raise ValueError(f"voice file {name!r}: its {len(declared)} arrays declare {sum(declared)} bytes "
                         f"together (limit {limit}); not a voice prompt")  # fmt: skip


def _unreadable(name: str, exc: BaseException) -> ValueError:
    return ValueError(f"voice file {name!r} is not a readable .npz/.npy voice prompt ({type(exc).__name__}: {exc})")
