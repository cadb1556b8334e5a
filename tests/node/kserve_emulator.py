"""What KServe's controller and its pod webhook make of a RawDeployment InferenceService, for the node tier, where no
KServe controller runs: the predictor and transformer Deployments and Services, derived from the objects in the
API server (the InferenceService the pipeline's deploy step created, the ServingRuntime the chart installed, the
ServiceAccount's S3 Secret), nothing copied by hand.

Emulated, after KServe 0.20/0.21's Go code (read, not vendored):

* the predictor container: the ServingRuntime's container merged with the InferenceService's ``predictor.model``
  (resources, env, envFrom, securityContext and volume mounts from the model spec; the runtime's args, then the
  model's; ``{{.Name}}`` replaced by the InferenceService's name), the pod-level fields of ``spec.predictor``
  (ServiceAccount, security context, volumes; the runtime's volumes merged by name), container name
  ``kserve-container``;
* the storage initializer (``pkg/webhook/admission/pod/storage_initializer_injector.go``): an init container
  ``storage-initializer`` with args ``[storageUri, /mnt/models]``, the emptyDir ``kserve-provision-location``
  mounted at /mnt/models (read-only in ``kserve-container``), and the S3 env KServe's credential builder derives
  from the ServiceAccount's Secret and its ``serving.kserve.io/s3-*`` annotations
  (``pkg/credentials/s3/s3_secret.go``, ``utils.go``; key names from the default ``inferenceservice-config``:
  AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY). Its image here is the serving image running KServe's own download
  code (``kserve_storage.Storage.download_files``, the kserve-storage wheel of the locked kserve release, mounted
  from a ConfigMap), a stand-in for ``kserve/storage-initializer``;
* the transformer container (``pkg/apis/serving/v1beta1/transformer_custom.go``): the spec's container with
  ``--model_name <isvc> --predictor_host <isvc>-predictor.<ns> --http_port 8080`` appended;
* raw mode's Services ``<isvc>-predictor`` and ``<isvc>-transformer``, port 80 to the container's 8080;
  ``minReplicas`` replicas.

What it cannot catch: KServe's own defaulting and validation webhooks, the HPA KServe creates from
``min/maxReplicas``, its ingress and top-level Service, Knative (serverless mode: revisions, the queue-proxy, scale
to zero, PodSpec features Knative refuses), canary traffic splitting (neither ``canaryTrafficPercent`` nor raw
mode's ``spec.canary``), and the real ``kserve/storage-initializer`` image (its uid, its Python).
"""

from __future__ import annotations

import copy
import hashlib
import zipfile
from pathlib import Path

MODEL_MOUNT = "/mnt/models"
MODEL_VOLUME = "kserve-provision-location"
HTTP_PORT = 8080
KSERVE_STORAGE_WHEEL = "kserve_storage-0.21.0-py3-none-any.whl"
KSERVE_STORAGE_SHA256 = "94b4ffb8d7b3d1e3c744ac171061c8838966097f76ffcda4199204ce7f7fc5f1"
# KServe's initializer entrypoint: src_uri dest_path pairs -> Storage.download_files
INITIALIZER = """import sys
from kserve_storage import Storage, configure_logging, logger
configure_logging()
args = sys.argv[1:]
logger.info("Initializing, args: %s", args)
Storage.download_files(args[0::2], args[1::2])
"""
ANN_S3 = "serving.kserve.io/"


def kserve_storage_files(wheelhouse: Path) -> dict[str, str]:
    """The ``kserve_storage`` package's modules from the hash-checked wheel (ConfigMap keys cannot hold ``/``)."""
    wheel = wheelhouse / KSERVE_STORAGE_WHEEL
    if not wheel.is_file():
        raise FileNotFoundError(
            f"{wheel} not found: scripts/build-images-offline.sh downloads it (tests/node/standins/kserve-storage.txt)"
        )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != KSERVE_STORAGE_SHA256:
        raise AssertionError(f"{wheel}: sha256 {digest}, want {KSERVE_STORAGE_SHA256}")
    with zipfile.ZipFile(wheel) as zf:
        return {
            name.split("/", 1)[1]: zf.read(name).decode()
            for name in zf.namelist()
            if name.startswith("kserve_storage/") and name.count("/") == 1 and name.endswith(".py")
        }


