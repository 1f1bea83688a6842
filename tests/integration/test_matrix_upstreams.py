"""Toward upstreams, through the whole system: retries with backoff and failover to another
deployment of the same model only before the first byte, a circuit breaker per deployment,
deadlines, and a client disconnect cancelling the upstream call.

Retries, failover, breaker and deadlines need a catalog with several deployments per model and
short timeouts, so this module starts a second router (its own catalog and settings) and a
second edge in front of it, beside the session's stack and sharing its auth, billing, usage,
broker and simulator. Which deployment got which attempt is read from the simulator's record
of the requests it received (`GET /_sim/requests`); a deployment that is down is a listener in
this process that accepts connections and closes them at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from crossmodel_devstack.broker import free_port
from crossmodel_devstack.harness import Harness, eventually
from crossmodel_devstack.stack import SPECS, Stack

READ_TIMEOUT_SECONDS = 1.0
BREAKER_FAILURES = 3
BREAKER_OPEN_SECONDS = 1.0
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}

_MODEL = """
  {id}:
    display_name: {id}
    created: 1700000000
    context_window: 100000
    max_output_tokens: 4096
    capabilities: [streaming, tools]
    price: {{input: 1000000, output: 2000000}}
    deployments:
{deployments}
"""


def catalog_yaml(simulator: str, dead_port: int) -> str:
    def model(model_id: str, *deployments: str) -> str:
        lines = "\n".join(
            f"      - {{provider: {d.split('/')[0]}, model: {d.split('/')[1]}}}" for d in deployments
        )
        return _MODEL.format(id=model_id, deployments=lines)

    return (
        f"""
providers:
  openai: {{type: openai, base_url: {simulator}/openai/v1}}
  mirror: {{type: openai-compatible, base_url: {simulator}/mirror/v1}}
  dead: {{type: openai-compatible, base_url: "http://127.0.0.1:{dead_port}/v1"}}
  anthropic: {{type: anthropic, base_url: {simulator}/anthropic}}
models:"""
        + model("test/single", "openai/gpt-single")
        + model("test/two", "openai/gpt-two", "mirror/gpt-two")
        + model("test/failover", "dead/gpt-failover", "openai/gpt-failover")
        + model("test/claude", "anthropic/claude-test")
    )


class DeadUpstream:
    """Accepts a connection and closes it before any response: a deployment that is down."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@dataclass
class Gateway:
    edge: httpx.AsyncClient
    sim: httpx.AsyncClient
    dead: DeadUpstream

    async def seen(self, marker: str) -> list[dict[str, Any]]:
        """The requests the simulator received carrying `marker`, in order."""
        found: list[dict[str, Any]] = (
            await self.sim.get("/_sim/requests", params={"contains": marker})
        ).json()
        return found


@pytest.fixture(scope="module")
async def gateway(harness: Harness) -> AsyncIterator[Gateway]:
    dead = DeadUpstream()
    dead_port = await dead.start()
    base = harness.stack.config
    run_dir = base.state_dir / "upstreams"
    run_dir.mkdir(parents=True, exist_ok=True)
    catalog = run_dir / "catalog.yaml"
    catalog.write_text(catalog_yaml(harness.stack.simulator_url, dead_port))
    config = dataclasses.replace(
        base,
        log_dir=run_dir / "logs",
        spool_dir=run_dir / "spool",
        ports={**base.ports, "router": free_port(), "edge": free_port()},
        extra_env={
            **base.extra_env,
            "CROSSMODEL_ROUTER_CATALOG": str(catalog),
            "CROSSMODEL_ROUTER_UPSTREAM_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT_SECONDS),
            "CROSSMODEL_ROUTER_BREAKER_FAILURES": str(BREAKER_FAILURES),
            "CROSSMODEL_ROUTER_BREAKER_OPEN_SECONDS": str(BREAKER_OPEN_SECONDS),
            "CROSSMODEL_ROUTER_RETRY_BACKOFF_SECONDS": "0.05",
        },
    )
    stack = Stack(config, harness.infra, specs=[SPECS["router"], SPECS["edge"]])
    await stack.start()
    try:
        key = (await harness.new_account("it-upstreams", credit_micros=50_000_000)).api_key
        async with (
            httpx.AsyncClient(base_url=stack.edge_url, timeout=30, headers={"x-api-key": key}) as edge,
            httpx.AsyncClient(base_url=harness.stack.simulator_url, timeout=10) as sim,
        ):
            yield Gateway(edge, sim, dead)
    finally:
        stack.stop()
        await dead.stop()


