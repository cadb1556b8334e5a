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


def _item(variant="xgb_all", run_id="r1"):
    return {"run_id": run_id, "variant": variant, "model": "xgboost", "objective": "classification",
            "features": ["ret_1", "rsi_14"], "horizon": 30}  # fmt: skip


def test_the_executor_input_of_a_training_task_inside_the_parallel_for(runner):
    """What KFP's driver hands the launcher for one ParallelFor iteration: the loop item bound to the itemInput and
    read through the compiler's parseJson(string_value)["key"] selectors, the enclosing DAG's inputs through
    componentInputParameter and componentInputArtifact."""
    loop = runner.spec["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--plan-variants-Output"}
    runner.runs["gold-features"] = TaskRun(
        "gold-features", artifacts={"gold": {"name": "gold", "uri": "s3://spx/pr/gold", "type": {}}}
    )
    # plan-variants' output as the launcher reads it from its output file: the list as JSON text
    runner.runs["plan-variants"] = TaskRun("plan-variants", parameters={"Output": json.dumps([_item(), _item("b")])})
    scope = {k: v.get("defaultValue") for k, v in runner.spec["root"]["inputDefinitions"]["parameters"].items()}
    params, arts = runner._resolve(loop, scope, "", "for-loop-1")
    assert params["pipelinechannel--plan-variants-Output"] == [_item(), _item("b")]  # typed by its LIST output
    assert arts["pipelinechannel--gold-features-gold"]["uri"] == "s3://spx/pr/gold"

    inner = runner.component(loop)["dag"]["tasks"]["train-variant"]
    item_scope = {**params, loop["parameterIterator"]["itemInput"]: _item()}
    sub_params, sub_arts = runner._resolve(
        inner, item_scope, "for-loop-1/iteration-0/", "for-loop-1/iteration-0/train-variant", arts
    )
    assert sub_params["variant"] == "xgb_all" and sub_params["features"] == ["ret_1", "rsi_14"]
    assert sub_params["run_id"] == "r1" and sub_params["task"] == "classification"
    assert sub_arts["gold"]["uri"] == "s3://spx/pr/gold"
    key = "for-loop-1/iteration-0/train-variant"
    ei = runner.executor_input(runner.component(inner), key, sub_params, sub_arts)
    values = ei["inputs"]["parameterValues"]
    # integers arrive as ints, the way KFP's driver marshals them (30.0 would be no label column "y_up_h30.0")
    assert values["horizon"] == 30 and isinstance(values["horizon"], int) and values["n_folds"] == 5
    assert ei["inputs"]["artifacts"]["gold"]["artifacts"][0]["uri"] == "s3://spx/pr/gold"
    assert ei["outputs"]["outputFile"] == "/tmp/kfp_outputs/output_metadata.json"
    assert ei["outputs"]["parameters"]["Output"] == {"outputFile": "/tmp/kfp/outputs/Output"}
    for name, lst in ei["outputs"].get("artifacts", {}).items():
        assert lst["artifacts"][0]["uri"] == (
            f"s3://spx/pipeline-root/spx-training/{runner.run_id}/for-loop-1-iteration-0-train-variant/{name}"
        )
    assert PipelineRunner.job_name(key, "abc") == "train-variant-0-abc"


@pytest.mark.parametrize(
    ("value", "selector", "want"),
    [
        ('{"a": {"b": [1, 2]}}', 'parseJson(string_value)["a"]["b"][1]', 2),
        ({"features": ["x"]}, 'parseJson(string_value)["features"]', ["x"]),
        ('{"n": 30}', 'parseJson(string_value)["n"]', 30),
    ],
)
def test_loop_item_selectors(value, selector, want):
    assert PipelineRunner._select(value, selector) == want


def test_an_unknown_selector_is_refused():
    with pytest.raises(NotImplementedError):
        PipelineRunner._select("{}", "string_value.size()")


class _Recorder:
    """Stands in for the node in this one test of the runner's DAG walk: each Job "succeeds" with the launcher's
    output line (what the real launcher prints), and the order and executor inputs are recorded."""

    def __init__(self, outputs: dict):
        self.outputs, self.jobs = outputs, []

    def run_job(self, namespace, name, spec, **kw):
        from tests.node.kfp_runner import MARKER
        from tests.node.node import JobResult

        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        ei = json.loads(env["KFP_EXECUTOR_INPUT"])
        self.jobs.append((name, ei))
        task = name.rsplit("-", 1)[0]
        # by default every declared output, as a launcher records it: parameters by name, artifacts at their URIs
        out = self.outputs.get(task) or {
            "parameters": {n: f"{task}:{n}" for n in ei["outputs"].get("parameters", {})},
            "artifacts": {n: lst["artifacts"][0] for n, lst in ei["outputs"].get("artifacts", {}).items()},
        }
        return JobResult(name, True, MARKER + json.dumps(out), 0.1)


def test_the_walk_runs_one_iteration_then_selection_then_the_conditions(tmp_path):
    from spx.pipelines.compile import compile_pipeline

    package = tmp_path / "spx-training.yaml"
    compile_pipeline(str(package), image="localhost/spx-component:test")
    gold = {"name": "gold", "uri": "s3://spx/pr/gold", "type": {"schemaTitle": "system.Dataset"}, "metadata": {}}
    node = _Recorder({
        "resolve-run-id": {"parameters": {"Output": "r1"}, "artifacts": {}},
        "gold-features": {"parameters": {"gold_uri": "s3://g", "manifest_uri": "s3://m"}, "artifacts": {"gold": gold}},
        "plan-variants": {"parameters": {"Output": [_item(), _item("b"), _item("c")]}, "artifacts": {}},
        "select-champion": {"parameters": {"Output": "s3://spx/selection/r1/best_model_selection.json"}, "artifacts": {}},
    })  # fmt: skip
    runner = PipelineRunner.from_file(
        node, package, namespace="spx", service_account="spx-pipeline", pipeline_root="s3://spx/pipeline-root",
        run_id="t1",
    )  # type: ignore[arg-type]  # fmt: skip
    runs = runner.run(
        {"run_id": "r1", "deploy": True, "materialize_features": False},
        select=set(runner.spec["root"]["dag"]["tasks"]),
        overrides={"select-champion": {"expected_variants": ["xgb_all"]}},
        iterations={"for-loop-1": 1},
    )  # fmt: skip
    order = [name for name, _ in node.jobs]
    assert order.index("train-variant-0-t1") > order.index("plan-variants-t1")
    assert order.index("select-champion-t1") > order.index("train-variant-0-t1")
    assert "train-variant-1-t1" not in order  # one iteration of three
    assert runs["for-loop-1"].parameters["iterations_run"] == 1 and len(runs["for-loop-1"].parameters["items"]) == 3
    assert runs["condition-2"].skipped and "condition-2/feast-materialize" not in runs
    assert order[-1] == "deploy-op-t1"
    deploy = dict(node.jobs)["deploy-op-t1"]["inputs"]["parameterValues"]
    assert deploy["selection_uri"] == "s3://spx/selection/r1/best_model_selection.json" and deploy["namespace"] == "spx"
    train = dict(node.jobs)["train-variant-0-t1"]["inputs"]
    assert train["parameterValues"]["variant"] == "xgb_all" and train["artifacts"]["gold"]["artifacts"][0]["uri"] == (
        "s3://spx/pr/gold"
    )


def test_the_pod_a_task_becomes(runner):
    loop = runner.component(runner.spec["root"]["dag"]["tasks"]["for-loop-1"])
    label = runner.component(loop["dag"]["tasks"]["train-variant"])["executorLabel"]
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
