"""The console's pages and form posts. Each handler checks the session, translates the form or
query into one or two gRPC calls to auth, billing or usage (always scoped to the session's
account), and renders a template. The edge stores nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import grpc
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute

from crossmodel.auth.v1 import auth_pb2
from crossmodel.billing.v1 import billing_pb2
from crossmodel.usage.v1 import usage_pb2
from crossmodel_common.ids import new_ulid
from crossmodel_common.logging import get_logger
from crossmodel_edge.console import forms, payments, render, session, signatures, views
from crossmodel_edge.console.session import Problem, SignInRequired, Viewer
from crossmodel_edge.middleware import request_info
from crossmodel_edge.runtime import Edge

log = get_logger(__name__)
T = TypeVar("T")

_SECURITY_HEADERS = {
    # Only our own files; no inline script, no framing, forms post only here.
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}
DONE = {
    "welcome": "Welcome! Your account is ready. Create an API key to start.",
    "renamed": "Key renamed.",
    "limits": "Limits saved. They apply to the next request.",
    "revoked": "Key revoked. Requests with it are refused from now on.",
    "topped-up": "Payment received: your balance is topped up.",
    "signed-out": "You are signed out.",
}
PAGE = 50
EXPORT_PAGE = 1000
EXPORT_MAX_ROWS = 200_000


def _edge(request: Request) -> Edge:
    edge: Edge = request.app.state.edge
    return edge


class ConsoleRoute(APIRoute):
    """Renders Problems as error pages, sends a missing session to sign-in, and puts the
    security headers on every console response."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await inner(request)
            except SignInRequired:
                if request.method == "GET":
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    response = RedirectResponse(
                        f"/console/signin?next={quote(target, safe='/')}", status_code=303
                    )
                else:
                    response = _problem_page(
                        request,
                        Problem(401, "Signed out", "Your session has ended. Sign in again to continue."),
                    )
            except Problem as problem:
                response = _problem_page(request, problem)
            for name, value in _SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            response.headers.setdefault("cache-control", "no-store")
            return response

        return handler


router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("viewer", None)
    context.setdefault("active", "")
    context.setdefault("notice", DONE.get(request.query_params.get("done", ""), ""))
    context.setdefault("error", "")
    context.setdefault("error_field", "")
    # Pages answering a post take their GET address (console.js), so a reload does not re-post.
    context.setdefault("replace_url", _get_address(request.url.path) if request.method == "POST" else "")
    context["request_id"] = request_info(request.scope).request_id
    return HTMLResponse(render.render(template, **context), status_code=status)


def _get_address(path: str) -> str:
    """The page a form post belongs to: /console/keys/K/limits -> /console/keys/K."""
    if path.endswith(("/rename", "/limits", "/revoke", "/top-up")):
        return path.rsplit("/", 1)[0]
    return path


def _problem_page(request: Request, problem: Problem) -> HTMLResponse:
    response = _page(
        request, "error.html", problem.status, title=problem.title, message=problem.message, viewer=None
    )
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


async def _rpc(call: Awaitable[T], service: str, not_found: Problem | None = None) -> T:
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        if not_found is not None and exc.code() in (
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.INVALID_ARGUMENT,
        ):
            raise not_found from exc
        raise session.unavailable(service, exc) from exc


def _timeout(edge: Edge) -> float:
    return edge.settings.backend_timeout_seconds


def _secure(request: Request, edge: Edge) -> bool:
    return session.secure_cookies(request, edge.settings.console_cookie_secure)


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def _today() -> date:
    return datetime.now(tz=UTC).date()


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# ------------------------------------------------------------------ sign-in, sign-up, sign-out


@router.get("")
@router.get("/")
async def home(request: Request) -> Response:
    edge = _edge(request)
    who = await session.viewer(request, edge)
    return _see_other("/console/keys" if who else "/console/signin")


def _anonymous_page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    edge = _edge(request)
    token = session.pre_session_token(request)
    response = _page(request, template, status, csrf=token, **context)
    session.set_pre_session_cookie(response, token, _secure(request, edge))
    return response


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    edge = _edge(request)
    if await session.viewer(request, edge):
        return _see_other(forms.safe_next(request.query_params.get("next", "")))
    return _anonymous_page(
        request, "signin.html", next=forms.safe_next(request.query_params.get("next", "")), email=""
    )


