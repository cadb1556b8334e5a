"""A real kube-apiserver (+ etcd) on loopback for the ``cluster`` test tier.

Started once per session from ``../shared/tools/k8s/apiserver.sh`` (override the folder with
``SPX_KUBE_TOOLS``; use your own kube-apiserver binary, e.g. envtest's, with ``SPX_KUBE_APISERVER_BIN`` and
an ``etcd`` on PATH). The KServe v0.20.0 CRDs and the Kubeflow Pipelines 2.5.0 manifests from the same folder
are applied server-side before the tests run. In CI (``CI=true``) a missing server fails the tier; elsewhere
it is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

HOW_TO = (
    "install etcd (`apt-get install -y etcd-server`), keep ../shared/tools/k8s beside the project "
    "(or set SPX_KUBE_TOOLS to a folder with apiserver.sh, crds/kserve-v0.20.0 and kfp-2.5.0, or "
    "SPX_KUBE_APISERVER_BIN to a kube-apiserver binary such as envtest's), and run "
    "scripts/install-cluster-tools.sh for helm/kubectl"
)


class Unavailable(RuntimeError):
    """The API server cannot be started here; the message says why and how to get one."""


@dataclass
class KubeCluster:
    dir: Path
    tools: Path
    kubeconfig: Path
    server: str
    ca: Path
    kubectl_bin: str
    helm_bin: str

    def env(self, kubeconfig: Path | None = None) -> dict:
        return {**os.environ, "KUBECONFIG": str(kubeconfig or self.kubeconfig)}

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [self.kubectl_bin, *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(kubeconfig),
            timeout=timeout,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stderr}")
        return res

    def helm(self, *args: str, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        res = subprocess.run([self.helm_bin, *args], capture_output=True, text=True, env=self.env(), timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stderr}")
        return res

    def get(self, kind: str, name: str, namespace: str) -> dict | None:
        res = self.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if res.returncode != 0:
            if "NotFound" in res.stderr:
                return None
            raise AssertionError(res.stderr)
        return json.loads(res.stdout)

    def token(self, service_account: str, namespace: str) -> str:
        """A real token for the ServiceAccount (TokenRequest API)."""
        return self.kubectl("create", "token", service_account, "-n", namespace, "--duration=1h").stdout.strip()

    def kubeconfig_for(self, service_account: str, namespace: str, path: Path) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount with a TokenRequest token."""
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": self.server, "certificate-authority": str(self.ca)}}],
            "users": [{"name": service_account, "user": {"token": self.token(service_account, namespace)}}],
            "contexts": [
                {"name": "sa", "context": {"cluster": "local", "user": service_account, "namespace": namespace}}
            ],
            "current-context": "sa",
        }
        path.write_text(yaml.safe_dump(cfg))
        return path

    def api_client(self, kubeconfig: Path | None = None):
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))


def _need(tools: Path) -> None:
    missing = [
        str(tools / p)
        for p in ("apiserver.sh", "crds/kserve-v0.20.0", "kfp-2.5.0/platform-agnostic.yaml")
        if not (tools / p).exists()
    ]
    if missing:
        raise Unavailable(f"API server tools not found: {', '.join(missing)}")
    for exe in ("etcd", "openssl", "xz", "curl"):
        if shutil.which(exe) is None:
            raise Unavailable(f"`{exe}` not on PATH")


def start(tools: Path, workdir: Path, kubectl_bin: str, helm_bin: str, apiserver_bin: str = "") -> KubeCluster:
    """Start etcd + kube-apiserver under ``workdir``, install the KServe CRDs and KFP 2.5.0 server-side."""
    _need(tools)
    if apiserver_bin:
        if not os.access(apiserver_bin, os.X_OK):
            raise Unavailable(f"SPX_KUBE_APISERVER_BIN={apiserver_bin} is not an executable")
        (workdir / "bin").mkdir(parents=True, exist_ok=True)
        target = workdir / "bin" / "kube-apiserver"  # apiserver.sh uses it instead of unpacking its own
        if not target.exists():
            target.symlink_to(Path(apiserver_bin).resolve())
    res = subprocess.run(
        ["bash", str(tools / "apiserver.sh"), "start", str(workdir)], capture_output=True, text=True, timeout=180
    )
    if res.returncode != 0:
        raise Unavailable(f"apiserver.sh start failed: {res.stderr.strip()[-800:]}")
    kubeconfig = workdir / "admin.kubeconfig"
    cfg = yaml.safe_load(kubeconfig.read_text())
    cluster = cfg["clusters"][0]["cluster"]
    kube = KubeCluster(
        dir=workdir,
        tools=tools,
        kubeconfig=kubeconfig,
        server=cluster["server"],
        ca=Path(cluster["certificate-authority"]),
        kubectl_bin=kubectl_bin,
        helm_bin=helm_bin,
    )
    try:
        kube.kubectl("apply", "--server-side", "-f", str(tools / "crds" / "kserve-v0.20.0"))
        kube.kubectl("apply", "--server-side", "-f", str(tools / "kfp-2.5.0" / "cluster-scoped-resources.yaml"))
        kube.kubectl(
            "wait",
            "--for",
            "condition=established",
            "--timeout=60s",
            "crd/applications.app.k8s.io",
            "crd/inferenceservices.serving.kserve.io",
            "crd/workflowtaskresults.argoproj.io",
        )
        kube.kubectl("apply", "--server-side", "-f", str(tools / "kfp-2.5.0" / "platform-agnostic.yaml"))
    except Exception:
        stop(tools, workdir)
        raise
    return kube


def stop(tools: Path, workdir: Path) -> None:
    subprocess.run(["bash", str(tools / "apiserver.sh"), "wipe", str(workdir)], capture_output=True, timeout=60)
