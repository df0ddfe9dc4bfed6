"""bark_model.names: the one list of the files, presets, devices and precisions, readable without torch."""

import subprocess
import sys

from bark_model.device import DTYPES
from bark_model.names import PRECISIONS


def test_the_names_and_the_request_types_import_without_torch():
    """`barkpipe validate` and `--dry-run` read these names; torch's import (~1.5 s) waits for the engine."""
    code = ("import sys, bark_model.names, bark_model.voices, bark_model.download; "
            "from bark_model import GenerationRequest; print('torch' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_precision_has_an_activation_dtype():
    assert tuple(DTYPES) == PRECISIONS
