"""The deep `validate` (pipeline/checks.py): every mistake is found before generation, as one line."""

from __future__ import annotations

import copy
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
import yaml
from typer.testing import CliRunner

from bark_model.names import CODEC_FILE
from pipeline import checks
from pipeline.checks import CheckError, check_file_header, check_storage, check_weights
from pipeline.cli.run import register

MAX_ERROR_LINES = 3


@pytest.fixture
def app():
    app = typer.Typer()

    @app.callback()
    def main():
        pass

    register(app)
    return app


@pytest.fixture(scope="module")
def hf_weights(tmp_path_factory):
    from bark_model.random_weights import make_random_weights

    return make_random_weights(tmp_path_factory.mktemp("hf") / "tiny", size="tiny", layout="hf")


@pytest.fixture
def weights(tmp_path, tiny_weights) -> Path:
    """A private copy of the tiny Suno weights that a test may damage."""
    return Path(shutil.copytree(tiny_weights, tmp_path / "weights"))


def write_config(tmp_path: Path, weights: Path, **sections) -> Path:
    manifest = tmp_path / "m.parquet"
    if not manifest.exists():
        pq.write_table(pa.table({"id": ["a", "b"], "text": ["Hello.", "There."]}), manifest)
    data = {"input": {"path": str(manifest)}, "output": {"path": str(tmp_path / "out")},
            "model": {"weights": str(weights), "device": "cpu"}}  # fmt: skip
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def validate(app, config: Path, *overrides: str):
    args = ["validate", str(config)] + [a for o in overrides for a in ("--set", o)]
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


def assert_one_line(code: int, out: str, *fragments: str) -> None:
    assert code == 2, out
    assert "Traceback" not in out and len(out.strip().splitlines()) <= MAX_ERROR_LINES, out
    for fragment in fragments:
        assert fragment in out, out


# -- weights ------------------------------------------------------------------------------------


def test_weights_voices_and_a_cpu_device_are_checked_without_importing_torch(tiny_weights):
    """`validate` pays torch's import (~1.5 s) only to check a GPU device."""
    code = (
        "import sys; from pipeline.checks import check_device, check_voice, check_weights; "
        f"check_weights({str(tiny_weights)!r}); check_voice('v2/en_speaker_0', {str(tiny_weights)!r}); "
        "check_device('cpu'); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_good_weights_pass_in_both_layouts(tiny_weights, hf_weights):
    suno, hf = check_weights(tiny_weights), check_weights(hf_weights)
    assert (suno.layout, hf.layout) == ("suno", "hf") and suno.random and hf.random
    assert [p.name for p in hf.files] == ["model.safetensors"]


def test_a_missing_weight_file_is_named(app, tmp_path, weights):
    (weights / "coarse.pt").unlink()
    code, out = validate(app, write_config(tmp_path, weights))
    assert_one_line(code, out, "error: model.weights", "missing coarse.pt", "barkpipe weights make-random --size tiny")  # random weights: made again, not downloaded
    assert "found" not in out  # what is missing, not what is there


def test_a_missing_codec_and_vocab_are_named(tmp_path, weights):
    (weights / CODEC_FILE).unlink()
    (weights / "vocab.txt").unlink()
    with pytest.raises(CheckError, match=f"missing {CODEC_FILE}, vocab.txt"):
        check_weights(weights)


@pytest.mark.parametrize("name", ["text.pt", "fine.pt", CODEC_FILE])
def test_a_truncated_torch_file_is_named_without_loading_it(app, tmp_path, weights, name):
    path = weights / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    code, out = validate(app, write_config(tmp_path, weights))
    assert_one_line(code, out, f"{path} is not a complete torch archive", "download it again")


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path, weights):
    (weights / "text.pt").write_text("<html>404 Not Found</html>")
    with pytest.raises(CheckError, match="text.pt is not a torch checkpoint"):
        check_weights(weights)
    (weights / "text.pt").write_bytes(b"")
    with pytest.raises(CheckError, match="text.pt is empty"):
        check_weights(weights)


def test_a_truncated_safetensors_file_is_named(tmp_path, hf_weights):
    copy = Path(shutil.copytree(hf_weights, tmp_path / "hf"))
    model = copy / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-1000])
    with pytest.raises(CheckError, match=r"model.safetensors is truncated \("):
        check_file_header(model)
    model.write_bytes(b"\xff" * 64)
    with pytest.raises(CheckError, match="no valid safetensors header"):
        check_file_header(model)


def test_hf_layout_without_a_tokenizer_is_named(tmp_path, hf_weights):
    copy = Path(shutil.copytree(hf_weights, tmp_path / "hf"))
    (copy / "vocab.txt").unlink(missing_ok=True)
    (copy / "tokenizer.json").unlink(missing_ok=True)
    with pytest.raises(CheckError, match=r"missing tokenizer.json \(or vocab.txt\)"):
        check_weights(copy)


