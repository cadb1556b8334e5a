"""The node tier's pipeline runner without a node: the executor input and the pod it derives from the compiled IR
(what KFP's driver would hand the launcher), checked against the pipeline's own definitions."""

from __future__ import annotations

import json

import pytest

from spx.pipelines.k8s import ENV_CONFIGMAP_KEYS, S3_SECRET_KEYS
from tests.node.kfp_runner import PipelineRunner, TaskRun


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    from spx.pipelines.compile import compile_pipeline

    package = tmp_path_factory.mktemp("ir") / "spx-training.yaml"
    compile_pipeline(str(package), image="localhost/spx-component:test")
    return PipelineRunner.from_file(
        None, package, namespace="spx", service_account="spx-pipeline", pipeline_root="s3://spx/pipeline-root"
    )  # type: ignore[arg-type]


def test_the_executor_input_of_a_training_task(runner):
    task = runner.spec["root"]["dag"]["tasks"]["train-variant"]
    runner.runs["gold-features"] = TaskRun("gold-features", parameters={"gold_uri": "s3://g", "manifest_uri": "s3://m"})
    runner.runs["resolve-run-id"] = TaskRun("resolve-run-id", parameters={"Output": "r1"})
    scope = {k: v.get("defaultValue") for k, v in runner.spec["root"]["inputDefinitions"]["parameters"].items()}
    params, arts = runner._resolve(task, scope, "", "train-variant")
    ei = runner.executor_input(runner.component(task), "train-variant", params, arts)
    values = ei["inputs"]["parameterValues"]
    # integers arrive as ints, the way KFP's driver marshals them (30.0 would be no label column "y_up_h30.0")
    assert values["horizon"] == 30 and isinstance(values["horizon"], int) and values["n_folds"] == 5
    assert values["gold_uri"] == "s3://g" and values["run_id"] == "r1"
    assert ei["outputs"]["outputFile"] == "/tmp/kfp_outputs/output_metadata.json"
    assert ei["outputs"]["parameters"]["Output"] == {"outputFile": "/tmp/kfp/outputs/Output"}
    for name, lst in ei["outputs"].get("artifacts", {}).items():
        assert lst["artifacts"][0]["uri"] == f"s3://spx/pipeline-root/spx-training/{runner.run_id}/train-variant/{name}"


def test_the_pod_a_task_becomes(runner):
    label = runner.component(runner.spec["root"]["dag"]["tasks"]["train-variant"])["executorLabel"]
    spec, launcher = runner.pod_spec(label, {"inputs": {}}, "train-variant-x")
    (c,) = spec["containers"]
    assert spec["serviceAccountName"] == "spx-pipeline" and c["image"] == "localhost/spx-component:test"
    assert c["command"][:3] == ["python3", "/kfp-launcher/launch.py", "--"] and "{{$}}" in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert set(ENV_CONFIGMAP_KEYS) | set(S3_SECRET_KEYS) | {"KFP_EXECUTOR_INPUT"} == set(env)
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "spx-kfp-s3", "key": "AWS_ACCESS_KEY_ID"}
    assert env["SPX_BUCKET"]["valueFrom"]["configMapKeyRef"] == {"name": "spx-kfp-env", "key": "SPX_BUCKET"}
    assert c["resources"]["requests"]["cpu"] == "250m" and c["resources"]["limits"]["cpu"] == "2"
    assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/kfp-launcher", "/s3", "/.cache"}
    assert launcher["data"]["launch.py"].startswith('"""A stand-in for KFP 2.5')
    json.dumps(spec)  # serialisable as the Job's pod template


@pytest.mark.parametrize(
    ("expr", "params", "want"),
    [
        ("inputs.parameter_values['pipelinechannel--x'] == true", {"pipelinechannel--x": True}, True),
        ("inputs.parameter_values['pipelinechannel--x'] == true", {"pipelinechannel--x": False}, False),
        ("inputs.parameter_values['y'] != 'a'", {"y": "b"}, True),
    ],
)
def test_dsl_if_conditions(expr, params, want):
    assert PipelineRunner._condition(expr, params) is want


def test_an_unknown_condition_is_refused():
    with pytest.raises(NotImplementedError):
        PipelineRunner._condition("inputs.parameter_values['x'] > 1", {"x": 2})
