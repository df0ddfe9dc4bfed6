"""What an error means to whoever ran barkpipe: the exit code and the one line it ends with."""

from __future__ import annotations

USER_ERROR_EXIT = 2  # a wrong path, a bad key, missing weights: fixable by the user, no traceback
BUG_EXIT = 1  # an unexpected exception: a bug in barkpipe or a library
INTERRUPTED_EXIT = 130  # Ctrl-C, as shells report it
INTERRUPTED_LINE = "interrupted; run the same command again to resume"
# What commands catch around calls on user input (config, paths, texts): the message is the line.
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
STORAGE_MODULES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "fsspec")


def user_message(exc: BaseException) -> str | None:
    """The one line for an exception that escaped a command but is the user's to fix, or None (a bug).

    Only errors made to be read (config and check errors), a full, read-only or denied output
    (storagefaults.OutputFault, also when a Ray worker hit it) and storage failures (credentials,
    endpoint, bucket) qualify; any other ValueError deep inside is treated as a bug.
    """
    # At call time: `barkpipe --help` imports this module, and these bring pydantic and fsspec.
    from pipeline.configerrors import ConfigError
    from pipeline.probes import CheckError, storage_problem
    from pipeline.storagefaults import find_output_fault

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
    from pipeline.storage import redact_url  # at call time, as above (fsspec)

    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED_EXIT, INTERRUPTED_LINE
    message = user_message(exc)
    if message is None and isinstance(exc, USER_ERRORS):
        message = str(exc)
    if message is not None:
        return USER_ERROR_EXIT, redact_url(message)
    return BUG_EXIT, redact_url(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} (a bug)")
