"""Manifest reading and row validation: files/folders/globs, schema errors, bad ids, safe file names."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.batch.manifest import id_problems, inspect_manifest, read_ids, row_problem, safe_name


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
    with pytest.raises(ValueError, match="column 'id' must be string, got int64"):
        inspect_manifest(str(write(tmp_path / "b.parquet", id=[1], text=["x"])))
    with pytest.raises(ValueError, match="column 'seed' must be number, got string"):
        inspect_manifest(str(write(tmp_path / "c.parquet", id=["1"], text=["x"], seed=["7"])))
    info = inspect_manifest(str(write(tmp_path / "d.parquet", uid=["1"], body=["x"], text_temp=[1])),
                            id_column="uid", text_column="body")
    assert info.optional == ["text_temp"]  # ints are fine where numbers are expected
    with pytest.raises(ValueError, match="has both 'body' and 'text'"):
        inspect_manifest(str(write(tmp_path / "e.parquet", id=["1"], body=["x"], text=["y"])), text_column="body")


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


@pytest.mark.parametrize("row_id", ["../../etc/passwd", "a/b", "/abs", "..", ".hidden", "sp ace", "ü", "a" * 300,
                                    "C:\\x", "con"])
def test_safe_name_never_escapes(row_id):
    name = safe_name(row_id)
    assert "/" not in name and "\\" not in name and ".." not in name and not name.startswith(".")
    assert 0 < len(name) <= 128


def test_safe_name_keeps_plain_ids_and_keeps_distinct_ids_distinct():
    assert safe_name("chapter-01_v2.take") == "chapter-01_v2.take"
    ids = ["a/b", "a_b", "a b", "a:b", "a\\b"]
    assert len({safe_name(i) for i in ids}) == len(ids)


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
