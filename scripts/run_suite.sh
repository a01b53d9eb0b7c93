#!/usr/bin/env bash
# Run the whole test suite with coverage of bridge and cache_service (subprocesses included,
# through coverage's `patch = ["subprocess"]`); fails under 90%.
set -uo pipefail
cd "$(dirname "$0")/.."
rm -f .coverage .coverage.*
exec python -m pytest -p no:cacheprovider --cov=bridge --cov=cache_service \
  --cov-report=term-missing:skip-covered --cov-fail-under=90 "$@"
