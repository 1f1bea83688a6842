"""Which HTTP client should carry upstream calls: aiohttp or httpx, measured against the provider
simulator (a separate process), the way the router uses them: one pooled client, POST a chat
body, read the whole answer (non-stream) or every chunk (stream).

    .venv/bin/python services/router/bench/http_clients.py [--requests 2000]

Prints p50/p99 latency at concurrency 1 and throughput at concurrency 32 for each client.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
import orjson

PLAIN = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]})
STREAM = orjson.dumps(
    {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "[sim:words=20]"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
)
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-bench"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def measure(
    call: Callable[[], Awaitable[None]], n: int, concurrency: int
) -> tuple[float, float, float]:
    latencies: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            t = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t)

    for _ in range(50):
        await call()
    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99)] * 1000, n / elapsed


async def run(url: str, n: int) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=100, max_keepalive_connections=100))

    async def aio_plain() -> None:
        async with session.post(url, data=PLAIN, headers=HEADERS) as r:
            await r.read()

    async def aio_stream() -> None:
        async with session.post(url, data=STREAM, headers=HEADERS) as r:
            async for _ in r.content.iter_any():
                pass

    async def hx_plain() -> None:
        r = await client.post(url, content=PLAIN, headers=HEADERS)
        await r.aread()

    async def hx_stream() -> None:
        async with client.stream("POST", url, content=STREAM, headers=HEADERS) as r:
            async for _ in r.aiter_raw():
                pass

    print(f"{'client':8} {'kind':7} {'p50 c=1':>9} {'p99 c=1':>9} {'req/s c=32':>11}")
    for name, plain, stream in (("aiohttp", aio_plain, aio_stream), ("httpx", hx_plain, hx_stream)):
        for kind, call in (("plain", plain), ("stream", stream)):
            p50, p99, _ = await measure(call, n // 4, 1)
            _, _, rps = await measure(call, n, 32)
            print(f"{name:8} {kind:7} {p50:8.2f}ms {p99:8.2f}ms {rps:11.0f}")
    await session.close()
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "crossmodel_simulator", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        asyncio.run(run(f"http://127.0.0.1:{port}/openai/v1/chat/completions", args.requests))
    finally:
        sim.terminate()
        sim.wait(timeout=10)


if __name__ == "__main__":
    main()
