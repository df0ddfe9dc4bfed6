"""barkpipe command line: `say`, `weights`, `run`, `validate`, `manifest` (heavy imports live inside commands)."""

import typer

from pipeline.cli import manifest, run, say

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)


@app.callback()
def main() -> None:
    """Batch text-to-speech with Bark."""


say.register(app)
run.register(app)
manifest.register(app)

if __name__ == "__main__":
    app(prog_name="barkpipe")
