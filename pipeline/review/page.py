"""`barkpipe report`: one page of the review, the dataset's summary, then the rows that need a listener.

The summary covers every row (one streaming pass, output/read.py's newest-record rule); the rows
listed are capped per page (review/listing.py), and only those rows' audio is read. Page N of a
listing is its own self-contained file (`report.html`, `report-p2.html`, ...) linking to its
neighbours: each page costs its own rows, so no invocation reads more audio than one page shows.
Audio is embedded as Ogg Opus data URIs (about 20 kb/s: plenty to judge speech) so a page works
anywhere, offline, as one attachment, until `max_embed_bytes` is used; later rows link to their file.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass

from pipeline.config import SegmentConfig
from pipeline.output.layout import ERRORS, METADATA, SUMMARY
from pipeline.output.summary import read_summary
from pipeline.review.dataset import dataset_html
from pipeline.review.listing import ERRORS as ERROR_ROWS
from pipeline.review.listing import LISTED, SECTIONS, Choice, Listing, list_rows
from pipeline.review.rows import errors_html, row_html
from pipeline.review.survey import Survey, survey
from pipeline.storage import Store, open_fs, retry

MAX_EMBED_BYTES = 20 * 2**20  # audio budget of one page (base64 adds a third on top)
REPORT_NAME = "report.html"


@dataclass(frozen=True)
class Written:
    """Where a page went, and where it stands in the listing."""

    where: str
    page: int
    pages: int
    listed: int


def page_name(first: str, page: int) -> str:
    """Page N's file beside page 1's: `report.html`, `report-p2.html`, ... (a path or a URL)."""
    if page == 1:
        return first
    stem, ext = os.path.splitext(first)
    return f"{stem}-p{page}{ext or '.html'}"


def build_report(
    store: Store, choice: Choice | None = None, *, audio_href: str = "", max_embed_bytes: int = MAX_EMBED_BYTES,
    first_page: str = REPORT_NAME,
) -> str:  # fmt: skip
    """One page's HTML. `audio_href` prefixes links to audio files that are not embedded; `first_page` is
    page 1's file name, which the links to the other pages are derived from."""
    return _build(store, choice or Choice(), audio_href, max_embed_bytes, first_page)[0]


def write_report(
    output: str, out: str | None = None, storage_options: dict | None = None,
    max_embed_bytes: int = MAX_EMBED_BYTES, choice: Choice | None = None,
) -> Written:  # fmt: skip
    """Write a page to OUTPUT/report.html (page N: report-pN.html), or beside `out` (local or URL)."""
    choice = choice or Choice()
    store = Store.open(output, storage_options)
    if out is None:
        page, listing = _build(store, choice, "", max_embed_bytes, REPORT_NAME)
        where = store.write(page_name(REPORT_NAME, choice.page), page.encode())
        return Written(where, choice.page, listing.pages, listing.total)
    base = store.root if not store.local else "file://" + os.path.abspath(store.root)
    first = os.path.basename(out.rstrip("/")) or REPORT_NAME
    page, listing = _build(store, choice, base.rstrip("/") + "/", max_embed_bytes, first)
    target, data = page_name(out, choice.page), page.encode()
    if "://" in target:
        fs, path = open_fs(target, storage_options)
        retry(fs.pipe_file, path, data, what=target)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
    return Written(target, choice.page, listing.pages, listing.total)


def _build(store: Store, choice: Choice, audio_href: str, max_embed_bytes: int, first: str) -> tuple[str, Listing]:
    summary = read_summary(store)
    found = survey(store)
    if summary is None and found.stats.rows == 0:
        raise FileNotFoundError(
            f"{store.root} holds no run (no {SUMMARY}, {METADATA}/ or {ERRORS}/); point OUTPUT at a run's output.path"
        )
    listing = list_rows(store, found, choice)
    budget, pauses = [max_embed_bytes], _pauses(summary)
    body = [_nav_html(listing, first), _summary_html(found, summary)]
    for section, total in listing.totals.items():
        rows = [r for r in listing.rows if r.section == section]
        body.append(f"<h2>{SECTIONS[section]} ({total})</h2>{_where_html(listing, section, rows, first)}")
        if section == ERROR_ROWS:
            body.append(errors_html(rows) if rows else "")
        else:
            body += [row_html(store, r, budget, audio_href, pauses) for r in rows]
    if listing.pages > 1:
        body.append(_nav_html(listing, first))
    title = "barkpipe review: " + html.escape(os.path.basename(store.root.rstrip("/")) or store.root)
    page_title = title + (f" (page {choice.page} of {listing.pages})" if listing.pages > 1 else "")
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{page_title}</title>"
        f"<meta name=viewport content='width=device-width, initial-scale=1'><style>{_CSS}</style></head>"
        f"<body><h1>{title}</h1>{''.join(body)}</body></html>"
    ), listing


