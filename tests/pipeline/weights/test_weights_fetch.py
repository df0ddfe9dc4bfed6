"""pipeline.weights.fetch_weights: local folders, fsspec URLs (moto S3) and hf:// (mocked Hub), cached once per node."""

from __future__ import annotations

import filecmp
import json
import logging
import multiprocessing
import os
import re
import shutil
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from pipeline.weights import WeightsError, fetch_weights, parse_source
from pipeline.weights import fetch as fetch_module
from pipeline.weights.cache import MARKER
from pipeline.weights.select import NoBarkWeights, bark_files
from pipeline.weights.source import cache_folder
from support.s3servers import MotoServer

BOUND_S = 15.0  # the longest a user may wait for "the endpoint does not answer"
SUNO_TINY = ["RANDOM_WEIGHTS.txt", "coarse.pt", "encodec_24khz-d7cc33bc.th", "fine.pt", "text.pt", "vocab.txt",
             "voices/announcer.npz", "voices/v2/en_speaker_0.npz", "voices/v2/en_speaker_1.npz"]  # fmt: skip


def _files(folder: Path) -> list[str]:
    """Relative names of the weight files in a folder (the cache's own bookkeeping left out)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and not p.relative_to(folder).as_posix().startswith((MARKER, ".partial")))  # fmt: skip


def _stub_weights(fs, prefix: str) -> dict[str, bytes]:
    """Small stand-ins under Bark's Suno names, for tests that fetch but never load (fast to upload)."""
    files = {name: name.encode() * 100 for name in SUNO_TINY}
    fs.pipe({f"{prefix}/{name}": data for name, data in files.items()})
    return files


def _stats(folder: Path) -> dict[str, tuple[int, int]]:
    return {rel: ((folder / rel).stat().st_ino, (folder / rel).stat().st_mtime_ns) for rel in _files(folder)}


@pytest.fixture
def gets(monkeypatch) -> list[str]:
    """Every object GET fetch_weights makes (its one download path), by remote path."""
    seen: list[str] = []
    real = fetch_module._get

    def spy(fs, remote_path, local_path):
        seen.append(remote_path)
        return real(fs, remote_path, local_path)

    monkeypatch.setattr(fetch_module, "_get", spy)
    return seen


# -- sources, names and selection (no server) -----------------------------------------------------
def test_sources_are_parsed_without_the_network(tmp_path):
    assert parse_source(str(tmp_path)).kind == "local"
    assert parse_source(f"file://{tmp_path}").location == str(tmp_path)
    s3 = parse_source("s3://KEY:SECRET@bucket/bark")
    assert s3.kind == "fsspec" and "SECRET" not in s3.url
    hf = parse_source("hf://suno/bark-small@v1.0")
    assert (hf.kind, hf.location, hf.revision) == ("hf", "suno/bark-small", "v1.0")
    assert parse_source("hf://suno/bark").revision is None
    for bad in ("hf://bark", "hf://a/b/c", "hf://suno/bark@", ""):
        with pytest.raises(WeightsError, match="hf://owner/repo|empty"):
            parse_source(bad)


def test_cache_folder_is_a_readable_slug_and_a_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("BARKPIPE_CACHE", str(tmp_path / "env-cache"))
    folder = cache_folder(parse_source("s3://bucket/bark/large"), {}, None)
    assert folder.parent == tmp_path / "env-cache" / "weights"
    assert folder.name.startswith("s3-bucket-bark-large-") and len(folder.name.rsplit("-", 1)[1]) == 12
    same = [cache_folder(parse_source(u), {}, None) for u in ("s3://bucket/bark/large/", "s3://K:S@bucket/bark/large")]
    assert same == [folder, folder]  # trailing slash and credentials do not make another copy
    other_endpoint = cache_folder(parse_source("s3://bucket/bark/large"), {"endpoint_url": "http://minio:9000"}, None)
    main, v1 = (cache_folder(parse_source(u), {}, tmp_path) for u in ("hf://suno/bark", "hf://suno/bark@v1"))
    assert len({folder, other_endpoint, main, v1}) == 4
    assert main.name.startswith("hf-suno-bark-main-") and v1.name.startswith("hf-suno-bark-v1-")


