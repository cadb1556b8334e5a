"""The one-node Kubernetes of the ``node`` tier: start it, load the images, talk to it.

``../shared/tools/k8s/node/node.sh`` starts a real single-node Kubernetes v1.25 (kubelet + containerd + runc,
kube-proxy, a cluster DNS) on this machine. Nothing can be pulled: every image is built here and copied in with
``node.sh load``. The folder (``SPX_NODE_DIR``, default ``/var/tmp/spx-node``) is kept between sessions, so a
restart takes seconds and images already loaded stay; a stamp file remembers which podman image id was loaded
under each name, and only changed images are copied again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

NAMESPACE = "spx"
RELEASE = "spx-kfp"
STANDINS = ("localhost/spx-standin-postgres:15-bookworm", "localhost/spx-standin-redis:7.0-bookworm")
BUILD_ADVICE = (
    "build them first (as root): `bash scripts/build-images-offline.sh` (SPX_IMAGE_TAG=<tag> to match "
    "SPX_NODE_IMAGE_TAG) and `bash tests/node/standins/build.sh`"
)


class Unavailable(RuntimeError):
    """The node cannot run here; the message says why and what to do."""


def project_images(tag: str) -> list[str]:
    return [f"localhost/spx-component:{tag}", f"localhost/spx-serving:{tag}", *STANDINS]


def _podman_id(image: str) -> str | None:
    res = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True, timeout=60
    )
    return res.stdout.strip() if res.returncode == 0 else None


def check_prerequisites(node_sh: Path, images: list[str]) -> None:
    if os.geteuid() != 0:
        raise Unavailable("the node tier needs root (kubelet, containerd, iptables)")
    if not node_sh.is_file():
        raise Unavailable(f"{node_sh} not found: keep ../shared/tools/k8s beside the project or set SPX_KUBE_TOOLS")
    if shutil.which("podman") is None:
        raise Unavailable(f"podman not installed: {BUILD_ADVICE}")
    missing = [image for image in images if _podman_id(image) is None]
    if missing:
        raise Unavailable(f"images not built: {', '.join(missing)}; {BUILD_ADVICE}")


def _ref_name(desc: dict) -> str | None:
    return desc.get("annotations", {}).get("org.opencontainers.image.ref.name")


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def _prune_layout(layout: Path) -> dict:
    """Drop from the OCI layout the manifests a later push of the same name left unnamed, and every blob that only
    they used; returns the index. The folder outlives sessions (a CI machine keeps it), and without this each code
    change would leave its project layers behind in it for good."""
    index = json.loads((layout / "index.json").read_text())
    index["manifests"] = [m for m in index["manifests"] if _ref_name(m)]
    keep: set[Path] = set()
    for desc in index["manifests"]:
        manifest = json.loads(_blob(layout, desc["digest"]).read_bytes())
        digests = [desc["digest"], manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
        keep.update(_blob(layout, d) for d in digests)
    (layout / "index.json").write_text(json.dumps(index))
    for path in (layout / "blobs" / "sha256").iterdir():
        if path not in keep:
            path.unlink()
    return index


@dataclass
class JobResult:
    name: str
    succeeded: bool
    logs: str
    seconds: float
    pod_phase: str = ""

    def require(self) -> "JobResult":
        if not self.succeeded:
            raise AssertionError(f"Job {self.name} failed after {self.seconds:.0f} s; its log:\n{self.logs[-6000:]}")
        return self


@dataclass
class Node:
    dir: Path
    node_sh: Path
    kubectl_bin: str
    helm_bin: str
    env: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, attempts: int = 3) -> "Node":
        """``node.sh start``; retried when a component is seen "exited" right after its launch: node.sh checks a
        component's /proc cmdline for DIR, and a check that lands before the launcher's fork has exec'd the
        component sees the parent's command line instead (a race in node.sh, seen 2 of 5 starts here)."""
        t0 = time.monotonic()
        for attempt in range(1, attempts + 1):
            res = subprocess.run(
                [str(self.node_sh), "start", str(self.dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            if res.returncode == 0 or "exited; log:" not in res.stderr or attempt == attempts:
                break
        if res.returncode != 0:
            raise Unavailable(f"node.sh start failed ({res.returncode}):\n{res.stderr[-3000:]}")
        exports = dict(
            line.removeprefix("export ").split("=", 1) for line in res.stdout.splitlines() if line.startswith("export ")
        )
        bin_dir = str(Path(self.kubectl_bin).parent)
        self.env = {**os.environ, **exports, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
        self.timings["node start"] = time.monotonic() - t0
        return self

    def stop(self) -> None:
        subprocess.run([str(self.node_sh), "stop", str(self.dir)], capture_output=True, timeout=300)

    def load(self, images: list[str]) -> list[str]:
        """Copy into the node every image whose podman id differs from the one loaded before; returns those."""
        stamp = self.dir / "spx-loaded-images.json"
        loaded = json.loads(stamp.read_text()) if stamp.exists() else {}
        have = self._node_images()
        todo = [i for i in images if loaded.get(i) != _podman_id(i) or self._node_name(i) not in have]
        t0 = time.monotonic()
        for image in todo:
            error = self._import(image, every_layer=False)
            if error:
                # a layer the short archive counted on went missing after all: send every layer, once
                self.timings[f"every layer of {image} again"] = 1.0
                error = self._import(image, every_layer=True)
            if error:
                raise AssertionError(f"node.sh load {image} failed:\n{error}")
            loaded[image] = _podman_id(image)
            stamp.write_text(json.dumps(loaded, indent=1))
        self.timings["image load"] = self.timings.get("image load", 0.0) + time.monotonic() - t0
        return todo

    def _import(self, image: str, every_layer: bool) -> str:
        """Import ``image`` under a loading name, then move the name over; returns the error, "" on success.

        containerd 1.6 unpacks bottom-up: it stats each layer's snapshot and, when it is there, prepares the next
        layer on top of it. A snapshot nothing references still stats until the next garbage collection, and a
        collection in between (deleting the namespace's pods just before triggers them) fails the unpack with
        "parent snapshot sha256:... does not exist" (CI, 2026-12-06). So a synchronous collection runs first and
        leaves only referenced snapshots. The loading name keeps the image's own name on a fully unpacked image:
        the old one until the new one has been unpacked."""
        lease = self._ctr("leases", "create")
        if lease.returncode == 0:
            self._ctr("leases", "delete", "--sync", lease.stdout.split()[0])
        loading = f"{image}-loading"
        archive = self._new_blobs_archive(image, loading, every_layer)
        try:
            res = subprocess.run(
                [str(self.node_sh), "load", str(self.dir), str(archive)], capture_output=True, text=True, timeout=1800
            )
        finally:
            archive.unlink(missing_ok=True)
        if res.returncode != 0:
            return res.stderr[-3000:]
        for args in (["tag", "--force", loading, image], ["rm", loading]):
            res = self._ctr("images", *args)
            if res.returncode != 0:
                return f"ctr images {' '.join(args)}: {res.stderr[-3000:]}"
        return ""

    def _ctr(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", *args], capture_output=True, text=True, env=self.env, timeout=300)

    def _new_blobs_archive(self, image: str, name: str, every_layer: bool = False) -> Path:
        """An OCI archive of ``image``, named ``name``, holding only the blobs the node's containerd lacks (or every
        layer), for ``node.sh load``.

        ``node.sh load IMAGE`` runs ``podman save`` (every layer compressed again) and imports all of it; after a code
        change only the project's last small layers are new (images/*/Dockerfile), so this pushes the image into an
        OCI layout kept in the node's folder (the same gzip layer digests ``podman save`` produces) and archives the
        manifest, the config and the layers containerd does not have yet. containerd's import takes the rest from its
        content store, and unpacks only the new layers' snapshots."""
        import io
        import tarfile

        layout = self.dir / "spx-oci"
        ref = image.replace("/", "_").replace(":", "_")
        subprocess.run(
            ["podman", "push", "-q", image, f"oci:{layout}:{ref}"], check=True, capture_output=True, timeout=1800
        )
        index = _prune_layout(layout)
        (desc,) = [m for m in index["manifests"] if _ref_name(m) == ref]
        manifest = json.loads(_blob(layout, desc["digest"]).read_bytes())
        res = self._ctr("content", "ls", "-q")
        have = set(res.stdout.split()) if res.returncode == 0 else set()
        layers = [layer["digest"] for layer in manifest["layers"] if every_layer or layer["digest"] not in have]
        desc = dict(desc, annotations={"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name})
        archive = self.dir / f"spx-load-{ref}.tar"
        with tarfile.open(archive, "w") as tar:
            for member, data in (
                ("oci-layout", (layout / "oci-layout").read_bytes()),
                ("index.json", json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode()),
            ):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            for digest in [desc["digest"], manifest["config"]["digest"], *layers]:
                path = _blob(layout, digest)
                tar.add(path, arcname=str(path.relative_to(layout)))
        self.timings[f"new layers of {image}"] = float(len(layers))
        return archive

    @staticmethod
    def _node_name(image: str) -> str:
        return image if "/" in image.split(":")[0] else f"docker.io/library/{image}"

    def _node_images(self) -> set[str]:
        res = self._ctr("images", "ls", "-q")
        return set(res.stdout.split()) if res.returncode == 0 else set()

    def pvs(self, count: int) -> None:
        subprocess.run([str(self.node_sh), "pvs", str(self.dir), str(count)], check=True, capture_output=True)

    # -- clients -----------------------------------------------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess:
        res = subprocess.run(
            [self.kubectl_bin, *args], input=input, capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and res.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
        return res

    def helm(self, *args: str, check: bool = True, timeout: float = 1200) -> subprocess.CompletedProcess:
        res = subprocess.run([self.helm_bin, *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-2000:]}\n{res.stderr}"
            )
        return res

    def get(self, kind: str, namespace: str, name: str = "", selector: str = "") -> dict:
        args = ["get", kind, *([name] if name else []), "-n", namespace, "-o", "json"]
        if selector:
            args += ["-l", selector]
        return json.loads(self.kubectl(*args).stdout)

    def apply(self, *objects: dict) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))

    def delete_namespace(self, namespace: str, timeout: float = 300) -> None:
        self.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", timeout=timeout)

    def service_address(self, namespace: str, name: str, port: int | str) -> str:
        """``ip:port`` of a Service's ClusterIP, which the host reaches through kube-proxy."""
        svc = self.get("service", namespace, name)
        ports = svc["spec"]["ports"]
        chosen = next(p for p in ports if port in (p.get("name"), p["port"]))
        return f"{svc['spec']['clusterIP']}:{chosen['port']}"

    # -- workloads ---------------------------------------------------------------------------
    def run_job(
        self,
        namespace: str,
        name: str,
        pod_spec: dict,
        *,
        timeout: float = 900,
        labels: dict | None = None,
        extra: list[dict] | None = None,
    ) -> JobResult:
        """Run ``pod_spec`` as a Job (no retries) and wait for it; ``extra`` objects (a ConfigMap, …) go first."""
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"spx.io/node-test": "true", **(labels or {})},
            },
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": {"spx.io/node-test": "true", **(labels or {})}},
                    "spec": {"restartPolicy": "Never", **pod_spec},
                },
            },
        }
        self.kubectl("delete", "job", name, "-n", namespace, "--ignore-not-found", "--wait=true")
        self.apply(*(extra or []), job)
        t0 = time.monotonic()
        status: dict = {}
        while time.monotonic() - t0 < timeout:
            status = self.get("job", namespace, name).get("status", {})
            if status.get("succeeded") or status.get("failed"):
                break
            time.sleep(1.0)
        seconds = time.monotonic() - t0
        logs = self.kubectl("logs", f"job/{name}", "-n", namespace, "--all-containers", check=False).stdout
        pods = self.get("pods", namespace, selector=f"job-name={name}").get("items", [])
        phase = pods[0]["status"].get("phase", "") if pods else "no pod"
        if not (status.get("succeeded") or status.get("failed")):
            events = self.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
            logs += f"\n[timed out after {timeout:.0f} s; pod phase {phase}]\n{events[-3000:]}"
        return JobResult(name, bool(status.get("succeeded")), logs, seconds, phase)

    def pod_job(
        self,
        namespace: str,
        name: str,
        image: str,
        command: list[str],
        *,
        env: list[dict] | None = None,
        env_from: list[dict] | None = None,
        service_account: str = "",
        timeout: float = 600,
    ) -> JobResult:
        """One container as a Job, with the chart's pod and container security contexts."""
        spec: dict = {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": command,
                    "env": [{"name": "HOME", "value": "/tmp"}, *(env or [])],
                    "envFrom": env_from or [],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }
        if service_account:
            spec["serviceAccountName"] = service_account
        else:
            spec["automountServiceAccountToken"] = False
        return self.run_job(namespace, name, spec, timeout=timeout)


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
