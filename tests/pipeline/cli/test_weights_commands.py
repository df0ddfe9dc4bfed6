"""`barkpipe weights download` leaves nothing behind when it fails, and the weights hint fits the folder."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bark_model.random_weights import make_random_weights
from pipeline.weights.select import weights_hint

# A port nothing listens on, on this machine: the download fails at once and no traffic leaves.
DEAD_HUB = "http://127.0.0.1:9"


def _download(out, tmp_path) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_ENDPOINT": DEAD_HUB, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    code = "from pipeline.cli import app; app(prog_name='barkpipe')"
    return subprocess.run([sys.executable, "-c", code, "weights", "download", str(out), "--model", "small"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_a_failed_download_removes_the_folder_it_made_and_says_why_in_one_line(tmp_path):
    out = tmp_path / "new" / "bark-small"
    result = _download(out, tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: could not download Bark small from {DEAD_HUB}/suno/bark-small")
    assert "HF_ENDPOINT" in line and f"the folder {tmp_path / 'new'} it made is removed" in line
    assert not (tmp_path / "new").exists()


def test_a_failed_download_empties_an_empty_folder_and_keeps_a_full_one(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _download(empty, tmp_path)
    assert result.returncode == 2 and "is empty again" in result.stderr
    assert empty.is_dir() and not any(empty.iterdir())
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    result = _download(mine, tmp_path)
    assert result.returncode == 2 and "are kept" in result.stderr
    assert (mine / "notes.txt").read_text() == "the user's own file"


@pytest.mark.parametrize("path, command", [
    ("weights/tiny", "make-random --size tiny --layout suno weights/tiny"),
    ("../weights/test-random", "make-random --size tiny --layout suno ../weights/test-random"),
    ("weights/bark-small", "download --model small weights/bark-small"),
    ("weights/bark", "download --model large weights/bark"),
])  # fmt: skip
def test_the_hint_matches_what_the_folder_name_says(path, command):
    hint = weights_hint(path)
    assert f"`barkpipe weights {command}`" in hint
    assert ("4.5 GB" in hint) == ("--model large" in command)


def test_the_hint_for_a_damaged_random_folder_names_its_size_and_layout(tmp_path):
    folder = make_random_weights(tmp_path / "w", size="tiny", layout="hf")
    (folder / "model.safetensors").unlink()
    assert f"make-random --size tiny --layout hf {folder}`" in weights_hint(folder)


def test_the_smoke_config_run_from_configs_gets_make_random(monkeypatch):
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[3]
    monkeypatch.chdir(root / "configs")
    weights = yaml.safe_load((root / "configs" / "smoke.yaml").read_text())["model"]["weights"]
    assert "make-random --size tiny" in weights_hint(weights) and "download" not in weights_hint(weights)