def test_a_relative_weights_path_names_the_folder_it_was_read_from(app, tmp_path, weights, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out = validate(app, write_config(tmp_path, weights), "model.weights=no/such/weights")
    assert_one_line(
        code,
        out,
        "model.weights 'no/such/weights' is not a directory",
        f"relative paths are read from the current directory, {tmp_path}",
    )


# -- device, voices, output ---------------------------------------------------------------------


def test_cuda_without_a_gpu_names_the_config_key(app, tmp_path, weights, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code, out = validate(app, write_config(tmp_path, weights), "model.device=cuda")
    assert_one_line(code, out, "error: model.device is 'cuda' but torch sees no CUDA device", "set model.device: cpu")
    assert "--device" not in out  # a `say` flag means nothing in a config


def test_cuda_index_past_the_devices(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert checks.check_device("cuda:1") == "cuda:1"
    with pytest.raises(CheckError, match=r"'cuda:2' but this machine has 2 CUDA device\(s\)"):
        checks.check_device("cuda:2")


def test_a_cluster_checks_its_own_devices(tmp_path, weights, monkeypatch):
    from pipeline.config import load_config

    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    report = checks.check_run(load_config(write_config(tmp_path, weights, model={"device": "cuda"},
                                                       compute={"gpus_per_actor": 1})))  # fmt: skip
    assert ("model.device", "cuda (checked by the actors on the cluster)") in report.passed


def test_cuda_without_gpus_per_actor_warns(tmp_path, weights, monkeypatch):
    from pipeline.config import load_config

    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    report = checks.check_run(load_config(write_config(tmp_path, weights, model={"device": "cuda"})))
    assert any("compute.gpus_per_actor is 0" in w for w in report.warnings)


def test_default_voice_must_exist(app, tmp_path, weights):
    code, out = validate(app, write_config(tmp_path, weights), "generation.voice=v2/de_speaker_3")
    assert_one_line(code, out, "error: generation.voice: unknown voice 'v2/de_speaker_3'", "v2/en_speaker_0")
    assert validate(app, write_config(tmp_path, weights), "generation.voice=v2/en_speaker_1")[0] == 0


def test_a_broken_voice_file_is_named(app, tmp_path, weights):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    code, out = validate(app, write_config(tmp_path, weights), f"generation.voice={bad}")
    assert_one_line(code, out, "generation.voice: voice file 'bad.npz' is not a readable .npz")
    partial = tmp_path / "partial.npz"
    np.savez(partial, semantic_prompt=np.zeros(3, np.int64))
    code, out = validate(app, write_config(tmp_path, weights), f"generation.voice={partial}")
    assert_one_line(code, out, "lacks coarse_prompt, fine_prompt")


def test_bad_row_voices_are_errors_naming_the_rows(app, tmp_path, weights):
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["A.", "B.", "C."],
                             "voice": ["v2/en_speaker_0", "v2/xx_nobody", None]}), tmp_path / "m.parquet")  # fmt: skip
    code, out = validate(app, write_config(tmp_path, weights))
    assert_one_line(code, out, "error: manifest: 1 row(s) name the unusable voice 'v2/xx_nobody' (id b): "
                               "manifest column 'voice': unknown voice 'v2/xx_nobody'")  # fmt: skip


def test_row_problems_are_grouped_one_line_per_kind_with_ids_capped(app, tmp_path, weights):
    from pipeline.manifest.checks import MAX_IDS_SHOWN

    n = MAX_IDS_SHOWN + 2
    ids = [f"e{i}" for i in range(n)] + ["s1", "s2", "s3", "t1", "t2", "dup", "dup", "ok"]
    texts = [" "] * n + ["Hi."] * 3 + ["Hi [voice: BOB] there.", "[voice: narrator] and [Voice: v2/en_speaker_1]"]
    texts += ["One.", "Two.", "Fine [voice: default] here."]
    seeds = [None] * n + [-1, "7", 2**64] + [None] * 5
    pq.write_table(pa.table({"id": ids, "text": texts, "seed": pa.array([None if isinstance(s, str) or (
        s is not None and s > 2**63) else s for s in seeds], pa.int64())}), tmp_path / "m.parquet")  # fmt: skip
    config = write_config(tmp_path, weights, generation={"speakers": {"Narrator": "v2/en_speaker_0"}})
    code, out = validate(app, config)
    assert code == 2, out
    lines = out.strip().splitlines()
    assert all(line.startswith("error: manifest: ") for line in lines), out
    assert f"error: manifest: {n} row(s) have empty text (ids e0, e1, e2, e3, e4 and 2 more): text is empty" in out
    assert "error: manifest: 1 row(s) have an invalid seed (id s1): seed -1 is invalid" in out
    assert "1 row(s) have a [voice: BOB] tag that names no configured voice (id t1): [voice: BOB]:" in out
    assert "2 row(s) share their id with another row (id dup)" in out
    assert len(lines) == 4 and "t2" not in out and "ok" not in out.replace("'ok'", "")


