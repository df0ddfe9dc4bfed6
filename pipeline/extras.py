"""Optional features and the one `pip install` each needs, checked before the feature starts."""

from __future__ import annotations

import importlib.util
import sys

# extra -> the modules it brings (import names). One `pip install 'barkpipe[EXTRA]'` gives them all.
EXTRAS: dict[str, tuple[str, ...]] = {
    "audiobook": ("av", "mutagen", "pocketsphinx", "jiwer", "webrtcvad"),
    "whisper": ("faster_whisper", "jiwer"),
}
# feature -> (extra, the modules of that extra the feature imports)
FEATURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "barkpipe book": ("audiobook", ("av", "mutagen")),
    "quality.speech (pocketsphinx)": ("audiobook", ("pocketsphinx", "jiwer")),
    "quality.speech (faster-whisper)": ("whisper", ("faster_whisper", "jiwer")),
    "quality.speaker": ("audiobook", ("webrtcvad",)),
}


class MissingExtra(ValueError):
    """A feature's optional dependencies are not installed; the message names the one install command."""


def install_hint(extra: str) -> str:
    return f"pip install 'barkpipe[{extra}]'"


def missing(feature: str) -> str | None:
    """The one-line problem when `feature`'s extra is not installed, else None."""
    extra, modules = FEATURES[feature]
    absent = [m for m in modules if not _importable(m)]
    if not absent:
        return None
    names = ", ".join(absent)
    return f"{feature} needs the '{extra}' extra ({names} not installed); install it with: {install_hint(extra)}"


def _importable(module: str) -> bool:
    if module in sys.modules:  # imported already (whatever its __spec__), or None: its import is blocked
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that fails to import, or a module without a spec
        return False


def require(feature: str) -> None:
    """Raise MissingExtra (a ValueError: commands print it as one line, exit 2) when `feature` cannot run here."""
    problem = missing(feature)
    if problem is not None:
        raise MissingExtra(problem)


def speech_feature(backend: str) -> str:
    """The FEATURES key of a quality.speech backend."""
    return f"quality.speech ({backend})"
