"""The whole system as local processes: the provider simulator and the five services, each in its
own process group with its log in `<logs>/<service>.log`, wired to each other and to the
infrastructure through their documented settings (docs/services.md).

`SERVICES` is the one description of what runs; `make run` and the integration tests both start
the stack from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import grpc
import httpx
from grpc_health.v1 import health_pb2

from crossmodel_devstack.broker import die_with_parent, free_port
from crossmodel_devstack.infra import Infra, create_database, create_topics, database_url, sqlalchemy_url

Probe = Literal["grpc", "http", "tcp"]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One process of the stack and what it is wired to."""

    name: str
    port: int  # the port `make run` gives it (docs/services.md); tests use free ports
    probe: Probe  # how readiness is checked: gRPC health, the edge's /readyz, or a TCP connect
    database: bool = False  # owns a database: created and migrated before start
    redis: bool = False
    kafka: Literal["", "producer", "consumer"] = ""
    targets: tuple[str, ...] = ()  # gRPC services it calls: CROSSMODEL_<S>_<TARGET>_TARGET

    @property
    def module(self) -> str:
        return f"crossmodel_{self.name}"

    @property
    def service_name(self) -> str:
        """OTEL_SERVICE_NAME, the `service.name` of its spans."""
        return f"crossmodel-{self.name}"

    @property
    def prefix(self) -> str:
        return f"CROSSMODEL_{self.name.upper()}_"


SIMULATOR = ServiceSpec("simulator", 9100, "tcp")
SERVICES: tuple[ServiceSpec, ...] = (
    SIMULATOR,
    ServiceSpec("router", 50052, "grpc"),
    ServiceSpec("usage", 50054, "grpc", database=True, kafka="consumer"),
    ServiceSpec("billing", 50053, "grpc", database=True, redis=True, kafka="consumer"),
    ServiceSpec("auth", 50051, "grpc", database=True, redis=True, targets=("billing",)),
    ServiceSpec("edge", 8080, "http", kafka="producer", targets=("auth", "router", "billing", "usage")),
)
SPECS: dict[str, ServiceSpec] = {s.name: s for s in SERVICES}
# Services of the product (the simulator stands in for the vendors' APIs).
PRODUCT_SERVICES: tuple[str, ...] = ("edge", "auth", "router", "billing", "usage")

# Each catalog provider's upstream base URL, pointed at the simulator's route for that vendor.
# The simulator serves every vendor under its own prefix, in the vendor's own wire format.
PROVIDER_PATHS: dict[str, str] = {
    "OPENAI": "/openai/v1",
    "ANTHROPIC": "/anthropic",
    "GEMINI": "/gemini",
    "DEEPSEEK": "/deepseek",
    "XAI": "/xai/v1",
    "MISTRAL": "/mistral/v1",
    "QWEN": "/qwen/v1",
}


class StackError(RuntimeError):
    """A process of the stack failed to start or died; the message carries its log's tail."""


@dataclass
class StackConfig:
    """Everything that differs between `make run` and a test run."""

    state_dir: Path  # .crossmodel
    log_dir: Path
    spool_dir: Path
    ports: dict[str, int]
    databases: dict[str, str]  # service -> its database name
    admin_token: str
    usage_topic: str = "usage.v1"
    usage_partitions: int = 4
    log_level: str = "INFO"
    shutdown_grace_seconds: float = 5.0
    extra_env: dict[str, str] = field(default_factory=dict)  # every process gets these (OTEL_*, ...)

    @classmethod
    def for_run(cls, state_dir: Path, admin_token: str) -> StackConfig:
        """`make run`: the documented ports and database names."""
        return cls(
            state_dir=state_dir,
            log_dir=state_dir / "logs",
            spool_dir=state_dir / "spool" / "edge",
            ports={s.name: s.port for s in SERVICES},
            databases={s.name: f"crossmodel_{s.name}" for s in SERVICES if s.database},
            admin_token=admin_token,
        )

    @classmethod
    def for_tests(cls, state_dir: Path, run_id: str, admin_token: str) -> StackConfig:
        """A test run: free ports, databases and topics named after the run so that runs never
        share state (and can run beside `make run`)."""
        run_dir = state_dir / "test-runs" / run_id
        return cls(
            state_dir=run_dir,
            log_dir=run_dir / "logs",
            spool_dir=run_dir / "spool" / "edge",
            ports={s.name: free_port() for s in SERVICES},
            databases={s.name: f"crossmodel_t{run_id}_{s.name}" for s in SERVICES if s.database},
            admin_token=admin_token,
            usage_topic=f"usage.v1.t{run_id}",
        )

    def dlq_topic(self, service: str) -> str:
        return f"{self.usage_topic}.{service}.dlq"

    def topics(self) -> dict[str, int]:
        topics = {self.usage_topic: self.usage_partitions}
        topics.update({self.dlq_topic(s.name): 1 for s in SERVICES if s.kafka == "consumer"})
        return topics


