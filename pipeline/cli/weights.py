"""`barkpipe weights download` and `barkpipe weights make-random`: getting weights onto this machine."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.errors import fail, guarded

HUB_PARTIAL_SUFFIX = ".incomplete"  # huggingface_hub's half-downloaded files, which a rerun resumes

weights_app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None, help="Get Bark weights.")


@weights_app.command("download")
@guarded
def _download(
    out_dir: Annotated[Path, typer.Argument(help="Where to put the weights.")],
    model: Annotated[str, typer.Option("--model", help="large | small")] = "large",
    layout: Annotated[
        str, typer.Option("--layout", help="hf (one BarkModel file, smaller) | suno (raw .pt files)")
    ] = "hf",
) -> None:
    """Download Bark from the Hugging Face Hub (resumes if interrupted)."""
    from bark_model.download import DownloadError, download_weights

    created = _first_missing(out_dir)  # the folder (or an ancestor) this command creates, if any
    was_empty = created is None and out_dir.is_dir() and not any(out_dir.iterdir())
    try:
        path = download_weights(out_dir, model=model, layout=layout)
    except ValueError as err:
        fail(str(err))
    except DownloadError as err:
        fail(f"{err}; {_clean_up(out_dir, created, was_empty)}")
    typer.echo(f"Bark {model} weights ({layout} layout) are in {path}")


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (what mkdir(parents=True) would create)."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing = folder
    return missing


def _clean_up(out_dir: Path, created: Path | None, was_empty: bool) -> str:
    """Remove what a failed download left, unless downloaded data is there to resume from; says which."""
    if not out_dir.is_dir():
        return "nothing was written"
    if (created is None and not was_empty) or _has_data(out_dir):
        return f"the files in {out_dir} are kept: run the same command again to resume"
    if created is not None:
        shutil.rmtree(created)
        return f"the folder {created} it made is removed"
    for entry in out_dir.iterdir():  # the folder was empty before: all of this is the download's
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return f"{out_dir} is empty again"


def _has_data(folder: Path) -> bool:
    """A downloaded file, or a partial one to resume, is in `folder` (hub bookkeeping alone does not count)."""
    from pipeline.weights.cache import HF_STATE

    for file in folder.rglob("*"):
        if not file.is_file() or file.stat().st_size == 0:
            continue
        bookkeeping = file.relative_to(folder).parts[0] == HF_STATE
        if not bookkeeping or file.name.endswith(HUB_PARTIAL_SUFFIX):
            return True
    return False


@weights_app.command("make-random")
@guarded
def _make_random(
    out_dir: Annotated[Path, typer.Argument(help="Where to write them.")],
    size: Annotated[str, typer.Option("--size", help="tiny | small | large")] = "tiny",
    layout: Annotated[str, typer.Option("--layout", help="suno | hf")] = "suno",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights (same seed, same files).")] = 0,
    with_cloning: Annotated[
        bool,
        typer.Option("--with-cloning", help="Also write hubert/ and quantizer.pth for `barkpipe voice from-audio`."),
    ] = False,
) -> None:
    """Random weights in the real formats, for tests, demos and benchmarks (the audio is noise)."""
    from bark_model.random_weights import make_random_cloning_weights, make_random_weights

    try:
        path = make_random_weights(out_dir, size=size, layout=layout, seed=seed)
        if with_cloning:
            make_random_cloning_weights(out_dir, size=size, seed=seed)
    except ValueError as err:
        fail(str(err))
    extra = " with voice cloning weights" if with_cloning else ""
    typer.echo(f"wrote random {size} weights ({layout} layout){extra} to {path}; they only make noise")
