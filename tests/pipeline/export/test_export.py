"""`barkpipe export`: a run's newest finished rows as HF Parquet shards or WebDataset tars, checked by hand and,
where installed, with `datasets` and `webdataset` themselves."""

import hashlib
import io
import json
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.export.rows import Counts, Selection, iter_rows, parse_quality, parse_splits, split_of
from pipeline.export.run import export
from pipeline.export.shards import MARKER
from pipeline.export.webdataset import sample_key
from pipeline.output.schema import TRANSIENT_COLUMNS, error_schema, row_fields
from pipeline.storage import Store

SR = 24000
DATASETS_HINT = "datasets is not installed (pip install datasets): the hand-made checks below cover the format"
WDS_HINT = "webdataset is not installed (pip install webdataset): the hand-made checks below cover the format"


def metadata_schema():
    """The metadata schema as the pipeline writes it, plus two carried manifest columns (one a map)."""
    fields = [(n, t) for n, t in row_fields() if n not in TRANSIENT_COLUMNS]
    fields.insert(1, ("audio_path", pa.string()))
    return pa.schema(
        fields
        + [("config_hash", pa.string()), ("speaker_name", pa.string()), ("extra", pa.map_(pa.string(), pa.string()))]
    )


def chunk(seconds, wer=None, passed=True):
    return {
        "index": 0,
        "chars": 10,
        "text": "said",
        "seed": 7,
        "attempts": 1,
        "passed": passed,
        "failed": [] if passed else ["rms_low"],
        "duration_s": seconds,
        "dropped_text_tokens": 0,
        "paragraph_break_after": False,
        "start_s": 0.0,
        "end_s": seconds,
        "measures": {"rms_db": -20.0} | ({"wer": wer} if wer is not None else {}),
    }


def wav(seconds, freq=220.0) -> bytes:
    t = np.arange(int(round(seconds * SR))) / SR
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def write_part(root, part, rows):
    """Audio files and one metadata part for rows of (id, seconds, text, revision, flagged, wer)."""
    records = []
    for row_id, seconds, text, revision, flagged, wer in rows:
        name = hashlib.sha256(row_id.encode()).hexdigest()[:10] + ".flac"  # ids may hold "/" and " "
        name = f"r{revision}/{name}" if revision else name
        (root / "audio" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "audio" / name).write_bytes(wav(seconds))
        records.append(
            {
                "id": row_id,
                "audio_path": f"audio/{name}",
                "audio_name": name,
                "duration_s": seconds,
                "sample_rate": SR,
                "n_chunks": 1,
                "flagged": flagged,
                "voice": "v2/en_speaker_6",
                "language": "en",
                "seed": 11,
                "model": "bark-tiny",
                "model_checksum": "abc",
                "chunks": [chunk(seconds, wer, passed=not flagged)],
                "text": text,
                "revision": revision,
                "config_hash": "sha256:cfg",
                "speaker_name": f"spk-{row_id}",
                "extra": {"k": row_id},
            }
        )
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=metadata_schema()), root / "metadata" / f"part-{part}.parquet")


def write_errors(root, part, rows):
    (root / "errors").mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(
        [{"id": i, "stage": "generate", "error": "boom", "revision": r} for i, r in rows], schema=error_schema()
    )
    pq.write_table(table, root / "errors" / f"part-{part}.parquet")


# id -> (seconds, text) of what an export must hold by default.
EXPECTED = {"a-1": (0.7, "new text"), "b.2": (0.4, "bee"), "c 3/x": (0.3, "sea"), "fixed": (0.5, "fixed now")}


