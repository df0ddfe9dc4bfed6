"""barkpipe command line: say, weights, run, validate, manifest, book, report (heavy imports inside commands)."""

import typer

from pipeline.cli import book, export, manifest, report, run, say, voice, weights

app = typer.Typer(
    no_args_is_help=True, add_completion=False, rich_markup_mode=None, pretty_exceptions_show_locals=False
)


@app.callback()
def main() -> None:
    """Batch text-to-speech with Bark."""


app.add_typer(weights.weights_app, name="weights")
say.register(app)
run.register(app)
manifest.register(app)
book.register(app)
report.register(app)
voice.register(app)
export.register(app)

if __name__ == "__main__":
    app(prog_name="barkpipe")
