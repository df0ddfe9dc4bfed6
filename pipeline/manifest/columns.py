"""The input contract's columns: canonical names, optional columns and their types, the id rules, safe file names."""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from typing import Any

ID, TEXT = "id", "text"  # canonical names inside the pipeline, whatever the manifest calls them
# Optional per-row overrides and the Arrow type families they accept.
OPTIONAL_COLUMNS = {
    "voice": "string",
    "seed": "number",  # pandas writes an int column with gaps as float64; rows check integrality
    "text_temp": "number",
    "waveform_temp": "number",
    "max_duration": "number",
    "language": "string",
    "text_format": "string",  # plain | ssml; overrides input.text_format
    "lexicon": "string",  # the row's own word<TAB>respelling lines, over generation.lexicon
}
MAX_ID_CHARS = 512  # longer ids are almost surely a wrong column; file names would be cut anyway
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
# safe_name's slug+digest names end like this; an id that already does gets a digest too (injectivity).
_DIGEST_SUFFIX = re.compile(r"-[0-9a-f]{12}$")
SLUG_CHARS = 64  # the readable part of a slug-digest name
DIGEST_CHARS = 12  # sha256 hex digits after the slug


def display_id(value: Any) -> Any:
    """The id as it appears in errors/ and summaries: an undecodable id is shown with \\x escapes."""
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def id_problems(ids: list) -> tuple[set[str], list[dict]]:
    """Manifest-level errors: (ids to exclude from the run, one error record per affected input row).

    A duplicated id is ambiguous (which text is meant?), so every occurrence becomes an error row;
    so does every id whose audio file name another id would also get (see name_collisions).
    """
    excluded: set[str] = set()
    errors: list[dict] = []
    for _, shown, problem, n in id_issues(ids):
        if isinstance(shown, str):
            excluded.add(shown)
        errors.extend({"id": shown, "stage": "manifest", "error": problem} for _ in range(n))
    return excluded, errors


def id_issues(ids: list) -> list[tuple[str, Any, str, int]]:
    """(kind, id as shown, sentence, rows) per distinct bad id; kind groups like problems ("have an empty id")."""
    counts = Counter(ids)
    clashes = {i: others for others in name_collisions(ids).values() for i in others}
    out = []
    for value, n in counts.items():
        issue = id_issue(value)
        if issue is None and n > 1:
            unique = "ids must be unique: rename or drop the copies"
            issue = ("share their id with another row", f"id {value!r} appears {n} times in the manifest; {unique}")
        if issue is None and value in clashes:
            other = next(o for o in clashes[value] if o != value)
            issue = ("have ids that would write the same audio file as another id",
                     f"ids {value!r} and {other!r} would write the same audio file {safe_name(value)!r}; "
                     "rename one of them")  # fmt: skip
        if issue is not None:
            out.append((issue[0], display_id(value), issue[1], n))
    return out


def id_problem(value: Any) -> str | None:
    """Why one id value is unusable, as a sentence; None when it is fine."""
    issue = id_issue(value)
    return None if issue is None else issue[1]


def id_issue(value: Any) -> tuple[str, str] | None:
    """(kind, sentence) for an unusable id value; None when it is fine."""
    if value is None:
        return "have no id (null)", "id is missing (null); give every row a unique id"
    if isinstance(value, bytes):  # rows.Undecodable
        return (
            "have an id that is not valid UTF-8",
            f"id {value!r} is not valid UTF-8; re-encode the id column as UTF-8",
        )
    if not isinstance(value, str) or not value.strip():
        return "have an empty id", "id is empty; give every row a unique id"
    if len(value) > MAX_ID_CHARS:
        sentence = f"id is {len(value)} characters long (limit {MAX_ID_CHARS}); is input.id_column the right column?"
        return f"have an id longer than {MAX_ID_CHARS} characters", sentence
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "have an id with control characters", f"id {value!r} contains control characters; use printable ids"
    return None


def safe_name(row_id: str) -> str:
    """File-name stem for an id, distinct for distinct ids: the id itself when harmless, else slug-digest.

    Ids kept as they are never end in "-" + 12 hex digits, and every slug-digest name does, so
    the two kinds cannot meet; two slugged ids share a name only if their sha256 prefixes collide
    (name_collisions checks that at plan time). An id that looks like a slug-digest name
    ("a_b-c14cddc033f6") is itself slugged, so it cannot take the name of the id it imitates.
    """
    if _SAFE_ID.match(row_id) and ".." not in row_id and not _DIGEST_SUFFIX.search(row_id):
        return row_id
    slug = _UNSAFE_CHARS.sub("_", row_id).strip("._-")[:SLUG_CHARS] or "id"
    digest = hashlib.sha256(row_id.encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_CHARS]
    return f"{slug}-{digest}"


def name_collisions(ids: list) -> dict[str, list[str]]:
    """File name -> the distinct ids that would share it (only names with two or more)."""
    by_name: dict[str, set[str]] = defaultdict(set)
    for value in ids:
        if isinstance(value, str) and id_problem(value) is None:
            by_name[safe_name(value)].add(value)
    return {name: sorted(group) for name, group in by_name.items() if len(group) > 1}


def clean(value: Any) -> Any:
    """None for null and NaN (pandas turns missing numbers into NaN), else the value."""
    return None if value is None or (isinstance(value, float) and value != value) else value
