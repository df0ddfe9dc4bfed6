"""`barkpipe say`: one or a few texts to WAV files (or a stream), checked before the model loads."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from bark_model.names import PRECISIONS
from pipeline.cli.errors import fail as _fail
from pipeline.cli.errors import guarded
from pipeline.cli.sayprogress import Progress, StageBars, seconds_since_launch
from pipeline.errors import INTERRUPTED_EXIT, USER_ERRORS

DEFAULT_BATCH_SIZE = 8  # chunks per engine call when not streaming
PCM_SCALE = 32767  # float [-1, 1] -> signed 16-bit
# Random test weights never sample EOS, so without a limit every chunk runs to Bark's 15 s cap.
RANDOM_WEIGHTS_MAX_DURATION_S = 2.0
SHOWN_TEXT_TOKENS = 256  # what Bark reads of one utterance (bark_model.constants.MAX_TEXT_TOKENS)

# What `--out` may end in to name one audio file; several texts need a folder instead.
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".m4b", ".aac")


def _texts(texts: list[str], text_file: Path | None) -> list[str]:
    texts = list(texts or [])
    if text_file is not None:
        if not text_file.is_file():
            _fail(f"--text-file {text_file}: file not found")
        texts += [line.strip() for line in text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        _fail("nothing to say: give TEXT arguments or --text-file")
    for k, text in enumerate(texts):
        if not text.strip():
            _fail(f"text {k + 1} is empty: give words to say")
    return texts


def _out_paths(out: Path, n: int) -> list[Path]:
    """One text: `out` is the file. Several: `out` is a folder of 000.wav, 001.wav, ...; checked writable now."""
    from pipeline.checks import check_local_output

    if n == 1 and out.suffix.lower() == ".wav":
        folder, paths = out.parent, [out]
    elif n == 1 and not out.exists() and out.suffix:
        _fail(f"--out {out}: one text writes a .wav file; give a path ending in .wav")
    elif out.is_file():
        _fail(f"--out {out} is a file, but {n} texts need a folder")
    elif n > 1 and out.suffix.lower() in AUDIO_SUFFIXES:
        _fail(f"--out {out} names one {out.suffix} file, but {n} texts need a folder (they are written "
              f"as 000.wav, 001.wav, ... inside it): give e.g. --out {out.with_suffix('')}")  # fmt: skip
    else:
        folder, paths = out, [out / f"{i:03d}.wav" for i in range(n)]
    check_local_output(str(folder), "--out")
    for path in paths:
        if path.exists() and not (path.is_file() and os.access(path, os.W_OK)):
            _fail(f"--out {path} exists and cannot be overwritten; choose another --out")
    return paths


def _check_arguments(texts, out, weights, voice, device, precision, save_codes, stream, no_split, text_format="plain",
                     lexicon=None):  # fmt: skip
    """Everything that can be wrong with the arguments, found before the model loads (seconds of work)."""
    from pipeline.checks import check_device, check_voice, check_weights
    from pipeline.text.chunks import plan_text, text_token_counter

    if stream and (len(texts) != 1 or save_codes is not None):
        _fail("--stream speaks exactly one text and cannot --save-codes")
    if stream and str(out) != "-" and out.suffix.lower() != ".wav":
        _fail(f"--out {out}: --stream writes a .wav file, or raw 16-bit PCM to stdout with --out -")
    if stream and no_split:
        _fail("--no-split speaks one utterance; --stream needs chunks: give one of them")
    if no_split and text_format == "ssml":
        _fail("--no-split speaks the text as given; --ssml needs it parsed and chunked: give one of them")
    if save_codes is not None and len(texts) != 1:
        _fail("--save-codes writes the codes of one text; give exactly one text")
    if precision not in PRECISIONS:
        _fail(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    check_device(device, "--device", fix="use --device cpu (or auto)")
    if not no_split:
        for k, text in enumerate(texts):
            # Empty after normalisation, a cue too long to fit in a chunk, malformed SSML.
            _, notes = plan_text(text, text_format=text_format, voice=voice, lexicon=lexicon)
            for note in notes:
                typer.echo(f"note: text {k + 1}: {note}", err=True)
    info = check_weights(_local_weights(weights), "--weights")
    try:
        text_token_counter(info.root)  # an empty or damaged vocab.txt / tokenizer.json: one line naming it
    except ValueError as err:
        _fail(f"--weights: {err}")
    if voice is not None and voice.strip().endswith(".npz") and Path(voice.strip()).is_file():
        from bark_model.voices import check_voice_file

        try:
            check_voice_file(voice.strip())  # headers only: a file declaring huge arrays is refused unread
        except ValueError as err:
            _fail(f"--voice: {err}")
    check_voice(voice, info.root, "--voice")
    if save_codes is not None:
        from pipeline.checks import check_local_output

        check_local_output(str(save_codes.parent), "--save-codes")
    return info


def say_command(texts, text_file, weights, out, voice, seed, temperature, text_temp, waveform_temp,
                max_duration, batch_size, save_codes, device, precision, stream=False, no_split=False,
                compile=None, ssml=False, lexicon=None) -> None:  # fmt: skip
    """Synthesise each text to a WAV; long texts are split into chunks and joined (unless no_split).

    Ctrl-C says what was written (this command does not resume) and exits 130.
    """
    done = Progress(launched=time.perf_counter() - (seconds_since_launch() or 0.0))
    try:
        _say(texts, text_file, weights, out, voice, seed, temperature, text_temp, waveform_temp, max_duration,
             batch_size, save_codes, device, precision, stream, no_split, compile, done, ssml, lexicon)  # fmt: skip
    except KeyboardInterrupt:
        typer.echo(f"interrupted; {done.describe()}", err=True)
        raise typer.Exit(INTERRUPTED_EXIT) from None


def _say(texts, text_file, weights, out, voice, seed, temperature, text_temp, waveform_temp, max_duration,
         batch_size, save_codes, device, precision, stream, no_split, compile, done: Progress, ssml=False,
         lexicon_path=None) -> None:  # fmt: skip
    from pipeline.text.lexicon import load_lexicon

    texts = _texts(texts, text_file)
    if temperature is not None:
        text_temp = waveform_temp = temperature
    text_format = "ssml" if ssml else "plain"
    try:
        lexicon = None if lexicon_path is None else load_lexicon(lexicon_path)
    except USER_ERRORS as err:
        _fail(f"--lexicon: {err}")
    try:
        paths = [out] if stream else _out_paths(out, len(texts))
        info = _check_arguments(texts, out, weights, voice, device, precision, save_codes, stream, no_split,
                                text_format, lexicon)  # fmt: skip
    except USER_ERRORS as err:
        _fail(err)
    done.planned = len(paths)
    weights = info.root
    if info.random:
        if max_duration is None:
            max_duration = RANDOM_WEIGHTS_MAX_DURATION_S
            typer.echo(f"note: {weights} holds random test weights: the audio is noise and never ends on its own, "
                       f"so each chunk stops at {max_duration:g} s (--max-duration to change)", err=True)  # fmt: skip
        else:
            typer.echo(f"note: {weights} holds random test weights; the audio will be noise", err=True)
    engine = _load_engine(weights, voice, device, precision, compile)
    sampling = dict(voice=voice, seed=seed, text_temp=text_temp, waveform_temp=waveform_temp, max_duration=max_duration)
    if no_split and lexicon is not None:  # the text is spoken as given, so it is respelled as given
        texts = [lexicon.apply(text) for text in texts]
    elif not no_split:
        sampling |= dict(text_format=text_format, lexicon=lexicon)
    if stream:
        return _say_stream(engine, texts[0], out, batch_size or 1, sampling, done)
    batch_size = batch_size or DEFAULT_BATCH_SIZE
    try:
        planned = _plan_unsplit(engine, texts, sampling) if no_split else _plan(engine, texts, sampling)
        if save_codes is not None and len(planned[0][1]) != 1:
            _fail(f"--save-codes writes one utterance's codes, but this text makes {len(planned[0][1])} chunks; "
                  "add --no-split to speak it as one utterance (Bark reads its first 256 tokens)")  # fmt: skip
        spoken = _speak(engine, planned, batch_size, no_split)
    except USER_ERRORS as err:
        _fail(err)
    _write_all(spoken, paths, save_codes, done.written)


def _write_all(spoken, paths: list[Path], save_codes: Path | None, written: list[Path]) -> None:
    """Write each text's WAV (and the codes); `written` grows as files land, for the Ctrl-C line."""
    import soundfile as sf

    if save_codes is not None:
        spoken[0].results[0].save_codes(save_codes)
        typer.echo(f"wrote {save_codes} (the codes as a voice prompt)")
    for one, path in zip(spoken, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, one.audio, one.sample_rate, subtype="PCM_16")
        written.append(path)
        typer.echo(f"wrote {path} ({one.duration_s:.2f} s, {len(one.results)} chunk(s))")


