"""Console users and sessions: sign-up, sign-in with attempt limits, session lookup, sign-out.

Passwords are hashed by the PasswordHasher port (argon2id); session tokens are 256-bit random
strings stored only as SHA-256 hashes, like API keys (docs/money.md says why a fast hash is
right for random secrets). The CSRF token of a session is an HMAC of its token, so it is bound
to that session and needs no storage (docs/console.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from crossmodel_auth.domain.errors import AuthError, InvalidArgument
from crossmodel_auth.domain.keys import Account
from crossmodel_common.ids import new_id

SESSION_PREFIX = "cms_"
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # argon2 takes any length; this only bounds the work a request can ask for
MAX_EMAIL = 254  # RFC 5321 path limit
# Deliberately loose: one @, something on each side, a dot in the domain, no spaces. The
# console cannot prove an address exists; it only catches typos.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CSRF_CONTEXT = b"crossmodel console csrf v1"
_MIN_TOKEN, _MAX_TOKEN = 30, 100


class AlreadyExists(AuthError):
    pass


class TooManyAttempts(AuthError):
    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    id: str
    account_id: str
    email: str
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class StoredUser:
    user: ConsoleUser
    password_hash: str
    account_disabled: bool


@dataclass(frozen=True, slots=True)
class Session:
    user: ConsoleUser
    account: Account
    csrf_token: str
    expires_at_ms: int


class SignInResult(Enum):
    OK = "ok"
    INVALID_CREDENTIALS = "invalid_credentials"
    RATE_LIMITED = "rate_limited"
    ACCOUNT_DISABLED = "account_disabled"


@dataclass(frozen=True, slots=True)
class SignInOutcome:
    result: SignInResult
    user: ConsoleUser | None = None
    token: str = ""
    csrf_token: str = ""
    expires_at_ms: int = 0
    retry_after_ms: int = 0


@dataclass(frozen=True, slots=True)
class Limit:
    bucket: str  # a Redis-safe name, e.g. "signin:email:<hash>"
    limit: int
    window_ms: int


class ConsoleRepository(Protocol):
    async def create_user(
        self,
        *,
        user_id: str,
        email: str,
        password_hash: str,
        account_id: str,
        new_account_name: str | None,
    ) -> tuple[ConsoleUser, Account]:
        """With `new_account_name`, creates the account `account_id` in the same transaction.
        Raises AlreadyExists for a taken email, NotFound for an unknown account."""
        ...

    async def user_by_email(self, email: str) -> StoredUser | None: ...
    async def create_session(self, *, token_hash: bytes, user_id: str, expires_at_ms: int) -> None: ...
    async def session(self, token_hash: bytes, now_ms: int) -> tuple[ConsoleUser, Account, int] | None: ...
    async def delete_session(self, token_hash: bytes) -> None: ...
    async def delete_expired_sessions(self, user_id: str, now_ms: int) -> None: ...


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...
    async def verify(self, password_hash: str, password: str) -> bool:
        """False for a wrong password or a hash it cannot read; never raises for either."""
        ...


class AttemptLimiter(Protocol):
    async def take(self, limits: list[Limit]) -> int:
        """Count one attempt in every bucket; when any is over its limit, undo the counting and
        return the ms until that bucket's window ends, else 0."""
        ...

    async def give_back(self, limits: list[Limit]) -> None:
        """Uncount an attempt that should not count (a successful sign-in)."""
        ...


@dataclass(frozen=True, slots=True)
class ConsolePolicy:
    session_ttl_ms: int
    signin_per_email: int
    signin_per_ip: int
    signin_window_ms: int
    signup_per_ip: int
    signup_window_ms: int


def normalize_email(email: str) -> str:
    return email.strip().lower()


