"""Manifest reading and row validation: files/folders/globs, schema errors, bad ids, safe file names."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.manifest.columns import id_problems, name_collisions, safe_name
from pipeline.manifest.read import inspect_manifest, read_ids, unify_schemas
from pipeline.manifest.rows import parse_row
from pipeline.output.layout import audio_name


def write(path, **columns):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def test_a_file_a_folder_and_a_glob_give_the_same_rows(tmp_path):
    write(tmp_path / "m" / "a.parquet", id=["1", "2"], text=["x", "y"], speaker=["p", "q"])
    write(tmp_path / "m" / "b.parquet", id=["3"], text=["z"], speaker=["r"])
    (tmp_path / "m" / "_SUCCESS").write_text("")
    for url in (str(tmp_path / "m"), str(tmp_path / "m" / "*.parquet"), f"file://{tmp_path}/m"):
        info = inspect_manifest(url)
        assert info.num_rows == 3 and len(info.files) == 2
        assert read_ids(info) == ["1", "2", "3"]
        assert info.carried == ["speaker"] and info.optional == []
    assert inspect_manifest(str(tmp_path / "m" / "b.parquet")).num_rows == 1


def test_missing_path_and_empty_folder_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"input.path '.*nope' does not exist"):
        inspect_manifest(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no .parquet files"):
        inspect_manifest(str(tmp_path / "empty"))


def test_schema_errors_name_the_column(tmp_path):
    with pytest.raises(ValueError, match=r"no column 'text' \(input.text_column\); columns are: id, body"):
        inspect_manifest(str(write(tmp_path / "a.parquet", id=["1"], body=["x"])))
    with pytest.raises(ValueError, match="column 'id' must be string or integer, got bool"):
        inspect_manifest(str(write(tmp_path / "b.parquet", id=[True], text=["x"])))
    with pytest.raises(ValueError, match="column 'seed' must be number, got string"):
        inspect_manifest(str(write(tmp_path / "c.parquet", id=["1"], text=["x"], seed=["7"])))
    info = inspect_manifest(
        str(write(tmp_path / "d.parquet", uid=["1"], body=["x"], text_temp=[1])), id_column="uid", text_column="body"
    )
    assert info.optional == ["text_temp"]  # ints are fine where numbers are expected
    with pytest.raises(ValueError, match="has both 'body' and 'text'"):
        inspect_manifest(str(write(tmp_path / "e.parquet", id=["1"], body=["x"], text=["y"])), text_column="body")


def test_integer_ids_are_read_as_their_decimal_text_in_every_part(tmp_path):
    write(tmp_path / "m" / "a.parquet", id=pa.array([1, 20], pa.int64()), text=["x", "y"])
    write(tmp_path / "m" / "b.parquet", id=pa.array([-3], pa.int32()), text=["z"])
    info = inspect_manifest(str(tmp_path / "m"))
    assert str(info.schema.field("id").type) == "string"
    assert read_ids(info) == ["1", "20", "-3"]
    assert id_problems(read_ids(info)) == (set(), [])


def test_float_ids_are_refused_naming_the_fix(tmp_path):
    with pytest.raises(ValueError) as err:
        inspect_manifest(str(write(tmp_path / "f.parquet", id=[1.0, 2.0], text=["x", "y"])))
    message = str(err.value)
    assert "floating-point ids (double)" in message and "\n" not in message
    assert """df['id'] = df['id'].astype('int64').astype(str)""" in message


def test_not_parquet_fails_clearly(tmp_path):
    (tmp_path / "m.parquet").write_text("id,text\n1,hello\n")
    with pytest.raises(ValueError, match="cannot read .* as Parquet"):
        inspect_manifest(str(tmp_path / "m.parquet"))


def test_bad_and_duplicate_ids_become_one_error_per_input_row():
    excluded, errors = id_problems(["a", "b", "a", None, "", "c\n", "x" * 600, "a"])
    assert excluded == {"a", "", "c\n", "x" * 600}
    assert len(errors) == 3 + 1 + 1 + 1 + 1  # every copy of "a", then null, empty, control char, too long
    assert all(e["stage"] == "manifest" for e in errors)
    assert "appears 3 times" in errors[0]["error"] and "unique" in errors[0]["error"]
    assert id_problems(["a", "b"]) == (set(), [])


@pytest.mark.parametrize(
    "row_id", ["../../etc/passwd", "a/b", "/abs", "..", ".hidden", "sp ace", "ü", "a" * 300, "C:\\x", "con"]
)
def test_safe_name_never_escapes(row_id):
    name = safe_name(row_id)
    assert "/" not in name and "\\" not in name and ".." not in name and not name.startswith(".")
    assert 0 < len(name) <= 128


def test_safe_name_keeps_plain_ids_and_keeps_distinct_ids_distinct():
    assert safe_name("chapter-01_v2.take") == "chapter-01_v2.take"
    ids = ["a/b", "a_b", "a b", "a:b", "a\\b"]
    assert len({safe_name(i) for i in ids}) == len(ids)


def row_problem(row: dict) -> str | None:
    return parse_row({"id": "row", **row})[1]


def test_row_problem_says_what_to_fix():
    assert row_problem({"text": "hi"}) is None
    assert "text is missing" in row_problem({"text": None})
    assert "text is empty" in row_problem({"text": " \n"})
    assert "seed -1" in row_problem({"text": "hi", "seed": -1})
    assert row_problem({"text": "hi", "seed": float("nan")}) is None  # pandas' missing number
    assert row_problem({"text": "hi", "seed": 7.0}) is None
    assert "seed 7.5" in row_problem({"text": "hi", "seed": 7.5})
    assert "text_temp" in row_problem({"text": "hi", "text_temp": -0.5})
    assert "max_duration" in row_problem({"text": "hi", "max_duration": 0})


def test_an_id_spelled_like_another_ids_slug_gets_its_own_file():
    # The case: "a/b" slugs to "a_b-c14cddc033f6"; an id spelled exactly so must not share it.
    assert safe_name("a/b") == "a_b-c14cddc033f6"
    assert safe_name("a_b-c14cddc033f6") != "a_b-c14cddc033f6"
    assert name_collisions(["a/b", "a_b-c14cddc033f6"]) == {}
    # Plain ids that merely end in a dash and hex of another length stay as they are.
    assert safe_name("take-0a1b") == "take-0a1b" and safe_name("run-2026") == "run-2026"


@pytest.mark.parametrize(
    "ids",
    [
        ["a/b", "a_b", "a b", "a:b", "a\\b", "a_b-c14cddc033f6", "a_b-c14cddc033f6-0", "A/B", "ä", "a", "a.", "-a"],
        [f"x-{i:012x}" for i in range(200)] + [f"x/{i}" for i in range(200)],
    ],
)
def test_distinct_ids_never_share_a_name(ids):
    assert len({safe_name(i) for i in ids}) == len(ids)
    assert name_collisions(ids) == {}


def test_name_collisions_report_every_id_that_shares_a_name(monkeypatch):
    import pipeline.manifest.columns as manifest

    # A 48-bit digest prefix clash cannot be found by hand: force one to see what the plan does with it.
    monkeypatch.setattr(manifest, "safe_name", lambda i: "same" if i in ("p/q", "p:q") else i)
    assert name_collisions(["p/q", "p:q", "ok"]) == {"same": ["p/q", "p:q"]}
    excluded, errors = id_problems(["p/q", "p:q", "ok"])
    assert excluded == {"p/q", "p:q"} and len(errors) == 2
    assert "'p/q' and 'p:q' would write the same audio file 'same'" in errors[0]["error"]
    assert "rename one" in errors[1]["error"]


def test_every_part_is_checked_and_compatible_types_are_unified(tmp_path):
    m = tmp_path / "m"
    m.mkdir()
    pq.write_table(
        pa.table(
            {
                "id": pa.array(["1"], pa.string()),
                "text": ["x"],
                "seed": pa.array([1], pa.int32()),
                "n": pa.array([1], pa.int32()),
                "extra": pa.array([None], pa.null()),
            }
        ),
        m / "a.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "id": pa.array(["2"], pa.large_string()),
                "text": ["y"],
                "seed": pa.array([2], pa.int64()),
                "n": pa.array([2.5], pa.float64()),
                "extra": pa.array(["e"]),
            }
        ),
        m / "b.parquet",
    )
    info = inspect_manifest(str(m))
    assert info.num_rows == 2
    assert info.schema.field("id").type == pa.large_string() and info.schema.field("seed").type == pa.int64()
    assert info.schema.field("n").type == pa.float64() and info.schema.field("extra").type == pa.string()
    assert read_ids(info) == ["1", "2"]
    import pyarrow.dataset as pads

    # The unified schema reads every part (what ray.data.read_parquet(..., schema=info.schema) relies on).
    rows = pads.dataset(info.files, format="parquet", schema=info.schema).to_table().to_pylist()
    assert [r["n"] for r in rows] == [1.0, 2.5]


def test_parts_that_disagree_are_one_line_naming_both_files(tmp_path):
    m = tmp_path / "m"
    write(m / "a.parquet", id=["1"], text=["x"], chapter=pa.array([1], pa.int32()))
    write(m / "b.parquet", id=["2"], text=["y"], chapter=["two"])
    with pytest.raises(ValueError) as err:
        inspect_manifest(str(m))
    message = str(err.value)
    assert "\n" not in message and "'chapter'" in message
    assert "a.parquet" in message and "b.parquet" in message and "int32" in message and "string" in message
    write(m / "b.parquet", id=["2"], body=["y"], chapter=pa.array([2], pa.int32()))
    with pytest.raises(ValueError, match=r"column 'text' is in .*a.parquet' but missing from .*b.parquet'"):
        inspect_manifest(str(m))


def test_unify_schemas_rules():
    s = lambda **types: pa.schema(list(types.items()))  # noqa: E731
    got = unify_schemas(
        [
            ("a", s(id=pa.string(), text=pa.dictionary(pa.int8(), pa.string()), u=pa.uint8())),
            ("b", s(id=pa.string(), text=pa.string(), u=pa.uint32())),
        ]
    )
    assert got == s(id=pa.string(), text=pa.string(), u=pa.uint64())
    assert (
        unify_schemas(
            [
                ("a", s(id=pa.string(), text=pa.string(), v=pa.int8())),
                ("b", s(id=pa.string(), text=pa.string(), v=pa.uint64())),
            ]
        )
        .field("v")
        .type
        == pa.int64()
    )
    with pytest.raises(ValueError, match="'v' is bool in 'a' but double in 'b'"):
        unify_schemas(
            [
                ("a", s(id=pa.string(), text=pa.string(), v=pa.bool_())),
                ("b", s(id=pa.string(), text=pa.string(), v=pa.float64())),
            ]
        )


def test_invalid_utf8_ids_become_error_rows_not_a_failed_plan(tmp_path):
    ids = pa.array([b"ok", b"bad\xff"], pa.binary()).view(pa.string())
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"id": ids, "text": ["x", "y"]}), path)
    info = inspect_manifest(str(path))
    got = read_ids(info)
    assert got[0] == "ok" and isinstance(got[1], bytes)
    excluded, errors = id_problems(got)
    assert excluded == {"bad\\xff"} and errors[0]["id"] == "bad\\xff" and "not valid UTF-8" in errors[0]["error"]


def test_binary_text_columns_are_accepted_and_checked_per_row(tmp_path):
    path = write(tmp_path / "m.parquet", id=["1"], text=pa.array([b"hi"], pa.binary()))
    assert inspect_manifest(str(path)).num_rows == 1


def test_an_http_manifest_password_never_reaches_the_file_list(tmp_path):
    import base64
    import functools
    import http.server
    import threading

    write(tmp_path / "m.parquet", id=["1", "2"], text=["x", "y"])
    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.headers.get("Authorization") != expected:
                self.send_error(401)
                return
            super().do_GET()

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        info = inspect_manifest(f"http://alice:s3cret@127.0.0.1:{server.server_port}/m.parquet")
        assert info.num_rows == 2 and read_ids(info) == ["1", "2"]  # the password still authenticates
        assert "s3cret" not in repr(info.files) and "alice" not in repr(info.files)
    finally:
        server.shutdown()
        server.server_close()


def test_integer_ids_run_through_read_prepare_engine_finish_and_resume(tmp_path, tiny_weights):
    """int64 ids (pandas' default) as the run sees them: read, synthesized, named and matched by their text."""
    from pipeline.batch.plan import hash_manifest
    from pipeline.batch.stages.read import read_rows
    from tests.support.stages import config, run_stages

    path = write(tmp_path / "m.parquet", id=pa.array([7, 12], pa.int64()), text=["Hello there.", "Second row."])
    info = inspect_manifest(str(path))
    files = pa.table({"path": info.files})
    (table,) = list(read_rows(files, fs=info.fs, schema=info.schema, renames={}, skip=["12"]))
    assert table.column("id").to_pylist() == ["7"]  # "12" was skipped as text, as resume names it
    cfg = config(model={"weights": str(tiny_weights)})
    done = run_stages(table, cfg).to_pylist()
    assert [(r["id"], r["ok"], r["audio_name"]) for r in done] == [("7", True, audio_name("7", "wav"))]
    assert set(hash_manifest(info, cfg)["id"].to_pylist()) == {"7", "12"}
