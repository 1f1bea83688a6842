"""One pipelined Redis connection for the script call on the request path (admission).

redis-py spends 0.2-0.3 ms of CPU on each command (packing arguments in Python, the pool's
checkout and release, per-read timeouts, its instrumentation), two to three times what the
round trip to a local Redis costs; coredis and valkey-glide measured no better
(docs/performance.md). This connection does only what that one call needs: commands packed by
hiredis, written as they come (pipelined, so concurrent calls share one socket and one
syscall each), replies parsed by hiredis's reader and handed back in order.

What it keeps from a client library: the URL forms (`redis://`, `rediss://`, `unix://`, with
user, password and database), a timeout on every call, a reconnect after the connection is
lost, EVALSHA falling back to EVAL when the server does not know the script, a CLIENT span per
call, and redis-py's exception types so callers handle one family of errors. Everything else
(the other commands, the slow paths) stays on redis-py.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from opentelemetry import trace
from redis import exceptions as rx
from redis.connection import parse_url

EncodableArg = str | bytes | int | float

_tracer = trace.get_tracer("crossmodel_common.resp")


def _pack(args: tuple[EncodableArg, ...]) -> bytes:
    # hiredis's stub types the argument as a 1-tuple; it takes a command of any length.
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]
    return packed


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: ssl.SSLContext | None = None

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        """The URL forms redis-py accepts, read by redis-py's own parser."""
        o = parse_url(url)  # type: ignore[no-untyped-call]
        context = None
        if url.startswith("rediss://"):
            context = ssl.create_default_context(cafile=o.get("ssl_ca_certs"))
            reqs = o.get("ssl_cert_reqs", "required")
            if reqs in ("none", ssl.CERT_NONE):
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif reqs in ("optional", ssl.CERT_OPTIONAL):
                context.verify_mode = ssl.CERT_OPTIONAL
            if o.get("ssl_check_hostname") is False:
                context.check_hostname = False
            if o.get("ssl_certfile"):
                context.load_cert_chain(o["ssl_certfile"], o.get("ssl_keyfile"))
        return cls(
            host=o.get("host", "localhost"),
            port=int(o.get("port", 6379)),
            path=o.get("path"),
            db=int(o.get("db", 0)),
            username=o.get("username"),
            password=o.get("password"),
            ssl=context,
        )

    @property
    def address(self) -> str:
        return self.path or f"{self.host}:{self.port}"


class _Protocol(asyncio.Protocol):
    """Replies come back in the order commands were written: each one settles the oldest
    waiting future. A caller that gave up (timeout, cancellation) leaves its future in the
    queue, so the replies after it still reach their own callers."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader(replyError=rx.ResponseError)
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                waiter = self._waiting.popleft()
                if waiter.done():
                    continue
                if isinstance(reply, rx.ResponseError):
                    waiter.set_exception(reply)
                else:
                    waiter.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            # A reply nobody asked for, or bytes that are not RESP: nothing after it can be
            # matched to its caller.
            self.close(rx.ConnectionError(f"Redis protocol error: {exc!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(
            rx.ConnectionError(f"connection to Redis lost: {exc!r}" if exc else "Redis closed the connection")
        )

    def _fail(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                # One instance per caller: an exception raised in many tasks would collect
                # all their tracebacks.
                waiter.set_exception(type(exc)(*exc.args))

    def close(self, exc: BaseException) -> None:
        self._fail(exc)
        if self._transport is not None:
            self._transport.abort()

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        if self.lost is not None:
            raise type(self.lost)(*self.lost.args)
        assert self._transport is not None
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._transport.write(packed)
        return waiter


class PipelinedRedis:
    """Commands on one lazily opened, shared connection. `timeout` bounds each call, the
    connect included; a call that times out closes the connection (a server that stopped
    answering must not collect callers), and the next call opens a new one."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self.endpoint = Endpoint.from_url(url)
        self.timeout = timeout
        self._conn: _Protocol | None = None
        self._connecting = asyncio.Lock()  # binds to a loop on first use, not here
        self._attributes = {
            "db.system.name": "redis",
            "server.address": self.endpoint.path or self.endpoint.host,
            "db.namespace": str(self.endpoint.db),
        }

    async def execute(self, *args: EncodableArg) -> Any:
        """One command; its reply, or a redis-py exception (ResponseError for the server's
        error replies, ConnectionError, TimeoutError)."""
        with _tracer.start_as_current_span(
            str(args[0]), kind=trace.SpanKind.CLIENT, attributes=self._attributes
        ):
            return await self._execute(args)

    async def evalsha(
        self, sha: str, script: str, keys: Sequence[EncodableArg], args: Sequence[EncodableArg]
    ) -> Any:
        """Run a script by its SHA1; a server that does not know it (restarted, flushed) is
        sent the script itself, which it runs and keeps."""
        with _tracer.start_as_current_span(
            "EVALSHA", kind=trace.SpanKind.CLIENT, attributes=self._attributes
        ):
            try:
                return await self._execute(("EVALSHA", sha, len(keys), *keys, *args))
            except rx.ResponseError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
            return await self._execute(("EVAL", script, len(keys), *keys, *args))

    async def _execute(self, args: tuple[EncodableArg, ...]) -> Any:
        packed = _pack(args)
        try:
            async with asyncio.timeout(self.timeout):
                # A connection that Redis or a proxy closed while idle is already marked lost
                # by then, so this opens a new one instead of failing the call.
                return await (await self._connection()).send(packed)
        except TimeoutError:
            if self._conn is not None:
                self._conn.close(rx.TimeoutError("Redis did not answer in time"))
            raise rx.TimeoutError(f"Redis did not answer within {self.timeout}s") from None

    async def _connection(self) -> _Protocol:
        conn = self._conn
        if conn is not None and conn.lost is None:
            return conn
        async with self._connecting:
            conn = self._conn
            if conn is None or conn.lost is not None:
                conn = self._conn = await self._connect()
            return conn

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        e = self.endpoint
        try:
            if e.path is not None:
                _, conn = await loop.create_unix_connection(_Protocol, e.path)
            else:
                _, conn = await loop.create_connection(
                    _Protocol, e.host, e.port, ssl=e.ssl, server_hostname=e.host if e.ssl else None
                )
        except OSError as exc:
            raise rx.ConnectionError(f"cannot connect to Redis at {e.address}: {exc}") from exc
        try:
            if e.password is not None:
                auth = ("AUTH", e.username, e.password) if e.username else ("AUTH", e.password)
                await conn.send(_pack(auth))
            if e.db:
                await conn.send(_pack(("SELECT", e.db)))
        except BaseException:
            conn.close(rx.ConnectionError("Redis handshake failed"))
            raise
        return conn

    async def aclose(self) -> None:
        if self._conn is not None:
            self._conn.close(rx.ConnectionError("closed"))
            self._conn = None
