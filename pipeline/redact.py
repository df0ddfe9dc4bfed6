"""Secret redaction by key name and by value shape, for anything that leaves the process (logs, summaries, errors)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "***"

# A key is secret when one of its words is one of these ("aws_secret_access_key", "SessionToken", "pwd").
_SECRET_WORDS = frozenset(
    {
        "secret",
        "secrets",
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "token",
        "key",
        "keys",
        "credential",
        "credentials",
        "creds",
        "session",
        "auth",
        "authorization",
        "cookie",
        "signature",
        "sig",
        "sas",
        "private",
        "apikey",
        "accesskey",
        "secretkey",
        "privatekey",
        "sastoken",
    }
)
# Compounds written as one word: "sessiontoken", "accountkey", "connectionstring", "clientsecret".
_SECRET_SUFFIXES = ("token", "key", "secret", "password", "passwd", "credential", "credentials", "signature")
_SECRET_PHRASES = ("connectionstring", "passphrase", "password", "credential", "signature", "secret")
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# `scheme://user:password@host` (any scheme); the whole userinfo goes, a user name can be a key id.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s?#]+@")
# name=value pairs in query strings and connection strings ("?X-Amz-Signature=..", ";AccountKey=..").
_PAIR = re.compile(r"(?P<lead>^|[?&;\s])(?P<name>[A-Za-z][A-Za-z0-9_.-]*)=(?P<value>[^&;#\s\"']*)")
# Secrets handed to us shorter than this are not scrubbed from free text (too many false hits).
MIN_SCRUB_CHARS = 4


def is_secret_key(key: Any) -> bool:
    """True for key names that hold secrets: by word ("aws_secret_access_key") or compound ("SessionToken")."""
    text = str(key)
    words = [w.lower() for w in _WORD_SPLIT.split(text) if w]
    if any(w in _SECRET_WORDS for w in words):
        return True
    flat = "".join(words)
    return flat.endswith(_SECRET_SUFFIXES) or any(p in flat for p in _SECRET_PHRASES)


def redact_text(text: str) -> str:
    """Hide URL userinfo and the values of secret-looking name=value pairs inside any string."""
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)

    def pair(m: re.Match) -> str:
        if not is_secret_key(m["name"]) or not m["value"]:
            return m[0]
        return f"{m['lead']}{m['name']}={REDACTED}"

    return _PAIR.sub(pair, text)


def redact(obj: Any) -> Any:
    """Copy of obj (dicts, lists, tuples, strings, at any depth) with secrets replaced by '***'.

    Everything under a secret-looking key goes, whatever its type; strings anywhere are
    cleaned by shape (URL passwords, signed query strings, connection strings).
    """
    if isinstance(obj, dict):
        return {k: (REDACTED if _has_value(v) else v) if is_secret_key(k) else redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def _has_value(value: Any) -> bool:
    # `secret: null` or `token: ""` says "none set"; showing that helps and leaks nothing.
    return value is not None and value != ""


def secret_values(obj: Any) -> set[str]:
    """Every string stored under a secret-looking key (at any depth): the values to scrub from free text."""
    found: set[str] = set()

    def walk(node: Any, secret: bool) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, secret or is_secret_key(k))
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v, secret)
        elif secret and isinstance(node, (str, int)) and not isinstance(node, bool):
            value = str(node)
            if len(value) >= MIN_SCRUB_CHARS:
                found.add(value)

    walk(obj, False)
    return found


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """redact_text, then every known secret value (longest first) replaced wherever it appears."""
    text = redact_text(text)
    for value in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def url_passwords(obj: Any) -> set[str]:
    """The userinfo parts ("user:password") of URLs in any string of obj, and their password halves."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)
        elif isinstance(node, str):
            for m in _URL_USERINFO.finditer(node):
                info = m[0][len(m["scheme"]) : -1]
                found.update(p for p in (info, info.partition(":")[2]) if len(p) >= MIN_SCRUB_CHARS)

    walk(obj)
    return found
