"""Run a compiled KFP pipeline's own task containers as Kubernetes Jobs, without a KFP backend (node tier).

What KFP's driver does for each task is done here, from the compiled IR alone (nothing pipeline-specific):
resolve the task's inputs (pipeline parameters, constants, upstream outputs typed by their producer's output
definition; sub-DAGs of ``dsl.If`` with their ``triggerPolicy`` condition; ``dsl.ParallelFor`` sub-DAGs with their
``parameterIterator``: one iteration per item of the list parameter, the item bound to the ``itemInput`` and read
through the ``parseJson(string_value)["key"]`` selectors the compiler emits, the enclosing DAG's inputs through
``componentInputParameter`` / ``componentInputArtifact``), build the executor input a launcher passes (parameter values with the
component's defaults, input artifacts with their URIs and types, output parameter files under
``/tmp/kfp/outputs``, output artifact URIs under the pipeline root, ``/tmp/kfp_outputs/output_metadata.json``),
and turn the executor into a pod: the IR's image, command and arguments behind the launcher stand-in
(tests/node/kfp_launcher.py, mounted from a ConfigMap at /kfp-launcher as KFP mounts its launcher), the
kubernetes platform spec's Secret and ConfigMap keys as env, the run's ServiceAccount, the IR's resources, and
the scratch volumes KFP's Argo compiler adds (/s3, /gcs, /minio, /.local, /.cache, /.config).

What this does NOT test, which only a KFP install would: the real driver and launcher binaries (their Go
S3 client, ML Metadata, caching), Argo's workflow controller and executor (WorkflowTaskResults, retries with
backoff — here a failed task fails the run at once), pod-spec patches KFP computes at run time, and the KFP
API server (upload, runs, recurring runs), and parallel iterations of a ParallelFor (run here one after another,
and only as many as ``iterations`` allows). CPU requests are capped at ``cpu_request_cap`` so that tasks fit a
2-core node (KFP would leave them Pending there); limits and memory are the IR's.
"""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.node.node import JobResult, Node

LAUNCHER = Path(__file__).with_name("kfp_launcher.py")
MARKER = "KFP-LAUNCHER-OUTPUTS "
SCRATCH = {
    "s3-scratch": "/s3",
    "gcs-scratch": "/gcs",
    "minio-scratch": "/minio",
    "dot-local-scratch": "/.local",
    "dot-cache-scratch": "/.cache",
    "dot-config-scratch": "/.config",
}


