"""Packaging: the wheel carries the mBERT vocabulary and `barkpipe say` works from it; the Makefile's stamps."""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VOCAB = "bark_model/assets/bert-base-multilingual-cased-vocab.txt"
# The speaker encoder's weights and their license travel inside the wheel (no download, no extra package).
SPEAKER_ASSETS = ("pipeline/audio/assets/voice_encoder.safetensors", "pipeline/audio/assets/VOICE_ENCODER_LICENSE.txt")


def test_pyproject_declares_package_data_and_an_spdx_license():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"  # a table makes setuptools >= 77 warn
    assert "assets/*.txt" in project["tool"]["setuptools"]["package-data"]["bark_model"]
    assert "audio/assets/*" in project["tool"]["setuptools"]["package-data"]["pipeline"]
    assert (REPO / VOCAB).is_file() and all((REPO / asset).is_file() for asset in SPEAKER_ASSETS)


def test_make_smoke_installs_only_the_job_and_make_test_the_extras():
    makefile = (REPO / "Makefile").read_text()
    smoke = re.search(r"^smoke:(.*)$", makefile, re.M).group(1)
    test = re.search(r"^test:(.*)$", makefile, re.M).group(1)
    assert "$(BASE_STAMP)" in smoke and "$(TEST_STAMP)" not in smoke
    assert "$(TEST_STAMP)" in test
    base_recipe = makefile.split("$(BASE_STAMP): ")[1].split("\n\n")[0]
    assert "-e ." in base_recipe and "[test]" not in base_recipe
    clean = makefile.split("\nclean:")[1]
    assert "bench/out" in clean and "build" in clean


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in ("bark_model", "pipeline"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, timeout=300)  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("barkpipe-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_says_something(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert VOCAB in names and all(asset in names for asset in SPEAKER_ASSETS)
    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    # Reuse this venv's dependencies (torch & co., no download) without its editable barkpipe:
    # a path listed in a .pth file is not a site dir, so the editable finder there never loads.
    [fresh_site] = Path(subprocess.check_output([py, "-c", "import site; print(site.getsitepackages()[0])"],
                                                text=True).strip()),  # fmt: skip
    (fresh_site / "_barkpipe_test_deps.pth").write_text(site.getsitepackages()[0] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, timeout=300)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.check_output([py, "-c", "import pipeline.cli, bark_model; print(pipeline.cli.__file__, bark_model.__file__)"],
                                    text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert where.count(str(fresh_site)) == 2, where  # the wheel's copy, not the checkout
    barkpipe = venv / "bin" / "barkpipe"
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    made = subprocess.run([barkpipe, "weights", "make-random", "--size", "tiny", "w"], **run)
    assert made.returncode == 0, made.stderr
    said = subprocess.run([barkpipe, "say", "Hello from the wheel.", "--weights", "w", "--out", "hi.wav",
                           "--device", "cpu", "--max-duration", "0.3"], **run)  # fmt: skip
    assert said.returncode == 0, said.stderr
    assert (tmp_path / "hi.wav").stat().st_size > 44
