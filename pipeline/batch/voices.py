"""Which voices a manifest row may name: the weights' presets, or .npz files inside generation.voice_dirs.

A row's voice column is data, not config: it must not make a worker read any file on the machine
(`/home/x/.aws/../secret.npz`, `../../other/voice.npz`), nor one crafted to exhaust memory.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

# Preset names as the weights' voice folders spell them: "v2/en_speaker_6", "announcer".
_PRESET = re.compile(r"^[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*$")
# Real prompts hold a few thousand int64 codes (~100 KiB); a file declaring more is refused unread.
MAX_VOICE_ARRAY_BYTES = 16 * 2**20
MAX_VOICE_FILE_BYTES = 16 * 2**20


def resolve_voice_spec(spec: str, voice_dirs: list[str] | tuple[str, ...] = ()) -> str:
    """The voice spec to hand the engine: a preset name as it is, or the real path of an .npz inside
    one of voice_dirs. ValueError (one sentence) for anything else."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"voice {spec!r} is not a preset name or .npz file name")
    spec = spec.strip()
    if not spec.endswith(".npz"):
        if _PRESET.match(spec):
            return spec  # the engine looks it up in the weights' voices/ and speaker_embeddings/
        raise ValueError(f"voice {spec!r} is not a valid preset name (like 'v2/en_speaker_6') or .npz file")
    if not voice_dirs:
        raise ValueError(
            f"voice {spec!r}: rows may name .npz files only inside generation.voice_dirs, "
            "which is empty; add the folder there or use a preset name"
        )
    for folder in voice_dirs:
        base = os.path.realpath(folder)
        candidate = os.path.realpath(os.path.join(base, spec))  # an absolute spec replaces base here
        if _within(candidate, base) and os.path.isfile(candidate):
            check_voice_file(candidate)
            return candidate
    raise ValueError(
        f"voice {spec!r} is not a file inside generation.voice_dirs ({', '.join(voice_dirs)}); "
        "rows may not read voice files elsewhere"
    )


def _within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def check_voice_file(path: str | Path, max_array_bytes: int = MAX_VOICE_ARRAY_BYTES) -> None:
    """Refuse an .npz whose size, or any member's declared array size, is beyond what a voice needs.

    np.load allocates what a member's header declares before reading it; a 900-byte file can
    declare terabytes (MemoryError in the worker). The headers are read here without allocating.
    """
    import numpy as np

    path = Path(path)
    size = path.stat().st_size
    if size > MAX_VOICE_FILE_BYTES:
        raise ValueError(f"voice file {path.name!r} is {size} bytes (limit {MAX_VOICE_FILE_BYTES}); not a voice prompt")
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.file_size > max_array_bytes + 4096:
                    raise ValueError(
                        f"voice file {path.name!r}: member {info.filename!r} unpacks to "
                        f"{info.file_size} bytes (limit {max_array_bytes})"
                    )
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = header(member)
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared > max_array_bytes:
                    raise ValueError(
                        f"voice file {path.name!r}: {info.filename!r} declares a {list(shape)} "
                        f"{dtype} array ({declared} bytes, limit {max_array_bytes}); not a voice prompt"
                    )
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"voice file {path.name!r} is not a readable .npz ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:
        if "voice file" in str(exc):
            raise
        raise ValueError(f"voice file {path.name!r} is not a readable .npz ({exc})") from None
