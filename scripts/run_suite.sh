#!/usr/bin/env bash
# Run the whole test suite with coverage of bridge and cache_service (subprocesses included,
# through coverage's `patch = ["subprocess"]`); fails under 90%. The last line says which Redis
# backend the run used (scripts/test_env.sh decides), so a fallback can never pass unnoticed.
set -uo pipefail
cd "$(dirname "$0")/.."
rm -f .coverage .coverage.*
started=$(date +%s)
python -m pytest -p no:cacheprovider --cov=bridge --cov=cache_service \
  --cov-report=term-missing:skip-covered --cov-fail-under=90 "$@"
status=$?
echo "make test: exit $status in $(( $(date +%s) - started )) s; redis backend: ${REDIS_BACKEND:-docker} (${REDIS_BACKEND_NOTE:-not set by scripts/test_env.sh})"
exit $status
