"""The wheel installs one import name, ``spx``, with the stage code of components/ and pipelines/ inside it.

Built for real (uv build, no isolation: setuptools from this environment; the images build it with pip).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "uv"),
            "build",
            "--wheel",
            "--no-build-isolation",
            "-q",
            "-o",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("spx_kfp-*.whl")
    with zipfile.ZipFile(path) as whl:
        return whl.namelist()


def test_only_spx_is_installed(wheel):
    top = {name.split("/", 1)[0] for name in wheel if not name.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert top == {"spx"}, f"the wheel installs top-level names other than spx: {sorted(top)}"


def test_stage_code_and_package_data_are_inside(wheel):
    names = set(wheel)
    for module in (
        "spx/components/bronze/market.py",
        "spx/components/training/train.py",
        "spx/pipelines/training.py",
        "spx/core/settings.py",
        "spx/cli/__init__.py",
    ):
        assert module in names, f"{module} missing from the wheel"
    assert any(n.startswith("spx/components/bronze/data/") and n.endswith(".parquet") for n in names), (
        "the bundled minute bars are not in the wheel"
    )
