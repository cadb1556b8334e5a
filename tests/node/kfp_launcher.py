"""A stand-in for KFP 2.5's launcher, run inside a task's pod: what `/kfp-launcher/launch` does around the
component's own command, for the node tier (tests/node/kfp_runner.py mounts this file from a ConfigMap).

Like KFP's launcher (backend/src/v2/component/launcher_v2.go) it
1. reads the ``kfp-launcher`` ConfigMap of its namespace with the pod's ServiceAccount token and opens the
   object store its ``providers.s3.default`` block names (endpoint, region, TLS, path-style), with the
   credentials of the Secret that block names, read through the API the same way;
2. downloads every input artifact from its URI to the local path the KFP SDK derives (``s3://b/k`` ->
   ``/s3/b/k``), a file or a folder;
3. creates the folders of the output files (parameters under /tmp/kfp/outputs, artifacts under /s3);
4. replaces the placeholders ``{{$}}`` (the executor input as JSON) and ``{{$.inputs…}}``/``{{$.outputs…}}`` in the
   command and arguments and runs them;
5. reads ``/tmp/kfp_outputs/output_metadata.json`` and the parameter output files, uploads every output
   artifact's local file or folder to its URI, and prints the outputs as one ``KFP-LAUNCHER-OUTPUTS {json}`` line
   (where the real launcher records them in ML Metadata).

Standard library plus boto3, kubernetes and PyYAML (all in the component image).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

OUTPUT_METADATA = "/tmp/kfp_outputs/output_metadata.json"
MARKER = "KFP-LAUNCHER-OUTPUTS "


def local_path(uri: str) -> str:
    for scheme, root in (("gs://", "/gcs/"), ("minio://", "/minio/"), ("s3://", "/s3/")):
        if uri.startswith(scheme):
            return root + uri[len(scheme) :]
    raise ValueError(f"unsupported artifact URI {uri!r}")


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.split("://", 1)[1].partition("/")
    return bucket, key


def object_store():
    """boto3 client from kfp-launcher's providers block and its Secret, read as this pod's ServiceAccount."""
    import boto3
    import yaml
    from botocore.config import Config
    from kubernetes import client, config

    config.load_incluster_config()
    namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    core = client.CoreV1Api()
    launcher = core.read_namespaced_config_map("kfp-launcher", namespace).data or {}
    s3 = yaml.safe_load(launcher.get("providers") or "{}")["s3"]["default"]
    ref = s3["credentials"]["secretRef"]
    secret = core.read_namespaced_secret(ref["secretName"], namespace).data
    import base64

    def field(key: str) -> str:
        return base64.b64decode(secret[ref[key]]).decode()

    scheme = "http" if s3.get("disableSSL") else "https"
    print(f"[launcher] object store {scheme}://{s3['endpoint']} (kfp-launcher providers.s3.default)", flush=True)
    return boto3.client(
        "s3",
        endpoint_url=f"{scheme}://{s3['endpoint']}",
        aws_access_key_id=field("accessKeyKey"),
        aws_secret_access_key=field("secretKeyKey"),
        region_name=s3.get("region") or "us-east-1",
        config=Config(s3={"addressing_style": "path" if s3.get("forcePathStyle") else "auto"}),
    ), launcher.get("defaultPipelineRoot", "")


def download(s3, uri: str, path: str) -> int:
    bucket, key = split_uri(uri)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/").get("Contents", [])
    if not listing:  # a single object
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, path)
        return 1
    for obj in listing:
        target = Path(path) / obj["Key"][len(key.rstrip("/")) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, obj["Key"], str(target))
    return len(listing)


def upload(s3, path: str, uri: str) -> int:
    bucket, key = split_uri(uri)
    local = Path(path)
    if local.is_file():
        s3.upload_file(str(local), bucket, key)
        return 1
    if not local.exists():
        print(f"[launcher] output {uri}: {path} was not written (KFP allows that)", flush=True)
        return 0
    files = [f for f in local.rglob("*") if f.is_file()]
    for f in files:
        s3.upload_file(str(f), bucket, f"{key.rstrip('/')}/{f.relative_to(local).as_posix()}")
    return len(files)


def placeholders(executor_input: dict) -> dict[str, str]:
    out = {"{{$}}": json.dumps(executor_input)}
    inputs, outputs = executor_input.get("inputs", {}), executor_input.get("outputs", {})
    for name, value in inputs.get("parameterValues", {}).items():
        out[f"{{{{$.inputs.parameters['{name}']}}}}"] = value if isinstance(value, str) else json.dumps(value)
    for name, lst in inputs.get("artifacts", {}).items():
        uri = lst["artifacts"][0]["uri"]
        out[f"{{{{$.inputs.artifacts['{name}'].uri}}}}"] = uri
        out[f"{{{{$.inputs.artifacts['{name}'].path}}}}"] = local_path(uri)
    for name, lst in outputs.get("artifacts", {}).items():
        uri = lst["artifacts"][0]["uri"]
        out[f"{{{{$.outputs.artifacts['{name}'].uri}}}}"] = uri
        out[f"{{{{$.outputs.artifacts['{name}'].path}}}}"] = local_path(uri)
    for name, param in outputs.get("parameters", {}).items():
        out[f"{{{{$.outputs.parameters['{name}'].output_file}}}}"] = param["outputFile"]
    return out


def substitute(arg: str, table: dict[str, str]) -> str:
    for key, value in table.items():
        arg = arg.replace(key, value)
    return arg


def main(argv: list[str]) -> int:
    if "--" not in argv:
        raise SystemExit("usage: kfp_launcher.py -- COMMAND [ARGS…]  (executor input in $KFP_EXECUTOR_INPUT)")
    command = argv[argv.index("--") + 1 :]
    executor_input = json.loads(os.environ["KFP_EXECUTOR_INPUT"])
    s3, _root = object_store()
    for name, lst in executor_input.get("inputs", {}).get("artifacts", {}).items():
        uri = lst["artifacts"][0]["uri"]
        n = download(s3, uri, local_path(uri))
        print(f"[launcher] input artifact {name}: {uri} -> {local_path(uri)} ({n} file(s))", flush=True)
    outputs = executor_input.get("outputs", {})
    for param in outputs.get("parameters", {}).values():
        Path(param["outputFile"]).parent.mkdir(parents=True, exist_ok=True)
    for lst in outputs.get("artifacts", {}).values():
        Path(local_path(lst["artifacts"][0]["uri"])).parent.mkdir(parents=True, exist_ok=True)
    Path(OUTPUT_METADATA).parent.mkdir(parents=True, exist_ok=True)

    table = placeholders(executor_input)
    rc = subprocess.call([substitute(a, table) for a in command])
    if rc != 0:
        print(f"[launcher] the component exited {rc}", flush=True)
        return rc

    metadata = json.loads(Path(OUTPUT_METADATA).read_text()) if Path(OUTPUT_METADATA).exists() else {}
    params = dict(metadata.get("parameterValues", {}))
    for name, param in outputs.get("parameters", {}).items():
        if name not in params and Path(param["outputFile"]).exists():
            params[name] = Path(param["outputFile"]).read_text()
    artifacts = {}
    for name, lst in outputs.get("artifacts", {}).items():
        art = dict(lst["artifacts"][0])
        produced = (metadata.get("artifacts", {}).get(name, {}).get("artifacts") or [{}])[0]
        art["uri"] = produced.get("uri") or art["uri"]
        art["metadata"] = {**art.get("metadata", {}), **produced.get("metadata", {})}
        n = upload(s3, local_path(art["uri"]), art["uri"])
        print(f"[launcher] output artifact {name}: {local_path(art['uri'])} -> {art['uri']} ({n} file(s))", flush=True)
        artifacts[name] = art
    print(MARKER + json.dumps({"parameters": params, "artifacts": artifacts}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