def test_only_the_files_bark_loads_are_selected():
    hub = ["config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "vocab.txt", "README.md",
           "speaker_embeddings_path.json", "speaker_embeddings/v2/en_speaker_0_semantic_prompt.npy",
           "text.pt", "text_2.pt", "coarse_2.pt", "fine_2.pt", ".gitattributes"]  # fmt: skip
    layout, names = bark_files(hub)
    assert layout == "hf" and "pytorch_model.bin" not in names and "text_2.pt" not in names
    assert {"config.json", "model.safetensors", "speaker_embeddings/v2/en_speaker_0_semantic_prompt.npy"} <= set(names)
    suno = ["text.pt", "coarse.pt", "fine.pt", "text_2.pt", "coarse_2.pt", "fine_2.pt", "vocab.txt",
            "encodec_24khz-d7cc33bc.th", "optimizer_state.pt", "checkpoints/step_1000.pt", "voices/a.npz"]  # fmt: skip
    layout, names = bark_files(suno)
    assert layout == "suno-large" and names == sorted(
        ["text_2.pt", "coarse_2.pt", "fine_2.pt", "vocab.txt", "encodec_24khz-d7cc33bc.th", "voices/a.npz"])
    with pytest.raises(NoBarkWeights, match="no encodec_24khz-d7cc33bc.th"):
        bark_files(["text.pt", "coarse.pt", "fine.pt", "vocab.txt"])
    with pytest.raises(NoBarkWeights, match="found notes.txt"):
        bark_files(["notes.txt"])


def test_a_local_folder_is_returned_as_is(tiny_weights, tmp_path):
    assert fetch_weights(str(tiny_weights)) == tiny_weights
    assert fetch_weights(f"file://{tiny_weights}") == tiny_weights
    with pytest.raises(WeightsError, match="not found.*barkpipe weights download"):
        fetch_weights(str(tmp_path / "missing"))


def test_any_fsspec_protocol_memory(tiny_weights, tmp_path, gets):
    import fsspec

    from bark_model import BarkEngine

    memory = fsspec.filesystem("memory")
    memory.put(str(tiny_weights), "/w8-tiny", recursive=True)
    try:
        folder = fetch_weights("memory://w8-tiny", cache_dir=tmp_path)
        assert folder.is_relative_to(tmp_path / "weights") and _files(folder) == SUNO_TINY and len(gets) == 9
        assert BarkEngine.from_dir(folder, device="cpu").model_info["layout"] == "suno"
        assert fetch_weights("memory://w8-tiny", cache_dir=tmp_path) == folder and len(gets) == 9
    finally:
        memory.rm("/w8-tiny", recursive=True)


def test_an_unusable_cache_is_one_line(tiny_weights, tmp_path, monkeypatch):
    import fsspec

    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should go")
    with pytest.raises(WeightsError, match="cannot create the cache folder.*BARKPIPE_CACHE"):
        fetch_weights("memory://w8-anything", cache_dir=blocker)
    memory = fsspec.filesystem("memory")
    memory.put(str(tiny_weights), "/w8-space", recursive=True)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**6, used=10**6 - 1000, free=1000))
    try:
        with pytest.raises(WeightsError, match=r"needs 0\.14 GB in .* only 0\.00 GB free"):
            fetch_weights("memory://w8-space", cache_dir=tmp_path / "cache")
    finally:
        memory.rm("/w8-space", recursive=True)


