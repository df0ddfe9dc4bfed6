"""How every barkpipe command reports failure: a user mistake is one line and exit 2; a bug keeps its traceback."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

import typer

from pipeline.errors import BUG_EXIT, INTERRUPTED_EXIT, USER_ERROR_EXIT, user_message

BUG_LINE = ("this is a bug in barkpipe (or a library it uses), not something you did wrong; please report it "
            "to {where} with the command you ran and the traceback above")  # fmt: skip


F = TypeVar("F", bound=Callable)


def fail(message: object) -> None:
    """Print `error: message` (credentials in URLs redacted) and exit with USER_ERROR_EXIT."""
    from pipeline.storage import redact_url

    typer.echo(f"error: {redact_url(str(message))}", err=True)
    raise typer.Exit(USER_ERROR_EXIT)


def report_to() -> str:
    """Where bugs go: the package's `Issues` (or first) project URL, when pyproject.toml declares one."""
    from importlib import metadata

    try:
        urls = metadata.metadata("barkpipe").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        urls = []
    pairs = [u.split(",", 1) for u in urls if "," in u]
    issues = [url.strip() for label, url in pairs if "issue" in label.lower() or "bug" in label.lower()]
    return (issues or [url.strip() for _, url in pairs] or ["the barkpipe issue tracker"])[0]


def guarded(command: F) -> F:
    """Guard a command: user mistake -> one line, exit 2; Ctrl-C -> one line, exit 130; bug -> traceback + a line."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            typer.echo("interrupted (Ctrl-C)", err=True)  # commands that resume (run) say so themselves
            raise typer.Exit(INTERRUPTED_EXIT) from None
        except Exception as exc:
            import click

            if isinstance(exc, click.ClickException):
                raise
            message = user_message(exc)
            if message is not None:
                fail(message)
            traceback.print_exc(file=sys.stderr)
            typer.echo(f"error: {type(exc).__name__}: {BUG_LINE.format(where=report_to())}", err=True)
            raise typer.Exit(BUG_EXIT) from None

    return wrapper  # type: ignore[return-value]
