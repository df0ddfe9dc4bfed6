"""`barkpipe run` and `barkpipe validate`: load the config, check it deeply, call one function."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.errors import fail, guarded
from pipeline.errors import INTERRUPTED_EXIT, INTERRUPTED_LINE, USER_ERROR_EXIT, USER_ERRORS

ERROR_SAMPLES_SHOWN = 3  # failed rows named at the end of a run; errors/ holds them all


def _load_and_check(config: Path, overrides: list[str], rows_fatal: bool = False):
    """(config, report), or exit 2 naming every problem (one `error:` line each); nothing is generated.

    rows_fatal (validate): problems of single manifest rows are errors too; in a run they are
    warnings, since those rows become error rows and the others go on. A run with an empty
    manifest ends here, saying so.
    """
    from pipeline.checks import check_run
    from pipeline.config import load_config
    from pipeline.configerrors import ConfigError

    try:
        cfg = load_config(config, overrides or [])
        report = check_run(cfg)
    except ConfigError as exc:  # a config that does not parse: later checks would mean nothing
        _fail_all(exc.problems)
    except USER_ERRORS as exc:
        fail(exc)
    problems = list(report.problems)
    if rows_fatal:
        problems += report.row_problems
        if report.empty:
            problems.append(f"{_manifest_where(cfg)} holds no rows; there is nothing to synthesize")
    _fail_all(problems)
    if not rows_fatal:
        for line in report.row_problems:
            typer.echo(f"warning: {_redact(line)} (these rows become error rows; the others run)", err=True)
        if report.empty:
            typer.echo(f"nothing to do: {_manifest_where(cfg)} holds no rows")
            raise typer.Exit(0)
    return cfg, report


def _manifest_where(cfg) -> str:
    return f"the manifest (input.path {_redact(cfg.input.path)!r})"


def _redact(text: str) -> str:
    from pipeline.storage import redact_url

    return redact_url(text)


def _fail_all(problems: list[str]) -> None:
    """Print `error: ...` for each problem and exit 2; nothing when there are none."""
    if not problems:
        return
    for problem in problems:
        typer.echo(f"error: {_redact(problem)}", err=True)
    raise typer.Exit(USER_ERROR_EXIT)


def validate_command(config: Path, overrides: list[str]) -> None:
    """Run every check that costs no generation: one line per check, or one `error:` line per problem."""
    _, report = _load_and_check(config, overrides, rows_fatal=True)
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
    from pipeline.batch.run import run
    from pipeline.output.lease import LeaseLost

    _log_to_stderr()
    try:
        summary = run(cfg, verbose=verbose, **resume)
    except KeyboardInterrupt:  # only `run` resumes, so only it says so
        typer.echo(INTERRUPTED_LINE, err=True)
        raise typer.Exit(INTERRUPTED_EXIT) from None
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
    """batch.run.run's resume keywords, only those the user set (so a runner without them still runs)."""
    from pipeline.batch.plan import parse_redo

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

    from pipeline.batch.outcome import plan, plan_table
    from pipeline.batch.run import prepare
    from pipeline.config import public_dict

    try:
        typer.echo(yaml.safe_dump(public_dict(cfg), sort_keys=False).rstrip())
        typer.echo("---")
        typer.echo(plan_table(plan(prepare(cfg))))
    except USER_ERRORS as exc:
        fail(exc)


def _report(cfg, summary: dict) -> None:
    """The summary table, where the output went, and the first error reasons."""
    from pipeline.batch.outcome import table
    from pipeline.output.layout import AUDIO, ERRORS, METADATA, SUMMARY
    from pipeline.storage import redact_url

    typer.echo(table(summary))
    out = redact_url(cfg.output.path.rstrip("/"))
    typer.echo(f"output: {out}/ ({AUDIO}/, {METADATA}/, {SUMMARY})")
    if summary.get("errors"):
        typer.echo(f"{summary['errors']} row(s) failed; every reason is in {out}/{ERRORS}/. First ones:")
        for sample in _error_reasons(cfg, summary):
            typer.echo(f"  {redact_url(sample)}")
    if not summary["accounted"]:
        from pipeline.output.summary import ACCOUNTING_EXIT

        typer.echo(f"error: {summary.get('verdict') or 'some input rows are not accounted for'}", err=True)
        raise typer.Exit(summary.get("exit_code") or ACCOUNTING_EXIT)


def _error_reasons(cfg, summary: dict) -> list[str]:
    """The first error reasons: this run's samples, then the manifest's id problems when the samples
    leave them out (summary.json's samples come from the rows the actors saw)."""
    samples = list((summary.get("this_run") or {}).get("error_samples") or [])[:ERROR_SAMPLES_SHOWN]
    if summary.get("manifest_errors") and not any("[manifest]" in s for s in samples):
        from pipeline.manifest.checks import id_problem_lines
        from pipeline.manifest.read import inspect_manifest, read_ids

        i = cfg.input
        try:
            info = inspect_manifest(i.path, i.storage_options, i.id_column, i.text_column)
            lines = id_problem_lines(read_ids(info))
        except (ValueError, OSError) as exc:  # the manifest changed or went away since the run read it
            lines = [f"manifest: cannot be read again to name its {summary['manifest_errors']} bad row(s) ({exc})"]
        samples = lines[: max(1, ERROR_SAMPLES_SHOWN - len(samples))] + samples
    return samples


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
        dashboard: Annotated[
            bool, typer.Option("--dashboard", help="Give a local run Ray's dashboard, on 127.0.0.1 only.")
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
        run_command(config, [*(overrides or []), *(["compute.dashboard=true"] if dashboard else [])], dry_run, verbose,
                    retry_errors, redo)  # fmt: skip

    @app.command("validate")
    @guarded
    def _validate(config: ConfigArg, overrides: SetOpt = None) -> None:
        """Check the config, weights, voices, device, storage and the manifest without generating anything."""
        validate_command(config, overrides or [])