def tag() -> str:
    return "t" + secrets.token_hex(5)


def chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


# ----------------------------------------------------------------- retries and failover


async def test_a_5xx_is_retried_with_backoff_on_the_only_deployment(gateway: Gateway) -> None:
    marker = tag()
    resp = await gateway.edge.post(
        "/v1/chat/completions", json=chat("test/single", f"hi {marker} [sim:status=500]")
    )
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "upstream_error"
    seen = await gateway.seen(marker)
    assert [s["path"] for s in seen] == ["/openai/v1/chat/completions"] * 3  # UPSTREAM_MAX_ATTEMPTS


async def test_an_answer_lost_before_its_first_byte_is_retried(gateway: Gateway) -> None:
    marker = tag()
    resp = await gateway.edge.post(
        "/v1/chat/completions", json=chat("test/single", f"hi {marker} [sim:drop_after=0]")
    )
    assert resp.status_code == 502
    assert len(await gateway.seen(marker)) == 3


async def test_a_5xx_fails_over_to_the_other_deployment(gateway: Gateway) -> None:
    marker = tag()
    resp = await gateway.edge.post(
        "/v1/chat/completions", json=chat("test/two", f"hi {marker} [sim:status=503]")
    )
    assert resp.status_code == 503
    paths = [s["path"] for s in await gateway.seen(marker)]
    assert paths[:2] == ["/openai/v1/chat/completions", "/mirror/v1/chat/completions"]
    # The answer that follows a failover is a normal one.
    ok = await gateway.edge.post("/v1/chat/completions", json=chat("test/two", f"hi {tag()}"))
    assert ok.status_code == 200


async def test_a_429_moves_to_another_deployment_then_answers_with_retry_after(gateway: Gateway) -> None:
    marker = tag()
    body = chat("test/two", f"hi {marker} [sim:status=429] [sim:retry_after_ms=2000]")
    resp = await gateway.edge.post("/v1/chat/completions", json=body)
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "2"
    paths = [s["path"] for s in await gateway.seen(marker)]
    assert paths[:2] == ["/openai/v1/chat/completions", "/mirror/v1/chat/completions"]
    # With one deployment there is nowhere to go: the 429 comes back at once, not retried.
    marker = tag()
    single = chat("test/single", f"hi {marker} [sim:status=429] [sim:retry_after_ms=2000]")
    resp = await gateway.edge.post("/v1/chat/completions", json=single)
    assert resp.status_code == 429
    assert len(await gateway.seen(marker)) == 1


@pytest.mark.parametrize("marker_text", ["[sim:error_after=2]", "[sim:drop_after=2]"])
async def test_nothing_is_retried_after_the_first_byte(gateway: Gateway, marker_text: str) -> None:
    marker = tag()
    body = chat("test/two", f"one two three four {marker} {marker_text}", stream=True)
    async with gateway.edge.stream("POST", "/v1/chat/completions", json=body) as resp:
        text = "".join([t async for t in resp.aiter_text()])
    assert resp.status_code == 200
    assert '"content":"You"' in text, "the first words reached the client"
    assert '{"error":' in text
    assert "[DONE]" not in text
    assert len(await gateway.seen(marker)) == 1


# ----------------------------------------------------------------------- circuit breaker


async def test_the_breaker_skips_a_deployment_that_keeps_failing_then_probes_it(gateway: Gateway) -> None:
    dead = gateway.dead
    start = dead.connections
    for _ in range(BREAKER_FAILURES):
        resp = await gateway.edge.post("/v1/chat/completions", json=chat("test/failover", f"hi {tag()}"))
        # Failover before the first byte: the client never sees the dead deployment.
        assert resp.status_code == 200, resp.text
    assert dead.connections == start + BREAKER_FAILURES
    # Open: the dead deployment is skipped.
    for _ in range(3):
        resp = await gateway.edge.post("/v1/chat/completions", json=chat("test/failover", f"hi {tag()}"))
        assert resp.status_code == 200
    assert dead.connections == start + BREAKER_FAILURES

    # After BREAKER_OPEN_SECONDS one request probes it (half-open); it fails, so it stays open.
    async def probed() -> bool:
        r = await gateway.edge.post("/v1/chat/completions", json=chat("test/failover", f"hi {tag()}"))
        assert r.status_code == 200
        return dead.connections > start + BREAKER_FAILURES

    await eventually(probed, timeout=15, interval=0.1, what="a half-open probe of the dead deployment")
    assert dead.connections == start + BREAKER_FAILURES + 1
    resp = await gateway.edge.post("/v1/chat/completions", json=chat("test/failover", f"hi {tag()}"))
    assert resp.status_code == 200
    assert dead.connections == start + BREAKER_FAILURES + 1


