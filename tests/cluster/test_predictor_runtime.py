"""The cluster serves with the project's predictor (reports model versions) unless told otherwise."""

from spx.components.deploy.canary import ModelRef, ServingConfig, predictor_spec
from tests.cluster.support import render


def _by_kind(objects, kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def test_chart_renders_spx_predictor_runtime_and_points_the_isvc_and_pipeline_at_it(helm_bin):
    objs = render(helm_bin, ["--set", "inferenceService.model.storageUri=s3://spx/models/r/xgb_base/"])
    (rt,) = _by_kind(objs, "ServingRuntime", "spx-predictor")
    container = rt["spec"]["containers"][0]
    assert container["command"] == ["spx-predictor"]
    assert "--model_dir=/mnt/models" in container["args"] and "--model_name={{.Name}}" in container["args"]
    assert {f["name"] for f in rt["spec"]["supportedModelFormats"]} == {"xgboost", "lightgbm"}
    assert all(f["autoSelect"] is False for f in rt["spec"]["supportedModelFormats"])
    (isvc,) = _by_kind(objs, "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["runtime"] == "spx-predictor"
    env = next(o for o in _by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-env"))
    assert env["data"]["SPX_SERVING_RUNTIME"] == "spx-predictor"


def test_runtime_can_be_left_to_kserve(helm_bin):
    objs = render(
        helm_bin,
        [
            "--set",
            "servingRuntime.spxPredictor.enabled=false",
            "--set",
            "inferenceService.runtime=",
            "--set",
            "inferenceService.model.storageUri=s3://spx/models/r/xgb_base/",
        ],
    )
    assert not _by_kind(objs, "ServingRuntime", "spx-predictor")
    (isvc,) = _by_kind(objs, "InferenceService")
    assert "runtime" not in isvc["spec"]["predictor"]["model"]


def test_deploy_step_takes_the_runtime_from_the_chart_env(monkeypatch):
    model = ModelRef.from_dict(
        {
            "variant": "xgb_base",
            "native_uri": "s3://spx/models/r/xgb_base/",
            "model_format": "xgboost",
            "model_version": "3",
        }
    )
    monkeypatch.setenv("SPX_SERVING_RUNTIME", "spx-predictor")
    assert predictor_spec(model, ServingConfig(namespace="spx", name="d"))["model"]["runtime"] == "spx-predictor"
    monkeypatch.delenv("SPX_SERVING_RUNTIME")
    assert "runtime" not in predictor_spec(model, ServingConfig(namespace="spx", name="d"))["model"]
