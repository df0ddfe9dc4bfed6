"""Real speech for the speech and speaker checks: espeak-ng (Debian package) says a sentence."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest

INSTALL_HINT = "espeak-ng is not installed (apt-get install -y espeak-ng; .ci/run installs it)"


def need_espeak() -> None:
    """Skip the calling test, saying why, where espeak-ng is missing."""
    if shutil.which("espeak-ng") is None:
        pytest.skip(INSTALL_HINT)


def espeak(text: str, voice: str = "en-us", speed: int = 140) -> tuple[np.ndarray, int]:
    """(mono float32 audio [N], sample rate) of espeak-ng saying `text` in `voice`."""
    import soundfile as sf

    need_espeak()
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                         capture_output=True, check=True, timeout=60).stdout
    audio, sr = sf.read(io.BytesIO(wav), dtype="float32")
    return audio, sr
