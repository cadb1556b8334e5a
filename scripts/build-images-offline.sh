#!/usr/bin/env bash
# Build and smoke-test the two project images WITHOUT a Docker engine and without network inside the
# builds: Debian's podman + runc, a debootstrapped bookworm base imported as a local image, a host-side
# wheelhouse (images/wheelhouse/, git-ignored), `podman build --network=none --pull=never`, then
# `podman run --network=none` checks (CLI, imports, two real KFP components on a real S3 server,
# a real KServe V2 predictor answering an infer request, non-root uid).
#
# Idempotent: every step is skipped when its result is already there (base image, wheelhouse for the
# current constraints), and the builds reuse podman's layer cache. Needs root (apt-get, debootstrap).
#
# Env knobs:
#   SPX_OFFLINE_WORK   scratch dir for the debootstrap root   (default /var/tmp/spx-images)
#   SPX_BASE_IMAGE     local base image name                   (default localhost/spx-python:3.11-bookworm)
#   SPX_IMAGE_TAG      tag of the built images                 (default dev)
#   SPX_DEBIAN_MIRROR  debootstrap mirror                      (default http://deb.debian.org/debian)
#   REBUILD_BASE=1     re-debootstrap and re-import the base;  REFRESH_WHEELS=1  re-download the wheels
#   NO_CACHE=1         podman build --no-cache (to measure a cold build)
#   SKIP_SMOKE=1       build only
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${SPX_OFFLINE_WORK:-/var/tmp/spx-images}
BASE=${SPX_BASE_IMAGE:-localhost/spx-python:3.11-bookworm}
TAG=${SPX_IMAGE_TAG:-dev}
MIRROR=${SPX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
WHEELS=images/wheelhouse
PY=${PYTHON:-python3}
NO_CACHE_FLAG=()
[ "${NO_CACHE:-0}" = 1 ] && NO_CACHE_FLAG=(--no-cache)

say() { printf '\n== %s\n' "$*"; }
run() { printf '+ %s\n' "$*" >&2; "$@"; }
runlog() { local log=$1; shift; printf '+ %s  > %s\n' "$*" "$log" >&2; "$@" >> "$log" 2>&1; }

if [ "$(id -u)" != 0 ]; then
  echo "run as root (apt-get, debootstrap and rootful podman)" >&2
  exit 1
fi

say "1. podman + runc + debootstrap (Debian packages)"
missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  run apt-get update -qq
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc debootstrap uidmap fuse-overlayfs containernetworking-plugins
else
  echo "already installed: $(podman --version), runc $(runc --version | head -1 | awk '{print $3}')"
fi

say "2. /etc/containers/containers.conf: runc runtime, lowered default ulimits"
CONF=/etc/containers/containers.conf
if [ -f "$CONF" ] && grep -q '^runtime *= *"runc"' "$CONF" && grep -q '^default_ulimits' "$CONF"; then
  echo "already configured: $CONF"
else
  if [ -f "$CONF" ]; then run cp "$CONF" "$CONF.bak.$(date +%s)"; fi
  mkdir -p /etc/containers
  cat > "$CONF" <<'EOF'
# written by scripts/build-images-offline.sh (spx-kfp): crun/default ulimits do not work in this sandbox
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
EOF
  echo "wrote $CONF"
fi

say "3. base image $BASE (debootstrap minbase bookworm + python3, venv, libgomp1)"
if [ "${REBUILD_BASE:-0}" != 1 ] && podman image exists "$BASE"; then
  echo "already present: $BASE"
else
  ROOTFS=$WORK/rootfs
  run rm -rf "$ROOTFS"
  mkdir -p "$WORK"
  t0=$SECONDS
  : > "$WORK/debootstrap.log"
  runlog "$WORK/debootstrap.log" debootstrap --variant=minbase \
    --include=python3,python3-venv,python-is-python3,libgomp1,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
  tar -C "$ROOTFS" --numeric-owner -c . | run podman import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    -m "debootstrap --variant=minbase bookworm + python3 python3-venv python-is-python3 libgomp1 ca-certificates" \
    - "$BASE"
  run rm -rf "$ROOTFS"
  echo "base image built in $((SECONDS - t0)) s"
fi
podman run --rm --network=none "$BASE" python --version

say "4. wheelhouse $WHEELS: the files images/*/requirements.txt name (exported from uv.lock), fetched on the host"
stamp=$WHEELS/.stamp
bash scripts/lock-export.sh --check   # the requirement files are the lock's, or stop here
want=$(cat images/component/requirements.txt images/serving/requirements.txt tests/node/standins/kserve-storage.txt \
  | sha256sum | cut -d' ' -f1)
if [ "${REFRESH_WHEELS:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "up to date for images/*/requirements.txt: $(find "$WHEELS" -name '*.whl' | wc -l) wheels"
else
  mkdir -p "$WHEELS" "$WORK"
  t0=$SECONDS
  : > "$WORK/wheels.log"
  for image in component serving; do
    # every file the lock names, whatever the markers say on this host (the images run Debian's Python
    # 3.11.2: async-timeout is needed there below 3.11.3 and skipped by marker here); hashes are checked
    sed -E 's/ ;[^\\]*( \\)?$/\1/' "images/$image/requirements.txt" > "$WORK/download-$image.txt"
    runlog "$WORK/wheels.log" "$PY" -m pip download -q --no-deps --require-hashes -d "$WHEELS" \
      -r "$WORK/download-$image.txt" \
      || { grep -v 'is ignored' "$WORK/wheels.log" | tail -30 >&2; exit 1; }
  done
  # KServe's storage-initializer code for the node tier's predictor pods (tests/node/standins/kserve-storage.txt)
  runlog "$WORK/wheels.log" "$PY" -m pip download -q --no-deps --require-hashes -d "$WHEELS" \
    -r tests/node/standins/kserve-storage.txt \
    || { grep -v 'is ignored' "$WORK/wheels.log" | tail -30 >&2; exit 1; }
  # the build backend for the project itself (pip's isolated build inside the image)
  runlog "$WORK/wheels.log" "$PY" -m pip download -q -d "$WHEELS" "setuptools>=70.1" \
    || { grep -v 'is ignored' "$WORK/wheels.log" | tail -30 >&2; exit 1; }
  ls "$WHEELS"/torch-2.13.0+cpu-*.whl >/dev/null || { echo "no torch 2.13.0+cpu wheel in $WHEELS" >&2; exit 1; }
  echo "$want" > "$stamp"
  echo "$(find "$WHEELS" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1), in $((SECONDS - t0)) s"
fi

say "5. podman build --network=none --pull=never"
build() {  # name
  local t0=$SECONDS
  : > "$WORK/build-$1.log"
  runlog "$WORK/build-$1.log" podman build --network=none --pull=never "${NO_CACHE_FLAG[@]}" \
    -f "images/$1/Dockerfile" --build-arg "PYTHON_IMAGE=$BASE" --build-arg PIP_NO_INDEX=1 \
    -t "localhost/spx-$1:$TAG" . \
    || { tail -30 "$WORK/build-$1.log" >&2; echo "build of $1 failed; log: $WORK/build-$1.log" >&2; exit 1; }
  echo "spx-$1 built in $((SECONDS - t0)) s (log: $WORK/build-$1.log)"
}
mkdir -p "$WORK"
build component
build serving
podman images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' \
  | grep -E "^(localhost/spx-(component|serving):$TAG|$BASE) "

if [ "${SKIP_SMOKE:-0}" = 1 ]; then exit 0; fi

say "6. podman run --network=none checks"
C=localhost/spx-component:$TAG
S=localhost/spx-serving:$TAG
check_uid() {  # image
  local uid
  uid=$(podman run --rm --network=none --entrypoint id "$1" -u)
  [ "$uid" != 0 ] || { echo "$1 runs as root" >&2; exit 1; }
  echo "$1 runs as uid $uid"
}
check_uid "$C"
check_uid "$S"
check_lock() {  # image requirements.txt: what pip has installed is exactly the lock's export, plus spx-kfp
  # (pip, setuptools and wheel are the venv's own tools; where the lock names setuptools, its version is
  # what the requirements install, checked by pip's hashes)
  local want have
  want=$(grep -E '^[A-Za-z0-9]' "$2" | sed -E 's/ ;.*//; s/ *\\$//' | grep -v -E '^(pip|setuptools|wheel)==' \
    | tr 'A-Z_.' 'a-z--' | sort)
  have=$(podman run --rm --network=none --entrypoint /opt/venv/bin/pip "$1" freeze --all --exclude-editable \
    | grep -v -E '^(spx-kfp|pip|setuptools|wheel)(==| @)' | tr 'A-Z_.' 'a-z--' | sort)
  if [ "$want" != "$have" ]; then
    echo "$1 does not hold exactly $2:" >&2
    diff <(echo "$want") <(echo "$have") | head -20 >&2
    exit 1
  fi
  echo "$1 holds exactly $2 ($(echo "$have" | wc -l) packages)"
}
check_lock "$C" images/component/requirements.txt
check_lock "$S" images/serving/requirements.txt
check_source() {  # image: the project installed in it is this tree's (a stale layer would serve old code)
  local manifest
  manifest=$("$PY" - <<'PYEOF'
import hashlib, pathlib
for root, prefix in (("spx", "spx"), ("components", "spx/components"), ("pipelines", "spx/pipelines")):
    for f in sorted(pathlib.Path(root).rglob("*.py")):
        if "__pycache__" not in f.parts and not (root == "spx" and f.parts[1] in ("components", "pipelines")):
            print(hashlib.sha256(f.read_bytes()).hexdigest(), prefix + "/" + f.relative_to(root).as_posix())
PYEOF
)
  echo "$manifest" | podman run --rm -i --network=none --entrypoint python "$1" -c '
import hashlib, pathlib, sys, spx
site = pathlib.Path(spx.__file__).parent.parent
bad = [p for h, p in (line.split() for line in sys.stdin if line.strip())
       if not (site / p).is_file() or hashlib.sha256((site / p).read_bytes()).hexdigest() != h]
sys.exit(f"{len(bad)} project files differ from the tree, e.g. {bad[:3]}" if bad else 0)' \
    || { echo "$1 does not hold this tree's code (a stale layer?): rebuild with NO_CACHE=1" >&2; exit 1; }
  echo "$1 holds this tree's code ($(echo "$manifest" | wc -l) files)"
}
check_source "$C"
check_source "$S"
run podman run --rm --network=none "$C" spx --help > /dev/null && echo "spx --help: ok"
run podman run --rm --network=none "$C" python -c \
  "import spx.components.training.train, spx.pipelines.training, torch, xgboost, lightgbm, talib; print('imports ok, torch', torch.__version__)"
run podman run --rm --network=none "$C" sh -c 'spx compile -o /tmp/spx-training.yaml && test -s /tmp/spx-training.yaml'
echo "+ podman run -i --network=none $C python - < tests/smoke/component_smoke.py"
podman run --rm -i --network=none "$C" python - < tests/smoke/component_smoke.py > "$WORK/smoke-component.log" 2>&1 \
  || { tail -30 "$WORK/smoke-component.log" >&2; exit 1; }
tail -1 "$WORK/smoke-component.log"
run podman run --rm --network=none "$S" --help > /dev/null && echo "transformer --help: ok"
run podman run --rm --network=none --entrypoint python "$S" -m spx.components.serving.predictor --help > /dev/null \
  && echo "predictor --help: ok"
echo "+ podman run -i --network=none --entrypoint python $S - < tests/smoke/serving_smoke.py"
podman run --rm -i --network=none --entrypoint python "$S" - < tests/smoke/serving_smoke.py \
  > "$WORK/smoke-serving.log" 2>&1 || { tail -30 "$WORK/smoke-serving.log" >&2; exit 1; }
grep '^serving smoke OK' "$WORK/smoke-serving.log"
say "all images built and checked"
