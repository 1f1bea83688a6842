"""The development account of `make run`: an account, a funded balance, an API key and an admin
token, idempotent across restarts, written to `.crossmodel/dev.env` for the official SDKs.

The key's secret can only be shown once, so dev.env is where it lives: a restart reuses it when
it still authenticates (the database may have been wiped since), else a new key is created.
"""

from __future__ import annotations

import os
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

import grpc

from crossmodel.auth.v1 import auth_pb2, auth_pb2_grpc
from crossmodel.billing.v1 import billing_pb2, billing_pb2_grpc
from crossmodel_common.grpcio import channel

DEV_ACCOUNT_NAME = "dev"
DEV_KEY_NAME = "dev"
# 100.00 in the account currency: plenty of simulated requests at catalog prices.
DEV_TOP_UP_MICROS = 100_000_000
ACCOUNT_VAR = "CROSSMODEL_DEV_ACCOUNT_ID"
ADMIN_TOKEN_VAR = "CROSSMODEL_ADMIN_TOKEN"  # noqa: S105 - a variable name, not a secret
CONSOLE_EMAIL_VAR = "CROSSMODEL_CONSOLE_EMAIL"
CONSOLE_PASSWORD_VAR = "CROSSMODEL_CONSOLE_PASSWORD"  # noqa: S105 - a variable name, not a secret
DEV_CONSOLE_EMAIL = "dev@crossmodel.localhost"


@dataclass(frozen=True, slots=True)
class DevCredentials:
    account_id: str
    key_id: str
    api_key: str
    admin_token: str
    balance_micros: int
    key_reused: bool
    console_email: str = ""
    console_password: str = ""


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines as written by `write_env_file` (shell-quoted values)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        parsed = shlex.split(raw)
        values[key.strip()] = parsed[0] if parsed else ""
    return values


def write_env_file(path: Path, values: dict[str, str], header: str) -> None:
    """Written atomically and readable by the owner only: it holds an API key and the admin token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"# {line}\n" for line in header.splitlines())
    body += "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.replace(tmp, path)


def new_or_previous_admin_token(previous: dict[str, str]) -> str:
    return previous.get(ADMIN_TOKEN_VAR) or "cm-admin-" + secrets.token_urlsafe(32)


async def _reusable_key(auth: auth_pb2_grpc.AuthServiceAsyncStub, secret: str) -> auth_pb2.ApiKey | None:
    if not secret:
        return None
    resp = await auth.IntrospectKey(auth_pb2.IntrospectKeyRequest(api_key=secret), timeout=10)
    return resp.key if resp.decision == auth_pb2.DECISION_ALLOWED else None


async def _account(auth: auth_pb2_grpc.AuthServiceAsyncStub, remembered: str) -> str:
    if remembered:
        try:
            resp = await auth.GetAccount(auth_pb2.GetAccountRequest(account_id=remembered), timeout=10)
            return str(resp.account.id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
    created = await auth.CreateAccount(auth_pb2.CreateAccountRequest(name=DEV_ACCOUNT_NAME), timeout=10)
    return str(created.account.id)


async def _console_user(
    auth: auth_pb2_grpc.AuthServiceAsyncStub, account_id: str, previous: dict[str, str]
) -> tuple[str, str]:
    """The dev account's console user: the remembered one when its password still signs in to
    this account, else a new user with a random password (its own email if the old one is taken)."""
    email, password = previous.get(CONSOLE_EMAIL_VAR, ""), previous.get(CONSOLE_PASSWORD_VAR, "")
    if email and password:
        signed = await auth.SignIn(auth_pb2.SignInRequest(email=email, password=password), timeout=10)
        if signed.result == auth_pb2.SIGN_IN_RESULT_OK:
            await auth.SignOut(auth_pb2.SignOutRequest(token=signed.session.token), timeout=10)
            if signed.user.account_id == account_id:
                return email, password
    password = secrets.token_urlsafe(18)
    for candidate in (DEV_CONSOLE_EMAIL, f"dev-{secrets.token_hex(3)}@crossmodel.localhost"):
        try:
            await auth.CreateConsoleUser(
                auth_pb2.CreateConsoleUserRequest(email=candidate, password=password, account_id=account_id),
                timeout=10,
            )
            return candidate, password
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
    raise RuntimeError("could not create a console user for the dev account")


async def bootstrap(
    auth_target: str, billing_target: str, previous: dict[str, str], admin_token: str
) -> DevCredentials:
    async with channel(auth_target) as auth_ch, channel(billing_target) as billing_ch:
        auth = auth_pb2_grpc.AuthServiceStub(auth_ch)
        billing = billing_pb2_grpc.BillingServiceStub(billing_ch)
        secret = previous.get("OPENAI_API_KEY", "")
        key = await _reusable_key(auth, secret)
        if key is not None:
            account_id, key_id, reused = str(key.account_id), str(key.id), True
        else:
            account_id = await _account(auth, previous.get(ACCOUNT_VAR, ""))
            created = await auth.CreateKey(
                auth_pb2.CreateKeyRequest(account_id=account_id, name=DEV_KEY_NAME), timeout=10
            )
            secret, key_id, reused = str(created.secret), str(created.key.id), False
        # One fixed idempotency key per account: restarts replay it and credit nothing more.
        top_up = await billing.TopUp(
            billing_pb2.TopUpRequest(
                account_id=account_id,
                amount_micros=DEV_TOP_UP_MICROS,
                idempotency_key=f"devstack-bootstrap:{account_id}",
                description="make run: development credit",
            ),
            timeout=10,
        )
        console_email, console_password = await _console_user(auth, account_id, previous)
        return DevCredentials(
            account_id=account_id,
            key_id=key_id,
            api_key=secret,
            admin_token=admin_token,
            balance_micros=int(top_up.balance_micros),
            key_reused=reused,
            console_email=console_email,
            console_password=console_password,
        )


def dev_env(creds: DevCredentials, edge_url: str) -> dict[str, str]:
    """What `set -a; . .crossmodel/dev.env` exports: the official SDKs read these names."""
    return {
        "OPENAI_BASE_URL": f"{edge_url}/v1",
        "OPENAI_API_KEY": creds.api_key,
        "ANTHROPIC_BASE_URL": edge_url,
        "ANTHROPIC_API_KEY": creds.api_key,
        ADMIN_TOKEN_VAR: creds.admin_token,
        ACCOUNT_VAR: creds.account_id,
        # The console at {edge_url}/console signs in with these.
        CONSOLE_EMAIL_VAR: creds.console_email,
        CONSOLE_PASSWORD_VAR: creds.console_password,
    }
