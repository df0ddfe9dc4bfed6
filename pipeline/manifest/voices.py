"""Which voices a manifest row may name: the weights' presets, or .npz files inside generation.voice_dirs.

A row's voice column is data, not config: it must not make a worker read any file on the machine
(`/home/x/.aws/../secret.npz`, `../../other/voice.npz`), nor one crafted to exhaust memory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Preset names as the weights' voice folders spell them: "v2/en_speaker_6", "announcer".
_PRESET = re.compile(r"^[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*$")


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


def check_voice_file(path: str | Path, max_array_bytes: int | None = None) -> None:
    """Refuse an .npz whose size, or any array's declared size, is beyond what a voice needs (read unallocated).

    The header walk is bark_model.voices.check_voice_file, which the engine's own loading also goes
    through.
    """
    # Waits until a row names an .npz: bark_model's package imports torch (~1.5 s), which the prepare stage lacks.
    from bark_model.voices import MAX_VOICE_ARRAY_BYTES
    from bark_model.voices import check_voice_file as check

    check(path, MAX_VOICE_ARRAY_BYTES if max_array_bytes is None else max_array_bytes)
