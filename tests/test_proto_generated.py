"""The checked-in generated code matches proto/cache/v1/cache.proto (run `make proto` if not)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2

from marketbridge.api.v1 import cache_pb2, cache_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent


def test_checked_in_descriptor_matches_proto(tmp_path: Path) -> None:
    out = tmp_path / "cache.desc"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iproto", f"--descriptor_set_out={out}",
         "proto/cache/v1/cache.proto"],
        cwd=ROOT, check=True, timeout=60,
    )
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    for message in fresh.message_type:  # protoc fills json_name in descriptor sets only
        for field in message.field:
            field.ClearField("json_name")
    checked_in = descriptor_pb2.FileDescriptorProto.FromString(cache_pb2.DESCRIPTOR.serialized_pb)
    assert fresh == checked_in, "marketbridge/api/v1 is stale: run `make proto`"


def test_every_spec_method_is_in_the_service() -> None:
    methods = set(cache_pb2.DESCRIPTOR.services_by_name["CacheService"].methods_by_name)
    assert methods >= {
        "GetTicker", "ListTickers", "PublishTicker", "PublishTickers", "StreamTickers",
        "GetOrder", "ListOrders", "UpsertOrder", "StreamOrders",
        "GetBot", "ListBots", "UpsertBot", "StreamBots",
    }
    assert hasattr(cache_pb2_grpc, "CacheServiceStub")
