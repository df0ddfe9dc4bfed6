"""`barkpipe say` and `barkpipe weights` through the real CLI entry point."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from bark_model import VoicePrompt
from pipeline.cli import app

runner = CliRunner()


def test_say_no_split_writes_the_utterance_and_its_codes(tiny_suno, tmp_path):
    out, codes = tmp_path / "hello.wav", tmp_path / "hello.npz"
    result = runner.invoke(app, ["say", "Hello [laughs] there.", "--weights", str(tiny_suno), "--out", str(out),
                                 "--max-duration", "0.5", "--temperature", "0", "--save-codes", str(codes),
                                 "--device", "cpu", "--no-split"])  # fmt: skip
    assert result.exit_code == 0, result.output
    audio, sr = sf.read(out)
    assert sr == 24_000 and len(audio) > 0
    voice = VoicePrompt.from_npz(codes)
    assert len(audio) == 320 * voice.fine.shape[1]  # untrimmed: exactly what the codes decode to
    assert "random test weights" in result.output


def test_say_several_texts_write_a_folder(tiny_suno, tmp_path):
    texts = tmp_path / "lines.txt"
    texts.write_text("First line.\n\nSecond line.\n")
    result = runner.invoke(app, ["say", "Zero.", "--text-file", str(texts), "--weights", str(tiny_suno), "--out",
                                 str(tmp_path / "many"), "--max-duration", "0.3", "--batch-size", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["000.wav", "001.wav", "002.wav"]


def test_say_greedy_is_reproducible(tiny_suno, tmp_path):
    args = ["say", "Same words.", "--weights", str(tiny_suno), "--max-duration", "0.4", "--temperature", "0"]
    for name in ("a.wav", "b.wav"):
        assert runner.invoke(app, args + ["--out", str(tmp_path / name)]).exit_code == 0
    np.testing.assert_array_equal(sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0])


def test_say_errors_are_one_clear_line(tiny_suno, tmp_path):
    missing = runner.invoke(app, ["say", "Hi.", "--weights", str(tmp_path / "none"), "--out", str(tmp_path / "x.wav")])
    assert missing.exit_code == 2 and "barkpipe weights download" in missing.output
    voice = runner.invoke(app, ["say", "Hi.", "--weights", str(tiny_suno), "--voice", "v2/zz_speaker_1",
                                "--out", str(tmp_path / "x.wav")])  # fmt: skip
    assert voice.exit_code == 2 and "unknown voice 'v2/zz_speaker_1'" in voice.output
    empty = runner.invoke(app, ["say", "--weights", str(tiny_suno), "--out", str(tmp_path / "x.wav")])
    assert empty.exit_code == 2 and "nothing to say" in empty.output
    assert "Traceback" not in missing.output + voice.output + empty.output


def test_make_random_and_offline_download(tmp_path, monkeypatch):
    made = runner.invoke(app, ["weights", "make-random", str(tmp_path / "w"), "--size", "tiny", "--layout", "hf"])
    assert made.exit_code == 0 and (tmp_path / "w" / "model.safetensors").is_file()
    bad = runner.invoke(app, ["weights", "make-random", str(tmp_path / "w2"), "--size", "huge"])
    assert bad.exit_code == 2 and "size must be one of" in bad.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = runner.invoke(app, ["weights", "download", str(tmp_path / "dl"), "--model", "small"])
    assert offline.exit_code == 2 and "could not download Bark small" in offline.output


# -- one text path, --no-split, progress -----------------------------------------------------------


def test_no_split_speaks_the_text_as_given_like_generate_audio(engine, tiny_suno, tmp_path):
    from bark_model import GenerationRequest

    text = " ".join(["word"] * 300)  # 300 tokens: Bark reads 256 of them
    codes = tmp_path / "long.npz"
    result = runner.invoke(app, ["say", text, "--no-split", "--weights", str(tiny_suno),
                                 "--out", str(tmp_path / "l.wav"), "--save-codes", str(codes), "--temperature", "0",
                                 "--max-duration", "0.3",
                                 "--device", "cpu", "--seed", "5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "text 1 has 300 tokens; Bark reads the first 256 and drops 44" in result.output
    [direct] = engine.generate(
        [GenerationRequest.simple(text, seed=5, text_temp=0, waveform_temp=0, max_duration_s=0.3)]
    )
    saved = VoicePrompt.from_npz(codes)
    np.testing.assert_array_equal(saved.semantic, direct.semantic)
    np.testing.assert_array_equal(saved.fine, direct.fine)


def test_save_codes_of_a_many_chunk_text_points_to_no_split(tiny_suno, tmp_path, monkeypatch):
    from bark_model import BarkEngine

    text = "First paragraph here.\n\nSecond paragraph here."
    calls = []
    monkeypatch.setattr(BarkEngine, "generate", lambda *a, **k: calls.append(1) or pytest.fail("generated"))
    result = runner.invoke(app, ["say", text, "--weights", str(tiny_suno), "--out", str(tmp_path / "x.wav"),
                                 "--save-codes", str(tmp_path / "x.npz"), "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 2 and "this text makes 2 chunks; add --no-split" in result.output
    assert not calls


def test_say_uses_the_run_segment_settings(engine, tmp_path):
    """say's audio is assemble.join_audio of the chunk audio with SegmentConfig's defaults (as a run row)."""
    from pipeline.audio.assemble import join_audio
    from pipeline.config import SegmentConfig
    from pipeline.speak import speak

    text = "A first sentence here. And a second one.\n\nA new paragraph."
    spoken = speak(engine, text, max_duration=0.3, text_temp=0, waveform_temp=0)
    breaks = [c.paragraph_break_after for c in spoken.chunks]
    again = join_audio([r.audio for r in spoken.results], 24_000, breaks, SegmentConfig())
    np.testing.assert_array_equal(spoken.audio, again)
    loud = SegmentConfig(loudness_lufs=-20.0)
    louder = speak(engine, text, max_duration=0.3, text_temp=0, waveform_temp=0, segment=loud)
    assert not np.array_equal(louder.audio, spoken.audio)


def test_the_dry_run_token_count_is_the_engines(engine, tiny_suno, tiny_hf):
    from pipeline.text.chunks import text_token_counter

    texts = ["Hello there!", "Ünïcödé façade — naïve 東京 [laughs] ♪ la la ♪", "  spaced \n\n out  text  "]
    for weights in (tiny_suno, tiny_hf):
        count = text_token_counter(weights)
        assert [count(t) for t in texts] == [engine.count_text_tokens(t) for t in texts]


def test_say_shows_one_progress_line_per_stage(tiny_suno, tmp_path):
    result = runner.invoke(app, ["say", "One sentence.\n\nAnother one.", "--weights", str(tiny_suno), "--device", "cpu",
                                 "--out", str(tmp_path / "p.wav"), "--max-duration", "0.2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    for stage in ("semantic", "coarse", "fine", "decode"):
        assert re.search(rf"{stage}\s*: 100%.*2/2", result.stderr), result.stderr


def test_random_weights_get_a_short_default_duration(tiny_suno, tmp_path):
    out = tmp_path / "r.wav"
    result = runner.invoke(app, ["say", "Hi.", "--weights", str(tiny_suno), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    note = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and "never ends on its own, so each chunk stops at 2 s" in note[0]
    assert sf.info(out).duration <= 2.0 + 1e-3


# -- argument errors, before the model loads ---------------------------------------------------------


@pytest.fixture
def no_model(monkeypatch):
    from bark_model import BarkEngine

    monkeypatch.setattr(BarkEngine, "from_dir", classmethod(lambda *a, **k: pytest.fail("the model was loaded")))


def _damaged(tiny_suno, tmp_path, name: str, how: str):
    weights = Path(shutil.copytree(tiny_suno, tmp_path / "w"))
    if how == "missing":
        (weights / name).unlink()
    elif how == "emptied":
        (weights / name).write_bytes(b"")
    elif how == "garbage":
        (weights / name).write_bytes(bytes(range(256)) * 16)
    else:
        data = (weights / name).read_bytes()
        (weights / name).write_bytes(data[: len(data) // 3])
    return str(weights)


CASES = {
    "empty text": (["   "], "text 1 is empty"),
    "nothing after normalising": (["\n\n"], "text 1 is empty"),
    "bad device": (["Hi.", "--device", "tpu"], "--device must be auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    "bad precision": (["Hi.", "--precision", "fp8"], "--precision must be one of fp32, fp16, bf16, int8"),
    "codes of two texts": (
        ["One.", "Two.", "--save-codes", "c.npz", "--out", "many"],
        "--save-codes writes the codes of one text",
    ),
    "stream and no-split": (["Hi.", "--stream", "--no-split"], "--no-split speaks one utterance"),
    "bad voice": (["Hi.", "--voice", "v2/zz_speaker_1"], "--voice: unknown voice 'v2/zz_speaker_1'"),
    "missing voice file": (["Hi.", "--voice", "nowhere.npz"], "--voice: voice file 'nowhere.npz' does not exist"),
    "missing text file": (["--text-file", "none.txt"], "--text-file none.txt: file not found"),
    "two texts, one file": (
        ["One.", "Two.", "--out", "two.wav"],
        "--out two.wav names one .wav file, but 2 texts need a folder",
    ),
    "hostile voice": (
        ["Hi.", "--voice", "bomb.npz"],
        "--voice: voice file 'bomb.npz': 'semantic_prompt.npy' declares a [1000000000000] int64 array",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_argument_mistakes_are_found_before_the_model_loads(case, tiny_suno, tmp_path, no_model, monkeypatch):
    import io
    import zipfile

    monkeypatch.chdir(tmp_path)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as archive:  # 1 KB declaring 8 TB
        archive.writestr("semantic_prompt.npy", header.getvalue())
    args, message = CASES[case]
    out = [] if "--out" in args else ["--out", str(tmp_path / "o.wav")]
    result = runner.invoke(app, ["say", *args, "--weights", str(tiny_suno), *out])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) <= 3, result.stderr


def test_cuda_without_a_gpu_names_the_flag(tiny_suno, tmp_path, no_model, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(
        app, ["say", "Hi.", "--weights", str(tiny_suno), "--device", "cuda", "--out", str(tmp_path / "o.wav")]
    )
    assert result.exit_code == 2 and "--device is 'cuda' but torch sees no CUDA device" in result.stderr
    assert "use --device cpu" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("out", ["afile/x.wav", "/proc/barkpipe-say.wav"])
def test_an_unwritable_out_is_found_before_the_model_loads(out, tiny_suno, tmp_path, no_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    result = runner.invoke(app, ["say", "Hi.", "--weights", str(tiny_suno), "--out", out])
    assert result.exit_code == 2 and result.stderr.startswith("error: --out") and "Traceback" not in result.output


@pytest.mark.parametrize("name,how,message", [
    ("coarse.pt", "missing", "missing coarse.pt"),
    ("vocab.txt", "missing", "missing vocab.txt"),
    ("text.pt", "truncated", "text.pt is not a complete torch archive"),
    ("encodec_24khz-d7cc33bc.th", "truncated", "encodec_24khz-d7cc33bc.th is not a complete torch archive"),
    ("vocab.txt", "emptied", "vocab.txt cannot be used"),
    ("vocab.txt", "garbage", "vocab.txt cannot be used (Error while initializing WordPiece"),
])  # fmt: skip
def test_damaged_weights_name_the_file(name, how, message, tiny_suno, tmp_path, no_model):
    weights = _damaged(tiny_suno, tmp_path, name, how)
    result = runner.invoke(app, ["say", "Hi.", "--weights", weights, "--out", str(tmp_path / "o.wav")])
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output
    assert result.stderr.startswith("error: --weights") and len(result.stderr.strip().splitlines()) == 1


def test_help_shows_defaults_and_explains_every_option():
    import click
    import typer.main

    for args in (["say"], ["manifest", "from-text"]):
        text = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "240"}).output
        assert "Traceback" not in text
    say_help = " ".join(runner.invoke(app, ["say", "--help"]).output.split())  # undo the wrapping
    assert "[default: (8, 1 with --stream); x>=1]" in say_help and "[default: 0.7]" in say_help
    heading = " ".join(runner.invoke(app, ["manifest", "from-text", "--help"]).output.split())
    assert "[default: lines starting with 'Chapter']" in heading and "[default: the file name]" in heading

    def options(command: click.Command, path: str):
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from options(sub, f"{path} {name}")
        else:
            for param in command.params:
                if isinstance(param, click.Option) and param.name != "help":
                    yield f"{path} {param.opts[0]}", param.help

    missing = [name for name, help_text in options(typer.main.get_command(app), "barkpipe") if not help_text]
    assert missing == []


def test_ctrl_c_says_what_was_written_and_does_not_promise_a_resume(tiny_suno, tmp_path, monkeypatch):
    import soundfile

    real_write, calls = soundfile.write, []

    def write_then_interrupt(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_write(path, *args, **kwargs)

    monkeypatch.setattr(soundfile, "write", write_then_interrupt)
    result = runner.invoke(app, ["say", "One.", "Two.", "Three.", "--weights", str(tiny_suno), "--out",
                                 str(tmp_path / "many"), "--max-duration", "0.2", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().splitlines()[-1] == "interrupted; 1 of 3 file(s) written"
    assert "resume" not in result.output and [p.name for p in (tmp_path / "many").iterdir()] == ["000.wav"]


def test_ctrl_c_while_loading_writes_nothing(tiny_suno, tmp_path, monkeypatch):
    from bark_model import BarkEngine

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(BarkEngine, "from_dir", classmethod(interrupted))
    result = runner.invoke(app, ["say", "One.", "--weights", str(tiny_suno), "--out", str(tmp_path / "o.wav")])
    assert result.exit_code == 130 and result.stderr.strip().endswith("interrupted; 0 of 1 file(s) written")