def fake_run(root):
    """A redone row (two revisions), a dotted and an unsafe id, a flagged row, an error row, an error
    later fixed by an ok row, and an ok row later redone into an error."""
    write_part(
        root,
        "aaa",
        [
            ("a-1", 0.2, "old text", 0, False, 0.0),
            ("b.2", 0.4, "bee", 0, False, 0.1),
            ("flag", 0.3, "flagged one", 0, True, 0.5),
            ("broke", 0.3, "was fine", 0, False, 0.0),
        ],
    )
    write_part(
        root,
        "bbb",
        [
            ("c 3/x", 0.3, "sea", 0, False, 0.3),
            ("a-1", 0.7, "new text", 1, False, 0.05),
            ("fixed", 0.5, "fixed now", 1, False, None),
        ],
    )
    write_errors(root, "ccc", [("bad", 0), ("fixed", 0), ("broke", 1)])
    (root / "summary.json").write_text(
        json.dumps(
            {
                "state": "final",
                "config_hash": "sha256:cfg",
                "content_hash": "sha256:content",
                "config": {
                    "model": {"weights": "hf://suno/bark-small", "precision": "fp16"},
                    "generation": {"seed": None},
                },
            }
        )
    )


def hf_rows(out) -> list[dict]:
    return [r for p in sorted((out / "data").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def decoded_seconds(data: bytes) -> float:
    audio, sr = sf.read(io.BytesIO(data))
    assert sr == SR
    return len(audio) / sr


def test_hf_has_each_finished_id_once_with_its_newest_text_and_audio(tmp_path):
    fake_run(tmp_path / "run")
    result = export(str(tmp_path / "run"), str(tmp_path / "out"), "hf")
    rows = hf_rows(tmp_path / "out")
    assert sorted(r["id"] for r in rows) == sorted(EXPECTED)
    for r in rows:
        seconds, text = EXPECTED[r["id"]]
        assert r["text"] == text
        assert decoded_seconds(r["audio"]["bytes"]) == pytest.approx(seconds, abs=1 / SR)
        assert r["duration_s"] == seconds and r["speaker_name"] == f"spk-{r['id']}"
        assert json.loads(r["extra"]) == {"k": r["id"]}  # a map column `datasets` cannot type: JSON text
    assert [f.name for f in (tmp_path / "out" / "data").iterdir()] == ["train-00000-of-00001.parquet"]
    assert result.counts.flagged_left == 1 and result.counts.error_rows == 2  # bad, and broke (redone into an error)
    assert result.splits == {"train": {"rows": 4, "files": 1, "bytes": result.splits["train"]["bytes"]}}


def test_hf_schema_metadata_is_what_datasets_writes(tmp_path):
    fake_run(tmp_path / "run")
    export(str(tmp_path / "run"), str(tmp_path / "out"), "hf")
    schema = pq.read_schema(tmp_path / "out" / "data" / "train-00000-of-00001.parquet")
    info = json.loads(schema.metadata[b"huggingface"])
    features = info["info"]["features"]
    assert list(features) == schema.names
    assert features["audio"] == {"sampling_rate": SR, "_type": "Audio"}
    assert schema.field("audio").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    assert features["id"] == {"dtype": "string", "_type": "Value"}
    assert features["duration_s"] == {"dtype": "float64", "_type": "Value"}
    assert features["chunks"]["_type"] == "List" and features["chunks"]["feature"]["wer"]["dtype"] == "float64"
    card = (tmp_path / "out" / "README.md").read_text()
    front = __import__("yaml").safe_load(card.split("---\n")[1])
    assert front["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert front["dataset_info"]["splits"][0]["num_examples"] == 4
    assert {"name": "audio", "dtype": {"audio": {"sampling_rate": SR}}} in front["dataset_info"]["features"]
    assert "fp16" in card and "sha256:cfg" in card and "Hugging Face Hub" in card and "derived from their id" in card


def test_datasets_reads_the_export(tmp_path):
    datasets = pytest.importorskip("datasets", reason=DATASETS_HINT)
    fake_run(tmp_path / "run")
    export(str(tmp_path / "run"), str(tmp_path / "out"), "hf", Selection(splits=parse_splits("train=0.5,test=0.5")))
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "out"))
    ds = ds.cast_column("audio", datasets.Audio(decode=False))  # datasets 5 decodes through torchcodec + FFmpeg
    assert sorted(ds) == sorted({split_of(i, parse_splits("train=0.5,test=0.5")) for i in EXPECTED})
    got = {r["id"]: r for split in ds.values() for r in split}
    assert sorted(got) == sorted(EXPECTED)
    for row_id, r in got.items():
        assert decoded_seconds(r["audio"]["bytes"]) == pytest.approx(EXPECTED[row_id][0], abs=1 / SR)
    features = ds[next(iter(ds))].features
    schema = pq.read_schema(next((tmp_path / "out" / "data").glob("*.parquet")))
    written = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    assert datasets.Features.from_dict(written)["audio"] == datasets.Audio(sampling_rate=SR)
    assert features["chunks"] == datasets.Features.from_dict(written)["chunks"]
    card = (tmp_path / "out" / "README.md").read_text()
    front = __import__("yaml").safe_load(card.split("---\n")[1])
    assert front["dataset_info"]["features"] == datasets.Features.from_dict(written)._to_yaml_list()


def tar_samples(path) -> dict[str, dict[str, bytes]]:
    """key -> {ext: bytes}, checking that a sample's files are adjacent, as webdataset needs."""
    out: dict[str, dict[str, bytes]] = {}
    last = None
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            key, _, ext = m.name.partition(".")
            assert key == last or key not in out, f"{m.name} is not next to its sample's other files"
            out.setdefault(key, {})[ext] = tar.extractfile(m).read()
            last = key
    return out


def test_webdataset_samples_have_dotless_keys_audio_and_json(tmp_path):
    fake_run(tmp_path / "run")
    export(str(tmp_path / "run"), str(tmp_path / "out"), "webdataset")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "README.md", "train-000000.tar"]
    samples = tar_samples(tmp_path / "out" / "train-000000.tar")
    assert all("." not in key and "/" not in key for key in samples)
    by_id = {json.loads(s["json"])["id"]: (key, s) for key, s in samples.items()}
    assert sorted(by_id) == sorted(EXPECTED)
    key, sample = by_id["b.2"]
    assert key == sample_key("b.2") != "b.2"
    for row_id, (_, s) in by_id.items():
        meta = json.loads(s["json"])
        assert set(s) == {"flac", "json"} and meta["text"] == EXPECTED[row_id][1]
        assert decoded_seconds(s["flac"]) == pytest.approx(EXPECTED[row_id][0], abs=1 / SR)
        assert meta["duration_s"] == EXPECTED[row_id][0] and meta["extra"] == {"k": row_id}


