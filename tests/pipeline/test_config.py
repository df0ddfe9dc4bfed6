"""Run config: every file in configs/ loads, unknown keys and bad values fail naming the key, secrets stay out."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from pipeline.batch.config import ConfigError, RunConfig, config_hash, load_config, public_dict, validate_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
MINIMAL = {"input": {"path": "m.parquet"}, "output": {"path": "out"}, "model": {"weights": "w"}}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    assert cfg.input.path and cfg.output.path and cfg.model.weights


def test_shipped_configs_are_the_ones_the_issue_asks_for():
    names = {p.name for p in CONFIGS}
    assert {"smoke.yaml", "audiobook.yaml"} <= names
    smoke = load_config(CONFIGS[[p.name for p in CONFIGS].index("smoke.yaml")])
    assert (smoke.model.weights, smoke.model.device, smoke.input.path, smoke.output.path) == (
        "weights/tiny", "cpu", "examples/smoke_manifest.parquet", "out/smoke")
    book = load_config(CONFIGS[[p.name for p in CONFIGS].index("audiobook.yaml")])
    assert (book.model.weights, book.model.device, book.model.precision, book.output.format) == (
        "weights/bark", "cuda", "fp16", "flac")
    assert book.generation.continuity == "fixed" and book.quality.enabled and book.compute.gpus_per_actor >= 1


def _models(model: type[BaseModel]):
    yield model
    for field in model.model_fields.values():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _models(field.annotation)


def test_every_field_has_a_description():
    missing = [f"{m.__name__}.{name}" for m in _models(RunConfig)
               for name, f in m.model_fields.items() if not f.description]
    assert missing == []


def test_unknown_key_fails_naming_it_and_the_allowed_keys(tmp_path):
    path = write(tmp_path, "input: {path: m}\noutput: {path: o, fromat: wav}\nmodel: {weights: w}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'output.fromat' \(allowed here: path, format"):
        load_config(path)


def test_bad_value_names_key_and_allowed_values():
    with pytest.raises(ConfigError, match=r"output.format: .*'wav', 'flac' or 'ogg'.*got 'mp3'"):
        validate_config({**MINIMAL, "output": {"path": "o", "format": "mp3"}})
    with pytest.raises(ConfigError, match=r"model.weights: required key is missing"):
        validate_config({**MINIMAL, "model": {}})
    with pytest.raises(ConfigError, match="target_seconds"):
        validate_config({**MINIMAL, "segment": {"target_seconds": 20, "max_seconds": 14}})


def test_quality_limits_must_be_gate_limits_fields():
    cfg = validate_config({**MINIMAL, "quality": {"limits": {"max_silence_s": 1.5}}})
    assert cfg.quality.limits == {"max_silence_s": 1.5}
    with pytest.raises(ConfigError, match=r"unknown limit\(s\) \['max_noise'\]; allowed: .*max_silence_s"):
        validate_config({**MINIMAL, "quality": {"limits": {"max_noise": 1}}})


def test_set_overrides_dotted_keys_with_yaml_scalars(tmp_path):
    path = write(tmp_path, "input: {path: m}\noutput: {path: o}\nmodel: {weights: w}\n")
    cfg = load_config(path, ["compute.actors=3", "generation.seed=null", "output.overwrite=true",
                             "input.path=s3://b/m/", "input.storage_options.endpoint_url=http://x:1",
                             "generation.voice=v2/en_speaker_6"])
    assert cfg.compute.actors == 3 and cfg.generation.seed is None and cfg.output.overwrite is True
    assert cfg.input.path == "s3://b/m/" and cfg.input.storage_options == {"endpoint_url": "http://x:1"}
    assert cfg.generation.voice == "v2/en_speaker_6"
    with pytest.raises(ConfigError, match="unknown key 'compute.actor'"):
        load_config(path, ["compute.actor=3"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(path, ["compute.actors"])


def test_secrets_are_redacted_and_left_out_of_the_hash():
    def cfg(secret, actors=1):
        return validate_config({**MINIMAL, "compute": {"actors": actors}, "output": {
            "path": "s3://AKIA:pw@b/out", "storage_options": {
                "key": "AKIA", "secret": secret, "client_kwargs": {"endpoint_url": "http://h:1"}}}})

    public = public_dict(cfg("hunter2"))
    assert public["output"]["storage_options"] == {
        "key": "***", "secret": "***", "client_kwargs": {"endpoint_url": "http://h:1"}}
    assert public["output"]["path"] == "s3://***@b/out"
    assert public["segment"]["max_tokens"] == 256  # only storage options are treated as secrets
    assert "hunter2" not in str(public) and "pw" not in public["output"]["path"]
    assert config_hash(cfg("hunter2")) == config_hash(cfg("rotated"))
    assert config_hash(cfg("hunter2")) != config_hash(cfg("hunter2", actors=2))


def test_missing_file_and_bad_yaml_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "input: [unclosed\n"))


def test_the_pipeline_doc_names_every_key():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "PIPELINE.md").read_text()
    keys = [f"{section}.{name}" for section, field in RunConfig.model_fields.items()
            for name in field.annotation.model_fields]
    assert [k for k in keys if f"`{k}`" not in doc] == []
