"""Shared pieces of the cluster tests (paths, chart rendering, merge-patch semantics, model URIs)."""

from __future__ import annotations

import copy
import subprocess

import yaml

from tests.support import ROOT

CHART = ROOT / "helm" / "spx-kfp"
K8S_VERSION = "1.33.0"
KSERVE_API = ["serving.kserve.io/v1beta1", "serving.kserve.io/v1alpha1"]
A = "s3://spx/models/run-1/xgb_base/"
B = "s3://spx/models/run-2/lgbm_news/"
C = "s3://spx/models/run-3/xgb_news/"


def fullname(release: str) -> str:
    return release if "spx-kfp" in release else f"{release}-spx-kfp"


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (what the API server applies for application/merge-patch+json)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def helm(helm_bin: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([helm_bin, *args], capture_output=True, text=True, timeout=120, check=check)


def render(helm_bin: str, extra: list[str]) -> list[dict]:
    api = [a for v in KSERVE_API for a in ("--api-versions", v)]
    out = helm(
        helm_bin, "template", "spx-kfp", str(CHART), "--namespace", "spx", "--kube-version", K8S_VERSION, *api, *extra
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def loggers(isvc: dict) -> list[str]:
    """The places in an InferenceService whose server writes the prediction log (``SPX_PREDICTION_LOG`` on);
    fails on any KServe ``logger`` (its agent logger: no retries, no token, a second copy of each prediction)."""

    def walk(node, path: str) -> list[str]:
        if isinstance(node, dict):
            assert "logger" not in node, f"a KServe logger at {path}"
            on = [path] if {"name": "SPX_PREDICTION_LOG", "value": "true"} in (node.get("env") or []) else []
            return on + [p for k, v in node.items() for p in walk(v, f"{path}.{k}")]
        if isinstance(node, list):
            return [p for i, v in enumerate(node) for p in walk(v, f"{path}[{i}]")]
        return []

    return walk(isvc.get("spec") or {}, "spec")
