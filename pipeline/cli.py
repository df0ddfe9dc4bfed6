"""barkpipe command line: `say`, `weights`, `run`, `validate`, `manifest` (heavy imports live inside commands)."""

import typer

from pipeline import manifest_cli, run_cli, say_cli

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)


@app.callback()
def main() -> None:
    """Batch text-to-speech with Bark."""


say_cli.register(app)
run_cli.register(app)
manifest_cli.register(app)

if __name__ == "__main__":
    app(prog_name="barkpipe")