# -- S3 (a real moto server) ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3_weights(moto_s3, tiny_weights):
    """The tiny Suno weights under s3://<bucket>/bark/tiny, next to objects Bark does not need."""
    fs = moto_s3.filesystem()
    bucket = moto_s3.make_bucket()
    fs.put(str(tiny_weights), f"{bucket}/bark/tiny", recursive=True)
    fs.pipe({f"{bucket}/bark/tiny/optimizer_state.pt": b"x" * 50_000,
             f"{bucket}/bark/tiny/checkpoints/step_1000.pt": b"y" * 50_000,
             f"{bucket}/other/readme.txt": b"not weights"})  # fmt: skip
    return SimpleNamespace(endpoint=moto_s3, bucket=bucket, url=f"s3://{bucket}/bark/tiny", local=tiny_weights,
                           options=moto_s3.storage_options)  # fmt: skip


@pytest.mark.slow
def test_s3_fetch_loads_and_equals_the_local_copy(s3_weights, tmp_path, gets):
    from bark_model import BarkEngine

    folder = fetch_weights(s3_weights.url, s3_weights.options, cache_dir=tmp_path)
    assert _files(folder) == SUNO_TINY  # not optimizer_state.pt, not checkpoints/
    assert sorted(p.rsplit("/bark/tiny/", 1)[1] for p in gets) == SUNO_TINY
    assert all(filecmp.cmp(folder / rel, s3_weights.local / rel, shallow=False) for rel in SUNO_TINY)
    marker = json.loads((folder / MARKER).read_text())
    assert marker["complete"] and set(marker["files"]) == set(SUNO_TINY)
    assert all(e["etag"] and len(e["sha256"]) == 64 and e["size"] > 0 for e in marker["files"].values())
    engine = BarkEngine.from_dir(folder, device="cpu")
    assert engine.model_info["layout"] == "suno" and "v2/en_speaker_0" in engine.voices.names()


@pytest.mark.slow
def test_second_fetch_downloads_nothing(s3_weights, tmp_path, gets):
    first = fetch_weights(s3_weights.url, s3_weights.options, cache_dir=tmp_path)
    before, n = _stats(first), len(gets)
    started = time.perf_counter()
    assert fetch_weights(s3_weights.url, s3_weights.options, cache_dir=tmp_path) == first
    assert len(gets) == n and _stats(first) == before  # no GET, and no file replaced
    assert time.perf_counter() - started < 2.0


