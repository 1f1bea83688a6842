"""The floor of the request path: the gateway's hops with no work in them, measured by
`make bench` beside the gateway so that "added latency" can be read against what the hops alone
cost on the same machine.

Three processes, each on uvloop with the same grpcio settings as the services:

- edge: a bare ASGI app under uvicorn (httptools, as the edge) that reads the body, makes one
  unary gRPC call to `auth` and one server-streaming call to `router`, and answers with what
  the stream returned;
- auth: a grpc.aio server whose unary method runs one Redis script on the connection admission
  uses (crossmodel_common.resp; admission is one script call) and returns;
- router: a grpc.aio server whose streaming method POSTs the body to the upstream with aiohttp
  (as the router does) and yields the answer as one message.

No keys, JSON, spans, logs, protobuf messages or usage events: the difference between the
gateway and this floor is what CrossModel's own work costs on top of its hops.

`python -m crossmodel_devstack.floor edge|auth|router ...` runs one of them;
`floor_target()` starts all three and yields their URL and process ids.
"""

from __future__ import annotations

from crossmodel_common import grpc_env

grpc_env.apply()  # before grpc is imported, as in every service

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import AsyncIterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import IO, Any  # noqa: E402

import aiohttp  # noqa: E402
import grpc  # noqa: E402
import uvloop  # noqa: E402

_AUTH = "/floor.Auth/Admit"
_ROUTER = "/floor.Router/Route"
# The same shape of script call as admission: 8 keys, 10 arguments, a list of integers back.
_SCRIPT = "return {0, 1, 2, 3, 4, 5, 6}"


async def _serve(port: int, handlers: grpc.GenericRpcHandler) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handlers,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def auth(port: int, redis_url: str) -> None:
    from crossmodel_common.resp import PipelinedRedis

    redis = PipelinedRedis(redis_url, timeout=10)
    sha = await redis.execute("SCRIPT", "LOAD", _SCRIPT)
    keys = [f"floor:{i}" for i in range(8)]

    async def admit(request: bytes, context: Any) -> bytes:
        await redis.evalsha(sha.decode(), _SCRIPT, keys, range(10))
        return b"ok"

    method: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(admit)
    await _serve(port, grpc.method_handlers_generic_handler("floor.Auth", {"Admit": method}))


async def router(port: int, upstream: str, upstream_key: str) -> None:
    session = aiohttp.ClientSession(skip_auto_headers=("User-Agent",))
    headers = {"authorization": f"Bearer {upstream_key}", "content-type": "application/json"}

    async def route(request: bytes, context: Any) -> AsyncIterator[bytes]:
        async with session.post(upstream, data=request, headers=headers) as resp:
            body = await resp.read()
        yield body

    method: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_stream_rpc_method_handler(route)
    await _serve(port, grpc.method_handlers_generic_handler("floor.Router", {"Route": method}))


def edge(port: int, auth_target: str, router_target: str) -> None:
    import uvicorn

    calls: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            calls["auth"] = grpc.aio.insecure_channel(auth_target).unary_unary(_AUTH)
            calls["router"] = grpc.aio.insecure_channel(router_target).unary_stream(_ROUTER)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] != "POST":  # readiness
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await calls["auth"](body, timeout=10)
        answer = b"".join([chunk async for chunk in calls["router"](body, timeout=30)])
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


@dataclass(frozen=True, slots=True)
class FloorProcesses:
    url: str  # the floor edge's URL for a POST
    pids: dict[str, int]  # "edge", "auth", "router" -> process id


@contextlib.asynccontextmanager
async def floor_target(upstream: str, upstream_key: str, redis_url: str) -> AsyncIterator[FloorProcesses]:
    """Start the three floor processes; yield where they are."""
    from crossmodel_devstack.broker import free_port

    ports = {name: free_port() for name in ("edge", "auth", "router")}
    me = [sys.executable, "-m", "crossmodel_devstack.floor"]
    argvs = [
        [*me, "auth", str(ports["auth"]), redis_url],
        [*me, "router", str(ports["router"]), upstream, upstream_key],
        [*me, "edge", str(ports["edge"]), f"127.0.0.1:{ports['auth']}", f"127.0.0.1:{ports['router']}"],
    ]
    url = f"http://127.0.0.1:{ports['edge']}"
    with tempfile.TemporaryFile() as errors:
        procs = [
            await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=errors)
            for argv in argvs
        ]
        try:
            await _wait_ready(url, procs, errors)
            names = ("auth", "router", "edge")  # the order of argvs
            yield FloorProcesses(url + "/", {name: p.pid for name, p in zip(names, procs, strict=True)})
        finally:
            for p in procs:
                if p.returncode is None:
                    p.terminate()
            for p in procs:
                try:
                    await asyncio.wait_for(p.wait(), 10)
                except TimeoutError:
                    p.kill()
                    await p.wait()


async def _wait_ready(
    url: str, procs: list[asyncio.subprocess.Process], errors: IO[bytes], timeout: float = 60.0
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if any(p.returncode is not None for p in procs):
                errors.seek(0)
                tail = errors.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"a floor process exited: {tail}")
            # Ready when a request goes through every hop (the gRPC servers may still be
            # starting after the HTTP server answers): the answer is the upstream's to `{}`.
            with contextlib.suppress(aiohttp.ClientError):
                async with session.post(url, data=b"{}") as resp:
                    if resp.status == 200:
                        return
            if loop.time() > deadline:
                raise RuntimeError("the floor processes did not become ready")
            await asyncio.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crossmodel_devstack.floor")
    parser.add_argument("role", choices=("edge", "auth", "router"))
    parser.add_argument("port", type=int)
    parser.add_argument("args", nargs="*")
    a = parser.parse_args(argv)
    if a.role == "auth":
        uvloop.run(auth(a.port, *a.args))
    elif a.role == "router":
        uvloop.run(router(a.port, *a.args))
    else:
        edge(a.port, *a.args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
