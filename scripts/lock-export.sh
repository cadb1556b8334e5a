#!/usr/bin/env bash
# images/<image>/requirements.txt from uv.lock: the exact versions and hashes each image installs
# (`pip install --require-hashes --no-deps`), for the extras its Dockerfile names in `ARG SPX_EXTRAS`.
# The lock is the one source: README (uv sync --locked), CI (.ci/run) and both images install it.
#
#   bash scripts/lock-export.sh           write the files
#   bash scripts/lock-export.sh --check   exit 1 when a committed file differs from the lock (CI runs this)
#
# torch comes from a folder of wheels (see [tool.uv.index] in pyproject.toml), for which uv records no
# hash; the CPU wheel's published sha256 is added here, so pip refuses any other file of that name.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_CPU_WHEEL=torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
TORCH_CPU_SHA256=6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b
UV=${UV:-uv}
command -v "$UV" >/dev/null 2>&1 || UV=".venv/bin/uv"

check=0
[ "${1:-}" = "--check" ] && check=1
status=0
for image in component serving; do
  dockerfile=images/$image/Dockerfile
  extras=$(sed -n 's/^ARG SPX_EXTRAS=//p' "$dockerfile")
  [ -n "$extras" ] || { echo "$dockerfile names no ARG SPX_EXTRAS" >&2; exit 1; }
  args=()
  IFS=, read -ra names <<< "$extras"
  for name in "${names[@]}"; do args+=(--extra "$name"); done
  out=images/$image/requirements.txt
  tmp=$(mktemp)
  {
    echo "# GENERATED from uv.lock by scripts/lock-export.sh for spx-kfp[$extras]: do not edit."
    echo "# Installed with: pip install --require-hashes --no-deps -r requirements.txt (images/$image/Dockerfile)"
    "$UV" export --frozen --quiet --no-emit-project --no-header "${args[@]}" --format requirements-txt \
      | sed -E "s|^(torch==2\.13\.0\+cpu) ;(.*)$|\1 ;\2 \\\\\n    --hash=sha256:$TORCH_CPU_SHA256|"
  } > "$tmp"
  if grep -q '^torch==' "$tmp" && ! grep -q "$TORCH_CPU_SHA256" "$tmp"; then
    echo "torch in the lock is not 2.13.0+cpu: update TORCH_CPU_WHEEL/TORCH_CPU_SHA256 here" >&2; exit 1
  fi
  if [ "$check" = 1 ]; then
    if ! diff -u "$out" "$tmp" > /dev/null 2>&1; then
      echo "$out does not match uv.lock: run bash scripts/lock-export.sh" >&2
      diff -u "$out" "$tmp" | head -20 >&2 || true
      status=1
    fi
    rm -f "$tmp"
  else
    mv "$tmp" "$out"
    echo "wrote $out ($(grep -c '^[a-z0-9]' "$out") packages, extras $extras)"
  fi
done
# the wheel the lock points at must be the published CPU build
for folder in /opt/wheels; do
  if [ -f "$folder/$TORCH_CPU_WHEEL" ]; then
    have=$(sha256sum "$folder/$TORCH_CPU_WHEEL" | cut -d' ' -f1)
    [ "$have" = "$TORCH_CPU_SHA256" ] || { echo "$folder/$TORCH_CPU_WHEEL has sha256 $have, not $TORCH_CPU_SHA256" >&2; status=1; }
  fi
done
exit "$status"
