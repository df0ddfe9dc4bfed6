"""`barkpipe run` and `barkpipe validate`: load the config, call one function, one clear line on user errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.cli.errors import fail

UNACCOUNTED_EXIT = 1


def validate_command(config: Path, overrides: list[str]) -> None:
    """Check the config, the weights directory and the manifest's schema without running anything."""
    from pipeline.batch.config import load_config
    from pipeline.batch.manifest import id_problems, inspect_manifest, read_ids
    from pipeline.batch.runner import check_weights

    try:
        cfg = load_config(config, overrides or [])
        check_weights(cfg)
        i = cfg.input
        info = inspect_manifest(i.path, i.storage_options, i.id_column, i.text_column)
        _, problems = id_problems(read_ids(info))
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        fail(exc)
    typer.echo(f"config ok; manifest: {info.num_rows} rows in {len(info.files)} file(s), "
               f"columns {', '.join(info.schema.names)}")
    if problems:
        typer.echo(f"warning: {len(problems)} row(s) will be error rows, e.g. {problems[0]['error']}")


def run_command(config: Path, overrides: list[str], dry_run: bool) -> None:
    """Run the pipeline described by a config (or, with dry_run, print its plan)."""
    import yaml

    from pipeline.batch.config import load_config, public_dict
    from pipeline.batch.summary import plan, plan_table, table
    from pipeline.batch.runner import check_weights, prepare, run

    try:
        cfg = load_config(config, overrides or [])
        check_weights(cfg)
        if dry_run:
            typer.echo(yaml.safe_dump(public_dict(cfg), sort_keys=False).rstrip())
            typer.echo("---")
            typer.echo(plan_table(plan(prepare(cfg))))
            return
        summary = run(cfg)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        fail(exc)
    typer.echo(table(summary))
    if not summary["accounted"]:
        typer.echo("error: some input rows are neither written nor in errors/; rerun to resume them", err=True)
        raise typer.Exit(UNACCOUNTED_EXIT)


ConfigArg = Annotated[Path, typer.Argument(help="Run config (YAML).", exists=True, dir_okay=False, readable=True)]
SetOpt = Annotated[
    Optional[list[str]], typer.Option("--set", help="Override a dotted key, e.g. --set output.format=wav.")
]


def register(app: typer.Typer) -> None:
    """Add `run` and `validate` to the barkpipe CLI."""

    @app.command("run")
    def _run(
        config: ConfigArg,
        overrides: SetOpt = None,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; load no model.")] = False,
    ) -> None:
        """Synthesize every row of the config's manifest (resumes an interrupted run)."""
        run_command(config, overrides or [], dry_run)

    @app.command("validate")
    def _validate(config: ConfigArg, overrides: SetOpt = None) -> None:
        """Check a config and its manifest's schema without running."""
        validate_command(config, overrides or [])
