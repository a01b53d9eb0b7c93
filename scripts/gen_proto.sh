#!/usr/bin/env bash
# Regenerate the Python gRPC code for proto/cache/v1/cache.proto into marketbridge/api/v1.
# The generated gRPC module imports its messages absolutely ("from cache.v1 import ..."); we
# rewrite that one import to a relative one so the code lives inside the shared marketbridge package (both services import it).
set -euo pipefail
cd "$(dirname "$0")/.."
out=marketbridge/api/v1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python -m grpc_tools.protoc -Iproto \
  --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" \
  proto/cache/v1/cache.proto
sed -i 's/^from cache\.v1 import cache_pb2 as/from . import cache_pb2 as/' "$tmp/cache/v1/cache_pb2_grpc.py"
mkdir -p "$out"
cp "$tmp/cache/v1/cache_pb2.py" "$tmp/cache/v1/cache_pb2.pyi" "$tmp/cache/v1/cache_pb2_grpc.py" "$out/"
echo "generated $out from proto/cache/v1/cache.proto"