def s3_env(secret: dict) -> list[dict]:
    """KServe's credential builder for an S3 Secret attached to the ServiceAccount (``BuildSecretEnvs``)."""
    ann = secret["metadata"].get("annotations") or {}
    name = secret["metadata"]["name"]
    env = [
        {"name": key, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    ]
    endpoint = ann.get(ANN_S3 + "s3-endpoint")
    if endpoint:
        url = "https://" + endpoint
        if ANN_S3 + "s3-usehttps" in ann:
            if ann[ANN_S3 + "s3-usehttps"] == "0":
                url = "http://" + endpoint
            env.append({"name": "S3_USE_HTTPS", "value": ann[ANN_S3 + "s3-usehttps"]})
        env += [{"name": "S3_ENDPOINT", "value": endpoint}, {"name": "AWS_ENDPOINT_URL", "value": url}]
    for annotation, var in (
        ("s3-verifyssl", "S3_VERIFY_SSL"),
        ("s3-useanoncredential", "awsAnonymousCredential"),
        ("s3-region", "AWS_DEFAULT_REGION"),
        ("s3-usevirtualbucket", "S3_USER_VIRTUAL_BUCKET"),
        ("s3-cabundle", "AWS_CA_BUNDLE"),
    ):
        if ann.get(ANN_S3 + annotation):
            env.append({"name": var, "value": ann[ANN_S3 + annotation]})
    return env


def _merge_by(base: list, extra: list, key: str) -> list:
    out = {item[key]: item for item in base}
    out.update({item[key]: item for item in extra})
    return list(out.values())


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def predictor_container(isvc: dict, runtime: dict) -> dict:
    """The runtime's container merged with ``predictor.model`` (KServe's ``MergeRuntimeContainers``)."""
    model = isvc["spec"]["predictor"]["model"]
    (container,) = [c for c in runtime["spec"]["containers"] if c["name"] == "kserve-container"]
    merged = copy.deepcopy(container)
    for key, value in model.items():
        if key in ("modelFormat", "protocolVersion", "storageUri", "runtime", "name"):
            continue
        if key == "args":
            merged["args"] = [*merged.get("args", []), *value]
        elif key in ("env", "volumeMounts", "ports"):
            merged[key] = _merge_by(merged.get(key, []), value, "name" if key != "volumeMounts" else "mountPath")
        elif isinstance(value, dict):
            merged[key] = _deep_merge(merged.get(key, {}), value)
        else:
            merged[key] = value
    name = isvc["metadata"]["name"]
    merged["args"] = [a.replace("{{.Name}}", name) for a in merged.get("args", [])]
    merged["name"] = "kserve-container"
    return merged


def _deployment(isvc: dict, component: str, pod: dict) -> dict:
    name, ns = isvc["metadata"]["name"], isvc["metadata"]["namespace"]
    labels = {"serving.kserve.io/inferenceservice": name, "component": component, "spx.io/node-test": "true"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{name}-{component}", "namespace": ns, "labels": labels},
        "spec": {
            "replicas": isvc["spec"][component].get("minReplicas", 1),
            "selector": {"matchLabels": {"serving.kserve.io/inferenceservice": name, "component": component}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def _service(isvc: dict, component: str) -> dict:
    name, ns = isvc["metadata"]["name"], isvc["metadata"]["namespace"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{name}-{component}", "namespace": ns, "labels": {"spx.io/node-test": "true"}},
        "spec": {
            "selector": {"serving.kserve.io/inferenceservice": name, "component": component},
            "ports": [{"name": "http", "port": 80, "targetPort": HTTP_PORT}],
        },
    }


def raw_deployment(
    isvc: dict, runtime: dict, s3_secret: dict, initializer_image: str, storage_code: dict[str, str]
) -> list[dict]:
    """The objects KServe would create for ``isvc`` in raw mode (see the module docstring), applied in order."""
    name, ns = isvc["metadata"]["name"], isvc["metadata"]["namespace"]
    pred = isvc["spec"]["predictor"]
    container = predictor_container(isvc, runtime)
    container["volumeMounts"] = [
        *container.get("volumeMounts", []),
        {"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT, "readOnly": True},
    ]
    code = f"{name}-kserve-storage"
    init = {
        "name": "storage-initializer",
        "image": initializer_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "/kserve-storage/initializer.py"],
        "args": [pred["model"]["storageUri"], MODEL_MOUNT],
        "env": [*s3_env(s3_secret), {"name": "PYTHONPATH", "value": "/kserve-storage"}],
        "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT},
            {"name": "kserve-storage", "mountPath": "/kserve-storage", "readOnly": True},
        ],
    }
    volumes = _merge_by(runtime["spec"].get("volumes", []), pred.get("volumes", []), "name")
    predictor_pod = {
        k: v for k, v in pred.items() if k not in ("model", "minReplicas", "maxReplicas", "volumes", "name")
    }
    predictor_pod.update(
        initContainers=[init],
        containers=[container],
        volumes=[
            *volumes,
            {"name": MODEL_VOLUME, "emptyDir": {}},
            {
                "name": "kserve-storage",
                "configMap": {
                    "name": code,
                    "items": [
                        *({"key": k, "path": f"kserve_storage/{k}"} for k in storage_code),
                        {"key": "initializer.py", "path": "initializer.py"},
                    ],
                },
            },
        ],
    )
    objects = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": code, "namespace": ns, "labels": {"spx.io/node-test": "true"}},
            "data": {**storage_code, "initializer.py": INITIALIZER},
        },
        _deployment(isvc, "predictor", predictor_pod),
        _service(isvc, "predictor"),
    ]
    transformer = isvc["spec"].get("transformer")
    if transformer:
        pod = {k: v for k, v in copy.deepcopy(transformer).items() if k not in ("minReplicas", "maxReplicas")}
        c = pod["containers"][0]
        c["name"] = "kserve-container"
        args = c.setdefault("args", [])
        for flag, value in (
            ("--model_name", name),
            ("--predictor_host", f"{name}-predictor.{ns}"),
            ("--http_port", str(HTTP_PORT)),
        ):
            if flag not in args:
                args += [flag, value]
        objects += [_deployment(isvc, "transformer", pod), _service(isvc, "transformer")]
    return objects