def test_three_independent_mistakes_are_three_lines_in_one_run(app, tmp_path, weights, no_aws_credentials):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
    config = write_config(
        tmp_path,
        weights,
        model={"device": "cuda:7"},  # three mistakes, none hiding another
        input={"path": "s3://bk/m.parquet"},
        output={"path": "s3://bk/out", "storage_options": dead},
    )
    start = time.perf_counter()
    code, out = validate(app, config)
    assert time.perf_counter() - start < checks.STORAGE_TIMEOUT_S + 5  # the probes ran side by side
    lines = out.strip().splitlines()
    assert code == 2 and len(lines) == 3 and "Traceback" not in out, out
    assert lines[0].startswith("error: model.device is 'cuda:7'")
    assert lines[1].startswith("error: input.path 's3://bk/m.parquet': no S3 credentials found")
    assert lines[2].startswith(
        f"error: output.path 's3://bk/out': cannot reach the storage endpoint http://127.0.0.1:{port}"
    )


def test_config_mistakes_are_all_named_before_anything_else(app, tmp_path, weights):
    code, out = validate(
        app, write_config(tmp_path, weights), "compute.actors=x", "output.fromat=wav", "generation.seed=-3"
    )
    assert code == 2 and out.splitlines() == [  # in the order of the config's sections
        "error: unknown key 'output.fromat'; did you mean 'format'? (allowed here: path, format, storage_options, "
        "overwrite, retry_s, lease_ttl_s, lease_wait_s)",
        "error: generation.seed: got -3; expected an integer >= 0 or null",
        "error: compute.actors: got 'x'; expected an integer or a list of 2 integers",
    ], out


def test_an_empty_output_path_from_an_unset_variable_names_the_key(app, tmp_path, weights, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out = validate(app, write_config(tmp_path, weights), "output.path=")
    assert_one_line(code, out, "error: output.path: is empty (an unset shell variable in --set?)")
    assert list(tmp_path.glob(".barkpipe-probe*")) == []


def test_a_missing_extra_is_a_problem_naming_the_install_command(app, tmp_path, weights, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "faster_whisper" else real(name, *a)
    )
    config = write_config(tmp_path, weights, quality={"speech": {"backend": "faster-whisper", "model": "small.en",
                                                                  "language": "en"}})  # fmt: skip
    code, out = validate(app, config)
    assert_one_line(
        code, out, "error: quality.speech (faster-whisper) needs the 'whisper' extra", "pip install 'barkpipe[whisper]'"
    )


def test_an_empty_manifest_is_an_error_for_validate(app, tmp_path, weights):
    pq.write_table(
        pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}), tmp_path / "m.parquet"
    )
    code, out = validate(app, write_config(tmp_path, weights))
    assert_one_line(code, out, "error: the manifest (input.path", "holds no rows; there is nothing to synthesize")


def test_output_under_a_file_is_refused(app, tmp_path, weights):
    (tmp_path / "afile").write_text("x")
    code, out = validate(app, write_config(tmp_path, weights), f"output.path={tmp_path / 'afile' / 'out'}")
    assert_one_line(code, out, "error: output.path", "is a file, not a folder")


def test_output_that_cannot_be_written_is_refused(app, tmp_path, weights):
    code, out = validate(app, write_config(tmp_path, weights), "output.path=/proc/barkpipe-out")
    assert_one_line(code, out, "error: output.path '/proc/barkpipe-out': cannot write in /proc")


# -- storage ------------------------------------------------------------------------------------