# ------------------------------------------------------------------------------ deadlines


@pytest.mark.parametrize(
    ("path", "model", "body_of"),
    [
        ("/v1/chat/completions", "test/single", lambda m, t: chat(m, t)),
        ("/v1/responses", "test/single", lambda m, t: {"model": m, "input": t}),
        ("/v1/messages", "test/claude", lambda m, t: {**chat(m, t), "max_tokens": 50}),
    ],
    ids=["chat", "responses", "messages"],
)
async def test_an_upstream_silent_past_the_read_timeout_is_a_504_not_retried(
    gateway: Gateway, path: str, model: str, body_of: Any
) -> None:
    marker = tag()
    delay = int(READ_TIMEOUT_SECONDS * 1000 * 2)
    resp = await gateway.edge.post(
        path, json=body_of(model, f"hi {marker} [sim:delay_ms={delay}]"), headers=ANTHROPIC_HEADERS
    )
    assert resp.status_code == 504, resp.text
    error = resp.json()["error"]
    assert error["type"] == "timeout_error"
    assert len(await gateway.seen(marker)) == 1, "the time budget is spent: no retry"


async def test_silence_after_the_first_byte_ends_the_stream_with_a_timeout_error(gateway: Gateway) -> None:
    delay = int(READ_TIMEOUT_SECONDS * 1000 * 2)
    body = chat("test/single", f"one two {tag()} [sim:chunk_delay_ms={delay}]", stream=True)
    async with gateway.edge.stream("POST", "/v1/chat/completions", json=body) as resp:
        lines = [line async for line in resp.aiter_lines() if line.startswith("data: ")]
    assert resp.status_code == 200
    assert json.loads(lines[0][6:])["choices"][0]["delta"]["role"] == "assistant"
    assert json.loads(lines[-1][6:])["error"]["type"] == "timeout_error"


# ---------------------------------------------------------------------- client disconnect


@pytest.fixture(scope="module")
async def main_key(harness: Harness) -> str:
    return (await harness.new_account("it-upstreams-main", credit_micros=50_000_000)).api_key


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/v1/chat/completions", "openai/gpt-4o-mini"),
        ("/v1/messages", "anthropic/claude-sonnet-4.6"),
        ("/v1/responses", "deepseek/deepseek-v4-pro"),
    ],
    ids=["chat-openai", "messages-anthropic", "responses-deepseek"],
)
async def test_a_client_leaving_mid_stream_cancels_the_upstream_and_is_billed(
    harness: Harness, main_key: str, path: str, model: str
) -> None:
    async with httpx.AsyncClient(base_url=harness.stack.simulator_url, timeout=10) as sim:
        before = (await sim.get("/_sim/stats")).json()["client_disconnects"]
    text = f"go on [sim:words=400] [sim:chunk_delay_ms=10] {tag()}"
    body: dict[str, Any] = {"model": model, "stream": True}
    if path == "/v1/responses":
        body["input"] = text
    else:
        body |= {"messages": [{"role": "user", "content": text}], "max_tokens": 1000}
    headers = {"x-api-key": main_key} | ANTHROPIC_HEADERS
    async with (
        httpx.AsyncClient(base_url=harness.edge_url, timeout=30) as http,
        http.stream("POST", path, json=body, headers=headers) as resp,
    ):
        request_id = resp.headers["x-request-id"]
        received = 0
        async for chunk in resp.aiter_bytes():
            received += len(chunk)
            if received > 2000:
                break  # leaving the block closes the connection mid-stream

    async def logged() -> Any:
        rows = await harness.fetch(
            "usage",
            "SELECT status, http_status, input_tokens, output_tokens, usage_estimated "
            "FROM request_log WHERE request_id = $1",
            request_id,
        )
        return rows[0] if rows else None

    row = await eventually(logged, what="the abandoned request in the request log")
    assert (row["status"], row["http_status"]) == ("cancelled", 499)
    assert row["input_tokens"] > 0
    assert 0 < row["output_tokens"] < 400, "billed for what was generated before the client left"
    if path == "/v1/chat/completions":
        # The simulator saw its caller (the router) leave: the upstream call was cancelled.
        async def disconnected() -> bool:
            async with httpx.AsyncClient(base_url=harness.stack.simulator_url, timeout=10) as sim:
                return bool((await sim.get("/_sim/stats")).json()["client_disconnects"] > before)

        await eventually(disconnected, what="the upstream call cancelled")