def check_email(email: str) -> str:
    email = normalize_email(email)
    if not email:
        raise InvalidArgument("email is required")
    if len(email) > MAX_EMAIL or not _EMAIL.match(email):
        raise InvalidArgument("email does not look like an email address")
    return email


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidArgument(f"password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise InvalidArgument(f"password must be at most {MAX_PASSWORD} characters")


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def csrf_for(token: str) -> str:
    mac = hmac.new(token.encode(), _CSRF_CONTEXT, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _digest(value: str) -> str:
    # Bucket names carry no personal data in clear (Redis keys show up in monitoring tools).
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def plausible_token(token: str) -> bool:
    return token.startswith(SESSION_PREFIX) and _MIN_TOKEN <= len(token) <= _MAX_TOKEN


class ConsoleUsers:
    def __init__(
        self,
        repo: ConsoleRepository,
        hasher: PasswordHasher,
        limiter: AttemptLimiter,
        policy: ConsolePolicy,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._repo = repo
        self._hasher = hasher
        self._limiter = limiter
        self._policy = policy
        self._clock = clock
        self._dummy_hash = ""

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def create_user(
        self, *, email: str, password: str, account_id: str, account_name: str, client_ip: str
    ) -> tuple[ConsoleUser, Account]:
        email = check_email(email)
        check_password(password)
        if client_ip:
            p = self._policy
            limit = Limit(f"signup:ip:{_digest(client_ip)}", p.signup_per_ip, p.signup_window_ms)
            wait_ms = await self._limiter.take([limit])
            if wait_ms:
                raise TooManyAttempts("too many sign-ups from this address; try again later", wait_ms)
        password_hash = await self._hasher.hash(password)
        new_name = None
        if not account_id:
            account_id = new_id("acct")
            new_name = account_name.strip() or email
        return await self._repo.create_user(
            user_id=new_id("cu"),
            email=email,
            password_hash=password_hash,
            account_id=account_id,
            new_account_name=new_name,
        )

    async def sign_in(self, *, email: str, password: str, client_ip: str) -> SignInOutcome:
        email = normalize_email(email)
        p = self._policy
        limits = [Limit(f"signin:email:{_digest(email)}", p.signin_per_email, p.signin_window_ms)]
        if client_ip:
            limits.append(Limit(f"signin:ip:{_digest(client_ip)}", p.signin_per_ip, p.signin_window_ms))
        wait_ms = await self._limiter.take(limits)
        if wait_ms:
            return SignInOutcome(SignInResult.RATE_LIMITED, retry_after_ms=wait_ms)
        stored = await self._repo.user_by_email(email) if email and len(email) <= MAX_EMAIL else None
        if stored is None:
            # The same argon2 work as for a real user, so timing does not tell which emails exist.
            await self._hasher.verify(await self._dummy(), password[:MAX_PASSWORD])
            return SignInOutcome(SignInResult.INVALID_CREDENTIALS)
        if len(password) > MAX_PASSWORD or not await self._hasher.verify(stored.password_hash, password):
            return SignInOutcome(SignInResult.INVALID_CREDENTIALS)
        if stored.account_disabled:
            return SignInOutcome(SignInResult.ACCOUNT_DISABLED)
        await self._limiter.give_back(limits)
        now = self._now_ms()
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        expires = now + p.session_ttl_ms
        await self._repo.delete_expired_sessions(stored.user.id, now)
        await self._repo.create_session(
            token_hash=hash_token(token), user_id=stored.user.id, expires_at_ms=expires
        )
        return SignInOutcome(
            SignInResult.OK, user=stored.user, token=token, csrf_token=csrf_for(token), expires_at_ms=expires
        )

    async def session(self, token: str) -> Session | None:
        if not plausible_token(token):
            return None
        found = await self._repo.session(hash_token(token), self._now_ms())
        if found is None:
            return None
        user, account, expires = found
        if account.disabled:
            return None
        return Session(user, account, csrf_for(token), expires)

    async def sign_out(self, token: str) -> None:
        if plausible_token(token):
            await self._repo.delete_session(hash_token(token))

    async def _dummy(self) -> str:
        if not self._dummy_hash:
            self._dummy_hash = await self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash
