"""The settings module is the one place the environment is read, and what it resolves reaches every library."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

import pytest

from spx.core.errors import ConfigError
from spx.core.settings import env_var_names, settings
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
    monkeypatch.setenv("SPX_SINK_PORT", "eighty")
    with pytest.raises(ConfigError, match="SPX_SINK_PORT.*eighty"):
        settings()


def test_the_cli_turns_a_config_error_into_one_line_and_exit_code_2(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SPX_HOME": str(tmp_path), "SPX_PIPELINE_RETRIES": "-1"}
    proc = subprocess.run(
        [sys.executable, "-m", "spx.cli", "config"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("spx: invalid setting"), proc.stderr
    assert "SPX_PIPELINE_RETRIES" in proc.stderr and "Traceback" not in proc.stderr


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
