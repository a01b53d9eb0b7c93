"""gRPC health probe over (m)TLS for the cache service's Kubernetes probes.

Kubernetes' native gRPC probe speaks plaintext only, so with mTLS on the chart runs this script
instead (exec probe). It asks grpc.health.v1.Health/Check for one service name and exits 0 when
the answer is SERVING, 1 otherwise, printing one line that says why. It needs only grpcio and
grpcio-health-checking, which the image already has.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The probe's options; TLS files are optional so the same script checks plaintext too."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="127.0.0.1:50051", help="host:port of the server")
    parser.add_argument("--service", default="", help='health service name ("" = whole server)')
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds for the whole check")
    parser.add_argument("--tls-ca-file", help="CA bundle that signed the server certificate")
    parser.add_argument("--tls-cert-file", help="client certificate (mTLS)")
    parser.add_argument("--tls-key-file", help="client private key (mTLS)")
    parser.add_argument("--server-name", help="name to verify in the server certificate")
    return parser.parse_args(argv)


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    """A plaintext channel, or a TLS one when a CA file is given."""
    if not args.tls_ca_file:
        return grpc.insecure_channel(args.addr)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(args.tls_ca_file).read_bytes(),
        private_key=Path(args.tls_key_file).read_bytes() if args.tls_key_file else None,
        certificate_chain=Path(args.tls_cert_file).read_bytes() if args.tls_cert_file else None,
    )
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(args.addr, credentials, options=options)


def check(args: argparse.Namespace) -> tuple[bool, str]:
    """Ask the health service; (serving, one-line reason)."""
    try:
        with open_channel(args) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
    except grpc.RpcError as exc:
        return False, f"{exc.code().name}: {exc.details()}"
    except OSError as exc:
        return False, f"cannot read TLS file: {exc}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, status


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when SERVING (the probe passes), 1 otherwise."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    serving, reason = check(args)
    print(f"service {args.service!r} at {args.addr}: {reason}")
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