@pytest.fixture
def no_aws_credentials(monkeypatch, tmp_path):
    """No credentials anywhere botocore looks (environment, files, instance metadata)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _s3_config(tmp_path, weights, endpoint: str, bucket: str, with_keys: bool, key="testing", secret="testing") -> Path:
    options = {"client_kwargs": {"endpoint_url": endpoint}}
    if with_keys:
        options |= {"key": key, "secret": secret}
    inp = {"path": f"s3://{bucket}/manifest.parquet", "storage_options": options}
    return write_config(tmp_path, weights, input=inp,
                        output={"path": f"s3://{bucket}/out", "storage_options": copy.deepcopy(options)})  # fmt: skip


def test_no_aws_credentials_is_one_line(app, tmp_path, weights, moto_s3, no_aws_credentials):
    config = _s3_config(tmp_path, weights, moto_s3.endpoint_url, moto_s3.make_bucket(), with_keys=False)
    code, out = validate(app, config)
    assert_one_line(code, out, "error: input.path 's3://", "no S3 credentials found", "AWS_ACCESS_KEY_ID")


def test_a_missing_bucket_is_named(app, tmp_path, weights, moto_s3, no_aws_credentials):
    config = _s3_config(tmp_path, weights, moto_s3.endpoint_url, "no-such-bucket-12", with_keys=True)
    code, out = validate(app, config)
    assert_one_line(code, out, "bucket 'no-such-bucket-12' does not exist at http://127.0.0.1")


def test_s3_output_is_probed_for_writing_and_left_clean(app, tmp_path, weights, moto_s3):
    bucket = moto_s3.make_bucket()
    fs = moto_s3.filesystem()
    with fs.open(f"{bucket}/manifest.parquet", "wb") as f:
        pq.write_table(pa.table({"id": ["a"], "text": ["Hi."]}), f)
    code, out = validate(app, _s3_config(tmp_path, weights, moto_s3.endpoint_url, bucket, with_keys=True))
    assert code == 0, out
    assert "input.path        reachable" in out and "output.path       reachable and writable" in out
    assert fs.ls(bucket) == [f"{bucket}/manifest.parquet"]  # the probe object is gone


def test_a_refused_endpoint_fails_fast(app, tmp_path, weights, no_aws_credentials):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    code, out = validate(app, _s3_config(tmp_path, weights, f"http://127.0.0.1:{port}", "bk", with_keys=True))
    assert time.perf_counter() - start < checks.STORAGE_TIMEOUT_S + 5
    assert_one_line(code, out, f"cannot reach the storage endpoint http://127.0.0.1:{port}", "endpoint_url")


def test_an_endpoint_that_never_answers_is_bounded(no_aws_credentials):
    with socket.socket() as server:  # accepts connections (the kernel backlog) but never replies
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        options = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": endpoint}}
        start = time.perf_counter()
        with pytest.raises(CheckError, match=f"the storage endpoint {endpoint} did not answer within 1.5 s"):
            check_storage("s3://bk/x", options, "input.path", write=False, timeout_s=1.5)
        assert time.perf_counter() - start < 4


# Remote model.weights: validate probes a URL instead of reading files.
def test_remote_hf_weights_validate_without_network(app, tmp_path):
    code, out = validate(app, write_config(tmp_path, "hf://suno/bark-small"))
    assert code == 0, out
    assert "model.weights" in out and "hf://suno/bark-small (Hugging Face Hub" in out, out


def test_remote_malformed_hf_id_is_one_line(app, tmp_path):
    code, out = validate(app, write_config(tmp_path, "hf://not a repo"))
    assert_one_line(code, out, "model.weights", "hf://owner/repo")


def test_remote_s3_weights_are_probed(app, tmp_path, moto_s3):
    bucket = moto_s3.make_bucket()
    opts = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": moto_s3.endpoint_url}}
    cfg = write_config(tmp_path, f"s3://{bucket}/bark", model={"storage_options": opts})
    code, out = validate(app, cfg)
    assert code == 0, out
    assert f"s3://{bucket}/bark reachable; each node downloads it" in out, out


def test_remote_s3_weights_refused_endpoint_is_one_line(app, tmp_path, no_aws_credentials):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
    code, out = validate(app, write_config(tmp_path, "s3://bk/bark", model={"storage_options": opts}))
    assert_one_line(code, out, "model.weights", f"127.0.0.1:{port}")


def test_relative_paths_under_ray_job_submit_are_named_before_any_probe(app, tmp_path, weights, monkeypatch):
    from pipeline.jobenv import JOB_CONFIG_ENV

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(JOB_CONFIG_ENV, "{}")
    code, out = validate(app, write_config(tmp_path, weights), "output.path=out")
    assert_one_line(code, out, "error: output.path 'out' is relative, and under `ray job submit`")
    assert not (tmp_path / "out").exists()


def test_a_bad_lexicon_is_one_line_per_bad_line_and_its_words_shape_the_hash(app, tmp_path, weights):
    from pipeline.config import content_hash, load_config

    lexicon = tmp_path / "names.tsv"
    lexicon.write_text("# names\nHermione\tHer-my-oh-nee\nno tab here\n\tempty word\n")
    config = write_config(tmp_path, weights, generation={"lexicon": str(lexicon)})
    code, out = validate(app, config)
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 2, out
    assert f"{lexicon}:3" in lines[0] and f"{lexicon}:4" in lines[1], out

    lexicon.write_text("Hermione\tHer-my-oh-nee\n")
    code, out = validate(app, config)
    assert code == 0 and "generation.lexicon" in out, out
    before = content_hash(load_config(config, []))
    lexicon.write_text("Hermione\tHur-my-own\n")  # same path, other words: the rows must be redone
    assert content_hash(load_config(config, [])) != before
