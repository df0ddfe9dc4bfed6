"""How every barkpipe command reports a user mistake: one line on stderr, exit code 2."""

import typer

USER_ERROR_EXIT = 2  # a wrong path, a bad key, missing weights: fixable by the user, no traceback


def fail(message: str) -> None:
    """Print `error: message` (credentials in URLs redacted) and exit with USER_ERROR_EXIT."""
    from pipeline.storage import redact_url

    typer.echo(f"error: {redact_url(str(message))}", err=True)
    raise typer.Exit(USER_ERROR_EXIT)