def _protojson(value):
    """A value as KFP's driver hands it over: protobuf Struct values marshalled by Go's protojson, which writes an
    integral number without a fraction (30, not 30.0), so an ``int`` parameter arrives as an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_protojson(v) for v in value]
    if isinstance(value, dict):
        return {k: _protojson(v) for k, v in value.items()}
    return value


def _cpu(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


@dataclass
class TaskRun:
    name: str  # the IR's task key (e.g. "condition-2/feast-materialize")
    job: JobResult | None = None
    parameters: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    executor_input: dict = field(default_factory=dict)
    skipped: str = ""  # why, when a condition was false
    job_key: str = ""  # a sub-DAG: the inner task whose job failed


@dataclass
class PipelineRunner:
    node: Node
    namespace: str
    service_account: str
    pipeline_root: str
    spec: dict
    platform: dict
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    cpu_request_cap: str = "250m"
    parallel: int = 3
    runs: dict[str, TaskRun] = field(default_factory=dict)

    @classmethod
    def from_file(cls, node: Node, path: Path, **kw) -> "PipelineRunner":
        docs = list(yaml.safe_load_all(path.read_text()))
        platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
        return cls(node=node, spec=docs[0], platform=platform, **kw)

    # -- the IR ------------------------------------------------------------------------------
    @property
    def pipeline_name(self) -> str:
        return self.spec["pipelineInfo"]["name"]

    def component(self, task: dict) -> dict:
        return self.spec["components"][task["componentRef"]["name"]]

    def _placeholders(self, value, task_name: str):
        if isinstance(value, str):
            for key, real in {
                "{{$.pipeline_job_uuid}}": self.run_id,
                "{{$.pipeline_job_name}}": f"{self.pipeline_name}-{self.run_id}",
                "{{$.pipeline_job_resource_name}}": f"{self.pipeline_name}-{self.run_id}",
                "{{$.pipeline_task_name}}": task_name,
                "{{$.pipeline_task_uuid}}": uuid.uuid4().hex,
                "{{$.pipeline_root}}": self.pipeline_root,
            }.items():
                value = value.replace(key, real)
        return value

    def _producer(self, prefix: str, producer: str, task_name: str) -> TaskRun:
        run = self.runs.get(prefix + producer)
        if run is None:
            raise AssertionError(f"{task_name} consumes an output of {producer}, which was not selected to run")
        return run

    def _output_type(self, prefix: str, producer: str, key: str) -> str:
        """The producer's declared type of its output parameter ``key`` (``STRING``, ``LIST``, …)."""
        dag = self.spec["root"]["dag"]["tasks"]
        for part in [p for p in prefix.split("/") if p and not p.startswith("iteration-")]:
            dag = self.component(dag[part])["dag"]["tasks"]
        outs = self.component(dag[producer]).get("outputDefinitions", {}).get("parameters", {})
        return outs.get(key, {}).get("parameterType", "STRING")

    @staticmethod
    def _typed(value, parameter_type: str):
        """A parameter as KFP's launcher records it: the output file's text parsed by its declared type."""
        if isinstance(value, str) and parameter_type not in ("STRING", ""):
            return json.loads(value)
        return value

    @staticmethod
    def _select(value, selector: str):
        """``parameterExpressionSelector``, the CEL KFP's compiler emits for a loop item's fields:
        ``parseJson(string_value)["key"]`` (and ``[n]``), on the item as its JSON text."""
        m = re.fullmatch(r"parseJson\(string_value\)((?:\[(?:\"[^\"]*\"|\d+)\])*)", selector.strip())
        if not m:
            raise NotImplementedError(f"parameterExpressionSelector {selector!r}")
        out = json.loads(value if isinstance(value, str) else json.dumps(value))
        for part in re.findall(r"\[(\"[^\"]*\"|\d+)\]", m.group(1)):
            out = out[json.loads(part)]
        return out

    def _resolve(self, task: dict, scope: dict, prefix: str, task_name: str, art_scope: dict | None = None):
        """(parameter values, input artifacts) of ``task`` from the enclosing DAG's inputs ``scope`` /
        ``art_scope`` and finished runs."""
        params, arts = {}, {}
        for name, src in task.get("inputs", {}).get("parameters", {}).items():
            if "componentInputParameter" in src:
                params[name] = scope[src["componentInputParameter"]]
            elif "runtimeValue" in src:
                params[name] = self._placeholders(src["runtimeValue"]["constant"], task_name)
            elif "taskOutputParameter" in src:
                ref = src["taskOutputParameter"]
                value = self._producer(prefix, ref["producerTask"], task_name).parameters[ref["outputParameterKey"]]
                params[name] = self._typed(
                    value, self._output_type(prefix, ref["producerTask"], ref["outputParameterKey"])
                )
            else:
                raise NotImplementedError(f"input {name} of {task_name}: {src}")
            if "parameterExpressionSelector" in src:
                params[name] = self._select(params[name], src["parameterExpressionSelector"])
        for name, src in task.get("inputs", {}).get("artifacts", {}).items():
            if "taskOutputArtifact" in src:
                ref = src["taskOutputArtifact"]
                arts[name] = self._producer(prefix, ref["producerTask"], task_name).artifacts[ref["outputArtifactKey"]]
            elif "componentInputArtifact" in src:
                arts[name] = (art_scope or {})[src["componentInputArtifact"]]
            else:
                raise NotImplementedError(f"artifact input {name} of {task_name}: {src}")
        return params, arts

    @staticmethod
    def _condition(expr: str, params: dict) -> bool:
        """The CEL conditions ``dsl.If`` compiles to: ``inputs.parameter_values['x'] == <literal>`` (and !=)."""
        m = re.fullmatch(r"inputs\.parameter_values\['([^']+)'\]\s*(==|!=)\s*(.+)", expr.strip())
        if not m:
            raise NotImplementedError(f"condition {expr!r}")
        name, op, literal = m.groups()
        want = json.loads(literal.strip().replace("'", '"'))
        return (params[name] == want) if op == "==" else (params[name] != want)

    def executor_input(self, component: dict, task_name: str, params: dict, arts: dict) -> dict:
        defs = component.get("inputDefinitions", {}).get("parameters", {})
        values = {k: v["defaultValue"] for k, v in defs.items() if "defaultValue" in v}
        values.update(params)
        outputs: dict = {"outputFile": "/tmp/kfp_outputs/output_metadata.json"}
        out_defs = component.get("outputDefinitions", {})
        if out_defs.get("parameters"):
            outputs["parameters"] = {n: {"outputFile": f"/tmp/kfp/outputs/{n}"} for n in out_defs["parameters"]}
        if out_defs.get("artifacts"):
            root = f"{self.pipeline_root.rstrip('/')}/{self.pipeline_name}/{self.run_id}/{task_name.replace('/', '-')}"
            outputs["artifacts"] = {
                n: {"artifacts": [{"type": d["artifactType"], "uri": f"{root}/{n}", "metadata": {}}]}
                for n, d in out_defs["artifacts"].items()
            }
        inputs: dict = {"parameterValues": _protojson(values)}
        if arts:
            inputs["artifacts"] = {
                n: {"artifacts": [{k: a[k] for k in ("name", "type", "uri", "metadata") if k in a}]}
                for n, a in arts.items()
            }
        return {"inputs": inputs, "outputs": outputs}

    def pod_spec(self, executor_label: str, executor_input: dict, job_name: str) -> tuple[dict, dict]:
        container = self.spec["deploymentSpec"]["executors"][executor_label]["container"]
        k8s = self.platform.get(executor_label, {})
        env = [{"name": "KFP_EXECUTOR_INPUT", "value": json.dumps(executor_input)}]
        for block in k8s.get("secretAsEnv", []):
            for pair in block["keyToEnv"]:
                env.append(
                    {
                        "name": pair["envVar"],
                        "valueFrom": {"secretKeyRef": {"name": block["secretName"], "key": pair["secretKey"]}},
                    }
                )
        for block in k8s.get("configMapAsEnv", []):
            for pair in block["keyToEnv"]:
                env.append(
                    {
                        "name": pair["envVar"],
                        "valueFrom": {"configMapKeyRef": {"name": block["configMapName"], "key": pair["configMapKey"]}},
                    }
                )
        res = container.get("resources", {})
        requests, limits = {}, {}
        if res.get("resourceCpuRequest"):
            requests["cpu"] = min(res["resourceCpuRequest"], self.cpu_request_cap, key=_cpu)
        if res.get("resourceMemoryRequest"):
            requests["memory"] = res["resourceMemoryRequest"]
        if res.get("resourceCpuLimit"):
            limits["cpu"] = res["resourceCpuLimit"]
        if res.get("resourceMemoryLimit"):
            limits["memory"] = res["resourceMemoryLimit"]
        launcher_cm = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{job_name}-launcher", "namespace": self.namespace},
            "data": {"launch.py": LAUNCHER.read_text()},
        }
        spec = {
            "serviceAccountName": self.service_account,
            "containers": [
                {
                    "name": "main",
                    "image": container["image"],
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "/kfp-launcher/launch.py", "--", *container.get("command", [])],
                    "args": container.get("args", []),
                    "env": env,
                    "resources": {"requests": requests, "limits": limits},
                    "volumeMounts": [
                        {"name": "kfp-launcher", "mountPath": "/kfp-launcher", "readOnly": True},
                        *({"name": n, "mountPath": p} for n, p in SCRATCH.items()),
                    ],
                }
            ],
            "volumes": [
                {"name": "kfp-launcher", "configMap": {"name": f"{job_name}-launcher"}},
                *({"name": n, "emptyDir": {}} for n in SCRATCH),
            ],
        }
        return spec, launcher_cm

    # -- running -----------------------------------------------------------------------------
    @staticmethod
    def job_name(key: str, run_id: str) -> str:
        """A task's Job name: its own name, the iteration index inside a ParallelFor, the run id."""
        parts = key.split("/")
        index = [p.removeprefix("iteration-") for p in parts if p.startswith("iteration-")]
        return re.sub(r"[^a-z0-9-]", "-", "-".join([parts[-1], *index, run_id]))[:63].strip("-")

    def _run_container(self, key: str, task: dict, params: dict, arts: dict, timeout: float) -> TaskRun:
        component = self.component(task)
        run = TaskRun(key)
        run.executor_input = self.executor_input(component, key, params, arts)
        job_name = self.job_name(key, self.run_id)
        spec, cm = self.pod_spec(component["executorLabel"], run.executor_input, job_name)
        run.job = self.node.run_job(
            self.namespace, job_name, spec, timeout=timeout, labels={"spx.io/run": self.run_id}, extra=[cm]
        )
        if run.job.succeeded:
            line = next((ln for ln in reversed(run.job.logs.splitlines()) if ln.startswith(MARKER)), None)
            if line is None:
                raise AssertionError(f"{key}: no launcher outputs in its log:\n{run.job.logs[-3000:]}")
            outputs = json.loads(line[len(MARKER) :])
            run.parameters, run.artifacts = outputs["parameters"], outputs["artifacts"]
        return run

    def run(
        self,
        parameters: dict,
        *,
        select: set[str],
        overrides: dict[str, dict] | None = None,
        iterations: dict[str, int] | None = None,
        timeout: float = 1200,
    ) -> dict[str, TaskRun]:
        """Run the root DAG's tasks named in ``select`` (sub-DAG tasks as ``condition-2/feast-materialize``, or the
        whole sub-DAG by its name), each as soon as its selected dependencies are done; ``overrides`` replace
        resolved input parameters of a task; ``iterations`` runs only the first N items of a ParallelFor (by its
        task name; the others are recorded as not run). A task consuming an output of an unselected task is an
        error; a failed task stops the run."""
        root = self.spec["root"]
        scope = {k: v.get("defaultValue") for k, v in root.get("inputDefinitions", {}).get("parameters", {}).items()}
        scope.update(parameters)
        overrides, iterations = overrides or {}, iterations or {}
        tasks = {
            k: v for k, v in root["dag"]["tasks"].items() if k in select or any(s.startswith(k + "/") for s in select)
        }
        pending = dict(tasks)
        running: dict = {}
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            while pending or running:
                for key in [
                    k
                    for k, t in pending.items()
                    if all(d in self.runs or d not in tasks for d in t.get("dependentTasks", []))
                ]:
                    task = pending.pop(key)
                    params, arts = self._resolve(task, scope, "", key)
                    params.update(overrides.get(key, {}))
                    if "dag" in self.component(task):
                        fut = pool.submit(self._run_dag, key, task, params, arts, select, iterations, timeout)
                    else:
                        fut = pool.submit(self._run_container, key, task, params, arts, timeout)
                    running[fut] = key
                if not running:
                    raise AssertionError(f"no task can start: {sorted(pending)} wait on each other")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    key = running.pop(fut)
                    result = fut.result()
                    self.runs[key] = result
                    failed = result.job if result.job is not None and not result.job.succeeded else None
                    if failed is not None:
                        for other in running:
                            other.cancel()
                        raise AssertionError(
                            f"task {result.job_key or key} failed after {failed.seconds:.0f} s (pod "
                            f"{failed.pod_phase}); the run stops here. Its log:\n{failed.logs[-5000:]}"
                        )
        return self.runs

    def _run_dag(
        self, key: str, task: dict, params: dict, arts: dict, select: set[str], iterations: dict, timeout: float
    ) -> TaskRun:
        """A sub-DAG: ``dsl.If`` (its condition on the resolved inputs) or ``dsl.ParallelFor`` (one pass over the
        inner tasks per item); inner tasks run in their dependency order, one after another."""
        cond = task.get("triggerPolicy", {}).get("condition")
        if cond and not self._condition(cond, params):
            return TaskRun(key, skipped=f"condition {cond} is false")
        done = TaskRun(key)
        loop = task.get("parameterIterator")
        if loop is None:
            passes = [(f"{key}/", params)]
        else:
            items = params[loop["items"]["inputParameter"]]
            if isinstance(items, str):
                items = json.loads(items)
            limit = iterations.get(key, len(items))
            passes = [(f"{key}/iteration-{i}/", {**params, loop["itemInput"]: item}) for i, item in enumerate(items)]
            done.parameters = {"items": items, "iterations_run": min(limit, len(items))}
            passes = passes[:limit]
        inner = self.component(task)["dag"]["tasks"]
        for prefix, scope in passes:
            finished: set[str] = set()
            while len(finished) < len(inner):
                name = next(
                    n
                    for n, t in inner.items()
                    if n not in finished and all(d in finished for d in t.get("dependentTasks", []))
                )
                finished.add(name)
                full = prefix + name
                if key not in select and f"{key}/{name}" not in select:
                    continue
                sub = inner[name]
                sub_params, sub_arts = self._resolve(sub, scope, prefix, full, arts)
                result = self._run_container(full, sub, sub_params, sub_arts, timeout)
                self.runs[full] = result
                if result.job is not None and not result.job.succeeded:
                    done.job, done.job_key = result.job, full
                    return done
        return done

    def summary(self) -> list[str]:
        lines = []
        for key, run in self.runs.items():
            if run.job is None:
                lines.append(f"{key}: {run.skipped or 'sub-DAG'}")
            else:
                lines.append(f"{key}: {'ok' if run.job.succeeded else 'FAILED'} in {run.job.seconds:.0f} s")
        return lines
