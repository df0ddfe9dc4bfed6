"""A full, read-only, over-quota or denied output: one line, exit 2, nothing half-written left; resume finishes."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import pipeline.storage as storage
from pipeline.errors import failure
from pipeline.output.layout import HISTORY, journal
from pipeline.output.orphans import remove_orphans
from pipeline.storage import Store
from pipeline.storagefaults import OutputFault, find_output_fault

REPO = Path(__file__).resolve().parents[2]
BIG = b"\x01" * 200_000  # more than the small file system holds


class Mount:
    """A real tmpfs of a given size at `path`, resized or made read-only in place."""

    def __init__(self, path: Path):
        self.path = path

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True, capture_output=True)


@pytest.fixture
def small_fs(tmp_path):
    """160 KiB of tmpfs at tmp_path/out; skipped where this sandbox may not mount (not root, no CAP_SYS_ADMIN)."""
    path = tmp_path / "out"
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(path)], capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.strip()}); the injected faults below "
                    "cover the same code paths")  # fmt: skip
    yield Mount(path)
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


# ---------------------------------------------------------------- the storage layer


def test_a_full_disk_is_one_line_naming_the_output_and_leaves_no_temp_file(small_fs):
    store = Store.open(str(small_fs.path))
    store.makedirs("audio")
    for write in (store.write, store.commit):
        with pytest.raises(OutputFault) as caught:
            write("audio/a.wav", BIG)
        assert caught.value.errno == errno.ENOSPC
        assert str(caught.value) == (
            f"output.path {small_fs.path}: no space left on device (ENOSPC) while writing audio/a.wav; "
            "free space or choose another output.path, then run again to resume"
        )
    assert temp_files(small_fs.path) == [] and not (small_fs.path / "audio" / "a.wav").exists()
    assert store.commit("audio/b.wav", b"small") is True  # what fits still goes in


def test_a_read_only_output_says_so_for_writes_and_deletes(small_fs):
    store = Store.open(str(small_fs.path))
    store.write("summary.json", b"{}")
    small_fs.remount("ro")
    with pytest.raises(OutputFault, match=r"read-only file system \(EROFS\) while writing .barkpipe-lease; remount"):
        store.commit(".barkpipe-lease", b"{}")
    with pytest.raises(OutputFault, match=r"\(EROFS\) while deleting summary.json"):
        store.remove("summary.json")


@pytest.mark.parametrize("code", [errno.EDQUOT, errno.EACCES, errno.EPERM, errno.ENOSPC])
def test_faults_a_real_disk_cannot_give_here_are_mapped_too(tmp_path, monkeypatch, code):
    """Over quota, denied as root: the write fails after half the bytes, as a real disk fails."""

    def half_then_fail(path, data):
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(code, os.strerror(code), path)

    monkeypatch.setattr(storage, "_write_local", half_then_fail)
    store = Store.open(str(tmp_path / "out"))
    for write in (store.write, store.commit):
        with pytest.raises(OutputFault, match=rf"\({errno.errorcode[code]}\) while writing metadata/part-1.parquet"):
            write("metadata/part-1.parquet", b"x" * 100)
    assert temp_files(tmp_path) == []
    assert storage.is_transient(OSError(code, "x")) is False  # never retried for output.retry_s


def test_s3_access_denied_on_write_is_an_output_fault():
    from botocore.exceptions import ClientError

    class DeniedFS:
        protocol = ("s3", "s3a")

        def pipe_file(self, path, data, mode="overwrite"):
            denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")
            raise PermissionError("Access Denied") from denied  # as s3fs translates it

    store = Store(DeniedFS(), "bucket/out", retry_s=5)
    with pytest.raises(OutputFault) as caught:
        store.commit("audio/a.wav", b"x")
    assert str(caught.value).startswith("output.path s3://bucket/out: access denied (AccessDenied) while writing "
                                         "audio/a.wav; give these credentials write access")  # fmt: skip


def test_a_fault_raised_in_a_ray_worker_is_found_in_the_text_ray_hands_the_driver():
    line = "output.path /mnt/out: no space left on device (ENOSPC) while writing audio/x.wav; free space, then run"
    ray_text = (
        "ray::MapWorker(MapBatches(FinishStage)).submit()\n"
        "OSError: [Errno 28] No space left on device: '/mnt/out/audio/.tmp-0123456789ab-x.wav'\n"
        f"The above exception was the direct cause of the following exception:\npipeline.storage.OutputFault: {line}\n"
        "ray.exceptions.UserCodeException: UDF failed to process a data block."
    )

    class RayTaskError(Exception):  # Ray Data keeps the worker's exception only as this text
        cause = RuntimeError("UDF failed")

    found = find_output_fault(RayTaskError(ray_text))
    assert found is not None and str(found) == line and found.errno == errno.ENOSPC
    assert failure(RayTaskError(ray_text)) == (2, line)
    assert find_output_fault(RuntimeError("OSError: [Errno 28] No space left on device")) is None  # not the output
    assert failure(KeyError("row 5"))[0] == 1 and failure(KeyboardInterrupt())[0] == 130


# ---------------------------------------------------------------- orphans


def write_meta(out: Path, name: str, rows: list[dict]) -> None:
    (out / "metadata").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out / "metadata" / name)


def test_orphans_are_temp_files_and_our_audio_no_metadata_row_names(tmp_path, caplog):
    out = tmp_path / "out"
    digest = "0123456789abcdef"
    write_meta(out, "part-1.parquet", [{"id": "a", "audio_path": "audio/a.wav"},
                                       {"id": "c", "audio_path": f"audio/c-{digest}.wav"}])  # fmt: skip
    write_meta(out, "part-2.parquet", [{"id": "b", "audio_path": "audio/r1/b.flac"}])  # a redo: both revisions stay
    write_meta(out, "part-0.parquet", [{"id": "b", "audio_path": "audio/b.wav"}])
    files = {
        "audio/a.wav": "kept", "audio/b.wav": "kept", "audio/r1/b.flac": "kept", f"audio/c-{digest}.wav": "kept",
        "audio/c.wav": "orphan", "audio/d.mp3": "orphan", "audio/r2/a.wav": "orphan",
        "audio/.tmp-0123456789ab-e.wav": "temp", "audio/r1/.tmp-0123456789ab-b.flac": "temp",
        "metadata/.tmp-0123456789ab-part-9.parquet": "temp",
        "audio/notes.txt": "kept", "audio/stranger.wav": "kept", "audio/sub/a.wav": "kept",  # not ours
    }  # fmt: skip
    for rel in files:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(b"x")
    store, finds = Store.open(str(out)), []
    original = store.find
    store.find = lambda rel: finds.append(rel) or original(rel)  # type: ignore[method-assign]
    with caplog.at_level("INFO", logger="pipeline.output.orphans"):
        swept = remove_orphans(store, ["a", "b", "c", "d", "e"], when="at the start")
    assert swept.record() == {"temp_files": 3, "unreferenced_audio": 3}
    # One listing each, whatever the number of parts.
    assert sorted(finds) == sorted(["audio", "errors", "metadata", HISTORY, journal("metadata"), journal("errors")])
    left = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and "metadata/part" not in str(p)}
    assert left == {rel for rel, fate in files.items() if fate == "kept"}
    assert "removed 6 orphan audio file(s) at the start (3 temp file(s)" in caplog.text


def test_orphans_on_an_object_store_go_in_one_batched_delete(moto_s3):
    store = Store.open(f"s3://{moto_s3.make_bucket()}/out", moto_s3.storage_options)
    store.write("audio/a.wav", b"x")
    store.write("audio/b.wav", b"x")
    store.write("audio/r1/.tmp-0123456789ab-b.wav", b"x")
    store.write("metadata/part-1.parquet", pq_bytes([{"id": "a", "audio_path": "audio/a.wav"}]))
    assert remove_orphans(store, ["a", "b"]).record() == {"temp_files": 1, "unreferenced_audio": 1}
    assert store.find("audio") == ["audio/a.wav"]


def pq_bytes(rows: list[dict]) -> bytes:
    import io

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


# ---------------------------------------------------------------- a whole run on a small disk


def barkpipe(config: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO))
    env.pop("RAY_ADDRESS", None)
    code = "from pipeline.cli import app; app(prog_name='barkpipe')"
    return subprocess.run([sys.executable, "-c", code, "run", str(config)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=400)  # fmt: skip


def metadata_rows(out: Path) -> list[dict]:
    """The committed metadata rows: the published view's, then the journal's (a failed run leaves its there)."""
    files = [*sorted((out / "metadata").glob("*.parquet")), *sorted((out / journal("metadata")).glob("part-*.parquet"))]
    return [r for p in files for r in pq.read_table(p).to_pylist()]


@pytest.mark.slow
def test_a_run_that_fills_the_disk_ends_in_one_line_and_resumes_to_exactly_its_rows(small_fs, tiny_weights, tmp_path):
    ids = [f"row{i:02d}" for i in range(12)]  # 1 s of 24 kHz 16-bit WAV each: three fit in 160 KiB
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.table({"id": ids, "text": [f"Row number {i} is here." for i in range(12)]}), manifest)
    out = small_fs.path
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "input": {"path": str(manifest)}, "output": {"path": str(out), "format": "wav"},
        "model": {"weights": str(tiny_weights), "device": "cpu"}, "generation": {"max_duration": 1.0},
        "compute": {"actors": 1, "cpus_per_actor": 0.5, "batch_size": 4, "window_rows": 2},
    }))  # fmt: skip

    failed = barkpipe(config)
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert failed.returncode == 2, failed.stderr[-3000:]
    assert len(errors) == 1 and errors[0].startswith(f"error: output.path {out}: no space left on device (ENOSPC) "
                                                     "while writing "), failed.stderr[-3000:]  # fmt: skip
    assert "Traceback" not in failed.stderr and "bug" not in failed.stderr
    assert temp_files(out) == []
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "failed" and summary["exit_code"] == 2 and summary["error"] == errors[0][7:]
    committed = {r["id"] for r in metadata_rows(out)}
    assert summary["committed"]["ok"] == len(committed) < len(ids)

    # What a writer killed mid-block leaves: audio of a row never committed, and a temp file.
    small_fs.remount("size=4m")
    left = sorted(set(ids) - committed)
    (out / "audio" / f"{left[0]}.wav").write_bytes(b"half a file")
    (out / "audio" / f".tmp-0123456789ab-{left[1]}.wav").write_bytes(b"half a file")

    resumed = barkpipe(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "barkpipe: removed 2 orphan audio file(s) at the start" in resumed.stderr
    rows = metadata_rows(out)
    assert sorted(r["id"] for r in rows) == ids  # every id exactly once
    audio = {p.relative_to(out).as_posix() for p in (out / "audio").rglob("*") if p.is_file()}
    assert audio == {r["audio_path"] for r in rows} and len(audio) == len(ids)
    final = json.loads((out / "summary.json").read_text())
    assert final["state"] == "final" and final["accounted"] is True
    assert final["orphans_removed"]["start"] == {"temp_files": 1, "unreferenced_audio": 1}
