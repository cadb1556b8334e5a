"""The wheel installs one import name, ``spx``, with the stage code of components/ and pipelines/ inside it.

Built for real (uv build, no isolation: setuptools from this environment; the images build it with pip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # built from a copy of what the images copy (pyproject.toml, README.md, spx, components, pipelines) with a
    # clean environment: no build/ or egg-info left in the checkout, and nothing an earlier test left in this
    # process's environment reaches the build (in the full suite it once failed there and passed alone)
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("spx", "components", "pipelines"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(src), "LANG": "C.UTF-8"}
    uv = str(Path(sys.executable).parent / "uv")
    proc = subprocess.run(
        [uv, "build", "--wheel", "--no-build-isolation", "--python", sys.executable, "-o", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=src,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
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
