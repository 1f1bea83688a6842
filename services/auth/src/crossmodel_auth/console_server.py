"""The console's RPCs on top of AuthService: users, sign-in, sessions, sign-out."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc

from crossmodel.auth.v1 import auth_pb2
from crossmodel_auth.domain.admission import Admission
from crossmodel_auth.domain.console import (
    AlreadyExists,
    ConsoleUser,
    ConsoleUsers,
    SignInResult,
    TooManyAttempts,
)
from crossmodel_auth.domain.directory import Directory
from crossmodel_auth.domain.errors import AuthError
from crossmodel_auth.server import AuthServicer, _abort, account_pb

T = TypeVar("T")
Context = grpc.aio.ServicerContext[object, object]

_RESULTS = {
    SignInResult.OK: auth_pb2.SIGN_IN_RESULT_OK,
    SignInResult.INVALID_CREDENTIALS: auth_pb2.SIGN_IN_RESULT_INVALID_CREDENTIALS,
    SignInResult.RATE_LIMITED: auth_pb2.SIGN_IN_RESULT_RATE_LIMITED,
    SignInResult.ACCOUNT_DISABLED: auth_pb2.SIGN_IN_RESULT_ACCOUNT_DISABLED,
}


async def _console_call(context: Context, call: Awaitable[T]) -> T:
    try:
        return await call
    except AlreadyExists as exc:
        await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(exc))
        raise AssertionError("unreachable") from exc
    except TooManyAttempts as exc:
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            str(exc),
            trailing_metadata=(("retry-after-ms", str(exc.retry_after_ms)),),
        )
        raise AssertionError("unreachable") from exc
    except AuthError as exc:
        await _abort(context, exc)


def console_user_pb(user: ConsoleUser) -> auth_pb2.ConsoleUser:
    return auth_pb2.ConsoleUser(
        id=user.id, account_id=user.account_id, email=user.email, created_at_unix_ms=user.created_at_ms
    )


class ConsoleAuthServicer(AuthServicer):
    def __init__(self, admission: Admission, directory: Directory, console: ConsoleUsers) -> None:
        super().__init__(admission, directory)
        self._console = console

    async def CreateConsoleUser(
        self, request: auth_pb2.CreateConsoleUserRequest, context: Context
    ) -> auth_pb2.CreateConsoleUserResponse:
        user, account = await _console_call(
            context,
            self._console.create_user(
                email=request.email,
                password=request.password,
                account_id=request.account_id,
                account_name=request.account_name,
                client_ip=request.client_ip,
            ),
        )
        return auth_pb2.CreateConsoleUserResponse(user=console_user_pb(user), account=account_pb(account))

    async def SignIn(self, request: auth_pb2.SignInRequest, context: Context) -> auth_pb2.SignInResponse:
        outcome = await _console_call(
            context,
            self._console.sign_in(
                email=request.email, password=request.password, client_ip=request.client_ip
            ),
        )
        resp = auth_pb2.SignInResponse(result=_RESULTS[outcome.result], retry_after_ms=outcome.retry_after_ms)
        if outcome.user is not None:
            resp.user.CopyFrom(console_user_pb(outcome.user))
            resp.session.token = outcome.token
            resp.session.csrf_token = outcome.csrf_token
            resp.session.expires_at_unix_ms = outcome.expires_at_ms
        return resp

    async def GetSession(
        self, request: auth_pb2.GetSessionRequest, context: Context
    ) -> auth_pb2.GetSessionResponse:
        session = await _console_call(context, self._console.session(request.token))
        if session is None:
            return auth_pb2.GetSessionResponse(found=False)
        return auth_pb2.GetSessionResponse(
            found=True,
            user=console_user_pb(session.user),
            account=account_pb(session.account),
            csrf_token=session.csrf_token,
            expires_at_unix_ms=session.expires_at_ms,
        )

    async def SignOut(self, request: auth_pb2.SignOutRequest, context: Context) -> auth_pb2.SignOutResponse:
        await _console_call(context, self._console.sign_out(request.token))
        return auth_pb2.SignOutResponse()
