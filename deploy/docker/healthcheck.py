"""Container health check for CrossModel images (Docker HEALTHCHECK and docker-compose).

    python healthcheck.py grpc 127.0.0.1:50051     grpc.health.v1 Check of the whole server
    python healthcheck.py http http://127.0.0.1:8080/readyz

Exits 0 when healthy, 1 otherwise, with one line saying why. Kubernetes does not use it: the
chart probes with native gRPC and HTTP probes.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 3.0


def check_grpc(target: str, service: str = "") -> str | None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            reply = stub.Check(request, timeout=TIMEOUT_SECONDS)  # type: ignore[attr-defined]
        except grpc.RpcError as exc:
            return f"{target}: {exc.code().name}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{target}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def check_http(url: str) -> str | None:
    if not url.startswith(("http://", "https://")):
        return f"{url}: not an http(s) URL"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        return f"{url}: {exc}"
    return None if 200 <= status < 300 else f"{url}: HTTP {status}"


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] not in {"grpc", "http"}:
        print(__doc__, file=sys.stderr)
        return 2
    problem = check_grpc(*argv[1:]) if argv[0] == "grpc" else check_http(argv[1])
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
