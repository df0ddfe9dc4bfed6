"""`barkpipe say` and `barkpipe weights`: one or a few utterances, and getting weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.cli.errors import fail as _fail

DEFAULT_BATCH_SIZE = 8  # chunks per engine call when not streaming
PCM_SCALE = 32767  # float [-1, 1] -> signed 16-bit

weights_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Get Bark weights.")


def _texts(texts: list[str], text_file: Optional[Path]) -> list[str]:
    texts = list(texts or [])
    if text_file is not None:
        if not text_file.is_file():
            _fail(f"text file not found: {text_file}")
        texts += [line.strip() for line in text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        _fail("nothing to say: give TEXT arguments or --text-file")
    return texts


def _out_paths(out: Path, n: int) -> list[Path]:
    """One text: `out` is the file. Several: `out` is a folder of 000.wav, 001.wav, ..."""
    if n == 1 and out.suffix.lower() == ".wav":
        out.parent.mkdir(parents=True, exist_ok=True)
        return [out]
    if n == 1 and not out.exists() and out.suffix:
        _fail(f"--out {out}: one text writes a .wav file; give a path ending in .wav")
    if out.is_file():
        _fail(f"--out {out} is a file, but {n} texts need a folder")
    out.mkdir(parents=True, exist_ok=True)
    return [out / f"{i:03d}.wav" for i in range(n)]


def say_command(texts, text_file, weights, out, voice, seed, temperature, text_temp, waveform_temp,
                max_duration, batch_size, save_codes, device, precision, stream=False) -> None:  # fmt: skip
    """Synthesise each text to a WAV; long texts are split into chunks and joined."""
    import soundfile as sf
    from tqdm import tqdm

    from pipeline.longform import speak_many

    texts = _texts(texts, text_file)
    if temperature is not None:
        text_temp = waveform_temp = temperature
    if stream:
        if len(texts) != 1 or save_codes is not None:
            _fail("--stream speaks exactly one text and cannot --save-codes")
        if str(out) != "-" and out.suffix.lower() != ".wav":
            _fail(f"--out {out}: --stream writes a .wav file, or raw 16-bit PCM to stdout with --out -")
    paths = [out] if stream else _out_paths(out, len(texts))
    if save_codes is not None and len(texts) != 1:
        _fail("--save-codes writes the codes of one text; give exactly one text")
    engine = _load_engine(weights, voice, device, precision)
    sampling = dict(voice=voice, seed=seed, text_temp=text_temp, waveform_temp=waveform_temp, max_duration=max_duration)
    if stream:
        return _say_stream(engine, texts[0], out, batch_size or 1, sampling)
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    bar = tqdm(total=0, unit="chunk", desc="say")

    def progress(_stage, done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        spoken = speak_many(engine, texts, batch_size=batch_size, progress=progress, **sampling)
    except ValueError as err:
        _fail(str(err))
    finally:
        bar.close()
    if save_codes is not None:
        if len(spoken[0].results) != 1:
            _fail("--save-codes needs a text short enough for one chunk (it writes one utterance's codes)")
        spoken[0].results[0].save_codes(save_codes)
    for one, path in zip(spoken, paths):
        sf.write(path, one.audio, one.sample_rate, subtype="PCM_16")
        typer.echo(f"wrote {path} ({one.duration_s:.2f} s, {len(one.results)} chunk(s))")


def _load_engine(weights: Path, voice, device: str, precision: str):
    from bark_model import BarkEngine

    try:
        engine = BarkEngine.from_dir(weights, device=device, precision=precision)
        engine.load_voice(voice)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    if (weights / "RANDOM_WEIGHTS.txt").is_file():
        typer.echo("note: these are random test weights; the audio will be noise", err=True)
    return engine


def _say_stream(engine, text: str, out: Path, batch_size: int, sampling: dict) -> None:
    """Write audio as chunks arrive: a growing WAV (header first, flushed per chunk) or raw PCM on stdout."""
    import sys
    import time

    import numpy as np
    import soundfile as sf

    from bark_model.constants import SAMPLE_RATE
    from pipeline.longform import stream_speech

    to_stdout = str(out) == "-"
    if to_stdout:
        sink = sys.stdout.buffer
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        sink = sf.SoundFile(out, "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16")
    start, first, n_samples, n_chunks = time.perf_counter(), None, 0, 0
    try:
        for piece in stream_speech(engine, text, batch_size=batch_size, **sampling):
            if to_stdout:
                pcm = np.clip(np.round(piece * PCM_SCALE), -PCM_SCALE - 1, PCM_SCALE).astype("<i2")
                sink.write(pcm.tobytes())
            else:
                sink.write(piece)
            sink.flush()
            n_samples, n_chunks = n_samples + len(piece), n_chunks + 1
            elapsed = time.perf_counter() - start
            if first is None:
                first = elapsed
                typer.echo(f"first audio after {first:.2f} s", err=True)
            typer.echo(f"chunk {n_chunks} ready at {elapsed:.2f} s", err=True)
    except ValueError as err:
        _fail(str(err))
    finally:
        if not to_stdout:
            sink.close()
    where = "stdout (raw PCM s16le, 24 kHz mono)" if to_stdout else str(out)
    typer.echo(f"wrote {where} ({n_samples / SAMPLE_RATE:.2f} s, {n_chunks} chunk(s)); first audio after "
               f"{first:.2f} s of {time.perf_counter() - start:.2f} s", err=to_stdout)  # fmt: skip


@weights_app.command("download")
def _download(
    out_dir: Annotated[Path, typer.Argument(help="Where to put the weights.")],
    model: Annotated[str, typer.Option("--model", help="large | small")] = "large",
    layout: Annotated[str, typer.Option("--layout", help="hf (one BarkModel file, smaller) | suno (raw .pt files)")] = "hf",
) -> None:
    """Download Bark from the Hugging Face Hub (resumes if interrupted)."""
    from bark_model.download import DownloadError, download_weights

    try:
        path = download_weights(out_dir, model=model, layout=layout)
    except (ValueError, DownloadError) as err:
        _fail(str(err))
    typer.echo(f"Bark {model} weights ({layout} layout) are in {path}")


@weights_app.command("make-random")
def _make_random(
    out_dir: Annotated[Path, typer.Argument(help="Where to write them.")],
    size: Annotated[str, typer.Option("--size", help="tiny | small | large")] = "tiny",
    layout: Annotated[str, typer.Option("--layout", help="suno | hf")] = "suno",
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Random weights in the real formats, for tests, demos and benchmarks (the audio is noise)."""
    from bark_model.random_weights import make_random_weights

    try:
        path = make_random_weights(out_dir, size=size, layout=layout, seed=seed)
    except ValueError as err:
        _fail(str(err))
    typer.echo(f"wrote random {size} weights ({layout} layout) to {path}; they only make noise")


