"""Redaction by key name and by value shape: what may leave the process in logs, summaries and errors."""

from __future__ import annotations

import pytest

from pipeline.redact import is_secret_key, redact, redact_text, scrub, secret_values, url_passwords


@pytest.mark.parametrize(
    "key",
    [
        "secret",
        "aws_secret_access_key",
        "password",
        "pwd",
        "passphrase",
        "token",
        "SessionToken",
        "session",
        "key",
        "accountKey",
        "credentials",
        "auth",
        "connection_string",
        "ConnectionString",
        "signature",
        "sig",
        "sas_token",
        "Authorization",
        "client_secret",
        "private_key",
        "X-Amz-Credential",
    ],
)
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "path",
        "endpoint_url",
        "region_name",
        "max_tokens",
        "anon",
        "id_column",
        "format",
        "author",
        "keyword_style",
        "bucket",
        "voice_dirs",
        "text_temp",
    ],
)
def test_ordinary_keys(key):
    assert not is_secret_key(key)


def test_values_under_secret_keys_go_whatever_their_type():
    got = redact(
        {
            "token": ["a", "b"],
            "auth": {"user": "u", "pass": "p"},
            "key": 1234,
            "secret": None,
            "list": [{"pwd": "x"}, "plain"],
            "tuple": ("https://u:p@h/",),
        }
    )
    assert got == {
        "token": "***",
        "auth": "***",
        "key": "***",
        "secret": None,
        "list": [{"pwd": "***"}, "plain"],
        "tuple": ("https://***@h/",),
    }


def test_value_shapes_anywhere_in_text():
    text = (
        "GET https://bucket.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F2026"
        "&X-Amz-Signature=deadbeef&X-Amz-Security-Token=tok and ?sv=2020&sig=abc%3D&se=1 and "
        "postgres://admin:hunter2@db/x and AccountName=a;AccountKey=k3y==;EndpointSuffix=core"
    )
    out = redact_text(text)
    for secret in ("AKIA%2F2026", "deadbeef", "X-Amz-Security-Token=tok", "abc%3D", "hunter2", "admin", "k3y=="):
        assert secret not in out, secret
    assert "X-Amz-Algorithm=AWS4" in out and "sv=2020" in out and "AccountName=a" in out and "se=1" in out
    assert redact_text("s3://bucket/a@b and x=1") == "s3://bucket/a@b and x=1"


def test_known_secret_values_are_scrubbed_from_free_text():
    options = {
        "key": "AKIAEXAMPLE",
        "secret": "s3cr3t-value",
        "nested": {"password": "pw"},
        "endpoint": "https://user:longpassword@h",
    }
    secrets = secret_values(options) | url_passwords(options)
    assert secrets == {"AKIAEXAMPLE", "s3cr3t-value", "user:longpassword", "longpassword"}  # "pw" is too short
    message = "botocore: InvalidAccessKeyId AKIAEXAMPLE signed with s3cr3t-value"
    assert scrub(message, secrets) == "botocore: InvalidAccessKeyId *** signed with ***"


def test_secrets_inside_lists_go_as_headers_pairs_and_mappings():
    got = redact(
        {
            "headers": ["Authorization: Bearer abc123xyz", "X-Api-Key: k3yk3y", "Accept: json"],
            "pairs": [["token", "t0t0t0"], ("region", "eu")],
            "items": [{"name": "a", "secret": "s2s2s2"}],
        }
    )
    assert got == {
        "headers": ["Authorization: ***", "X-Api-Key: ***", "Accept: json"],
        "pairs": [["token", "***"], ("region", "eu")],
        "items": [{"name": "a", "secret": "***"}],
    }
    assert redact_text('curl -H "x: Bearer eyJhbGciOi.x"') == 'curl -H "x: Bearer ***"'
    assert redact_text("error: manifest: 2 row(s) have empty text") == "error: manifest: 2 row(s) have empty text"
    secrets = secret_values({"headers": ["Authorization: Bearer abc123xyz"], "pairs": [["token", "t0t0t0"]]})
    assert secrets == {"Bearer abc123xyz", "t0t0t0"}