class ManagedProcess:
    """A child process in its own process group, output appended to one log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - owned until stop()
        self.popen = subprocess.Popen(
            die_with_parent(self.argv),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def signal_group(self, sig: int) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def wait(self, timeout: float) -> bool:
        if self.popen is None:
            return True
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 40) -> str:
        try:
            data = self.log_path.read_bytes()[-64_000:]
        except OSError:
            return ""
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def stop_processes(processes: Iterable[ManagedProcess], grace: float) -> None:
    """SIGTERM every group, wait up to `grace` seconds in all, SIGKILL the groups still there."""
    procs = [p for p in processes if p.popen is not None]
    for p in procs:
        if p.running:
            p.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        p.wait(max(0.0, deadline - time.monotonic()))
    for p in procs:
        # The group too: a service's own children (uvicorn workers, …) must not survive it.
        p.signal_group(signal.SIGKILL)
        p.wait(5)
        p.close_log()


def python() -> str:
    """The interpreter that runs everything: this one, from the repo's venv."""
    return sys.executable


class Stack:
    """The simulator and the five services on top of `infra`, configured by `config`."""

    def __init__(self, config: StackConfig, infra: Infra, *, specs: Iterable[ServiceSpec] = SERVICES) -> None:
        self.config = config
        self.infra = infra
        self.specs = list(specs)
        self.processes: dict[str, ManagedProcess] = {}

    # ------------------------------------------------------------ addresses

    def target(self, service: str) -> str:
        return f"127.0.0.1:{self.config.ports[service]}"

    @property
    def edge_url(self) -> str:
        return f"http://{self.target('edge')}"

    @property
    def simulator_url(self) -> str:
        return f"http://{self.target('simulator')}"

    def database_url(self, service: str) -> str:
        """Plain `postgresql://` URL of a service's own database (for tools and tests)."""
        return database_url(self.infra.postgres.url, self.config.databases[service])

    # ------------------------------------------------------------ environment

    def env_for(self, spec: ServiceSpec, base: Mapping[str, str] = os.environ) -> dict[str, str]:
        cfg = self.config
        p = spec.prefix
        env = dict(base)
        env.update(cfg.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        env["OTEL_SERVICE_NAME"] = spec.service_name
        env.setdefault(p + "LOG_LEVEL", cfg.log_level)
        env[p + "SHUTDOWN_GRACE_SECONDS"] = str(cfg.shutdown_grace_seconds)
        port = cfg.ports[spec.name]
        if spec.probe == "grpc":
            env[p + "LISTEN"] = f"127.0.0.1:{port}"
        if spec.name == "edge":
            env[p + "HOST"] = "127.0.0.1"
            env[p + "PORT"] = str(port)
            env[p + "SPOOL_DIR"] = str(cfg.spool_dir)
            env[p + "ADMIN_TOKEN"] = cfg.admin_token
            # The console's development payment provider credits top-ups at once; never in production.
            env.setdefault(p + "CONSOLE_DEV_PAYMENTS", "true")
        if spec.database:
            env[p + "DATABASE_URL"] = sqlalchemy_url(self.database_url(spec.name))
        if spec.redis:
            env[p + "REDIS_URL"] = self.infra.redis.url
        if spec.kafka:
            env[p + "KAFKA_BOOTSTRAP"] = self.infra.kafka.url
            env[p + "USAGE_TOPIC"] = cfg.usage_topic
        if spec.kafka == "consumer":
            env[p + "DLQ_TOPIC"] = cfg.dlq_topic(spec.name)
        for target in spec.targets:
            env[f"{p}{target.upper()}_TARGET"] = self.target(target)
        if spec.name == "router":
            for provider, path in PROVIDER_PATHS.items():
                env[f"{p}PROVIDER_{provider}_BASE_URL"] = self.simulator_url + path
                env.setdefault(f"{p}PROVIDER_{provider}_API_KEY", "sk-simulator")
        return env

    def argv_for(self, spec: ServiceSpec) -> list[str]:
        argv = [python(), "-m", spec.module]
        if spec is SIMULATOR or spec.name == "simulator":
            argv += ["--host", "127.0.0.1", "--port", str(self.config.ports[spec.name])]
        return argv

    # ------------------------------------------------------------ lifecycle

    async def prepare(self) -> None:
        """Databases, topics and migrations: everything the services expect to exist."""
        admin = self.infra.postgres.url
        for spec in self.specs:
            if spec.database:
                await create_database(admin, self.config.databases[spec.name])
        await create_topics(self.infra.kafka.url, self.config.topics())
        results = await asyncio.gather(
            *(self._migrate(s) for s in self.specs if s.database), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _migrate(self, spec: ServiceSpec) -> None:
        log_path = self.config.log_dir / f"{spec.name}-migrate.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:  # noqa: ASYNC230 - opened once, handed to the child
            proc = await asyncio.create_subprocess_exec(
                *self.argv_for(spec),
                "migrate",
                env=self.env_for(spec),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                code = await asyncio.wait_for(proc.wait(), 120)
            except BaseException:
                # Timed out or cancelled (Ctrl-C): never leave a migration running behind us.
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
                raise
        if code != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise StackError(f"`python -m {spec.module} migrate` exited with {code}; {log_path}:\n{tail}")

    def spawn(self) -> None:
        """Start every process without waiting (clients connect lazily, so order is free)."""
        self.config.log_dir.mkdir(parents=True, exist_ok=True)
        self.config.spool_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.specs:
            log_path = self.config.log_dir / f"{spec.name}.log"
            if log_path.exists():
                # One log per run; the previous run's stays beside it for a post-mortem.
                log_path.replace(log_path.with_suffix(".log.1"))
            proc = ManagedProcess(spec.name, self.argv_for(spec), self.env_for(spec), log_path)
            self.processes[spec.name] = proc
            proc.start()

    async def wait_ready(self, timeout: float = 120.0) -> None:
        await asyncio.gather(*(self._wait_one(spec, timeout) for spec in self.specs))

    async def start(self, timeout: float = 120.0) -> None:
        self.spawn()
        try:
            await self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    async def _wait_one(self, spec: ServiceSpec, timeout: float) -> None:
        proc = self.processes[spec.name]
        host, port = "127.0.0.1", self.config.ports[spec.name]
        deadline = time.monotonic() + timeout
        last = "not started"
        while True:
            if not proc.running:
                raise StackError(
                    f"{spec.name} exited with {proc.returncode} before it was ready; "
                    f"{proc.log_path}:\n{proc.tail()}"
                )
            last = await probe(spec.probe, host, port)
            if last == "":
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"{spec.name} not ready after {timeout:.0f}s ({last}); {proc.log_path}:\n{proc.tail()}"
                )
            # Each probe of the edge is a logged request: poll it less eagerly.
            await asyncio.sleep(0.25 if spec.probe == "http" else 0.1)

    def dead(self) -> list[ManagedProcess]:
        """Processes that exited although nobody stopped them."""
        return [p for p in self.processes.values() if p.popen is not None and not p.running]

    def stop(self) -> None:
        """Edge first, so it can hand its last usage events to the broker while that still runs;
        then everything else at once."""
        edge = [p for name, p in self.processes.items() if name == "edge"]
        rest = [p for name, p in self.processes.items() if name != "edge"]
        grace = self.config.shutdown_grace_seconds + 5
        stop_processes(edge, grace)
        stop_processes(rest, grace)


async def probe(kind: Probe, host: str, port: int) -> str:
    """'' when the endpoint is ready, else why not."""
    try:
        if kind == "tcp":
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return ""
        if kind == "http":
            async with httpx.AsyncClient(timeout=2) as client:
                r = await client.get(f"http://{host}:{port}/readyz")
            return "" if r.status_code == 200 else f"/readyz answered {r.status_code}: {r.text[:200]}"
        async with grpc.aio.insecure_channel(f"{host}:{port}") as channel:
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            resp = await check(health_pb2.HealthCheckRequest(service=""), timeout=1)
        serving = resp.status == health_pb2.HealthCheckResponse.SERVING
        return "" if serving else f"health {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}"
    except (OSError, TimeoutError, httpx.HTTPError, grpc.RpcError) as exc:
        return f"{type(exc).__name__}: {exc}"[:300]
