"""Run a compiled KFP pipeline's own task containers as Kubernetes Jobs, without a KFP backend (node tier).

What KFP's driver does for each task is done here, from the compiled IR alone (nothing pipeline-specific):
resolve the task's inputs (pipeline parameters, constants, upstream outputs; sub-DAGs of ``dsl.If`` with their
``triggerPolicy`` condition), build the executor input a launcher passes (parameter values with the
component's defaults, input artifacts with their URIs and types, output parameter files under
``/tmp/kfp/outputs``, output artifact URIs under the pipeline root, ``/tmp/kfp_outputs/output_metadata.json``),
and turn the executor into a pod: the IR's image, command and arguments behind the launcher stand-in
(tests/node/kfp_launcher.py, mounted from a ConfigMap at /kfp-launcher as KFP mounts its launcher), the
kubernetes platform spec's Secret and ConfigMap keys as env, the run's ServiceAccount, the IR's resources, and
the scratch volumes KFP's Argo compiler adds (/s3, /gcs, /minio, /.local, /.cache, /.config).

What this does NOT test, which only a KFP install would: the real driver and launcher binaries (their Go
S3 client, ML Metadata, caching), Argo's workflow controller and executor (WorkflowTaskResults, retries with
backoff — here a failed task fails the run at once), pod-spec patches KFP computes at run time, and the KFP
API server (upload, runs, recurring runs). CPU requests are capped at ``cpu_request_cap`` so that tasks fit a
2-core node (KFP would leave them Pending there); limits and memory are the IR's.
"""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
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
    name: str  # the IR's task key (e.g. "condition-1/feast-materialize")
    job: JobResult | None = None
    parameters: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)
    executor_input: dict = field(default_factory=dict)
    skipped: str = ""  # why, when a condition was false


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

    def _resolve(self, task: dict, scope: dict, prefix: str, task_name: str) -> tuple[dict, dict]:
        """(parameter values, input artifacts) of ``task`` from the pipeline inputs ``scope`` and finished runs."""
        params, arts = {}, {}
        for name, src in task.get("inputs", {}).get("parameters", {}).items():
            if "componentInputParameter" in src:
                params[name] = scope[src["componentInputParameter"]]
            elif "runtimeValue" in src:
                params[name] = self._placeholders(src["runtimeValue"]["constant"], task_name)
            elif "taskOutputParameter" in src:
                ref = src["taskOutputParameter"]
                params[name] = self._producer(prefix, ref["producerTask"], task_name).parameters[
                    ref["outputParameterKey"]
                ]
            else:
                raise NotImplementedError(f"input {name} of {task_name}: {src}")
        for name, src in task.get("inputs", {}).get("artifacts", {}).items():
            if "taskOutputArtifact" not in src:
                raise NotImplementedError(f"artifact input {name} of {task_name}: {src}")
            ref = src["taskOutputArtifact"]
            arts[name] = self._producer(prefix, ref["producerTask"], task_name).artifacts[ref["outputArtifactKey"]]
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
    def _run_container(self, key: str, task: dict, params: dict, arts: dict, timeout: float) -> TaskRun:
        component = self.component(task)
        run = TaskRun(key)
        run.executor_input = self.executor_input(component, key, params, arts)
        job_name = re.sub(r"[^a-z0-9-]", "-", f"{key.split('/')[-1]}-{self.run_id}")[:63].strip("-")
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
        timeout: float = 1200,
    ) -> dict[str, TaskRun]:
        """Run the root DAG's tasks named in ``select`` (sub-DAG tasks as ``condition-1/feast-materialize``, or the
        whole sub-DAG by its name), each once its selected dependencies are done; ``overrides`` replace resolved
        input parameters of a task. A task consuming an output of an unselected task is an error."""
        root = self.spec["root"]
        scope = {k: v.get("defaultValue") for k, v in root.get("inputDefinitions", {}).get("parameters", {}).items()}
        scope.update(parameters)
        overrides = overrides or {}
        tasks = {
            k: v for k, v in root["dag"]["tasks"].items() if k in select or any(s.startswith(k + "/") for s in select)
        }
        pending = dict(tasks)
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            while pending:
                ready = [
                    k
                    for k, t in pending.items()
                    if all(d in self.runs or d not in tasks for d in t.get("dependentTasks", []))
                ]
                if not ready:
                    raise AssertionError(f"no task can start: {sorted(pending)} wait on each other")
                futures = {}
                for key in ready:
                    task = pending.pop(key)
                    params, arts = self._resolve(task, scope, "", key)
                    params.update(overrides.get(key, {}))
                    if "dag" in self.component(task):
                        futures[key] = pool.submit(self._run_dag, key, task, params, select, timeout)
                    else:
                        futures[key] = pool.submit(self._run_container, key, task, params, arts, timeout)
                for key, fut in futures.items():
                    result = fut.result()
                    self.runs[key] = result
                    failed = result.job if result.job is not None and not result.job.succeeded else None
                    failed = failed or next(
                        (
                            r.job
                            for k, r in self.runs.items()
                            if k.startswith(key + "/") and r.job and not r.job.succeeded
                        ),
                        None,
                    )
                    if failed is not None:
                        raise AssertionError(
                            f"task {key} failed after {failed.seconds:.0f} s (pod {failed.pod_phase}); the run stops "
                            f"here. Its log:\n{failed.logs[-5000:]}"
                        )
        return self.runs

    def _run_dag(self, key: str, task: dict, params: dict, select: set[str], timeout: float) -> TaskRun:
        cond = task.get("triggerPolicy", {}).get("condition")
        if cond and not self._condition(cond, params):
            return TaskRun(key, skipped=f"condition {cond} is false")
        inner = self.component(task)["dag"]["tasks"]
        done = TaskRun(key)
        for name, sub in inner.items():  # the project's condition DAGs hold one task each; order by dependencies
            full = f"{key}/{name}"
            if key not in select and full not in select:
                continue
            sub_params, sub_arts = self._resolve(sub, params, f"{key}/", full)
            result = self._run_container(full, sub, sub_params, sub_arts, timeout)
            self.runs[full] = result
            if result.job is not None and not result.job.succeeded:
                done.job = result.job
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