def register(app: typer.Typer) -> None:
    """Add `say` and the `weights` group to the barkpipe CLI."""
    app.add_typer(weights_app, name="weights")

    @app.command("say")
    def _say(
        texts: Annotated[Optional[list[str]], typer.Argument(help="Text(s) to speak.")] = None,
        text_file: Annotated[Optional[Path], typer.Option("--text-file", help="One text per line.")] = None,
        weights: Annotated[Path, typer.Option("--weights", help="Weights directory (Suno or HF layout).")] = Path("weights/tiny"),
        out: Annotated[Path, typer.Option("--out", help="A .wav for one text, a folder for several.")] = Path("out/say.wav"),
        voice: Annotated[Optional[str], typer.Option("--voice", help="Preset (v2/en_speaker_6) or .npz path.")] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        temperature: Annotated[Optional[float], typer.Option("--temperature", help="Both temperatures; 0 = greedy.")] = None,
        text_temp: Annotated[float, typer.Option("--text-temp")] = 0.7,
        waveform_temp: Annotated[float, typer.Option("--waveform-temp")] = 0.7,
        max_duration: Annotated[Optional[float], typer.Option("--max-duration", help="Seconds per chunk.")] = None,
        batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Chunks per engine call [default: 8, 1 with --stream].")] = None,
        save_codes: Annotated[Optional[Path], typer.Option("--save-codes", help="Write the codes as a voice .npz.")] = None,
        device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | mps")] = "auto",
        precision: Annotated[str, typer.Option("--precision", help="fp32 | fp16 | bf16 | int8")] = "fp32",
        stream: Annotated[bool, typer.Option("--stream", help="Write audio as each chunk is ready; --out - gives raw PCM on stdout.")] = False,
    ) -> None:
        """Speak one or a few texts to WAV files."""
        say_command(texts, text_file, weights, out, voice, seed, temperature, text_temp, waveform_temp,
                    max_duration, batch_size, save_codes, device, precision, stream)  # fmt: skip
