"""One Route call: parse the client body, pick a deployment, call the upstream (retrying and
failing over before the first byte), and turn its answer into frames in the client's protocol:

    Head, chunk bytes..., UsageReport (provisional ones during long streams, then the final one),
    and a Failure last when the request failed.

A UsageReport follows every upstream attempt that was made (zero tokens when it failed before
producing any), so the usage event always names the provider and deployment. The frames are
plain objects; server.py maps them to the protobuf wire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import orjson

from crossmodel_common.logging import get_logger
from crossmodel_common.money import Prices, cost_micros
from crossmodel_protocols.canonical import (
    BlockStart,
    ErrorKind,
    FinishReason,
    Part,
    Protocol,
    ProtocolError,
    ReasoningDelta,
    ReasoningPart,
    RefusalDelta,
    RefusalPart,
    Request,
    StreamError,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    TextPart,
    ToolArgumentsDelta,
    ToolCallPart,
    Usage,
    UsageUpdate,
)
from crossmodel_protocols.codec import IngressCodec, ProviderCodec, StreamParser, StreamRenderer
from crossmodel_protocols.estimate import estimate_input_tokens, tokens_for_chars
from crossmodel_protocols.openai_chat import (
    DONE,
    ChatPassthrough,
    ChatProvider,
    passthrough_body,
    passthrough_response,
)
from crossmodel_protocols.validation import refuse_images
from crossmodel_router.domain.breaker import Breakers
from crossmodel_router.domain.catalog import Catalog, Deployment, ModelEntry, ProviderType
from crossmodel_router.domain.upstream import (
    Upstream,
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamResponse,
    UpstreamTimeout,
)

log = get_logger(__name__)

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_SSE = "text/event-stream"


@dataclass(slots=True)
class Head:
    status: int
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Failure:
    kind: ErrorKind
    message: str
    param: str = ""
    code: str = ""
    upstream_status: int = 0
    retry_after_ms: int = 0


@dataclass(slots=True)
class UsageReport:
    model: str
    provider: str
    deployment: str
    upstream_model: str
    usage: Usage
    prices: Prices
    cost_micros: int
    upstream_latency_ms: int
    ttft_ms: int
    finish_reason: str
    end_user: str
    estimated: bool
    upstream_request_id: str = ""


Frame = Head | bytes | UsageReport | Failure


@dataclass(frozen=True, slots=True)
class RouteCall:
    request_id: str
    protocol: Protocol
    body: bytes
    headers: Mapping[str, str]
    # Seconds left of the caller's deadline, None when it set none.
    time_remaining: float | None = None


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    max_attempts: int = 3
    backoff_seconds: float = 0.05
    total_timeout_seconds: float = 900.0
    usage_progress_seconds: float = 1.0
    # Forward OpenAI-chat bodies to OpenAI-family upstreams as they are (minimal rewriting)
    # instead of through the canonical model.
    passthrough: bool = True


class Router:
    def __init__(
        self,
        catalog: Catalog,
        upstream: Upstream,
        breakers: Breakers,
        *,
        ingress: Mapping[Protocol, IngressCodec],
        providers: Mapping[ProviderType, ProviderCodec],
        policy: RoutePolicy = RoutePolicy(),
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.catalog = catalog
        self._upstream = upstream
        self._breakers = breakers
        self._ingress = ingress
        self._providers = providers
        self._policy = policy
        self._clock = clock

    # ---------------------------------------------------------------------------- queries

    def list_models(self) -> list[ModelEntry]:
        return sorted(self.catalog.models.values(), key=lambda m: m.id)

    def count_tokens(self, protocol: Protocol, body: bytes) -> int | Failure:
        if protocol is Protocol.ANTHROPIC_MESSAGES:
            body = _without_max_tokens(body)
        parsed = self._parse(protocol, body, {})
        if isinstance(parsed, Failure):
            return parsed
        return estimate_input_tokens(parsed)

    # ---------------------------------------------------------------------------- route

    def _parse(self, protocol: Protocol, body: bytes, headers: Mapping[str, str]) -> Request | Failure:
        ingress = self._ingress.get(protocol)
        if ingress is None:
            return Failure(ErrorKind.INVALID_REQUEST, f"The {protocol.value} protocol is not supported yet.")
        try:
            return ingress.parse_request(body, headers)
        except ProtocolError as e:
            return Failure(e.kind, e.message, e.param, e.code)

    def _plan(self, entry: ModelEntry) -> list[Deployment]:
        ordered = self._breakers.order(entry.deployments, lambda d: d.name)
        n = max(1, self._policy.max_attempts)
        return [ordered[i % len(ordered)] for i in range(n)]

    async def route(self, call: RouteCall) -> AsyncIterator[Frame]:
        parsed = self._parse(call.protocol, call.body, call.headers)
        if isinstance(parsed, Failure):
            yield parsed
            return
        req = parsed
        entry = self.catalog.get(req.model)
        if entry is None:
            yield Failure(
                ErrorKind.MODEL_NOT_FOUND,
                f"The model '{req.model}' does not exist or you do not have access to it.",
                param="model",
                code="model_not_found",
            )
            return
        if req.max_tokens is not None and req.max_tokens > entry.max_output_tokens:
            param = _max_tokens_param(req)
            yield Failure(
                ErrorKind.INVALID_REQUEST,
                f"{param} is too large: {req.max_tokens}. This model supports at most "
                f"{entry.max_output_tokens} output tokens, whereas you provided {req.max_tokens}.",
                param=param,
                code="invalid_value",
            )
            return
        # What the model can do decides what the codecs send (e.g. no reasoning effort to a
        # model without reasoning, which its vendor would refuse).
        req.capabilities = frozenset(entry.capabilities)
        req.output_limit = entry.max_output_tokens or None
        try:
            refuse_images(req)
        except ProtocolError as e:
            yield Failure(e.kind, e.message, e.param, e.code)
            return
        ingress = self._ingress[call.protocol]
        budget = self._policy.total_timeout_seconds
        if call.time_remaining is not None:
            budget = min(budget, call.time_remaining)
        deadline = self._clock() + budget

        plan = self._plan(entry)
        failure: Failure | None = None
        last: Deployment | None = None
        last_latency = 0.0
        for attempt, dep in enumerate(plan):
            codec = self._providers.get(dep.provider.type)
            if codec is None:
                failure = Failure(
                    ErrorKind.UPSTREAM_ERROR,
                    f"Provider type '{dep.provider.type.value}' is not supported yet.",
                )
                continue
            if (
                attempt > 0
                and last is not None
                and dep.name == last.name
                and self._policy.backoff_seconds > 0
            ):
                await asyncio.sleep(self._policy.backoff_seconds * (2 ** (attempt - 1)))
            remaining = deadline - self._clock()
            if remaining <= 0:
                failure = Failure(
                    ErrorKind.UPSTREAM_TIMEOUT, "The request deadline passed before the upstream answered."
                )
                break
            fast = False
            try:
                if (
                    self._policy.passthrough
                    and call.protocol is Protocol.OPENAI_CHAT
                    and isinstance(codec, ChatProvider)
                ):
                    fast = True
                    body = passthrough_body(req, dep.upstream_model, codec.dialect)
                    path, headers = "/chat/completions", codec.headers(dep.provider.api_key)
                else:
                    up = codec.build_request(req, dep.upstream_model, dep.provider.api_key)
                    body, path, headers = up.body, up.path, up.headers
            except ProtocolError as e:
                # The request cannot be said in this vendor's protocol (e.g. a tool result whose
                # call is missing, which Gemini needs for the function's name): the client's
                # mistake, reported as such, never a crash of the call.
                failure = Failure(e.kind, e.message, e.param, e.code)
                break
            last = dep
            t0 = self._clock()
            try:
                resp = await self._upstream.post(
                    dep.provider.base_url + path, headers, body, timeout=remaining
                )
            except UpstreamConnectError as e:
                self._breakers.failure(dep.name)
                last_latency = self._clock() - t0
                failure = Failure(ErrorKind.UPSTREAM_ERROR, f"Could not reach the upstream provider ({e}).")
                continue
            except UpstreamTimeout:
                self._breakers.failure(dep.name)
                last_latency = self._clock() - t0
                failure = Failure(ErrorKind.UPSTREAM_TIMEOUT, "The upstream provider did not answer in time.")
                break  # the time budget is spent: no retry
            if resp.status >= 400:
                try:
                    err_body = await resp.read()
                except (UpstreamDisconnected, UpstreamTimeout):
                    err_body = b""
                finally:
                    resp.close()
                last_latency = self._clock() - t0
                err = codec.parse_error(resp.status, err_body, resp.headers)
                # The vendor's code and param are the client's to read only when the vendor
                # refused the request itself (`context_length_exceeded`, …); for our key, its
                # limits or its outage they would mislead (`invalid_api_key` is about our key).
                refused = err.kind is ErrorKind.UPSTREAM_INVALID_REQUEST
                failure = Failure(
                    err.kind,
                    err.message,
                    err.param or "" if refused else "",
                    err.code or "" if refused else "",
                    upstream_status=resp.status,
                    retry_after_ms=err.retry_after_ms,
                )
                if resp.status >= 500:
                    self._breakers.failure(dep.name)
                    continue
                if resp.status == 429 and any(d.name != dep.name for d in plan[attempt + 1 :]):
                    continue
                break
            # Nothing has reached the client yet, so a body that breaks before its first bytes
            # is retried like a refused connection.
            chunks: AsyncIterator[bytes] | None = None
            try:
                if req.stream:
                    chunks = resp.chunks()
                    first = await anext(chunks, b"")
                else:
                    first = await resp.read()
                    resp.close()
                if not first:
                    raise UpstreamDisconnected("empty response body")
            except UpstreamDisconnected:
                resp.close()
                self._breakers.failure(dep.name)
                last_latency = self._clock() - t0
                failure = Failure(
                    ErrorKind.UPSTREAM_ERROR, "The upstream provider closed the connection before answering."
                )
                continue
            except UpstreamTimeout:
                resp.close()
                self._breakers.failure(dep.name)
                last_latency = self._clock() - t0
                failure = Failure(ErrorKind.UPSTREAM_TIMEOUT, "The upstream provider did not answer in time.")
                break
            except BaseException:
                resp.close()
                raise
            self._breakers.success(dep.name)
            if chunks is not None:
                frames = self._stream(req, entry, dep, codec, ingress, resp, chunks, first, t0, fast)
            else:
                frames = self._complete(req, entry, dep, codec, ingress, resp, first, t0, fast)
            async for frame in frames:
                yield frame
            return
        if last is not None:
            yield self._report(req, entry, last, None, Usage(), last_latency, 0.0, "error", False, "")
        yield failure or Failure(ErrorKind.INTERNAL, "No deployment could serve the request.")

    # ---------------------------------------------------------------------------- answers

    def _report(
        self,
        req: Request,
        entry: ModelEntry,
        dep: Deployment,
        usage: Usage | None,
        fallback: Usage,
        latency: float,
        ttft: float,
        finish: str,
        estimated: bool,
        upstream_request_id: str,
    ) -> UsageReport:
        u = usage if usage is not None else fallback
        return UsageReport(
            model=entry.id,
            provider=dep.provider.type.value,
            deployment=dep.name,
            upstream_model=dep.upstream_model,
            usage=u,
            prices=entry.prices,
            cost_micros=cost_micros(
                entry.prices,
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cached_input_tokens=u.cached_input_tokens,
                cache_write_tokens=u.cache_write_tokens,
                reasoning_tokens=u.reasoning_tokens,
            ),
            upstream_latency_ms=int(latency * 1000),
            ttft_ms=int(ttft * 1000),
            finish_reason=finish,
            end_user=req.end_user,
            estimated=estimated or usage is None,
            upstream_request_id=upstream_request_id,
        )

    @staticmethod
    def _upstream_id(resp: UpstreamResponse) -> str:
        return resp.headers.get("x-request-id") or resp.headers.get("request-id") or ""

    def _estimate(self, req: Request, output_chars: int) -> Usage:
        return Usage(input_tokens=estimate_input_tokens(req), output_tokens=tokens_for_chars(output_chars))

    async def _complete(
        self,
        req: Request,
        entry: ModelEntry,
        dep: Deployment,
        codec: ProviderCodec,
        ingress: IngressCodec,
        resp: UpstreamResponse,
        data: bytes,
        t0: float,
        fast: bool,
    ) -> AsyncIterator[Frame]:
        upstream_id = self._upstream_id(resp)
        latency = self._clock() - t0
        estimated = False
        try:
            if fast:
                out, parsed = passthrough_response(data, req)
            else:
                parsed = codec.parse_response(data)
                # Anthropic and Gemini answers carry no creation time; the client's protocol
                # may (OpenAI `created`, `created_at`): it is when the gateway got the answer.
                parsed.created = parsed.created or int(time.time())
                if parsed.usage is None:
                    # As in a stream: the client sees the estimate that is billed, not zeros.
                    parsed.usage = self._estimate(req, _output_chars(parsed.content))
                    estimated = True
                out = ingress.render_response(parsed, req)
        except Exception as e:
            # A codec reports what it recognises as malformed with ProtocolError; anything else
            # it tripped over is an answer it could not read all the same. Either way the client
            # gets an upstream error in its protocol and the attempt is still accounted for.
            if isinstance(e, ProtocolError):
                reason = e.message
            else:
                log.exception("upstream answer not readable", deployment=dep.name)
                reason = "the answer could not be read"
            yield self._report(
                req, entry, dep, None, self._estimate(req, 0), latency, 0.0, "error", True, upstream_id
            )
            yield Failure(ErrorKind.UPSTREAM_ERROR, f"The upstream provider sent an invalid answer: {reason}")
            return
        yield Head(200, CONTENT_TYPE_JSON)
        yield out
        finish = parsed.finish_reason.value if parsed.finish_reason else ""
        yield self._report(
            req,
            entry,
            dep,
            parsed.usage,
            self._estimate(req, _output_chars(parsed.content)),
            latency,
            0.0,
            finish,
            estimated,
            upstream_id,
        )

    async def _stream(
        self,
        req: Request,
        entry: ModelEntry,
        dep: Deployment,
        codec: ProviderCodec,
        ingress: IngressCodec,
        resp: UpstreamResponse,
        chunks: AsyncIterator[bytes],
        first: bytes,
        t0: float,
        fast: bool,
    ) -> AsyncIterator[Frame]:
        upstream_id = self._upstream_id(resp)
        clock = self._clock
        every = self._policy.usage_progress_seconds
        tr: _Translator = _Passthrough(req, clock) if fast else _Canonical(req, codec, ingress, clock)
        failure: Failure | None = None
        yield Head(200, CONTENT_TYPE_SSE)
        next_progress = clock() + every
        try:
            async for data in _prepend(first, chunks):
                out = tr.feed(data)
                if out:
                    yield out
                if tr.error is not None:
                    break
                now = clock()
                if now >= next_progress:
                    next_progress = now + every
                    yield self._report(
                        req, entry, dep, None, tr.usage or self._estimate(req, tr.output_chars),
                        now - t0, tr.first_token_at - t0 if tr.first_token_at else 0.0, "", True, upstream_id,
                    )  # fmt: skip
            if tr.error is None:
                out = tr.end(self._estimate(req, tr.output_chars))
                if out:
                    yield out
            if tr.error is not None:
                # The vendor's own kind (overloaded, rate limited, …) as its codec read it.
                failure = Failure(tr.error.error_kind, tr.error.message)
            elif tr.finish is None:
                failure = Failure(
                    ErrorKind.UPSTREAM_ERROR, "The upstream provider ended the stream before it finished."
                )
        except UpstreamTimeout:
            failure = Failure(
                ErrorKind.UPSTREAM_TIMEOUT, "The upstream provider stopped sending before it finished."
            )
        except UpstreamDisconnected:
            failure = Failure(
                ErrorKind.UPSTREAM_ERROR, "The upstream provider closed the stream before it finished."
            )
        except ProtocolError as e:
            failure = Failure(
                ErrorKind.UPSTREAM_ERROR, f"The upstream provider sent an invalid stream: {e.message}"
            )
        except Exception:
            # As for a complete answer: a chunk the codec could not read ends the stream with an
            # upstream error, and the usage report below still goes out.
            log.exception("upstream stream not readable", deployment=dep.name)
            failure = Failure(
                ErrorKind.UPSTREAM_ERROR,
                "The upstream provider sent an invalid stream: a chunk could not be read",
            )
        finally:
            resp.close()
        finish = "error" if failure is not None else tr.finish.value if tr.finish else ""
        yield self._report(
            req,
            entry,
            dep,
            tr.usage,
            self._estimate(req, tr.output_chars),
            clock() - t0,
            tr.first_token_at - t0 if tr.first_token_at else 0.0,
            finish,
            False,
            upstream_id,
        )
        if failure is not None:
            yield failure


def _output_chars(content: list[Part]) -> int:
    """The characters an answer generated, counted as a stream counts them."""
    chars = 0
    for p in content:
        if isinstance(p, TextPart | ReasoningPart | RefusalPart):
            chars += len(p.text)
        elif isinstance(p, ToolCallPart):
            chars += len(p.name) + len(p.arguments)
    return chars


def _max_tokens_param(req: Request) -> str:
    """The field that carried the output limit, as the client spelled it."""
    if req.ingress is Protocol.OPENAI_RESPONSES:
        return "max_output_tokens"
    if (
        req.ingress is Protocol.OPENAI_CHAT
        and req.raw is not None
        and req.raw.get("max_completion_tokens") is not None
    ):
        return "max_completion_tokens"
    return "max_tokens"


def _without_max_tokens(body: bytes) -> bytes:
    """Anthropic's count_tokens takes a Messages body without `max_tokens`, which the Messages
    parser requires; a placeholder lets the same parser validate the rest."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body  # the parser reports it
    if isinstance(data, dict) and "max_tokens" not in data:
        data["max_tokens"] = 0
        return orjson.dumps(data)
    return body


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for data in rest:
        yield data


