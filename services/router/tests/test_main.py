from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crossmodel.router.v1 import router_pb2, router_pb2_grpc


async def test_a_bad_catalog_stops_the_router_with_its_name(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    env = dict(os.environ, CROSSMODEL_ROUTER_CATALOG=str(missing), CROSSMODEL_ROUTER_LISTEN="127.0.0.1:0")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crossmodel_router",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert str(missing) in out.decode()


async def test_serves_health_and_the_catalog_as_a_process(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, CROSSMODEL_ROUTER_LISTEN=f"127.0.0.1:{port}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crossmodel_router",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(300):
                try:
                    resp = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("router never became healthy")
            models = await router_pb2_grpc.RouterServiceStub(channel).ListModels(
                router_pb2.ListModelsRequest(), timeout=5
            )
            assert "openai/gpt-4o-mini" in {m.id for m in models.models}
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