def test_webdataset_reads_the_export(tmp_path):
    wds = pytest.importorskip("webdataset", reason=WDS_HINT)
    fake_run(tmp_path / "run")
    export(str(tmp_path / "run"), str(tmp_path / "out"), "webdataset", shard_size="2rows")
    urls = sorted(str(p) for p in (tmp_path / "out").glob("train-*.tar"))
    assert len(urls) == 2
    got = {json.loads(s["json"])["id"]: s for s in wds.WebDataset(urls, shardshuffle=False)}
    assert sorted(got) == sorted(EXPECTED)
    assert all(decoded_seconds(s["flac"]) == pytest.approx(EXPECTED[i][0], abs=1 / SR) for i, s in got.items())


def test_flagged_rows_and_quality_limits(tmp_path):
    fake_run(tmp_path / "run")
    result = export(str(tmp_path / "run"), str(tmp_path / "all"), "hf", Selection(include_flagged=True))
    assert sorted(r["id"] for r in hf_rows(tmp_path / "all")) == sorted([*EXPECTED, "flag"])
    assert result.counts.flagged_left == 0
    # wer <= 0.2: a-1 (0.05) and b.2 (0.1) pass; c 3/x (0.3) fails; "fixed" was never measured, so it fails too.
    result = export(str(tmp_path / "run"), str(tmp_path / "good"), "hf", Selection(limits=parse_quality(["wer=0.2"])))
    assert sorted(r["id"] for r in hf_rows(tmp_path / "good")) == ["a-1", "b.2"]
    assert result.counts.quality_left == 2
    with pytest.raises(ValueError, match="speaker_similarity"):
        parse_quality(["mos=3"])