class _Translator:
    """Upstream stream bytes -> client stream bytes, remembering what usage accounting needs."""

    usage: Usage | None = None
    finish: FinishReason | None = None
    error: StreamError | None = None
    output_chars: int = 0
    first_token_at: float = 0.0

    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError

    def end(self, estimate: Usage) -> bytes:
        """The closing bytes after the upstream ended normally; `estimate` stands in for usage
        the upstream never reported."""
        raise NotImplementedError


class _Passthrough(_Translator):
    """OpenAI-chat client, OpenAI-family upstream: chunks pass with minimal rewriting."""

    def __init__(self, req: Request, clock: Callable[[], float]) -> None:
        self._pt = ChatPassthrough(req)
        self._clock = clock

    def _sync(self) -> None:
        pt = self._pt
        if pt.output_chars and not self.first_token_at:
            self.first_token_at = self._clock()
        self.output_chars = pt.output_chars
        self.usage = pt.usage
        self.finish = pt.finish_reason
        if pt.error is not None:
            self.error = pt.error

    def feed(self, data: bytes) -> bytes:
        out = self._pt.feed(data)
        self._sync()
        return out

    def end(self, estimate: Usage) -> bytes:
        tail = self._pt.flush()
        self._sync()
        if self.error is None and self.finish is not None and not self._pt.done:
            tail += DONE  # some compatible vendors end without [DONE]
        return tail


