"""Issue 17: options with a fixed set of values are choices. A typo fails before anything starts (no S3 server,
no SPX_HOME), with exit code 2 and the valid values listed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spx.core import choices

CASES = [
    (["run", "--source", "bogus"], choices.MARKET_SOURCES),
    (["run", "--dataset", "spy_m2"], choices.DATASET_NAMES),
    (["run", "--session", "extended"], choices.SESSIONS),
    (["run", "--timestamps", "begin"], choices.TIMESTAMPS),
    (["run", "--news-source", "twitter"], choices.NEWS_SOURCES),
    (["run", "--news-precision", "fp16"], choices.PRECISIONS),
    (["compile", "--pipeline", "serving"], choices.PIPELINES),
    (["news", "ingest", "--source", "x", "--start", "2024-01-01", "--end", "2024-01-02"], choices.NEWS_SOURCES),
    (["news", "score", "--bronze-prefix", "s3://b/p", "--run-id", "r", "--precision", "fp64"], choices.PRECISIONS),
    (["deploy", "--mode", "knative"], choices.SERVING_MODES),
    (["deploy", "--model-format", "onnx"], choices.MODEL_FORMATS),
    (["promote", "--mode", "knative"], choices.SERVING_MODES),
]


@pytest.mark.parametrize(("args", "valid"), CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_typo_in_a_choice_fails_before_anything_starts(tmp_path, args, valid):
    home = tmp_path / "spx-home"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SPX_HOME": str(home), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "spx.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = " ".join(proc.stderr.split())
    assert "Invalid value for" in message and all(f"'{v}'" in message for v in valid), message
    assert "Traceback" not in proc.stderr
    assert not home.exists(), "something started before the option was checked"


def test_the_stages_check_the_same_values():
    """KFP parameters reach the stages without the CLI: they check the same tuples."""
    from spx.components.bronze import datasets, market, sessions
    from spx.components.deploy import canary
    from spx.components.news import bronze, finbert

    assert market.TIMESTAMPS is choices.TIMESTAMPS and sessions.SESSIONS is choices.SESSIONS
    assert bronze.SOURCES is choices.NEWS_SOURCES and finbert.PRECISIONS is choices.PRECISIONS
    assert canary.MODES is choices.SERVING_MODES
    assert tuple(datasets.DATASETS) == choices.DATASET_NAMES
