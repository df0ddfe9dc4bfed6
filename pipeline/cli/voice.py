"""`barkpipe voice from-audio`: a Bark voice prompt (.npz) from a recording."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.errors import fail, guarded

voice_app = typer.Typer(
    no_args_is_help=True, add_completion=False, rich_markup_mode=None, help="Make Bark voice prompts."
)


def _read_audio(path: Path):
    """(float32 samples [N, C], sample rate) of an audio file; one-line exit 2 when it cannot be read."""
    import soundfile as sf

    if not path.is_file():
        fail(f"reference audio not found: {path}")
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        fail(f"cannot read {path} as audio ({err}); give a WAV, FLAC or OGG file")
    return audio, sr


@voice_app.command("from-audio")
@guarded
def _from_audio(
    reference: Annotated[Path, typer.Argument(help="A recording of one speaker, 2-30 s (about 10 s is best).")],
    out: Annotated[Path, typer.Option("--out", help="The voice prompt to write (.npz).")],
    weights: Annotated[
        Path, typer.Option("--weights", help="Bark weights folder holding hubert/ and quantizer.pth too.")
    ],
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps")] = "auto",
) -> None:
    """Write a voice prompt usable as `barkpipe say --voice OUT.npz` and in a manifest's voice column."""
    from pipeline.checks import CheckError, check_device, check_local_output

    if out.suffix != ".npz":
        fail(f"--out {out}: a voice prompt is an .npz file; give a path ending in .npz")
    try:
        check_device(device, "--device", fix="use --device cpu (or auto)")
        check_local_output(str(out.parent), "--out")
    except CheckError as err:
        fail(str(err))
    audio, sr = _read_audio(reference)

    from bark_model.cloning import load_cloning_models, save_voice_prompt, voice_prompt_from_audio
    from bark_model.constants import SEMANTIC_RATE_HZ
    from bark_model.device import resolve_device

    try:
        models = load_cloning_models(weights, resolve_device(device))
        prompt = voice_prompt_from_audio(audio, sr, models.hubert, models.quantizer, models.codec_encoder)
    except (ValueError, FileNotFoundError) as err:
        fail(f"{reference}: {err}" if "reference audio" in str(err) else str(err))
    path = save_voice_prompt(out, prompt)
    seconds = len(prompt["semantic_prompt"]) / SEMANTIC_RATE_HZ
    typer.echo(
        f"wrote {path}: {len(prompt['semantic_prompt'])} semantic tokens, {prompt['fine_prompt'].shape[1]} codec "
        f"frames (~{seconds:.1f} s); use it as --voice {path}"
    )


def register(app: typer.Typer) -> None:
    """Add the `voice` group to the barkpipe CLI."""
    app.add_typer(voice_app, name="voice")
