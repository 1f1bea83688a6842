"""`python -m crossmodel_usage` as the dev stack and Kubernetes run it: a real process."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crossmodel.events.v1 import usage_event_pb2 as events_pb2
from crossmodel.usage.v1 import usage_pb2, usage_pb2_grpc
from crossmodel_common.grpcio import channel
from crossmodel_common.kafka import OutgoingRecord, SpooledProducer, trace_headers
from crossmodel_devstack.broker import TansuBroker, free_port
from crossmodel_devstack.harness import eventually
from crossmodel_usage.server import SERVICE_NAME


async def _run(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crossmodel_usage",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROSSMODEL_USAGE_")}
    env.update({f"CROSSMODEL_USAGE_{k.upper()}": v for k, v in settings.items()})
    env["OTEL_TRACES_EXPORTER"] = "none"
    return env


async def test_missing_settings_stop_the_start_naming_the_variables() -> None:
    code, out = await _run(_env(listen="127.0.0.1:0"), "migrate")
    assert code != 0
    assert "CROSSMODEL_USAGE_DATABASE_URL" in out
    assert "CROSSMODEL_USAGE_KAFKA_BOOTSTRAP" in out


async def test_the_process_migrates_serves_consumes_and_stops_gracefully(
    empty_database: str, broker: TansuBroker, tmp_path: Path, account: str
) -> None:
    topic = f"usage.v1.{secrets.token_hex(4)}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    port = free_port()
    env = _env(
        # A plain postgresql:// URL, as operators write it.
        database_url=empty_database.replace("postgresql+asyncpg://", "postgresql://"),
        kafka_bootstrap=broker.bootstrap,
        listen=f"127.0.0.1:{port}",
        usage_topic=topic,
        dlq_topic=f"{topic}.usage.dlq",
        shutdown_grace_seconds="2",
    )
    code, out = await _run(env, "migrate")
    assert code == 0, out
    code, out = await _run(env, "migrate")  # again: nothing to do
    assert code == 0, out

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "crossmodel_usage",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    ch = channel(f"127.0.0.1:{port}", timeout=2.0)
    producer = SpooledProducer(broker.bootstrap, tmp_path / "spool")
    try:
        health: Any = health_pb2_grpc.HealthStub(ch)  # the typeshed stub lacks the methods

        async def serving() -> bool:
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            except Exception:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        await eventually(serving, timeout=60)

        await producer.start()
        event = events_pb2.UsageEvent(
            request_id=f"req_{secrets.token_hex(8)}",
            account_id=account,
            key_id="key_a",
            model="openai/gpt-4o-mini",
            status=events_pb2.REQUEST_STATUS_SUCCEEDED,
            input_tokens=11,
            output_tokens=7,
            cost_micros=5,
            started_at_unix_ms=1_795_132_800_000,
        )
        headers = trace_headers(event.request_id)
        producer.publish(OutgoingRecord(topic, account.encode(), event.SerializeToString(), headers))
        stub = usage_pb2_grpc.UsageServiceStub(ch)

        async def stored() -> bool:
            reply = await stub.GetRequest(usage_pb2.GetRequestRequest(request_id=event.request_id))
            return reply.found

        await eventually(stored, timeout=60)
        totals = (await stub.GetTotals(usage_pb2.GetTotalsRequest(account_id=account))).totals
        assert (totals.requests, totals.input_tokens, totals.cost_micros) == (1, 11, 5)
    finally:
        await producer.stop()
        await ch.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out_bytes, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out_bytes.decode()[-3000:]
    assert "usage service stopping" in out_bytes.decode()
