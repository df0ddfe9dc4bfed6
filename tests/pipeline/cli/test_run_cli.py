"""`barkpipe run` / `validate`: one clear line and exit code 2 for user mistakes; --dry-run plans without models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
import yaml
from typer.testing import CliRunner

from pipeline.cli.run import register

REPO = Path(__file__).resolve().parents[3]
LONG = " ".join(["This sentence is here to make the row long enough for several chunks."] * 6)


@pytest.fixture
def app():
    app = typer.Typer()

    @app.callback()
    def main():  # a callback keeps typer from collapsing the commands into one
        pass

    register(app)
    return app


@pytest.fixture
def config(tmp_path, tiny_weights):
    manifest = tmp_path / "m.parquet"
    pq.write_table(
        pa.table({"id": ["a", "long", "d", "d", "c"], "text": ["Hello.", LONG, "Dup.", "Dup again.", "Short one."]}),
        manifest,
    )
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "input": {"path": str(manifest)},
                "output": {"path": str(tmp_path / "out"), "storage_options": {"password": "pw-123-secret"}},
                "model": {"weights": str(tiny_weights), "device": "cpu"},
                "segment": {"target_seconds": 4.0, "max_seconds": 6.0},
                "compute": {"actors": 2, "batch_size": 2, "window_rows": 8},
            }
        )
    )
    return path


def invoke(app, *args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


DUPLICATE_LINE = (
    "error: manifest: 2 row(s) share their id with another row (id d): id 'd' appears 2 times in "
    "the manifest; ids must be unique: rename or drop the copies"
)


def test_validate_names_row_problems_as_errors_then_passes_once_fixed(app, config):
    code, out = invoke(app, "validate", config)
    assert code == 2 and out.splitlines() == [DUPLICATE_LINE], out
    pq.write_table(pa.table({"id": ["a", "long", "c"], "text": ["Hello.", LONG, "Short one."]}),
                   config.parent / "m.parquet")  # fmt: skip
    code, out = invoke(app, "validate", config)
    assert code == 0 and "3 rows in 1 file(s)" in out, out
    for check in ("model.weights", "model.device", "generation.voice", "output.path", "manifest"):
        assert f"ok  {check}" in out, out
    assert not (config.parent / "out").exists()  # the write probe leaves nothing behind


def test_validate_reads_each_ssml_row_and_names_the_broken_ones(app, config):
    texts = ["<speak>Fine <break time='1s'/> row.</speak>", "<speak>Unclosed <s>tag</speak>",
             "<!DOCTYPE x [<!ENTITY a 'b'>]><speak>&a;</speak>", "Plain text, not markup."]  # fmt: skip
    formats = ["ssml", "ssml", "ssml", "plain"]
    pq.write_table(pa.table({"id": ["ok", "bad", "evil", "plain"], "text": texts, "text_format": formats}),
                   config.parent / "m.parquet")  # fmt: skip
    code, out = invoke(app, "validate", config)
    assert code == 2, out
    [line] = [line for line in out.splitlines() if "SSML" in line]
    assert line.startswith("error: manifest: 2 row(s) have SSML that cannot be read (ids bad, evil)"), out


@pytest.mark.parametrize(
    "override,message",
    [
        ("input.path=/no/such/manifest.parquet", "error: input.path '/no/such/manifest.parquet' does not exist"),
        ("input.text_column=body", "error: manifest has no column 'body' (input.text_column)"),
        ("model.weights=/no/weights", "error: model.weights '/no/weights' is not a directory"),
        ("output.format=aiff", "error: output.format: got 'aiff'; expected one of 'wav', 'flac'"),
        ("model.device=gpu", "error: model.device: must be auto, cpu, cuda, cuda:N or mps (got 'gpu')"),
        ("generation.voice=v2/nobody", "error: generation.voice: unknown voice 'v2/nobody'"),
        ("compute.gpus=1", "error: unknown key 'compute.gpus'; did you mean 'gpus_per_actor'?"),
        ("output.path=", "error: output.path: is empty"),
    ],
)
@pytest.mark.parametrize("command", ["run", "validate"])
def test_user_mistakes_exit_2_with_one_line(app, config, command, override, message):
    code, out = invoke(app, command, config, "--set", override)
    lines = out.splitlines()
    assert code == 2 and lines[0].startswith(message) and "Traceback" not in out, out
    # validate also names the manifest's duplicate id (when the manifest can be read); run stops at the first kind
    assert lines[1:] in ([], [DUPLICATE_LINE] if command == "validate" else []), out


def test_the_set_usage_hint_is_not_redacted(app, config):
    code, out = invoke(app, "validate", config, "--set", "compute.actors")
    assert code == 2 and "expected a dotted config name, '=' and a value, e.g. output.format=wav" in out
    assert "***" not in out


def test_run_warns_about_row_problems_and_goes_on(app, config, monkeypatch):
    import pipeline.batch.run as runner

    monkeypatch.setattr(runner, "run", lambda cfg, **kwargs: _fake_summary(errors=0))
    code, out = invoke(app, "run", config)
    assert code == 0, out
    assert f"warning: {DUPLICATE_LINE.removeprefix('error: ')} (these rows become error rows" in out


def test_an_empty_manifest_is_nothing_to_do_for_run(app, config, monkeypatch):
    import pipeline.batch.run as runner

    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("Ray started for an empty manifest"))
    pq.write_table(pa.table({"id": pa.array([], pa.string()), "text": pa.array([], pa.string())}),
                   config.parent / "m.parquet")  # fmt: skip
    for args in ((), ("--dry-run",)):
        code, out = invoke(app, "run", config, *args)
        assert code == 0 and out.strip().endswith("holds no rows"), out
        assert "nothing to do: the manifest (input.path" in out


def test_dry_run_prints_the_plan_without_loading_a_model_or_ray(config):
    # Not torch-free since the prepare stage counts tokens through bark_model (whose __init__ imports
    # the engine); text.chunks.text_token_counter would make --dry-run torch-free again (wiring note).
    code = (
        "import sys; from pathlib import Path; from pipeline.cli.run import run_command; "
        f"run_command(Path({str(config)!r}), [], True); "
        "heavy = [m for m in ('ray',) if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "HEAVY []" in out
    plan = dict(line.split(None, 1) for line in out.split("---\n")[1].splitlines() if not line.startswith("HEAVY"))
    assert plan["input_rows"] == "5" and plan["manifest_errors"] == "2" and plan["rows_to_run"] == "3"
    assert int(plan["chunks"]) >= 4 and plan["actors"] == "2" and int(plan["windows"]) >= 2
    assert int(plan["micro_batches"]) >= 2
    assert "pw-123-secret" not in out and "password: '***'" in out
    assert not (config.parent / "out").exists()  # nothing written


def test_importing_the_commands_stays_light():
    code = (
        "import sys, pipeline.cli.run; print(json.dumps([m for m in ('torch', 'ray', 'pyarrow') if m in sys.modules]))"
    )
    proc = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, cwd=REPO)
    assert json.loads(proc.stdout) == [], proc.stderr


def _fake_summary(errors: int) -> dict:
    run = {
        "rows": 3,
        "ok": 3 - errors,
        "flagged": 0,
        "errors": errors,
        "skipped_already_done": 0,
        "audio_s": 4.0,
        "wall_s": 2.0,
        "rows_per_s": 1.5,
        "audio_s_per_s": 2.0,
        "engine_s": 1.0,
        "overhead_s": 1.0,
        "error_samples": [f"row{i}: [segment] text cannot be split" for i in range(errors)],
    }
    return {
        "input_rows": 5,
        "ok": 3 - errors,
        "errors": errors + 2,
        "manifest_errors": 2,
        "accounted": True,
        "missing_ids": [],
        "this_run": run,
        "audio_hours": 0.001,
        "config_hash": "sha256:x",
    }


def test_run_checks_everything_before_starting_ray(app, config, monkeypatch):
    import pipeline.batch.run as runner

    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("Ray started despite a failed check"))
    code, out = invoke(app, "run", config, "--set", "generation.voice=v2/nobody")
    assert code == 2 and "generation.voice: unknown voice 'v2/nobody'" in out and out.count("\n") == 1


def test_run_ends_with_the_output_location_and_the_first_error_reasons(app, config, monkeypatch):
    import pipeline.batch.run as runner

    seen = {}

    def fake_run(cfg, **kwargs):
        seen.update(kwargs)
        return _fake_summary(errors=4)

    monkeypatch.setattr(runner, "run", fake_run)
    code, out = invoke(app, "run", config, "--verbose")
    assert code == 0, out
    out_dir = str(config.parent / "out")
    assert f"output: {out_dir}/" in out and f"every reason is in {out_dir}/errors/" in out
    assert "row0: [segment]" in out and "row2: [segment]" in out and "row3" not in out  # the first three
    assert seen == {"verbose": True}


def test_the_dashboard_is_off_unless_asked_for(app, config, monkeypatch):
    import pipeline.batch.run as runner

    asked = []
    monkeypatch.setattr(runner, "run", lambda cfg, **kw: asked.append(cfg.compute.dashboard) or _fake_summary(0))
    for args in ((), ("--dashboard",)):
        code, out = invoke(app, "run", config, *args)
        assert code == 0, out
    assert asked == [False, True]


def test_manifest_errors_are_named_when_the_samples_leave_them_out(app, config, monkeypatch):
    import pipeline.batch.run as runner

    summary = _fake_summary(errors=0) | {"errors": 2, "manifest_errors": 2}
    monkeypatch.setattr(runner, "run", lambda cfg, **kwargs: summary)
    code, out = invoke(app, "run", config)
    assert code == 0, out
    reasons = out.split("First ones:\n", 1)[1].splitlines()
    assert reasons[0].startswith("  manifest: 2 row(s) share their id with another row (id d)"), out


def test_dry_run_hides_secrets_in_lists_and_caps_chunks_at_max_duration(app, config):
    data = yaml.safe_load(config.read_text())
    data["output"]["storage_options"] = {"headers": ["Authorization: Bearer hdr-secret-123"],
                                         "items": [{"name": "x", "secret": "item-secret-456"}]}  # fmt: skip
    config.write_text(yaml.safe_dump(data))

    def estimate(*overrides):
        code, out = invoke(app, "run", config, "--dry-run", *overrides)
        assert code == 0, out
        assert "hdr-secret-123" not in out and "item-secret-456" not in out
        return float(out.split("estimated_audio_s", 1)[1].split()[0])

    free, capped = estimate(), estimate("--set", "generation.max_duration=0.5")
    assert free > 3 and capped <= 0.5 * 8 < free  # at most 0.5 s for each of the few chunks


def test_help_has_every_option_explained():
    from pipeline.cli import app as real_app

    for args in (["run"], ["validate"]):
        result = CliRunner().invoke(real_app, [*args, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0
    run_help = CliRunner().invoke(real_app, ["run", "--help"], env={"COLUMNS": "200"}).output
    assert "--verbose" in run_help and "Ray's own logs" in run_help


def test_dry_run_plan_is_the_same_over_one_and_several_processes(config, monkeypatch):
    from pipeline.batch import outcome
    from pipeline.batch.run import prepare
    from pipeline.config import load_config

    rows = 50  # several read batches, languages and caps, so order and summing across batches both matter
    texts = [f"Row {i} says {i * 37} words. " + ("Then it goes on, and on. " * (i % 7)) for i in range(rows)]
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(rows)], "text": texts,
                             "language": [("en", "de", None)[i % 3] for i in range(rows)],
                             "max_duration": [(None, 1.5, 30.0)[i % 3] for i in range(rows)]}),
                   config.parent / "m.parquet", row_group_size=7)  # fmt: skip
    monkeypatch.setattr(outcome, "PLAN_BATCH_ROWS", 6)
    prep = prepare(load_config(config))
    one, two = outcome.plan(prep, workers=1), outcome.plan(prep, workers=2)
    assert one == two
    assert one["rows_to_run"] == rows and one["chunks"] >= rows
    assert one["windows"] == -(-rows // one["window_rows"]) and one["micro_batches"] >= one["chunks"] / 2
