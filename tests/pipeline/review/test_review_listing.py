"""`barkpipe report` at any size: the listing's order, cap and pages, and only the shown rows' audio is read."""

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_review_page import chunk, write_rows

from pipeline.output.commit import write_manifest_errors
from pipeline.output.publish import publish
from pipeline.output.schema import error_schema
from pipeline.review.dataset import DURATION_EDGES_S, DatasetStats, Spread
from pipeline.review.listing import Choice, list_rows
from pipeline.review.page import build_report
from pipeline.review.survey import survey
from pipeline.storage import Store

# Flagged rows and how many of their chunks failed: listed most failed first, then by id.
FAILED = {"f0": 1, "f1": 2, "f2": 1, "f3": 3, "f4": 1}
FLAGGED_ORDER = ["f3", "f1", "f0", "f2", "f4"]
ERROR_IDS = ["e0", "e1", "e2"]
OK_IDS = [f"k{i:02d}" for i in range(10)]


def many(root) -> None:
    """5 flagged rows, 3 error rows and 10 ok rows, in two metadata parts and one errors part."""
    for folder in ("audio", "metadata", "errors"):
        (root / folder).mkdir(parents=True)
    flagged = [
        (i, [chunk(k, 0.3, failed=["wer"] if k < n else (), wer=0.8 if k < n else 0.1) for k in range(3)], True)
        for i, n in FAILED.items()
    ]
    write_rows(root, "a", flagged)
    write_rows(root, "b", [(i, [chunk(0, 0.3 + 0.1 * k, wer=0.05)], False) for k, i in enumerate(OK_IDS)])
    errors = [{"id": i, "stage": "engine", "error": f"{i} broke", "revision": 0} for i in ERROR_IDS]
    pq.write_table(pa.Table.from_pylist(errors, schema=error_schema()), root / "errors" / "part-c.parquet")


def listed(page: str) -> list[str]:
    """Row ids in page order: finished rows' sections and the error table's rows."""
    errors = re.search(r"<table class=errors>.*?</table>", page)
    ids = [(m.start(), m.group(1)) for m in re.finditer(r"<section class=row id='row-([^']+)'>", page)]
    if errors:
        ids += [
            (errors.start() + m.start(), m.group(1))
            for m in re.finditer(r"<tr class=failrow><td>([^<]+)</td>", errors.group())
        ]
    return [i for _, i in sorted(ids)]


def page_of(root, **choice) -> str:
    return build_report(Store.open(str(root)), Choice(**choice))


def test_pages_list_flagged_rows_then_errors_a_capped_slice_each(tmp_path):
    many(tmp_path)
    pages = [page_of(tmp_path, max_rows=3, page=n) for n in (1, 2, 3)]
    assert [listed(p) for p in pages] == [FLAGGED_ORDER[:3], FLAGGED_ORDER[3:] + ERROR_IDS[:1], ERROR_IDS[1:]]
    assert all("Flagged rows (5)" in p and "Error rows (3)" in p and "Other rows" not in p for p in pages)
    assert "Page 2 of 3: rows 4–6 of 8 listed (flagged, then errors)" in pages[1]
    assert "<a href='report.html'>← previous page</a>" in pages[1] and "<a href='report-p3.html'>" in pages[1]
    assert "on page(s) <a href='report.html'>1</a>, <a href='report-p2.html'>2</a>" in pages[2]  # flagged rows
    with pytest.raises(ValueError, match=r"--page 4 is past the last page: 8 row\(s\) listed, 3 a page, 3 page"):
        page_of(tmp_path, max_rows=3, page=4)


def test_only_the_shown_rows_audio_is_read(tmp_path, monkeypatch):
    many(tmp_path)
    for gone in ("f2", "k00"):  # on page 2, and never listed
        (tmp_path / "audio" / f"{gone}.flac").unlink()
    read = []
    real = Store.read
    monkeypatch.setattr(Store, "read", lambda self, rel: read.append(rel) or real(self, rel))
    first = page_of(tmp_path, max_rows=3)
    assert sorted(p for p in read if p.startswith("audio/")) == sorted(f"audio/{i}.flac" for i in FLAGGED_ORDER[:3])
    assert "cannot be read" not in first and first.count("<svg") == 3
    second = page_of(tmp_path, max_rows=3, page=2)  # the control: a shown row's missing audio is reported
    assert "audio audio/f2.flac cannot be read" in second


