"""barkpipe command line: `run` and `validate` from pipeline.run_cli (the engine lead adds `say`, `weights`)."""

import typer

from pipeline import run_cli

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.callback()
def main() -> None:
    """Batch text-to-speech with Bark."""


run_cli.register(app)

if __name__ == "__main__":
    app(prog_name="barkpipe")
