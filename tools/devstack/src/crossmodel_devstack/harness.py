"""The whole system for tests: infrastructure found in the same order as `make run`, the stack on
free ports with databases and topics named after the run, an OTLP receiver every service exports
to, and the few operator actions tests need (accounts, keys, top-ups, balances, table reads).

The integration tests and later end-to-end suites (browser, multi-replica) start it once per
session. Nothing is ever skipped: when a server cannot be had, starting fails with a message
that says what to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from crossmodel.auth.v1 import auth_pb2, auth_pb2_grpc
from crossmodel.billing.v1 import billing_pb2, billing_pb2_grpc
from crossmodel.router.v1 import router_pb2, router_pb2_grpc
from crossmodel.usage.v1 import usage_pb2_grpc
from crossmodel_common.context import REQUEST_ID_HEADER
from crossmodel_common.kafka import header_value
from crossmodel_devstack.broker import free_port
from crossmodel_devstack.infra import Infra, drop_database
from crossmodel_devstack.otlp import SpanReceiver
from crossmodel_devstack.stack import SPECS, ManagedProcess, Stack, StackConfig, probe, stop_processes

# Test runs kept under .crossmodel/test-runs (logs, spool) for a post-mortem; older ones go.
KEEP_RUNS = 5


async def eventually(
    check: Callable[[], Any],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll `check` until it returns something truthy and return that; fail after `timeout`
    with the last value seen. Tests wait for conditions, never for fixed times."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = check()
        last = await result if isinstance(result, Awaitable) else result
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:.0f}s (last value: {last!r})")
        await asyncio.sleep(interval)


@dataclass(frozen=True, slots=True)
class Hop:
    """One step of a request through the system. `operation` is what the callee's span is
    named: the HTTP route, the gRPC method, or the topic (`{topic}` is the run's usage topic)."""

    caller: str  # a service of SERVICES, or "client"
    callee: str
    via: str  # "http", "grpc" or "kafka"
    operation: str
    traced: bool = True  # the simulator stands in for a vendor and exports no spans


# The path of one chat completion (ARCHITECTURE.md, "One request, end to end").
HOPS: tuple[Hop, ...] = (
    Hop("client", "edge", "http", "/v1/chat/completions"),
    Hop("edge", "auth", "grpc", "crossmodel.auth.v1.AuthService/Authorize"),
    Hop("edge", "router", "grpc", "crossmodel.router.v1.RouterService/Route"),
    Hop("router", "simulator", "http", "/openai/v1/chat/completions", traced=False),
    Hop("edge", "billing", "kafka", "{topic} process"),
    Hop("edge", "usage", "kafka", "{topic} process"),
)


@dataclass(frozen=True, slots=True)
class AccountKey:
    account_id: str
    key_id: str
    api_key: str


@dataclass(frozen=True, slots=True)
class Replica:
    """One more process of a service, sharing the stack's databases, Redis and broker."""

    name: str  # "<service>-<n>", also its log file's name
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}"