def test_only_and_a_stable_sample_of_ok_rows(tmp_path):
    many(tmp_path)
    assert listed(page_of(tmp_path, only="errors")) == ERROR_IDS
    assert listed(page_of(tmp_path, only="flagged")) == FLAGGED_ORDER
    assert listed(page_of(tmp_path, only="all")) == FLAGGED_ORDER + ERROR_IDS + OK_IDS
    sample = listed(page_of(tmp_path, sample_ok=3))
    assert sample[:8] == FLAGGED_ORDER + ERROR_IDS and set(sample[8:]) < set(OK_IDS) and len(sample) == 11
    assert listed(page_of(tmp_path, sample_ok=3)) == sample  # the same rows every time
    assert "Other rows (3)" in page_of(tmp_path, sample_ok=3)


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        ({"only": "bad"}, "--only 'bad' is not one of flagged, errors, all"),
        ({"max_rows": 0}, "--max-rows must be >= 1, got 0"),
        ({"page": 0}, "--page must be >= 1, got 0"),
        ({"sample_ok": 2, "only": "errors"}, "drop --only errors"),
    ],
)
def test_choice_names_the_mistake(choice, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Choice(**choice)


def test_summary_counts_gates_and_durations_of_every_row(tmp_path):
    many(tmp_path)
    page = page_of(tmp_path, only="errors")  # no finished row listed: the summary still covers them all
    assert "<tr><th>finished</th><td>15 (10 ok, 5 flagged)</td></tr>" in page
    assert "<tr><th>wer</th><td>5</td><td>8</td></tr>" in page  # rows, chunks that failed the gate
    durations = re.search(r"<table class='summary durations'>.*?</table>", page).group()
    assert sum(int(n) for n in re.findall(r"</th><td>(\d+)</td>", durations)) == 15
    assert "<tr><th>error rows</th><td>3 (engine: 3)</td></tr>" in page


def test_a_published_view_with_a_redo_lists_each_rows_newest_take(tmp_path):
    """Positions into compacted view files and journal parts: the redone f3 now passes, so it is not listed."""
    many(tmp_path)
    store = Store.open(str(tmp_path))
    publish(store, rows_per_file=4)
    write_rows(tmp_path, "r", [("f3", [chunk(0, 0.5, wer=0.0)], False)], revision=1)
    page = build_report(store, Choice(only="all"))
    assert listed(page) == [i for i in FLAGGED_ORDER if i != "f3"] + ERROR_IDS + sorted([*OK_IDS, "f3"])
    assert "redone rows</th><td>1 (1 older record(s) superseded)" in page and "Flagged rows (4)" in page


def test_error_rows_without_an_id_and_the_manifests_rejected_rows_sort_among_the_errors(tmp_path):
    """By id ("" for none), then by where the row is: a manifest's rejected row before a committed one."""
    many(tmp_path)
    unkeyed = [{"id": None, "stage": "engine", "error": "no id", "revision": 0}]
    pq.write_table(pa.Table.from_pylist(unkeyed, schema=error_schema()), tmp_path / "errors" / "part-d.parquet")
    store = Store.open(str(tmp_path))
    write_manifest_errors(store, [{"id": "e1", "stage": "manifest", "error": "e1 twice"},
                                  {"id": None, "stage": "manifest", "error": "no id given"}])  # fmt: skip
    found = survey(store)
    pages = [list_rows(store, found, Choice(only="errors", max_rows=4, page=n)) for n in (1, 2)]
    shown = [(r.id, r.record["error"]) for listing in pages for r in listing.rows]
    assert shown == [("None", "no id given"), ("None", "no id"), ("e0", "e0 broke"), ("e1", "e1 twice"),
                     ("e1", "e1 broke"), ("e2", "e2 broke")]  # fmt: skip
    assert pages[0].totals == {1: 6} and found.stats.error_stages == {"engine": 4, "manifest": 2}


def test_durations_fall_in_the_bin_whose_left_edge_they_reach():
    stats = DatasetStats()
    seconds = np.array([-1.0, 0.0, 0.999, 1.0, 59.9, 60.0, 3600.0, 9000.0])
    stats.add_finished(seconds, np.array([0, 0, 1, 0, 2, 0, 0, 0]))
    bins = dict(zip(DURATION_EDGES_S, stats.durations, strict=True))
    assert {edge: n for edge, n in bins.items() if n} == {0: 3, 1: 1, 30: 1, 60: 1, 3600: 2}
    assert stats.finished == 8 and stats.redone == 2 and stats.audio_s == seconds.sum()


def test_spread_is_exact_while_it_fits_then_a_bounded_sample():
    values = np.random.default_rng(1).normal(size=20_000)
    exact, sampled = Spread(size=50_000), Spread(size=2_000)
    for part in np.array_split(values, 7):
        exact.add(part)
        sampled.add(part)
    assert np.allclose(exact.quantiles(), np.quantile(values, (0, 0.1, 0.5, 0.9, 1)))
    q = sampled.quantiles()
    assert sampled.sampled and sampled.count == 20_000 and not exact.sampled
    assert q[0] == values.min() and q[-1] == values.max() and abs(q[2] - np.median(values)) < 0.1


def test_cli_pages_and_one_line_mistakes(tmp_path, cli):
    many(tmp_path / "run")
    second = cli("report", str(tmp_path / "run"), "--max-rows", "3", "--page", "2")
    assert second.exit_code == 0, second.output
    assert (tmp_path / "run" / "report-p2.html").is_file() and not (tmp_path / "run" / "report.html").exists()
    assert "page 2 of 3 (8 rows listed, 3 a page)" in second.output
    for args, line in (
        (["--page", "9", "--max-rows", "3"], "error: --page 9 is past the last page"),
        (["--only", "loud"], "error: --only 'loud' is not one of flagged, errors, all"),
    ):
        wrong = cli("report", str(tmp_path / "run"), *args)
        assert (
            wrong.exit_code == 2
            and wrong.output.strip().startswith(line)
            and len(wrong.output.strip().splitlines()) == 1
        )
