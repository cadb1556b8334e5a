"""What KFP 2.5 accepts for a recurring run, checked before anything is sent (issue 11, defect 10), and the
plain manifests' ConfigMap/namespaces (defects 7, 8), offline."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from spx.pipelines.schedule import ScheduleError, create_or_update_schedule, to_kfp_cron, validate_max_concurrency
from tests.support import ROOT


@pytest.mark.parametrize(
    "user, kfp",
    [
        ("0 2 * * 0", "0 0 2 * * 0"),  # Sunday is 0
        ("0 2 * * 6", "0 0 2 * * 6"),
        ("0 9 * * MON-FRI", "0 0 9 * * MON-FRI"),
        ("0 0 1 JAN,jul ?", "0 0 0 1 JAN,jul ?"),
        ("*/5 * * * *", "0 */5 * * * *"),
        ("0 8/2 * * *", "0 0 8/2 * * *"),
        ("59 59 23 31 12 6", "59 59 23 31 12 6"),
    ],
)
def test_crons_kfp_accepts(user, kfp):
    assert to_kfp_cron(user) == kfp


@pytest.mark.parametrize(
    "bad, why",
    [
        ("0 2 * * 7", "day-of-week value 7 out of range 0-6"),  # robfig/cron v1.2.0: dow 0-6
        ("0 2 L * *", "invalid day-of-month value 'L'"),
        ("0 2 15W * *", "invalid day-of-month value '15W'"),
        ("0 2 * * 5#3", "no L, W or #"),
        ("0 2 * * 5L", "invalid day-of-week value '5L'"),
        ("60 2 * * *", "minute value 60 out of range 0-59"),
        ("0 24 * * *", "hour value 24 out of range 0-23"),
        ("0 2 0 * *", "day-of-month value 0 out of range 1-31"),
        ("0 2 * 13 *", "month value 13 out of range 1-12"),
        ("0 2 * * 5-1", "runs backwards"),
        ("*/0 2 * * *", "step must be >= 1"),
        ("61 0 2 * * *", "second value 61 out of range 0-59"),
    ],
)
def test_crons_kfp_rejects_are_refused_here(bad, why):
    with pytest.raises(ScheduleError, match=why.replace("(", r"\(")):
        to_kfp_cron(bad)


@pytest.mark.parametrize("value", [0, 11, 100, -1, True, "2"])
def test_max_concurrency_outside_kfp_limits(value):
    with pytest.raises(ScheduleError, match=r"max_concurrency must be an integer in 1\.\.10"):
        validate_max_concurrency(value)


def test_max_concurrency_checked_before_any_request(kfp_api):
    from spx.pipelines.submit import kfp_client

    with pytest.raises(ScheduleError, match="1..10"):
        create_or_update_schedule(
            kfp_client(kfp_api.url), cron="0 2 * * *", pipeline_name="p", job_name="j", max_concurrency=11
        )
    assert kfp_api.mutating() == []


def test_spx_schedule_refuses_with_one_line(kfp_api):
    from spx.cli import app

    for args, why in (
        (["--cron", "0 2 * * 7"], "day-of-week"),
        (["--cron", "0 2 * * *", "--max-concurrency", "20"], "max_concurrency"),
    ):
        res = CliRunner().invoke(app, ["schedule", "--host", kfp_api.url, *args])
        assert res.exit_code == 2 and why in res.output and "Traceback" not in res.output, res.output
    assert kfp_api.mutating() == []


def _kustomize(kubectl_bin, path):
    import subprocess

    out = subprocess.run([kubectl_bin, "kustomize", str(path)], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("overlay", ["base", "overlays/raw", "overlays/serverless-canary", "overlays/kfp-single-user"])
def test_manifests_configmap_has_every_key_the_tasks_read(kubectl_bin, overlay):
    """kfp-kubernetes use_config_map_as_env fails the pod on a missing key (defect 7)."""
    from spx.pipelines.k8s import ENV_CONFIGMAP_KEYS

    objs = _kustomize(kubectl_bin, ROOT / "manifests" / overlay)
    maps = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "spx-kfp-env"]
    assert len(maps) == (2 if overlay.endswith("kfp-single-user") else 1)
    for cm in maps:
        assert set(ENV_CONFIGMAP_KEYS) <= set(cm["data"]), set(ENV_CONFIGMAP_KEYS) - set(cm["data"])
        assert cm["data"]["SPX_INFERENCE_MODE"] == ("raw" if overlay == "overlays/raw" else "serverless")
    # every namespaced object lands in "spx" (defect 8: the raw overlay's ServingRuntimes had none); the
    # single-user overlay puts the pipeline's account and what its pods read in "kubeflow" (defect 9)
    namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"}
    assert namespaces == ({"spx", "kubeflow"} if overlay.endswith("kfp-single-user") else {"spx"})
    if overlay.endswith("kfp-single-user"):
        placed = {
            (o["kind"], o["metadata"]["name"]): o["metadata"]["namespace"]
            for o in objs
            if o["metadata"].get("namespace") == "kubeflow"
        }
        assert placed == {
            ("ServiceAccount", "spx-pipeline"): "kubeflow",
            ("Role", "spx-pipeline-kfp-runtime"): "kubeflow",
            ("RoleBinding", "spx-pipeline-kfp-runtime"): "kubeflow",
            ("ConfigMap", "spx-kfp-env"): "kubeflow",
            ("Secret", "spx-kfp-s3"): "kubeflow",
        }
        (binding,) = [
            o for o in objs if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "spx-pipeline-inferenceservices"
        ]
        assert binding["metadata"]["namespace"] == "spx"
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "spx-pipeline", "namespace": "kubeflow"}]
