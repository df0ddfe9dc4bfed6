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
# An HTTP header written as one string ("Authorization: Bearer abc", "X-Api-Key: k"), as headers lists hold them.
_HEADER = re.compile(r"^(?P<name>\s*[A-Za-z][A-Za-z0-9_-]*\s*:\s*)(?P<value>\S.*)$", re.DOTALL)
# Credentials of an HTTP auth scheme anywhere in text ("Bearer eyJ...", "Basic dXNlcjpwdw==").
_AUTH_SCHEME = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+(?P<value>[A-Za-z0-9._~+/=-]{8,})")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")  # a key name, not a sentence
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
    """Hide URL userinfo, auth-scheme credentials, secret headers and secret-looking name=value values."""
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    header = _HEADER.match(text)
    if header and is_secret_key(header["name"].strip(" :")):
        return f"{header['name']}{REDACTED}"

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
        if _is_pair(obj) and _has_value(obj[1]):
            return type(obj)((obj[0], REDACTED))  # a (name, value) pair, as header lists hold them
        return type(obj)(redact(v) for v in obj)
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def _is_pair(seq: list | tuple) -> bool:
    """A (name, value) pair with a secret-looking name, as header lists hold them: ["api_token", "x"]."""
    return len(seq) == 2 and isinstance(seq[0], str) and bool(_NAME.match(seq[0])) and is_secret_key(seq[0])


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
            pair = _is_pair(node)
            for i, v in enumerate(node):
                walk(v, secret or (pair and i == 1))
        elif isinstance(node, str) and not secret and (header := _HEADER.match(node)):
            if is_secret_key(header["name"].strip(" :")) and len(header["value"]) >= MIN_SCRUB_CHARS:
                found.add(header["value"])
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
