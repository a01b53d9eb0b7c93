#!/usr/bin/env bash
# Prepare what the test suite needs, then exec the command given (default: the full suite).
#  - system packages: redis-server and redis-sentinel (process fallback, local image source),
#    docker.io (the engine), chromium (live page checks), nodejs (the JavaScript client's tests),
#    prometheus (its promtool runs the chart's alert rules: tests/k8s/test_alerts.py);
#    installed with apt-get when missing and we are root.
#  - a Docker engine: used if reachable; else dockerd is started (vfs storage) and stopped at exit.
#  - a Redis image: $REDIS_IMAGE if set and present; else redis:7-alpine if it can be pulled;
#    else one built locally from Debian's redis-server (scripts/build_redis_image.sh).
# With no engine at all, tests run against redis-server processes (REDIS_BACKEND=process).
set -uo pipefail
cd "$(dirname "$0")/.."
log() { echo "test-env: $*" >&2; }

need_pkgs=()
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v redis-sentinel >/dev/null || need_pkgs+=(redis-sentinel)
# The engine, not the client: a machine may have a `docker` client binary and no engine at all.
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v chromium >/dev/null || need_pkgs+=(chromium)   # headless browser checks of the live page
command -v node >/dev/null || need_pkgs+=(nodejs)      # the JavaScript client's tests (node --test)
command -v promtool >/dev/null || need_pkgs+=(prometheus)  # promtool test rules over the chart's alerts
if [ ${#need_pkgs[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing ${need_pkgs[*]}"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null \
    || log "apt-get install failed; continuing with what is here"
fi

started_dockerd=""
cleanup() {
  if [ -n "$started_dockerd" ]; then
    log "stopping the dockerd we started"
    kill "$started_dockerd" 2>/dev/null; wait "$started_dockerd" 2>/dev/null
  fi
}
trap cleanup EXIT

if [ "${REDIS_BACKEND:-}" != "process" ]; then
  if ! docker info >/dev/null 2>&1 && command -v dockerd >/dev/null && [ "$(id -u)" = 0 ]; then
    log "starting dockerd (vfs storage)"
    dockerd --storage-driver=vfs >/tmp/marketbridge-dockerd.log 2>&1 &
    started_dockerd=$!
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
  if docker info >/dev/null 2>&1; then
    export REDIS_BACKEND=docker
    if [ -z "${REDIS_IMAGE:-}" ] || ! docker image inspect "$REDIS_IMAGE" >/dev/null 2>&1; then
      if [ -n "${REDIS_IMAGE:-}" ] && timeout 60 docker pull -q "$REDIS_IMAGE" >/dev/null 2>&1; then
        :
      elif docker image inspect redis:7-alpine >/dev/null 2>&1 || timeout 30 docker pull -q redis:7-alpine >/dev/null 2>&1; then
        export REDIS_IMAGE=redis:7-alpine
      else
        log "no registry reachable: building a Redis image from Debian's redis-server"
        bash scripts/build_redis_image.sh marketbridge/redis:local >&2 || export REDIS_BACKEND=process
        export REDIS_IMAGE=marketbridge/redis:local
      fi
    fi
    export TESTCONTAINERS_RYUK_DISABLED=${TESTCONTAINERS_RYUK_DISABLED:-true}
  else
    export REDIS_BACKEND=process
  fi
fi
if [ "$REDIS_BACKEND" = process ]; then
  why="no Docker engine could be reached or started"
  [ -s /tmp/marketbridge-dockerd.log ] && why="$why (dockerd said: $(tail -1 /tmp/marketbridge-dockerd.log))"
  export REDIS_BACKEND_NOTE="FALLBACK: redis-server processes, not testcontainers: $why"
  log "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  log "!!! $REDIS_BACKEND_NOTE"
  log "!!! the same tests run against redis-server processes; the chart's Sentinel-pod test is skipped"
  log "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
else
  export REDIS_BACKEND_NOTE="testcontainers on Docker $(docker version --format '{{.Server.Version}}' 2>/dev/null), image $REDIS_IMAGE"
  log "Docker engine reachable: Redis from image $REDIS_IMAGE via testcontainers"
fi
"$@"