class _Canonical(_Translator):
    """Any other pair: upstream -> canonical events -> the client's protocol."""

    def __init__(
        self, req: Request, codec: ProviderCodec, ingress: IngressCodec, clock: Callable[[], float]
    ) -> None:
        self._parser: StreamParser = codec.stream_parser()
        self._renderer: StreamRenderer = ingress.stream_renderer(req)
        self._clock = clock

    def feed(self, data: bytes) -> bytes:
        return self._render(self._parser.feed(data))

    def end(self, estimate: Usage) -> bytes:
        out = self._render(self._parser.close())
        if self.error is None and self.finish is not None:
            if self.usage is None:
                out += self._renderer.render(UsageUpdate(estimate))
            out += self._renderer.close()
        return out

    def _render(self, events: list[StreamEvent]) -> bytes:
        out: list[bytes] = []
        render = self._renderer.render
        for ev in events:
            if isinstance(ev, TextDelta | ReasoningDelta | RefusalDelta):
                if ev.text and not self.first_token_at:
                    self.first_token_at = self._clock()
                self.output_chars += len(ev.text)
            elif isinstance(ev, ToolArgumentsDelta):
                self.output_chars += len(ev.arguments)
            elif isinstance(ev, BlockStart) and isinstance(ev.part, ToolCallPart):
                if not self.first_token_at:
                    self.first_token_at = self._clock()
                self.output_chars += len(ev.part.name)
            elif isinstance(ev, UsageUpdate):
                self.usage = ev.usage
            elif isinstance(ev, StreamFinish):
                self.finish = ev.finish_reason
            elif isinstance(ev, StreamError):
                self.error = ev
                break
            elif isinstance(ev, StreamStart):
                ev.created = ev.created or int(time.time())  # as for a complete answer
            b = render(ev)
            if b:
                out.append(b)
        return b"".join(out)