def _local_weights(weights: str) -> Path:
    """A local weights folder: the path itself, or a URL fetched into the node cache (once)."""
    from pipeline.weights import fetch_weights, is_remote

    return fetch_weights(weights) if is_remote(weights) else Path(weights)


def _plan(engine, texts: list[str], sampling: dict):
    from pipeline.speak import plan_many

    return plan_many(engine, texts, **sampling)


def _plan_unsplit(engine, texts: list[str], sampling: dict):
    """One utterance per text, the text as given: the official generate_audio's input (truncated at 256 tokens)."""
    from bark_model import GenerationRequest

    planned = []
    for k, text in enumerate(texts):
        n = engine.count_text_tokens(text)
        if n > SHOWN_TEXT_TOKENS:
            typer.echo(f"note: text {k + 1} has {n} tokens; Bark reads the first {SHOWN_TEXT_TOKENS} and drops "
                       f"{n - SHOWN_TEXT_TOKENS} (as the official generate_audio does; without --no-split it is split "
                       "into chunks)", err=True)  # fmt: skip
        s = sampling
        request = GenerationRequest.simple(
            text, voice=s["voice"], seed=s["seed"], text_temp=s["text_temp"], waveform_temp=s["waveform_temp"],
            max_duration_s=s["max_duration"],
        )  # fmt: skip
        planned.append(([None], [request]))
    return planned