@router.post("/signin")
async def signin(request: Request) -> Response:
    edge = _edge(request)
    form = await session.checked_anonymous_form(request)
    email, password = form.get("email", "").strip(), form.get("password", "")
    target = forms.safe_next(form.get("next", ""))
    resp = await _rpc(
        edge.backends.auth.SignIn(
            auth_pb2.SignInRequest(email=email, password=password, client_ip=_client_ip(request)),
            timeout=_timeout(edge),
        ),
        "auth",
    )
    if resp.result == auth_pb2.SIGN_IN_RESULT_OK:
        response = _see_other(target)
        max_age = max(int(resp.session.expires_at_unix_ms / 1000 - time.time()), 60)
        session.set_session(response, resp.session.token, max_age, _secure(request, edge))
        return response
    if resp.result == auth_pb2.SIGN_IN_RESULT_RATE_LIMITED:
        minutes = max(1, -(-resp.retry_after_ms // 60_000))
        page = _anonymous_page(
            request,
            "signin.html",
            429,
            next=target,
            email=email,
            error=f"Too many sign-in attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
        )
        page.headers["retry-after"] = str(max(1, resp.retry_after_ms // 1000))
        return page
    message = (
        "This account is disabled. Contact support."
        if resp.result == auth_pb2.SIGN_IN_RESULT_ACCOUNT_DISABLED
        else "Wrong email or password."
    )
    return _anonymous_page(request, "signin.html", 401, next=target, email=email, error=message)


@router.get("/signup")
async def signup_page(request: Request) -> Response:
    edge = _edge(request)
    if await session.viewer(request, edge):
        return _see_other("/console/keys")
    return _anonymous_page(request, "signup.html", email="", account_name="")


@router.post("/signup")
async def signup(request: Request) -> Response:
    edge = _edge(request)
    form = await session.checked_anonymous_form(request)
    email, password = form.get("email", "").strip(), form.get("password", "")
    account_name = form.get("account_name", "").strip()[: forms.MAX_NAME]

    def again(status: int, error: str, field: str) -> HTMLResponse:
        return _anonymous_page(
            request,
            "signup.html",
            status,
            email=email,
            account_name=account_name,
            error=error,
            error_field=field,
        )

    if password != form.get("password_again", ""):
        return again(400, "The two passwords differ.", "password_again")
    try:
        await edge.backends.auth.CreateConsoleUser(
            auth_pb2.CreateConsoleUserRequest(
                email=email, password=password, account_name=account_name, client_ip=_client_ip(request)
            ),
            timeout=_timeout(edge),
        )
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.ALREADY_EXISTS:
            return again(409, "An account with this email exists already. Sign in instead.", "email")
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            detail = (exc.details() or "").strip()
            field = "password" if "password" in detail else "email"
            return again(400, detail[:1].upper() + detail[1:] + ".", field)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return again(429, "Too many sign-ups from your network. Try again later.", "")
        raise session.unavailable("auth", exc) from exc
    resp = await _rpc(
        edge.backends.auth.SignIn(
            auth_pb2.SignInRequest(email=email, password=password, client_ip=_client_ip(request)),
            timeout=_timeout(edge),
        ),
        "auth",
    )
    if resp.result != auth_pb2.SIGN_IN_RESULT_OK:
        return _see_other("/console/signin")
    response = _see_other("/console/keys?done=welcome")
    max_age = max(int(resp.session.expires_at_unix_ms / 1000 - time.time()), 60)
    session.set_session(response, resp.session.token, max_age, _secure(request, edge))
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    edge = _edge(request)
    who = await session.require_viewer(request, edge)
    await session.checked_form(request, who)
    await _rpc(
        edge.backends.auth.SignOut(auth_pb2.SignOutRequest(token=who.token), timeout=_timeout(edge)), "auth"
    )
    response = _see_other("/console/signin?done=signed-out")
    session.clear_session(response, _secure(request, edge))
    return response


# ------------------------------------------------------------------ keys

_KEY_NOT_FOUND = Problem(404, "No such key", "This key does not exist in your account.")


async def _keys(edge: Edge, who: Viewer) -> list[auth_pb2.ApiKey]:
    resp = await _rpc(
        edge.backends.auth.ListKeys(
            auth_pb2.ListKeysRequest(account_id=who.account_id), timeout=_timeout(edge)
        ),
        "auth",
    )
    return sorted(resp.keys, key=lambda k: (k.status != auth_pb2.KEY_STATUS_ACTIVE, -k.created_at_unix_ms))


def _limits_pb(limits: forms.LimitsInput) -> auth_pb2.KeyLimits:
    return auth_pb2.KeyLimits(
        rpm=limits.rpm,
        tpm=limits.tpm,
        allowed_models=list(limits.allowed_models),
        spend_cap_micros=limits.spend_cap_micros,
        expires_at_unix_ms=limits.expires_at_ms,
    )


async def _keys_page(
    request: Request, edge: Edge, who: Viewer, status: int = 200, **context: Any
) -> HTMLResponse:
    keys = await _keys(edge, who)
    context.setdefault("form", {})
    return _page(request, "keys.html", status, viewer=who, active="keys", keys=keys, pb=auth_pb2, **context)


@router.get("/keys")
async def keys_page(request: Request) -> Response:
    edge = _edge(request)
    who = await session.require_viewer(request, edge)
    return await _keys_page(request, edge, who)


@router.post("/keys")
async def create_key(request: Request) -> Response:
    edge = _edge(request)
    who = await session.require_viewer(request, edge)
    form = await session.checked_form(request, who)
    try:
        name = forms.key_name(form)
        limits = forms.limits(form, today=_today())
    except forms.FormError as exc:
        return await _keys_page(request, edge, who, 400, error=str(exc), error_field=exc.field, form=form)
    try:
        created = await edge.backends.auth.CreateKey(
            auth_pb2.CreateKeyRequest(account_id=who.account_id, name=name, limits=_limits_pb(limits)),
            timeout=_timeout(edge),
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            return await _keys_page(
                request, edge, who, 400, error=exc.details() or "Invalid key settings.", form=form
            )
        raise session.unavailable("auth", exc) from exc
    # Rendered, not redirected: the secret exists only in this response (no-store).
    return await _keys_page(request, edge, who, 201, created=created.key, secret=created.secret)


async def _key(edge: Edge, who: Viewer, key_id: str) -> auth_pb2.ApiKey:
    resp = await _rpc(
        edge.backends.auth.GetKey(
            auth_pb2.GetKeyRequest(key_id=key_id, account_id=who.account_id), timeout=_timeout(edge)
        ),
        "auth",
        _KEY_NOT_FOUND,
    )
    return resp.key


def _key_form(key: auth_pb2.ApiKey) -> dict[str, str]:
    lim = key.limits
    return {
        "name": key.name,
        "rpm": str(lim.rpm or ""),
        "tpm": str(lim.tpm or ""),
        "allowed_models": ", ".join(lim.allowed_models),
        "spend_cap": forms.money(lim.spend_cap_micros) if lim.spend_cap_micros else "",
        "expires_on": forms.day_of(lim.expires_at_unix_ms),
    }


async def _key_page(
    request: Request, edge: Edge, who: Viewer, key: auth_pb2.ApiKey, status: int = 200, **context: Any
) -> HTMLResponse:
    spent = await _rpc(
        edge.backends.billing.GetKeySpend(
            billing_pb2.GetKeySpendRequest(key_id=key.id), timeout=_timeout(edge)
        ),
        "billing",
    )
    context.setdefault("form", _key_form(key))
    return _page(
        request,
        "key.html",
        status,
        viewer=who,
        active="keys",
        key=key,
        spent=spent.spent_micros,
        pb=auth_pb2,
        **context,
    )


@router.get("/keys/{key_id}")
async def key_page(request: Request, key_id: str) -> Response:
    edge = _edge(request)
    who = await session.require_viewer(request, edge)
    return await _key_page(request, edge, who, await _key(edge, who, key_id))


async def _update_key(
    request: Request, key_id: str, build: Callable[[dict[str, str]], dict[str, Any]], done: str
) -> Response:
    edge = _edge(request)
    who = await session.require_viewer(request, edge)
    form = await session.checked_form(request, who)
    key = await _key(edge, who, key_id)
    try:
        change = build(form)
    except forms.FormError as exc:
        return await _key_page(request, edge, who, key, 400, error=str(exc), error_field=exc.field, form=form)
    try:
        await edge.backends.auth.UpdateKey(
            auth_pb2.UpdateKeyRequest(key_id=key.id, account_id=who.account_id, **change),
            timeout=_timeout(edge),
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise _KEY_NOT_FOUND from exc
        if exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            message = exc.details() or "The change was refused."
            return await _key_page(
                request, edge, who, key, 400, error=message[:1].upper() + message[1:] + "."
            )
        raise session.unavailable("auth", exc) from exc
    return _see_other(f"/console/keys/{key.id}?done={done}")


@router.post("/keys/{key_id}/rename")
async def rename_key(request: Request, key_id: str) -> Response:
    return await _update_key(request, key_id, lambda f: {"name": forms.key_name(f)}, "renamed")


@router.post("/keys/{key_id}/limits")
async def set_limits(request: Request, key_id: str) -> Response:
    return await _update_key(
        request, key_id, lambda f: {"limits": _limits_pb(forms.limits(f, today=_today()))}, "limits"
    )


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str) -> Response:
    edge = _edge(request)
    who = await session.require_viewer(request, edge)
    await session.checked_form(request, who)
    await _rpc(
        edge.backends.auth.RevokeKey(
            auth_pb2.RevokeKeyRequest(key_id=key_id, account_id=who.account_id), timeout=_timeout(edge)
        ),
        "auth",
        _KEY_NOT_FOUND,
    )
    return _see_other(f"/console/keys/{key_id}?done=revoked")


# ------------------------------------------------------------------ balance and top-ups


def _provider(edge: Edge) -> payments.PaymentProvider | None:
    settings = edge.settings
    if settings.console_dev_payments:
        return payments.DevPayments(edge.backends.billing, _timeout(edge))
    if settings.payments_checkout_url:
        return payments.WebhookPayments(settings.payments_checkout_url)
    return None


async def _balance_page(
    request: Request, edge: Edge, who: Viewer, status: int = 200, **context: Any
) -> HTMLResponse:
    before_raw = request.query_params.get("before", "")
    before = int(before_raw) if before_raw.isdigit() else 0
    balance, ledger = await asyncio.gather(
        _rpc(
            edge.backends.billing.GetBalance(
                billing_pb2.GetBalanceRequest(account_id=who.account_id), timeout=_timeout(edge)
            ),
            "billing",
        ),
        _rpc(
            edge.backends.billing.ListLedger(
                billing_pb2.ListLedgerRequest(account_id=who.account_id, limit=PAGE, before_unix_ms=before),
                timeout=_timeout(edge),
            ),
            "billing",
        ),
    )
    entries = list(ledger.entries)
    older = entries[-1].created_at_unix_ms if len(entries) == PAGE else 0
    provider = _provider(edge)
    return _page(
        request,
        "balance.html",
        status,
        viewer=who,
        active="balance",
        balance=balance,
        entries=entries,
        older=older,
        provider=provider.name if provider else "",
        attempt_id=new_ulid(),
        kinds={
            billing_pb2.ENTRY_KIND_CHARGE: "Charge",
            billing_pb2.ENTRY_KIND_TOP_UP: "Top-up",
            billing_pb2.ENTRY_KIND_ADJUSTMENT: "Adjustment",
        },
        **context,
    )


@router.get("/balance")
async def balance_page(request: Request) -> Response:
    edge = _edge(request)
    who = await session.require_viewer(request, edge)
    return await _balance_page(request, edge, who)


@router.post("/balance/top-up")
async def top_up(request: Request) -> Response:
    edge = _edge(request)
    who = await session.require_viewer(request, edge)
    form = await session.checked_form(request, who)
    provider = _provider(edge)
    if provider is None:
        raise Problem(404, "Top-ups are not available", "No payment provider is configured on this server.")
    try:
        amount = forms.top_up_amount(form)
    except forms.FormError as exc:
        return await _balance_page(request, edge, who, 400, error=str(exc), error_field=exc.field)
    attempt = form.get("attempt_id", "")
    if not (10 <= len(attempt) <= 64 and attempt.isalnum()):
        raise session.FORGED
    checkout = await _rpc(
        provider.start(account_id=who.account_id, email=who.email, amount_micros=amount, attempt_id=attempt),
        "billing",
    )
    if checkout.redirect_url:
        return _see_other(checkout.redirect_url)
    return _see_other("/console/balance?done=topped-up")


@router.post("/webhooks/payments")
async def payment_webhook(request: Request) -> Response:
    """Signed by the provider, not by a browser: no session, no CSRF token (the signature is
    the authentication). Answers JSON for the provider's delivery log."""
    edge = _edge(request)
    settings = edge.settings
    body = await request.body()

    def answer(status: int, **fields: Any) -> Response:
        return Response(orjson.dumps(fields), status, media_type="application/json")

    try:
        signatures.verify(
            settings.payments_webhook_secret.get_secret_value(),
            request.headers.get("stripe-signature"),
            body,
            now=time.time(),
            tolerance_s=settings.payments_webhook_tolerance_seconds,
        )
    except signatures.SignatureError as exc:
        log.warning("payment webhook refused", reason=str(exc))
        return answer(400, error=str(exc))
    try:
        paid = payments.parse_event(body)
    except payments.EventError as exc:
        log.warning("payment webhook unusable", reason=str(exc))
        return answer(400, error=str(exc))
    if paid is None:
        return answer(200, received=True, credited=False)
    timeout = _timeout(edge)
    try:
        await edge.backends.auth.GetAccount(
            auth_pb2.GetAccountRequest(account_id=paid.account_id), timeout=timeout
        )
        balance = await edge.backends.billing.GetBalance(
            billing_pb2.GetBalanceRequest(account_id=paid.account_id), timeout=timeout
        )
        if balance.currency.upper() != paid.currency:
            log.error("payment in another currency", event_id=paid.event_id, currency=paid.currency)
            return answer(400, error=f"this gateway bills in {balance.currency}, not {paid.currency}")
        credited = await edge.backends.billing.TopUp(
            billing_pb2.TopUpRequest(
                account_id=paid.account_id,
                amount_micros=paid.amount_micros,
                idempotency_key=paid.event_id,
                description=f"Top-up (payment {paid.event_id})",
            ),
            timeout=timeout,
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            log.error("payment for an unknown account", event_id=paid.event_id, account_id=paid.account_id)
            return answer(400, error="unknown account in client_reference_id")
        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
            return answer(409, error="this event id was credited before with a different amount")
        # Retryable: the provider delivers again later, and the idempotency key credits once.
        log.warning("payment webhook could not credit yet", event_id=paid.event_id, code=exc.code().name)
        return answer(503, error="try again later")
    log.info(
        "payment credited",
        event_id=paid.event_id,
        account_id=paid.account_id,
        amount_micros=paid.amount_micros,
        replayed=credited.replayed,
    )
    return answer(200, received=True, credited=not credited.replayed, replayed=credited.replayed)


# ------------------------------------------------------------------ usage and requests


def _query(request: Request) -> dict[str, str]:
    return dict(request.query_params.items())


@router.get("/usage")
async def usage_page(request: Request) -> Response:
    edge = _edge(request)
    who = await session.require_viewer(request, edge)
    query = _query(request)
    keys = await _keys(edge, who)
    key_id = query.get("key", "")
    try:
        period = forms.period(query, today=_today())
    except forms.FormError as exc:
        period = forms.period({}, today=_today())
        query.update(error=str(exc))
    if key_id and key_id not in {k.id for k in keys}:
        raise _KEY_NOT_FOUND
    resp = await _rpc(
        edge.backends.usage.GetDailyUsage(
            usage_pb2.GetDailyUsageRequest(
                account_id=who.account_id,
                key_id=key_id,
                from_day=period.start.isoformat(),
                to_day=period.end.isoformat(),
            ),
            timeout=_timeout(edge),
        ),
        "usage",
    )
    view = views.usage_view(resp.days, period)
    return _page(
        request,
        "usage.html",
        viewer=who,
        active="usage",
        keys=keys,
        key_id=key_id,
        period=period,
        view=view,
        error=query.get("error", ""),
    )


def _request_filters(request: Request, who: Viewer) -> tuple[usage_pb2.ListRequestsRequest, dict[str, str]]:
    query = _query(request)
    status = forms.status_filter(query)
    from_ms = to_ms = 0
    if query.get("from") or query.get("to"):
        period = forms.period(query, today=_today(), default_days=30)
        from_ms, to_ms = period.bounds_ms()
    filters = usage_pb2.ListRequestsRequest(
        account_id=who.account_id,
        key_id=query.get("key", "").strip(),
        model=query.get("model", "").strip(),
        status=status,
        request_id=query.get("request_id", "").strip(),
        from_unix_ms=from_ms,
        to_unix_ms=to_ms,
    )
    return filters, query


@router.get("/requests")
async def requests_page(request: Request) -> Response:
    edge = _edge(request)
    who = await session.require_viewer(request, edge)
    keys = await _keys(edge, who)
    error, field = "", ""
    try:
        filters, query = _request_filters(request, who)
    except forms.FormError as exc:
        filters, query = usage_pb2.ListRequestsRequest(account_id=who.account_id), {}
        error, field = str(exc), exc.field
    filters.limit = PAGE
    filters.page_token = request.query_params.get("page", "")
    try:
        resp = await edge.backends.usage.ListRequests(filters, timeout=_timeout(edge))
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:
            raise session.unavailable("usage", exc) from exc
        resp = usage_pb2.ListRequestsResponse()
        error = "Those filters could not be applied: " + (exc.details() or "invalid filter") + "."
    next_query = {k: v for k, v in query.items() if k != "page" and v}
    if resp.next_page_token:
        next_query["page"] = resp.next_page_token
    export_query = urlencode({k: v for k, v in query.items() if k != "page" and v})
    return _page(
        request,
        "requests.html",
        viewer=who,
        active="requests",
        keys=keys,
        query=query,
        rows=list(resp.requests),
        status_name=views.status_name,
        next_url=f"/console/requests?{urlencode(next_query)}" if resp.next_page_token else "",
        export_url=f"/console/requests.csv?{export_query}" if export_query else "/console/requests.csv",
        statuses=forms.STATUSES,
        error=error,
        error_field=field,
    )


@router.get("/requests.csv")
async def export_requests(request: Request) -> Response:
    edge = _edge(request)
    who = await session.require_viewer(request, edge)
    try:
        filters, _ = _request_filters(request, who)
    except forms.FormError as exc:
        raise Problem(400, "Cannot export", str(exc)) from exc
    # A fixed upper bound, so requests arriving during the export do not shift the pages.
    if not filters.to_unix_ms:
        filters.to_unix_ms = int(time.time() * 1000) + 1
    filters.limit = EXPORT_PAGE
    first = await _rpc(edge.backends.usage.ListRequests(filters, timeout=_timeout(edge)), "usage")

    async def rows() -> AsyncIterator[bytes]:
        yield views.csv_header().encode()
        page, sent = first, 0
        while True:
            yield views.csv_rows(page.requests).encode()
            sent += len(page.requests)
            if not page.next_page_token or sent >= EXPORT_MAX_ROWS:
                return
            filters.page_token = page.next_page_token
            page = await edge.backends.usage.ListRequests(filters, timeout=_timeout(edge))

    stamp = datetime.now(tz=UTC).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="crossmodel-requests-{stamp}.csv"'},
    )


@router.get("/requests/{request_id}")
async def request_page(request: Request, request_id: str) -> Response:
    edge = _edge(request)
    who = await session.require_viewer(request, edge)
    resp = await _rpc(
        edge.backends.usage.GetRequest(
            usage_pb2.GetRequestRequest(request_id=request_id, account_id=who.account_id),
            timeout=_timeout(edge),
        ),
        "usage",
        Problem(404, "No such request", "There is no request with this id in your account."),
    )
    if not resp.found:
        raise Problem(
            404,
            "No such request",
            "There is no request with this id in your account (yet: a request appears here a few "
            "seconds after it finished).",
        )
    return _page(
        request,
        "request.html",
        viewer=who,
        active="requests",
        r=resp.request,
        status_name=views.status_name(resp.request.status),
    )


# ------------------------------------------------------------------ models


@router.get("/models")
async def models_page(request: Request) -> Response:
    edge = _edge(request)
    who = await session.require_viewer(request, edge)
    catalog = edge.catalog.catalog
    if catalog is None:
        raise Problem(
            503, "Catalog not loaded yet", "The model catalog is not available yet. Reload in a moment."
        )
    models = sorted(catalog.models.values(), key=lambda m: (m.vendor, m.id))
    host = request.headers.get("host", f"{edge.settings.host}:{edge.settings.port}")
    base = f"{request.url.scheme}://{host}"
    return _page(
        request,
        "models.html",
        viewer=who,
        active="models",
        models=models,
        base=base,
        selected=request.query_params.get("model", ""),
    )


# ------------------------------------------------------------------ static files, unknown pages


@router.get("/static/{name}")
async def static(request: Request, name: str) -> Response:
    asset = render.ASSETS.get(name)
    if asset is None:
        raise Problem(404, "Not found", "There is no such file.")
    cache = (
        "public, max-age=31536000, immutable"
        if request.query_params.get("v") == asset.version
        else "public, max-age=300"
    )
    return Response(
        asset.body, media_type=asset.content_type, headers={"cache-control": cache, "etag": asset.version}
    )


@router.get("/{path:path}")
async def not_found(request: Request, path: str) -> Response:
    edge = _edge(request)
    who = await session.viewer(request, edge)
    return _page(
        request,
        "error.html",
        404,
        viewer=who,
        title="Page not found",
        message="There is no console page at this address.",
    )