def _pauses(summary: dict | None) -> tuple[float, float]:
    """(sentence, paragraph) pause of the last run's config, else the defaults: for estimated spans."""
    segment = ((summary or {}).get("config") or {}).get("segment") or {}
    fields = SegmentConfig.model_fields
    return (
        float(segment.get("sentence_pause_s", fields["sentence_pause_s"].default)),
        float(segment.get("paragraph_pause_s", fields["paragraph_pause_s"].default)),
    )


def _nav_html(listing: Listing, first: str) -> str:
    """Which rows this page shows, and links to the pages beside it (each written by `--page N`)."""
    what = ", then ".join(LISTED[s] for s in listing.totals)
    shown = len(listing.rows)
    span = f"rows {listing.first + 1}–{listing.first + shown}" if shown else "no rows"
    links = [
        f"<a href='{html.escape(page_name(first, n))}'>{label}</a>"
        for n, label in ((listing.choice.page - 1, "← previous page"), (listing.choice.page + 1, "next page →"))
        if 1 <= n <= listing.pages
    ]
    hint = " <span class=muted>(a page that is not there yet: <code>barkpipe report OUTPUT --page N</code>)</span>"
    return (
        f"<p class=nav>Page {listing.choice.page} of {listing.pages}: {span} of {listing.total} listed "
        f"({html.escape(what)}), {listing.choice.max_rows} a page. {' · '.join(links)}"
        f"{hint if links else ''}</p>"
    )


def _where_html(listing: Listing, section: int, rows: list, first: str) -> str:
    total = listing.totals[section]
    if total == 0:
        return "<p class=muted>None.</p>"
    if len(rows) == total:
        return ""
    lo, hi = listing.section_pages(section)
    near = sorted({lo, hi, *range(max(lo, listing.choice.page - 1), min(hi, listing.choice.page + 1) + 1)})
    links = [
        ("… " if k and n > near[k - 1] + 1 else "")
        + (f"<a href='{html.escape(page_name(first, n))}'>{n}</a>" if n != listing.choice.page else str(n))
        for k, n in enumerate(near)
    ]
    pages = ", ".join(links)
    here = f"{len(rows)} on this page; " if rows else ""
    return f"<p class=muted>{here}on page(s) {pages}</p>"


def _summary_html(found: Survey, summary: dict | None) -> str:
    head = (
        "<h2>Dataset</h2><p class=muted>Every row of this output across all runs, each in its newest "
        "take (a redone row counts once).</p>" + dataset_html(found.stats)
    )
    if summary is None:
        return head + f"<h2>Last run</h2><p class=muted>no {SUMMARY} (the run has not finished)</p>"
    keys = ("input_rows", "ok", "errors", "accounted", "audio_hours", "config_hash")
    cells = "".join(f"<tr><th>{k}</th><td>{html.escape(str(summary.get(k)))}</td></tr>" for k in keys if k in summary)
    last = summary.get("this_run") or {}
    cells += "".join(
        f"<tr><th>this run: {html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in last.items()
        if k != "error_samples"
    )
    return f"{head}<h2>Last run ({SUMMARY})</h2><table class=summary>{cells}</table>"


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:20px} h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
h3{font-size:15px;margin:0 0 4px} p.nav{background:#f3f5f8;padding:6px 10px;border-radius:4px}
section.row{border:1px solid #ddd;border-radius:6px;padding:12px;margin:12px 0}
table{border-collapse:collapse;width:100%;margin:8px 0} th,td{border:1px solid #e3e3e3;padding:3px 6px;
text-align:left;vertical-align:top} table.summary{width:auto}
.bad{color:#c62828;font-weight:600} .good{color:#2e7d32;font-weight:600} .muted{color:#777} .m{color:#444}
.bar{display:inline-block;height:10px;background:#3b6fd6}
tr.failrow{background:#fff3f3} svg.wave{width:100%;height:80px;display:block;background:#f7f8fa}
audio{width:100%;margin:4px 0} table.chunks td:nth-child(2){white-space:nowrap}
table.chunks td:nth-child(6),table.chunks td:nth-child(7){width:28%}
del{background:#ffe1e1;color:#8a1c1c} ins{background:#dff5e1;color:#1b5e20;text-decoration:none}
"""
