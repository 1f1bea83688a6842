"""gRPC channels and stubs to auth, router, billing and usage, and what their failures mean
to a client."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2

from crossmodel.auth.v1 import auth_pb2_grpc
from crossmodel.billing.v1 import billing_pb2_grpc
from crossmodel.router.v1 import router_pb2_grpc
from crossmodel.usage.v1 import usage_pb2_grpc
from crossmodel_common.grpcio import channel
from crossmodel_edge.config import Settings
from crossmodel_protocols.errors import ApiError, ErrorType

HealthCheck = grpc.aio.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]


def _health_check(ch: grpc.aio.Channel) -> HealthCheck:
    # The grpc.health stubs are untyped; the method is one unary call.
    check: HealthCheck = ch.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    return check


@dataclass(slots=True)
class Backends:
    auth: auth_pb2_grpc.AuthServiceAsyncStub
    router: router_pb2_grpc.RouterServiceAsyncStub
    billing: billing_pb2_grpc.BillingServiceAsyncStub
    usage: usage_pb2_grpc.UsageServiceAsyncStub
    auth_health: HealthCheck
    router_health: HealthCheck
    channels: tuple[grpc.aio.Channel, ...]

    @classmethod
    def connect(cls, settings: Settings) -> Backends:
        timeout = settings.backend_timeout_seconds
        auth = channel(settings.auth_target, timeout=timeout)
        router = channel(settings.router_target, timeout=timeout)
        billing = channel(settings.billing_target, timeout=timeout)
        usage = channel(settings.usage_target, timeout=timeout)
        return cls(
            auth=auth_pb2_grpc.AuthServiceStub(auth),
            router=router_pb2_grpc.RouterServiceStub(router),
            billing=billing_pb2_grpc.BillingServiceStub(billing),
            usage=usage_pb2_grpc.UsageServiceStub(usage),
            auth_health=_health_check(auth),
            router_health=_health_check(router),
            channels=(auth, router, billing, usage),
        )

    async def readiness(self, timeout: float = 1.0) -> dict[str, bool]:
        """Whether auth and the router answer SERVING on grpc.health.v1 (the hot path's two hops)."""

        async def serving(check: HealthCheck) -> bool:
            try:
                resp = await check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
            except grpc.aio.AioRpcError:
                return False
            return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)

        auth_ok, router_ok = await asyncio.gather(serving(self.auth_health), serving(self.router_health))
        return {"auth": auth_ok, "router": router_ok}

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.channels))


def rpc_failure(exc: grpc.aio.AioRpcError, service: str) -> ApiError:
    """A failed call to one of our own services: the client sees a 5xx it may retry."""
    code = exc.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ApiError(ErrorType.TIMEOUT, f"The {service} service did not answer in time.")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return ApiError(
            ErrorType.UNAVAILABLE, f"The {service} service is unavailable. Please retry.", retry_after_ms=1000
        )
    return ApiError(ErrorType.INTERNAL, f"The {service} service failed ({code.name}).")
