"""The chart's Evidently UI (templates/evidently-ui.yaml), rendered by the real helm: it runs the real module with
arguments its own parser accepts, serves the bucket workspace the monitoring runs write, ClusterIP only, probed
on /healthz, least privilege. (Every rendered object is also validated against the Kubernetes schemas by
test_render.py.) What this cannot catch: the pod answering in a cluster (the node tier)."""

from __future__ import annotations

import subprocess

import pytest

from tests.cluster.support import CHART, helm, render

NAME = "spx-kfp-evidently-ui"


@pytest.fixture(scope="module")
def objects(helm_bin):
    return {
        "default": render(helm_bin, []),
        "kind": render(helm_bin, ["-f", str(CHART / "values-kind.yaml"), "--set", "s3.bucket=lake"]),
        "off": render(helm_bin, ["--set", "monitoring.ui.enabled=false"]),
    }


def _get(objs, kind):
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == NAME)


def test_the_ui_runs_the_real_module_over_the_bucket_workspace(objects, monkeypatch):
    import spx.components.monitoring.ui as ui

    dep = _get(objects["kind"], "Deployment")
    assert dep["spec"]["replicas"] == 1
    pod = dep["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    assert c["command"] == ["python", "-m", "spx.components.monitoring.ui"]
    assert c["image"] == "spx-component:dev"
    seen = {}
    monkeypatch.setattr(ui, "serve", lambda *a, **kw: seen.update(args=a, kwargs=kw))
    ui.main(c["args"])  # the module's own parser accepts the chart's arguments
    # the workspace the monitoring tasks write in a pod (spx.core.settings: s3://$SPX_BUCKET/evidently)
    assert seen == {"args": ("0.0.0.0", 8000, "s3://lake/evidently"), "kwargs": {"refresh_seconds": 30.0}}
    assert c["ports"] == [{"name": "http", "containerPort": 8000}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    assert {e.get("configMapRef", e.get("secretRef"))["name"] for e in c["envFrom"]} == {"spx-kfp-env", "spx-kfp-s3"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert set(c["resources"]) == {"requests", "limits"}

    svc = _get(objects["kind"], "Service")
    assert svc["spec"]["type"] == "ClusterIP"  # reads are not authenticated: never exposed outside the cluster
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http"}]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    # nothing else selects the UI's pods (the sink's Service, say)
    others = [o for o in objects["kind"] if o["kind"] == "Service" and o["metadata"]["name"] != NAME]
    assert not [o for o in others if o["spec"].get("selector", {}).items() <= svc["spec"]["selector"].items()]


def test_default_install_has_the_ui_and_it_can_be_switched_off(objects):
    assert _get(objects["default"], "Deployment") and _get(objects["default"], "Service")
    assert not [o for o in objects["off"] if o["metadata"]["name"] == NAME]


@pytest.mark.parametrize(
    "bad",
    [
        ["--set", "monitoring.ui.bogus=1"],
        ["--set", "monitoring.ui.port=0"],
        ["--set", "monitoring.ui.refreshSeconds=0"],
        ["--set", "monitoring.ui.resources.limits.gpu=1"],
    ],
)
def test_ui_values_are_checked_by_the_schema(helm_bin, bad):
    with pytest.raises(subprocess.CalledProcessError) as err:
        helm(helm_bin, "template", "spx-kfp", str(CHART), *bad)
    assert "monitoring" in err.value.stderr
