"""Config mistakes as one line each: ConfigError, and pydantic's errors as key, what was given, what is allowed."""

from __future__ import annotations

import difflib
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from pipeline.redact import is_secret_key, redact, redact_text

SHOWN_VALUE_CHARS = 60  # a bad value is quoted up to this length
# pydantic puts this before a validator's own message; barkpipe's messages stand alone.
_VALUE_ERROR_PREFIXES = ("Value error, ", "Assertion failed, ")
_SECTION_TYPES = ("model_type", "dict_type", "model_attributes_type")


class ConfigError(ValueError):
    """A config file or override the user must fix; `problems` holds one line per mistake."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


def describe_errors(errors: list, root: type[BaseModel]) -> list[str]:
    """One line per config key that failed (a union's failed members are one key, not several)."""
    grouped: dict[str, list] = {}
    for err in errors:
        key, _, _ = _key_and_field(tuple(err["loc"]), root, keep_all=err["type"] == "extra_forbidden")
        grouped.setdefault(key, []).append(err)
    return [_describe(key, errs, root) for key, errs in grouped.items()]


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X (pydantic adds no location step for an optional value)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _key_and_field(loc: tuple, root: type[BaseModel], keep_all: bool = False) -> tuple[str, Any, list]:
    """(dotted config key, the annotation found there, its constraints) for an error location.

    After a leaf field, a list index or mapping key is kept (`generation.speakers.ALICE`, whose
    annotation is then the item's) and a union member's tag (`int`, `tuple[int, int]`) is dropped.
    """
    parts: list[str] = []
    model: Any = root
    annotation: Any = None
    metadata: list = []
    for i, part in enumerate(loc):
        if keep_all or model is not None:
            parts.append(str(part))
        if model is None:
            break
        info = model.model_fields.get(str(part))
        if info is None:
            break
        annotation, metadata = info.annotation, info.metadata
        inner = _unwrap(annotation)
        if _is_section(inner):
            model = annotation = inner
            continue
        model = None
        if get_origin(inner) in (list, dict) and i + 1 < len(loc) and not keep_all:
            parts.append(str(loc[i + 1]))
            annotation, metadata = get_args(inner)[-1], []
            break
    return ".".join(parts), annotation, metadata


def _describe(key: str, errs: list, root: type[BaseModel]) -> str:
    err = next((e for e in errs if e["type"] in ("value_error", "assertion_error")), errs[0])
    kind, loc = err["type"], tuple(err["loc"])
    if kind == "extra_forbidden":
        return unknown_key(loc, root)
    if kind == "missing":
        return f"{key}: required key is missing"
    got = _shown(err.get("input"), loc)
    if kind in ("value_error", "assertion_error"):
        message = err["msg"]
        for prefix in _VALUE_ERROR_PREFIXES:
            message = message.removeprefix(prefix)
        return redact_text(f"{key}: {message} (got {got})")
    _, annotation, metadata = _key_and_field(loc, root)
    if kind in _SECTION_TYPES and _is_section(annotation):
        keys = ", ".join(annotation.model_fields)
        return redact_text(f"{key}: got {got}; expected a section (a mapping with keys {keys})")
    allowed = _words(annotation, _bounds(metadata)) if annotation is not None else ""
    if not allowed:
        return redact_text(f"{key}: got {got}; {err['msg'].lower()}")
    return redact_text(f"{key}: got {got}; expected {allowed}")


def _shown(value: Any, loc: tuple) -> str:
    # A wrongly typed storage_options (or a secret-named key) may hold credentials: name the type only.
    if any(str(p) == "storage_options" or is_secret_key(p) for p in loc):
        return f"a {type(value).__name__}"
    text = repr(redact(value))
    return text if len(text) <= SHOWN_VALUE_CHARS else text[:SHOWN_VALUE_CHARS] + "..."


def unknown_key(loc: tuple, root: type[BaseModel]) -> str:
    """`unknown key 'compute.gpus'; did you mean 'gpus_per_actor'? (allowed here: ...)`."""
    allowed = allowed_keys(loc[:-1], root)
    name = str(loc[-1])
    guess = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    guess = guess or [k for k in allowed if len(name) >= 3 and (k.startswith(name) or name in k)][:1]
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    dotted = ".".join(str(p) for p in loc)
    return redact_text(f"unknown key {dotted!r}{hint} (allowed here: {', '.join(allowed)})")


def allowed_keys(loc: tuple, root: type[BaseModel]) -> list[str]:
    """The keys of the section at `loc` (a path of section names), or [] when it is no section."""
    model: Any = root
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = _unwrap(field.annotation) if field is not None else None
        if not _is_section(annotation):
            return []
        model = annotation
    return list(model.model_fields)


def _bounds(metadata: list) -> str:
    marks = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
    found = [f"{sign} {getattr(m, name)}" for m in metadata for name, sign in marks if hasattr(m, name)]
    return " and ".join(found)


def _words(annotation: Any, bounds: str = "") -> str:
    """What a type takes, in words: "an integer >= 1 or a list of 2 integers", "one of 'wav', 'flac'"."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin in (Union, types.UnionType):
        return " or ".join(w for w in (_words(a, bounds) for a in args) if w)
    if origin is Literal:
        values = ", ".join(repr(a) for a in args)
        return values if len(args) == 1 else f"one of {values}"
    numbers = {int: "an integer", float: "a number"}
    if annotation in numbers:
        return f"{numbers[annotation]} {bounds}".strip()
    simple = {bool: "true or false", str: "a string"}
    if annotation in simple:
        return simple[annotation]
    if origin is tuple and args and Ellipsis not in args:
        return f"a list of {len(args)} {_plural(args[0])}"
    if origin is list:
        return f"a list of {_plural(args[0]) if args else 'values'}"
    if origin is dict:
        return "a mapping"
    if _is_section(annotation):
        return "a section"
    return ""


def _plural(annotation: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(annotation, "values")
