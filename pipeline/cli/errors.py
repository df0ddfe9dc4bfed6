"""How every barkpipe command reports failure: a user mistake is one line and exit 2; a bug keeps its traceback."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

import typer

USER_ERROR_EXIT = 2  # a wrong path, a bad key, missing weights: fixable by the user, no traceback
BUG_EXIT = 1  # an unexpected exception: a bug in barkpipe or a library
INTERRUPTED_EXIT = 130  # Ctrl-C, as shells report it
INTERRUPTED_LINE = "interrupted; run the same command again to resume"
# What commands catch around calls on user input (config, paths, texts): the message is the line.
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
STORAGE_MODULES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "fsspec")
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


def user_message(exc: BaseException) -> str | None:
    """The one line for an exception that escaped a command but is the user's to fix, or None (a bug).

    Only errors made to be read (config and check errors), a full, read-only or denied output
    (outputfaults.OutputFault, also when a Ray worker hit it) and storage failures (credentials,
    endpoint, bucket) qualify; any other ValueError deep inside is treated as a bug.
    """
    from pipeline.checks import CheckError, storage_problem
    from pipeline.config import ConfigError
    from pipeline.output.faults import find_output_fault

    if isinstance(exc, (CheckError, ConfigError)):
        return str(exc)
    fault = find_output_fault(exc)
    if fault is not None:
        return str(fault)
    storage = storage_problem(exc, "storage", "", {})
    if storage is not None and type(exc).__module__.split(".")[0] in STORAGE_MODULES + ("builtins",):
        return storage.replace("storage '': ", "storage: ")
    return None


def failure(exc: BaseException) -> tuple[int, str]:
    """(exit code, line) that a command ends with for exc, as `run` and guarded() report it; the line
    is what follows `error: ` (for a bug, its type and message: the traceback goes to the terminal only)."""
    from pipeline.storage import redact_url

    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED_EXIT, INTERRUPTED_LINE
    message = user_message(exc)
    if message is None and isinstance(exc, USER_ERRORS):
        message = str(exc)
    if message is not None:
        return USER_ERROR_EXIT, redact_url(message)
    return BUG_EXIT, redact_url(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (a bug)")


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