def test_splits_are_stable_and_roughly_proportional():
    splits = parse_splits("train=0.98,validation=0.01,test=0.01")
    ids = [f"row-{n}" for n in range(20_000)]
    first = [split_of(i, splits) for i in ids]
    assert first == [split_of(i, splits) for i in ids]
    share = {name: first.count(name) / len(ids) for name, _ in splits}
    assert share["train"] == pytest.approx(0.98, abs=0.005) and share["test"] == pytest.approx(0.01, abs=0.003)
    assert split_of("row-1", parse_splits("a=0.5,b=0.5")) == split_of("row-1", parse_splits("a=0.5,b=0.5"))
    for bad in ("train=0.5,test=0.4", "train", "train=x", "9x=1.0", "a=0.5,a=0.5"):
        with pytest.raises(ValueError, match="--split"):
            parse_splits(bad)


def test_rerun_rewrites_the_same_bytes_and_removes_only_its_stale_shards(tmp_path):
    fake_run(tmp_path / "run")

    def files(out):
        return {
            p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in out.rglob("*")
            if p.is_file()
        }

    for fmt, stale in (("hf", 4), ("webdataset", 2)):  # hf names carry the shard count: all four change
        out = tmp_path / fmt
        export(str(tmp_path / "run"), str(out), fmt, shard_size="1rows")
        first = files(out)
        assert len([f for f in first if f.endswith((".parquet", ".tar"))]) == 4
        export(str(tmp_path / "run"), str(out), fmt, shard_size="1rows")
        assert files(out) == first
        (out / "mine.txt").write_text("not the export's")
        result = export(str(tmp_path / "run"), str(out), fmt, shard_size="2rows")
        assert len(result.removed) == stale and "mine.txt" in files(out)
        assert len([f for f in files(out) if f.endswith((".parquet", ".tar"))]) == 2
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not an earlier export"):
        export(str(tmp_path / "run"), str(tmp_path / "foreign"), "hf")
    with pytest.raises(ValueError, match="output itself"):
        export(str(tmp_path / "run"), str(tmp_path / "run"), "hf")


def test_two_thousand_rows_stream_in_batches(tmp_path):
    root = tmp_path / "run"
    (root / "audio").mkdir(parents=True)
    tiny = wav(0.01)
    records = []
    for n in range(2000):
        (root / "audio" / f"r{n}.flac").write_bytes(tiny)
        records.append(
            {
                "id": f"r{n}",
                "audio_path": f"audio/r{n}.flac",
                "duration_s": 0.01,
                "sample_rate": SR,
                "flagged": False,
                "text": f"row {n}",
                "revision": 0,
                "chunks": [chunk(0.01)],
            }
        )
    (root / "metadata").mkdir()
    for p in range(4):
        pq.write_table(
            pa.Table.from_pylist(records[p * 500 : (p + 1) * 500], schema=metadata_schema()),
            root / "metadata" / f"part-{p}.parquet",
        )
    counts = Counts()
    rows = iter_rows(Store.open(str(root)), Selection(), batch_rows=100, counts=counts)
    next(rows)
    assert counts.batches == 1  # lazy: the first row comes out after one batch of metadata, not all 2,000
    result = export(str(root), str(tmp_path / "out"), "hf", batch_rows=100, shard_size="700rows")
    assert result.counts.largest_batch == 100 and result.counts.batches == 20
    assert [p.name for p in sorted((tmp_path / "out" / "data").iterdir())] == [
        f"train-0000{i}-of-00003.parquet" for i in range(3)
    ]
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in (tmp_path / "out" / "data").iterdir()) == 2000
    assert max(pq.ParquetFile(p).metadata.row_group(0).num_rows for p in (tmp_path / "out" / "data").iterdir()) <= 100