@pytest.mark.slow
def test_truncated_or_changed_files_are_fetched_again(s3_weights, tmp_path, gets):
    folder = fetch_weights(s3_weights.url, s3_weights.options, cache_dir=tmp_path)
    text = folder / "text.pt"
    text.write_bytes(text.read_bytes()[: text.stat().st_size // 2])  # a partial copy, e.g. a full disk
    gets.clear()
    assert fetch_weights(s3_weights.url, s3_weights.options, cache_dir=tmp_path) == folder
    assert [g.rsplit("/", 1)[1] for g in gets] == ["text.pt"]
    assert filecmp.cmp(text, s3_weights.local / "text.pt", shallow=False)


@pytest.mark.slow
def test_a_changed_source_is_fetched_again_same_size(moto_s3, tmp_path, gets):
    fs, bucket = moto_s3.filesystem(), moto_s3.make_bucket()
    note = _stub_weights(fs, f"{bucket}/w")["RANDOM_WEIGHTS.txt"]
    folder = fetch_weights(f"s3://{bucket}/w", moto_s3.storage_options, cache_dir=tmp_path)
    fs.pipe_file(f"{bucket}/w/RANDOM_WEIGHTS.txt", note.upper())  # same size, new etag
    gets.clear()
    fetch_weights(f"s3://{bucket}/w", moto_s3.storage_options, cache_dir=tmp_path)
    assert [g.rsplit("/", 1)[1] for g in gets] == ["RANDOM_WEIGHTS.txt"]
    assert (folder / "RANDOM_WEIGHTS.txt").read_bytes() == note.upper()


def _fetch_in_child(url: str, options: dict, cache_dir: str, log_path: str, start_at: float) -> None:
    """One 'actor': waits for the common start, fetches with every GET slowed a little and logged."""
    from pipeline.weights import fetch as fetch_module

    real = fetch_module._get

    def logged(fs, remote_path, local_path):
        with open(log_path, "a") as log:
            log.write(f"{os.getpid()} {remote_path}\n")
        time.sleep(0.15)  # keeps the download open long enough for the other process to arrive
        return real(fs, remote_path, local_path)

    fetch_module._get = logged
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    folder = fetch_module.fetch_weights(url, options, cache_dir=cache_dir)
    with open(f"{log_path}.{os.getpid()}.json", "w") as out:
        json.dump({"folder": str(folder), "s": time.time() - started}, out)


@pytest.mark.slow
def test_two_processes_on_one_node_download_once(s3_weights, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    log = tmp_path / "gets.log"
    start_at = time.time() + 8.0  # both children are imported and waiting by then
    args = (s3_weights.url, s3_weights.options, str(tmp_path / "cache"), str(log), start_at)
    procs = [ctx.Process(target=_fetch_in_child, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    lines = log.read_text().splitlines()
    assert sorted(line.split()[1].rsplit("/bark/tiny/", 1)[1] for line in lines) == SUNO_TINY  # one download
    assert len({line.split()[0] for line in lines}) == 1  # by one process
    downloader = lines[0].split()[0]
    results = {p.name.split(".")[2]: json.loads(p.read_text()) for p in tmp_path.glob("gets.log.*.json")}
    assert len(results) == 2 and len({r["folder"] for r in results.values()}) == 1
    waiter = next(r for pid, r in results.items() if pid != downloader)
    assert waiter["s"] > 0.5  # it waited on the lock while the other made 9 slowed GETs, then found the marker
    assert _files(Path(waiter["folder"])) == SUNO_TINY


@pytest.mark.slow
def test_missing_bucket_prefix_or_weights_are_one_line(s3_weights, tmp_path):
    cases = {
        f"s3://missing-{s3_weights.bucket}/bark": "bucket or prefix not found",
        f"s3://{s3_weights.bucket}/bark/nope": "nothing there; check the bucket and prefix",
        f"s3://{s3_weights.bucket}/other": "no Bark weights found there",
    }
    for url, expected in cases.items():
        with pytest.raises(WeightsError) as err:
            fetch_weights(url, s3_weights.options, cache_dir=tmp_path)
        message = str(err.value)
        assert expected in message and url in message and "\n" not in message


@pytest.mark.slow
def test_bad_credentials_are_access_denied(tmp_path, monkeypatch):
    # A moto server that checks credentials (by default moto accepts any key).
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")
    with MotoServer(key="AKIAWRONG", secret="not-the-secret") as endpoint:
        started = time.perf_counter()
        with pytest.raises(WeightsError) as err:
            fetch_weights("s3://bucket/bark", endpoint.storage_options, cache_dir=tmp_path)
    message = str(err.value)
    assert "s3://bucket/bark" in message and "access denied" in message and "AWS_ACCESS_KEY_ID" in message
    assert "not-the-secret" not in message and "\n" not in message and time.perf_counter() - started < BOUND_S


@pytest.mark.slow
def test_unreachable_endpoint_fails_within_the_bound(tmp_path):
    silent = socket.socket()  # accepts connections (the kernel does) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    dead_port = refused.getsockname()[1]
    refused.close()  # nothing listens there any more
    try:
        # Refused connections are retried by botocore with random backoff: on a loaded machine the bound may
        # end them first, so either line is right there; a silent server always runs into the bound.
        cases = ((dead_port, "cannot connect|no answer within"), (silent.getsockname()[1], "no answer within"))
        for port, expected in cases:
            options = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
            started = time.perf_counter()
            with pytest.raises(WeightsError) as err:
                fetch_weights("s3://bucket/bark", options, cache_dir=tmp_path)
            waited = time.perf_counter() - started
            assert waited < BOUND_S, f"{expected}: waited {waited:.1f} s"
            assert re.search(expected, str(err.value)), str(err.value)
            assert f"127.0.0.1:{port}" in str(err.value) and "\n" not in str(err.value)
    finally:
        silent.close()


@pytest.mark.slow
class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_a_complete_cache_serves_when_the_endpoint_is_gone(tmp_path):
    server = MotoServer()
    endpoint = server.start()
    try:
        bucket = endpoint.make_bucket()
        _stub_weights(endpoint.filesystem(), f"{bucket}/w")
        folder = fetch_weights(f"s3://{bucket}/w", endpoint.storage_options, cache_dir=tmp_path)
    finally:
        server.stop()
    seen = _Lines()  # on the module's logger itself: other suites' logging setups may swap the root's handlers
    logging.getLogger("pipeline.weights.fetch").addHandler(seen)
    try:
        assert fetch_weights(f"s3://{bucket}/w", endpoint.storage_options, cache_dir=tmp_path) == folder
    finally:
        logging.getLogger("pipeline.weights.fetch").removeHandler(seen)
    assert any("using the copy cached" in line for line in seen.lines)
    (folder / "text.pt").unlink()  # not complete any more: the error comes through
    # A refused connection, or, on a loaded machine, botocore's retries outlasting the listing's budget.
    with pytest.raises(WeightsError, match="cannot connect|no answer within"):
        fetch_weights(f"s3://{bucket}/w", endpoint.storage_options, cache_dir=tmp_path)


# -- the Hub (snapshot_download mocked: the Hub cannot be reached here) -----------------------------
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def fake_hub(tmp_path_factory, monkeypatch):
    """snapshot_download answering from a local HF-layout folder that also holds files Bark does not use."""
    import huggingface_hub
    from huggingface_hub.file_download import DryRunFileInfo

    from bark_model.random_weights import make_random_weights

    repo = make_random_weights(tmp_path_factory.mktemp("hub") / "repo", size="tiny", layout="hf")
    (repo / "README.md").write_text("# a model card")
    (repo / "text_2.pt").write_bytes(b"z" * 10_000)  # the Suno files suno/bark also carries
    calls: list[dict] = []

    def snapshot_download(repo_id, *, revision=None, local_dir=None, allow_patterns=None, dry_run=False, **kw):
        calls.append({"repo_id": repo_id, "revision": revision, "dry_run": dry_run, "allow_patterns": allow_patterns})
        if repo_id != "owner/bark-tiny":
            from huggingface_hub.errors import RepositoryNotFoundError

            raise RepositoryNotFoundError("404 Client Error", response=SimpleNamespace(headers={}, request=None))
        names = sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())
        if dry_run:
            return [DryRunFileInfo(COMMIT, (repo / n).stat().st_size, n, "", False, True) for n in names]
        assert revision == COMMIT, "the download must use the commit the dry run resolved"
        for name in names:
            if name in allow_patterns:
                (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(repo / name, Path(local_dir) / name)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return SimpleNamespace(repo=repo, calls=calls)


def test_hf_resolves_the_revision_and_caches_once(fake_hub, tmp_path):
    from bark_model import BarkEngine

    folder = fetch_weights("hf://owner/bark-tiny@v1", cache_dir=tmp_path)
    assert folder.parent == tmp_path / "weights" and folder.name.startswith("hf-owner-bark-tiny-v1-")
    dry, real = fake_hub.calls
    assert (dry["revision"], dry["dry_run"], real["revision"]) == ("v1", True, COMMIT)
    assert "README.md" not in real["allow_patterns"] and "text_2.pt" not in real["allow_patterns"]
    assert {"config.json", "model.safetensors", "speaker_embeddings_path.json"} <= set(real["allow_patterns"])
    marker = json.loads((folder / MARKER).read_text())
    assert (marker["revision"], marker["commit"], marker["complete"]) == ("v1", COMMIT, True)
    assert BarkEngine.from_dir(folder, device="cpu").model_info["layout"] == "hf"
    assert fetch_weights("hf://owner/bark-tiny@v1", cache_dir=tmp_path) == folder and len(fake_hub.calls) == 2
    default = fetch_weights("hf://owner/bark-tiny", cache_dir=tmp_path)
    assert default != folder and fake_hub.calls[2]["revision"] is None  # the Hub's default branch


def test_hf_errors_are_one_line(fake_hub, tmp_path):
    with pytest.raises(WeightsError, match=r"hf://owner/missing: repository not found.*HF_TOKEN") as err:
        fetch_weights("hf://owner/missing", cache_dir=tmp_path)
    assert "\n" not in str(err.value)


def test_hf_without_dry_runs_uses_the_download_commands_patterns(fake_hub, tmp_path, monkeypatch):
    import fnmatch

    import huggingface_hub

    from bark_model.download import HF_LAYOUT_FILES

    seen = []

    def old_snapshot_download(repo_id, *, revision=None, local_dir=None, allow_patterns=None):  # no dry_run
        seen.append((revision, allow_patterns))
        for path in fake_hub.repo.rglob("*"):
            rel = path.relative_to(fake_hub.repo).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(rel, p) for p in allow_patterns):
                (Path(local_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, Path(local_dir) / rel)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", old_snapshot_download)
    folder = fetch_weights("hf://owner/bark-tiny@v2", cache_dir=tmp_path)
    assert seen == [("v2", HF_LAYOUT_FILES)] and (folder / "model.safetensors").is_file()
    assert not (folder / "README.md").exists() and json.loads((folder / MARKER).read_text())["complete"]


# -- wiring: config and `barkpipe say` -------------------------------------------------------------
def test_model_storage_options_are_redacted(tmp_path):
    from pipeline.config import public_dict, validate_config

    cfg = validate_config({
        "input": {"path": "m.parquet"}, "output": {"path": str(tmp_path)},
        "model": {"weights": "s3://b/bark", "storage_options": {"key": "AKIA123", "secret": "s3cr3t",
                                                                 "client_kwargs": {"endpoint_url": "http://x:9000"}}},
    })  # fmt: skip
    public = public_dict(cfg)["model"]["storage_options"]
    assert public["key"] == public["secret"] == "***" and public["client_kwargs"]["endpoint_url"] == "http://x:9000"
    plain = validate_config({"input": {"path": "m"}, "output": {"path": "o"}, "model": {"weights": "w"}})
    assert plain.model.storage_options == {}


def test_check_weights_accepts_urls_and_still_checks_folders(tmp_path):
    from pipeline.config import validate_config
    from pipeline.batch.run import check_weights

    def cfg(weights):
        return validate_config({"input": {"path": "m"}, "output": {"path": "o"}, "model": {"weights": weights}})

    check_weights(cfg("s3://bucket/bark"))
    check_weights(cfg("hf://suno/bark@main"))
    with pytest.raises(WeightsError, match="hf://owner/repo"):
        check_weights(cfg("hf://bark"))
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        check_weights(cfg(str(tmp_path / "none")))


@pytest.mark.slow
def test_say_with_s3_weights_from_the_aws_environment(s3_weights, tmp_path, monkeypatch):
    import soundfile as sf

    from pipeline.cli import app

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_weights.endpoint.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_weights.endpoint.secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_weights.endpoint.endpoint_url)
    monkeypatch.setenv("BARKPIPE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "hi.wav"
    result = CliRunner().invoke(app, ["say", "Hello there.", "--weights", s3_weights.url, "--out", str(out),
                                      "--max-duration", "0.3", "--temperature", "0", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sf.read(out)[0].size > 0 and "random test weights" in result.output
    [folder] = [p for p in (tmp_path / "cache" / "weights").iterdir() if p.is_dir()]  # and its .lock file
    assert _files(folder) == SUNO_TINY
    bad = CliRunner().invoke(app, ["say", "Hi.", "--weights", f"s3://{s3_weights.bucket}/nothing-here",
                                   "--out", str(tmp_path / "x.wav")])  # fmt: skip
    lines = bad.output.strip().splitlines()
    assert bad.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: weights s3://")
    assert "Traceback" not in bad.output
