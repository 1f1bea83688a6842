"""Console users and sessions through gRPC, on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncpg
import grpc
import pytest

from crossmodel.auth.v1 import auth_pb2 as pb
from crossmodel.auth.v1.auth_pb2_grpc import AuthServiceStub
from crossmodel_common.ids import new_ulid

PASSWORD = "correct horse battery staple"


def _email() -> str:
    return f"user-{new_ulid()}@example.com"


def _ip() -> str:
    # A fresh documentation-range IPv6 address per test: the limits live in the shared Redis.
    raw = new_ulid()
    return f"2001:db8::{int(raw[-8:], 36) % 65536:x}:{int(raw[-4:], 36) % 65536:x}"


async def test_sign_up_sign_in_session_sign_out(auth: AuthServiceStub, database_url: str) -> None:
    email = _email()
    created = await auth.CreateConsoleUser(
        pb.CreateConsoleUserRequest(email="  " + email.upper(), password=PASSWORD, account_name="Acme")
    )
    assert created.user.email == email
    assert created.account.name == "Acme"
    assert created.user.account_id == created.account.id

    signed = await auth.SignIn(pb.SignInRequest(email=email, password=PASSWORD, client_ip=_ip()))
    assert signed.result == pb.SIGN_IN_RESULT_OK
    token = signed.session.token
    assert token.startswith("cms_")
    assert len(token) > 40
    assert signed.session.csrf_token
    assert signed.session.csrf_token != token

    got = await auth.GetSession(pb.GetSessionRequest(token=token))
    assert got.found
    assert got.user.id == created.user.id
    assert got.account.id == created.account.id
    assert got.csrf_token == signed.session.csrf_token

    # Stored: an argon2id hash and the token's SHA-256, never the secrets themselves.
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        stored = await conn.fetchval("SELECT password_hash FROM console_users WHERE email = $1", email)
        dump = str(await conn.fetch("SELECT * FROM console_sessions"))
    finally:
        await conn.close()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert token not in dump

    await auth.SignOut(pb.SignOutRequest(token=token))
    assert not (await auth.GetSession(pb.GetSessionRequest(token=token))).found
    assert not (await auth.GetSession(pb.GetSessionRequest(token="cms_" + "x" * 43))).found
    assert not (await auth.GetSession(pb.GetSessionRequest(token=""))).found


async def test_two_sessions_have_different_tokens_and_csrf(auth: AuthServiceStub) -> None:
    email = _email()
    await auth.CreateConsoleUser(pb.CreateConsoleUserRequest(email=email, password=PASSWORD))
    a = await auth.SignIn(pb.SignInRequest(email=email, password=PASSWORD))
    b = await auth.SignIn(pb.SignInRequest(email=email, password=PASSWORD))
    assert a.session.token != b.session.token
    assert a.session.csrf_token != b.session.csrf_token


async def test_wrong_password_and_unknown_email_look_the_same(auth: AuthServiceStub) -> None:
    email = _email()
    await auth.CreateConsoleUser(pb.CreateConsoleUserRequest(email=email, password=PASSWORD))
    wrong = await auth.SignIn(pb.SignInRequest(email=email, password=PASSWORD + "!"))
    unknown = await auth.SignIn(pb.SignInRequest(email=_email(), password=PASSWORD))
    assert wrong.result == unknown.result == pb.SIGN_IN_RESULT_INVALID_CREDENTIALS
    assert not wrong.session.token
    assert not unknown.session.token


async def test_sign_up_validation_and_duplicates(auth: AuthServiceStub) -> None:
    email = _email()
    for bad_email, password in (("not-an-email", PASSWORD), (email, "short"), ("", PASSWORD)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await auth.CreateConsoleUser(pb.CreateConsoleUserRequest(email=bad_email, password=password))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await auth.CreateConsoleUser(pb.CreateConsoleUserRequest(email=email, password=PASSWORD))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.CreateConsoleUser(pb.CreateConsoleUserRequest(email=email.upper(), password=PASSWORD))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.CreateConsoleUser(
            pb.CreateConsoleUserRequest(email=_email(), password=PASSWORD, account_id="acct_missing")
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_user_can_join_an_existing_account(auth: AuthServiceStub) -> None:
    account = (await auth.CreateAccount(pb.CreateAccountRequest(name="team"))).account
    created = await auth.CreateConsoleUser(
        pb.CreateConsoleUserRequest(email=_email(), password=PASSWORD, account_id=account.id)
    )
    assert created.user.account_id == account.id
    assert created.account.name == "team"


async def test_sign_in_attempts_are_limited_per_email(start_auth: object) -> None:
    _, auth = await start_auth(console_signin_per_email=3)  # type: ignore[operator]
    email = _email()
    await auth.CreateConsoleUser(pb.CreateConsoleUserRequest(email=email, password=PASSWORD))
    results = [
        (await auth.SignIn(pb.SignInRequest(email=email, password="wrong password!", client_ip=_ip()))).result
        for _ in range(3)
    ]
    assert results == [pb.SIGN_IN_RESULT_INVALID_CREDENTIALS] * 3
    # The right password does not get through either once the email is over its limit.
    limited = await auth.SignIn(pb.SignInRequest(email=email, password=PASSWORD, client_ip=_ip()))
    assert limited.result == pb.SIGN_IN_RESULT_RATE_LIMITED
    assert 0 < limited.retry_after_ms <= 900_000
    assert not limited.session.token


async def test_successful_sign_ins_do_not_use_up_the_limit(start_auth: object) -> None:
    _, auth = await start_auth(console_signin_per_email=2)  # type: ignore[operator]
    email = _email()
    await auth.CreateConsoleUser(pb.CreateConsoleUserRequest(email=email, password=PASSWORD))
    for _ in range(4):
        ok = await auth.SignIn(pb.SignInRequest(email=email, password=PASSWORD))
        assert ok.result == pb.SIGN_IN_RESULT_OK


async def test_sign_in_attempts_are_limited_per_address(start_auth: object) -> None:
    _, auth = await start_auth(console_signin_per_ip=2)  # type: ignore[operator]
    ip = _ip()
    first = [
        (await auth.SignIn(pb.SignInRequest(email=_email(), password=PASSWORD, client_ip=ip))).result
        for _ in range(3)
    ]
    assert first == [
        pb.SIGN_IN_RESULT_INVALID_CREDENTIALS,
        pb.SIGN_IN_RESULT_INVALID_CREDENTIALS,
        pb.SIGN_IN_RESULT_RATE_LIMITED,
    ]
    other = await auth.SignIn(pb.SignInRequest(email=_email(), password=PASSWORD, client_ip=_ip()))
    assert other.result == pb.SIGN_IN_RESULT_INVALID_CREDENTIALS


async def test_sign_ups_are_limited_per_address(start_auth: object) -> None:
    _, auth = await start_auth(console_signup_per_ip=1)  # type: ignore[operator]
    ip = _ip()
    await auth.CreateConsoleUser(pb.CreateConsoleUserRequest(email=_email(), password=PASSWORD, client_ip=ip))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.CreateConsoleUser(
            pb.CreateConsoleUserRequest(email=_email(), password=PASSWORD, client_ip=ip)
        )
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(err.value.trailing_metadata() or ())["retry-after-ms"]
