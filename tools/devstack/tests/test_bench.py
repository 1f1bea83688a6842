"""The bench's measurement code, run briefly against the provider simulator so it cannot rot:
the load generator in its own process, the phases, the report. No timings are asserted (speed
is what `make bench` prints, not what tests check)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from crossmodel_devstack.bench import (
    CHAT_PATH,
    UPSTREAM_MODEL,
    Target,
    chat_body,
    compare,
    cpu_seconds,
    percentile,
    run_loadgen,
)
from crossmodel_devstack.broker import free_port
from crossmodel_devstack.floor import floor_target
from crossmodel_devstack.infra import find_redis
from crossmodel_simulator.app import create_app

HEADERS = {"authorization": "Bearer sk-simulator", "content-type": "application/json"}


@pytest.fixture
async def simulator() -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _target(base: str, body: bytes | None = None) -> Target:
    return Target(
        base + CHAT_PATH,
        HEADERS,
        body or chat_body(UPSTREAM_MODEL, stream=False),
        chat_body(UPSTREAM_MODEL, stream=True),
    )


def test_percentile_is_nearest_rank() -> None:
    samples = [float(n) for n in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) == 0.0


def test_bodies_are_the_same_request_but_for_the_model() -> None:
    direct = json.loads(chat_body("gpt-4o-mini", stream=True))
    gateway = json.loads(chat_body("openai/gpt-4o-mini", stream=True))
    assert direct.pop("model") == "gpt-4o-mini"
    assert gateway.pop("model") == "openai/gpt-4o-mini"
    assert direct == gateway
    assert direct["stream_options"] == {"include_usage": True}
    assert "stream" not in json.loads(chat_body("gpt-4o-mini", stream=False))


async def test_compare_measures_every_phase_through_the_load_generator(simulator: str) -> None:
    t = _target(simulator)
    report = await compare(t, t, requests=6, concurrency=3, warmup=False, pids={"runner": os.getpid()})
    for c in (report.latency, report.ttft):
        for side in (c.direct, c.gateway):
            assert (side.ok, side.errors, len(side.samples_ms)) == (6, 0, 6)
            assert all(ms > 0 for ms in side.samples_ms)
    for side in (report.throughput.direct, report.throughput.gateway):
        assert (side.ok, side.errors) == (12, 0)
        assert side.rate > 0
    assert report.errors() == []
    assert set(report.cpu_ms_per_request) == {"direct", "gateway"}
    assert set(report.cpu_ms_per_request["gateway"]) == {"runner"}

    rows = report.rows()
    assert [r["unit"] for r in rows] == ["ms", "ms", "ms", "ms", "req/s"]
    for r in rows:
        assert r["added"] == pytest.approx(r["gateway"] - r["direct"])
        assert r["ratio"] == pytest.approx(r["gateway"] / r["direct"])
    table = report.table()
    assert "latency p50, concurrency 1" in table
    assert "throughput, concurrency 3" in table
    assert "ERROR" not in table
    data = json.loads(json.dumps(report.as_json()))
    assert data["phases"]["throughput"]["gateway"]["ok"] == 12
    assert data["errors"] == []


async def test_failed_requests_are_counted_and_reported(simulator: str) -> None:
    failing = chat_body(UPSTREAM_MODEL, stream=False).replace(b"few words.", b"few words. [sim:status=500]")
    [timings] = await run_loadgen(
        {"t": _target(simulator, failing)},
        [{"target": "t", "kind": "request", "requests": 4, "concurrency": 2}],
    )
    assert (timings.ok, timings.errors) == (0, 4)
    assert timings.first_error.startswith("_Failed: 500 ")


def test_cpu_seconds_reads_live_processes_and_skips_gone_ones() -> None:
    cpu = cpu_seconds({"me": os.getpid(), "gone": 2**22 + 12345})
    assert set(cpu) == {"me"}
    assert cpu["me"] > 0


async def test_the_floor_relays_the_upstream_answer_through_its_hops(simulator: str, tmp_path: Path) -> None:
    """The floor's three processes (HTTP -> unary gRPC with a Redis script -> streaming gRPC ->
    upstream) answer what the upstream answers, and the report shows its latency beside the
    gateway's."""
    redis = await find_redis(tmp_path, persist=False)
    try:
        direct = _target(simulator)
        async with floor_target(direct.url, "sk-simulator", redis.url) as processes:
            url = processes.url
            floor = Target(url, HEADERS, direct.body, direct.stream_body)
            [through_floor, straight] = await run_loadgen(
                {"floor": floor, "direct": direct},
                [
                    {"target": "floor", "kind": "request", "requests": 5, "concurrency": 2},
                    {"target": "direct", "kind": "request", "requests": 5, "concurrency": 2},
                ],
            )
            assert (through_floor.ok, through_floor.errors) == (5, 0), through_floor.first_error
            assert straight.ok == 5
            async with aiohttp.ClientSession() as http:
                async with http.post(url, data=direct.body, headers=HEADERS) as resp:
                    via_floor = await resp.json()
                async with http.post(direct.url, data=direct.body, headers=HEADERS) as resp:
                    upstream = await resp.json()
            # The simulator's answers are deterministic but for their ids and timestamps.
            for answer in (via_floor, upstream):
                answer.pop("id")
                answer.pop("created")
            assert via_floor == upstream
            report = await compare(
                direct,
                direct,
                requests=40,
                concurrency=2,
                warmup=False,
                floor=floor,
                serial_pids={"floor": processes.pids},
            )
    finally:
        redis.stop()
    assert report.floor is not None
    assert (report.floor.ok, report.floor.errors) == (40, 0)
    assert "floor = the same hops with no work in them" in report.table()
    assert report.as_json()["floor"]["ok"] == 40
    # Each of the floor's three processes worked for each request of the latency phase.
    assert set(report.cpu_ms_serial) == {"floor"}
    assert set(report.cpu_ms_serial["floor"]) == {"edge", "auth", "router"}
    assert all(ms > 0 for ms in report.cpu_ms_serial["floor"].values()), report.cpu_ms_serial
    assert "    floor: " in report.table()
    assert report.as_json()["cpu_ms_serial"]["floor"].keys() == {"edge", "auth", "router"}


async def test_the_concurrency_1_phases_alternate_between_the_targets_in_rounds() -> None:
    """Drift of the machine's speed during a run must not land on one target: the latency and
    first-bytes phases visit the targets in turn, ten rounds each; throughput runs each target
    alone (its CPU is read around it)."""
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.match_info["name"])
        await request.read()
        return web.Response(body=b"data: {}\n\ndata: [DONE]\n\n", content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/{name}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        a, b, c = (Target(f"http://127.0.0.1:{port}/{n}", {}, b"{}", b"{}") for n in "abc")
        report = await compare(a, b, requests=20, concurrency=2, warmup=False, floor=c)
    finally:
        await runner.cleanup()

    def rounds(*names: str) -> list[str]:
        per_round = [n for n in names for _ in range(2)]
        return per_round + per_round * 10  # the primes, then ten rounds of two requests each

    assert seen == [*rounds("a", "b", "c"), *rounds("a", "b"), *["a"] * 44, *["b"] * 44]
    assert report.floor is not None
    for timings in (report.latency.direct, report.latency.gateway, report.floor, report.ttft.gateway):
        assert (timings.ok, timings.errors, len(timings.samples_ms)) == (20, 0, 20)