def test_missing_audio_is_that_rows_problem(tmp_path):
    fake_run(tmp_path / "run")
    (tmp_path / "run" / "audio" / (hashlib.sha256(b"b.2").hexdigest()[:10] + ".flac")).unlink()
    result = export(str(tmp_path / "run"), str(tmp_path / "out"), "webdataset")
    assert result.counts.missing_audio == ["b.2"] and result.splits["train"]["rows"] == 3


def test_cli_exports_and_user_mistakes_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    fake_run(tmp_path / "run")
    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "export",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "out"),
            "--format",
            "hf",
            "--split",
            "train=0.5,test=0.5",
        ],
    )
    assert done.exit_code == 0, done.output
    assert "wrote " in done.output.splitlines()[-1] and "1 flagged rows (--include-flagged brings them)" in done.output
    for args, needle in [
        (["--format", "csv"], "--format 'csv'"),
        (["--format", "hf", "--split", "train=0.9"], "add up to 0.9"),
        (["--format", "hf", "--min-quality", "wer"], "--min-quality 'wer'"),
        (["--format", "hf", "--shard-size", "big"], "--shard-size 'big'"),
        (["--format", "hf", "--only-ok", "--include-flagged"], "contradict"),
    ]:
        bad = runner.invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "x"), *args])
        assert bad.exit_code == 2 and bad.output.count("\n") == 1 and needle in bad.output, bad.output
    empty = runner.invoke(app, ["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "y"), "--format", "hf"])
    assert empty.exit_code == 2 and "no finished rows" in empty.output


def test_s3_round_trip(tmp_path, moto_s3):
    fake_run(tmp_path / "run")
    bucket = moto_s3.make_bucket()
    fs = moto_s3.filesystem()
    fs.put(str(tmp_path / "run"), f"{bucket}/runs/v1", recursive=True)
    for fmt in ("hf", "webdataset"):
        out = f"s3://{bucket}/exports/{fmt}"
        result = export(f"s3://{bucket}/runs/v1", out, fmt, storage_options=moto_s3.storage_options, shard_size="3rows")
        again = export(f"s3://{bucket}/runs/v1", out, fmt, storage_options=moto_s3.storage_options, shard_size="3rows")
        assert again.files == result.files and not again.removed
        listed = sorted(p.split(f"exports/{fmt}/", 1)[1] for p in fs.find(f"{bucket}/exports/{fmt}"))
        assert listed == sorted([*result.files, MARKER])  # nothing staged is left behind
        fs.get(f"{bucket}/exports/{fmt}", str(tmp_path / fmt), recursive=True)
    assert sorted(r["id"] for r in hf_rows(tmp_path / "hf")) == sorted(EXPECTED)
    ids = [
        json.loads(s["json"])["id"]
        for t in sorted((tmp_path / "webdataset").glob("*.tar"))
        for s in tar_samples(t).values()
    ]
    assert sorted(ids) == sorted(EXPECTED)


def test_audio_is_read_ahead_in_row_order_with_a_bounded_number_in_flight(tmp_path):
    import threading
    import time

    from pipeline.export.run import with_audio

    store = Store.open(str(tmp_path))
    for i in range(40):
        if i != 7:  # row 7's file is missing
            store.write(f"audio/{i}.wav", str(i).encode())
    active, most = 0, 0
    lock = threading.Lock()
    read = store.read

    def slow_read(rel):
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.01)  # slow storage: reads overlap only if they are issued ahead
        try:
            return read(rel)
        finally:
            with lock:
                active -= 1

    store.read = slow_read
    rows = [("train", {"id": str(i), "audio_path": f"audio/{i}.wav"}) for i in range(40)]
    got = list(with_audio(store, iter(rows), ahead=4))
    assert [r["id"] for _, r, _ in got] == [str(i) for i in range(40)]
    assert [a for _, r, a in got if r["id"] != "7"] == [str(i).encode() for i in range(40) if i != 7]
    assert [a for _, r, a in got if r["id"] == "7"] == [None]
    assert 1 < most <= 4
    most = 0
    assert list(with_audio(store, iter(rows), ahead=1)) == got  # a local output: one read at a time
    assert most == 1
