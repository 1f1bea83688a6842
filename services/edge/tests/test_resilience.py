"""The edge when its dependencies are away: events spooled while Kafka is down and delivered
when it returns, readiness off while auth or the router cannot be reached, a protocol-shaped 500
for a bug, and catalog misses that refresh the cache."""

from __future__ import annotations

import contextlib
from pathlib import Path

import httpx
import pytest
from fastapi import Request

from crossmodel.events.v1 import usage_event_pb2 as ev
from crossmodel.router.v1 import router_pb2
from crossmodel_devstack.broker import TansuBroker, free_port
from crossmodel_edge.adapters import catalog as catalog_module

from .conftest import (
    GOOD_KEY,
    MINI,
    Backends,
    EventReader,
    Stack,
    create_topic,
    edge_settings,
    eventually,
    serve,
)


async def test_events_are_spooled_while_the_broker_is_down_and_sent_when_it_returns(
    backends: Backends, tmp_path: Path
) -> None:
    port = free_port()
    topic = "usage.v1.spool-test"
    settings = edge_settings(
        backends, f"127.0.0.1:{port}", tmp_path / "spool", topic, shutdown_grace_seconds=2
    )
    async with serve(settings) as running:
        producer = running.edge.producer
        async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
            resp = await http.post(
                "/v1/chat/completions",
                json={"model": MINI, "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {GOOD_KEY}"},
            )
        assert resp.status_code == 200, "a broker outage never fails a request"
        rid = resp.headers["x-request-id"]
        await eventually(lambda: producer.pending_segments > 0)
        assert producer.sent == 0
        with TansuBroker(port=port) as broker:
            await create_topic(broker.bootstrap, topic)
            reader = EventReader(broker.bootstrap, topic)
            await reader.start()
            try:
                await eventually(lambda: len(reader.for_request(rid)) == 1, timeout=30)
                event, headers, key = reader.for_request(rid)[0]
                assert key == b"acct_1"
                assert headers["x-request-id"] == rid.encode()
                assert event.input_tokens == 12
                await eventually(lambda: producer.pending_segments == 0)
            finally:
                await reader.stop()


async def test_readiness_needs_auth_and_router(backends: Backends, tmp_path: Path) -> None:
    settings = edge_settings(
        backends, "127.0.0.1:1", tmp_path / "spool", "unused", shutdown_grace_seconds=0.5
    )
    dead = settings.model_copy(update={"router_target": f"127.0.0.1:{free_port()}"})
    async with serve(dead) as running, httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        ready = await http.get("/readyz")
        live = await http.get("/healthz")
        chat = await http.post(
            "/v1/chat/completions",
            json={"model": MINI, "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {GOOD_KEY}"},
        )
    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"auth": True, "router": False, "catalog": False}
    assert chat.status_code == 503
    assert chat.json()["error"]["code"] == "service_unavailable"
    assert chat.headers["retry-after"] == "1"
    assert chat.headers["x-request-id"]


async def test_an_unhandled_error_is_a_protocol_shaped_500_with_request_id(stack: Stack) -> None:
    async def boom(request: Request) -> None:
        raise RuntimeError("bug")

    stack.edge.app.add_api_route("/v1/test-boom", boom, methods=["GET"])
    async with httpx.AsyncClient(base_url=stack.edge.url) as http:
        resp = await http.get("/v1/test-boom")
    assert resp.status_code == 500
    assert resp.json()["error"]["type"] == "server_error"
    assert resp.headers["x-request-id"].startswith("req_")


async def test_a_model_added_to_the_router_is_found_on_the_first_miss(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog_module, "MISS_REFRESH_INTERVAL_S", 0.0)
    router = stack.backends.router
    new = router_pb2.Model(id="deepseek/deepseek-chat", vendor="deepseek", context_window=64_000)
    router.models.append(new)
    try:
        async with httpx.AsyncClient(base_url=stack.edge.url, timeout=30) as http:
            resp = await http.post(
                "/v1/chat/completions",
                json={"model": new.id, "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {GOOD_KEY}"},
            )
        assert resp.status_code == 200
    finally:
        router.models.remove(new)
        await stack.edge.edge.catalog.refresh()


async def test_shutdown_lets_a_stream_run_out_its_grace_then_still_publishes_its_event(
    backends: Backends, broker: TansuBroker, tmp_path: Path
) -> None:
    topic = "usage.v1.shutdown-test"
    await create_topic(broker.bootstrap, topic)
    reader = EventReader(broker.bootstrap, topic)
    await reader.start()
    settings = edge_settings(backends, broker.bootstrap, tmp_path / "spool", topic, shutdown_grace_seconds=1)
    router = backends.router
    router.slow_started.clear()
    try:
        body = {"model": MINI, "messages": [{"role": "user", "content": "slow"}], "stream": True}
        async with (
            serve(settings) as running,
            httpx.AsyncClient(base_url=running.url, timeout=30) as http,
            http.stream("POST", "/v1/chat/completions", json=body, headers={"x-api-key": GOOD_KEY}) as resp,
        ):
            rid = resp.headers["x-request-id"]
            await eventually(router.slow_started.is_set)
            running.server.should_exit = True
            with contextlib.suppress(httpx.HTTPError):
                async for _ in resp.aiter_raw():
                    pass
        await eventually(lambda: len(reader.for_request(rid)) == 1)
        event, _, _ = reader.for_request(rid)[0]
        assert event.status == ev.REQUEST_STATUS_FAILED
        assert event.error_type == "internal"
        assert rid in router.cancelled
    finally:
        await reader.stop()
