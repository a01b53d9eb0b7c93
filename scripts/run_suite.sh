#!/usr/bin/env bash
# Run the whole test suite with coverage of bridge and cache_service (subprocesses included,
# through coverage's `patch = ["subprocess"]`); fails under 90%.
#
# The image test (tests/k8s/test_image.py: build the Docker image, run both services from it,
# and `make install-run` on a fresh Debian with its own Python)
# takes minutes of mostly I/O (debootstrap, pip wheel, docker build); with an engine and no
# arguments it runs alongside the main run, in a pytest of its own, so make test has no skip
# but the on-cluster test. The last lines say how each part went and which Redis backend the
# run used (scripts/test_env.sh decides), so a fallback can never pass unnoticed.
set -uo pipefail
cd "$(dirname "$0")/.."
rm -f .coverage .coverage.*
started=$(date +%s)
image_pid=""
image_log=$(mktemp /tmp/marketbridge-image-test.XXXXXX)
main_args=("$@")
if [ $# -eq 0 ] && [ "${REDIS_BACKEND:-docker}" = docker ]; then
  MARKETBRIDGE_IMAGE_TEST=1 python -m pytest -p no:cacheprovider -q -rs tests/k8s/test_image.py \
    >"$image_log" 2>&1 &
  image_pid=$!
  main_args=(--ignore=tests/k8s/test_image.py)
fi
python -m pytest -p no:cacheprovider -rs --cov=bridge --cov=cache_service --cov=marketbridge \
  --cov-report=term-missing:skip-covered --cov-fail-under=90 "${main_args[@]}"
status=$?
image_line="image test: not run (arguments given, or no Docker engine)"
if [ -n "$image_pid" ]; then
  wait "$image_pid"; image_status=$?
  echo "================ image test (tests/k8s/test_image.py, run alongside) ================"
  tail -15 "$image_log"
  image_line="image test: exit $image_status ($(tail -1 "$image_log" | tr -d '='))"
  [ "$image_status" -ne 0 ] && status=1
fi
rm -f "$image_log"
echo "$image_line"
echo "make test: exit $status in $(( $(date +%s) - started )) s; redis backend: ${REDIS_BACKEND:-docker} (${REDIS_BACKEND_NOTE:-not set by scripts/test_env.sh})"
exit $status
