"""Row voices: presets or .npz files inside generation.voice_dirs only; voice files that lie are refused unread."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from pipeline.manifest.voices import check_voice_file, resolve_voice_spec


@pytest.fixture
def voice_dir(tmp_path):
    folder = tmp_path / "voices"
    (folder / "narrators").mkdir(parents=True)
    np.savez(
        folder / "narrators" / "anna.npz",
        semantic_prompt=np.zeros(10, np.int64),
        coarse_prompt=np.zeros((2, 5), np.int64),
        fine_prompt=np.zeros((8, 5), np.int64),
    )
    (tmp_path / "private").mkdir()
    np.savez(tmp_path / "private" / "secret.npz", semantic_prompt=np.zeros(3, np.int64))
    return folder


def test_presets_pass_through_and_files_inside_voice_dirs_resolve(voice_dir):
    assert resolve_voice_spec("v2/en_speaker_6", []) == "v2/en_speaker_6"
    real = str((voice_dir / "narrators" / "anna.npz").resolve())
    assert resolve_voice_spec("narrators/anna.npz", [str(voice_dir)]) == real
    assert resolve_voice_spec(real, [str(voice_dir)]) == real  # an absolute path inside is fine
    assert resolve_voice_spec(" narrators/anna.npz ", ["/nonexistent", str(voice_dir)]) == real


@pytest.mark.parametrize(
    "spec",
    ["../private/secret.npz", "narrators/../../private/secret.npz", "/etc/x.npz", "PRIVATE", "narrators/missing.npz"],
)
def test_anything_outside_voice_dirs_is_refused_in_one_sentence(voice_dir, spec):
    spec = spec.replace("PRIVATE", str(voice_dir.parent / "private" / "secret.npz"))
    with pytest.raises(ValueError, match="not a file inside generation.voice_dirs") as err:
        resolve_voice_spec(spec, [str(voice_dir)])
    assert "\n" not in str(err.value)


def test_a_symlink_out_of_voice_dirs_is_refused(voice_dir):
    (voice_dir / "link.npz").symlink_to(voice_dir.parent / "private" / "secret.npz")
    with pytest.raises(ValueError, match="not a file inside"):
        resolve_voice_spec("link.npz", [str(voice_dir)])


@pytest.mark.parametrize(
    "spec, words",
    [
        ("x.npz", "generation.voice_dirs, which is empty"),
        ("../x", "not a valid preset name"),
        ("", "not a preset name"),
        ("a b", "not a valid preset name"),
    ],
)
def test_bad_specs_without_voice_dirs(spec, words):
    with pytest.raises(ValueError, match=words):
        resolve_voice_spec(spec, [])


def test_a_tiny_file_declaring_a_huge_array_is_refused_without_allocating(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)})
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w") as archive:
        archive.writestr("semantic_prompt.npy", header.getvalue() + b"\0" * 64)
    assert bomb.stat().st_size < 1000
    with pytest.raises(ValueError, match=r"declares a \[1000000000000\] int64 array"):
        check_voice_file(bomb)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        check_voice_file(tmp_path / "junk.npz")


def test_a_real_voice_file_passes_the_check(voice_dir):
    check_voice_file(voice_dir / "narrators" / "anna.npz")
