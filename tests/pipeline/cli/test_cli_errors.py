"""pipeline/cli/errors.py: a user mistake is one line and exit 2; a bug keeps its traceback and says it is one."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from pipeline.cli.errors import guarded
from pipeline.configerrors import ConfigError
from pipeline.errors import BUG_EXIT, INTERRUPTED_EXIT, USER_ERROR_EXIT
from pipeline.probes import CheckError, storage_problem


def app_raising(exc: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main():
        pass

    @app.command("go")
    @guarded
    def go(flag: bool = typer.Option(False, "--flag", help="A flag, to show options survive the wrapper.")):
        raise exc

    return app


def invoke(exc: BaseException):
    result = CliRunner().invoke(app_raising(exc), ["go", "--flag"])
    return result.exit_code, result.output


def botocore_error(name: str, **kwargs) -> Exception:
    import botocore.exceptions as be

    return getattr(be, name)(**kwargs)


@pytest.mark.parametrize("exc,fragment", [
    (CheckError("model.weights: x is truncated; download it again"), "error: model.weights: x is truncated"),
    (ConfigError("unknown key 'compute.gpus'"), "error: unknown key 'compute.gpus'"),
    (botocore_error("NoCredentialsError"), "error: storage: no S3 credentials found"),
    (botocore_error("EndpointConnectionError", endpoint_url="http://10.0.0.9:9000"), "error: storage: cannot reach"),
    (PermissionError("Access Denied"), "error: storage: access denied"),
])  # fmt: skip
def test_user_mistakes_that_escape_a_command_are_one_line(exc, fragment):
    code, out = invoke(exc)
    assert code == USER_ERROR_EXIT and out.startswith(fragment), out
    assert out.count("\n") == 1 and "Traceback" not in out


def test_a_bug_keeps_its_traceback_and_says_it_is_a_bug():
    code, out = invoke(KeyError("row 500"))
    assert code == BUG_EXIT
    assert "Traceback" in out and "KeyError: 'row 500'" in out
    assert out.strip().splitlines()[-1].startswith("error: KeyError: this is a bug in barkpipe")


def test_a_value_error_from_deep_inside_is_a_bug_not_a_user_line():
    code, out = invoke(ValueError("operands could not be broadcast together"))
    assert code == BUG_EXIT and "Traceback" in out and "this is a bug" in out


def test_ctrl_c_is_one_line_that_promises_no_resume():
    code, out = invoke(KeyboardInterrupt())
    assert code == INTERRUPTED_EXIT and out == "interrupted (Ctrl-C)\n"


def test_ctrl_c_in_run_says_it_resumes(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import pipeline.batch.run as runner
    from pipeline.cli import app
    from pipeline.cli import run as run_cli

    monkeypatch.setattr(run_cli, "_load_and_check", lambda config, overrides: (object(), _NoWarnings()))
    monkeypatch.setattr(runner, "run", lambda cfg, **kw: (_ for _ in ()).throw(KeyboardInterrupt()))
    config = tmp_path / "c.yaml"
    config.write_text("{}")
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == INTERRUPTED_EXIT
    assert result.output.strip().splitlines()[-1] == "interrupted; run the same command again to resume"


class _NoWarnings:
    warnings: list = []


def test_storage_problem_names_key_endpoint_and_fix():
    line = storage_problem(botocore_error("NoCredentialsError"), "output.path", "s3://b/out", {})
    assert (
        line.startswith("output.path 's3://b/out': no S3 credentials found") and "output.storage_options.anon" in line
    )
    missing = FileNotFoundError("The specified bucket does not exist")
    line = storage_problem(missing, "input.path", "s3://nob/x", {"client_kwargs": {"endpoint_url": "http://h:1"}})
    assert line == "input.path 's3://nob/x': bucket 'nob' does not exist at http://h:1; create it or fix input.path"
    assert storage_problem(KeyError("x"), "input.path", "s3://b", {}) is None
    secret = storage_problem(botocore_error("NoCredentialsError"), "input.path", "s3://KEY:SECRET@b/x", {})
    assert "KEY:SECRET" not in secret and "s3://***@b/x" in secret