def _speak(engine, planned, batch_size: int, no_split: bool):
    from pipeline.speak import SpokenText, speak_planned

    bars = StageBars(sum(len(requests) for _, requests in planned))
    try:
        if not no_split:
            return speak_planned(engine, planned, batch_size=batch_size, progress=bars)
        results = engine.generate([r for _, [r] in planned], batch_size=batch_size, progress=bars)
        return [
            SpokenText(r.audio.astype("float32"), r.sample_rate, [r], chunks)
            for r, (chunks, _) in zip(results, planned, strict=True)
        ]
    finally:
        bars.close()


def _load_engine(weights: Path, voice, device: str, precision: str, compile: bool | None = None):
    from bark_model import BarkEngine

    try:
        engine = BarkEngine.from_dir(weights, device=device, precision=precision, compile=compile)
        engine.load_voice(voice)
    except (ValueError, FileNotFoundError) as err:
        _fail(str(err))
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        # torch.load of a file whose header looked fine (a legacy pickle cut short, bad bytes inside).
        first = (str(err).splitlines() or [type(err).__name__])[0][:200]
        _fail(f"--weights {weights}: a weight file cannot be loaded ({type(err).__name__}: {first}); "
              "it may be damaged: download it again")  # fmt: skip
    return engine


def _say_stream(engine, text: str, out: Path, batch_size: int, sampling: dict, done: Progress) -> None:
    """Write audio as chunks arrive: a growing WAV (header first, flushed per chunk) or raw PCM on stdout.

    Times count from the process launch (what a listener waits), with the part after the model loaded.
    """
    import sys

    import numpy as np
    import soundfile as sf

    from bark_model.constants import SAMPLE_RATE
    from pipeline.speak import stream_speech

    to_stdout = str(out) == "-"
    where = "stdout (raw PCM s16le, 24 kHz mono)" if to_stdout else str(out)
    sink: Any  # sys.stdout.buffer (takes PCM bytes) or a soundfile.SoundFile (takes float samples)
    if to_stdout:
        sink = sys.stdout.buffer
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        sink = sf.SoundFile(out, "w", samplerate=SAMPLE_RATE, channels=1, subtype="PCM_16")
    loaded, first, n_samples, n_chunks = time.perf_counter(), "", 0, 0
    try:
        for piece in stream_speech(engine, text, batch_size=batch_size, **sampling):
            if to_stdout:
                pcm = np.clip(np.round(piece * PCM_SCALE), -PCM_SCALE - 1, PCM_SCALE).astype("<i2")
                sink.write(pcm.tobytes())
            else:
                sink.write(piece)
            sink.flush()
            n_samples, n_chunks = n_samples + len(piece), n_chunks + 1
            done.streamed = (where, n_samples / SAMPLE_RATE, n_chunks)
            now = time.perf_counter()
            if not first:
                first = (f"first audio {now - done.launched:.1f} s after launch "
                         f"({now - loaded:.1f} s after the model loaded)")  # fmt: skip
                typer.echo(first, err=True)
            typer.echo(f"chunk {n_chunks} ready {now - done.launched:.2f} s after launch", err=True)
    except ValueError as err:
        _fail(str(err))
    finally:
        if not to_stdout:
            sink.close()
    typer.echo(f"wrote {where} ({n_samples / SAMPLE_RATE:.2f} s, {n_chunks} chunk(s)); {first}, all audio "
               f"{time.perf_counter() - done.launched:.1f} s after launch", err=to_stdout)  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add `say` to the barkpipe CLI."""

    @app.command("say")
    @guarded
    def _say(
        texts: Annotated[list[str] | None, typer.Argument(help="Text(s) to speak.", show_default=False)] = None,
        text_file: Annotated[Path | None, typer.Option("--text-file", help="One text per line.")] = None,
        # str, not Path: Path("s3://b/p") would collapse the "//" of a URL.
        weights: Annotated[
            str,
            typer.Option(
                "--weights",
                help="Weights: a folder (Suno or HF layout), s3://bucket/prefix "
                "(any fsspec URL) or hf://owner/repo[@revision].",
            ),
        ] = "weights/tiny",
        out: Annotated[Path, typer.Option("--out", help="A .wav for one text, a folder for several.")] = Path(
            "out/say.wav"
        ),
        voice: Annotated[str | None, typer.Option("--voice", help="Preset (v2/en_speaker_6) or .npz path.")] = None,
        seed: Annotated[
            int, typer.Option("--seed", help="Random seed; chunk k of a long text uses a seed derived from it.")
        ] = 0,
        temperature: Annotated[
            float | None, typer.Option("--temperature", help="Both temperatures; 0 = greedy.")
        ] = None,
        text_temp: Annotated[
            float, typer.Option("--text-temp", help="Semantic (text -> tokens) temperature; 0 = greedy.")
        ] = 0.7,
        waveform_temp: Annotated[
            float, typer.Option("--waveform-temp", help="Coarse (tokens -> codes) temperature; 0 = greedy.")
        ] = 0.7,
        max_duration: Annotated[
            float | None,
            typer.Option(
                "--max-duration",
                help="Longest audio per chunk, in seconds.",
                show_default="Bark's limit; 2 s with random test weights",
            ),
        ] = None,
        batch_size: Annotated[
            int | None,
            typer.Option("--batch-size", min=1, help="Chunks per engine call.", show_default="8, 1 with --stream"),
        ] = None,
        save_codes: Annotated[
            Path | None, typer.Option("--save-codes", help="Write the codes of one utterance as a voice .npz.")
        ] = None,
        device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps")] = "auto",
        precision: Annotated[str, typer.Option("--precision", help="fp32 | fp16 | bf16 | int8")] = "fp32",
        stream: Annotated[
            bool, typer.Option("--stream", help="Write audio as each chunk is ready; --out - gives raw PCM on stdout.")
        ] = False,
        no_split: Annotated[
            bool,
            typer.Option(
                "--no-split",
                help="Speak each text as one Bark utterance, as given, like the "
                "official generate_audio (Bark reads its first 256 tokens).",
            ),
        ] = False,
        compile: Annotated[
            bool | None,
            typer.Option(
                "--compile/--no-compile",
                help="Fuse decode steps with torch.compile.",
                show_default="on for CUDA, off elsewhere",
            ),
        ] = None,
        ssml: Annotated[
            bool,
            typer.Option("--ssml", help="Read the text as SSML (<break>, <p>, <sub>, <say-as>, <voice>, <lang>, ...)."),
        ] = False,
        lexicon: Annotated[
            Path | None,
            typer.Option("--lexicon", help="TSV of word<TAB>respelling[<TAB>language] lines: whole words respelled."),
        ] = None,
    ) -> None:
        """Speak one or a few texts to WAV files (long texts are split into chunks and joined)."""
        say_command(texts, text_file, weights, out, voice, seed, temperature, text_temp, waveform_temp,
                    max_duration, batch_size, save_codes, device, precision, stream, no_split, compile, ssml,
                    lexicon)  # fmt: skip
