#!/usr/bin/env bash
# Local stand-ins for the third-party images the chart renders, for the `node` test tier (tests/node): nothing can
# be pulled on our machines, so PostgreSQL and Redis come from Debian bookworm's packages (postgresql-15,
# redis-server 7.0) in a debootstrapped root, wrapped to honour the official images' contract (env, uid 999,
# entrypoint behaviour). The object store needs no stand-in: the chart's `seaweedfs` option runs the component
# image. What a stand-in cannot catch: docs/cluster.md, "The node tier".
#
# Idempotent: the base root is made once (REBUILD_BASE=1 to redo it); podman's layer cache does the rest.
# Needs root and podman + debootstrap (scripts/build-images-offline.sh installs and configures them).
# Env: SPX_OFFLINE_WORK (scratch, default /var/tmp/spx-images), SPX_DEBIAN_MIRROR, SPX_STANDIN_BASE.
set -euo pipefail
cd "$(dirname "$0")"

WORK=${SPX_OFFLINE_WORK:-/var/tmp/spx-images}
MIRROR=${SPX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE=${SPX_STANDIN_BASE:-localhost/spx-standin-base:bookworm}
POSTGRES=localhost/spx-standin-postgres:15-bookworm
REDIS=localhost/spx-standin-redis:7.0-bookworm

if [ "$(id -u)" != 0 ]; then echo "run as root (debootstrap, rootful podman)" >&2; exit 1; fi
for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || { echo "$tool missing: run scripts/build-images-offline.sh first" >&2; exit 1; }
done

t0=$SECONDS
if [ "${REBUILD_BASE:-0}" != 1 ] && podman image exists "$BASE"; then
  echo "base already present: $BASE"
else
  ROOTFS=$WORK/standin-rootfs
  rm -rf "$ROOTFS"; mkdir -p "$WORK"
  echo "+ debootstrap --variant=minbase --include=postgresql-15,redis-server bookworm  > $WORK/standin-debootstrap.log"
  debootstrap --variant=minbase --include=postgresql-15,redis-server,ca-certificates bookworm "$ROOTFS" "$MIRROR" \
    > "$WORK/standin-debootstrap.log" 2>&1 || { tail -20 "$WORK/standin-debootstrap.log" >&2; exit 1; }
  # the package's default cluster and caches are not part of an image
  rm -rf "$ROOTFS"/var/lib/postgresql/15/main "$ROOTFS"/etc/postgresql/15/main \
    "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
  tar -C "$ROOTFS" --numeric-owner -c . | podman import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -m "debootstrap --variant=minbase bookworm + postgresql-15 redis-server (spx node-tier stand-ins)" - "$BASE" >/dev/null
  rm -rf "$ROOTFS"
  echo "base built in $((SECONDS - t0)) s"
fi
for image in postgres redis; do
  tag=$POSTGRES; [ "$image" = redis ] && tag=$REDIS
  t1=$SECONDS
  podman build --network=none --pull=never --build-arg "BASE=$BASE" -t "$tag" "$image" > "$WORK/standin-$image.log" 2>&1 \
    || { tail -20 "$WORK/standin-$image.log" >&2; exit 1; }
  echo "$tag built in $((SECONDS - t1)) s"
done
echo "stand-ins ready in $((SECONDS - t0)) s: $POSTGRES $REDIS"
