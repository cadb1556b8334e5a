"""The settings module is the one place the environment is read, and what it resolves reaches every library."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

import pytest

from spx.core.errors import ConfigError
from spx.core.settings import GROUPS, env_var_names, settings
from tests.support import ROOT


def _readme_config_vars() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    variables = [line.split("|")[2] for line in section.splitlines() if line.startswith("|")]
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", " ".join(variables)))


def test_readme_configuration_table_lists_exactly_the_settings():
    documented, known = _readme_config_vars(), env_var_names()
    assert documented - known == set(), f"README documents variables no setting reads: {documented - known}"
    assert known - documented == set(), f"settings the README does not document: {known - documented}"


def test_a_bad_value_is_a_config_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SPX_PREDICTION_LOG_FLUSH_SECONDS", "eighty")
    with pytest.raises(ConfigError, match="SPX_PREDICTION_LOG_FLUSH_SECONDS.*eighty"):
        settings()


def test_the_cli_turns_a_config_error_into_one_line_and_exit_code_2(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SPX_HOME": str(tmp_path), "SPX_PIPELINE_RETRIES": "-1"}
    proc = subprocess.run(
        [sys.executable, "-m", "spx.cli", "config"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("spx: invalid setting"), proc.stderr
    assert "SPX_PIPELINE_RETRIES" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("spell", [str.upper, str.lower], ids=["upper", "lower"])
def test_a_variable_named_after_a_group_is_not_read(monkeypatch, spell):
    """Issue 17: `S3=…`, `SINK=…`, `NEWS=…` (ordinary shell names) used to crash every command with a
    pydantic SettingsError traceback: each group was bound to a variable of its own name. Groups now read
    only the variables their fields document."""
    for name in [*GROUPS, "settings", "home", "bucket", "port", "host"]:
        monkeypatch.setenv(spell(name), "junk {not: json")
    cfg = settings()
    assert cfg.s3.bucket == "spx" and cfg.serving.log_flush_seconds == 10.0 and cfg.home.name == ".spx"


def test_every_setting_names_its_variables():
    """No field falls back to being read under its own (bare) name."""
    for group, model in GROUPS.items():
        for field, info in model.model_fields.items():
            assert info.validation_alias is not None, f"{group}.{field} has no documented variable"


def test_a_group_named_variable_does_not_break_the_cli(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SPX_HOME": str(tmp_path)}
    env.update({name.upper(): "junk" for name in GROUPS} | {name: "{bad json" for name in GROUPS})
    proc = subprocess.run(
        [sys.executable, "-m", "spx.cli", "config"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "SPX_BUCKET" in proc.stdout


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SPX_PREDICTION_LOG_MAX_BYTES", "eighty"),
        ("SPX_S3_MAX_VOLUMES", "0"),
        ("SPX_FEAST_ONLINE_STORE", "postgres"),
        ("SPX_ALLOW_HUB_DOWNLOAD", "perhaps"),
        ("SPX_MAX_FEATURE_AGE_SECONDS", "-5"),
    ],
)
def test_each_bad_value_names_the_variable_it_came_from(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=rf"^invalid setting in the environment: {variable}="):
        settings()


def test_empty_variables_fall_back_to_defaults(monkeypatch):
    monkeypatch.setenv("SPX_BUCKET", "")
    monkeypatch.setenv("SPX_HOME", "")
    cfg = settings()
    assert cfg.s3.bucket == "spx"
    assert cfg.home.is_absolute() and cfg.home.name == ".spx"


def test_defaults_reach_libraries_that_read_the_environment_themselves(s3_server, tmp_path):
    """The reported bug: SPX_S3_ENDPOINT set, credentials left at the documented defaults -> boto3 (as MLflow
    uses it) and s3fs (as Feast/dask use it) found no credentials. A stage process exports the resolved
    settings, so both reach the real S3 server with the defaults."""
    bucket = f"lib-{uuid.uuid4().hex[:8]}"
    code = f"""
import boto3, s3fs
from spx.core.logs import stage_logging
from spx.core.storage import ObjectStore
stage_logging("test")
ObjectStore().ensure_bucket()
boto3.client("s3").put_object(Bucket="{bucket}", Key="k.txt", Body=b"x")
print(s3fs.S3FileSystem().ls("{bucket}"))
"""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SPX_HOME": str(tmp_path / "home"),
        "SPX_S3_ENDPOINT": s3_server.endpoint_url,
        "SPX_BUCKET": bucket,
    }
    assert s3_server.access_key == "minioadmin"  # the documented default the child does not set
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{bucket}/k.txt" in proc.stdout


@pytest.mark.parametrize("exported", [False, True])
def test_mlflow_sends_no_usage_events_from_our_processes(tmp_path, exported):
    """MLflow 3 sends usage events to mlflow-telemetry.io by default; it stays quiet only in CI or under pytest, so
    every earlier test passed while `spx run`, the component pods and the chart's MLflow server phoned home. A
    stage process (and the CLI, and every child it starts) exports MLFLOW_DISABLE_TELEMETRY=true; MLflow's own
    check says so in a clean environment (no CI or pytest variable). Without the export it is on: the check can
    fail."""
    code = (
        "from spx.core.logs import stage_logging\n"
        + ("stage_logging('test')\n" if exported else "")
        + "from mlflow.telemetry.utils import is_telemetry_disabled\nprint(is_telemetry_disabled())"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SPX_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == str(exported)
