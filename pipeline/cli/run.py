"""`barkpipe run` and `barkpipe validate`: load the config, check it deeply, call one function."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.errors import USER_ERRORS, fail, guarded

ERROR_SAMPLES_SHOWN = 3  # failed rows named at the end of a run; errors/ holds them all


def _load_and_check(config: Path, overrides: list[str]):
    """(config, report) or exit 2 with the first problem; nothing is generated or written."""
    from pipeline.batch.checks import check_run
    from pipeline.batch.config import load_config

    try:
        cfg = load_config(config, overrides or [])
        return cfg, check_run(cfg)
    except USER_ERRORS as exc:
        fail(exc)
    raise AssertionError("unreachable: fail() exits")


def validate_command(config: Path, overrides: list[str]) -> None:
    """Run every check that costs no generation and print one line per check."""
    _, report = _load_and_check(config, overrides)
    for line in report.lines():
        typer.echo(line)
    typer.echo("config ok: `barkpipe run` would start")


def run_command(config: Path, overrides: list[str], dry_run: bool, verbose: bool = False,
                retry_errors: bool = False, redo: str | None = None) -> None:  # fmt: skip
    """Run the pipeline described by a config (or, with dry_run, print its plan)."""
    resume = _resume_options(retry_errors, redo)
    cfg, report = _load_and_check(config, overrides)
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if dry_run:
        return _dry_run(cfg)
    from pipeline.batch.lease import LeaseLost
    from pipeline.batch.runner import run

    _log_to_stderr()
    try:
        summary = run(cfg, verbose=verbose, **resume)
    except (*USER_ERRORS, LeaseLost) as exc:  # LeaseLost: another run took the output over
        fail(exc)
    _report(cfg, summary)


def _log_to_stderr() -> None:
    """The driver's own lines (resume plan, "still running" every compute.progress_log_s, warnings) on stderr."""
    import logging
    import sys

    class CurrentStderr(logging.StreamHandler):
        """Writes to whatever sys.stderr is when a line is logged (a test's capture may have replaced it)."""

        barkpipe = True

        @property
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, _value) -> None:
            pass

    logger = logging.getLogger("pipeline")
    if not any(getattr(h, "barkpipe", False) for h in logger.handlers):
        handler = CurrentStderr()
        handler.setFormatter(logging.Formatter("barkpipe: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _resume_options(retry_errors: bool, redo: str | None) -> dict:
    """runner.run's resume keywords, only those the user set (so a runner without them still runs)."""
    from pipeline.batch.resume import parse_redo

    options: dict = {}
    if retry_errors:
        options["retry_errors"] = True
    try:
        chosen = parse_redo(redo)
    except (ValueError, OSError) as exc:
        fail(exc)
    if chosen is not None:
        options["redo"] = chosen
    return options


def _dry_run(cfg) -> None:
    import yaml

    from pipeline.batch.config import public_dict
    from pipeline.batch.runner import prepare
    from pipeline.batch.summary import plan, plan_table

    try:
        typer.echo(yaml.safe_dump(public_dict(cfg), sort_keys=False).rstrip())
        typer.echo("---")
        typer.echo(plan_table(plan(prepare(cfg))))
    except USER_ERRORS as exc:
        fail(exc)


def _report(cfg, summary: dict) -> None:
    """The summary table, where the output went, and the first error reasons."""
    from pipeline.batch.summary import table
    from pipeline.storage import redact_url

    typer.echo(table(summary))
    out = redact_url(cfg.output.path.rstrip("/"))
    typer.echo(f"output: {out}/ (audio/, metadata/, summary.json)")
    samples = summary.get("this_run", {}).get("error_samples") or []
    if summary.get("errors"):
        typer.echo(f"{summary['errors']} row(s) failed; every reason is in {out}/errors/. First ones:")
        for sample in samples[:ERROR_SAMPLES_SHOWN]:
            typer.echo(f"  {sample}")
    if not summary["accounted"]:
        from pipeline.batch.accounting import ACCOUNTING_EXIT

        typer.echo(f"error: {summary.get('verdict') or 'some input rows are not accounted for'}", err=True)
        raise typer.Exit(summary.get("exit_code") or ACCOUNTING_EXIT)


ConfigArg = Annotated[Path, typer.Argument(help="Run config (YAML).", exists=True, dir_okay=False, readable=True)]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a dotted key, e.g. --set output.format=wav.")]


def register(app: typer.Typer) -> None:
    """Add `run` and `validate` to the barkpipe CLI."""

    @app.command("run")
    @guarded
    def _run(
        config: ConfigArg,
        overrides: SetOpt = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Check everything and show the plan; load no model.")
        ] = False,
        verbose: Annotated[
            bool, typer.Option("--verbose", "-v", help="Show Ray's own logs and progress bars.")
        ] = False,
        retry_errors: Annotated[
            bool, typer.Option("--retry-errors", help="Retry the rows earlier runs recorded as errors.")
        ] = False,
        redo: Annotated[
            str | None,
            typer.Option(
                "--redo",
                metavar="IDS|FILE|flagged",
                help="Redo these done rows: comma-separated ids, a file with one id per line, or 'flagged'.",
            ),
        ] = None,
    ) -> None:
        """Synthesize every row of the config's manifest (resumes an interrupted run)."""
        run_command(config, overrides or [], dry_run, verbose, retry_errors, redo)

    @app.command("validate")
    @guarded
    def _validate(config: ConfigArg, overrides: SetOpt = None) -> None:
        """Check the config, weights, voices, device, storage and the manifest without generating anything."""
        validate_command(config, overrides or [])
