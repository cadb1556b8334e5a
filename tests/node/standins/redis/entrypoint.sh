#!/bin/sh
# The official redis image's entrypoint rule, for the stand-in: flags alone mean `redis-server <flags>`.
set -eu
if [ "${1#-}" != "${1:-}" ] || [ $# -eq 0 ]; then
  set -- redis-server "$@"
fi
exec "$@"