class Harness:
    def __init__(self, infra: Infra, stack: Stack, receiver: SpanReceiver, run_id: str) -> None:
        self.infra = infra
        self.stack = stack
        self.receiver = receiver
        self.run_id = run_id
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._edge_urls: list[str] = []

    @classmethod
    async def start(cls, state_dir: Path, *, run_id: str | None = None) -> Harness:
        run_id = run_id or secrets.token_hex(4)
        _prune_runs(state_dir / "test-runs")
        receiver = SpanReceiver().start()
        config = StackConfig.for_tests(state_dir, run_id, admin_token="cm-admin-" + secrets.token_urlsafe(24))
        config.extra_env.update(receiver.otel_env())
        try:
            # Infra state of tests lives apart from make run's, so both can run at once.
            infra = await Infra.open(state_dir / "test", config.log_dir, persist=False)
        except BaseException:
            receiver.stop()
            raise
        harness = cls(infra, Stack(config, infra), receiver, run_id)
        try:
            await harness.stack.prepare()
            await harness.stack.start()
        except BaseException:
            await harness.close()
            raise
        return harness

    async def close(self) -> None:
        for ch in self._channels.values():
            with contextlib.suppress(Exception):
                await ch.close()
        # Extra edges first, like the stack's own: their last usage events still reach the broker.
        edges = [p for name, p in self.stack.processes.items() if name.startswith("edge-")]
        stop_processes(edges, self.stack.config.shutdown_grace_seconds + 5)
        self.stack.stop()
        with contextlib.suppress(Exception):
            for name in self.stack.config.databases.values():
                await drop_database(self.infra.postgres.url, name)
        if not self.infra.kafka.started_here:
            # A shared broker keeps no test topics behind.
            with contextlib.suppress(Exception):
                await _delete_topics(self.infra.kafka.url, list(self.stack.config.topics()))
        self.infra.close()
        self.receiver.stop()

    # ------------------------------------------------------------ clients

    def channel(self, service: str) -> grpc.aio.Channel:
        if service not in self._channels:
            self._channels[service] = grpc.aio.insecure_channel(self.stack.target(service))
        return self._channels[service]

    @property
    def auth(self) -> auth_pb2_grpc.AuthServiceAsyncStub:
        return auth_pb2_grpc.AuthServiceStub(self.channel("auth"))

    @property
    def billing(self) -> billing_pb2_grpc.BillingServiceAsyncStub:
        return billing_pb2_grpc.BillingServiceStub(self.channel("billing"))

    @property
    def router(self) -> router_pb2_grpc.RouterServiceAsyncStub:
        return router_pb2_grpc.RouterServiceStub(self.channel("router"))

    @property
    def usage(self) -> usage_pb2_grpc.UsageServiceAsyncStub:
        return usage_pb2_grpc.UsageServiceStub(self.channel("usage"))

    @property
    def edge_url(self) -> str:
        return self.stack.edge_url

    # ------------------------------------------------------------ replicas

    async def start_replica(
        self, service: str, *, targets: Mapping[str, str] | None = None, timeout: float = 120.0
    ) -> Replica:
        """Start one more `service` process on a free port, configured like the stack's own (same
        databases, Redis, broker and topics; an edge gets its own spool), with `targets`
        overriding the gRPC targets it calls. It is stopped with the stack."""
        spec = SPECS[service]
        n = 2 + sum(1 for name in self.stack.processes if name.startswith(service + "-"))
        name, port = f"{service}-{n}", free_port()
        env = self.stack.env_for(spec)
        if spec.probe == "grpc":
            env[spec.prefix + "LISTEN"] = f"127.0.0.1:{port}"
        if service == "edge":
            env[spec.prefix + "PORT"] = str(port)
            env[spec.prefix + "SPOOL_DIR"] = str(self.stack.config.spool_dir.parent / name)
        for target, address in (targets or {}).items():
            env[f"{spec.prefix}{target.upper()}_TARGET"] = address
        proc = ManagedProcess(name, self.stack.argv_for(spec), env, self.stack.config.log_dir / f"{name}.log")
        self.stack.processes[name] = proc
        proc.start()

        async def ready() -> bool:
            if not proc.running:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{proc.tail()}")
            return await probe(spec.probe, "127.0.0.1", port) == ""

        await eventually(ready, timeout=timeout, interval=0.2, what=f"{name} ready")
        return Replica(name, port)

    async def edge_urls(self, count: int = 2) -> list[str]:
        """`count` edges, each calling its own auth replica (the stack's edge and auth are the
        first pair): requests spread over them cross every replica of both services. Started
        once per session, on first use."""
        if not self._edge_urls:
            self._edge_urls.append(self.edge_url)
        while len(self._edge_urls) < count:
            auth = await self.start_replica("auth")
            edge = await self.start_replica("edge", targets={"auth": auth.target})
            self._edge_urls.append(edge.url)
        return self._edge_urls[:count]

    # ------------------------------------------------------------ operator actions

    async def new_account(self, name: str, *, credit_micros: int = 0) -> AccountKey:
        account = await self.auth.CreateAccount(auth_pb2.CreateAccountRequest(name=name), timeout=10)
        account_id = str(account.account.id)
        key = await self.auth.CreateKey(
            auth_pb2.CreateKeyRequest(account_id=account_id, name=name), timeout=10
        )
        if credit_micros:
            await self.top_up(account_id, credit_micros, f"test-credit:{account_id}")
        return AccountKey(account_id, str(key.key.id), str(key.secret))

    async def top_up(self, account_id: str, amount_micros: int, idempotency_key: str) -> int:
        resp = await self.billing.TopUp(
            billing_pb2.TopUpRequest(
                account_id=account_id, amount_micros=amount_micros, idempotency_key=idempotency_key
            ),
            timeout=10,
        )
        return int(resp.balance_micros)

    async def balance(self, account_id: str) -> int:
        resp = await self.billing.GetBalance(billing_pb2.GetBalanceRequest(account_id=account_id), timeout=10)
        return int(resp.balance_micros)

    async def models(self) -> dict[str, router_pb2.Model]:
        resp = await self.router.ListModels(router_pb2.ListModelsRequest(), timeout=10)
        return {m.id: m for m in resp.models}

    async def fetch(self, service: str, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Read a service's own tables. Only tests do this; services never read each other's."""
        conn = await asyncpg.connect(self.stack.database_url(service), timeout=10)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    # ------------------------------------------------------------ the usage topic

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        topic = self.stack.config.usage_topic
        await consumer.topics()  # refreshes the metadata that partitions_for_topic reads
        return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]

    async def read_usage_topic(
        self, *, expect: Mapping[str, int] | None = None, timeout: float = 30.0
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Every record of the run's usage topic, from the beginning to the end. `expect` maps
        request ids to how many records each must have (as produced by the test) before the end
        counts as reached.

        The end is where fetching stops returning records, not only the reported end offset:
        after a multi-record batch, Tansu reports the batch's base offset + 1 while the records
        past it are stored and fetchable. So reading goes on until the reported end is passed,
        every expected record has been seen, and a poll brings nothing new."""
        # earliest, not only seek_to_beginning(): assign() starts a reset to the default (latest)
        # in the background, which can land after the seek and skip everything before it.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.infra.kafka.url, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            tps = await self._partitions(consumer)
            consumer.assign(tps)
            reported = await consumer.end_offsets(tps)
            await consumer.seek_to_beginning(*tps)
            by_offset: dict[tuple[int, int], ConsumerRecord[bytes, bytes]] = {}
            seen: Counter[str] = Counter()
            deadline = time.monotonic() + timeout
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for recs in batch.values():
                    for r in recs:
                        if (r.partition, r.offset) not in by_offset:
                            by_offset[r.partition, r.offset] = r
                            seen[header_value(r, REQUEST_ID_HEADER)] += 1
                records = [by_offset[k] for k in sorted(by_offset)]
                missing = {rid: n for rid, n in (expect or {}).items() if seen[rid] < n}
                if (
                    not batch
                    and not missing
                    and all([await consumer.position(tp) >= reported[tp] for tp in tps])
                ):
                    return records
                if time.monotonic() > deadline:
                    positions = {tp.partition: await consumer.position(tp) for tp in tps}
                    ends = {tp.partition: e for tp, e in reported.items()}
                    per_partition = dict(Counter(r.partition for r in records))
                    raise AssertionError(
                        f"usage topic: {len(records)} records read, still missing {missing} after "
                        f"{timeout}s; positions {positions}, reported ends {ends}, "
                        f"records per partition {per_partition}"
                    )
        finally:
            await consumer.stop()

    async def topic_ends(self, *, expect: Mapping[str, int] | None = None) -> dict[TopicPartition, int]:
        """Per partition, the offset after the last record actually in the usage topic."""
        ends: dict[TopicPartition, int] = {}
        for r in await self.read_usage_topic(expect=expect):
            tp = TopicPartition(r.topic, r.partition)
            ends[tp] = max(ends.get(tp, 0), r.offset + 1)
        return ends

    async def produce(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Produce records again as they were: same key, value and headers."""
        producer = AIOKafkaProducer(bootstrap_servers=self.infra.kafka.url, acks="all")
        await producer.start()
        try:
            for r in records:
                await producer.send(
                    self.stack.config.usage_topic, value=r.value, key=r.key, headers=list(r.headers or ())
                )
            await producer.flush()
        finally:
            await producer.stop()

    async def committed(self, group: str) -> dict[TopicPartition, int]:
        """The group's committed offsets on the usage topic (-1 where none yet)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.infra.kafka.url, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            out = {}
            for tp in await self._partitions(consumer):
                offset = await consumer.committed(tp)
                out[tp] = -1 if offset is None else int(offset)
            return out
        finally:
            await consumer.stop()

    async def wait_consumed(
        self,
        groups: tuple[str, ...] = ("billing", "usage"),
        *,
        expect: Mapping[str, int] | None = None,
        timeout: float = 60,
    ) -> None:
        """Until every group has committed the whole usage topic as it is now (see
        `read_usage_topic` for `expect`)."""
        ends = await self.topic_ends(expect=expect)

        async def caught_up() -> bool:
            for group in groups:
                committed = await self.committed(group)
                if any(committed.get(tp, -1) < end for tp, end in ends.items()):
                    return False
            return True

        await eventually(caught_up, timeout=timeout, interval=0.2, what=f"consumer groups {groups} caught up")

    def log_tails(self, lines: int = 25) -> str:
        parts = []
        for name, proc in self.stack.processes.items():
            status = "running" if proc.running else f"exited {proc.returncode}"
            parts.append(f"----- {name} ({status}) {proc.log_path}\n{proc.tail(lines)}")
        return "\n".join(parts)


async def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()


def _prune_runs(runs_dir: Path) -> None:
    if not runs_dir.is_dir():
        return
    runs = sorted((p for p in runs_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in runs[:-KEEP_RUNS]:
        shutil.rmtree(old, ignore_errors=True)
