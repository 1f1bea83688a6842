"""AuthService servicer: translates the wire messages to domain calls and back."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import NoReturn, TypeVar

import grpc

from crossmodel.auth.v1 import auth_pb2, auth_pb2_grpc
from crossmodel_auth.domain.admission import Admission, Decision, Verdict
from crossmodel_auth.domain.directory import Directory
from crossmodel_auth.domain.errors import (
    AuthError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from crossmodel_auth.domain.idempotency import StoredResult
from crossmodel_auth.domain.keys import Account, ApiKey, KeyLimits, KeyStatus
from crossmodel_common.ids import new_request_id

T = TypeVar("T")

_DECISIONS = {
    Decision.ALLOWED: auth_pb2.DECISION_ALLOWED,
    Decision.INVALID_KEY: auth_pb2.DECISION_INVALID_KEY,
    Decision.KEY_REVOKED: auth_pb2.DECISION_KEY_REVOKED,
    Decision.KEY_EXPIRED: auth_pb2.DECISION_KEY_EXPIRED,
    Decision.MODEL_NOT_ALLOWED: auth_pb2.DECISION_MODEL_NOT_ALLOWED,
    Decision.RATE_LIMITED_REQUESTS: auth_pb2.DECISION_RATE_LIMITED_REQUESTS,
    Decision.RATE_LIMITED_TOKENS: auth_pb2.DECISION_RATE_LIMITED_TOKENS,
    Decision.INSUFFICIENT_BALANCE: auth_pb2.DECISION_INSUFFICIENT_BALANCE,
    Decision.SPEND_CAP_EXCEEDED: auth_pb2.DECISION_SPEND_CAP_EXCEEDED,
    Decision.ACCOUNT_DISABLED: auth_pb2.DECISION_ACCOUNT_DISABLED,
    Decision.IDEMPOTENT_REPLAY: auth_pb2.DECISION_IDEMPOTENT_REPLAY,
    Decision.IDEMPOTENCY_IN_PROGRESS: auth_pb2.DECISION_IDEMPOTENCY_IN_PROGRESS,
    Decision.IDEMPOTENCY_MISMATCH: auth_pb2.DECISION_IDEMPOTENCY_MISMATCH,
    Decision.IDEMPOTENCY_NOT_STORED: auth_pb2.DECISION_IDEMPOTENCY_NOT_STORED,
}
_STATUSES = {
    KeyStatus.ACTIVE: auth_pb2.KEY_STATUS_ACTIVE,
    KeyStatus.REVOKED: auth_pb2.KEY_STATUS_REVOKED,
    KeyStatus.EXPIRED: auth_pb2.KEY_STATUS_EXPIRED,
}
_CODES: list[tuple[type[AuthError], grpc.StatusCode]] = [
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
]


async def _abort(context: grpc.aio.ServicerContext[object, object], exc: AuthError) -> NoReturn:
    code = next((c for t, c in _CODES if isinstance(exc, t)), grpc.StatusCode.INTERNAL)
    await context.abort(code, str(exc))
    raise AssertionError("unreachable")  # context.abort raises


async def _call(context: grpc.aio.ServicerContext[object, object], call: Awaitable[T]) -> T:
    try:
        return await call
    except AuthError as exc:
        await _abort(context, exc)


def account_pb(account: Account) -> auth_pb2.Account:
    return auth_pb2.Account(
        id=account.id, name=account.name, created_at_unix_ms=account.created_at_ms, disabled=account.disabled
    )


def limits_pb(limits: KeyLimits) -> auth_pb2.KeyLimits:
    return auth_pb2.KeyLimits(
        rpm=limits.rpm,
        tpm=limits.tpm,
        allowed_models=list(limits.allowed_models),
        spend_cap_micros=limits.spend_cap_micros,
        expires_at_unix_ms=limits.expires_at_ms,
    )


def limits_from_pb(msg: auth_pb2.KeyLimits) -> KeyLimits:
    return KeyLimits(
        rpm=msg.rpm,
        tpm=msg.tpm,
        allowed_models=tuple(msg.allowed_models),
        spend_cap_micros=msg.spend_cap_micros,
        expires_at_ms=msg.expires_at_unix_ms,
    )


def key_pb(key: ApiKey, now_ms: int) -> auth_pb2.ApiKey:
    return auth_pb2.ApiKey(
        id=key.id,
        account_id=key.account_id,
        name=key.name,
        redacted=key.redacted,
        status=_STATUSES[key.status(now_ms)],
        limits=limits_pb(key.limits),
        created_at_unix_ms=key.created_at_ms,
        last_used_at_unix_ms=key.last_used_at_ms,
        revoked_at_unix_ms=key.revoked_at_ms,
    )


def _authorize_pb(verdict: Verdict) -> auth_pb2.AuthorizeResponse:
    resp = auth_pb2.AuthorizeResponse(decision=_DECISIONS[verdict.decision], message=verdict.message)
    key = verdict.key
    if key is not None:
        resp.account_id = key.account_id
        resp.key_id = key.id
        resp.key_name = key.name
    state = verdict.state
    if state is not None:
        rl = resp.rate_limit
        rl.limit_requests = state.limit_requests
        rl.remaining_requests = state.remaining_requests
        rl.reset_requests_ms = state.reset_requests_ms
        rl.limit_tokens = state.limit_tokens
        rl.remaining_tokens = state.remaining_tokens
        rl.reset_tokens_ms = state.reset_tokens_ms
        resp.retry_after_ms = state.retry_after_ms
        resp.reserved_micros = state.reserved_micros
        resp.reserved_tokens = state.reserved_tokens
    replay = verdict.replay
    if replay is not None:
        r = resp.replay
        r.status_code = replay.status_code
        r.content_type = replay.content_type
        r.body = replay.body
        r.request_id = replay.request_id
    return resp


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, admission: Admission, directory: Directory) -> None:
        self._admission = admission
        self._directory = directory

    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)

    async def Authorize(
        self, request: auth_pb2.AuthorizeRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> auth_pb2.AuthorizeResponse:
        verdict = await _call(
            context,
            self._admission.authorize(
                request_id=request.request_id or new_request_id(),
                secret=request.api_key,
                model=request.model,
                tokens=max(request.estimated_input_tokens, 0) + max(request.max_output_tokens, 0),
                reserve_micros=request.reserve_micros,
                idempotency_key=request.idempotency_key,
                body_hash=request.body_sha256,
            ),
        )
        return _authorize_pb(verdict)

    async def CompleteIdempotency(
        self,
        request: auth_pb2.CompleteIdempotencyRequest,
        context: grpc.aio.ServicerContext[object, object],
    ) -> auth_pb2.CompleteIdempotencyResponse:
        result = None
        if request.keep and request.HasField("result"):
            r = request.result
            result = StoredResult(r.status_code, r.content_type, r.body, request.request_id)
        applied = await _call(
            context,
            self._admission.complete_idempotency(
                account_id=request.account_id,
                idempotency_key=request.idempotency_key,
                request_id=request.request_id,
                keep=request.keep,
                result=result,
            ),
        )
        return auth_pb2.CompleteIdempotencyResponse(applied=applied)

    async def Settle(
        self, request: auth_pb2.SettleRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> auth_pb2.SettleResponse:
        await _call(
            context,
            self._admission.settle(
                request_id=request.request_id, key_id=request.key_id, actual_tokens=request.actual_tokens
            ),
        )
        return auth_pb2.SettleResponse()

    async def IntrospectKey(
        self, request: auth_pb2.IntrospectKeyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> auth_pb2.IntrospectKeyResponse:
        verdict = await _call(context, self._admission.introspect(request.api_key))
        resp = auth_pb2.IntrospectKeyResponse(decision=_DECISIONS[verdict.decision], message=verdict.message)
        if verdict.key is not None:
            resp.key.CopyFrom(key_pb(verdict.key, self._now_ms()))
        return resp

    async def CreateAccount(
        self, request: auth_pb2.CreateAccountRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> auth_pb2.CreateAccountResponse:
        account = await _call(context, self._directory.create_account(request.name))
        return auth_pb2.CreateAccountResponse(account=account_pb(account))

    async def GetAccount(
        self, request: auth_pb2.GetAccountRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> auth_pb2.GetAccountResponse:
        account = await _call(context, self._directory.get_account(request.account_id))
        return auth_pb2.GetAccountResponse(account=account_pb(account))

    async def ListAccounts(
        self, request: auth_pb2.ListAccountsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> auth_pb2.ListAccountsResponse:
        accounts, token = await _call(
            context, self._directory.list_accounts(request.page_size, request.page_token)
        )
        return auth_pb2.ListAccountsResponse(
            accounts=[account_pb(a) for a in accounts], next_page_token=token
        )

    async def CreateKey(
        self, request: auth_pb2.CreateKeyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> auth_pb2.CreateKeyResponse:
        key, secret = await _call(
            context,
            self._directory.create_key(request.account_id, request.name, limits_from_pb(request.limits)),
        )
        return auth_pb2.CreateKeyResponse(key=key_pb(key, self._now_ms()), secret=secret)

    async def GetKey(
        self, request: auth_pb2.GetKeyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> auth_pb2.GetKeyResponse:
        key = await _call(context, self._directory.get_key(request.key_id, request.account_id))
        return auth_pb2.GetKeyResponse(key=key_pb(key, self._now_ms()))

    async def ListKeys(
        self, request: auth_pb2.ListKeysRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> auth_pb2.ListKeysResponse:
        keys = await _call(context, self._directory.list_keys(request.account_id))
        now = self._now_ms()
        return auth_pb2.ListKeysResponse(keys=[key_pb(k, now) for k in keys])

    async def UpdateKey(
        self, request: auth_pb2.UpdateKeyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> auth_pb2.UpdateKeyResponse:
        key = await _call(
            context,
            self._directory.update_key(
                request.key_id,
                request.account_id,
                name=request.name if request.HasField("name") else None,
                limits=limits_from_pb(request.limits) if request.HasField("limits") else None,
            ),
        )
        return auth_pb2.UpdateKeyResponse(key=key_pb(key, self._now_ms()))

    async def RevokeKey(
        self, request: auth_pb2.RevokeKeyRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> auth_pb2.RevokeKeyResponse:
        key = await _call(context, self._directory.revoke_key(request.key_id, request.account_id))
        return auth_pb2.RevokeKeyResponse(key=key_pb(key, self._now_ms()))
