"""Run config: every file in configs/ loads, unknown keys and bad values fail naming the key, secrets stay out."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from pipeline.config import RunConfig, config_hash, load_config, public_dict, validate_config
from pipeline.configerrors import ConfigError

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
        "weights/tiny",
        "cpu",
        "examples/smoke_manifest.parquet",
        "out/smoke",
    )
    book = load_config(CONFIGS[[p.name for p in CONFIGS].index("audiobook.yaml")])
    assert (book.model.weights, book.model.device, book.model.precision, book.output.format) == (
        "weights/bark",
        "cuda",
        "fp16",
        "flac",
    )
    assert book.generation.continuity == "fixed" and book.quality.enabled and book.compute.gpus_per_actor >= 1


def _models(model: type[BaseModel]):
    yield model
    for field in model.model_fields.values():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _models(field.annotation)


def test_every_field_has_a_description():
    missing = [
        f"{m.__name__}.{name}" for m in _models(RunConfig) for name, f in m.model_fields.items() if not f.description
    ]
    assert missing == []


def test_unknown_key_fails_naming_it_and_the_allowed_keys(tmp_path):
    path = write(tmp_path, "input: {path: m}\noutput: {path: o, fromat: wav}\nmodel: {weights: w}\n")
    with pytest.raises(
        ConfigError, match=r"unknown key 'output.fromat'; did you mean 'format'\? \(allowed here: path, f"
    ):
        load_config(path)


def test_bad_value_names_key_and_allowed_values():
    with pytest.raises(ConfigError, match=r"output.format: got 'aiff'; expected one of 'wav', 'flac'"):
        validate_config({**MINIMAL, "output": {"path": "o", "format": "aiff"}})
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
    cfg = load_config(
        path,
        [
            "compute.actors=3",
            "generation.seed=null",
            "output.overwrite=true",
            "input.path=s3://b/m/",
            "input.storage_options.endpoint_url=http://x:1",
            "generation.voice=v2/en_speaker_6",
        ],
    )
    assert cfg.compute.actors == 3 and cfg.generation.seed is None and cfg.output.overwrite is True
    assert cfg.input.path == "s3://b/m/" and cfg.input.storage_options == {"endpoint_url": "http://x:1"}
    assert cfg.generation.voice == "v2/en_speaker_6"
    with pytest.raises(ConfigError, match="unknown key 'compute.actor'"):
        load_config(path, ["compute.actor=3"])
    with pytest.raises(ConfigError, match="expected a dotted config name, '=' and a value"):
        load_config(path, ["compute.actors"])


def test_secrets_are_redacted_and_left_out_of_the_hash():
    def cfg(secret, actors=1):
        return validate_config(
            {
                **MINIMAL,
                "compute": {"actors": actors},
                "output": {
                    "path": "s3://AKIA:pw@b/out",
                    "storage_options": {
                        "key": "AKIA",
                        "secret": secret,
                        "client_kwargs": {"endpoint_url": "http://h:1"},
                    },
                },
            }
        )

    public = public_dict(cfg("hunter2"))
    assert public["output"]["storage_options"] == {
        "key": "***",
        "secret": "***",
        "client_kwargs": {"endpoint_url": "http://h:1"},
    }
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
    keys = [
        f"{section}.{name}"
        for section, field in RunConfig.model_fields.items()
        for name in field.annotation.model_fields
    ]
    assert [k for k in keys if f"`{k}`" not in doc] == []


ALIAS_BOMB = (  # the issue's 639-byte shape: nine levels, each nine aliases of the one before
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
)


def test_a_yaml_alias_bomb_fails_fast_with_one_line(tmp_path):
    import time

    path = write(tmp_path, "input: {path: m}\n" + ALIAS_BOMB)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert time.perf_counter() - start < 2
    message = str(err.value)
    assert "\n" not in message and "aliases" in message and "line 3" in message


def test_anchors_without_aliases_still_load_and_overrides_refuse_aliases_too(tmp_path):
    text = "input: &i {path: m.parquet}\noutput: {path: out}\nmodel: {weights: w}\n"
    assert load_config(write(tmp_path, text)).input.path == "m.parquet"
    with pytest.raises(ConfigError, match=r"--set generation.voice: not valid YAML .*aliases .*quote the value"):
        load_config(write(tmp_path, text), ["generation.voice=*i"])
    assert load_config(write(tmp_path, text), ["generation.voice='*i'"]).generation.voice == "*i"
    cfg = load_config(write(tmp_path, text), ["generation.voice=a: b: c"])  # not YAML: kept as the literal text
    assert cfg.generation.voice == "a: b: c"


def test_an_alias_bomb_in_set_is_refused_fast(tmp_path):
    import time

    path = write(tmp_path, "input: {path: m}\noutput: {path: o}\nmodel: {weights: w}\n")
    bomb = (
        "[&a [x, x, x, x, x, x, x, x, x], "
        + ", ".join(f"&{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8))
        + "]"
    )
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_config(path, [f"generation.speakers={bomb}"])
    assert time.perf_counter() - start < 2
    assert "aliases" in str(err.value) and "\n" not in str(err.value)


def test_every_bad_key_is_one_line_naming_key_value_and_allowed():
    with pytest.raises(ConfigError) as err:
        validate_config({**MINIMAL, "compute": {"actors": "many", "gpus": 1}, "generation": {"seed": -1}})
    assert err.value.problems == [
        "generation.seed: got -1; expected an integer >= 0 or null",
        "compute.actors: got 'many'; expected an integer or a list of 2 integers",
        "unknown key 'compute.gpus'; did you mean 'gpus_per_actor'? (allowed here: "
        + ", ".join(RunConfig.model_fields["compute"].annotation.model_fields)
        + ")",
    ]
    assert not any("Input should" in p or ".int" in p or "Value error" in p for p in err.value.problems)
    with pytest.raises(ConfigError) as err:
        validate_config({**MINIMAL, "outptu": {}, "model": {"weights": "w", "device": "gpu"}})
    assert err.value.problems == [
        "model.device: must be auto, cpu, cuda, cuda:N or mps (got 'gpu')",
        "unknown key 'outptu'; did you mean 'output'? (allowed here: input, output, model, "
        "generation, segment, quality, compute)",
    ]


@pytest.mark.parametrize("key", ["output.path", "input.path", "model.weights"])
def test_an_empty_path_is_a_mistake_naming_the_key(tmp_path, key):
    path = write(tmp_path, "input: {path: m}\noutput: {path: o}\nmodel: {weights: w}\n")
    for value in ("", "  "):
        with pytest.raises(ConfigError, match=rf"^{key}: is empty \(an unset shell variable in --set\?\)"):
            load_config(path, [f"{key}={value}"])


def test_a_huge_config_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    with pytest.raises(ConfigError, match=r"too big for a config \(limit 1048576\)"):
        load_config(path)


def test_yaml_errors_do_not_quote_the_line_that_may_hold_a_secret(tmp_path):
    path = write(tmp_path, "output:\n  storage_options: {secret: hunter2, [\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "hunter2" not in str(err.value) and "line" in str(err.value) and "\n" not in str(err.value)


def test_a_wrongly_typed_storage_options_never_echoes_its_value():
    for bad in ("key=AKIA secret=hunter2", ["hunter2"], 12345678):
        with pytest.raises(ConfigError) as err:
            validate_config({**MINIMAL, "input": {"path": "m", "storage_options": bad}})
        assert "input.storage_options" in str(err.value)
        assert "hunter2" not in str(err.value) and "12345678" not in str(err.value)


def test_bad_values_elsewhere_are_redacted_by_shape():
    with pytest.raises(ConfigError) as err:
        validate_config({**MINIMAL, "output": {"path": ["s3://AKIA:hunter2@b/o"]}})
    assert "hunter2" not in str(err.value) and "***@b/o" in str(err.value)


def test_public_dict_redacts_the_issues_cases():
    from pipeline.config import config_secrets

    cfg = validate_config(
        {
            **MINIMAL,
            "input": {
                "path": "https://user:hunter2@example.invalid/m.parquet?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=f00d&v=1",
                "storage_options": {
                    "connection_string": "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0==;",
                    "pwd": "pw-1234",
                    "passphrase": "open sesame",
                    "token": ["tok-a", "tok-b"],
                    "client_kwargs": {
                        "aws_session_token": "sess-1234",
                        "endpoint_url": "http://h:1",
                        "region_name": "x",
                    },
                    "headers": [{"Authorization": "Bearer abcd1234"}],
                    "anon": False,
                },
            },
        }
    )
    public = public_dict(cfg)
    text = str(public)
    for secret in (
        "hunter2",
        "f00d",
        "AKIA%2F1",
        "c2VjcmV0",
        "pw-1234",
        "open sesame",
        "tok-a",
        "tok-b",
        "sess-1234",
        "abcd1234",
    ):
        assert secret not in text, secret
    so = public["input"]["storage_options"]
    assert so["client_kwargs"]["endpoint_url"] == "http://h:1" and so["anon"] is False
    assert public["input"]["path"].startswith("https://***@example.invalid/m.parquet?X-Amz-Credential=***&")
    assert public["input"]["path"].endswith("&v=1") and public["segment"]["max_tokens"] == 256
    assert {"hunter2", "sess-1234", "tok-a", "open sesame", "pw-1234"} <= config_secrets(cfg)


def test_new_robustness_keys_have_defaults():
    cfg = validate_config(MINIMAL)
    assert cfg.output.retry_s == 300 and cfg.output.lease_ttl_s == 600 and cfg.output.lease_wait_s == 0
    assert cfg.segment.max_text_chars == 100_000 and cfg.generation.voice_dirs == []


def test_secrets_inside_lists_never_reach_summary_json(tmp_path):
    from pipeline.output.summary import write_running_summary
    from pipeline.storage import Store

    cfg = validate_config(
        {
            **MINIMAL,
            "output": {
                "path": str(tmp_path / "out"),
                "storage_options": {
                    "headers": ["Authorization: Bearer hdr-secret-123", "Accept: json"],
                    "items": [{"name": "x", "secret": "item-secret-456"}],
                    "pairs": [["api_token", "pair-secret-789"]],
                },
            },
        }
    )
    store = Store.open(cfg.output.path, {})
    write_running_summary(store, "run-1", public_dict(cfg), content_hash="sha256:x")  # what `run` writes first
    text = (tmp_path / "out" / "summary.json").read_text()
    for secret in ("hdr-secret-123", "item-secret-456", "pair-secret-789"):
        assert secret not in text, secret
    assert "Accept: json" in text and "Authorization: ***" in text
